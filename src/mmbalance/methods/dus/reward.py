"""DUS-RL's learning signal [RECON]: probe losses measured after a decision window's updates, the rewards
built from them, and the running baseline/normaliser of the advantages.

Timing is what makes a window reward carry the action's effect: the action chosen at decision ``d``
sets the sizes of the steps up to decision ``d+1``; the probe is evaluated at each decision *after* that
step's optimizer update, so ``probe(d) - probe(d+1)`` is what the window's updates did to the probe loss.
(The spec's reward is read from the scores of the forward passes of the window, which run *before* the
updates they feed: with one step per window it cannot see the action at all.)
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from ...engine.trainer import Trainer

#: rewards from the probe's losses; ``spread`` is the spec's reward on the scores (no probe)
GAIN_REWARDS = ("fused_gain", "weakest_gain", "own_gain")


@torch.no_grad()
def probe_losses(trainer: Trainer, split: str, indices: torch.Tensor, modalities: Sequence[str]) -> List[float]:
    """Mean cross-entropy of each modality's head and of the fused head (sum of the heads without one) on
    a fixed probe set, in eval mode, without disturbing training (:meth:`Trainer.side_pass`). The vector
    is averaged over DDP ranks (every rank evaluates the same samples with the same weights; the mean
    makes the policy's inputs identical by construction). Returns ``[L_1, ..., L_M, L_fused]``."""
    m = len(modalities)
    sums = torch.zeros(m + 1, dtype=torch.float64, device=trainer.device)
    counts = torch.zeros(m + 1, dtype=torch.float64, device=trainer.device)
    with trainer.side_pass(train=False):
        for batch in trainer.data.iter_batches(split, indices, train=False):
            out = trainer.forward(batch.inputs)
            fused = out.fused if out.fused is not None else \
                torch.stack([out.logits[mod][: out.n_pair] for mod in modalities]).sum(0)
            pairs = [(out.logits[mod], batch.labels(mod)) for mod in modalities] + [(fused, batch.paired_labels())]
            for j, (logits, y) in enumerate(pairs):
                sums[j] += F.cross_entropy(logits.float(), y, reduction="sum").double()
                counts[j] += y.numel()
    vec = sums / counts.clamp_min(1)
    return trainer.all_reduce(vec, "mean").cpu().tolist()


def probe_indices(n: int, size: int, seed: int) -> torch.Tensor:
    """A fixed, seeded subset of ``size`` indices of a split of ``n`` samples (all of them if smaller),
    sorted; drawn from its own generator (the run's RNG is untouched)."""
    if size >= n:
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed) + 29)
    return torch.randperm(n, generator=g)[:size].sort().values


def gain_reward(before: Sequence[float], after: Sequence[float], kind: str,
                weaker: Optional[int] = None) -> List[float]:
    """Reward(s) of a window from the probe losses ``[L_1..L_M, L_fused]`` at its start and its end
    (gain = decrease of a loss, positive = the window helped):

    * ``fused_gain``: ``[L_fused(before) - L_fused(after)]``;
    * ``weakest_gain``: the gain of the currently weaker modality: index ``weaker`` when given (e.g. the
      lowest ŝ), else the modality whose own probe loss was the highest at the window's start;
    * ``own_gain``: one reward per modality, its own loss's gain (for the factorised advantage).
    """
    b, a = [float(v) for v in before], [float(v) for v in after]
    m = len(b) - 1
    if kind == "fused_gain":
        return [b[m] - a[m]]
    if kind == "weakest_gain":
        j = max(range(m), key=lambda k: (b[k], -k)) if weaker is None else int(weaker)
        return [b[j] - a[j]]
    if kind == "own_gain":
        return [b[j] - a[j] for j in range(m)]
    raise ValueError(f"gain reward must be one of {GAIN_REWARDS}, got {kind!r}")


class RunningNormaliser:
    """Running baseline and scale of returns, per component (``dim`` = 1 for a shared reward, M for the
    factorised one), updated one transition at a time in order.

    For each return ``G`` (a vector): the advantage is ``(G - b) / max(σ, eps)`` with the baseline ``b``
    and scale ``σ = sqrt(v)`` of the transitions *before* it (so the baseline never contains the return it
    is compared with); then ``b ← μ·b + (1-μ)·G`` and ``v ← μ·v + (1-μ)·(G - b_old)²``. The first return
    only initialises ``b`` (advantage 0). Without ``normalise`` the advantage is ``G - b``.
    """

    def __init__(self, dim: int, momentum: float = 0.9, normalise: bool = True, eps: float = 1e-8):
        self.dim, self.momentum, self.normalise, self.eps = int(dim), float(momentum), bool(normalise), eps
        self.mean: Optional[List[float]] = None
        self.var: List[float] = [0.0] * self.dim
        self.count = 0

    def advantages(self, returns: Sequence[Sequence[float]]) -> List[List[float]]:
        out = []
        mu = self.momentum
        for g in returns:
            g = [float(v) for v in g]
            if self.mean is None:
                self.mean, adv = list(g), [0.0] * self.dim
            else:
                dev = [gi - bi for gi, bi in zip(g, self.mean)]
                if self.normalise:
                    adv = [d / max(math.sqrt(v), self.eps) if self.count > 1 else d for d, v in zip(dev, self.var)]
                else:
                    adv = dev
                self.var = [mu * v + (1 - mu) * d * d for v, d in zip(self.var, dev)]
                self.mean = [mu * bi + (1 - mu) * gi for bi, gi in zip(self.mean, g)]
            self.count += 1
            out.append(adv)
        return out

    def state_dict(self) -> Dict[str, Any]:
        return {"mean": None if self.mean is None else list(self.mean), "var": list(self.var), "count": self.count}

    def load_state_dict(self, s: Dict[str, Any]) -> None:
        self.mean = None if s["mean"] is None else list(s["mean"])
        self.var, self.count = list(s["var"]), int(s["count"])
