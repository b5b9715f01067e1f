"""Plots for DUS runs (reconstructed method): per-modality batch size over training steps (the paper's
Fig. 4) and the cumulative modality score ŝ per modality (Fig. 5), plus the discrepancy ρ and, for
DUS-RL, the mean reward per epoch and the reward-signal diagnostic (does the allocation explain the reward
and the learning it causes? ``dus_rl_signal.png``)."""
from __future__ import annotations

import pathlib
import re
from typing import Dict, List, Tuple

import numpy as np

from .logkeys import methods_to_plot, signals
from .plots import read_metrics as _records
from .style import modality_colors

METHODS = ("dus-h", "dus-rl")
CAPTIONS = {
    "dus_batch_sizes.png": "Samples each modality received per training step (thin: every step; thick: moving mean; "
                           "grey ticks: epoch starts). The modality DUS judges dominant gets fewer samples.",
    "dus_scores.png": "Left: each modality's cumulative score ŝ (running mean of its true-class score) per step. "
                      "Right: the discrepancy ρ at each epoch's end (ρ > 1: the modality leads; the dotted line "
                      "is balance) and, for DUS-RL, the policy's mean reward.",
}

_STEP = re.compile(r"^(?P<what>n|s_hat)/(?P<m>.+)$")


def step_series(records: List[dict], method: str = "dus-h") -> Tuple[Dict[str, Dict[str, np.ndarray]], List[int]]:
    """``({what: {modality: values over all steps}}, [global step where each epoch starts])``."""
    series: Dict[str, Dict[str, list]] = {}
    starts, step = [], 0
    for r in records:
        starts.append(step)
        length = 0
        for k, v in signals(r, method, "steps").items():
            mt = _STEP.match(k)
            if mt:
                series.setdefault(mt["what"], {}).setdefault(mt["m"], []).extend(float(x) for x in v)
                length = max(length, len(v))
        step += length
    return {w: {m: np.asarray(v) for m, v in d.items()} for w, d in series.items()}, starts


