"""``mmbalance report RUN_GRID_OR_SWEEP``: a self-contained HTML page (PNG images embedded as base64) and a
markdown file (next to its PNGs) for one run folder, a ``mmbalance compare`` grid or a ``mmbalance sweep``.

Grid: provenance and the config differences between methods, the results tables (recomputed from the runs'
``summary.json``), test accuracy per method (points + 95 % CI), the imbalance panel, per-modality validation
accuracy over epochs, linear probes vs their floor, and each method's own signals from the ``plots_<method>.py``
modules (for the lowest seed's run). Sweep: the same for the cells of the batch-size x learning-rate grid, with
its table and heat map. Run: its summary, provenance, curves, imbalance panel and its method's own plots.
Every figure of a page gives a modality the same colour (:mod:`.style`).
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from . import aggregate as A
from . import modules_for, plot_modules
from . import plots as P
from .context import config_diff_section, provenance_section
from .imbalance import CAPTION as IMBALANCE_CAPTION, imbalance_panel, probe_gaps
from .page import HTML_FILE, MD_FILE, Page, esc
from .style import page_modalities

CURVES_CAPTION = ("Validation accuracy over epochs of the fused prediction (first panel) and of each modality's own "
                  "head, one line per {what}: mean over seeds (incomplete runs included up to their last epoch), "
                  "band ± std. Where the imbalance shows as it happens: a modality whose head lags stays starved.")
PROBES_CAPTION = ("Linear probe per modality (logistic regression on the frozen encoder's test features): bar = "
                  "trained encoder, black tick = the same probe on its untrained initialisation (the floor); mean "
                  "over seeds. A bar barely above its tick: the encoder learned little from its modality.")
ACC_CAPTION = ("Test accuracy of the checkpoint selected on validation, per {what}: large dot = mean over seeds "
               "with its 95 % confidence interval (Student t, n − 1 degrees of freedom; none with one seed), "
               "small dots = the seeds, dashed line = the reference's mean.{width} Overlapping intervals do not "
               "separate two {what}s; the paired test in the table compares each with the reference seed by seed.")


def _ci_width_note(ns: List[int]) -> str:
    """How wide a 95 % t-interval is with the seed counts on the page, in standard deviations."""
    from scipy import stats

    parts = [f"n = {n}: ± {stats.t.ppf(0.975, n - 1) / math.sqrt(n):.2f} std" for n in sorted(set(ns)) if n >= 2]
    return f" Half-width of the interval with {'; '.join(parts)}." if parts else ""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Write report.html (self-contained: images embedded) and report.md (+ PNGs) for a run "
                     "folder, a grid folder made by `mmbalance compare`, or a sweep folder made by `mmbalance sweep`.")
    p.add_argument("path", metavar="RUN_GRID_OR_SWEEP",
                   help="a run folder (has metrics.jsonl), a grid or a sweep folder")
    p.add_argument("--out", help="output folder (default: RUN_GRID_OR_SWEEP/report)")
    p.add_argument("--title", help="page title")


def main(args) -> int:
    path = Path(args.path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such folder")
    out = Path(args.out) if args.out else path / "report"
    result = build_report(path, out, title=args.title)
    print(f"wrote {result['html']} ({len(result['images'])} images embedded) and {result['markdown']}")
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    return 0


def is_run_dir(path: Path) -> bool:
    return (path / "metrics.jsonl").is_file() or (path / "summary.json").is_file()


_CELL = re.compile(r"^bs(?P<bs>\d+)_lr(?P<lr>[0-9.eE+-]+)$")


def is_sweep_dir(path: Path) -> bool:
    """A ``mmbalance sweep`` folder: ``sweep.json``, or ``bs<B>_lr<LR>/seed<S>`` run folders."""
    return (path / "sweep.json").is_file() or any(
        _CELL.match(p.parent.parent.name) for p in path.glob("bs*_lr*/seed*/config.yaml"))


def build_report(path: Path, out: Path, title: Optional[str] = None) -> Dict[str, Any]:
    """Write the report of a run, grid or sweep folder; returns ``{html, markdown, images, warnings}``."""
    path, out = Path(path), Path(out)
    page = Page(title or f"mmbalance report: {path.resolve().name}", out)
    if is_run_dir(path):
        _run_report(path, page)
    elif is_sweep_dir(path):
        _sweep_report(path, page)
    else:
        _grid_report(path, page)
    return page.write()


# ---------------------------------------------------------------------------- shared pieces
def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _config(run_dir: Path) -> Optional[Dict[str, Any]]:
    import yaml

    try:
        d = yaml.safe_load((run_dir / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    return d if isinstance(d, dict) else None


def _figures(page: Page, groups: Dict[str, List[Path]], mods: List[str], what: str) -> None:
    """Imbalance panel, per-modality curves and probes of labelled groups of run folders."""
    curves = {g: [P.read_metrics(d) for d in dirs] for g, dirs in groups.items()}
    summaries = {g: [s for s in (_read_json(d / "summary.json") for d in dirs) if s] for g, dirs in groups.items()}
    page.image(imbalance_panel(curves, {g: probe_gaps(s) for g, s in summaries.items()}, mods,
                               page.out / "imbalance.png"), IMBALANCE_CAPTION.format(what=what))
    page.image(P.modality_curves(curves, mods, page.out / "modality_curves.png"), CURVES_CAPTION.format(what=what))


def _modalities(dirs: List[Path]) -> List[str]:
    mods: List[str] = []
    for d in dirs:
        s = _read_json(d / "summary.json") or {}
        recs = P.read_metrics(d)[-1:]
        mods += list(s.get("modalities") or [])
        mods += [m for r in recs for m in ((r.get("val") or {}).get("modality_acc") or {})]
    return list(dict.fromkeys(mods))


def _method_plots(name: str, module, run_dir: Path, out_dir: Path, page: Page) -> bool:
    try:
        paths = module.plot(run_dir, out_dir) or []
    except Exception as e:  # noqa: BLE001 — one broken plot module must not lose the whole report
        page.warnings.append(f"{name}.plot({run_dir}) failed: {type(e).__name__}: {e}")
        page.para(f"({name} failed: {type(e).__name__}: {e})")
        traceback.print_exc(file=sys.stderr)
        return False
    captions = getattr(module, "CAPTIONS", {}) or {}
    shown = False
    for p in paths:
        p = Path(p)
        if p.suffix.lower() == ".png" and p.is_file():
            page.image(p, captions.get(p.name) or f"{name}: {p.stem.replace('_', ' ')}")
            shown = True
    if not shown:
        page.para(f"({name}: nothing to plot for {run_dir.name} — the run did not log its signals)")
    return shown


def _signals_section(page: Page, entries: List[Tuple[str, Path]], heading: str = "Method signals") -> None:
    """Each method's own plots for one run per label (``entries``: (method string, run folder))."""
    modules, problems = plot_modules()
    page.warnings += problems
    page.heading(heading)
    any_plot = False
    for label, run_dir in entries:
        names = modules_for(label, modules)
        if not names:
            continue
        page.subheading(f"{label} ({run_dir.name})")
        for name in names:
            from .compare import safe_name

            any_plot |= _method_plots(name, modules[name], run_dir, page.out / "methods" / safe_name(label), page)
    if not any_plot:
        page.para("No method here has its own plots (plots_<method>.py modules: "
                  f"{', '.join(sorted(modules)) or 'none'}).")


