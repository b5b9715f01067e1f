"""The library's own bad-input suite: every case of issue 16, through the CLI or the Python API.

Each case must end in ONE clear line naming the culprit (file, sample, key or option), a non-zero exit code,
no traceback and nothing written; crafted checkpoints and pickles must run nothing. Cases that need the
run-folder guards (engine/run_folder.py) are tested here too.
"""
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from mmbalance import Config, Trainer
from mmbalance.cli import main
from mmbalance.config import ConfigError, TrainConfig
from mmbalance.data import from_arrays
from mmbalance.data.base import DataError
from mmbalance.engine.checkpoint import load_checkpoint

from conftest import make_cfg

QUIET = ["--no-progress", "log.tensorboard=false", "eval.probe=false", "train.batch_size=32"]
SYNTH = ["--dataset", "synthetic", "data.options.n=120", *QUIET]


def run_cli(capsys, *argv):
    """-> (exit code, stdout, stderr); main() must return, never raise."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_one_error_line(rc, err, *needles):
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def train(capsys, out, *extra, epochs=1):
    return run_cli(capsys, "train", *SYNTH, "--epochs", epochs, "--out", out, *extra)


def arrays_file(path: Path, labels, **modalities) -> Path:
    rng = np.random.default_rng(0)
    n = len(labels)
    arrays = {"labels": np.asarray(labels)}
    for m, shape in (modalities or {"a": (4,), "b": (3,)}).items():
        arrays[m] = rng.normal(size=(n, *shape)).astype(np.float32) if isinstance(shape, tuple) else shape
    np.savez(path, **arrays)
    return path


def train_arrays(capsys, root, out, *extra):
    return run_cli(capsys, "train", "--dataset", "arrays", "--root", root, "--epochs", 1, "--out", out, *QUIET, *extra)


def snapshot(folder: Path):
    """Every file below ``folder`` with its bytes' hash (to prove a failing command changed nothing)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


