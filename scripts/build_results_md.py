#!/usr/bin/env python
"""Regenerate RESULTS.md and the README's result tables from the grids declared in a spec.

The spec (default ``scripts/results_grids.yaml``; format in :mod:`mmbalance.report.grids`) lists every grid:
dataset, preset, methods (incl. stacks) or a composition matrix, seeds, epochs, overrides. Each grid's folder
is ``ROOT/<name>`` (default ROOT: runs/results).

    python scripts/build_results_md.py --commands        # print each grid's exact `mmbalance compare` command
    python scripts/build_results_md.py --run --jobs 2    # run the grids that are missing or unfinished, then build
    python scripts/build_results_md.py                   # build RESULTS.md + README tables from finished grids

Building refuses (exit 1, nothing written) while any grid is unfinished, and names it. Tables are recomputed
from the run folders (summary.json, metrics.jsonl), never copied, so they cannot go stale.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmbalance.config import ConfigError  # noqa: E402
from mmbalance.report import grids as G  # noqa: E402


def run_missing(grids, root: Path, jobs: int) -> bool:
    """Run every unfinished grid with `mmbalance compare` (which resumes); True when all ran cleanly."""
    ok = True
    for g in grids:
        if G.is_complete(g, root):
            print(f"{g.name}: complete")
            continue
        argv = G.command(g, root, jobs=jobs)
        print(f"{g.name}: running {' '.join(argv)}", flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                           os.environ.get("PYTHONPATH")]))}
        rc = subprocess.call([sys.executable, "-m", "mmbalance", *argv[1:]], env=env)
        if rc != 0:
            print(f"{g.name}: mmbalance compare exited {rc}", file=sys.stderr)
            ok = False
    return ok


def build(spec: dict, grids, root: Path, results: Path, readme: Path) -> int:
    missing = [g.name for g in grids if not G.is_complete(g, root)]
    if missing:
        print(f"unfinished grid(s): {', '.join(missing)}; run them first (--run, or the commands of --commands). "
              f"Nothing was written.", file=sys.stderr)
        return 1
    by_name = {g.name: g for g in grids}
    parts = [spec["header"].strip() + "\n"] if spec["header"] else []
    parts += ["\n" + G.section_markdown(g, root) for g in grids]
    results.write_text("".join(parts))
    print(f"wrote {results}")
    if spec["readme"]:
        text = readme.read_text()
        for entry in spec["readme"]:
            names = [n for n in entry["grids"] if n in by_name]
            text = G.replace_marked(text, entry["marker"], G.readme_markdown([by_name[n] for n in names], root))
        readme.write_text(text)
        print(f"updated {readme}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--spec", type=Path, default=ROOT / "scripts" / "results_grids.yaml")
    p.add_argument("--root", type=Path, default=Path("runs/results"), help="folder of the grid folders")
    p.add_argument("--results", type=Path, default=ROOT / "RESULTS.md")
    p.add_argument("--readme", type=Path, default=ROOT / "README.md")
    p.add_argument("--only", help="comma-separated grid names for --commands / --run (building always uses all)")
    p.add_argument("--commands", action="store_true", help="print each grid's command and what it skips")
    p.add_argument("--run", action="store_true", help="run the unfinished grids, then build")
    p.add_argument("--jobs", type=int, default=1, help="worker processes per grid with --run (same numbers)")
    args = p.parse_args(argv)
    try:
        spec = G.load_spec(args.spec)
        grids = all_grids = [G.resolve(g) for g in spec["grids"]]
        if args.only:
            wanted = [n.strip() for n in args.only.split(",") if n.strip()]
            unknown = [n for n in wanted if n not in {g.name for g in grids}]
            if unknown:
                raise ConfigError(f"--only: no grid named {unknown[0]!r} in {args.spec}")
            grids = [g for g in grids if g.name in wanted]
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.commands:
        for g in grids:
            print(f"# {g.name}: {g.title} ({len(g.methods)} methods)")
            for note in g.notes:
                print(f"#   {note}")
            print(G.command_text(g, args.root) + "\n")
        return 0
    if args.run and not run_missing(grids, args.root, args.jobs):
        return 1
    return build(spec, all_grids, args.root, args.results, args.readme)


if __name__ == "__main__":
    sys.exit(main())
