"""Aggregate a methods x seeds grid: mean ± std over seeds and paired comparisons against a reference.

Everything here is a pure function of run summaries (the ``summary.json`` dicts written by
:meth:`mmbalance.engine.Trainer.summarize`, i.e. test metrics of the checkpoint selected on validation),
so the statistics can be unit-tested on fixed numbers.

Conventions (also stated in the tables):

* ``std`` is the **sample** standard deviation over seeds (``ddof=1``); with one seed it is NaN (shown ``—``).
* The paired comparison matches runs of a method and of the reference (the first method) **by seed**
  (same seed = same initialisation of the shared parts and the same data order before methods diverge);
  it reports the mean per-seed difference, a paired t-test p-value (:func:`scipy.stats.ttest_rel`,
  two-sided) and how many seeds the method wins / ties / loses. The p-value is NaN (``—``) with fewer
  than two common seeds or when the per-seed differences have zero variance (the t statistic is then
  undefined or infinite; a p-value would be meaningless).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

METRICS = ("acc", "macro_f1", "map")  #: test metrics aggregated and compared
METRIC_TITLES = {"acc": "test acc", "macro_f1": "macro-F1", "map": "mAP"}
#: differences smaller than this count as ties (accuracies are ratios of counts stored as floats)
TIE_TOL = 1e-9

STD_NOTE = "std = sample standard deviation over seeds (ddof=1)"
HEAD_MARKS = {"monitor": " ‡", "none": " †"}
HEAD_NOTES = {
    "monitor": "‡ the method trains no per-modality head; these are monitor heads fitted on detached encoder "
               "features during training (train.monitor_heads, loss_monitor_*): they show what each encoder's "
               "features support, without feeding back into training",
    "none": "† no per-modality loss term was logged for this method: its modality heads got no gradient, so "
            "their accuracy is that of untrained heads; read the probe instead",
}


def head_notes(agg: Mapping[str, Any]) -> List[str]:
    """The footnotes that apply to the modality table."""
    kinds = {agg["results"][m].get("heads") for m in agg["methods"]}
    return [note for kind, note in HEAD_NOTES.items() if kind in kinds]
PAIRED_NOTE = ("Δ = mean over common seeds of (method − reference) on test acc, in percentage points; "
               "p = two-sided paired t-test (scipy.stats.ttest_rel) over those seeds, — when fewer than 2 "
               "seeds or the differences have zero variance; W/T/L = seeds won / tied / lost")


# ---------------------------------------------------------------------------- elementary statistics
def mean_std(values: Iterable[float]) -> Dict[str, Any]:
    """``{"mean", "std" (ddof=1, NaN if n < 2), "n", "values"}`` of the finite values given."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    mean = float(np.mean(vals)) if n else math.nan
    std = float(np.std(vals, ddof=1)) if n >= 2 else math.nan
    return {"mean": mean, "std": std, "n": n, "values": vals}