class Payload:
    """Unpickling it creates ``marker``: proof that code from the file ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# ==================================================================================== raw tracebacks (10)
def test_one_dimensional_modality_array(tmp_path, capsys):
    root = arrays_file(tmp_path / "d.npz", np.arange(60) % 3, a=(4,), b=np.arange(60, dtype=np.float32))
    rc, _, err = train_arrays(capsys, root, tmp_path / "r")
    assert_one_error_line(rc, err, "modality 'b'", "[60]", "reshape it to [N, 1]")
    assert not (tmp_path / "r").exists()


def test_one_dimensional_modality_array_python_api():
    with pytest.raises(DataError, match=r"modality 'x' has shape \[30\]"):
        from_arrays({"x": np.zeros(30), "z": np.zeros((30, 2))}, np.arange(30) % 2)


def test_empty_method_name(tmp_path, capsys):
    rc, _, err = train(capsys, tmp_path / "r", "--method", "")
    assert_one_error_line(rc, err, "'method' is empty", "mmbalance list")
    assert not (tmp_path / "r").exists()


def test_cnn_encoder_on_flat_features(tmp_path, capsys):
    rc, _, err = train(capsys, tmp_path / "r", "--encoder", "cnn")
    assert_one_error_line(rc, err, "encoder 'cnn'", "modality 'a'", "[16]", "mlp or transformer")
    assert not (tmp_path / "r").exists()


def test_cnn_encoder_on_flat_features_python_api():
    with pytest.raises(ValueError, match=r"encoder 'resnet18' for modality 'a'.*\[16\]"):
        Trainer(make_cfg("model.encoder=resnet18"))


def test_eval_of_a_checkpoint_with_another_model_shape(tmp_path, capsys):
    assert train(capsys, tmp_path / "small", "model.feature_dim=8")[0] == 0
    assert train(capsys, tmp_path / "big")[0] == 0
    (tmp_path / "big" / "best.pt").write_bytes((tmp_path / "small" / "best.pt").read_bytes())
    rc, out, err = run_cli(capsys, "eval", tmp_path / "big")
    assert_one_error_line(rc, err, tmp_path / "big" / "best.pt", "does not fit this model", "another shape")
    assert out == ""


def test_out_below_a_regular_file(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    rc, _, err = train(capsys, tmp_path / "file" / "run")
    assert_one_error_line(rc, err, "--out", tmp_path / "file", "not a folder")
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("which", ["last", "best"])
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_truncated_or_corrupt_checkpoint(tmp_path, capsys, which, damage):
    run = tmp_path / "r"
    assert train(capsys, run)[0] == 0
    p = run / f"{which}.pt"
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2] if damage == "truncated" else bytes(range(256)) * 4)
    before = snapshot(run)
    if which == "last":
        rc, _, err = train(capsys, run, "--resume", epochs=2)
    else:
        rc, _, err = run_cli(capsys, "eval", run)
    assert_one_error_line(rc, err, p, "unreadable (truncated or corrupt?)")
    assert snapshot(run) == before


def test_debug_flag_shows_the_traceback(tmp_path):
    with pytest.raises(ConfigError, match="'method' is empty"):
        main(["--debug", "train", *SYNTH, "--method", "", "--out", str(tmp_path / "r")])
    with pytest.raises(ConfigError, match="'method' is empty"):  # after the command too
        main(["train", *SYNTH, "--method", "", "--out", str(tmp_path / "r"), "--debug"])


# ==================================================================================== accepted silently (13)
def test_labels_with_gaps(tmp_path, capsys):
    labels = np.array([0, 1, 2, 3] * 15)
    labels[7] = 100  # must not build a 101-class model
    rc, _, err = train_arrays(capsys, arrays_file(tmp_path / "d.npz", labels), tmp_path / "r")
    assert_one_error_line(rc, err, "not 0..C-1 without gaps", "largest is 100", "class_names")
    assert not (tmp_path / "r").exists()


def test_labels_with_gaps_are_fine_when_class_names_say_so():
    names = [f"c{i}" for i in range(5)]
    s = from_arrays({"x": np.random.rand(40, 2), "z": np.random.rand(40, 2)}, np.arange(40) % 2 * 4,
                    class_names=names)
    assert s.train.num_classes == 5 and s.train.class_names == names


def test_non_integer_labels_are_refused_not_truncated(tmp_path, capsys):
    labels = (np.arange(60) % 3).astype(np.float64)
    labels[5] = 1.5
    rc, _, err = train_arrays(capsys, arrays_file(tmp_path / "d.npz", labels), tmp_path / "r")
    assert_one_error_line(rc, err, "label 1.5 of sample 5 is not an integer")
    whole = from_arrays({"x": np.random.rand(60, 2), "z": np.random.rand(60, 2)}, (np.arange(60) % 3).astype(float))
    assert whole.train.labels.dtype == torch.long and whole.train.num_classes == 3  # 2.0 is a class id


def test_class_names_shorter_than_the_classes(tmp_path, capsys):
    root = arrays_file(tmp_path / "d.npz", np.arange(60) % 4)
    rc, _, err = train_arrays(capsys, root, tmp_path / "r", "data.options.class_names=[a,b,c]")
    assert_one_error_line(rc, err, "label 3 of sample 3 is out of range [0, 3)", "class_names lists 3 classes")


def test_zero_width_modality(tmp_path, capsys):
    root = arrays_file(tmp_path / "d.npz", np.arange(60) % 3, a=(4,), b=(0,))
    rc, _, err = train_arrays(capsys, root, tmp_path / "r")
    assert_one_error_line(rc, err, "modality 'b'", "[60, 0]", "zero-width")


@pytest.mark.parametrize("bad", ["dev", 3])
def test_unknown_split_values_are_refused_not_dropped(tmp_path, capsys, bad):
    n = 60
    split = np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10, dtype=object)
    split[45] = bad
    split = split.astype(str) if isinstance(bad, str) else np.array([{"train": 0, "val": 1, "test": 2}.get(s, s)
                                                                     for s in split], dtype=np.int64)
    root = tmp_path / "d.npz"
    np.savez(root, labels=np.arange(n) % 3, a=np.random.rand(n, 2), b=np.random.rand(n, 2), split=split)
    rc, _, err = train_arrays(capsys, root, tmp_path / "r")
    assert_one_error_line(rc, err, root, f"split value {bad!r} of sample 45", "train/val/test or 0/1/2")


def test_empty_split_is_refused(tmp_path, capsys):
    n = 60
    root = tmp_path / "d.npz"
    np.savez(root, labels=np.arange(n) % 3, a=np.random.rand(n, 2), b=np.random.rand(n, 2),
             split=np.array([0] * 50 + [2] * 10))
    rc, _, err = train_arrays(capsys, root, tmp_path / "r")
    assert_one_error_line(rc, err, "no 'val' samples")


@pytest.mark.parametrize("epochs", [0, -3])
def test_epochs_below_one_write_nothing(tmp_path, capsys, epochs):
    rc, _, err = train(capsys, tmp_path / "r", epochs=epochs)
    assert_one_error_line(rc, err, "'train.epochs' must be an integer >= 1", f"got {epochs}")
    assert not (tmp_path / "r").exists()


def test_epochs_below_one_from_python():
    with pytest.raises(ConfigError, match="'train.epochs' must be an integer >= 1, got -2"):
        Config().override(["train.epochs=-2"])
    with pytest.raises(ConfigError, match="'train.epochs' must be an integer >= 1, got -2"):
        Config(train=TrainConfig(epochs=-2))


@pytest.mark.parametrize("item,key", [("train.batch_size=0", "train.batch_size"),
                                      ("eval.batch_size=-1", "eval.batch_size"),
                                      ("data.val_fraction=1.2", "data.val_fraction"),
                                      ("data.test_fraction=0", "data.test_fraction"),
                                      ("optim.weight_decay=-0.1", "optim.weight_decay"),
                                      ("optim.momentum=1.5", "optim.momentum"),
                                      ("train.checkpoint_every=0", "train.checkpoint_every"),
                                      ("model.feature_dim=0", "model.feature_dim"),
                                      ("train.device=gpu7", "train.device"),
                                      ("train.precision=fp16", "train.precision")])
def test_config_ranges_name_the_key(tmp_path, capsys, item, key):
    rc, _, err = train(capsys, tmp_path / "r", item)
    assert_one_error_line(rc, err, key)
    assert not (tmp_path / "r").exists()


def test_fractions_that_leave_nothing_to_train_on():
    with pytest.raises(ConfigError, match="val_fraction' \\+ 'data.test_fraction' must be < 1"):
        Config().override(["data.val_fraction=0.6", "data.test_fraction=0.5"])


def test_resume_with_a_changed_lr_is_refused_with_a_diff(tmp_path, capsys):
    run = tmp_path / "r"
    assert train(capsys, run, "--lr", "0.05")[0] == 0
    before = snapshot(run)
    rc, _, err = train(capsys, run, "--lr", "0.1", "--resume", epochs=2)
    assert_one_error_line(rc, err, "optim.lr", "0.05", "0.1")
    assert snapshot(run) == before


def test_resume_on_different_data_is_refused(tmp_path, capsys):
    root = arrays_file(tmp_path / "d.npz", np.arange(60) % 3)
    run = tmp_path / "r"
    assert train_arrays(capsys, root, run)[0] == 0
    arrays_file(root, (np.arange(60) + 1) % 3)  # same path and config, other data
    before = snapshot(run)
    rc, _, err = run_cli(capsys, "train", "--dataset", "arrays", "--root", root, "--epochs", 2, "--out", run,
                         "--resume", *QUIET)
    assert_one_error_line(rc, err, "data")
    assert snapshot(run) == before


def test_train_into_a_finished_run_needs_overwrite(tmp_path, capsys):
    run = tmp_path / "r"
    assert train(capsys, run)[0] == 0
    before = snapshot(run)
    rc, _, err = train(capsys, run, "--seed", 1)
    assert_one_error_line(rc, err, str(run), "--overwrite")
    assert snapshot(run) == before


# ==================================================================================== unclear (2)
def test_all_labels_of_one_class(tmp_path, capsys):
    rc, _, err = train_arrays(capsys, arrays_file(tmp_path / "d.npz", np.zeros(60, dtype=int)), tmp_path / "r")
    assert_one_error_line(rc, err, "all 60 samples are of class 0", "at least 2 classes")
    assert not (tmp_path / "r").exists()


def test_negative_learning_rate(tmp_path, capsys):
    rc, _, err = train(capsys, tmp_path / "r", "optim.lr=-1")
    assert_one_error_line(rc, err, "'optim.lr' must be a number >= 0, got -1.0")
    assert not (tmp_path / "r").exists()


# ==================================================================================== earlier results damaged
@pytest.mark.parametrize("bad", [["--epochs", "0"], ["train.precision=fp16"], ["--encoder", "cnn"], ["--method", ""],
                                 ["data.options.classes=1"], ["--lr", "-1"]])
def test_a_command_failing_validation_leaves_a_finished_run_unchanged(tmp_path, capsys, bad):
    run = tmp_path / "r"
    assert train(capsys, run)[0] == 0
    before = snapshot(run)
    rc, _, err = run_cli(capsys, "train", *SYNTH, "--epochs", 1, "--out", run, *bad)
    assert_one_error_line(rc, err)
    assert snapshot(run) == before


class NaNAt:
    def __new__(cls, epoch):
        from mmbalance import Plugin

        class _NaN(Plugin):
            name = "nan"

            def compute_loss(self, t, batch, out, losses):
                if t.epoch == epoch:
                    losses["fused"] = losses["fused"] * float("nan")

        return _NaN()


def test_nan_loss_leaves_a_finished_run_unchanged(tmp_path):
    cfg = make_cfg(out=tmp_path / "r")
    Trainer(cfg).fit()
    before = snapshot(tmp_path / "r")
    with pytest.raises(Exception):
        Trainer(cfg, plugins=[NaNAt(0)]).fit()
    assert snapshot(tmp_path / "r") == before


def test_nan_loss_does_not_call_another_runs_checkpoint_the_last_good_one(tmp_path):
    cfg = make_cfg(out=tmp_path / "r")
    Trainer(cfg).fit()
    with pytest.raises(Exception) as e:
        Trainer(cfg, plugins=[NaNAt(0)]).fit()
    assert "last good checkpoint is kept" not in str(e.value)


def test_stale_tmp_files_are_removed_when_a_run_starts(tmp_path, capsys):
    run = tmp_path / "r"
    assert train(capsys, run)[0] == 0
    (run / ".last.pt.abcd1234.tmp").write_bytes(b"half a checkpoint")
    assert train(capsys, run, "--resume", epochs=2)[0] == 0
    assert not (run / ".last.pt.abcd1234.tmp").exists()


# ==================================================================================== security
def _craft_resumable_run(capsys, run, marker):
    """A finished 1-epoch run whose last.pt is valid except for a payload hidden in a plug-in's state."""
    assert train(capsys, run)[0] == 0
    hide_payload(run / "last.pt", marker)


