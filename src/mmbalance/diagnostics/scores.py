"""Summaries of per-sample score vectors for logs and plots (BSS): moments, quantiles, a fixed-range
histogram, and the rank correlation between two scorings."""
from __future__ import annotations

from typing import Any, Dict

import torch

HIST_BINS = 20


def summarize_scores(s: torch.Tensor, lo: float, hi: float, bins: int = HIST_BINS) -> Dict[str, Any]:
    """Mean, std, min/max, quantiles and a fixed-range histogram (counts) of a score vector."""
    s = s.float().cpu()
    q = torch.quantile(s, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))
    out = {"mean": float(s.mean()), "std": float(s.std(unbiased=False)), "min": float(s.min()),
           "max": float(s.max())}
    out.update({f"q{int(round(p * 100)):02d}": float(v) for p, v in zip((0.1, 0.25, 0.5, 0.75, 0.9), q)})
    out["hist"] = torch.histc(s, bins=bins, min=lo, max=hi).long().tolist()
    return out


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation (ties broken by index): how much the ordering changed between two scorings."""
    ra = torch.empty_like(a, dtype=torch.float64)
    rb = torch.empty_like(b, dtype=torch.float64)
    ra[torch.argsort(a, stable=True)] = torch.arange(len(a), dtype=torch.float64)
    rb[torch.argsort(b, stable=True)] = torch.arange(len(b), dtype=torch.float64)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else 1.0
