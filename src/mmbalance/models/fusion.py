"""Fusion heads: ``{modality: feature [n, d_m]}`` -> fused logits ``[n, C]``.

Factories take ``(feature_dims: dict[str, int], num_classes, **kwargs)``. ``concat`` and ``sum`` also
expose :meth:`modality_logits`, each modality's additive share of the fused logits (OGM-GE and PMR
read it; the shares sum to the fused logits).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ..registry import FUSIONS


class ConcatFusion(nn.Module):
    """Linear layer on the concatenated features (every seed codebase uses this)."""

    def __init__(self, feature_dims: Dict[str, int], num_classes: int):
        super().__init__()
        self.modalities = list(feature_dims)
        self.dims = [feature_dims[m] for m in self.modalities]
        self.fc = nn.Linear(sum(self.dims), num_classes)

    def forward(self, feats: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.fc(torch.cat([feats[m] for m in self.modalities], dim=1))

    def modality_logits(self, feats: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Share of modality m: ``f_m W_m^T + b / M`` (as OGM-GE splits the concat layer)."""
        out, start = {}, 0
        bias = self.fc.bias / len(self.modalities)
        for m, d in zip(self.modalities, self.dims):
            out[m] = feats[m] @ self.fc.weight[:, start:start + d].t() + bias
            start += d
        return out

    def weight_slice(self, modality: str) -> slice:
        start = sum(self.dims[: self.modalities.index(modality)])
        return slice(start, start + self.dims[self.modalities.index(modality)])


class SumFusion(nn.Module):
    """Sum of one linear layer per modality."""

    def __init__(self, feature_dims: Dict[str, int], num_classes: int):
        super().__init__()
        self.modalities = list(feature_dims)
        self.fcs = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in feature_dims.items()})

    def forward(self, feats):
        return sum(self.fcs[m](feats[m]) for m in self.modalities)

    def modality_logits(self, feats):
        return {m: self.fcs[m](feats[m]) for m in self.modalities}


class FiLMFusion(nn.Module):
    """FiLM (Perez et al. 2018): the ``target`` modality's feature is scaled and shifted by the others.

    ``gamma, beta = Linear(concat(others))``; logits = ``Linear(gamma * f_target + beta)``.
    """

    def __init__(self, feature_dims: Dict[str, int], num_classes: int, target: str | None = None):
        super().__init__()
        self.modalities = list(feature_dims)
        self.target = target or self.modalities[0]
        if self.target not in feature_dims:
            raise ValueError(f"film fusion: target {self.target!r} is not a modality ({self.modalities})")
        self.others = [m for m in self.modalities if m != self.target]
        d_t = feature_dims[self.target]
        self.film = nn.Linear(sum(feature_dims[m] for m in self.others), 2 * d_t)
        self.fc = nn.Linear(d_t, num_classes)

    def forward(self, feats):
        cond = torch.cat([feats[m] for m in self.others], dim=1)
        gamma, beta = self.film(cond).chunk(2, dim=1)
        return self.fc(gamma * feats[self.target] + beta)


class GatedFusion(nn.Module):
    """Gated sum: each modality is projected to ``hidden`` and weighted by a sigmoid gate computed
    from all features; logits = ``Linear(sum_m gate_m * proj_m(f_m))``."""

    def __init__(self, feature_dims: Dict[str, int], num_classes: int, hidden: int = 128):
        super().__init__()
        self.modalities = list(feature_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in feature_dims.items()})
        self.gate = nn.Linear(sum(feature_dims.values()), len(self.modalities))
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, feats):
        g = torch.sigmoid(self.gate(torch.cat([feats[m] for m in self.modalities], dim=1)))
        h = sum(g[:, i:i + 1] * self.proj[m](feats[m]) for i, m in enumerate(self.modalities))
        return self.fc(h)


@FUSIONS.register("concat")
def concat(feature_dims, num_classes, **kw):
    """Linear on concatenated features."""
    return ConcatFusion(feature_dims, num_classes, **kw)


@FUSIONS.register("sum")
def sum_(feature_dims, num_classes, **kw):
    """Sum of per-modality linear layers."""
    return SumFusion(feature_dims, num_classes, **kw)


@FUSIONS.register("film")
def film(feature_dims, num_classes, **kw):
    """FiLM: one modality modulated by the others."""
    return FiLMFusion(feature_dims, num_classes, **kw)


@FUSIONS.register("gated")
def gated(feature_dims, num_classes, **kw):
    """Sigmoid-gated sum of projected features."""
    return GatedFusion(feature_dims, num_classes, **kw)