def hide_payload(path: Path, marker):
    """Keep the checkpoint valid; add the payload inside an existing plug-in's state."""
    state = load_checkpoint(path)
    name = next(k for k, v in state["plugins"].items() if isinstance(v, dict))
    state["plugins"][name] = dict(state["plugins"][name], note=Payload(marker))
    torch.save(state, path)


def test_crafted_last_pt_runs_nothing_on_train_resume(tmp_path, capsys):
    run, marker = tmp_path / "r", tmp_path / "pwned"
    _craft_resumable_run(capsys, run, marker)
    before = snapshot(run)
    rc, _, err = train(capsys, run, "--resume", epochs=2)
    line = assert_one_error_line(rc, err, run / "last.pt", "refused", "run")
    assert "weights_only" not in line
    assert not marker.exists()
    assert snapshot(run) == before


@pytest.mark.parametrize("which", ["best", "last"])
def test_crafted_checkpoint_runs_nothing_on_eval(tmp_path, capsys, which):
    run, marker = tmp_path / "r", tmp_path / "pwned"
    assert train(capsys, run)[0] == 0
    torch.save({"model": {"w": torch.ones(1)}, "epoch": 0, "x": Payload(marker)}, run / f"{which}.pt")
    rc, out, err = run_cli(capsys, "eval", run, "--checkpoint", which)
    assert_one_error_line(rc, err, run / f"{which}.pt", "refused")
    assert not marker.exists() and out == ""


