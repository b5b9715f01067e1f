"""``mmbalance compare``: run a methods x seeds grid (resumable) and aggregate it into a table.

Layout of ``--out``::

    OUT/grid.json            machine-readable aggregate (see :mod:`.aggregate`) + the list of runs
    OUT/results.md           the tables in markdown
    OUT/<method>/seed<k>/    one ordinary run folder per method and seed (config.yaml, metrics.jsonl,
                             summary.json, last.pt, best.pt); ``+`` in a stacked method's name becomes
                             ``__`` in its folder name (``ogm-ge+dus-h`` -> ``ogm-ge__dus-h``)

Re-running the same command continues an interrupted grid: a run whose ``summary.json`` exists and whose
``config.yaml`` matches the requested config is skipped, an unfinished one resumes from its ``last.pt``.
A run folder holding a *different* config is an error (pass ``--overwrite`` to delete and redo it).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import threads
from ..config import Config, ConfigError
from ..threads import set_threads  # noqa: F401  (launch.py and scripts/ import it from here)
from . import aggregate as agg_mod
from . import leaderboard
from .leaderboard import paper_protocol

#: written into a run folder whose training stopped on a non-finite loss (removed if it later completes)
DIVERGED_FILE = "diverged.json"
GRID_FILE = "grid.json"
RESULTS_FILE = "results.md"
#: config keys that do not change what a run computes: a difference in them does not invalidate a run
IGNORED_KEYS = ("out", "train.progress", "data.num_workers", "train.checkpoint_every", "log.tensorboard",
                "data.trust_pickle")
#: overrides that would fight the grid's own axes
_GRID_KEYS = {"method": "--methods", "train.seed": "--seeds", "out": "--out"}


# ---------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import add_run_arguments

    p.description = ("Train every method with every seed (one run folder each, resumable; completed runs are "
                     "skipped), then write OUT/grid.json and OUT/results.md and print the table.")
    p.add_argument("--methods", required=True,
                   help="comma-separated methods, the FIRST is the reference of the paired comparison; "
                        "stack with + (e.g. joint,joint-aux,ogm-ge+dus-h)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds or ranges, e.g. 0,1,2 or 0-4 "
                                                    "(default 0,1,2)")
    p.add_argument("--out", required=True, help="grid folder")
    p.add_argument("--overwrite", action="store_true",
                   help="delete and redo runs whose folder holds a different config (default: refuse)")
    p.add_argument("--stop-on-error", action="store_true",
                   help="stop at the first failed run (default: record it and go on with the others)")
    p.add_argument("--dry-run", action="store_true", help="validate and list the runs, train nothing")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="run N runs at once in local worker processes, each with its thread share and (GPU runs) "
                        "its own device; same table as --jobs 1 with the same --threads (default 1)")
    p.add_argument("--launcher", choices=["local", "submitit"], default="local",
                   help="local (this machine, default) or submitit: one cluster job per run (SLURM), "
                        "options from --launcher-config")
    p.add_argument("--launcher-config", metavar="YAML",
                   help="YAML with a 'submitit:' section: cluster (slurm|local|debug), folder, parameters "
                        "(timeout_min, cpus_per_task, gpus_per_node, slurm_partition, ...); "
                        "see configs/launchers/slurm.yaml")
    add_run_arguments(p)
    p.epilog = ("Per-method options: method_args.<name>.<arg>=VALUE applies only to runs whose method stacks "
                "<name>. Other KEY=VALUE overrides apply to every run.")


def main(args) -> int:
    from . import launch

    out = Path(args.out)
    try:
        threads.apply(args)  # --threads comes with the run options (mmbalance.threads)
        if args.jobs < 1:
            raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
        if args.launcher == "submitit" and args.jobs > 1:
            raise ConfigError("--jobs is for the local launcher; with submitit every run is its own job (limit how "
                              "many run at once with parameters.slurm_array_parallelism)")
        if args.launcher_config and args.launcher != "submitit":
            raise ConfigError("--launcher-config needs --launcher submitit")
        section = launch.read_launcher_config(args.launcher_config)
        executor = launch.make_executor(section, out) if args.launcher == "submitit" else None
        plan = plan_grid(args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.dry_run:
        for r in plan:
            print(f"{r['method']:24s} seed {r['seed']:<4d} {r['status']:9s} {r['dir']}")
        return 0
    try:
        if args.launcher == "submitit":
            outcome = launch.run_grid_submitit(plan, executor, section, threads=args.threads)
        elif args.jobs > 1:
            outcome = launch.run_grid_parallel(plan, args.jobs, args.threads, stop_on_error=args.stop_on_error)
        else:
            outcome = run_grid(plan, progress=not args.no_progress, stop_on_error=args.stop_on_error)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to continue (completed runs are skipped, the "
              "interrupted one resumes from its last.pt)", file=sys.stderr)
        return 130
    command = ["mmbalance"] + sys.argv[1:] if sys.argv[1:2] == ["compare"] else None
    grid = write_grid(out, [r["method"] for r in _unique_methods(plan)], plan, outcome, command=command)
    print()
    print(format_grid_text(grid))
    print(f"\nwrote {out / GRID_FILE} and {out / RESULTS_FILE}; HTML report: mmbalance report {out}")
    failed = [r for r in grid["runs"] if r["status"] == "failed"]
    if failed:
        print(f"{len(failed)} run(s) failed: " + "; ".join(f"{r['method']} seed {r['seed']}: {r['error']}"
                                                         for r in failed), file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------------------- planning
def parse_methods(text: str) -> List[str]:
    """Split ``--methods``; every stacked name must be registered (all unknown names reported at once)."""
    from ..methods import METHODS
    from ..registry import suggest

    methods = [m.strip() for m in (text or "").split(",") if m.strip()]
    if not methods:
        raise ConfigError("--methods is empty")
    dup = sorted({m for m in methods if methods.count(m) > 1})
    if dup:
        raise ConfigError(f"--methods lists {dup[0]!r} twice")
    unknown = []
    for m in methods:
        parts = [p.strip() for p in m.split("+")]
        if any(not p for p in parts):
            raise ConfigError(f"--methods: {m!r} has an empty name around '+'")
        unknown += [f"{p!r}{suggest(p, METHODS.names())}" for p in parts if p not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method{'s' if len(unknown) > 1 else ''} in --methods: {'; '.join(unknown)}. "
                          f"Registered methods: {', '.join(METHODS.names())}. Nothing was run.")
    return methods


def parse_seeds(text: str) -> List[int]:
    seeds: List[int] = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        try:
            new = list(range(int(m[1]), int(m[2]) + 1)) if m else [int(part)]
        except ValueError:
            raise ConfigError(f"--seeds: {part!r} is not an integer or a range like 0-4") from None
        if m and not new:
            raise ConfigError(f"--seeds: empty range {part!r}")
        seeds += new
    if not seeds:
        raise ConfigError("--seeds is empty")
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ConfigError(f"--seeds lists {dup[0]} twice")
    return seeds


def safe_name(method: str) -> str:
    """Folder name of a method: ``+`` -> ``__``, anything outside ``[A-Za-z0-9._-]`` -> ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", method.replace("+", "__"))
    return name.lstrip(".") or "_"


