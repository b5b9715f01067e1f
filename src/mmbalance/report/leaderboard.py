"""The honest leaderboard of a grid: which method beats ``joint`` and ``joint-aux`` beyond seed noise, and how
much the papers' protocol (best epoch chosen on the test set) would have inflated each number.

Pure functions of run summaries (plus, per run, the best-on-test accuracy read from its ``metrics.jsonl`` by
:func:`paper_protocol`), so every statistic is unit-tested on hand-computed numbers
(``tests/test_leaderboard.py``). Definitions, also printed under the table (:data:`NOTES`):

* **honest** accuracy: test accuracy of the checkpoint selected on validation (``summary.json``);
  mean ± sample std (ddof=1) over seeds;
* **Δ vs R [95 % CI]**: mean over the seeds both methods ran of (method − R), with the t interval
  ``mean ± t(0.975, n−1) · sd / √n`` of the per-seed differences (:func:`t_interval`);
* **p (Holm)**: two-sided paired t-test of those differences (:func:`scipy.stats.ttest_rel`), adjusted with
  Holm's step-down method over the family of all methods compared with R (:func:`holm`);
* **beyond noise** ``▲``: better than ``joint-aux`` with Holm-adjusted p < 0.05 *and* the CI above 0 (``▼``:
  worse, CI below 0). ``joint-aux`` (joint training + one cross-entropy per modality head) is the bar a
  balancing method has to clear, because most of their gains over ``joint`` it already gives;
* **best-on-test** accuracy: per run, the highest test accuracy over all epochs — what a paper that picks the
  best epoch on the test set reports; **inflation** = best-on-test − honest, per seed, then mean ± std;
* **single seed**: the lowest and highest honest accuracy of one seed: the range a one-seed table could show.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .aggregate import _finite, fmt_p, fmt_pct, mean_std, paired_comparison

REFERENCES = ("joint", "joint-aux")  #: the two baselines every method is compared with
BAR = "joint-aux"  #: the baseline that "beyond noise" is measured against
ALPHA = 0.05
LEVEL = 0.95
BETTER, WORSE = "▲", "▼"
NOTES = [
    "honest = test accuracy of the checkpoint selected on validation, mean ± sample std (ddof=1) over seeds",
    "Δ vs R = mean per-seed difference (method − R) in percentage points over the seeds both ran, [95 % t "
    "confidence interval]; p (Holm) = two-sided paired t-test, Holm-adjusted over all methods compared with R "
    "(— with fewer than 2 common seeds or zero-variance differences)",
    f"{BETTER} = better than {BAR} beyond noise (Holm-adjusted p < {ALPHA} and CI above 0); {WORSE} = worse "
    "beyond noise",
    "best-on-test = per run, the highest test accuracy of any epoch (the papers' protocol: epoch chosen on the "
    "test set), mean ± std; inflation = best-on-test − honest per seed (pp), mean ± std: how much selecting "
    "on test would have added",
    "single seed = lowest–highest honest accuracy of one seed: what a one-seed table could have shown",
]


# ---------------------------------------------------------------------------- statistics
def t_interval(diffs: Sequence[float], level: float = LEVEL) -> Tuple[float, float]:
    """``mean ± t(1 − (1 − level)/2, n − 1) · sd / √n`` of paired differences; NaNs with fewer than 2."""
    from scipy import stats

    d = np.asarray([x for x in diffs if _finite(x)], dtype=float)
    if len(d) < 2:
        return math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, len(d) - 1)) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return float(d.mean()) - half, float(d.mean()) + half


def holm(pvalues: Mapping[str, float]) -> Dict[str, float]:
    """Holm's step-down adjusted p-values: with the m defined p-values sorted ascending,
    ``p_adj(i) = max_{j <= i} min(1, (m − j + 1) · p(j))``; undefined (NaN/None) p-values stay NaN and are
    not counted in m."""
    defined = sorted(((float(p), k) for k, p in pvalues.items() if _finite(p)), key=lambda t: t[0])
    m = len(defined)
    out = {k: math.nan for k in pvalues}
    running = 0.0
    for j, (p, k) in enumerate(defined):
        running = max(running, min(1.0, (m - j) * p))
        out[k] = running
    return out


def paper_protocol(run_dir: Path) -> Optional[Dict[str, Any]]:
    """``{"acc", "epoch"}`` of the epoch with the highest *test* accuracy in a run's ``metrics.jsonl`` (ties:
    the earliest), or None when the file is missing or has no test accuracy."""
    best: Optional[Dict[str, Any]] = None
    try:
        lines = Path(run_dir, "metrics.jsonl").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        acc = (record.get("test") or {}).get("acc")
        if _finite(acc) and (best is None or float(acc) > best["acc"]):
            best = {"acc": float(acc), "epoch": record.get("epoch")}
    return best


# ---------------------------------------------------------------------------- the leaderboard
def compute(summaries: Sequence[Mapping[str, Any]], order: Sequence[str], references: Sequence[str] = REFERENCES,
            bar: str = BAR, alpha: float = ALPHA, level: float = LEVEL) -> Dict[str, Any]:
    """Per method (in ``order``): honest mean ± std, paired Δ with CI and Holm-adjusted p against each present
    reference, the beyond-noise mark against ``bar``, best-on-test mean ± std and the inflation.

    Each summary needs ``method``, ``seed``, ``test.acc``, and optionally ``paper_protocol.acc`` (from
    :func:`paper_protocol`)."""
    acc: Dict[str, Dict[Any, float]] = {m: {} for m in order}
    paper: Dict[str, Dict[Any, float]] = {m: {} for m in order}
    selected_on_test = set()
    for s in summaries:
        m = s["method"]
        if m not in acc:
            continue
        acc[m][s.get("seed")] = s["test"].get("acc")
        if (s.get("paper_protocol") or {}).get("acc") is not None:
            paper[m][s.get("seed")] = s["paper_protocol"]["acc"]
        if s.get("select_on") == "test":
            selected_on_test.add(m)
    methods = [m for m in order if acc[m]]
    rows: Dict[str, Dict[str, Any]] = {}
    for m in methods:
        honest = [acc[m][k] for k in sorted(acc[m], key=_seed_key)]
        common = [k for k in acc[m] if k in paper[m] and _finite(acc[m][k])]
        vals = [v for v in honest if _finite(v)]
        rows[m] = {"n": len(vals), "acc": mean_std(vals), "vs": {},
                   "paper": mean_std(paper[m][k] for k in common),
                   "inflation": mean_std(paper[m][k] - acc[m][k] for k in common),
                   "single_seed": {"min": min(vals) if vals else math.nan, "max": max(vals) if vals else math.nan},
                   "selected_on_test": m in selected_on_test}
    present = [r for r in references if r in rows]
    for ref in present:
        family = {m: paired_comparison(acc[ref], acc[m]) for m in methods if m != ref}
        adjusted = holm({m: c["p_value"] for m, c in family.items()})
        for m, c in family.items():
            low, high = t_interval(c["diffs"], level)
            rows[m]["vs"][ref] = {"n": c["n"], "mean_diff": c["mean_diff"], "ci": [low, high], "p": c["p_value"],
                                  "p_holm": adjusted[m], "p_note": c["p_note"], "family_size": len(family)}
    for m in methods:
        c = rows[m]["vs"].get(bar)
        mark = ""
        if c and _finite(c["p_holm"]) and c["p_holm"] < alpha:
            mark = BETTER if c["ci"][0] > 0 else (WORSE if c["ci"][1] < 0 else "")
        rows[m]["beyond_noise"] = mark
    return {"methods": methods, "references": present, "bar": bar if bar in rows else None, "alpha": alpha,
            "level": level, "rows": rows, "notes": NOTES}


def _seed_key(seed):
    return (0, seed) if isinstance(seed, (int, float)) else (1, str(seed))


# ---------------------------------------------------------------------------- tables
def _diff_ci(c: Optional[Mapping[str, Any]]) -> str:
    if c is None:
        return "(reference)"
    if not c["n"]:
        return "— (no common seeds)"
    low, high = c["ci"]
    ci = f" [{100 * low:+.2f}, {100 * high:+.2f}]" if _finite(low) else ""
    return f"{100 * c['mean_diff']:+.2f}{ci}"


def _pp(stat: Mapping[str, Any]) -> str:
    """A mean ± std of differences in percentage points with a sign."""
    if not _finite(stat.get("mean")):
        return "—"
    std = f" ± {100 * stat['std']:.2f}" if _finite(stat.get("std")) else " ± —"
    return f"{100 * stat['mean']:+.2f}{std}"


def table(lb: Mapping[str, Any]) -> Tuple[List[str], List[List[str]]]:
    """Headers and rows of the leaderboard table."""
    headers = ["method", "seeds", "honest test acc (%)"]
    for ref in lb["references"]:
        headers += [f"Δ vs {ref} [95% CI] (pp)", "p (Holm)"]
    if lb["bar"]:
        headers.append(f"vs {lb['bar']}")
    headers += ["best-on-test acc (%)", "inflation (pp)", "single seed (%)"]
    rows = []
    for m in lb["methods"]:
        r = lb["rows"][m]
        row = [m + (" (selected on test!)" if r["selected_on_test"] else ""), str(r["n"]), fmt_pct(r["acc"])]
        for ref in lb["references"]:
            c = r["vs"].get(ref)
            row += [_diff_ci(c), fmt_p(c["p_holm"]) if c else ""]
        if lb["bar"]:
            row.append(r["beyond_noise"])
        lo, hi = r["single_seed"]["min"], r["single_seed"]["max"]
        row += [fmt_pct(r["paper"]), _pp(r["inflation"]),
                f"{100 * lo:.1f}–{100 * hi:.1f}" if _finite(lo) else "—"]
        rows.append(row)
    return headers, rows


def verdict(lb: Mapping[str, Any]) -> str:
    """One sentence: which methods clear the bar beyond noise (or that none does)."""
    if not lb["bar"]:
        return f"No {BAR} in this grid: the beyond-noise column needs it."
    better = [m for m in lb["methods"] if lb["rows"][m]["beyond_noise"] == BETTER]
    if not better:
        return f"No method beats {lb['bar']} beyond noise on this grid."
    return f"Better than {lb['bar']} beyond noise: {', '.join(better)}."


__all__ = ["t_interval", "holm", "paper_protocol", "compute", "table", "verdict", "NOTES", "REFERENCES", "BAR"]
