"""scripts/build_results_md.py end to end on a tiny declared spec: commands, --run, RESULTS.md sections, the
composition matrix (unregistered plug-ins skipped with a note) and the README table between markers."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from mmbalance.cli import main
from mmbalance.config import ConfigError
from mmbalance.report import grids as G

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_results_md.py"
SPEC = """
defaults:
  seeds: 0-1
  epochs: 2
  overrides: [log.tensorboard=false, eval.probe=false, data.options.informativeness=0.3,
              method_args.ogm-ge.alpha=0.3]
header: |
  # Tiny results
readme:
  - marker: board
    grids: [tiny]
grids:
  - name: tiny
    title: Tiny grid
    dataset: synthetic
    methods: [joint, joint-aux, no-such-method]
  - name: matrix
    title: Tiny matrix
    kind: composition
    dataset: synthetic
    sampler: [none, no-such-sampler]
    gradient: [none, ogm-ge]
    objective: [joint-aux]
"""


def _script(*args, cwd):
    """Run the script's main() in this process (no new Python + torch start-up; `--run` still starts
    `mmbalance compare` as a subprocess, as a user's call would)."""
    import contextlib
    import importlib.util
    import io
    import os

    spec = importlib.util.spec_from_file_location("build_results_md", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = module.main(list(args))
    finally:
        os.chdir(here)
    return subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())


def test_spec_resolution_skips_what_cannot_run(tmp_path):
    (tmp_path / "spec.yaml").write_text(SPEC)
    spec = G.load_spec(tmp_path / "spec.yaml")
    tiny, matrix = [G.resolve(g) for g in spec["grids"]]
    assert tiny.methods == ["joint", "joint-aux"] and "no-such-method" in tiny.notes[0]
    assert "method_args.ogm-ge.alpha=0.3" not in tiny.overrides  # no method of that grid stacks ogm-ge
    assert matrix.methods == ["joint", "joint-aux", "joint-aux+ogm-ge"]
    assert matrix.notes == ["skipped (not registered yet: no-such-sampler): `joint-aux+no-such-sampler`, `joint-aux+no-such-sampler+ogm-ge`"]
    assert "method_args.ogm-ge.alpha=0.3" in matrix.overrides
    assert G.command(matrix, Path("R")) == [
        "mmbalance", "compare", "--dataset", "synthetic", "--methods", "joint,joint-aux,joint-aux+ogm-ge",
        "--seeds", "0-1", "--epochs", "2", "--threads", "1", "--out", "R/matrix", "log.tensorboard=false",
        "eval.probe=false", "data.options.informativeness=0.3", "method_args.ogm-ge.alpha=0.3"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("grids:\n  - {name: a, dataset: synthetic, seeds: 0, epochs: 1, methods: [joint], color: red}\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['color'\]"):
        G.load_spec(bad)
    bad.write_text("grids:\n  - {name: a, kind: composition, dataset: synthetic, seeds: 0, epochs: 1}\n")
    with pytest.raises(ConfigError, match="needs sampler, gradient and objective"):
        G.load_spec(bad)


def test_pipeline_end_to_end(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(SPEC)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:board -->\nold table\n<!-- /results:board -->\nrest\n")
    results = tmp_path / "RESULTS.md"
    common = ["--spec", "spec.yaml", "--root", "grids", "--results", str(results), "--readme", str(readme)]

    r = _script(*common, cwd=tmp_path)  # nothing has run: refuses, writes nothing
    assert r.returncode == 1 and "unfinished grid(s): tiny, matrix" in r.stderr and not results.exists()

    r = _script(*common, "--commands", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    commands = [l for l in r.stdout.splitlines() if l.startswith("mmbalance compare")]
    assert len(commands) == 2 and "# matrix: Tiny matrix (3 methods)" in r.stdout

    r = _script(*common, "--run", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "running mmbalance compare" in r.stdout and "wrote" in r.stdout and "updated" in r.stdout

    md = results.read_text()
    assert md.startswith("# Tiny results")
    assert md.count("## Tiny grid") == 1 and md.count("## Tiny matrix") == 1
    for command in commands:
        assert f"Command: `{command}`" in md
    assert "| sampler | gradient | joint-aux (%) |" in md
    assert re.search(r"\| none \| none \| \d+\.\d\d ± \d+\.\d\d", md)  # the joint-aux cell
    assert re.search(r"\| none \| ogm-ge \| \d+\.\d\d ± \d+\.\d\d", md)
    assert "| no-such-sampler | none | n/a |" in md and "skipped (not registered yet: no-such-sampler)" in md
    assert "no-such-method" in md and "best-on-test acc (%)" in md and "inflation (pp)" in md
    text = readme.read_text()
    assert text.startswith("intro\n<!-- results:board -->\n| method | Tiny grid (%) |") and "old table" not in text
    assert text.endswith("<!-- /results:board -->\nrest\n")

    # the printed command is exactly the grid's: run as printed, it finds every run complete
    out = tmp_path / "grids" / "tiny"
    argv = shlex.split(commands[0])[1:]
    argv[argv.index("--out") + 1] = str(out)
    assert main(argv) == 0
    assert capsys.readouterr().out.count("complete, skipped") == 4

    # the build is idempotent: a second --run trains nothing and writes the same page
    before = md
    r = _script(*common, "--run", cwd=tmp_path)
    assert r.returncode == 0 and "tiny: complete" in r.stdout and "matrix: complete" in r.stdout
    assert _strip_times(results.read_text()) == _strip_times(before)


def _strip_times(md: str) -> str:
    return "\n".join(l.rsplit("|", 2)[0] for l in md.splitlines())


def test_a_diverged_run_is_an_outcome_reported_not_a_missing_result(tmp_path):
    """A run stopped by a non-finite loss leaves diverged.json: the grid counts as finished (building does not
    refuse forever), the run is listed as diverged on the page, and a later completion removes the marker."""
    from mmbalance.report.compare import DIVERGED_FILE, aggregate_grid, run_dir

    grid = G.Grid(name="g", title="Diverging grid", dataset="synthetic", seeds="0", epochs=2, methods=["joint"],
                  overrides=["log.tensorboard=false", "eval.probe=false", "optim.lr=1e12"])
    argv = G.command(grid, tmp_path)[1:]
    assert not G.is_complete(grid, tmp_path)
    assert main(argv) == 1  # compare reports the failed run
    d = run_dir(tmp_path / "g", "joint", 0)
    assert "non-finite" in (d / DIVERGED_FILE).read_text() and not (d / "summary.json").exists()
    assert G.is_complete(grid, tmp_path)
    assert [r["status"] for r in aggregate_grid(tmp_path / "g")["runs"]] == ["diverged"]
    assert "**Diverged**" in G.section_markdown(grid, tmp_path) and "joint seed 0" in G.section_markdown(grid, tmp_path)