def test_crafted_last_pt_runs_nothing_when_compare_resumes(tmp_path, capsys):
    grid, marker = tmp_path / "g", tmp_path / "pwned"
    argv = ["compare", "--methods", "joint", "--seeds", "0", "--out", grid, "--threads", 1, *SYNTH, "--epochs", 1]
    assert run_cli(capsys, *argv)[0] == 0
    run = grid / "joint" / "seed0"
    hide_payload(run / "last.pt", marker)
    (run / "summary.json").unlink()  # unfinished: a plain compare resumes it without any flag
    rc, out, err = run_cli(capsys, *argv)
    assert rc != 0 and "Traceback" not in err
    assert str(run / "last.pt") in out + err and "refused" in out + err
    assert not marker.exists()


def test_eval_does_not_import_modules_named_by_the_run_folder(tmp_path, capsys):
    """config.yaml records extension modules (plugins:); a run folder from someone else must not get them
    imported (run) by `eval` unless the command names them itself."""
    run, marker = tmp_path / "r", tmp_path / "pwned"
    assert train(capsys, run)[0] == 0
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\n")
    text = (run / "config.yaml").read_text().replace("plugins: []", f"plugins:\n- {evil}")
    assert str(evil) in text
    (run / "config.yaml").write_text(text)
    rc, out, err = run_cli(capsys, "eval", run)
    assert_one_error_line(rc, err, run / "config.yaml", str(evil), f"--import {evil}")
    assert not marker.exists() and out == ""
    rc, out, err = run_cli(capsys, "eval", run, "--import", evil)  # named by the user: imported, as asked
    assert rc == 0 and marker.exists(), err