def run_dir(out: Path, method: str, seed: int) -> Path:
    return Path(out) / safe_name(method) / f"seed{seed}"


def split_overrides(overrides: Sequence[str], methods: Sequence[str]) -> Tuple[List[str], Dict[str, List[str]]]:
    """``(common overrides, {method name: its method_args.<name>.* overrides})``; rejects overrides of the
    grid's own axes and method_args for names that no method of the grid stacks."""
    used = {p.strip() for m in methods for p in m.split("+")}
    common: List[str] = []
    per: Dict[str, List[str]] = {}
    for item in overrides or []:
        key = item.split("=", 1)[0].strip()
        if key in _GRID_KEYS:
            raise ConfigError(f"override {item!r}: set this with {_GRID_KEYS[key]} in a grid")
        if key.startswith("method_args."):
            parts = key.split(".")
            if len(parts) < 3:
                raise ConfigError(f"override {item!r}: expected method_args.<method>.<option>=VALUE")
            name = parts[1]
            if name not in used:
                raise ConfigError(f"override {item!r}: no method in --methods stacks {name!r} "
                                  f"(methods: {', '.join(methods)})")
            per.setdefault(name, []).append(item)
        else:
            common.append(item)
    return common, per


def config_for(args, method: str, seed: int, out: Path, common: List[str],
               per: Dict[str, List[str]]) -> Config:
    """The config of one run: shared options + overrides + this method's own method_args."""
    from ..cli import config_from_args

    names = [p.strip() for p in method.split("+")]
    items = common + [o for n in names for o in per.get(n, [])]
    ns = argparse.Namespace(**{**vars(args), "overrides": items})
    cfg = config_from_args(ns, method=method, seed=seed, out=str(run_dir(out, method, seed)))
    extra = [k for k in cfg.method_args if k not in names]
    if extra:  # method_args for other methods of the grid, e.g. from a shared --config YAML
        d = cfg.to_dict()
        d["method_args"] = {k: v for k, v in d["method_args"].items() if k in names}
        cfg = Config.from_dict(d)
    return cfg


