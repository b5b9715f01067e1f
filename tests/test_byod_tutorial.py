"""docs/bring-your-own-data.md runs as written: its Python block converts UEA BasicMotions (read from the installed
sktime wheel) into an .npz, its shell commands train, compare and report on it through the CLI."""
import importlib.util
import json
import re
import shlex
from pathlib import Path

import pytest

from mmbalance.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "bring-your-own-data.md"
#: the compare runs 1 seed x 5 epochs here instead of the page's 5 x 30 (CI time); the page's table comes from
#: the full command
SHORTER = {"--seeds 0-4": "--seeds 0", "--epochs 30": "--epochs 5"}


def _blocks(kind):
    return re.findall(rf"```{kind}\n(.*?)```", DOC.read_text(), re.S)


def _commands():
    for block in _blocks("bash"):
        yield from (c.strip() for c in block.replace("\\\n", " ").splitlines() if c.strip())


def _sktime_data():
    spec = importlib.util.find_spec("sktime")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "BasicMotions"
    return folder if (folder / "BasicMotions_TRAIN.ts").is_file() else None


@pytest.mark.skipif(_sktime_data() is None, reason="BasicMotions comes from `pip install --no-deps sktime==1.2.0` "
                                                   "(make test installs it)")
def test_the_tutorial_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (code,) = _blocks("python")
    exec(compile(code, str(DOC), "exec"), {"__name__": "tutorial"})
    import numpy as np

    with np.load("basicmotions.npz") as z:
        assert sorted(z.files) == ["accel", "classes", "gyro", "labels", "split"]
        assert z["accel"].shape == (80, 3, 100) and z["labels"].dtype.kind == "U"
    commands = list(_commands())
    assert [c.split()[1] for c in commands] == ["train", "compare", "report"]
    for cmd in commands:
        if cmd.split()[1] == "compare":
            for long, short in SHORTER.items():
                cmd = cmd.replace(long, short)
        assert main(shlex.split(cmd)[1:] + (["--no-progress"] if cmd.split()[1] != "report" else [])) == 0, cmd
    summary = json.loads(Path("runs/basicmotions/summary.json").read_text())
    assert summary["test"]["acc"] >= 0.85, summary["test"]  # 4 classes: chance is 0.25
    assert set(summary["test"]["modality_acc"]) == {"accel", "gyro"}
    grid = Path("runs/basicmotions-cmp")
    assert (grid / "results.md").is_file() and (grid / "report" / "report.html").is_file()

