"""`mmbalance compare --jobs N` (local worker processes) and `--launcher submitit` (through its local executor):
same table as the sequential grid, resumable, failures recorded."""
import json
import re
from pathlib import Path

import pytest

from mmbalance.cli import main

GRID = ["compare", "--dataset", "synthetic", "--methods", "joint,joint-aux", "--seeds", "0,1", "--epochs", "2",
        "--threads", "1", "--no-progress", "log.tensorboard=false", "train.batch_size=64",
        "data.options.informativeness=0.3"]  # hard enough that the runs' accuracies differ


def _results_without_timings(out: Path) -> dict:
    """grid.json's results and run list, wall times and the `skipped` flag (which invocation trained) removed."""
    grid = json.loads((out / "grid.json").read_text())
    for r in grid["results"].values():
        r.pop("wall_time_s")
    for r in grid["runs"]:
        r.pop("skipped", None)
    grid.pop("command", None)
    return {k: grid[k] for k in ("methods", "seeds", "runs", "results")}


def _table_without_time_column(out: Path) -> list:
    lines = [l for l in (out / "results.md").read_text().splitlines() if l.startswith("| ")]
    return [l.rsplit("|", 2)[0] if "train time" not in l else l for l in lines]


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    out = tmp_path_factory.mktemp("grids") / "jobs1"
    assert main(GRID + ["--out", str(out)]) == 0
    return out


def test_jobs_2_gives_exactly_the_table_of_jobs_1_and_resumes(sequential, tmp_path, capsys):
    out = tmp_path / "jobs2"
    assert main(GRID + ["--jobs", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "4 run(s) on 2 worker process(es), 1 CPU thread(s) each" in text
    assert len(re.findall(r"test acc \d\.\d{4}", text)) == 4
    assert _results_without_timings(out) == _results_without_timings(sequential)
    assert _table_without_time_column(out) == _table_without_time_column(sequential)
    for d in (out / "joint-aux").glob("seed*"):  # every metric of every epoch, not just the summaries
        a = [json.loads(l) for l in (d / "metrics.jsonl").read_text().splitlines()]
        b = [json.loads(l) for l in (sequential / "joint-aux" / d.name / "metrics.jsonl").read_text().splitlines()]
        assert [(r["train"]["loss"], r["test"]) for r in a] == [(r["train"]["loss"], r["test"]) for r in b]

    # resumable: the same command trains nothing again; one deleted summary makes just that run train again
    mtimes = {d: (d / "summary.json").stat().st_mtime_ns for d in out.glob("*/seed*")}
    (out / "joint" / "seed1" / "summary.json").unlink()
    assert main(GRID + ["--jobs", "2", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert text.count("complete, skipped") == 3 and "1 run(s) on 1 worker process(es)" in text
    for d, m in mtimes.items():
        if d.parts[-2:] != ("joint", "seed1"):
            assert (d / "summary.json").stat().st_mtime_ns == m
    assert _results_without_timings(out) == _results_without_timings(sequential)


def test_failed_runs_in_workers_are_recorded(tmp_path, capsys):
    out = tmp_path / "bad"
    args = ["compare", "--dataset", "arrays", "--root", str(tmp_path / "no-such.npz"), "--methods", "joint",
            "--seeds", "0", "--epochs", "1", "--threads", "1", "--jobs", "2", "--no-progress", "--out", str(out)]
    assert main(args) == 1
    captured = capsys.readouterr()
    assert captured.out.count("FAILED: DataError") == 1 and "no such file or folder" in captured.out
    grid = json.loads((out / "grid.json").read_text())
    assert [r["status"] for r in grid["runs"]] == ["failed"]


def test_bad_jobs_and_launcher_options_stop_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(GRID + ["--jobs", "0", "--out", str(out)]) == 2
    assert "--jobs must be >= 1" in capsys.readouterr().err
    assert main(GRID + ["--launcher-config", "c.yaml", "--out", str(out)]) == 2
    assert "needs --launcher submitit" in capsys.readouterr().err
    cfg = tmp_path / "launcher.yaml"
    cfg.write_text("submitit:\n  cluster: local\n  partition: gpu\n")
    assert main(GRID + ["--launcher", "submitit", "--launcher-config", str(cfg), "--out", str(out)]) == 2
    assert "unknown key(s) ['partition']" in capsys.readouterr().err
    assert not out.exists()


def test_submitit_local_executor_runs_the_grid(sequential, tmp_path, capsys):
    pytest.importorskip("submitit", reason="pip install submitit (the dev extra installs it)")
    out = tmp_path / "submitit"
    cfg = tmp_path / "launcher.yaml"
    cfg.write_text("submitit:\n  cluster: local\n  parameters:\n    timeout_min: 10\n")
    grid = [a if a != "joint,joint-aux" else "joint" for a in GRID]  # 2 jobs: each one starts a Python + torch
    assert main(grid + ["--launcher", "submitit", "--launcher-config", str(cfg), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "submitted 2 job(s) through submitit (local)" in text and len(re.findall(r"test acc \d\.\d{4}", text)) == 2
    assert list((out / "submitit").glob("*_log.out"))  # submitit's own job logs
    assert _results_without_timings(out)["results"]["joint"] == _results_without_timings(sequential)["results"]["joint"]
    # a bad submitit parameter is refused by submitit before anything is submitted
    cfg.write_text("submitit:\n  cluster: local\n  parameters:\n    no_such_parameter: 1\n")
    (out / "joint" / "seed0" / "summary.json").unlink()
    assert main(grid + ["--launcher", "submitit", "--launcher-config", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr()
    assert "submitit launcher: Unknown executor 'no' in parameter 'no_such_parameter'" in err.err
    assert "skipped" not in err.out  # refused before the grid was even planned
    assert not (out / "joint" / "seed0" / "summary.json").exists()


def test_shipped_slurm_launcher_config_is_valid(tmp_path):
    """configs/launchers/slurm.yaml: every parameter name is one submitit knows (checked with the local
    executor, which validates slurm_* names too; the slurm executor itself needs srun)."""
    pytest.importorskip("submitit", reason="pip install submitit (the dev extra installs it)")
    from mmbalance.report import launch

    section = launch.read_launcher_config(str(Path(__file__).resolve().parents[1] / "configs/launchers/slurm.yaml"))
    assert section["cluster"] == "slurm" and section["parameters"]["slurm_partition"]
    executor = launch.make_executor({**section, "cluster": "local"}, tmp_path)
    assert executor.cluster == "local"
    section["parameters"]["slurm_partitionn"] = "typo"
    with pytest.raises(Exception, match="slurm_partitionn"):
        launch.make_executor({**section, "cluster": "local"}, tmp_path)