# ---------------------------------------------------------------------------- grid
def _grid_report(grid_dir: Path, page: Page) -> None:
    from .compare import aggregate_grid

    agg = aggregate_grid(grid_dir)
    runs = agg["runs"]
    if not runs:
        raise FileNotFoundError(f"{grid_dir}: neither a run folder (metrics.jsonl), a grid folder (grid.json or "
                                f"run folders with config.yaml) nor a sweep folder (sweep.json)")
    complete = [r for r in runs if r["status"] == "complete"]
    datasets = ", ".join(agg["datasets"]) or "?"
    seeds = ", ".join(map(str, agg["seeds"]))
    page.para(f"Grid folder <code>{esc(grid_dir)}</code>: {len(agg['methods'])} method(s), seeds {esc(seeds)}, "
              f"dataset {esc(datasets)}; {len(complete)}/{len(runs)} runs complete.",
              f"Grid folder `{grid_dir}`: {len(agg['methods'])} method(s), seeds {seeds}, dataset {datasets}; "
              f"{len(complete)}/{len(runs)} runs complete.")
    order = {m: i for i, m in enumerate(agg["order"])}
    by_method: Dict[str, List[Path]] = {}
    for r in sorted(runs, key=lambda r: (order.get(r["method"], 99), A._seed_key(r["seed"]))):
        if r["status"] != "missing":
            by_method.setdefault(r["method"], []).append(grid_dir / r["dir"])
    saved = _read_json(grid_dir / "grid.json") or {}
    first = {m: dirs[0] for m, dirs in by_method.items()}
    configs = {m: c for m, c in ((m, _config(d)) for m, d in first.items()) if c is not None}
    provenance_section(page, [s for d in (d for ds in by_method.values() for d in ds)
                              if (s := _read_json(d / "summary.json"))],
                       command=saved.get("command"), config=next(iter(configs.values()), None),
                       config_label=f"{next(iter(configs), '')} (lowest seed)")
    config_diff_section(page, configs, what="method")

    page.heading("Results")
    if agg["methods"]:
        page.para(f"Test metrics of the checkpoint selected on validation, mean ± std over seeds; {A.STD_NOTE}.")
        page.table(*A.main_table(agg))
        page.para(A.PAIRED_NOTE + ".")
        lb = agg.get("leaderboard")
        if lb and lb["references"]:  # joint or joint-aux in the grid: CIs, Holm, beyond-noise mark, inflation
            from . import leaderboard

            page.subheading("Honest leaderboard")
            page.para(leaderboard.verdict(lb))
            page.table(*leaderboard.table(lb))
            for note in lb["notes"]:
                page.para(note + ".")
        if agg["modalities"]:
            page.table(*A.modality_table(agg))
            page.para("Head acc: test accuracy of each modality's own classifier head. Probe: linear probe on "
                      "the frozen encoder's features vs the same probe on its untrained initialisation (the "
                      "floor); an encoder whose probe barely beats its floor learned little from its modality.")
            for note in A.head_notes(agg):
                page.para(note + ".")
    else:
        page.para("No run of this grid is complete yet: no table.")
    if agg["missing"] or len(complete) < len(runs):
        page.para("Not in the table: " + ", ".join(f"{r['method']} seed {r['seed']} ({r['status']})"
                                                   for r in runs if r["status"] != "complete") + ".")

    mods = agg["modalities"] or _modalities([d for ds in by_method.values() for d in ds])
    with page_modalities(mods):
        page.heading("Figures")
        if agg["methods"]:
            ns = [agg["results"][m]["test"]["acc"]["n"] for m in agg["methods"]]
            page.image(P.accuracy_points(agg, page.out / "test_acc.png"),
                       ACC_CAPTION.format(what="method", width=_ci_width_note(ns)))
        _figures(page, by_method, mods, "method")
        if agg["methods"]:
            page.image(P.probe_bars(agg, page.out / "probes.png"), PROBES_CAPTION)
        _signals_section(page, [(m, dirs[0]) for m, dirs in by_method.items()])
    page.heading("Runs")
    page.table(["method", "seed", "status", "folder"],
               [[r["method"], str(r["seed"]), r["status"], r["dir"]] for r in runs])


