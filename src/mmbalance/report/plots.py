"""Generic plots of runs and grids (per-method plots live in ``plots_<method>.py``).

Figures are built with :class:`matplotlib.figure.Figure` (Agg canvas, no pyplot state), so they work
headless and in threads.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .style import FUSED_COLOR, method_colors, modality_colors


def read_metrics(run_dir: Path) -> List[Dict[str, Any]]:
    """The per-epoch records of ``metrics.jsonl`` (a half-written last line of a live run is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return out


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))


def _save(fig, path: Path, top: float = 1.0) -> Path:
    """Lay out (``top`` < 1 leaves that fraction of the height for a suptitle) and write a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0, 1, top))
    fig.savefig(path, dpi=110)
    return path


def _int_epochs(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def t_interval(values: Sequence[float], level: float = 0.95) -> Tuple[float, float]:
    """``(mean, half-width)`` of the two-sided Student-t confidence interval of the mean (half-width NaN for
    fewer than 2 values)."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    if len(v) < 2:
        return (float(v.mean()) if len(v) else math.nan), math.nan
    half = stats.t.ppf(0.5 + level / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)


# ---------------------------------------------------------------------------- grid plots
def accuracy_points(agg: Mapping[str, Any], path: Path, metric: str = "acc") -> Optional[Path]:
    """Test ``metric`` per method: each seed (small dots), the mean (large dot) and its 95 % t-interval over
    seeds (bar), the reference method's mean as a dashed line. Points, not bars: the y-axis can show the
    data's range without a bar whose length would mislead."""
    methods = [m for m in agg["methods"] if agg["results"][m]["test"][metric]["n"]]
    if not methods:
        return None
    fig = _figure(max(5.0, 1.0 * len(methods) + 2.5), 4.2)
    ax = fig.add_subplot(111)
    colors = method_colors(agg["methods"])
    for i, m in enumerate(methods):
        vals = [100 * v for v in agg["results"][m]["test"][metric]["values"]]
        mean, half = t_interval(vals)
        jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else [0.0]
        ax.scatter(i + np.asarray(jitter), vals, s=14, color=colors[m], alpha=0.55, zorder=2, lw=0)
        ax.errorbar(i, mean, yerr=half if math.isfinite(half) else None, fmt="o", ms=8, color=colors[m],
                    ecolor=colors[m], elinewidth=2, capsize=6, zorder=3)
        ax.annotate(f"{mean:.1f}", (i, mean), xytext=(12, -3), textcoords="offset points", fontsize=8)
    ref = agg.get("reference")
    if ref in methods:
        ax.axhline(100 * agg["results"][ref]["test"][metric]["mean"], color="grey", ls="--", lw=1,
                   label=f"{ref} mean (reference)")
        ax.legend(loc="lower right", fontsize=8)
    lo, hi = ax.get_ylim()
    ax.set_ylim(max(lo, 0.0), min(hi, 100.5))  # an interval reaching past 0 or 100 % is cut at the axis
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, rotation=20, ha="right")
    ax.set_ylabel(f"test {metric} (%)")
    n = sorted({agg["results"][m]["test"][metric]["n"] for m in methods})
    ax.set_title(f"test {metric}: mean and 95 % CI over seeds (n = {', '.join(map(str, n))}); "
                 f"small dots: seeds", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _epoch_matrix(runs: Sequence[List[Dict[str, Any]]], get) -> np.ndarray:
    """``[seeds, epochs]`` of ``get(record)`` (NaN where a run is shorter or the value is missing)."""
    length = max((len(r) for r in runs), default=0)
    mat = np.full((len(runs), length), np.nan)
    for i, recs in enumerate(runs):
        for rec in recs:
            e = rec.get("epoch")
            if isinstance(e, int) and 0 <= e < length:
                v = get(rec)
                if v is not None:
                    mat[i, e] = float(v)
    return mat


def _nanmean_std(mat: np.ndarray):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (a run still in progress)
        mean = np.nanmean(mat, axis=0)
        n = np.sum(~np.isnan(mat), axis=0)
        std = np.where(n >= 2, np.nanstd(mat, axis=0, ddof=1) if mat.shape[0] >= 2 else np.nan, np.nan)
    return mean, std


def modality_curves(curves: Mapping[str, Sequence[List[Dict[str, Any]]]], modalities: Sequence[str], path: Path,
                    split: str = "val") -> Optional[Path]:
    """Validation accuracy over epochs, mean over seeds (band: ± std): fused prediction and each modality's
    own head, one line per method. ``curves`` maps method -> list of runs' metrics records."""
    methods = [m for m, runs in curves.items() if any(runs)]
    if not methods:
        return None
    panels = ["fused"] + list(modalities)
    ncol = min(3, len(panels))
    nrow = math.ceil(len(panels) / ncol)
    fig = _figure(5.0 * ncol, 3.6 * nrow)
    colors = method_colors(list(curves))
    # alternate dash styles so that methods with identical curves (e.g. a method that never acted) stay visible
    styles = {m: ("-", "--", "-.")[i % 3] for i, m in enumerate(curves)}
    for k, panel in enumerate(panels):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        for m in methods:
            runs = [r for r in curves[m] if r]
            if panel == "fused":
                mat = _epoch_matrix(runs, lambda rec: (rec.get(split) or {}).get("acc"))
            else:
                mat = _epoch_matrix(runs, lambda rec, p=panel:
                                    ((rec.get(split) or {}).get("modality_acc") or {}).get(p))
            if np.all(np.isnan(mat)):
                continue
            mean, std = _nanmean_std(mat)
            ep = np.arange(len(mean))
            ax.plot(ep, 100 * mean, color=colors[m], ls=styles[m], lw=1.8, label=f"{m} (n={len(runs)})")
            if np.any(np.isfinite(std)):
                ax.fill_between(ep, 100 * (mean - std), 100 * (mean + std), color=colors[m], alpha=0.15, lw=0)
        ax.set_title(f"{split} acc: {'fused prediction' if panel == 'fused' else panel + ' head'}", fontsize=10)
        ax.set_xlabel("epoch")
        _int_epochs(ax)
        ax.set_ylabel("accuracy (%)")
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(fontsize=7, loc="lower right")
    fig.suptitle(f"per-modality {split} accuracy over epochs (mean over seeds, band ± std)", fontsize=11)
    return _save(fig, path)


def probe_bars(agg: Mapping[str, Any], path: Path) -> Optional[Path]:
    """Linear-probe test accuracy per modality and method (bars: trained encoder; black tick: the same
    probe on the untrained encoder, the floor). A bar barely above its tick = the encoder learned little."""
    mods = [m for m in agg["modalities"] if any(
        math.isfinite(agg["results"][meth]["probe"].get(m, {}).get("trained", {}).get("mean", math.nan))
        for meth in agg["methods"])]
    if not mods:
        return None
    methods = agg["methods"]
    colors = method_colors(methods)
    fig = _figure(max(6.0, 0.55 * len(mods) * max(1, len(methods)) + 3), 4.2)
    ax = fig.add_subplot(111)
    width = 0.8 / max(1, len(methods))
    for j, meth in enumerate(methods):
        labelled = False
        for i, mod in enumerate(mods):
            p = agg["results"][meth]["probe"].get(mod)
            if not p or not math.isfinite(p["trained"]["mean"]):
                continue
            x = i - 0.4 + width * (j + 0.5)
            t, f = 100 * p["trained"]["mean"], 100 * p["floor"]["mean"]
            ax.bar(x, t, width=width * 0.92, color=colors[meth], alpha=0.8, label=None if labelled else meth)
            labelled = True
            ax.plot([x - width * 0.45, x + width * 0.45], [f, f], color="black", lw=2)
    ax.plot([], [], color="black", lw=2, label="floor (untrained encoder)")
    ax.set_xticks(range(len(mods)))
    ax.set_xticklabels(mods)
    ax.set_ylabel("linear probe test acc (%)")
    ax.set_ylim(0, 100)
    ax.set_title("linear probe per encoder: trained (bar) vs untrained floor (tick)\nmean over seeds", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


# ---------------------------------------------------------------------------- single run
def run_curves(records: List[Dict[str, Any]], path: Path, title: str = "",
               best_epoch: Optional[int] = None) -> Optional[Path]:
    """One run: training losses, fused val/test accuracy, and each modality head's val accuracy
    (dotted vertical line: the checkpoint selected on validation)."""
    if not records:
        return None
    ep = [r["epoch"] for r in records]
    mods = list(((records[-1].get("val") or {}).get("modality_acc") or {}))
    mod_colors = modality_colors(mods)
    fig = _figure(15, 3.8)
    ax = fig.add_subplot(1, 3, 1)
    keys = [k for k in (records[-1].get("train") or {}) if k == "loss" or k.startswith("loss_")]
    for k in keys:
        ax.plot(ep, [(r.get("train") or {}).get(k, np.nan) for r in records], lw=2 if k == "loss" else 1.2,
                color=FUSED_COLOR if k == "loss" else _loss_color(k[5:], mod_colors),
                ls=":" if k.startswith("loss_monitor_") else "-", label="total" if k == "loss" else k[5:])
    ax.set_title("training loss (epoch mean)", fontsize=10)
    ax.set_xlabel("epoch")
    _int_epochs(ax)
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 3, 2)
    for split, style in (("train", ":"), ("val", "-"), ("test", "--")):
        vals = [(r.get(split) or {}).get("acc") for r in records]
        if any(v is not None for v in vals):
            ax.plot(ep, [100 * v if v is not None else np.nan for v in vals], style, color=FUSED_COLOR, label=split)
    ax.set_title("fused prediction accuracy", fontsize=10)
    ax.set_xlabel("epoch")
    _int_epochs(ax)
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 3, 3)
    for m in mods:
        for split, style in (("val", "-"), ("test", "--")):
            vals = [((r.get(split) or {}).get("modality_acc") or {}).get(m) for r in records]
            ax.plot(ep, [100 * v if v is not None else np.nan for v in vals], style, color=mod_colors[m],
                    label=f"{m} {split}")
    ax.set_title("per-modality head accuracy", fontsize=10)
    ax.set_xlabel("epoch")
    _int_epochs(ax)
    ax.set_ylabel("%")
    ax.grid(alpha=0.3)
    if mods:
        ax.legend(fontsize=7)
    if best_epoch is not None and best_epoch >= 0:
        for a in fig.axes:
            a.axvline(best_epoch, color="grey", ls=":", lw=1)
    if title:
        fig.suptitle(title + (f"  (dotted: selected epoch {best_epoch})" if best_epoch is not None else ""),
                     fontsize=11)
    return _save(fig, path)


def _loss_color(term: str, mod_colors: Mapping[str, str]) -> Optional[str]:
    """A loss term's colour: its modality's (``uni_audio``, ``monitor_audio``), else matplotlib's next one."""
    for m, c in mod_colors.items():
        if term.endswith("_" + m) or term == m:
            return c
    return None