def _smooth(x: np.ndarray, k: int) -> np.ndarray:
    if k <= 1 or len(x) < k:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    head = c[1:k] / np.arange(1, k)
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def plot(run_dir: pathlib.Path, out_dir: pathlib.Path) -> List[pathlib.Path]:
    from matplotlib.figure import Figure  # no pyplot state: safe headless and in threads

    run_dir, out_dir = pathlib.Path(run_dir), pathlib.Path(out_dir)
    records = _records(run_dir)
    for method in methods_to_plot(run_dir, list(METHODS)):
        series, starts = step_series(records, method)
        if series.get("n"):
            break
    else:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    mods = list(series["n"])
    colors = modality_colors(mods)
    total = len(next(iter(series["n"].values())))
    k = max(1, total // 25)  # moving average over ~1/25 of the run keeps the trend readable
    written = []

    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot(111)
    for m in mods:
        x = series["n"][m]
        ax.plot(x, color=colors[m], alpha=0.25, lw=0.8)
        ax.plot(_smooth(x, k), color=colors[m], lw=2, label=f"{m} (mean {x.mean():.1f})")
    _epoch_marks(ax, starts)
    ax.set_xlabel("training step")
    ax.set_ylabel("samples per step n^(j)")
    ax.set_title(f"{method}: per-modality batch size (thin: per step, thick: moving mean of {k})")
    ax.legend(loc="best")
    fig.tight_layout()
    p = out_dir / "dus_batch_sizes.png"
    fig.savefig(p, dpi=110)
    written.append(p)

    if series.get("s_hat"):
        fig = Figure(figsize=(12, 4))
        axes = fig.subplots(1, 2)
        for m in mods:
            if m in series["s_hat"]:
                axes[0].plot(series["s_hat"][m], color=colors[m], lw=1.5, label=m)
        _epoch_marks(axes[0], starts)
        axes[0].set_xlabel("training step")
        axes[0].set_ylabel("ŝ^(j)  (running score of the true class)")
        axes[0].set_title("cumulative modality score")
        axes[0].legend()
        epochs = [r["epoch"] for r in records]
        for m in mods:
            rho = [signals(r, method).get(f"rho/{m}") for r in records]
            if any(v is not None for v in rho):
                axes[1].plot(epochs, [np.nan if v is None else v for v in rho], "o-", color=colors[m], label=f"ρ {m}")
        axes[1].axhline(1.0, color="grey", ls=":", lw=1)
        reward = [signals(r, method).get("reward") for r in records]
        if any(v is not None for v in reward):
            ax2 = axes[1].twinx()
            ax2.plot(epochs, [np.nan if v is None else v for v in reward], "k--", lw=1, label="RL reward")
            ax2.set_ylabel("mean reward (DUS-RL)")
            ax2.legend(loc="lower right")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("discrepancy ρ^(j) at epoch end")
        axes[1].set_title("discrepancy (ρ > 1: dominant)")
        axes[1].legend(loc="upper left")
        fig.suptitle(method)
        fig.tight_layout()
        p = out_dir / "dus_scores.png"
        fig.savefig(p, dpi=110)
        written.append(p)
    signal = plot_signal(records, out_dir / "dus_rl_signal.png", method)
    return written + ([signal] if signal else [])


_SIGNAL_CORR = re.compile(r"^dus-rl/signal/(?P<what>corr_[a-z_]+)/(?P<m>.+)$")


def signal_series(records: List[dict]) -> Dict[str, np.ndarray]:
    """DUS-RL's per-window diagnostic series over the run (``x/<m>``, ``reward``, ``gain/<m>``, ``gain/fused``)."""
    out: Dict[str, list] = {}
    for r in records:
        for k, v in (r.get("steps") or {}).items():
            if k.startswith("dus-rl/signal/"):
                out.setdefault(k[len("dus-rl/signal/"):], []).extend(float(x) for x in v)
    return {k: np.asarray(v) for k, v in out.items()}


def plot_signal(records: List[dict], path: pathlib.Path, title: str = "dus-rl") -> "pathlib.Path | None":
    """Left: each decision window's share of the first modality (``x = mean n / N_B``) against the reward the
    policy got for it and the probe-loss decreases it caused (points and least-squares lines). Right: the
    run's correlations of every modality's ``x`` with each outcome (``dus-rl/signal/corr_*``, last epoch),
    with the share of the reward's variance the allocation explains (R²) and the policy entropy."""
    from matplotlib.figure import Figure

    series = signal_series(records)
    last = (records[-1].get("plugins") or {}) if records else {}
    corrs: Dict[str, Dict[str, float]] = {}
    for k, v in last.items():
        mt = _SIGNAL_CORR.match(k)
        if mt:
            corrs.setdefault(mt["what"], {})[mt["m"]] = float(v)
    xs = [k for k in series if k.startswith("x/")]  # in the run's modality order
    if not xs or "reward" not in series or len(series["reward"]) < 3:
        return None
    fig = Figure(figsize=(13, 4.5))
    axes = fig.subplots(1, 2)
    x = series[xs[0]]
    outcomes = [("reward", "reward", "k")] + [(k, f"probe-loss decrease, {k[5:]}", f"C{i + 2}")
                                               for i, k in enumerate(k for k in series if k.startswith("gain/"))]
    for key, label, color in outcomes:
        y = series[key]
        if len(y) != len(x):
            continue
        z = (y - y.mean()) / (y.std() or 1.0)  # standardised, so the outcomes share one axis
        axes[0].scatter(x, z, s=8, alpha=0.35, color=color)
        if np.ptp(x) > 0:
            slope, icpt = np.polyfit(x, z, 1)
            grid = np.linspace(x.min(), x.max(), 2)
            r = np.corrcoef(x, y)[0, 1]
            axes[0].plot(grid, slope * grid + icpt, color=color, lw=2, label=f"{label} (r = {r:+.2f})")
    axes[0].set_xlabel(f"{xs[0][2:]}'s samples in the window / N_B")
    axes[0].set_ylabel("outcome of the window (standardised)")
    axes[0].set_title(f"{len(x)} decision windows")
    axes[0].legend(fontsize=8, loc="best")
    names = sorted(corrs)
    mods = [k[2:] for k in xs] or sorted({m for d in corrs.values() for m in d})
    width = 0.8 / max(len(mods), 1)
    for i, m in enumerate(mods):
        axes[1].bar(np.arange(len(names)) + i * width, [corrs[n].get(m, np.nan) for n in names], width,
                    label=f"x of {m}", color=f"C{i}")
    axes[1].axhline(0, color="grey", lw=0.8)
    axes[1].set_xticks(np.arange(len(names)) + width * (len(mods) - 1) / 2)
    axes[1].set_xticklabels([n[5:] for n in names], rotation=25, ha="right", fontsize=8)
    axes[1].set_ylabel("correlation over the run's windows")
    r2, ent = last.get("dus-rl/signal/r2_reward"), last.get("dus-rl/policy_entropy")
    info = [f"R²(reward ~ allocation) = {r2:.3f}" if r2 is not None else "",
            f"policy entropy (end) = {ent:.2f}" if ent is not None else ""]
    axes[1].set_title("; ".join(t for t in info if t) or "correlations")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{title}: does the allocation carry the reward's signal?")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def _epoch_marks(ax, starts: List[int]) -> None:
    for s in starts[1:]:
        ax.axvline(s, color="grey", lw=0.5, alpha=0.4)