# ---------------------------------------------------------------------------- sweep
def _sweep_cells(sweep_dir: Path) -> Tuple[List[int], List[float], List[int]]:
    """Batch sizes, learning rates and seeds of a sweep: from ``sweep.json``, else from its folder names."""
    saved = _read_json(sweep_dir / "sweep.json")
    if saved and saved.get("batch_sizes"):
        return list(saved["batch_sizes"]), list(saved["lrs"]), list(saved["seeds"])
    sizes, lrs, seeds = set(), set(), set()
    for cfg in sweep_dir.glob("bs*_lr*/seed*/config.yaml"):
        m, s = _CELL.match(cfg.parent.parent.name), re.fullmatch(r"seed(-?\d+)", cfg.parent.name)
        if m and s:
            sizes.add(int(m["bs"]))
            lrs.add(float(m["lr"]))
            seeds.add(int(s[1]))
    return sorted(sizes), sorted(lrs), sorted(seeds)


def _sweep_report(sweep_dir: Path, page: Page) -> None:
    from . import sweep as S

    sizes, lrs, seeds = _sweep_cells(sweep_dir)
    table = S.aggregate(sweep_dir, sizes, lrs, seeds)
    cells: Dict[str, List[Path]] = {}
    for bs in sizes:
        for lr in lrs:
            dirs = [S.cell_dir(sweep_dir, bs, lr, s) for s in seeds]
            dirs = [d for d in dirs if (d / "config.yaml").is_file()]
            if dirs:
                cells[f"N_B={bs} lr={lr:g}"] = dirs
    all_dirs = [d for ds in cells.values() for d in ds]
    summaries = [s for d in all_dirs if (s := _read_json(d / "summary.json"))]
    method = next((s["method"] for s in summaries), None) or (_config(all_dirs[0]) or {}).get("method", "?") \
        if all_dirs else "?"
    done = sum(c["n"] for c in table["cells"])
    page.para(f"Sweep folder <code>{esc(sweep_dir)}</code>: <b>{esc(method)}</b>, batch sizes N_B "
              f"{esc(sizes)} × learning rates {esc([f'{lr:g}' for lr in lrs])} × seeds {esc(seeds)}; "
              f"{done}/{len(sizes) * len(lrs) * len(seeds)} runs complete.",
              f"Sweep folder `{sweep_dir}`: **{method}**, batch sizes N_B {sizes} × learning rates "
              f"{[f'{lr:g}' for lr in lrs]} × seeds {seeds}; {done}/{len(sizes) * len(lrs) * len(seeds)} runs "
              f"complete.")
    configs = {c: cfg for c, cfg in ((c, _config(ds[0])) for c, ds in cells.items()) if cfg is not None}
    provenance_section(page, summaries, config=next(iter(configs.values()), None),
                       config_label=f"{next(iter(configs), '')} (lowest seed)")
    config_diff_section(page, configs, what="cell")

    page.heading("Results")
    page.para("Test accuracy of the checkpoint selected on validation, mean ± sample std over seeds; the best cell "
              "is chosen on validation accuracy, never on test.")
    page.table(["N_B", "lr", "runs", "test acc (%)", "val acc (%)", "head acc (%, test)"],
               [[str(c["batch_size"]), f"{c['lr']:g}",
                 f"{c['n']}" + (f" ({c['failed']} diverged)" if c["failed"] else ""),
                 _pm(c["test_acc_mean"], c["test_acc_std"]), _pm(c["val_acc_mean"], c["val_acc_std"]),
                 ", ".join(f"{m} {100 * a:.1f}" for m, a in c["head_acc_mean"].items())] for c in table["cells"]])
    ranked = sorted((c for c in table["cells"] if c["n"]), key=lambda c: -c["val_acc_mean"])
    if ranked:
        b = ranked[0]
        page.para(f"Best cell on validation: N_B={b['batch_size']}, lr={b['lr']:g} (test "
                  f"{_pm(b['test_acc_mean'], b['test_acc_std'])} %).")
    mods = _modalities(all_dirs)
    with page_modalities(mods):
        page.heading("Figures")
        page.out.mkdir(parents=True, exist_ok=True)  # sweep.heatmap writes where it is told
        page.image(S.heatmap(table, page.out / "sweep_heatmap.png", method),
                   "Test accuracy (%) per cell, mean ± std over seeds ('–': no complete run).")
        best = {f"N_B={c['batch_size']} lr={c['lr']:g}" for c in ranked[:6]}
        shown = {k: v for k, v in cells.items() if k in best} if len(cells) > 6 else cells
        if len(cells) > 6:
            page.para(f"Curves of the {len(shown)} best cells on validation (of {len(cells)}).")
        _figures(page, shown, mods, "cell")
        if ranked:
            label = f"N_B={ranked[0]['batch_size']} lr={ranked[0]['lr']:g}"
            _signals_section(page, [(method, cells[label][0])], heading=f"Method signals (best cell, {label})")
    page.heading("Runs")
    page.table(["cell", "folder", "status"],
               [[c, str(d.relative_to(sweep_dir)), "complete" if (d / "summary.json").is_file() else
                 "failed" if (d / "failed.json").is_file() else "incomplete"] for c, ds in cells.items() for d in ds])