def plan_grid(args) -> List[Dict[str, Any]]:
    """Validate everything (names, overrides, method options, plug-in compatibility, existing folders)
    and return one entry per run with its config and status (``todo``, ``resume`` or ``complete``)."""
    from ..engine.compat import check_plugins
    from ..methods import build_plugins

    methods = parse_methods(args.methods)
    seeds = parse_seeds(args.seeds)
    out = Path(args.out)
    folders: Dict[str, str] = {}
    for m in methods:
        other = folders.setdefault(safe_name(m), m)
        if other != m:
            raise ConfigError(f"--methods {other!r} and {m!r} would share the run folder {safe_name(m)!r}")
    common, per = split_overrides(args.overrides, methods)
    plan, conflicts = [], []
    for method in methods:
        for seed in seeds:
            cfg = config_for(args, method, seed, out, common, per)
            if seed == seeds[0]:  # options and stacking rules do not depend on the seed
                try:
                    check_plugins(build_plugins(cfg))
                except Exception as e:  # noqa: BLE001 — report which method, then re-raise as a config error
                    raise ConfigError(f"method {method!r}: {e}") from None
            d = run_dir(out, method, seed)
            status, diff = run_status(d, cfg)
            if status == "conflict":
                conflicts.append((d, diff))
            plan.append({"method": method, "seed": seed, "dir": d, "cfg": cfg, "status": status})
    if conflicts:
        if not getattr(args, "overwrite", False):
            lines = "\n".join(f"  {d}: {diff}" for d, diff in conflicts[:10])
            more = f"\n  ... and {len(conflicts) - 10} more" if len(conflicts) > 10 else ""
            raise ConfigError(f"{len(conflicts)} run folder(s) under {out} hold a different config:\n{lines}{more}\n"
                              f"Use another --out, or --overwrite to delete and redo them. Nothing was run.")
        for r in plan:
            if r["status"] == "conflict":
                if getattr(args, "dry_run", False):
                    r["status"] = "redo"  # what --overwrite would do; a dry run deletes nothing
                    continue
                _remove_run(r["dir"])
                r["status"] = "todo"
    return plan


def run_status(d: Path, cfg: Config) -> Tuple[str, str]:
    """``complete`` (summary.json + same config), ``resume`` (same config, unfinished), ``todo`` (nothing
    there) or ``conflict`` (another config; the second item says which keys differ)."""
    cfg_file = d / "config.yaml"
    if not cfg_file.is_file():
        return ("todo", "") if not (d / "last.pt").exists() else ("conflict", "last.pt without config.yaml")
    try:
        old = Config.from_yaml(cfg_file)
    except ConfigError as e:
        return "conflict", f"unreadable config.yaml ({e})"
    diff = config_diff(old, cfg)
    if diff:
        return "conflict", "; ".join(diff[:4]) + (" ..." if len(diff) > 4 else "")
    summary = _read_json(d / "summary.json")
    if summary is not None and summary.get("method") == cfg.method and summary.get("seed") == cfg.train.seed \
            and summary.get("epochs") == cfg.train.epochs:
        return "complete", ""
    return ("resume" if (d / "last.pt").exists() else "todo"), ""


def config_diff(a: Config, b: Config) -> List[str]:
    """``key: old -> new`` for every config key that differs, ignoring :data:`IGNORED_KEYS`."""
    return a.diff(b, IGNORED_KEYS)


def _remove_run(d: Path) -> None:
    # only a run folder (never the grid folder itself) is deleted, and only one we recognise as such
    if d.is_dir() and ((d / "config.yaml").exists() or (d / "last.pt").exists()):
        shutil.rmtree(d)


