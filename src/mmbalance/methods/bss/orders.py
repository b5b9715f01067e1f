"""BSS's schedules and epoch orders: the root pacing of BSS-H's curriculum, BSS-L's sampling probabilities,
and the :class:`~mmbalance.engine.samplers.EpochOrder` s that realise them."""
from __future__ import annotations

import math
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch

from ...data.base import IndexBatch
from ...engine.samplers import Batcher, EpochOrder, epoch_generator

_SALT_H, _SALT_L = 0xB55A, 0xB55B  # decorrelate BSS orders from the default shuffling stream


def pacing(t: float, lambda0: float = 0.1, T_grow: float = 40) -> float:
    """Root pacing function ``λ(t) = min(1, sqrt((1 − λ0²)/T_grow · t + λ0²))`` [PAPER/CODE].

    ``t`` is the pacing clock *as given*; the plug-in passes ``epoch + 1`` like the released code
    (``pace_offset=1``), so epoch 0 already uses ``λ(1) ≈ 0.186`` and epoch ``T_grow − 1`` the full set.
    """
    if not 0.0 < lambda0 <= 1.0:
        raise ValueError(f"bss-h: lambda0 must be in (0, 1], got {lambda0}")
    if T_grow <= 0:
        raise ValueError(f"bss-h: T_grow must be > 0, got {T_grow}")
    return min(1.0, math.sqrt(max(0.0, (1.0 - lambda0 ** 2) / T_grow * t + lambda0 ** 2)))


def prefix_size(n: int, fraction: float) -> int:
    """``⌊n·λ⌋`` (at least one sample). The tiny epsilon keeps ``λ = 1`` computed in floating point as
    ``0.99999999…`` from dropping the last sample."""
    return max(1, min(int(n), int(math.floor(n * fraction + 1e-9))))


def sampling_probabilities(s: torch.Tensor, mode: str = "softmax", linear_offset: float = 1.01) -> torch.Tensor:
    """Sampling distribution from scores (float64, sums to 1).

    ``softmax``: ``p = exp(ŝ) / Σ exp(ŝ)`` [PAPER]. ``linear``: ``w = linear_offset + s``, ``p = w / Σ w``
    with ``linear_offset = 1.01`` [CODE: ``1 − (loss_norm − sim_norm) + 0.01``]; a weight ≤ 0 (possible
    with the NVGesture script's offset 1.0) is raised to a tiny positive value so that a full
    without-replacement permutation stays defined.
    """
    s = s.detach().double().cpu()
    if mode == "softmax":
        return torch.softmax(s, dim=0)
    if mode == "linear":
        w = (float(linear_offset) + s).clamp_min(1e-12)
        return w / w.sum()
    raise ValueError(f"bss-l: prob_mode must be 'softmax' or 'linear', got {mode!r}")


def ema_update(prev: Optional[torch.Tensor], new: torch.Tensor, beta: float) -> torch.Tensor:
    """``ŝ^{k+1} = s^{k+1}`` at the first scoring, else ``(1 − β)·ŝ^k + β·s^{k+1}`` [PAPER]."""
    if prev is None:
        return new.detach().clone()
    return (1.0 - float(beta)) * prev + float(beta) * new.detach()


class CurriculumOrder(EpochOrder):
    """BSS-H order: a seeded random permutation of the top ``⌊n·λ(t)⌋`` samples of ``ranking``.

    The pacing clock is ``t = epoch − start_epoch + pace_offset`` (``start_epoch``: the epoch the scores
    were computed at). Deterministic per (seed, epoch): identical on every DDP rank and after resume.
    """

    def __init__(self, ranking: torch.Tensor, seed: int, lambda0: float = 0.1, T_grow: float = 40,
                 pace_offset: int = 1, start_epoch: int = 0, salt: int = _SALT_H):
        super().__init__(len(ranking), seed)
        self.ranking = ranking.long().cpu()
        self.lambda0, self.T_grow, self.pace_offset = float(lambda0), float(T_grow), int(pace_offset)
        self.start_epoch, self.salt = int(start_epoch), int(salt)
        self._cache: Optional[Tuple[int, torch.Tensor]] = None

    def fraction(self, epoch: int) -> float:
        return pacing(epoch - self.start_epoch + self.pace_offset, self.lambda0, self.T_grow)

    def num_used(self, epoch: int) -> int:
        return prefix_size(self.num_samples, self.fraction(epoch))

    def indices(self, epoch: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != epoch:
            m = self.num_used(epoch)
            perm = torch.randperm(m, generator=epoch_generator(self.seed, epoch, self.salt))
            self._cache = (epoch, self.ranking[:m][perm])
        return self._cache[1]

    def state_dict(self) -> Dict[str, Any]:
        return {"ranking": self.ranking, "start_epoch": self.start_epoch}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state:
            self.ranking, self.start_epoch = state["ranking"], int(state["start_epoch"])
            self._cache = None


class BiasedOrder(EpochOrder):
    """BSS-L order drawn from per-sample probabilities ``p`` (seeded per epoch).

    ``biased_permutation``: ``n`` draws *without* replacement, i.e. every sample exactly once, balanced
    (high-p) samples tending to come earlier — how the released code realises "sampling by p" [CODE].
    ``with_replacement``: ``n`` i.i.d. draws from ``p`` (some samples repeat, some are skipped) [PAPER,
    literal reading].
    """

    MODES = ("biased_permutation", "with_replacement")

    def __init__(self, probs: torch.Tensor, seed: int, mode: str = "biased_permutation", salt: int = _SALT_L):
        super().__init__(len(probs), seed)
        if mode not in self.MODES:
            raise ValueError(f"bss-l: sampling_mode must be one of {self.MODES}, got {mode!r}")
        self.probs = probs.detach().double().cpu()
        self.mode, self.salt = mode, int(salt)
        self._cache: Optional[Tuple[int, torch.Tensor]] = None

    def indices(self, epoch: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != epoch:
            g = epoch_generator(self.seed, epoch, self.salt)
            idx = torch.multinomial(self.probs, self.num_samples, replacement=self.mode == "with_replacement",
                                    generator=g)
            self._cache = (epoch, idx)
        return self._cache[1]

    def state_dict(self) -> Dict[str, Any]:
        return {"probs": self.probs, "mode": self.mode}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state:
            self.probs, self.mode, self._cache = state["probs"], state["mode"], None


class _ScoringBatcher(Batcher):
    """Fixed-size batches in order; in train mode a trailing batch of one sample is avoided (BatchNorm
    cannot normalise a single sample) by making the last two batches ``bs − 1`` and ``2``."""

    def __init__(self, batch_size: int, avoid_singleton: bool):
        self.batch_size, self.avoid_singleton = int(batch_size), bool(avoid_singleton)

    def _sizes(self, n: int) -> List[int]:
        bs = self.batch_size
        sizes = [bs] * (n // bs) + ([n % bs] if n % bs else [])
        if self.avoid_singleton and len(sizes) > 1 and sizes[-1] == 1 and bs > 2:
            sizes[-2:] = [bs - 1, 2]
        return sizes

    def batches(self, order, epoch) -> Iterator[IndexBatch]:
        start = 0
        for size in self._sizes(len(order)):
            yield IndexBatch(order[start:start + size].tolist())
            start += size

    def num_batches(self, num_indices: int) -> int:
        return len(self._sizes(num_indices))

