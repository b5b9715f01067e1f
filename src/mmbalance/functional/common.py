"""Math shared by several methods (one implementation each): modality discrepancy ratios, Shapley
weights over modality coalitions, the probability a head gives the true class, each modality's share of a
fused head's logits, and the sum of tensor terms."""
from __future__ import annotations

import itertools
import math
from typing import Callable, Dict, FrozenSet, Iterable, Iterator, Sequence

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


def fusion_shares(modality_logits: Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]],
                  features: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Each modality's additive share of the fused logits, detached, in float32: ``modality_logits`` is a
    fusion head's ``modality_logits`` (concat: ``f_m W_m^T + b / M``; sum: that modality's head), ``features``
    the encoder features of the paired rows. The shares sum to the fused logits."""
    with torch.no_grad():
        # float32 like the head's weights: under bf16 autocast the features arrive in bf16
        feats = {m: f.detach().float() for m, f in features.items()}
        return {m: z.float() for m, z in modality_logits(feats).items()}


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


__all__ = ["coalitions", "discrepancy_ratio", "fusion_shares", "shapley_weight", "tensor_sum",
           "true_class_probability"]
