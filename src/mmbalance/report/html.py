"""``mmbalance report RUN_OR_GRID``: a self-contained HTML page (PNG images embedded as base64) and a
markdown file (next to its PNGs) for one run folder or a ``mmbalance compare`` grid folder.

Grid: the results tables (recomputed from the runs' ``summary.json``), test accuracy per method with
error bars, per-modality validation accuracy over epochs (mean over seeds), linear probes vs their floor,
and each method's own signals from the ``plots_<method>.py`` modules (for the first seed's run).
Run: its summary, its curves, and its method's own plots.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import html as _html
import json
import math
import sys
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import aggregate as A
from . import modules_for, plot_modules
from . import plots as P

HTML_FILE = "report.html"
MD_FILE = "report.md"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Write report.html (self-contained: images embedded) and report.md (+ PNGs) for a run "
                     "folder or a grid folder made by `mmbalance compare`.")
    p.add_argument("path", metavar="RUN_OR_GRID", help="a run folder (has metrics.jsonl) or a grid folder")
    p.add_argument("--out", help="output folder (default: RUN_OR_GRID/report)")
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


def build_report(path: Path, out: Path, title: Optional[str] = None) -> Dict[str, Any]:
    """Write the report of a run or grid folder; returns ``{html, markdown, images, warnings}``."""
    path, out = Path(path), Path(out)
    page = _Page(title or f"mmbalance report: {path.resolve().name}", out)
    if is_run_dir(path):
        _run_report(path, page)
    else:
        _grid_report(path, page)
    return page.write()


# ---------------------------------------------------------------------------- grid
def _grid_report(grid_dir: Path, page: "_Page") -> None:
    from .compare import aggregate_grid, safe_name

    agg = aggregate_grid(grid_dir)
    runs = agg["runs"]
    if not runs:
        raise FileNotFoundError(f"{grid_dir}: neither a run folder (metrics.jsonl) nor a grid folder "
                                f"(grid.json or run folders with config.yaml)")
    complete = [r for r in runs if r["status"] == "complete"]
    page.para(f"Grid folder <code>{_e(str(grid_dir))}</code>: {len(agg['methods'])} method(s), "
              f"seeds {', '.join(map(str, agg['seeds']))}, dataset {_e(', '.join(agg['datasets']) or '?')}; "
              f"{len(complete)}/{len(runs)} runs complete.",
              f"Grid folder `{grid_dir}`: {len(agg['methods'])} method(s), seeds "
              f"{', '.join(map(str, agg['seeds']))}, dataset {', '.join(agg['datasets']) or '?'}; "
              f"{len(complete)}/{len(runs)} runs complete.")
    page.heading("Results")
    if agg["methods"]:
        page.para(f"Test metrics of the checkpoint selected on validation, mean ± std over seeds; {A.STD_NOTE}.")
        page.table(*A.main_table(agg))
        page.para(A.PAIRED_NOTE + ".")
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

    page.heading("Figures")
    if agg["methods"]:
        page.image(P.accuracy_bars(agg, page.out / "test_acc.png"),
                   "Test accuracy per method (bar: mean, error bar: sample std over seeds, dots: seeds).")
    curves: Dict[str, List[List[Dict[str, Any]]]] = {}
    for r in runs:
        curves.setdefault(r["method"], []).append(P.read_metrics(grid_dir / r["dir"]))
    mods = agg["modalities"] or _modalities_from(curves)
    page.image(P.modality_curves(curves, mods, page.out / "modality_curves.png"),
               "Validation accuracy over epochs, fused prediction and each modality's own head; mean over "
               "seeds (incomplete runs included up to their last epoch), band ± std.")
    if agg["methods"]:
        page.image(P.probe_bars(agg, page.out / "probes.png"),
                   "Linear probe per modality: bar = trained encoder, black tick = untrained floor.")

    modules, problems = plot_modules()
    page.warnings += problems
    page.heading("Method signals")
    any_plot = False
    seen = set()
    for r in sorted(runs, key=lambda r: (agg["order"].index(r["method"]) if r["method"] in agg["order"] else 99,
                                         A._seed_key(r["seed"]))):
        if r["method"] in seen or r["status"] == "missing":
            continue
        names = modules_for(r["method"], modules)
        if not names:
            continue
        seen.add(r["method"])
        page.subheading(f"{r['method']} (seed {r['seed']})")
        for name in names:
            any_plot |= _method_plots(name, modules[name], grid_dir / r["dir"],
                                      page.out / "methods" / safe_name(r["method"]), page)
    if not any_plot:
        page.para("No method of this grid has its own plots (plots_<method>.py modules: "
                  f"{', '.join(sorted(modules)) or 'none'}).")
    page.heading("Runs")
    page.table(["method", "seed", "status", "folder"],
               [[r["method"], str(r["seed"]), r["status"], r["dir"]] for r in runs])


def _modalities_from(curves) -> List[str]:
    mods: List[str] = []
    for runs in curves.values():
        for recs in runs:
            for rec in recs[-1:]:
                for m in ((rec.get("val") or {}).get("modality_acc") or {}):
                    if m not in mods:
                        mods.append(m)
    return mods


def _method_plots(name: str, module, run_dir: Path, out_dir: Path, page: "_Page") -> bool:
    try:
        paths = module.plot(run_dir, out_dir) or []
    except Exception as e:  # noqa: BLE001 — one broken plot module must not lose the whole report
        page.warnings.append(f"{name}.plot({run_dir}) failed: {type(e).__name__}: {e}")
        page.para(f"({name} failed: {type(e).__name__}: {e})")
        traceback.print_exc(file=sys.stderr)
        return False
    shown = False
    for p in paths:
        p = Path(p)
        if p.suffix.lower() == ".png" and p.is_file():
            page.image(p, f"{name}: {p.stem.replace('_', ' ')}")
            shown = True
    if not shown:
        page.para(f"({name}: nothing to plot for {run_dir.name} — the run did not log its signals)")
    return shown


# ---------------------------------------------------------------------------- single run
def _run_report(run_dir: Path, page: "_Page") -> None:
    records = P.read_metrics(run_dir)
    summary = _read_json(run_dir / "summary.json")
    method = (summary or {}).get("method") or _config_method(run_dir) or "?"
    if summary:
        page.para(f"Run <code>{_e(str(run_dir))}</code>: <b>{_e(method)}</b> on {_e(summary['dataset'])}, seed "
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
                        [_pct((m.get("modality_acc") or {}).get(k)) for k in mods])
        page.table(["split", "acc (%)", "macro-F1 (%)", "mAP (%)"] + [f"{k} head acc (%)" for k in mods], rows)
        if summary.get("probe"):
            page.table(["modality", "probe trained (%)", "probe floor (%)"],
                       [[k, _pct(v.get("trained")), _pct(v.get("floor"))] for k, v in summary["probe"].items()])
            page.para("Probe: linear probe test accuracy on the frozen encoder, vs the same probe on its "
                      "untrained initialisation (floor).")
    else:
        page.para(f"Run <code>{_e(str(run_dir))}</code> ({_e(method)}) is not complete (no summary.json): "
                  f"{len(records)} epoch(s) logged.",
                  f"Run `{run_dir}` ({method}) is not complete (no summary.json): {len(records)} epoch(s) logged.")
    page.heading("Curves")
    page.image(P.run_curves(records, page.out / "curves.png", title=method,
                            best_epoch=(summary or {}).get("best_epoch")),
               "Training losses, fused accuracy, per-modality head accuracy per epoch.")
    modules, problems = plot_modules()
    page.warnings += problems
    names = modules_for(method, modules)
    if names:
        page.heading("Method signals")
        for name in names:
            _method_plots(name, modules[name], run_dir, page.out / "methods", page)


def _config_method(run_dir: Path) -> Optional[str]:
    try:
        from ..config import Config

        return Config.from_yaml(run_dir / "config.yaml").method
    except Exception:  # noqa: BLE001
        return None


def _read_json(p: Path):
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _pct(v) -> str:
    return f"{100 * float(v):.2f}" if v is not None and math.isfinite(float(v)) else "—"


def _e(s: str) -> str:
    return _html.escape(str(s))


# ---------------------------------------------------------------------------- page builder
_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #ddd;padding-bottom:.3em}h2{margin-top:1.6em;border-bottom:1px solid #eee}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;padding:.3em .6em}
th{background:#f4f4f4}td{text-align:right}td:first-child{text-align:left;font-weight:600}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#555}
code{background:#f4f4f4;padding:0 .2em}.warn{color:#a00}.meta{color:#777;font-size:.85em}
"""


