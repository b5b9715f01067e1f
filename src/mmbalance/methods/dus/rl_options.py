"""DUS-RL's options (every one [RECON]: the paper says only that REINFORCE decides the sizes).

The defaults are the learning-signal design measured in docs/results/dus.md ("measured" in the tags): a
window reward on the probe loss of the currently weaker modality, read after the window's updates. The
spec's design (§3.3) is the options of :data:`SPEC_DESIGN`."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ...engine.options import option
from .base import DUSOptions

DEFAULT_ACTIONS = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
#: policy state features, in the order they are concatenated
STATE_FEATURES = ("s_hat", "rho", "sizes", "progress", "loss_slope")
SPEC_STATE = ["s_hat", "rho", "sizes", "progress"]
#: the spec's (§3.3) design, as overrides of the defaults
SPEC_DESIGN = {"reward": "spread", "update_every": 1, "rl_gamma": 0.9, "advantage": "episode", "policy_lr": 1e-3,
               "policy_update_every": 10, "entropy_final": None}


@dataclass
class DUSRLOptions(DUSOptions):
    actions: List[float] = option(list(DEFAULT_ACTIONS), "multipliers of N_B the policy chooses from",
                                  "[RECON, spec §3.3]", gt=0)
    hidden: int = option(64, "policy MLP width", "[RECON, spec §3.3]", ge=1)
    layers: int = option(2, "policy MLP hidden layers", "[RECON, spec §3.3]", ge=0)
    update_every: int = option(5, "steps per decision window (the policy's action holds for the window; its "
                               "reward is measured at the window's end; spec: 1, every iteration)",
                               "[RECON, measured]", ge=1)
    policy_lr: float = option(1e-2, "Adam learning rate of the policy (spec: 1e-3, which leaves the policy "
                              "uniform in a 20-epoch run)", "[RECON, measured]", gt=0)
    rl_gamma: float = option(0.0, "discount of the returns (0: each window's reward is credited to its own "
                             "action only, a contextual bandit; spec: 0.9)", "[RECON, measured]", ge=0, le=1)
    entropy_coef: float = option(0.01, "entropy bonus beta (at the start of the run, see entropy_final)",
                                 "[RECON, spec §3.3]", ge=0)
    entropy_final: Optional[float] = option(0.0, "entropy bonus at the end of the run, linear in t/T from "
                                            "entropy_coef; null = constant (spec)", "[RECON]", ge=0)
    baseline_momentum: float = option(0.9, "EMA momentum of the baseline (and, with advantage=running, of the "
                                      "advantage's scale)", "[RECON, spec §3.3]", ge=0, lt=1)
    advantage: str = option("running", "episode: G - b with one baseline, an EMA of the episodes' mean returns "
                            "(spec); running: per-transition running baseline and scale (RunningNormaliser), "
                            "per modality with reward=own_gain", "[RECON, measured]", choices=("episode", "running"))
    normalise: bool = option(True, "advantage=running: divide by the running scale of the returns", "[RECON]")
    reward: str = option("weakest_gain", "spread: -spread(s_hat) + eta * change of the fused score (spec; read before "
                         "the window's updates act); fused_gain / weakest_gain: decrease of the fused / currently "
                         "weakest modality's probe loss over the window; own_gain: each modality's own probe-loss "
                         "decrease (factorised)", "[RECON, measured]",
                         choices=("spread", "fused_gain", "weakest_gain", "own_gain"))
    weaker_by: str = option("probe", "reward=weakest_gain: the weaker modality is the one with the highest probe "
                            "loss (probe) or the lowest s_hat (s_hat, DUS's own score) at the window's start",
                            "[RECON]", choices=("probe", "s_hat"))
    eta: float = option(1.0, "reward=spread: weight of the fused-score improvement", "[RECON, spec §3.3]")
    spread: str = option("maxmin", "reward=spread: maxmin (= |s1 - s2| for two) or std", "[RECON, spec §3.3]",
                         choices=("maxmin", "std"))
    reward_scores: str = option("s_hat", "reward=spread: spread of s_hat (the spec) or window (mean batch scores "
                                "since the last decision)", "[RECON]", choices=("s_hat", "window"))
    probe_split: str = option("val", "split of the fixed probe set whose losses the gain rewards and the "
                              "diagnostic measure (val: held out from the weights, used only for these "
                              "decisions and model selection; test is never used)", "[RECON]",
                              choices=("val", "train"))
    probe_size: int = option(256, "samples in the probe set (a fixed seeded subset; all if the split is "
                             "smaller)", "[RECON]", ge=1)
    diagnose: bool = option(True, "record the reward-signal diagnostic (logs signal/...; evaluates the probe at "
                            "every decision even when the reward does not need it)", "[RECON]")
    state: List[str] = option(list(SPEC_STATE), "policy state features, any of " + ", ".join(STATE_FEATURES) +
                              " (loss_slope: each modality's probe-loss decrease over the last window)",
                              "[RECON, spec §3.3]")
    policy_update_every: int = option(5, "K, transitions per REINFORCE update (spec: 10)", "[RECON, measured]",
                                      ge=1)
    warmup_epochs: int = option(1, "epochs of DUS-H before the policy acts", "[RECON]", ge=0)
    warm_start: str = option("none", "imitate: before acting, fit the policy to the actions nearest DUS-H's "
                             "sizes in the warm-up states (behaviour cloning)", "[RECON]",
                             choices=("none", "imitate"))
    imitation_steps: int = option(200, "warm_start=imitate: Adam steps of the behaviour cloning", "[RECON]", ge=1)
    imitation_smoothing: float = option(0.5, "warm_start=imitate: label smoothing of the cloned actions (0 clones "
                                        "a near-deterministic policy that no longer explores)", "[RECON]",
                                        ge=0, le=1)
    seed: Optional[int] = option(None, "policy initialisation and sampling seed; null = train.seed", "[RECON]")
