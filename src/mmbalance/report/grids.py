"""Declarative result grids: the list of ``mmbalance compare`` grids behind RESULTS.md and the README tables.

A spec (YAML, e.g. ``scripts/results_grids.yaml``) lists grids; each has a ``name`` (its folder under the
output root), a ``title``, ``dataset`` (+ optional ``preset``, ``modalities``), ``seeds``, ``epochs``,
``overrides`` (``KEY=VALUE``; ``defaults:`` supplies any of these) and either

* ``methods``: the methods (stacks with ``+``) of an ordinary grid, the first being the reference, or
* ``kind: composition`` with ``sampler``, ``gradient`` and ``objective`` lists: every combination
  ``objective+sampler+gradient`` (``none`` leaves a level out) is one method of the grid, after ``joint``;
  the result is also written as a matrix (rows sampler × gradient, columns objective).

Methods that are not registered (yet), and combinations that the plug-ins refuse to stack, are skipped with
a note instead of failing the grid; ``method_args`` overrides of skipped methods are dropped with them.
:func:`command` gives each grid's exact ``mmbalance compare`` command; ``scripts/build_results_md.py``
prints, runs (``--run``) and renders them.
"""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..config import ConfigError
from . import aggregate as A
from . import leaderboard as L

NONE = "none"
LEVELS = ("sampler", "gradient", "objective")
_FIELDS = {"name", "title", "kind", "dataset", "preset", "modalities", "methods", "seeds", "epochs",
           "overrides", "sampler", "gradient", "objective", "description"}


@dataclass
class Grid:
    name: str
    title: str
    dataset: str
    seeds: str
    epochs: int
    preset: Optional[str] = None
    modalities: Optional[str] = None
    kind: str = "table"  #: table | composition
    methods: List[str] = field(default_factory=list)  #: after :func:`resolve`: only what will run
    overrides: List[str] = field(default_factory=list)
    axes: Dict[str, List[str]] = field(default_factory=dict)  #: composition: level -> its plug-ins
    cells: Dict[Tuple[str, str, str], str] = field(default_factory=dict)  #: (sampler, gradient, objective) -> method
    notes: List[str] = field(default_factory=list)  #: what was skipped and why
    description: str = ""