def paired_comparison(reference: Mapping[Any, float], other: Mapping[Any, float]) -> Dict[str, Any]:
    """Compare ``other`` with ``reference`` over the keys (seeds) both have.

    Returns ``seeds`` (common keys, sorted), ``n``, ``diffs`` (other − reference per seed), ``mean_diff``,
    ``std_diff`` (ddof=1), ``t``, ``p_value`` (two-sided paired t-test; NaN if n < 2 or zero variance),
    ``p_note`` (why p is NaN, else ``""``), and ``wins``/``ties``/``losses`` (ties: |diff| <= TIE_TOL).
    """
    from scipy import stats

    seeds = sorted(k for k in reference if k in other
                   and _finite(reference[k]) and _finite(other[k]))
    ref = np.array([float(reference[k]) for k in seeds])
    oth = np.array([float(other[k]) for k in seeds])
    diffs = oth - ref
    n = len(seeds)
    res: Dict[str, Any] = {"seeds": seeds, "n": n, "diffs": diffs.tolist(),
                           "mean_diff": float(diffs.mean()) if n else math.nan,
                           "std_diff": float(diffs.std(ddof=1)) if n >= 2 else math.nan,
                           "t": math.nan, "p_value": math.nan, "p_note": "",
                           "wins": int((diffs > TIE_TOL).sum()), "ties": int((np.abs(diffs) <= TIE_TOL).sum()),
                           "losses": int((diffs < -TIE_TOL).sum())}
    if n < 2:
        res["p_note"] = f"{n} common seed{'s' if n != 1 else ''}: a paired test needs at least 2"
    elif float(np.ptp(diffs)) <= TIE_TOL:
        res["p_note"] = "per-seed differences have zero variance: the t statistic is undefined"
    else:
        t = stats.ttest_rel(oth, ref)
        res["t"], res["p_value"] = float(t.statistic), float(t.pvalue)
    return res


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------- one method, the whole grid
def summarize_method(summaries: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """Mean ± std over the seeds of one method (one summary per seed)."""
    seeds = [s.get("seed") for s in summaries]
    out: Dict[str, Any] = {"n": len(summaries), "seeds": seeds}
    out["test"] = {k: mean_std(s["test"].get(k) for s in summaries) for k in METRICS}
    out["val"] = {k: mean_std(s["val"].get(k) for s in summaries) for k in METRICS}
    mods = _ordered_union(list((s["test"].get("modality_acc") or {})) for s in summaries)
    out["modality_acc"] = {m: mean_std((s["test"].get("modality_acc") or {}).get(m) for s in summaries)
                           for m in mods}
    pmods = _ordered_union(list(s.get("probe") or {}) for s in summaries)
    out["probe"] = {m: {w: mean_std(((s.get("probe") or {}).get(m) or {}).get(w) for s in summaries)
                        for w in ("trained", "floor")} for m in pmods}
    kinds = {s.get("heads") for s in summaries}
    out["heads"] = kinds.pop() if len(kinds) == 1 else None  # "loss" | "monitor" | "none" | None (unknown/mixed)
    out["wall_time_s"] = mean_std(s.get("wall_time_s") for s in summaries)
    out["wall_time_s"]["total"] = float(sum(out["wall_time_s"]["values"]))
    out["best_epoch"] = mean_std(s.get("best_epoch") for s in summaries)
    return out


def aggregate(summaries: Sequence[Mapping[str, Any]], order: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Aggregate run summaries of a grid, grouped by their ``method``.

    ``order`` fixes the method order (the first is the reference of the paired comparisons); methods
    not in it follow in order of appearance. Methods in ``order`` without any summary are listed in
    ``missing``. Two summaries of the same method and seed are an error (a grid has one run per cell).
    """
    groups: Dict[str, List[Mapping[str, Any]]] = {}
    for s in summaries:
        groups.setdefault(s["method"], []).append(s)
    for method, runs in groups.items():
        seeds = [r.get("seed") for r in runs]
        dup = sorted({x for x in seeds if seeds.count(x) > 1}, key=str)
        if dup:
            raise ValueError(f"method {method!r} has two runs with seed {dup[0]!r}; a grid has one run per "
                             f"method and seed")
    names = [m for m in (order or []) if m in groups] + [m for m in groups if m not in (order or [])]
    missing = [m for m in (order or []) if m not in groups]
    results = {m: summarize_method(sorted(groups[m], key=lambda s: _seed_key(s.get("seed")))) for m in names}
    reference = names[0] if names else None
    if reference is not None:
        ref_runs = {s.get("seed"): s for s in groups[reference]}
        for m in names:
            if m == reference:
                results[m]["paired"] = None
                continue
            runs = {s.get("seed"): s for s in groups[m]}
            results[m]["paired"] = {k: paired_comparison({sd: r["test"].get(k) for sd, r in ref_runs.items()},
                                                         {sd: r["test"].get(k) for sd, r in runs.items()})
                                    for k in METRICS}
    from . import leaderboard

    modalities = _ordered_union(list(r["modality_acc"]) for r in results.values())
    datasets = _ordered_union([s.get("dataset")] for s in summaries if s.get("dataset"))
    return {"methods": names, "missing": missing, "reference": reference, "modalities": modalities,
            "datasets": datasets, "results": results, "std": STD_NOTE, "paired_note": PAIRED_NOTE,
            "leaderboard": leaderboard.compute(summaries, names)}


def _seed_key(seed):
    return (0, seed) if isinstance(seed, (int, float)) else (1, str(seed))


def _ordered_union(lists: Iterable[List[Any]]) -> List[Any]:
    seen: List[Any] = []
    for lst in lists:
        for x in lst:
            if x not in seen:
                seen.append(x)
    return seen


# ---------------------------------------------------------------------------- tables
def fmt_pct(stat: Optional[Mapping[str, Any]], digits: int = 2) -> str:
    """``91.23 ± 0.45`` (percent); ``—`` for a missing mean, ``± —`` for an undefined std."""
    if not stat or not _finite(stat.get("mean")):
        return "—"
    mean = 100 * stat["mean"]
    if stat.get("n", 0) < 2 or not _finite(stat.get("std")):
        return f"{mean:.{digits}f} ± —"
    return f"{mean:.{digits}f} ± {100 * stat['std']:.{digits}f}"


def fmt_p(p: float) -> str:
    if not _finite(p):
        return "—"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def fmt_diff(paired: Optional[Mapping[str, Any]]) -> str:
    if paired is None:
        return "(reference)"
    if not paired["n"]:
        return "— (no common seeds)"
    return f"{100 * paired['mean_diff']:+.2f}"


def main_table(agg: Mapping[str, Any]) -> Tuple[List[str], List[List[str]]]:
    """Headers and rows of the main results table (one row per method)."""
    ref = agg["reference"]
    headers = ["method", "seeds", "test acc (%)", "macro-F1 (%)", "mAP (%)", f"Δ acc vs {ref} (pp)", "p",
               "W/T/L", "best epoch", "train time / run (s)"]
    rows = []
    for m in agg["methods"]:
        r = agg["results"][m]
        p = (r.get("paired") or {}).get("acc")
        wall = r["wall_time_s"]
        rows.append([m, str(r["n"]), fmt_pct(r["test"]["acc"]), fmt_pct(r["test"]["macro_f1"]),
                     fmt_pct(r["test"]["map"]), fmt_diff(p), fmt_p(p["p_value"]) if p else "",
                     f"{p['wins']}/{p['ties']}/{p['losses']}" if p else "",
                     f"{r['best_epoch']['mean']:.1f}" if _finite(r["best_epoch"]["mean"]) else "—",
                     f"{wall['mean']:.1f}" if _finite(wall["mean"]) else "—"])
    return headers, rows


def modality_table(agg: Mapping[str, Any]) -> Tuple[List[str], List[List[str]]]:
    """Per-modality head test accuracy and linear probe (trained vs untrained floor), mean over seeds."""
    mods = agg["modalities"]
    headers = ["method"] + [f"{m} head acc (%)" for m in mods] + [f"{m} probe trained / floor (%)" for m in mods]
    rows = []
    for meth in agg["methods"]:
        r = agg["results"][meth]
        mark = HEAD_MARKS.get(r.get("heads"), "")
        row = [meth] + [fmt_pct(r["modality_acc"].get(m)) + (mark if m in r["modality_acc"] else "") for m in mods]
        for m in mods:
            p = r["probe"].get(m)
            if not p or not _finite(p["trained"]["mean"]):
                row.append("—")
            else:
                row.append(f"{100 * p['trained']['mean']:.1f} / {100 * p['floor']['mean']:.1f}")
        rows.append(row)
    return headers, rows


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def results_markdown(agg: Mapping[str, Any], title: Optional[str] = None) -> str:
    """The two tables with the notes that say what the numbers are."""
    parts = []
    if title:
        parts.append(f"# {title}\n")
    ds = ", ".join(agg.get("datasets") or []) or "?"
    parts.append(f"Dataset: {ds}. Test metrics of the checkpoint selected on validation, mean ± std over "
                 f"seeds; {STD_NOTE}.\n")
    parts.append(markdown_table(*main_table(agg)))
    parts.append("\n" + PAIRED_NOTE + ".\n")
    parts += leaderboard_markdown(agg)
    if agg["modalities"]:
        parts.append(markdown_table(*modality_table(agg)))
        parts.append("\nHead acc: test accuracy of each modality's own classifier head (mean ± std). Probe: "
                     "linear probe on the frozen encoder's test features, next to the same probe on that "
                     "encoder's untrained initialisation (floor); mean over seeds.\n")
        parts += [note + ".\n" for note in head_notes(agg)]
    if agg.get("missing"):
        parts.append(f"No completed run for: {', '.join(agg['missing'])}.\n")
    return "\n".join(parts)


def leaderboard_markdown(agg: Mapping[str, Any]) -> List[str]:
    """The honest-leaderboard section (``report/leaderboard.py``), when joint or joint-aux is in the grid."""
    from . import leaderboard

    lb = agg.get("leaderboard")
    if not lb or not lb["references"]:
        return []
    return ["**Honest leaderboard.** " + leaderboard.verdict(lb) + "\n", markdown_table(*leaderboard.table(lb)),
            "\n" + "".join(f"* {note}.\n" for note in lb["notes"])]


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Fixed-width table for the terminal."""
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                   for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def json_safe(obj: Any) -> Any:
    """Replace NaN/inf with None (strict JSON) recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return json_safe(obj.item())
    return obj
