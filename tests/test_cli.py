import json

import pytest

from mmbalance.cli import main


def test_train_list_eval(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["train", "--dataset", "synthetic", "--method", "joint-aux", "--epochs", "2", "--seed", "1",
               "--out", str(out), "--no-progress", "log.tensorboard=false", "eval.probe=false"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "joint-aux on synthetic (seed 1)" in text and "test acc" in text
    assert {"config.yaml", "metrics.jsonl", "summary.json", "last.pt", "best.pt"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "summary.json").read_text())["seed"] == 1
    assert main(["eval", str(out), "--splits", "test"]) == 0
    assert '"acc"' in capsys.readouterr().out
    assert main(["list"]) == 0
    listing = capsys.readouterr().out
    for word in ("joint", "joint-aux", "unimodal", "av-digits", "mfeat", "synthetic", "resnet18", "concat", "film"):
        assert word in listing


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "synthtic"], "unknown dataset 'synthtic'. Did you mean 'synthetic'"),
    (["--method", "jiont"], "unknown method 'jiont'. Did you mean 'joint'"),
    (["--encoder", "resnet"], "unknown encoder 'resnet'. Did you mean 'resnet18'"),
    (["optim.lrr=0.1"], "unknown config key 'optim.lrr'. Did you mean 'lr'"),
    (["optim.name=sgdd"], "optim.name='sgdd' is not one of sgd, adam, adamw"),
])
def test_bad_names_fail_with_suggestion(tmp_path, capsys, argv, message):
    rc = main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", str(tmp_path / "r"),
               "--no-progress", "log.tensorboard=false"] + argv)
    assert rc == 2
    assert message in capsys.readouterr().err


def test_resume_flag_continues_a_run(tmp_path, capsys):
    base = ["train", "--dataset", "synthetic", "--out", str(tmp_path / "r"), "--no-progress",
            "log.tensorboard=false", "eval.probe=false"]
    assert main(base + ["--epochs", "1"]) == 0
    assert main(base + ["--epochs", "3", "--resume"]) == 0
    lines = (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(l)["epoch"] for l in lines] == [0, 1, 2]


def test_overrides_between_options(tmp_path):
    assert main(["train", "log.tensorboard=false", "--dataset", "synthetic", "eval.probe=false", "--epochs", "1",
                 "--out", str(tmp_path / "r"), "train.progress=false"]) == 0
    assert "tensorboard: false" in (tmp_path / "r" / "config.yaml").read_text()