def load_spec(path: Path) -> Dict[str, Any]:
    """``{"grids": [Grid], "readme": [...], "header": str}`` from a YAML spec (grids not yet resolved)."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the grid spec: {e}") from None
    defaults = data.get("defaults") or {}
    grids, names = [], set()
    for i, raw in enumerate(data.get("grids") or []):
        entry = {**defaults, **raw}
        unknown = sorted(set(entry) - _FIELDS)
        if unknown:
            raise ConfigError(f"{path}: grid {i + 1} ({raw.get('name', '?')}): unknown key(s) {unknown}")
        for key in ("name", "dataset", "seeds", "epochs"):
            if entry.get(key) in (None, ""):
                raise ConfigError(f"{path}: grid {i + 1} ({raw.get('name', '?')}) has no {key!r}")
        if entry["name"] in names:
            raise ConfigError(f"{path}: two grids are named {entry['name']!r}")
        names.add(entry["name"])
        kind = entry.get("kind", "table")
        if kind not in ("table", "composition"):
            raise ConfigError(f"{path}: grid {entry['name']!r}: kind must be table or composition, not {kind!r}")
        axes = {lvl: [str(x) for x in entry.get(lvl) or []] for lvl in LEVELS} if kind == "composition" else {}
        if kind == "composition" and not all(axes.values()):
            raise ConfigError(f"{path}: composition grid {entry['name']!r} needs sampler, gradient and objective lists")
        if kind == "table" and not entry.get("methods"):
            raise ConfigError(f"{path}: grid {entry['name']!r} has no methods")
        grids.append(Grid(name=str(entry["name"]), title=str(entry.get("title") or entry["name"]),
                          dataset=str(entry["dataset"]), seeds=str(entry["seeds"]), epochs=int(entry["epochs"]),
                          preset=entry.get("preset"), modalities=entry.get("modalities"), kind=kind,
                          methods=[str(m) for m in entry.get("methods") or []],
                          overrides=[str(o) for o in entry.get("overrides") or []], axes=axes,
                          description=str(entry.get("description") or "")))
    return {"grids": grids, "readme": data.get("readme") or [], "header": str(data.get("header") or "")}


def _refusal(method: str) -> Optional[str]:
    """Why ``method`` cannot run (an unregistered name, or plug-ins that refuse to stack), else None."""
    from ..config import Config
    from ..engine.compat import check_plugins
    from ..methods import METHODS, build_plugins

    missing = [p for p in method.split("+") if p not in METHODS]
    if missing:
        return f"not registered yet: {', '.join(missing)}"
    try:
        check_plugins(build_plugins(Config().override([f"method={method}"])))
    except Exception as e:  # noqa: BLE001 — any refusal is reported as a note, the grid goes on
        return f"refused: {e}".splitlines()[0]
    return None


def resolve(grid: Grid) -> Grid:
    """Expand a composition grid into methods, drop what cannot run (with notes) and its method_args."""
    if grid.kind == "composition":
        grid.methods = ["joint"]
        for o in grid.axes["objective"]:
            for s in grid.axes["sampler"]:
                for g in grid.axes["gradient"]:
                    grid.cells[(s, g, o)] = "+".join(p for p in (o, s, g) if p != NONE) or "joint"
        candidates = list(grid.cells.values())
    else:
        candidates, grid.methods = list(grid.methods), []
    skipped: Dict[str, List[str]] = {}  # reason -> methods, so that one missing plug-in is one note
    for method in candidates:
        why = _refusal(method)
        if why:
            skipped.setdefault(why, []).append(method)
        elif method not in grid.methods:
            grid.methods.append(method)
    grid.notes += [f"skipped ({why}): {', '.join(f'`{m}`' for m in ms)}" for why, ms in skipped.items()]
    used = {p for m in grid.methods for p in m.split("+")}
    kept = []
    for o in grid.overrides:
        parts = o.split("=", 1)[0].split(".")
        if parts[0] == "method_args" and len(parts) > 1 and parts[1] not in used:
            continue  # its method was skipped (or is not in this grid)
        kept.append(o)
    grid.overrides = kept
    return grid


def command(grid: Grid, root: Path, jobs: Optional[int] = None) -> List[str]:
    """The ``mmbalance compare`` argv of a resolved grid (``--jobs`` does not change its numbers)."""
    argv = ["mmbalance", "compare", "--dataset", grid.dataset]
    if grid.preset:
        argv += ["--preset", str(grid.preset)]
    if grid.modalities:
        argv += ["--modalities", str(grid.modalities)]
    argv += ["--methods", ",".join(grid.methods), "--seeds", grid.seeds, "--epochs", str(grid.epochs),
             "--threads", "1", "--out", str(Path(root) / grid.name)]
    if jobs and jobs > 1:
        argv += ["--jobs", str(jobs)]
    return argv + list(grid.overrides)


def command_text(grid: Grid, root: Path) -> str:
    return shlex.join(command(grid, root))


def is_complete(grid: Grid, root: Path) -> bool:
    """Every (method, seed) run of the grid has an outcome: a summary.json, or a diverged.json (training stopped
    on a non-finite loss: reported as such, not run again)."""
    from .compare import DIVERGED_FILE, parse_seeds, run_dir

    def done(d: Path) -> bool:
        return (d / "summary.json").is_file() or (d / DIVERGED_FILE).is_file()

    return all(done(run_dir(Path(root) / grid.name, m, s)) for m in grid.methods for s in parse_seeds(grid.seeds))


# ---------------------------------------------------------------------------- rendering
def matrix_markdown(grid: Grid, agg: Dict[str, Any]) -> str:
    """Composition matrix: rows sampler × gradient, columns objective; honest acc ± std with the ▲/▼ mark."""
    rows_lb = (agg.get("leaderboard") or {}).get("rows", {})
    headers = ["sampler", "gradient"] + [f"{o} (%)" for o in grid.axes["objective"]]
    rows = []
    for s in grid.axes["sampler"]:
        for g in grid.axes["gradient"]:
            row = [s, g]
            for o in grid.axes["objective"]:
                method = grid.cells[(s, g, o)]
                r = rows_lb.get(method)
                row.append(A.fmt_pct(r["acc"]) + (f" {r['beyond_noise']}" if r["beyond_noise"] else "")
                           if r else "n/a")
            rows.append(row)
    return A.markdown_table(headers, rows)


def section_markdown(grid: Grid, root: Path, level: str = "##") -> str:
    """A RESULTS.md section: title, the grid's tables (regenerated from its runs), notes and its command."""
    from .compare import aggregate_grid

    agg = aggregate_grid(Path(root) / grid.name, order=grid.methods)
    body = A.results_markdown(agg)
    parts = [f"{level} {grid.title}\n"]
    if grid.description:
        parts.append(grid.description.strip() + "\n")
    if grid.kind == "composition":
        parts.append(f"Composition matrix: honest test accuracy (%) of `objective+sampler+gradient`, mean ± std "
                     f"over seeds; {L.BETTER}/{L.WORSE} = better/worse than joint-aux beyond noise.\n")
        parts.append(matrix_markdown(grid, agg) + "\n")
    parts.append(body.strip() + "\n")
    parts += [f"* {n}\n" for n in grid.notes]
    diverged = [r for r in agg["runs"] if r["status"] == "diverged"]
    if diverged:
        parts.append("* **Diverged** (training stopped on a non-finite loss; not in the means, and each paired test "
                     "uses the seeds both methods completed): "
                     + ", ".join(f"{r['method']} seed {r['seed']}" for r in diverged) + ".\n")
    parts.append(f"\nCommand: `{command_text(grid, root)}`\n")
    return "\n".join(parts)


def readme_markdown(grids: List[Grid], root: Path) -> str:
    """One compact table for the README: per method, honest acc ± std (with the mark) on each grid, and the
    mean selection inflation over those grids."""
    from .compare import aggregate_grid

    lbs = [aggregate_grid(Path(root) / g.name, order=g.methods)["leaderboard"] for g in grids]
    methods = A._ordered_union(lb["methods"] for lb in lbs)
    headers = ["method"] + [f"{g.title} (%)" for g in grids] + ["inflation, mean over these (pp)"]
    rows = []
    for m in methods:
        row, infl = [m], []
        for lb in lbs:
            r = lb["rows"].get(m)
            row.append(A.fmt_pct(r["acc"], 1) + (f" {r['beyond_noise']}" if r["beyond_noise"] else "") if r else "—")
            if r and A._finite(r["inflation"]["mean"]):
                infl.append(r["inflation"]["mean"])
        row.append(f"{100 * sum(infl) / len(infl):+.2f}" if infl else "—")
        rows.append(row)
    return A.markdown_table(headers, rows)


def replace_marked(text: str, name: str, body: str) -> str:
    """Replace what lies between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``."""
    start, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    i, j = text.find(start), text.find(end)
    if i < 0 or j < i:
        raise ConfigError(f"no '{start}' ... '{end}' markers to fill")
    return text[: i + len(start)] + "\n" + body.strip() + "\n" + text[j:]


__all__ = ["Grid", "load_spec", "resolve", "command", "command_text", "is_complete", "section_markdown",
           "matrix_markdown", "readme_markdown", "replace_marked"]
