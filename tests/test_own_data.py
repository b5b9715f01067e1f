"""The user's own data as it usually comes: string labels and class names in the file, a train/test split with a
validation part carved from train, standardisation fitted on train, a [channels, time] encoder, the transformer's
layout, and warnings for settings that cannot work."""
import warnings

import numpy as np
import pytest
import torch

from mmbalance.cli import main
from mmbalance.config import Config, DataConfig
from mmbalance.data import DataError, build_splits
from mmbalance.data.fit_checks import check_fit_settings
from mmbalance.models.encoders import TransformerEncoder
from mmbalance.models.temporal import TemporalEncoder

NAMES = ["Standing", "Running", "Walking", "Badminton"]


def _series(n=80, seed=0):
    """[N, 3, 20] series whose frequency is the class, string labels, an official train/test split."""
    g = np.random.default_rng(seed)
    y = np.arange(n) % 4
    t = np.linspace(0, 1, 20)
    x = np.sin(2 * np.pi * (1 + y)[:, None, None] * t + g.uniform(0, 6, (n, 3, 1))) + 0.3 * g.normal(size=(n, 3, 20))
    return x.astype(np.float32), np.array(NAMES)[y], np.array(["train"] * (n // 2) + ["test"] * (n - n // 2))


@pytest.fixture()
def npz(tmp_path):
    x, labels, split = _series()
    path = tmp_path / "motions.npz"
    np.savez(path, accel=x, gyro=x[:, ::-1] * 2 + 5, labels=labels, classes=np.array(NAMES), split=split)
    return path


def _splits(path, **options):
    return build_splits(DataConfig(name="arrays", root=str(path), options=options))


def test_string_labels_and_class_names_from_the_file(npz):
    s = _splits(npz, val_from_train=True)
    assert s.train.class_names == NAMES and s.train.num_classes == 4
    assert set(s.train.modalities) == {"accel", "gyro"}  # 'classes' is not taken for a modality
    raw = np.load(npz)["labels"]
    assert [NAMES[int(c)] for c in s.test.labels] == list(raw[40:])  # ids follow the file's class order


def test_string_labels_without_names_are_sorted_and_integer_labels_take_the_names(tmp_path):
    x, labels, _ = _series(40)
    np.savez(tmp_path / "a.npz", accel=x, gyro=x, labels=labels)
    assert _splits(tmp_path / "a.npz").train.class_names == sorted(NAMES)
    ids = np.array([NAMES.index(s) for s in labels])
    np.savez(tmp_path / "b.npz", accel=x, gyro=x, labels=ids, class_names=np.array(NAMES))
    assert _splits(tmp_path / "b.npz").train.class_names == NAMES


@pytest.mark.parametrize("classes,labels,message", [
    (np.array([0, 1, 2, 3]), None, "must hold the class names as strings"),
    (np.array(["a", "b", "a", "c"]), None, "names class 'a' twice"),
    (np.array(NAMES), "Jumping", "label 'Jumping' of sample 0 is not one of the class names"),
])
def test_bad_class_names_fail_with_one_line(tmp_path, classes, labels, message):
    x, y, _ = _series(40)
    if labels is not None:
        y = y.copy()
        y[0] = labels
    np.savez(tmp_path / "d.npz", accel=x, gyro=x, labels=y, classes=classes)
    with pytest.raises(DataError, match=message) as e:
        _splits(tmp_path / "d.npz")
    assert "\n" not in str(e.value) and "d.npz" in str(e.value)


def test_a_train_test_split_needs_the_option_and_then_gets_a_stratified_seeded_val(npz):
    with pytest.raises(DataError, match="no 'val' samples.*val_from_train=true"):
        _splits(npz)
    s = _splits(npz, val_from_train=True)
    again = _splits(npz, val_from_train=True)
    assert torch.equal(s.val.labels, again.val.labels) and torch.equal(s.val.inputs["accel"], again.val.inputs["accel"])
    assert len(s.val) == 6 and len(s.train) == 34 and len(s.test) == 40  # 15 % of the 40 training samples
    assert set(s.val.labels.tolist()) == {0, 1, 2, 3}  # stratified: every class in val
    train_rows = {tuple(r) for r in s.train.inputs["accel"].reshape(34, -1).tolist()}
    val_rows = {tuple(r) for r in s.val.inputs["accel"].reshape(6, -1).tolist()}
    assert not train_rows & val_rows  # carved out of train, not copied
    assert len(_splits(npz, val_from_train=0.25).val) == 10
    other_seed = build_splits(DataConfig(name="arrays", root=str(npz), split_seed=1, options={"val_from_train": True}))
    assert not torch.equal(other_seed.val.inputs["accel"], s.val.inputs["accel"])


def test_val_from_train_with_a_val_split_in_the_file_is_refused(tmp_path):
    x, labels, split = _series()
    split[:8] = "val"
    np.savez(tmp_path / "v.npz", accel=x, gyro=x, labels=labels, split=split)
    with pytest.raises(DataError, match="has 'val' samples already"):
        _splits(tmp_path / "v.npz", val_from_train=True)


def test_standardisation_is_fitted_on_train_only(npz):
    raw = _splits(npz, val_from_train=True)
    std = _splits(npz, val_from_train=True, standardize="channel")
    tr = std.train.inputs["gyro"]
    assert torch.allclose(tr.mean((0, 2)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(tr.std((0, 2)), torch.ones(3), atol=1e-4)
    x_tr, x_te = raw.train.inputs["gyro"], raw.test.inputs["gyro"]
    mean, sd = x_tr.mean((0, 2), keepdim=True), x_tr.std((0, 2), keepdim=True)
    assert torch.allclose(std.test.inputs["gyro"], (x_te - mean) / sd, atol=1e-5)  # train's statistics, not test's
    feat = _splits(npz, val_from_train=True, standardize="feature").train.inputs["gyro"]
    assert torch.allclose(feat.mean(0), torch.zeros(3, 20), atol=1e-5)
    with pytest.raises(DataError, match="standardize must be channel, feature"):
        _splits(npz, val_from_train=True, standardize="minmax")


def test_the_temporal_encoder_reads_channels_first():
    enc = TemporalEncoder([3, 20], feature_dim=16)
    assert enc(torch.randn(5, 3, 20)).shape == (5, 16)
    assert TemporalEncoder([20], feature_dim=8)(torch.randn(2, 20)).shape == (2, 8)
    with pytest.raises(ValueError, match="as \\[channels, time\\]"):
        TemporalEncoder([3, 8, 8])


def test_the_transformer_never_silently_takes_channels_for_time_steps():
    with pytest.warns(UserWarning, match="read as 6 time steps of 100 features.*layout=channels_first"):
        TransformerEncoder([6, 100])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        TransformerEncoder([50, 300])  # a real [time, features] sequence (MOSI-like): no warning
        TransformerEncoder([6, 100], layout="time_first")
    torch.manual_seed(0)
    cf = TransformerEncoder([6, 100], layout="channels_first", dropout=0.0).eval()
    tf = TransformerEncoder([100, 6], layout="time_first", dropout=0.0).eval()
    tf.load_state_dict(cf.state_dict())
    x = torch.randn(2, 6, 100)
    assert torch.allclose(cf(x), tf(x.transpose(1, 2)), atol=1e-6)  # channels_first = 100 tokens of 6 features


def test_settings_that_cannot_work(npz):
    s = _splits(npz, val_from_train=True)
    cfg = Config().override(["train.batch_size=64"])
    with pytest.warns(UserWarning, match="train.batch_size=64 is larger than the 34 training samples"):
        check_fit_settings(cfg, s)
    with pytest.raises(ValueError, match="no training step would run"):
        check_fit_settings(Config().override(["train.batch_size=64", "train.drop_last=true"]), s)
    with pytest.warns(UserWarning, match="the val split has 6 samples for 4 classes"):
        check_fit_settings(Config().override(["train.batch_size=8"]), s)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_fit_settings(Config().override(["train.batch_size=8"]), _splits(npz, val_from_train=0.25)) == []


def test_the_cli_prints_a_warning_as_one_line(npz, tmp_path):
    import mmbalance.cli as cli

    with pytest.warns(UserWarning, match="train.batch_size=64 is larger than the 30 training samples"):
        assert main(["train", "--dataset", "arrays", "--root", str(npz), "--encoder", "temporal", "--epochs", "1",
                     "--out", str(tmp_path / "r"), "--no-progress", "data.options.val_from_train=0.25",
                     "eval.probe=false", "log.tensorboard=false"]) == 0
    assert warnings.formatwarning is cli._warning_line  # how the CLI shows it on stderr:
    assert warnings.formatwarning("too big", UserWarning, "x.py", 3) == "warning: too big\n"
    assert "DeprecationWarning" in warnings.formatwarning("old", DeprecationWarning, "x.py", 3)  # others: Python's