def make_mosi_pickle(path: Path, payload_marker=None):
    rng = np.random.default_rng(0)
    data = {}
    for split, k in (("train", 12), ("valid", 6), ("test", 6)):
        data[split] = {"text": rng.normal(size=(k, 3, 4)).astype(np.float32),
                       "audio": rng.normal(size=(k, 3, 5)).astype(np.float32),
                       "vision": rng.normal(size=(k, 3, 2)).astype(np.float32),
                       "labels": np.linspace(-3, 3, k).reshape(k, 1, 1)}
    if payload_marker is not None:
        data["note"] = Payload(payload_marker)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(data, f)


def test_mosi_pickle_needs_the_opt_in(tmp_path, capsys):
    marker = tmp_path / "pwned"
    make_mosi_pickle(tmp_path / "raw" / "mosi_data.pkl", marker)
    rc, _, err = run_cli(capsys, "prepare", "mosi", "--raw", tmp_path / "raw", "--out", tmp_path / "out", "--no-progress")
    assert_one_error_line(rc, err, tmp_path / "raw" / "mosi_data.pkl", "--trust-pickle", "runs any code")
    assert not marker.exists() and not (tmp_path / "out").exists()
    rc, _, err = run_cli(capsys, "train", "--dataset", "mosi", "--root", tmp_path / "raw", "--epochs", 1,
                         "--out", tmp_path / "r", *QUIET)
    assert_one_error_line(rc, err, "mosi_data.pkl", "--trust-pickle", "data.trust_pickle=true")
    assert not marker.exists() and not (tmp_path / "r").exists()
    # opted in: the file is trusted and read (its payload runs, which is exactly what the opt-in means)
    make_mosi_pickle(tmp_path / "ok" / "mosi_data.pkl")
    rc, _, err = run_cli(capsys, "train", "--dataset", "mosi", "--root", tmp_path / "ok", "--epochs", 1,
                         "--out", tmp_path / "r", "--trust-pickle", *QUIET)
    assert rc == 0, err
    assert "trust_pickle: true" in (tmp_path / "r" / "config.yaml").read_text()


def test_eval_does_not_inherit_trust_pickle_from_the_run_folder(tmp_path, capsys):
    make_mosi_pickle(tmp_path / "ok" / "mosi_data.pkl")
    run = tmp_path / "r"
    assert run_cli(capsys, "train", "--dataset", "mosi", "--root", tmp_path / "ok", "--epochs", 1, "--out", run,
                   "--trust-pickle", *QUIET)[0] == 0
    rc, _, err = run_cli(capsys, "eval", run)  # a shared run folder cannot opt in for the reader
    assert_one_error_line(rc, err, "mosi_data.pkl", "--trust-pickle")
    rc, out, err = run_cli(capsys, "eval", run, "--trust-pickle")
    assert rc == 0 and '"acc"' in out, err


