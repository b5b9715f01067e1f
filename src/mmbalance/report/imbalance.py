"""The imbalance panel: how much each modality learned, per method (or run), in one figure.

One row per method, three columns, one colour per modality (the page's colours, :mod:`.style`):

1. each modality's own head: validation accuracy over epochs (mean over seeds, band ± std);
2. each modality's *share* of the fused head (concat/sum fusion: the fused logits restricted to that
   modality's part): validation accuracy over epochs — what the fused prediction takes from each modality;
3. the linear-probe gap (probe on the trained encoder minus the same probe on its untrained initialisation)
   per modality, at the selected checkpoint: mean and 95 % CI over seeds. The probe runs once per run, on
   the selected checkpoint, so this column has no epoch axis.

A modality whose head and share stay low while the other's climb, and whose probe gap is small, is the one
the joint training starves.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from .plots import _epoch_matrix, _figure, _int_epochs, _nanmean_std, _save, t_interval
from .style import modality_colors

CAPTION = ("Imbalance panel, one row per {what}; colour = modality (the same on every figure of this page). "
           "Left: each modality's own classifier head, validation accuracy over epochs. Middle: accuracy of each "
           "modality's share of the fused head (its part of a concat/sum fusion), i.e. what the fused prediction "
           "gets from it. Lines: mean over seeds, bands ± std. Right: linear-probe gain of each frozen encoder "
           "over its untrained initialisation (probe accuracy trained − floor, percentage points), at the "
           "selected checkpoint: mean and 95 % CI over seeds, dots = seeds (the probe runs once per run, so this "
           "column has no epochs). A modality that stays low in all three is the starved one.")


def probe_gaps(summaries: Sequence[Mapping[str, Any]]) -> Dict[str, List[float]]:
    """``{modality: [trained - floor per run, in percentage points]}`` from runs' ``summary.json`` probes."""
    out: Dict[str, List[float]] = {}
    for s in summaries:
        for m, p in (s.get("probe") or {}).items():
            t, f = p.get("trained"), p.get("floor")
            if t is not None and f is not None and math.isfinite(t) and math.isfinite(f):
                out.setdefault(m, []).append(100 * (t - f))
    return out


def _curve(ax, runs, key: str, modality: str, color: str, split: str) -> bool:
    mat = _epoch_matrix(runs, lambda rec: ((rec.get(split) or {}).get(key) or {}).get(modality))
    if mat.size == 0 or np.all(np.isnan(mat)):
        return False
    mean, std = _nanmean_std(mat)
    ep = np.arange(len(mean))
    ax.plot(ep, 100 * mean, color=color, lw=1.8, label=modality)
    if np.any(np.isfinite(std)):
        ax.fill_between(ep, 100 * (mean - std), 100 * (mean + std), color=color, alpha=0.18, lw=0)
    return True


def imbalance_panel(groups: Mapping[str, Sequence[List[Dict[str, Any]]]], gaps: Mapping[str, Mapping[str, List[float]]],
                    modalities: Sequence[str], path: Path, split: str = "val") -> Optional[Path]:
    """Write the panel. ``groups``: row label (method) -> its runs' metrics records; ``gaps``: row label ->
    :func:`probe_gaps` of its runs."""
    rows = [g for g, runs in groups.items() if any(runs)]
    modalities = list(dict.fromkeys(modalities))
    if not rows or not modalities:
        return None
    colors = modality_colors(modalities)
    fig = _figure(14.0, 2.8 * len(rows) + 0.8)
    axes = fig.subplots(len(rows), 3, squeeze=False, sharey="col")
    for i, label in enumerate(rows):
        runs = [r for r in groups[label] if r]
        ax_head, ax_share, ax_gap = axes[i]
        for ax, key, what in ((ax_head, "modality_acc", "own head"),
                              (ax_share, "share_acc", "share of the fused head")):
            drawn = [_curve(ax, runs, key, m, colors[m], split) for m in modalities]
            if not any(drawn):
                ax.text(0.5, 0.5, "not logged" + (" (fusion without per-modality shares)" if key == "share_acc"
                                                  else ""), ha="center", va="center", transform=ax.transAxes,
                        fontsize=8, color="grey")
            ax.set_title(f"{label} (n={len(runs)}): {split} acc, {what}", fontsize=9)
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy (%)")
            _int_epochs(ax)
            ax.grid(alpha=0.3)
            if any(drawn):
                ax.legend(fontsize=7, loc="lower right")
        g = gaps.get(label) or {}
        shown = [m for m in modalities if g.get(m)]
        for j, m in enumerate(shown):
            mean, half = t_interval(g[m])
            vals = g[m]
            jitter = np.linspace(-0.12, 0.12, len(vals)) if len(vals) > 1 else [0.0]
            ax_gap.scatter(j + np.asarray(jitter), vals, s=12, color=colors[m], alpha=0.5, lw=0)
            ax_gap.errorbar(j, mean, yerr=half if math.isfinite(half) else None, fmt="o", ms=7, color=colors[m],
                            elinewidth=2, capsize=5)
        ax_gap.axhline(0.0, color="grey", lw=0.8, ls="--")
        ax_gap.set_xticks(range(len(shown)))
        ax_gap.set_xticklabels(shown)
        ax_gap.set_xlim(-0.6, max(len(shown), 1) - 0.4)
        ax_gap.set_ylabel("probe trained − floor (pp)")
        ax_gap.set_title(f"{label}: probe gain over the untrained encoder", fontsize=9)
        ax_gap.grid(axis="y", alpha=0.3)
        if not shown:
            ax_gap.text(0.5, 0.5, "no probe (eval.probe=false)", ha="center", va="center",
                        transform=ax_gap.transAxes, fontsize=8, color="grey")
    fig.suptitle("imbalance: what each modality learned (colour = modality)", fontsize=11)
    return _save(fig, path, top=1 - 0.35 / (2.8 * len(rows) + 0.8))


__all__ = ["CAPTION", "imbalance_panel", "probe_gaps"]
