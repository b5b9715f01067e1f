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
    assert main(["eval", str(out), "--splits", "test", "--json"]) == 0
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


def test_eval_prints_a_table_by_default_and_the_same_numbers_as_json(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--method", "joint-aux", "--epochs", "1", "--out", str(out),
                 "--no-progress", "--threads", "1", "log.tensorboard=false", "eval.probe=false"]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--threads", "1"]) == 0
    table = capsys.readouterr().out
    assert main(["eval", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res) == {"val", "test"} and {"acc", "macro_f1", "map", "loss", "modality_acc", "share_acc"} <= set(res["val"])
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["split", "acc", "(%)", "macro-F1"] and "a head / share acc (%)" in lines[0]
    for split in ("val", "test"):
        row = next(l for l in lines if l.startswith(split + " "))
        m = res[split]
        assert row.split()[1:4] == [f"{100 * m['acc']:.2f}", f"{100 * m['macro_f1']:.2f}", f"{100 * m['map']:.2f}"]
        assert f"{100 * m['modality_acc']['a']:.2f} / {100 * m['share_acc']['a']:.2f}" in row


def test_threads_option_on_every_training_command(tmp_path, monkeypatch):
    """train, compare, sweep (and eval) take --threads through one helper, which limits torch's threads."""
    import torch

    from mmbalance import threads
    from mmbalance.cli import build_parser

    parser = build_parser()
    for cmd in (["train"], ["compare", "--methods", "joint", "--out", "x"],
                ["sweep", "--method", "joint", "--batch-sizes", "8", "--lrs", "0.1", "--out", "x"], ["eval", "run"]):
        assert parser.parse_args(cmd + ["--threads", "3"]).threads == 3, cmd
    calls = []
    monkeypatch.setattr(threads, "set_threads", lambda n: calls.append(n))
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", str(tmp_path / "r"), "--no-progress",
                 "--threads", "2", "log.tensorboard=false", "eval.probe=false"]) == 0
    assert calls == [2]
    monkeypatch.undo()
    before = torch.get_num_threads()
    try:
        threads.set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", str(tmp_path / "r2"), "--threads", "0"]) == 2


def test_config_by_name_path_and_unknown_name(tmp_path, capsys):
    from mmbalance import configs

    assert {"cremad-gewu", "av-digits", "mfeat"} <= set(configs.names())
    assert configs.resolve("cremad-gewu") == configs.path("cremad-gewu.yaml")
    own = tmp_path / "mine.yaml"
    own.write_text("method: joint-aux\ndata: {name: synthetic}\n")
    assert configs.resolve(str(own)) == own  # a path still works
    run = tmp_path / "r"
    assert main(["train", "--config", "mfeat", "--epochs", "1", "--out", str(run), "--no-progress", "--threads", "1",
                 "log.tensorboard=false", "eval.probe=false"]) == 0
    assert "name: mfeat" in (run / "config.yaml").read_text() and "- pix" in (run / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["train", "--config", "cremad-gewuu", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown config 'cremad-gewuu'" in err and "cremad-gewu, " in err
    assert main(["train", "--config", "configs/cremad-gewu.yaml", "--out", str(tmp_path / "x")]) == 2
    assert "--config cremad-gewu" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_version(capsys):
    import mmbalance

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith(f"mmbalance {mmbalance.__version__}")
