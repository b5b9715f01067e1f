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

from .plots import read_metrics as _records

METHODS = ("ogm-ge", "agm", "pmr", "mslr", "mmpareto")
PREFIXES = {"ogm-ge": "OGM-GE", "agm": "AGM", "pmr": "PMR", "mslr": "MSLR", "mmpareto": "MMPareto"}
_KEY = re.compile(r"^(?P<p>ogm-ge|agm|pmr|mslr|mmpareto)/(?P<m>[^/]+)/(?P<q>[^/]+)$")
# reference lines worth drawing: a ratio of 1 (balanced), a coefficient of 1 (unmodulated), a cosine of 0
_REF = {"ratio": 1.0, "coeff": 1.0, "target": 1.0, "cos": 0.0}




def series(records: List[dict]) -> Dict[str, Dict[str, Dict[str, list]]]:
    """``{prefix: {quantity: {modality: [(epoch, value), ...]}}}``."""
    out: Dict[str, Dict[str, Dict[str, list]]] = {}
    for r in records:
        for k, v in (r.get("plugins") or {}).items():
            mt = _KEY.match(k)
            if mt and isinstance(v, (int, float)) and math.isfinite(v):
                out.setdefault(mt["p"], {}).setdefault(mt["q"], {}).setdefault(mt["m"], []).append((r["epoch"], v))
    return out


def plot(run_dir: pathlib.Path, out_dir: pathlib.Path) -> List[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = series(_records(pathlib.Path(run_dir)))
    out_dir = pathlib.Path(out_dir)
    written = []
    for prefix, quantities in data.items():
        names = sorted(quantities)
        cols = min(3, len(names))
        rows = math.ceil(len(names) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
        for ax, q in zip(axes.flat, names):
            for m, pts in sorted(quantities[q].items()):
                ax.plot([e for e, _ in pts], [v for _, v in pts], marker="o", ms=3, label=m)
            if q in _REF:
                ax.axhline(_REF[q], color="grey", lw=0.8, ls="--")
            ax.set_title(q)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        run = pathlib.Path(run_dir)
        fig.suptitle(f"{PREFIXES[prefix]} — {run.parent.name}/{run.name} (epoch means)")
        fig.tight_layout()
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"{prefix}_signals.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