def _read_json(p: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _unique_methods(plan) -> List[Dict[str, Any]]:
    seen, out = set(), []
    for r in plan:
        if r["method"] not in seen:
            seen.add(r["method"])
            out.append(r)
    return out


# ---------------------------------------------------------------------------- running
def train_run(cfg: Config, on_epoch=None) -> Dict[str, Any]:
    """Train (or resume) one run in this process; ``on_epoch(record)`` is called after each epoch.
    Tests patch this function to count calls."""
    from ..engine import Trainer
    from ..engine.checkpoint import atomic_write_json
    from ..engine.losses import NonFiniteLossError

    trainer = Trainer(cfg, on_epoch=on_epoch)
    marker = Path(cfg.out) / DIVERGED_FILE if cfg.out else None
    try:
        summary = trainer.fit(resume=True)
    except NonFiniteLossError as e:  # a diverged run is an outcome of the method, not a missing result
        if marker is not None and trainer.is_main:
            atomic_write_json(marker, {"error": str(e), "epoch": trainer.epoch})
        raise
    if marker is not None and trainer.is_main:
        marker.unlink(missing_ok=True)
    return summary


def run_grid(plan: List[Dict[str, Any]], progress: bool = True, stop_on_error: bool = False) -> Dict[Path, Dict]:
    """Run every planned run that is not complete, in order. Returns ``{run dir: {status, error, skipped}}``.

    With ``progress`` one bar counts the epochs still to train (so its rate and ETA stay meaningful when
    runs are skipped) and a line is printed per run; the runs' own per-epoch bars are switched off."""
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = sum(r["cfg"].train.epochs for r in plan if r["status"] != "complete")
        bar = tqdm(total=total, unit="epoch", desc="grid", dynamic_ncols=True)
    say = (bar.write if bar is not None else print)
    outcome: Dict[Path, Dict] = {}
    n, done = len(plan), 0
    for i, r in enumerate(plan, 1):
        tag = f"[{i}/{n}] {r['method']} seed {r['seed']}"
        cfg, epochs = r["cfg"], r["cfg"].train.epochs
        if bar is not None:
            cfg = cfg.override(["train.progress=false"])
            bar.set_postfix_str(tag)

        def on_epoch(record, base=done, tag=tag, epochs=epochs):
            if bar is not None:
                bar.n = base + record["epoch"] + 1
                bar.set_postfix_str(f"{tag} epoch {record['epoch'] + 1}/{epochs} val acc {record['val']['acc']:.3f}")

        if r["status"] == "complete":
            say(f"{tag}: complete, skipped ({r['dir']})")
            outcome[r["dir"]] = {"status": "complete", "skipped": True}
            continue
        else:
            t0 = time.time()
            try:
                s = train_run(cfg, on_epoch=on_epoch)
            except KeyboardInterrupt:
                if bar is not None:
                    bar.close()
                raise
            except Exception as e:  # noqa: BLE001 — one failed run should not lose the rest of the grid
                msg = f"{type(e).__name__}: {e}"
                say(f"{tag}: FAILED after {time.time() - t0:.1f} s: {msg}")
                outcome[r["dir"]] = {"status": "failed", "error": msg}
                if stop_on_error:
                    say("stopping (--stop-on-error); the runs after it were not started")
                    break
            else:
                how = "resumed, " if r["status"] == "resume" else ""
                say(f"{tag}: {how}test acc {s['test']['acc']:.4f} (best epoch {s['best_epoch']}), "
                    f"{time.time() - t0:.1f} s")
                outcome[r["dir"]] = {"status": "complete", "skipped": False}
        done += epochs
        if bar is not None:
            bar.n = done
            bar.refresh()
    if bar is not None:
        bar.close()
    return outcome


# ---------------------------------------------------------------------------- aggregation + files
def collect_runs(grid_dir: Path, plan: Optional[List[Dict[str, Any]]] = None) -> List[Dict[str, Any]]:
    """Run entries ``{method, seed, dir, status, summary}`` of a grid: from ``plan`` if given, else from
    ``grid.json``'s run list if present, else every folder below ``grid_dir`` holding a ``config.yaml``."""
    grid_dir = Path(grid_dir)
    entries: List[Dict[str, Any]] = []
    if plan is not None:
        entries = [{"method": r["method"], "seed": r["seed"], "dir": Path(r["dir"])} for r in plan]
    else:
        saved = _read_json(grid_dir / GRID_FILE)
        if saved and saved.get("runs"):
            entries = [{"method": r["method"], "seed": r["seed"], "dir": grid_dir / r["dir"]} for r in saved["runs"]]
        else:
            for cfg_file in sorted(grid_dir.glob("**/config.yaml")):
                d = cfg_file.parent
                if "report" in d.relative_to(grid_dir).parts:
                    continue
                try:
                    c = Config.from_yaml(cfg_file)
                except ConfigError:
                    continue
                entries.append({"method": c.method, "seed": c.train.seed, "dir": d})
    for e in entries:
        s = _read_json(e["dir"] / "summary.json")
        e["summary"] = s
        e["status"] = "complete" if s is not None else "diverged" if (e["dir"] / DIVERGED_FILE).is_file() else (
            "incomplete" if (e["dir"] / "metrics.jsonl").exists() else "missing")
    return entries


def aggregate_grid(grid_dir: Path, order: Optional[List[str]] = None,
                   plan: Optional[List[Dict[str, Any]]] = None) -> Dict[str, Any]:
    """Aggregate whatever runs of the grid are complete (order: ``order``, else grid.json's, else as found)."""
    grid_dir = Path(grid_dir)
    entries = collect_runs(grid_dir, plan)
    if order is None:
        saved = _read_json(grid_dir / GRID_FILE)
        order = (saved or {}).get("methods") or _ordered([e["method"] for e in entries])
    summaries = []
    for e in entries:
        s = e["summary"]
        if s is not None:
            # the grid's own label wins (a summary's method is the same string unless edited by hand)
            summaries.append({**s, "method": e["method"], "seed": e["seed"],
                              "heads": head_training(e["dir"]), "paper_protocol": paper_protocol(e["dir"])})
    agg = agg_mod.aggregate(summaries, order)
    agg["runs"] = [{"method": e["method"], "seed": e["seed"], "dir": _rel(e["dir"], grid_dir),
                    "status": e["status"]} for e in entries]
    agg["seeds"] = sorted({e["seed"] for e in entries}, key=agg_mod._seed_key)
    agg["order"] = list(order)
    return agg


def head_training(d: Path) -> Optional[str]:
    """How the run's per-modality heads were trained, from the loss terms of its last training record:
    ``"loss"`` (a ``loss_uni_*`` term: the heads' CE reaches the encoders), ``"monitor"`` (``loss_monitor_*``:
    heads fitted on detached features, ``train.monitor_heads``), ``"none"`` (no head term: untrained heads),
    or None when there is no metrics.jsonl."""
    try:
        lines = [l for l in (Path(d) / "metrics.jsonl").read_text().splitlines() if l.strip()]
        train = json.loads(lines[-1]).get("train") or {}
    except (OSError, IndexError, json.JSONDecodeError):
        return None
    if any(k.startswith("loss_uni_") for k in train):
        return "loss"
    if any(k.startswith("loss_monitor_") for k in train):
        return "monitor"
    return "none"


def write_grid(out: Path, order: List[str], plan, outcome: Dict[Path, Dict], command=None) -> Dict[str, Any]:
    out = Path(out)
    grid = aggregate_grid(out, order, plan)
    for r in grid["runs"]:
        o = outcome.get(out / r["dir"]) or outcome.get(Path(r["dir"])) or {}
        if o.get("status") == "failed" and r["status"] != "complete":
            r["status"], r["error"] = "failed", o["error"]
        if o:
            r["skipped"] = bool(o.get("skipped"))
    if command:
        grid["command"] = " ".join(command)
    _write_json(out / GRID_FILE, agg_mod.json_safe({"kind": "mmbalance-grid", "version": 1, **grid}))
    from ..engine.checkpoint import atomic_write_text

    atomic_write_text(out / RESULTS_FILE, agg_mod.results_markdown(grid, title="mmbalance compare") +
                      (f"\nCommand: `{grid['command']}`\n" if command else ""))
    return grid


def format_grid_text(grid: Dict[str, Any]) -> str:
    parts = [agg_mod.text_table(*agg_mod.main_table(grid))]
    parts.append(agg_mod.STD_NOTE + ". " + agg_mod.PAIRED_NOTE + ".")
    lb = grid.get("leaderboard")
    if lb and lb["references"]:
        parts += ["", agg_mod.text_table(*leaderboard.table(lb)), leaderboard.verdict(lb)]
    if grid["modalities"]:
        parts.append("")
        parts.append(agg_mod.text_table(*agg_mod.modality_table(grid)))
    missing = [r for r in grid["runs"] if r["status"] != "complete"]
    if missing:
        parts.append(f"\nnot in the table ({len(missing)}): " +
                     ", ".join(f"{r['method']} seed {r['seed']} ({r['status']})" for r in missing))
    return "\n".join(parts)


def _write_json(p: Path, obj) -> None:
    from ..engine.checkpoint import atomic_write_text

    atomic_write_text(p, json.dumps(obj, indent=2, allow_nan=False) + "\n")


def _rel(p: Path, base: Path) -> str:
    try:
        return str(Path(p).relative_to(base))
    except ValueError:
        return str(p)


def _ordered(xs):
    seen = []
    for x in xs:
        if x not in seen:
            seen.append(x)
    return seen


__all__ = ["add_arguments", "main", "plan_grid", "run_grid", "aggregate_grid", "write_grid", "collect_runs",
           "safe_name", "run_dir", "parse_methods", "parse_seeds", "split_overrides", "config_diff", "train_run"]
