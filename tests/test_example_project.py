"""examples/my_project: a project outside the package (its own method file and dataset file) is trained,
compared and reported by the CLI, without editing mmbalance."""
import json
from pathlib import Path

from mmbalance.cli import main

PROJECT = Path(__file__).resolve().parents[1] / "examples" / "my_project"
IMPORTS = ["--import", str(PROJECT / "methods.py"), "--import", str(PROJECT / "sensors.py")]


def test_the_project_is_compared_and_reported_by_the_cli(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *IMPORTS, "--dataset", "toy-sensors", "--methods", "joint,joint-aux,lag-weighting",
                 "--seeds", "0,1", "--epochs", "3", "--threads", "1", "--out", str(out), "--no-progress",
                 "eval.probe=false", "log.tensorboard=false"]) == 0
    grid = json.loads((out / "grid.json").read_text())
    assert "lag-weighting" in json.dumps(grid)
    run = out / "lag-weighting" / "seed0"
    cfg = (run / "config.yaml").read_text()
    assert "methods.py" in cfg and "sensors.py" in cfg  # recorded: resume/eval import them again
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert "lag-weighting/accel/weight" in rows[-1]["plugins"]  # the method acted and logged under its name
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["acc"] > 0.4  # 4 classes: it learnt
    assert main(["report", *IMPORTS, str(out)]) == 0
    report = (out / "report" / "report.html").read_text()
    assert "lag-weighting" in report and "toy-sensors" in report
