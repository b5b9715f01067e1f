"""Plots for BSS runs.

* ``bss-h``: the data fraction ``λ(t)`` and steps per epoch (the curriculum), and the balance-score
  histogram at scoring time with the mean score of the part of the ranking in use each epoch.
* ``bss-l``: the score distribution over epochs (quantile bands and a per-epoch histogram heat map) and
  how peaked sampling is (effective-sample-size fraction, ``n·max p`` / ``n·min p``, rank correlation of
  consecutive scorings).
"""
from __future__ import annotations

import pathlib
from typing import List, Optional

import numpy as np

from .logkeys import methods_to_plot, signals
from .plots import read_metrics as _records

METHODS = ("bss-h", "bss-l")
CAPTIONS = {
    "bss_h_curriculum.png": "BSS-H: the fraction λ(t) of the balance-ranked training set used each epoch, with the "
                            "steps per epoch (left), and the balance scores at scoring time with the lowest score "
                            "in use (right; balanced samples, on the right, are used first).",
    "bss_l_scores.png": "BSS-L: the distribution of the smoothed balance score ŝ over epochs (quantile bands and "
                        "a per-epoch histogram), and how peaked the sampling distribution is (effective sample "
                        "size, n·max p, n·min p, rank correlation with the previous scoring).",
}


def series(records: List[dict], method: str, key: str):
    """``(epochs, values)`` of one of ``method``'s per-epoch scalars, skipping epochs that did not log it."""
    ep, val = [], []
    for r in records:
        v = signals(r, method).get(key)
        if v is not None and not isinstance(v, (list, dict)):
            ep.append(r["epoch"])
            val.append(float(v))
    return np.asarray(ep), np.asarray(val)


def histograms(records: List[dict], method: str):
    """``(epochs, counts [E, bins], (lo, hi))`` of the logged score histograms, or None."""
    ep, rows, rng = [], [], None
    for r in records:
        p = signals(r, method)
        h = p.get("score_hist")
        if h:
            ep.append(r["epoch"])
            rows.append(h)
            rng = p.get("score_hist_range", rng)
    if not rows:
        return None
    return np.asarray(ep), np.asarray(rows, dtype=float), tuple(rng or (-1.0, 1.0))


def _method(records: List[dict], candidates: List[str]) -> Optional[str]:
    """The first of ``candidates`` that logged anything."""
    return next((m for m in candidates if any(signals(r, m) for r in records)), None)


def _quantile_panel(ax, records, method):
    e, mean = series(records, method, "score_mean")
    if not len(e):
        return False
    q = {k: series(records, method, f"score_{k}")[1] for k in ("q10", "q25", "q50", "q75", "q90")}
    if all(len(v) == len(e) for v in q.values()):
        ax.fill_between(e, q["q10"], q["q90"], alpha=0.2, color="C0", label="10-90 %")
        ax.fill_between(e, q["q25"], q["q75"], alpha=0.35, color="C0", label="25-75 %")
        ax.plot(e, q["q50"], color="C0", label="median")
    ax.plot(e, mean, color="k", ls="--", lw=1, label="mean")
    ax.set_xlabel("epoch")
    ax.set_ylabel("balance score (large = balanced)")
    ax.legend(fontsize=7)
    return True


def _plot_h(records, out_dir, plt) -> List[pathlib.Path]:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    e, frac = series(records, "bss-h", "fraction")
    ax.plot(e, frac, "o-", ms=3, color="C0", label="data fraction λ(t)")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("epoch")
    ax.set_ylabel("fraction of the ranked training set", color="C0")
    steps = [(r["epoch"], r["train"].get("steps")) for r in records if r.get("train", {}).get("steps") is not None]
    if steps:
        ax2 = ax.twinx()
        ax2.plot([s[0] for s in steps], [s[1] for s in steps], "s-", ms=2, color="C1", alpha=0.7)
        ax2.set_ylabel("steps per epoch", color="C1")
    ax.set_title("BSS-H curriculum")
    ax = axes[1]
    h = histograms(records, "bss-h")
    if h is not None:
        ep, counts, (lo, hi) = h
        edges = np.linspace(lo, hi, counts.shape[1] + 1)
        ax.bar(edges[:-1], counts[0], width=np.diff(edges), align="edge", color="C2", alpha=0.8,
               edgecolor="white")
        ax.set_xlabel(f"balance score at scoring (epoch {int(ep[0])})")
        ax.set_ylabel("samples")
        e2, used = series(records, "bss-h", "used_score_min")
        if len(e2):
            ax.axvline(used[0], color="C3", ls="--", lw=1, label="lowest score used at epoch "
                                                                    f"{int(e2[0])}")
            ax.legend(fontsize=7)
        ax.set_title("scores (balanced on the right are used first)")
    else:
        ax.set_visible(False)
    fig.tight_layout()
    path = out_dir / "bss_h_curriculum.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def _plot_l(records, out_dir, plt) -> List[pathlib.Path]:
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    _quantile_panel(axes[0], records, "bss-l")
    axes[0].set_title("smoothed score ŝ used for sampling")
    ax = axes[1]
    h = histograms(records, "bss-l")
    if h is not None:
        ep, counts, (lo, hi) = h
        dens = counts / np.maximum(counts.sum(1, keepdims=True), 1)
        im = ax.imshow(dens.T, origin="lower", aspect="auto", cmap="viridis",
                       extent=(ep[0] - 0.5, ep[-1] + 0.5, lo, hi))
        fig.colorbar(im, ax=ax, label="fraction of samples")
        ax.set_xlabel("epoch")
        ax.set_ylabel("balance score ŝ")
        ax.set_title("score histogram over epochs")
    else:
        ax.set_visible(False)
    ax = axes[2]
    for key, label, style in (("ess_fraction", "effective sample size / n", "o-"),
                              ("p_max_x_n", "n · max p", "^-"), ("p_min_x_n", "n · min p", "v-"),
                              ("rank_corr_prev", "rank corr. with previous scoring", "s--")):
        e, v = series(records, "bss-l", key)
        if len(e):
            ax.plot(e, v, style, ms=3, label=label)
    ax.axhline(1.0, color="grey", lw=0.5)
    ax.set_xlabel("epoch")
    ax.set_title("sampling distribution p")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = out_dir / "bss_l_scores.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def plot(run_dir: pathlib.Path, out_dir: pathlib.Path) -> List[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = _records(pathlib.Path(run_dir))
    method = _method(records, methods_to_plot(pathlib.Path(run_dir), list(METHODS)))
    if method is None:
        return []
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _plot_h(records, out_dir, plt) if method == "bss-h" else _plot_l(records, out_dir, plt)
