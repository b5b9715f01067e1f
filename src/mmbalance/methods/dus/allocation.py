"""DUS's pure math: the per-step modality scores and their cumulative mean, the discrepancy, and turning wished
batch sizes into integer per-modality sizes within bounds and a budget (tested on hand-computed cases)."""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch

from ...functional.common import discrepancy_ratio, true_class_probability


def modality_scores(logits: Dict[str, torch.Tensor], labels: Dict[str, torch.Tensor],
                    modalities: Sequence[str]) -> torch.Tensor:
    """``s_t^(j) = mean_i y_i^T p_i^(j)`` [SEC]: the mean softmax probability of the true class under each
    modality's own head on that modality's own rows (``[M]``, in ``modalities`` order)."""
    return torch.stack([true_class_probability(logits[m], labels[m]).mean() for m in modalities])


def update_running_score(s_hat: Optional[torch.Tensor], s: torch.Tensor, t: int,
                         ema_momentum: Optional[float] = None) -> torch.Tensor:
    """One step of the cumulative modality score.

    ``t`` is the 1-based iteration count. Cumulative (paper, [SEC]): ``ŝ_1 = s_1``,
    ``ŝ_t = (t-1)/t · ŝ_{t-1} + 1/t · s_t``. EMA option [RECON]: ``ŝ_t = μ ŝ_{t-1} + (1-μ) s_t``
    (``ŝ_1 = s_1``). Out-of-place, so earlier values logged with ``log_step`` are never overwritten.
    """
    if s_hat is None or t <= 1:
        return s.detach().clone()
    if ema_momentum is None:
        return s_hat * ((t - 1) / t) + s.detach() * (1.0 / t)
    return s_hat * ema_momentum + s.detach() * (1.0 - ema_momentum)


def discrepancy(s_hat: torch.Tensor) -> torch.Tensor:
    """``ρ^(j) = ŝ^(j) / mean_{k≠j} ŝ^(k)`` for every modality (``ρ > 1``: modality j dominates) [RECON,
    mirrors OGM-GE's ratio]; the shared :func:`~mmbalance.functional.common.discrepancy_ratio`."""
    return discrepancy_ratio(s_hat, eps=1e-8)


def imbalance(s_hat: Sequence[float], kind: str = "maxmin") -> float:
    """Spread of the modality scores. ``maxmin`` equals ``|ŝ^(1) - ŝ^(2)|`` for two modalities;
    ``std`` is the population standard deviation (= ``|ŝ^(1) - ŝ^(2)| / 2`` for two)."""
    v = [float(x) for x in s_hat]
    if kind == "maxmin":
        return max(v) - min(v)
    if kind == "std":
        mu = sum(v) / len(v)
        return math.sqrt(sum((x - mu) ** 2 for x in v) / len(v))
    raise ValueError(f"imbalance must be 'maxmin' or 'std', got {kind!r}")


def allocate_sizes(raw: Sequence[float], n_lo: int, n_hi: int, total: Optional[int] = None,
                   multiple: int = 1) -> List[int]:
    """Turn real-valued wishes into integer batch sizes within ``[n_lo, n_hi]``.

    ``multiple`` > 1 quantises every size to a multiple of it (size buckets, so that a compiled model
    meets a bounded set of batch shapes): the allocation below runs in units of ``multiple`` with bounds
    ``[ceil(n_lo/q), floor(n_hi/q)]`` and budget ``total/q`` (which must then be an integer).

    Without ``total``: ``clip(round_half_up(raw_j), n_lo, n_hi)``.
    With ``total`` (budget preservation): the sizes are ``clip(c·raw_j, n_lo, n_hi)`` with the one scale
    ``c`` that makes them sum to ``total`` (a proportional rescale that respects the bounds, found
    exactly from the kinks of the piecewise-linear sum), then integerised by largest remainder so the
    sum is exactly ``total``.
    """
    if n_lo < 1 or n_hi < n_lo:
        raise ValueError(f"batch-size bounds must satisfy 1 <= n_lo <= n_hi, got [{n_lo}, {n_hi}]")
    q = int(multiple)
    if q < 1:
        raise ValueError(f"the size multiple must be >= 1, got {multiple}")
    if q > 1:
        lo_u, hi_u = -(-int(n_lo) // q), int(n_hi) // q
        if hi_u < lo_u:
            raise ValueError(f"no multiple of {q} lies within the batch-size bounds [{n_lo}, {n_hi}]")
        if total is not None and int(total) % q:
            raise ValueError(f"budget {total} is not a multiple of the size multiple {q}")
        units = allocate_sizes([float(r) / q for r in raw], lo_u, hi_u, None if total is None else int(total) // q)
        return [u * q for u in units]
    raw = [max(float(r), 0.0) for r in raw]
    if total is None:
        return [min(max(int(math.floor(r + 0.5)), n_lo), n_hi) for r in raw]
    m = len(raw)
    total = int(total)
    if not m * n_lo <= total <= m * n_hi:
        raise ValueError(f"budget {total} cannot be split into {m} sizes within [{n_lo}, {n_hi}]")
    if sum(raw) <= 0:
        raw = [1.0] * m
    raw = [max(r, 1e-12) for r in raw]  # a zero wish still gets n_lo and, if needed, more

    def filled(c):
        return [min(max(c * r, n_lo), n_hi) for r in raw]

    # Σ_j clip(c·raw_j) is piecewise linear and non-decreasing in c with kinks at n_lo/raw_j, n_hi/raw_j:
    # find the segment where it reaches the budget and interpolate (exact, O(M^2) for M modalities).
    prev_c, prev_f = 0.0, float(m * n_lo)
    c = 0.0
    for bp in sorted({b / r for r in raw for b in (n_lo, n_hi)}):
        f = sum(filled(bp))
        if f >= total:
            c = prev_c if f == prev_f else prev_c + (total - prev_f) * (bp - prev_c) / (f - prev_f)
            break
        prev_c, prev_f = bp, f
    x = filled(c)
    n = [min(max(int(math.floor(v + 1e-9)), n_lo), n_hi) for v in x]
    frac = [v - k for v, k in zip(x, n)]
    while sum(n) < total:  # hand out the rounding remainder, largest fraction first (ties: lower index)
        j = max((j for j in range(m) if n[j] < n_hi), key=lambda j: (frac[j], -j))
        n[j] += 1
        frac[j] = -1.0
    while sum(n) > total:
        j = min((j for j in range(m) if n[j] > n_lo), key=lambda j: (frac[j], j))
        n[j] -= 1
        frac[j] = 2.0
    return n


def heuristic_sizes(rho: Sequence[float], base: int, gamma: float, n_lo: int, n_hi: int,
                    preserve_budget: bool = True, multiple: int = 1) -> List[int]:
    """DUS-H [RECON]: ``n^(j) = clip(round(N_B · (ρ^(j))^(-γ)), n_lo, n_hi)``; with ``preserve_budget``
    rescaled (within the bounds) so that ``Σ_j n^(j) = M · N_B``; quantised to ``multiple``."""
    raw = [base * max(float(r), 1e-8) ** (-gamma) for r in rho]
    return allocate_sizes(raw, n_lo, n_hi, len(raw) * base if preserve_budget else None, multiple)
