"""Provenance: what every run records about its code, command, config, environment and data; the dataset named
truthfully for data passed in from Python; ``mmbalance eval`` refusing, in one line, what it cannot rebuild."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import mmbalance
from mmbalance import Config, Trainer
from mmbalance.cli import main
from mmbalance.data import from_arrays
from mmbalance.provenance import collect, dataset_label, describe_data, git_state

REPO = Path(__file__).resolve().parents[1]


def arrays(n=240, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return {"audio": (rng.normal(size=(n, 10)) + y[:, None]).astype("float32"),
            "video": rng.normal(size=(n, 6)).astype("float32")}, y


def quick_cfg(out=None):
    # the default dataset (av-digits) stays in the config: the bug was that it was recorded for passed data
    items = ["train.epochs=2", "log.tensorboard=false", "train.progress=false", "eval.probe=false"]
    return Config().override(items + ([f"out={out}"] if out else []))


@pytest.fixture(scope="module")
def python_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov") / "run"
    inputs, y = arrays()
    summary = Trainer(quick_cfg(out), splits=from_arrays(inputs, y)).fit()
    return out, summary


def test_data_passed_from_python_is_not_recorded_as_the_config_dataset(python_run, tmp_path):
    out, summary = python_run
    on_disk = json.loads((out / "summary.json").read_text())
    for s in (summary, on_disk):
        assert s["dataset"] == "arrays (passed from Python)"
        assert s["provenance"]["data_source"] == "python"
        assert s["provenance"]["config"]["data"]["name"] is None
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["data"]["name"] is None and "passed from Python" in (out / "config.yaml").read_text()
    assert Config.from_yaml(out / "config.yaml").data.name is None  # still a loadable config
    assert main(["report", str(out), "--out", str(tmp_path / "rep")]) == 0
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "arrays (passed from Python)" in page and "av-digits" not in page
    named = from_arrays(*arrays(), name="my-emotions")
    assert dataset_label(Config(), named, from_python=True) == "my-emotions (passed from Python)"
    assert dataset_label(Config().override(["data.preset=hard"])) == "av-digits/hard"


def test_a_run_on_python_data_resumes(tmp_path):
    """config.yaml records data.name null for such a run; --resume compares with the config as recorded."""
    out = tmp_path / "run"
    inputs, y = arrays()
    Trainer(quick_cfg(out), splits=from_arrays(inputs, y)).fit()
    more = quick_cfg(out).override(["train.epochs=3"])
    summary = Trainer(more, splits=from_arrays(inputs, y)).fit(resume=True)
    assert summary["epochs"] == 3 and summary["dataset"] == "arrays (passed from Python)"


def test_eval_of_a_run_on_python_data_fails_in_one_line(python_run, capsys):
    out, _ = python_run
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "passed from Python" in err and "Trainer(" in err


def test_eval_of_a_run_whose_config_does_not_match_its_checkpoint_fails_in_one_line(python_run, tmp_path, capsys):
    """A run recorded before this fix (config.yaml naming a dataset that was not used) must not crash with a
    traceback: the checkpoint check (engine.checkpoint.check_model_state) names the file and the mismatch."""
    out, _ = python_run
    old = tmp_path / "old"
    old.mkdir()
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    # same modalities and classes, other input shapes: what the old trainer could write
    cfg["data"].update(name="synthetic", modalities=["audio", "video"], options={"dim": 7, "classes": 3})
    (old / "config.yaml").write_text(yaml.safe_dump(cfg))
    (old / "best.pt").write_bytes((out / "best.pt").read_bytes())
    assert main(["eval", str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(old / "best.pt") in err and "another shape" in err


def test_summary_records_version_commit_argv_config_packages_and_data(tmp_path):
    out = tmp_path / "run"
    cfg = Config().override(["data.name=synthetic", "train.epochs=1", "log.tensorboard=false", "train.progress=false",
                             "eval.probe=false", f"out={out}"])
    summary = Trainer(cfg).fit()
    p = json.loads((out / "summary.json").read_text())["provenance"]
    assert p == json.loads(json.dumps(summary["provenance"]))
    assert p["mmbalance"] == mmbalance.__version__ and p["argv"] == sys.argv
    assert p["dataset"] == summary["dataset"] == "synthetic" and p["data_source"] == "config"
    expected = cfg.to_dict()
    expected.pop("out")
    assert p["config"] == expected
    for name in ("python", "torch", "numpy", "scikit-learn", "scipy"):
        assert p["packages"][name], name
    assert p["data"]["modalities"] == ["a", "b"]
    assert {s: p["data"][s]["n"] for s in ("train", "val", "test")} == {
        s: len(Trainer(cfg.override(["out=null"])).splits[s]) for s in ("train", "val", "test")}
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0 and (REPO / "src" / "mmbalance").resolve() == Path(mmbalance.__file__).parent.resolve():
        assert p["git"]["commit"] == head.stdout.strip() and isinstance(p["git"]["dirty"], bool)


def test_git_state_only_for_this_package_in_its_own_checkout(tmp_path):
    assert git_state(tmp_path) is None  # not a checkout
    other = tmp_path / "other"
    (other / "pkg").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(other)], check=True)
    assert git_state(other / "pkg") is None  # a checkout, but not of mmbalance (e.g. a venv inside a repo)


def test_recorded_data_and_its_fingerprint_change_with_the_data_and_only_with_it():
    inputs, y = arrays()
    d = describe_data(from_arrays(inputs, y))
    assert d == describe_data(from_arrays(*arrays()))  # same data, same record
    assert d["modalities"] == ["audio", "video"] and d["train"]["shapes"] == {"audio": [10], "video": [6]}
    assert d["train"]["n"] + d["val"]["n"] + d["test"]["n"] == len(y) and d["fingerprint"].startswith("sha256:")
    other_labels = y.copy()
    i = int(np.argmax(other_labels != other_labels[0]))
    other_labels[[0, i]] = other_labels[[i, 0]]  # two samples of different classes swap labels
    assert describe_data(from_arrays(inputs, other_labels))["fingerprint"] != d["fingerprint"]
    splits = from_arrays(inputs, y)
    splits.train.inputs["video"][0, 0] += 1.0  # one value of a sampled input (the first sample always is)
    assert describe_data(splits)["fingerprint"] != d["fingerprint"]
    assert describe_data(splits, fingerprint="sha256:given")["fingerprint"] == "sha256:given"


def test_summary_records_the_fingerprint_the_trainer_checks_on_resume(tmp_path):
    out = tmp_path / "run"
    cfg = Config().override(["data.name=synthetic", "train.epochs=1", "log.tensorboard=false", "train.progress=false",
                             "eval.probe=false", f"out={out}"])
    t = Trainer(cfg)
    summary = t.fit()
    assert summary["provenance"]["data"]["fingerprint"] == t.data_fingerprint


def test_provenance_never_loses_a_run():
    class Broken:
        modalities = ["a"]
        labels = [0, 1]
        name = "broken/train"

        def __len__(self):
            return 2

        def load(self, i, m):
            raise OSError("disk gone")

    from mmbalance.data import Splits

    p = collect(Config(), Splits(Broken(), Broken(), Broken()), argv=["x"])
    assert "disk gone" in p["data"]["error"] and p["argv"] == ["x"]