def _pm(mean: Optional[float], std: Optional[float]) -> str:
    return "—" if mean is None else f"{100 * mean:.2f} ± {100 * std:.2f}"


# ---------------------------------------------------------------------------- single run
def _run_report(run_dir: Path, page: Page) -> None:
    records = P.read_metrics(run_dir)
    summary = _read_json(run_dir / "summary.json")
    config = _config(run_dir)
    method = (summary or {}).get("method") or (config or {}).get("method") or "?"
    if summary:
        page.para(f"Run <code>{esc(run_dir)}</code>: <b>{esc(method)}</b> on {esc(summary['dataset'])}, seed "
                  f"{summary['seed']}, {summary['epochs']} epochs, best epoch {summary['best_epoch']} (selected "
                  f"on {summary['select_on']}), wall time {summary['wall_time_s']:.1f} s on {summary['device']}.",
                  f"Run `{run_dir}`: **{method}** on {summary['dataset']}, seed {summary['seed']}, "
                  f"{summary['epochs']} epochs, best epoch {summary['best_epoch']} (selected on "
                  f"{summary['select_on']}), wall time {summary['wall_time_s']:.1f} s on {summary['device']}.")
        page.heading("Summary")
        mods = list(summary["test"].get("modality_acc") or {})
        rows = []
        for split in ("val", "test"):
            m = summary[split]
            rows.append([split, _pct(m.get("acc")), _pct(m.get("macro_f1")), _pct(m.get("map"))] +
                        [f"{_pct((m.get('modality_acc') or {}).get(k))} / {_pct((m.get('share_acc') or {}).get(k))}"
                         for k in mods])
        page.table(["split", "acc (%)", "macro-F1 (%)", "mAP (%)"] + [f"{k} head / share acc (%)" for k in mods], rows)
        page.para("Head: the modality's own classifier head. Share: the modality's part of the fused head alone.")
        if summary.get("probe"):
            page.table(["modality", "probe trained (%)", "probe floor (%)"],
                       [[k, _pct(v.get("trained")), _pct(v.get("floor"))] for k, v in summary["probe"].items()])
            page.para("Probe: linear probe test accuracy on the frozen encoder, vs the same probe on its "
                      "untrained initialisation (floor).")
        provenance_section(page, [summary], config=config)
    else:
        page.para(f"Run <code>{esc(run_dir)}</code> ({esc(method)}) is not complete (no summary.json): "
                  f"{len(records)} epoch(s) logged.",
                  f"Run `{run_dir}` ({method}) is not complete (no summary.json): {len(records)} epoch(s) logged.")
    mods = _modalities([run_dir])
    with page_modalities(mods):
        page.heading("Curves")
        page.image(P.run_curves(records, page.out / "curves.png", title=method,
                                best_epoch=(summary or {}).get("best_epoch")),
                   "Left: training losses per epoch (total in black; each modality's head loss in its colour, dotted "
                   "when the head is only monitored on detached features). Middle: fused prediction accuracy on "
                   "train/val/test. Right: each modality head's val (solid) and test (dashed) accuracy. Dotted "
                   "vertical line: the epoch selected on validation.")
        page.image(imbalance_panel({method: [records]}, {method: probe_gaps([summary] if summary else [])}, mods,
                                   page.out / "imbalance.png"), IMBALANCE_CAPTION.format(what="run"))
        modules, problems = plot_modules()
        page.warnings += problems
        names = modules_for(method, modules)
        if names:
            page.heading("Method signals")
            for name in names:
                _method_plots(name, modules[name], run_dir, page.out / "methods", page)


def _pct(v) -> str:
    return f"{100 * float(v):.2f}" if v is not None and math.isfinite(float(v)) else "—"


__all__ = ["add_arguments", "main", "build_report", "is_run_dir", "is_sweep_dir", "HTML_FILE", "MD_FILE"]
