"""Your own methods from your own files: ``--import`` / ``plugins:`` and installed entry points."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from mmbalance.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "modality_dropout.py"
RUN = ["--dataset", "synthetic", "--epochs", "2", "--no-progress", "log.tensorboard=false", "eval.probe=false"]


def test_a_method_from_the_users_own_file_trains_resumes_and_evaluates(tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--import", str(EXAMPLE), "--method", "modality-dropout+dus-h", "--out", str(out),
                 "method_args.modality-dropout.p=0.5", *RUN]) == 0
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["plugins"] == [str(EXAMPLE)]  # recorded, absolute: resume imports it again (eval: see below)
    rec = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert 0.3 < rec["plugins"]["modality-dropout/dropped"] < 0.7
    assert main(["train", "--config", str(out / "config.yaml"), "--out", str(out), "--epochs", "3", "--resume",
                 "--no-progress"]) == 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    capsys.readouterr()
    # eval imports only what its own command line names: a run folder cannot choose the code that runs
    assert main(["eval", str(out)]) == 2
    assert f"add --import {EXAMPLE}" in capsys.readouterr().err
    assert main(["eval", str(out), "--import", str(EXAMPLE)]) == 0
    assert "acc" in capsys.readouterr().out


def test_the_import_reaches_list_and_compare(tmp_path, capsys):
    assert main(["--import", str(EXAMPLE), "list", "--method", "modality-dropout"]) == 0
    text = capsys.readouterr().out
    assert "p = 0.3" in text and "[RECON]" in text
    assert main(["compare", "--import", str(EXAMPLE), "--methods", "joint,modality-dropout", "--seeds", "0",
                 "--out", str(tmp_path / "g"), "--threads", "1", *RUN]) == 0
    assert main(["report", str(tmp_path / "g")]) == 0


def test_a_missing_import_is_one_clear_line(tmp_path, capsys):
    assert main(["train", "--import", str(tmp_path / "nope.py"), "--out", str(tmp_path / "r"), *RUN]) == 2
    err = capsys.readouterr().err
    assert "nope.py: no such file" in err and "Traceback" not in err
    assert main(["--import", "no_such_module_xyz", "list"]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err


def test_installed_entry_points_are_discovered(tmp_path, monkeypatch):
    """A package installed with ``[project.entry-points."mmbalance.methods"]`` is found without any import."""
    pkg = tmp_path / "site" / "ep_methods_demo"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(
        "from mmbalance import METHODS, Plugin\n\n"
        "@METHODS.register('ep-demo')\nclass EpDemo(Plugin):\n    \"\"\"A method from an entry point.\"\"\"\n")
    dist = tmp_path / "site" / "ep_methods_demo-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-methods-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mmbalance.methods]\nep-demo = ep_methods_demo\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    from mmbalance import extensions
    from mmbalance.registry import METHODS

    monkeypatch.setattr(extensions, "_entry_points_loaded", False)
    monkeypatch.setattr(METHODS, "_discovered", False)
    try:
        assert "ep-demo" in METHODS and METHODS.get("ep-demo").name == "ep-demo"
    finally:
        METHODS._items.pop("ep-demo", None)
        sys.modules.pop("ep_methods_demo", None)


def test_a_broken_entry_point_names_itself(tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "broken_demo-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-demo\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mmbalance.methods]\nbroken = no_such_pkg_for_mmbalance\n")
    monkeypatch.syspath_prepend(str(site))
    from mmbalance import extensions
    from mmbalance.registry import METHODS

    monkeypatch.setattr(extensions, "_entry_points_loaded", False)
    monkeypatch.setattr(METHODS, "_discovered", False)
    with pytest.raises(extensions.ExtensionError, match="entry point 'broken'.*no_such_pkg_for_mmbalance"):
        METHODS.get("not-registered-anywhere")
