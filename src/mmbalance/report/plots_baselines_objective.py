"""Plots for G-Blending, MLA, ReconBoost and SMV runs, from ``metrics.jsonl``'s per-epoch ``plugins``:

* ``gblending_weights.png`` — the blend weight of every head over epochs (estimation epochs marked);
* ``smv_valuation.png`` — mean Shapley contribution per modality and the extra copies each receives;
* ``reconboost_schedule.png`` — per epoch, the steps spent learning each modality and on global
  rectification, and the boost rate ρ, next to every head's validation accuracy;
* ``mla_projector.png`` — trace(P)/d of the OWM projector (how much of the feature space is protected)
  next to the per-modality validation accuracy of the shared head.
"""
from __future__ import annotations

import pathlib
import re
from typing import Dict, List

import numpy as np

from .logkeys import signals
from .plots import read_metrics as _records
from .style import FUSED_COLOR, modality_colors

METHODS = ("gblending", "mla", "reconboost", "smv")
CAPTIONS = {
    "gblending_weights.png": "G-Blending: the loss weight of each head (modalities and the fused head) over "
                             "epochs; dotted: the epochs where the weights were re-estimated from the heads' "
                             "overfitting-to-generalisation ratios.",
    "smv_valuation.png": "SMV: mean Shapley contribution of each modality on the training set (1 = a fair share) "
                         "and how many extra copies of samples were re-sampled to train each modality.",
    "reconboost_schedule.png": "ReconBoost: what each epoch's steps trained (one modality's learner, or global "
                               "rectification) with the boost rate ρ, next to each modality's validation accuracy.",
    "mla_projector.png": "MLA: share of the feature space the OWM projector still leaves free (1 = nothing "
                         "protected yet), next to each modality's validation accuracy through the shared head.",
}


def _series(records: List[dict], method: str, pattern: str) -> Dict[str, np.ndarray]:
    """``{group 1 of pattern: values per epoch (nan where absent)}`` from ``method``'s per-epoch signals
    (``pattern`` matches the key below the method's prefix)."""
    rx = re.compile(pattern)
    rows = [signals(r, method) for r in records]
    keys = sorted({m[1] for row in rows for k in row for m in [rx.match(k)] if m})
    out = {}
    for name in keys:
        vals = []
        for row in rows:
            hit = [v for k, v in row.items() if (m := rx.match(k)) and m[1] == name]
            vals.append(float(hit[0]) if hit else np.nan)
        out[name] = np.asarray(vals)
    return out


def _color(key: str, colors: Dict[str, str]) -> str:
    """A modality's page colour; black for the fused head / the prediction."""
    return colors.get(key, FUSED_COLOR)


def _head_acc(records: List[dict], split: str = "val") -> Dict[str, np.ndarray]:
    mods = sorted({m for r in records for m in ((r.get(split) or {}).get("modality_acc") or {})})
    res = {m: np.asarray([((r.get(split) or {}).get("modality_acc") or {}).get(m, np.nan) for r in records], float)
           for m in mods}
    res["prediction"] = np.asarray([(r.get(split) or {}).get("acc", np.nan) for r in records], float)
    return res


def plot(run_dir: pathlib.Path, out_dir: pathlib.Path) -> List[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir, out_dir = pathlib.Path(run_dir), pathlib.Path(out_dir)
    records = _records(run_dir)
    if not records:
        return []
    epochs = np.asarray([r["epoch"] for r in records])
    written: List[pathlib.Path] = []

    def save(fig, name):
        out_dir.mkdir(parents=True, exist_ok=True)
        p = out_dir / name
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        written.append(p)

    colors = modality_colors(_head_acc(records).keys() - {"prediction"})
    w = _series(records, "gblending", r"^w/(.+)$")
    if w:
        gains = _series(records, "gblending", r"^G/(.+)$")
        est = epochs[~np.isnan(next(iter(gains.values())))] if gains else []
        fig, ax = plt.subplots(figsize=(8, 4))
        for k, v in w.items():
            ax.step(epochs, v, where="post", lw=2, color=_color(k, colors), label=k)
        for e in est:
            ax.axvline(e, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.set_ylabel("blend weight w_k (sum 1)")
        ax.set_ylim(0, 1.02)
        ax.set_title("G-Blending: loss weight per head (dotted: re-estimation epochs)")
        ax.legend()
        save(fig, "gblending_weights.png")

    contrib = _series(records, "smv", r"^contribution/(.+)$")
    if contrib:
        extra = _series(records, "smv", r"^extra/(.+)$")
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        for m, v in contrib.items():
            ok = ~np.isnan(v)
            axes[0].plot(epochs[ok], v[ok], "o-", color=_color(m, colors), label=m)
        axes[0].axhline(1.0, color="grey", ls=":", lw=1)
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("mean Shapley value φ (fair share = 1)")
        axes[0].set_title("SMV: modality contribution on the training set")
        axes[0].legend()
        width = 0.8 / max(len(extra), 1)
        for i, (m, v) in enumerate(extra.items()):
            ok = ~np.isnan(v)
            axes[1].bar(epochs[ok] + (i - (len(extra) - 1) / 2) * width, v[ok], width, color=_color(m, colors),
                        label=m)
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("extra copies that train this modality")
        axes[1].set_title("SMV: re-sampled copies per epoch")
        axes[1].legend()
        save(fig, "smv_valuation.png")

    stage = _series(records, "reconboost", r"^(boost_rate|ensemble_size)$")
    steps = _series(records, "reconboost", r"^steps/(.+)$")
    if stage or steps:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        bottom = np.zeros(len(epochs))
        for k, v in steps.items():
            v = np.nan_to_num(v)
            axes[0].bar(epochs, v, bottom=bottom, color="lightgrey" if k == "rectify" else
                        _color(k.replace("learn/", ""), colors),
                        label=k.replace("learn/", "learn ") if k != "rectify" else "global rectification")
            bottom += v
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("training steps")
        axes[0].set_title("ReconBoost: what each epoch's steps did")
        axes[0].legend(loc="upper left", fontsize=8)
        if "boost_rate" in stage:
            ax2 = axes[0].twinx()
            ax2.plot(epochs, stage["boost_rate"], "k-", lw=1.5, label="boost rate ρ")
            ax2.set_ylabel("boost rate ρ")
            ax2.legend(loc="upper right", fontsize=8)
        for m, v in _head_acc(records).items():
            axes[1].plot(epochs, 100 * v, "-", color=_color(m, colors), lw=2 if
                         m == "prediction" else 1.2, label=m if m != "prediction" else "ensemble prediction")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("val accuracy (%)")
        axes[1].set_title("shared head on each modality, and the ensemble")
        axes[1].legend()
        save(fig, "reconboost_schedule.png")

    trace = _series(records, "mla", r"^(projector_trace)$")
    if trace:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        axes[0].plot(epochs, trace["projector_trace"], "o-", color="C3")
        axes[0].set_ylim(0, 1.02)
        axes[0].set_xlabel("epoch")
        axes[0].set_ylabel("trace(P) / d")
        axes[0].set_title("MLA: OWM projector (1 = nothing protected yet)")
        for m, v in _head_acc(records).items():
            axes[1].plot(epochs, 100 * v, "-", color=_color(m, colors),
                         lw=2 if m == "prediction" else 1.2, label=m if m != "prediction" else "entropy fusion")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("val accuracy (%)")
        axes[1].set_title("shared head on each modality, and the fused prediction")
        axes[1].legend()
        save(fig, "mla_projector.png")
    return written