class _Page:
    """Accumulates the same content as HTML (images inlined) and markdown (images linked)."""

    def __init__(self, title: str, out: Path):
        self.title, self.out = title, out
        self.html: List[str] = []
        self.md: List[str] = []
        self.images: List[Path] = []
        self.warnings: List[str] = []

    def heading(self, text: str) -> None:
        self.html.append(f"<h2>{_e(text)}</h2>")
        self.md.append(f"\n## {text}\n")

    def subheading(self, text: str) -> None:
        self.html.append(f"<h3>{_e(text)}</h3>")
        self.md.append(f"\n### {text}\n")

    def para(self, html_text: str, md_text: Optional[str] = None) -> None:
        """``html_text`` is HTML when ``md_text`` is given; otherwise plain text used for both."""
        if md_text is None:
            self.html.append(f"<p>{_e(html_text)}</p>")
            self.md.append(html_text + "\n")
        else:
            self.html.append(f"<p>{html_text}</p>")
            self.md.append(md_text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        head = "".join(f"<th>{_e(h)}</th>" for h in headers)
        body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
        self.html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        self.md.append(A.markdown_table(headers, rows) + "\n")

    def image(self, path: Optional[Path], caption: str) -> None:
        if path is None or not Path(path).is_file():
            return
        path = Path(path)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        self.html.append(f'<figure><img alt="{_e(path.stem)}" src="data:image/png;base64,{data}">'
                         f"<figcaption>{_e(caption)}</figcaption></figure>")
        try:
            rel = path.resolve().relative_to(self.out.resolve())
        except ValueError:
            rel = path.resolve()
        self.md.append(f"![{path.stem}]({rel.as_posix()})\n\n*{caption}*\n")
        self.images.append(path)

    def write(self) -> Dict[str, Any]:
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        warn_html = "".join(f'<p class="warn">warning: {_e(w)}</p>' for w in self.warnings)
        doc = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{_e(self.title)}</title>"
               f"<style>{_CSS}</style></head><body><h1>{_e(self.title)}</h1>"
               f"<p class=\"meta\">generated by mmbalance report on {stamp}</p>{warn_html}"
               + "\n".join(self.html) + "</body></html>\n")
        self.out.mkdir(parents=True, exist_ok=True)
        html_path = self.out / HTML_FILE
        html_path.write_text(doc, encoding="utf-8")
        md = [f"# {self.title}\n", f"*generated by mmbalance report on {stamp}*\n"]
        md += [f"> warning: {w}\n" for w in self.warnings]
        md_path = self.out / MD_FILE
        md_path.write_text("\n".join(md + self.md), encoding="utf-8")
        return {"html": html_path, "markdown": md_path, "images": list(self.images), "warnings": list(self.warnings)}


__all__ = ["add_arguments", "main", "build_report", "is_run_dir"]

