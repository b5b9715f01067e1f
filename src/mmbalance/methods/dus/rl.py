"""DUS-RL (reconstructed): a REINFORCE policy picks a batch-size multiplier per modality."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, TYPE_CHECKING

import torch
import torch.nn.functional as F

from ...engine.plugin import Record
from ...registry import METHODS
from .allocation import imbalance
from .base import DUSBase
from .policy import Reinforce
from .reward import gain_reward, probe_indices, probe_losses
from .rl_options import STATE_FEATURES, DUSRLOptions
from .signal import SignalRecord

if TYPE_CHECKING:
    from ...engine.trainer import Trainer
    from ...models.net import MultimodalNet


@METHODS.register("dus-rl")
class DUSRL(DUSBase):
    """DUS-RL (reconstructed): a REINFORCE policy picks a batch-size multiplier per modality.

    Every decision (``update_every`` steps: a *window*) the policy observes ``o = [ŝ, ρ, n/N_B, t/T]``
    (``state``; T = planned steps) and samples, per modality, a multiplier ``a_j`` from ``actions``; the
    sizes are ``N_B·a_j`` through the same bounds and budget preservation as DUS-H (with preservation
    only the ratios matter), and they hold for the window. Its reward is measured at the window's end:

    * default ``weakest_gain``: the decrease, over the window, of the probe loss of the modality whose probe
      loss was the highest at the window's start; the probe (:func:`~.reward.probe_losses`) is a fixed
      set of ``probe_size`` samples of ``probe_split``, evaluated after the optimizer step that ends each
      window, so the reward sees what the window's updates did (``fused_gain``, ``own_gain``: other
      window rewards);
    * ``spread`` (spec): ``-spread(ŝ) + η·(s̄_mm,new - s̄_mm,old)`` from the window's own forward passes,
      which run *before* the updates they feed: with one-step windows it cannot see the action.

    Every ``policy_update_every`` transitions, REINFORCE (:meth:`~.policy.Reinforce.loss`): ``loss =
    -mean_t Σ_j A_t·log π_j(a_t,j|o_t) - β_t·mean_t H(π(·|o_t))`` with discounted returns (``rl_gamma``;
    default 0: a contextual bandit), advantages from a per-transition running baseline and scale
    (``advantage=running``; ``episode``: the spec's per-episode EMA baseline; one per modality with
    ``own_gain``), β from ``entropy_coef`` to ``entropy_final`` over the run, Adam. ``warm_start=imitate``
    clones DUS-H's allocation in the warm-up states before the policy acts. The per-window diagnostic
    (:mod:`.signal`, logged under ``signal/``) measures how much of the reward the action explains.
    The policy runs on the CPU on floats read back once per window (decision, probe and diagnostic).
    All of this is [RECON] (spec §3.3; the paper only says REINFORCE is used); the defaults are the
    design measured in docs/results/dus.md, the spec's is :data:`~.rl_options.SPEC_DESIGN`.

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

    Options = DUSRLOptions
    actions: List[float]
    state: List[str]

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.actions = [float(a) for a in self.actions]
        self.rl: Optional[Reinforce] = None
        self._pending: Optional[Dict[str, Any]] = None  # last action awaiting its reward
        self._prev_mm: Optional[float] = None
        self._prev_probe: Optional[List[float]] = None
        self._prev_s_hat: Optional[List[float]] = None  # ŝ at the decision that opened the window
        self._slope: Optional[List[float]] = None  # probe-loss decrease of the last window (state feature)
        self._win_sum: Optional[torch.Tensor] = None
        self._win_count = 0
        self._win_loss: Optional[torch.Tensor] = None  # per-modality CE sums and row counts of the window
        self._win_sizes: List[float] = []
        self._win_steps = 0
        self._imitation: List[Dict[str, torch.Tensor]] = []  # warm-up (state, DUS-H action) pairs
        self.signal = SignalRecord()
        self._epoch_rewards: List[float] = []
        self._epoch_updates: List[Dict[str, float]] = []

    def validate(self) -> None:
        if not self.actions:
            raise self.option_error("actions", "a non-empty list of positive multipliers", self.actions)
        bad = [f for f in self.state if f not in STATE_FEATURES]
        if bad or not self.state or len(set(self.state)) != len(self.state):
            raise self.option_error("state", "a non-empty list of distinct features among " +
                                    ", ".join(STATE_FEATURES), self.state)

    @property
    def _needs_probe(self) -> bool:
        return self.reward != "spread" or self.diagnose or "loss_slope" in self.state

    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        super().configure_model(trainer, model)
        m = len(self.modalities)
        self._seed = trainer.cfg.train.seed if self.seed is None else self.seed
        if self.rl is None:
            dims = {"s_hat": m, "rho": m, "sizes": m, "progress": 1, "loss_slope": m}
            self.rl = Reinforce(sum(dims[f] for f in self.state), m, len(self.actions), self.hidden, self.layers,
                                self.policy_lr, self.rl_gamma, self.entropy_coef, self.baseline_momentum,
                                self._seed, self.advantage, m if self.reward == "own_gain" else 1, self.normalise)

    def on_fit_start(self, trainer: Trainer) -> None:
        super().on_fit_start(trainer)
        if self._needs_probe:
            n = len(trainer.splits[self.probe_split])
            self._probe_idx = probe_indices(n, self.probe_size, self._seed)

    # ------------------------------------------------------------------ window statistics
    def _observe(self, trainer, batch, out):
        super()._observe(trainer, batch, out)
        if self.reward_scores == "window":
            s, _ = self._batch_scores(trainer, batch, out)
            self._win_sum = s if self._win_sum is None else self._win_sum.to(s.device) + s
            self._win_count += 1
        if self.diagnose:
            with torch.no_grad():
                rows = [F.cross_entropy(out.logits[m].detach().float(), batch.labels(m), reduction="sum")
                        for m in self.modalities]
                counts = [torch.tensor(float(out.logits[m].shape[0]), device=rows[0].device) for m in self.modalities]
                v = torch.stack(rows + counts).double()
            self._win_loss = v if self._win_loss is None else self._win_loss + v.to(self._win_loss.device)
            sizes = [float(batch.sizes[m]) for m in self.modalities]
            self._win_sizes = sizes if not self._win_sizes else [a + b for a, b in zip(self._win_sizes, sizes)]
            self._win_steps += 1

    def _window_stats(self, trainer) -> Dict[str, List[float]]:
        """The closing window's mean sizes / N_B and mean training loss per modality (one all-reduce)."""
        m = len(self.modalities)
        steps = max(self._win_steps, 1)
        x = [v / steps / self.N_B for v in self._win_sizes] if self._win_sizes else \
            [n / self.N_B for n in self.sizes or []]
        loss = [0.0] * m
        if self._win_loss is not None:
            tot = trainer.all_reduce(self._win_loss, "sum").cpu().tolist()
            loss = [tot[j] / max(tot[m + j], 1.0) for j in range(m)]
        self._win_loss, self._win_sizes, self._win_steps = None, [], 0
        return {"x": x, "train_loss": loss}

    # ------------------------------------------------------------------ decisions
    def _reward(self, s_hat, mm_mean, probe) -> Optional[List[float]]:
        if self.reward == "spread":  # the spec's reward, read from the scores of the window's forward passes
            spread_on = s_hat
            if self.reward_scores == "window" and self._win_sum is not None:
                spread_on = (self._win_sum / max(self._win_count, 1)).cpu().tolist()
                self._win_sum, self._win_count = None, 0
            r = -imbalance(spread_on, self.spread) + (
                self.eta * (mm_mean - self._prev_mm) if self._prev_mm is not None else 0.0)
            self._prev_mm = mm_mean
            return [r]
        if self._prev_probe is None or probe is None:
            return None
        weaker, start = None, self._prev_s_hat
        if self.weaker_by == "s_hat" and start is not None:
            weaker = min(range(len(start)), key=lambda j: (start[j], j))
        return gain_reward(self._prev_probe, probe, self.reward, weaker)

    def _observation(self, s_hat, rho) -> torch.Tensor:
        feats = {"s_hat": list(s_hat), "rho": list(rho), "sizes": [n / self.N_B for n in self.sizes or []],
                 "progress": [min(self.t / self.total_steps, 1.0)],
                 "loss_slope": self._slope or [0.0] * len(self.modalities)}
        return torch.tensor([v for f in self.state for v in feats[f]], dtype=torch.float32)

    def _decide(self, trainer, s_hat, rho, mm_mean):
        assert self.rl is not None, "configure_model creates the policy"
        probe = probe_losses(trainer, self.probe_split, self._probe_idx, self.modalities) if self._needs_probe \
            else None
        window = self._window_stats(trainer) if self.diagnose else None
        reward = self._reward(s_hat, mm_mean, probe)
        if probe is not None and self._prev_probe is not None:
            self._slope = [a - b for a, b in zip(self._prev_probe[:-1], probe[:-1])]
        if self._pending is not None and reward is not None:
            self.rl.record(self._pending["obs"], self._pending["action"], reward)
            scalar = sum(reward) / len(reward)
            self._epoch_rewards.append(scalar)
            if window is not None:
                self.signal.add(window["x"], scalar, s_hat, probe, window["train_loss"])
                self._log_window(window["x"], scalar, probe)
            if len(self.rl) >= self.policy_update_every:
                if self.entropy_final is not None:
                    frac = min(self.t / self.total_steps, 1.0)
                    self.rl.entropy_coef = self.entropy_coef + (self.entropy_final - self.entropy_coef) * frac
                self._epoch_updates.append(self.rl.update())
        self._pending = None
        self._prev_probe, self._prev_s_hat = probe, list(s_hat)
        if self.diagnose:
            self.signal.open(s_hat, probe)
        if trainer.epoch < self.warmup_epochs:
            sizes = self._heuristic(rho)
            if self.warm_start == "imitate":  # the state now, and the actions nearest the sizes DUS-H picks
                target = [min(range(len(self.actions)), key=lambda a: (abs(self.actions[a] - n / self.N_B), a))
                          for n in sizes]
                self._imitation.append({"obs": self._observation(s_hat, rho), "action": torch.tensor(target)})
            return sizes
        if self._imitation:
            self.rl.imitate(torch.stack([e["obs"] for e in self._imitation]),
                            torch.stack([e["action"] for e in self._imitation]), self.imitation_steps,
                            self.imitation_smoothing)
            self._imitation = []
        obs = self._observation(s_hat, rho)
        action = self.rl.act(obs)
        self._pending = {"obs": obs, "action": action}
        return self._allocate([self.N_B * self.actions[int(a)] for a in action])

    # ------------------------------------------------------------------ logging and state
    def _log_window(self, x: List[float], reward: float, probe: Optional[List[float]]) -> None:
        """Per-window series for the report's scatter plots (``signal/x/<m>``, ``signal/reward``,
        ``signal/gain/<m>`` and ``signal/gain/fused``: probe-loss decreases over the window)."""
        for j, m in enumerate(self.modalities):
            self.log_step(f"signal/x/{m}", x[j])
        self.log_step("signal/reward", reward)
        if probe is not None and self._prev_probe is not None:
            for j, m in enumerate(self.modalities + ["fused"]):
                self.log_step(f"signal/gain/{m}", self._prev_probe[j] - probe[j])

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
        if self.diagnose:
            for k, v in self.signal.summary(self.modalities).items():
                self.log(f"signal/{k}", v)
        self._epoch_rewards, self._epoch_updates = [], []

    def state_dict(self) -> Dict[str, Any]:
        s = self._common_state()
        s.update(rl=self.rl.state_dict() if self.rl is not None else None,
                 pending=None if self._pending is None else {k: v.clone() for k, v in self._pending.items()},
                 prev_mm=self._prev_mm, prev_probe=self._prev_probe, prev_s_hat=self._prev_s_hat, slope=self._slope,
                 win_sum=None if self._win_sum is None else self._win_sum.detach().cpu().clone(),
                 win_count=self._win_count,
                 win_loss=None if self._win_loss is None else self._win_loss.detach().cpu().clone(),
                 win_sizes=list(self._win_sizes), win_steps=self._win_steps,
                 imitation=[{k: v.clone() for k, v in e.items()} for e in self._imitation],
                 signal=self.signal.state_dict())
        return s

    def load_state_dict(self, state):
        self._load_common(state)
        if state.get("rl") is not None:
            self.rl.load_state_dict(state["rl"])
        self._pending = state["pending"]
        self._prev_mm = state["prev_mm"]
        self._win_sum, self._win_count = state["win_sum"], int(state["win_count"])
        self._prev_probe, self._slope = state.get("prev_probe"), state.get("slope")
        self._prev_s_hat = state.get("prev_s_hat")
        self._win_loss, self._win_sizes = state.get("win_loss"), list(state.get("win_sizes", []))
        self._win_steps = int(state.get("win_steps", 0))
        self._imitation = list(state.get("imitation", []))
        if "signal" in state:
            self.signal.load_state_dict(state["signal"])
