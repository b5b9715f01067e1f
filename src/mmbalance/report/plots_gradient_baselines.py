"""Plots for the gradient/loss-level baselines (OGM-GE, AGM, PMR, MSLR, MMPareto): every per-modality
signal they log per epoch (``<prefix>/<modality>/<quantity>`` in ``plugins``), one panel per quantity and
one line per modality -- e.g. OGM-GE's score ratio and gradient coefficient, AGM's ratio vs its running
target, PMR's prototype ratio and PCE weight, MSLR's learning-rate multipliers, MMPareto's gradient cosine
and conflict rate."""
from __future__ import annotations

import math
import pathlib
import re
from typing import Dict, List

from .logkeys import methods_to_plot, prefix, signals
from .plots import read_metrics as _records
from .style import modality_colors

METHODS = ("ogm-ge", "agm", "pmr", "mslr", "mmpareto")
TITLES = {"ogm-ge": "OGM-GE", "agm": "AGM", "pmr": "PMR", "mslr": "MSLR", "mmpareto": "MMPareto"}
CAPTIONS = {f"{prefix(m)}_signals.png": f"{TITLES[m]}: the per-modality quantities it computes and acts on, one "
                                         f"panel per quantity (epoch means; dashed: the balanced/unmodulated value "
                                         f"where one exists)." for m in METHODS}
_KEY = re.compile(r"^(?P<m>[^/]+)/(?P<q>[^/]+)$")
# reference lines worth drawing: a ratio of 1 (balanced), a coefficient of 1 (unmodulated), a cosine of 0
_REF = {"ratio": 1.0, "coeff": 1.0, "target": 1.0, "cos": 0.0}


def series(records: List[dict], methods=METHODS) -> Dict[str, Dict[str, Dict[str, list]]]:
    """``{method: {quantity: {modality: [(epoch, value), ...]}}}`` of the per-modality signals
    (``<prefix>/<modality>/<quantity>``)."""
    out: Dict[str, Dict[str, Dict[str, list]]] = {}
    for method in methods:
        for r in records:
            for k, v in signals(r, method).items():
                mt = _KEY.match(k)
                if mt and isinstance(v, (int, float)) and math.isfinite(v):
                    out.setdefault(method, {}).setdefault(mt["q"], {}).setdefault(mt["m"], []).append((r["epoch"], v))
    return out


def plot(run_dir: pathlib.Path, out_dir: pathlib.Path) -> List[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = series(_records(pathlib.Path(run_dir)), methods_to_plot(pathlib.Path(run_dir), list(METHODS)))
    out_dir = pathlib.Path(out_dir)
    written = []
    for method, quantities in data.items():
        colors = modality_colors({m for q in quantities.values() for m in q})
        names = sorted(quantities)
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
        for ax, q in zip(axes.flat, names):
            for m, pts in sorted(quantities[q].items()):
                ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", ms=3, color=colors[m], label=m)
            if q in _REF:
                ax.axhline(_REF[q], color="grey", lw=0.8, ls="--")
            ax.set_title(q)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        run = pathlib.Path(run_dir)
        fig.suptitle(f"{TITLES[method]} — {run.parent.name}/{run.name} (epoch means)")
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{prefix(method)}_signals.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
