"""Math shared by several methods (one implementation each): modality discrepancy ratios, Shapley
weights over modality coalitions, the probability a head gives the true class, the sum of tensor terms, and
the weighted mean of unimodal outputs (late-fusion ensembles: UME, Greedy's branch average)."""
from __future__ import annotations

import itertools
import math
from typing import FrozenSet, Iterable, Iterator, Optional, Sequence

import torch
import torch.nn.functional as F


def discrepancy_ratio(scores: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``ρ_j = s_j / mean_{k≠j} s_k`` for every modality j (last dimension): ``ρ > 1`` means modality j
    scores above the others. For two modalities this is the papers' ``s_a / s_v`` and ``s_v / s_a``
    (OGM-GE, PMR, DUS); beyond two, the mean of the others is the reference [RECON]."""
    m = scores.shape[-1]
    if m < 2:
        raise ValueError("a discrepancy ratio needs at least two modalities")
    others = (scores.sum(-1, keepdim=True) - scores) / (m - 1)
    return scores / others.clamp_min(eps)


def true_class_probability(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``softmax(z_i)[y_i]`` for every row ``i`` (``[n]``), computed in float32."""
    return F.softmax(logits.float(), dim=1).gather(1, y.view(-1, 1)).squeeze(1)


def shapley_weight(size: int, m: int) -> float:
    """``|S|! (M - |S| - 1)! / M!``: the weight of a coalition S of ``size`` modalities (not containing the
    modality being valued) among ``m`` modalities."""
    return math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)


def tensor_sum(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum(terms)`` of one or more tensors (loss terms, logits of several heads), typed as a tensor:
    builtin ``sum`` starts from the int 0 and would return it for no terms."""
    total = sum(terms)
    if not isinstance(total, torch.Tensor):
        raise ValueError("tensor_sum: no terms to add")
    return total


def coalitions(modalities: Sequence[str]) -> Iterator[FrozenSet[str]]:
    """Every subset of ``modalities``, smallest first (the empty set included)."""
    mods = list(modalities)
    for r in range(len(mods) + 1):
        for c in itertools.combinations(mods, r):
            yield frozenset(c)


ENSEMBLE_SPACES = ("logits", "probs")


def ensemble_logits(logits: Sequence[torch.Tensor], weights: Optional[Sequence[float]] = None,
                    space: str = "logits") -> torch.Tensor:
    """The weighted mean of unimodal outputs ``[n, C]`` as evaluation logits (float32).

    ``space="logits"``: ``Σ_m w_m z_m``; ``space="probs"``: ``log Σ_m w_m softmax(z_m)`` (the log of the mean
    probability, so that the result is still a valid logit vector). ``weights`` default to uniform and are
    normalised to sum to one."""
    if not logits:
        raise ValueError("an ensemble needs at least one output")
    raw = [1.0] * len(logits) if weights is None else [float(x) for x in weights]
    if len(raw) != len(logits) or min(raw) < 0 or sum(raw) <= 0:
        raise ValueError(f"ensemble weights must be {len(logits)} non-negative numbers with a positive sum, got {raw}")
    w = [x / sum(raw) for x in raw]
    if space == "logits":
        return tensor_sum(wi * z.float() for wi, z in zip(w, logits))
    if space == "probs":
        return torch.log(tensor_sum(wi * F.softmax(z.float(), dim=1) for wi, z in zip(w, logits)).clamp_min(1e-12))
    raise ValueError(f"ensemble space must be one of {ENSEMBLE_SPACES}, got {space!r}")


__all__ = ["ENSEMBLE_SPACES", "coalitions", "discrepancy_ratio", "ensemble_logits", "shapley_weight", "tensor_sum",
           "true_class_probability"]
