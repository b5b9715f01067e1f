"""DUS-RL (reconstructed): a REINFORCE policy picks a batch-size multiplier per modality."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, TYPE_CHECKING

import torch

from ...engine.options import option
from ...engine.plugin import Record
from ...registry import METHODS
from .allocation import imbalance
from .base import DUSBase, DUSOptions
from .policy import Reinforce

if TYPE_CHECKING:
    from ...engine.trainer import Trainer
    from ...models.net import MultimodalNet


DEFAULT_ACTIONS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)


@METHODS.register("dus-rl")
class DUSRL(DUSBase):
    """DUS-RL (reconstructed): a REINFORCE policy picks a batch-size multiplier per modality.

    Every decision (``update_every`` steps) the policy observes ``o = [ŝ^(1..M), ρ^(1..M), n^(1..M)/N_B,
    t/T]`` (T = planned steps of the run) and samples, per modality, a multiplier ``a_j`` from
    ``actions``; the sizes are ``N_B·a_j`` through the same bounds and budget preservation as DUS-H
    (with preservation only the ratios matter). The reward of an action, measured at the next decision,
    is ``r = -spread(ŝ) + η·(s̄_mm,new - s̄_mm,old)``, where spread is ``max-min`` (= ``|ŝ^(1)-ŝ^(2)|``
    for two modalities) or ``std``, and ``s̄_mm`` is the mean probability of the true class from the
    fused head (sum of heads if there is no fused output) over the decision's window. Every
    ``policy_update_every`` transitions, REINFORCE: ``loss = -mean_i (G_i - b)·log π(a_i|o_i)
    - β·mean_i H(π(·|o_i))`` (the mean instead of the spec's sum only rescales the Adam step), with
    discounted returns ``G_i`` (γ_RL), EMA baseline ``b`` (initialised to the first episode's mean
    return), Adam. The policy runs on the CPU on the floats already read back for the decision (no
    extra sync). All of this is [RECON] (spec §3.3); the paper only says REINFORCE is used.

    Warm-up: for the first ``warmup_epochs`` epochs the sizes come from DUS-H and no transitions are
    recorded (REINFORCE is on-policy, so heuristic actions cannot be used for the gradient); it lets
    the cumulative scores settle before they become the policy's state.

    Scores: ``s_t^(j)`` is the batch mean softmax probability of the true class from modality j's own
    head on its own ``n_j`` samples (no grad) [SEC]; ``ρ^(j) = ŝ^(j) / mean_{k≠j} ŝ^(k)`` [RECON,
    mirrors OGM-GE's ratio]. Logged per step: ``<name>/n/<m>`` (batch size) and ``<name>/s_hat/<m>``;
    per epoch: ``<name>/mean_n/<m>``, ``<name>/s_hat/<m>``, ``<name>/rho/<m>``.

    Stacking: ``wants_unimodal_loss`` (each modality's CE on its own samples; the fused CE and the host
    method's loss run on the paired part); it provides the ``batcher`` so methods needing strictly paired
    batches are refused at start-up. Under DDP the batch scores are means over the global batch
    (all-reduced sums and counts), so every rank holds the same ŝ and decides the same sizes.
    With a step-replacing method (MLA, ReconBoost) the scores come from an extra no-grad forward in
    eval mode after its step.
    """

    @dataclass
    class Options(DUSOptions):
        actions: List[float] = option(list(DEFAULT_ACTIONS), "multipliers of N_B the policy chooses from",
                                      "[RECON, spec §3.3]", gt=0)
        hidden: int = option(64, "policy MLP width", "[RECON, spec §3.3]", ge=1)
        layers: int = option(2, "policy MLP hidden layers", "[RECON, spec §3.3]", ge=0)
        policy_lr: float = option(1e-3, "Adam learning rate of the policy", "[RECON, spec §3.3]", gt=0)
        rl_gamma: float = option(0.9, "discount of the returns", "[RECON, spec §3.3]", ge=0, le=1)
        entropy_coef: float = option(0.01, "entropy bonus beta", "[RECON, spec §3.3]", ge=0)
        baseline_momentum: float = option(0.9, "EMA of the baseline", "[RECON, spec §3.3]", ge=0, lt=1)
        eta: float = option(1.0, "weight of the fused-score improvement in the reward", "[RECON, spec §3.3]")
        spread: str = option("maxmin", "imbalance term of the reward: maxmin (= |s1 - s2| for two) or std",
                             "[RECON, spec §3.3]", choices=("maxmin", "std"))
        reward_scores: str = option("s_hat", "scores of the spread term: s_hat (the spec) or window (mean batch "
                                    "scores since the last decision: faster-reacting)", "[RECON]",
                                    choices=("s_hat", "window"))
        policy_update_every: int = option(10, "K, transitions per REINFORCE update", "[RECON, spec §3.3]", ge=1)
        warmup_epochs: int = option(1, "epochs of DUS-H before the policy acts", "[RECON]", ge=0)
        seed: Optional[int] = option(None, "policy initialisation and sampling seed; null = train.seed", "[RECON]")

    actions: List[float]

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.actions = [float(a) for a in self.actions]
        if not self.actions:
            raise self.option_error("actions", "a non-empty list of positive multipliers", self.actions)
        self.rl: Optional[Reinforce] = None
        self._pending: Optional[Dict[str, Any]] = None  # last action awaiting its reward
        self._prev_mm: Optional[float] = None
        self._win_sum: Optional[torch.Tensor] = None
        self._win_count = 0
        self._epoch_rewards: List[float] = []
        self._epoch_updates: List[Dict[str, float]] = []

    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        super().configure_model(trainer, model)
        if self.rl is None:
            m = len(self.modalities)
            seed = trainer.cfg.train.seed if self.seed is None else self.seed
            self.rl = Reinforce(3 * m + 1, m, len(self.actions), self.hidden, self.layers, self.policy_lr,
                                self.rl_gamma, self.entropy_coef, self.baseline_momentum, seed)

    def _observe(self, trainer, batch, out):
        super()._observe(trainer, batch, out)
        if self.reward_scores == "window":
            s, _ = self._batch_scores(trainer, batch, out)
            self._win_sum = s if self._win_sum is None else self._win_sum.to(s.device) + s
            self._win_count += 1

    def _decide(self, trainer, s_hat, rho, mm_mean):
        spread_on = s_hat
        if self.reward_scores == "window" and self._win_sum is not None:
            spread_on = (self._win_sum / max(self._win_count, 1)).cpu().tolist()
            self._win_sum, self._win_count = None, 0
        reward = -imbalance(spread_on, self.spread) + (
            self.eta * (mm_mean - self._prev_mm) if self._prev_mm is not None else 0.0)
        self._prev_mm = mm_mean
        if self._pending is not None:
            self.rl.record(self._pending["obs"], self._pending["action"], reward)
            self._epoch_rewards.append(reward)
            if len(self.rl) >= self.policy_update_every:
                self._epoch_updates.append(self.rl.update())
            self._pending = None
        if trainer.epoch < self.warmup_epochs:
            return self._heuristic(rho)
        obs = torch.tensor(list(s_hat) + list(rho) + [n / self.N_B for n in self.sizes]
                           + [min(self.t / self.total_steps, 1.0)], dtype=torch.float32)
        action = self.rl.act(obs)
        self._pending = {"obs": obs, "action": action}
        return self._allocate([self.N_B * self.actions[int(a)] for a in action])

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        super().on_epoch_end(trainer, epoch, record)
        if self._epoch_rewards:
            self.log("reward", sum(self._epoch_rewards) / len(self._epoch_rewards))
        if self._epoch_updates:
            last = self._epoch_updates[-1]
            self.log("policy_entropy", last["entropy"])
            self.log("baseline", last["baseline"])
        assert self.rl is not None, "configure_model creates the policy"
        self.log("policy_updates", self.rl.updates)
        self._epoch_rewards, self._epoch_updates = [], []

    def state_dict(self) -> Dict[str, Any]:
        s = self._common_state()
        s.update(rl=self.rl.state_dict() if self.rl is not None else None,
                 pending=None if self._pending is None else {k: v.clone() for k, v in self._pending.items()},
                 prev_mm=self._prev_mm,
                 win_sum=None if self._win_sum is None else self._win_sum.detach().cpu().clone(),
                 win_count=self._win_count)
        return s

    def load_state_dict(self, state):
        self._load_common(state)
        if state.get("rl") is not None:
            self.rl.load_state_dict(state["rl"])
        self._pending = state["pending"]
        self._prev_mm = state["prev_mm"]
        self._win_sum, self._win_count = state["win_sum"], int(state["win_count"])