def cremad_pkl_tree(root: Path, marker=None) -> Path:
    """A CREMA-D folder in the PMR/BSS layout: frames + audio arrays stored as .pkl (one may carry a payload)."""
    from PIL import Image

    rows = {"train": [], "test": []}
    for e in ("NEU", "HAP"):
        for a in range(5):
            name = f"10{a:02d}_DFA_{e}_XX"
            rows["test" if a == 4 else "train"].append(f"{name},{e}\n")
            (root / "visual" / name).mkdir(parents=True)
            Image.fromarray(np.full((8, 8, 3), 40 * a, dtype=np.uint8)).save(root / "visual" / name / "00001.jpg")
            (root / "audio").mkdir(exist_ok=True)
            arr = np.full((6, 5), float(a), dtype=np.float32)
            with open(root / "audio" / f"{name}.pkl", "wb") as f:
                pickle.dump(Payload(marker) if marker is not None and a == 0 else arr, f)
    for s, r in rows.items():
        (root / f"{s}.csv").write_text("".join(r))
    return root


def test_pkl_audio_arrays_need_the_opt_in(tmp_path):
    """PMR/BSS layouts store audio as .pkl arrays: refused naming file and option; read with the opt-in."""
    from mmbalance.data import build_splits

    root = cremad_pkl_tree(tmp_path / "cremad")
    base = ["data.name=cremad", f"data.root={root}", "data.options.val_size=2", "data.options.image_size=8"]
    with pytest.raises(DataError, match=r"audio/.*\.pkl: refused: .*--trust-pickle"):
        build_splits(Config().override(base).data)
    sp = build_splits(Config().override(base + ["data.trust_pickle=true", "data.options.audio_frames=5"]).data)
    x = sp.test.load(0, "audio")
    assert x.shape == (1, 6, 5) and bool((x == 4.0).all())  # the test clips are actor 4: the array as pickled


def test_prepare_with_pkl_audio_needs_the_opt_in(tmp_path, capsys):
    marker = tmp_path / "pwned"
    raw = cremad_pkl_tree(tmp_path / "raw", marker)
    rc, _, err = run_cli(capsys, "prepare", "cremad", "--raw", raw, "--out", tmp_path / "out", "--no-progress")
    assert_one_error_line(rc, err, ".pkl: refused", "--trust-pickle")
    assert not marker.exists() and not (tmp_path / "out").exists()
    cremad_pkl_tree(tmp_path / "raw2")
    rc, out, err = run_cli(capsys, "prepare", "cremad", "--raw", tmp_path / "raw2", "--out", tmp_path / "out",
                           "--no-progress", "--trust-pickle")
    assert rc == 0, err
    assert np.load(tmp_path / "out" / "audio" / "1004_DFA_HAP_XX.npy").tolist() == [[4.0] * 5] * 6


def test_verify_does_not_look_outside_root_for_manifest_entries(tmp_path, capsys, monkeypatch):
    """A crafted manifest naming ../x or /etc/hostname must not make verify stat or hash those files."""
    from mmbalance.data.papers import preprocess

    root = tmp_path / "data"
    root.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    touched = []
    real_stat = Path.stat

    def spy_stat(self, *a, **kw):
        touched.append(str(self))
        return real_stat(self, *a, **kw)

    monkeypatch.setattr(Path, "stat", spy_stat)
    monkeypatch.setattr(preprocess, "sha256_file", lambda p, *a: touched.append(str(p)) or "0")
    for entry in ("../secret.txt", "/etc/hostname", "0/../../secret.txt"):
        manifest = {"format": 1, "dataset": "cremad", "counts": {}, "files": {entry: {"size": 6, "sha256": "x"}}}
        (root / "manifest.json").write_text(json.dumps(manifest))
        touched.clear()
        rc, _, err = run_cli(capsys, "verify", "cremad", "--root", root, "--no-progress")
        assert_one_error_line(rc, err, root / "manifest.json", repr(entry), "refused")
        assert not [t for t in touched if "secret" in t or "hostname" in t], touched


# Paths named inside data files (split files, lists, CSV/TSV/JSON) for every preparer and loader, including
# prepare twitter2015 with an index like 0/../../../x: test_path_containment.py
