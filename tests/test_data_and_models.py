import numpy as np
import pytest
import torch

from mmbalance import ENCODERS, FUSIONS, Trainer
from mmbalance.config import DataConfig, ModelConfig
from mmbalance.data import DataError, IndexBatch, MultimodalDataset, build_splits, from_arrays
from mmbalance.data.base import BatchDataset
from mmbalance.models import build_model

from conftest import make_cfg


# ---------------------------------------------------------------- bad input gets a clear error
def test_modalities_with_different_sample_counts():
    with pytest.raises(DataError, match="modality 'b' has 9 samples but there are 10 labels"):
        MultimodalDataset({"a": torch.zeros(10, 2), "b": torch.zeros(9, 2)}, torch.zeros(10), 2)


def test_labels_out_of_range():
    with pytest.raises(DataError, match=r"label 5 of sample 3 is out of range \[0, 3\)"):
        MultimodalDataset({"a": torch.zeros(4, 2)}, [0, 1, 2, 5], 3)
    with pytest.raises(DataError, match="label -1 of sample 0"):
        MultimodalDataset({"a": torch.zeros(2, 2)}, [-1, 1], 2)


def test_nan_inputs_name_modality_and_sample():
    x = torch.zeros(5, 3)
    x[2, 1] = float("nan")
    x[4, 0] = float("inf")
    with pytest.raises(DataError, match="modality 'img' has NaN/inf values in sample 2 \\(2 bad samples"):
        MultimodalDataset({"img": x, "aud": torch.zeros(5, 1)}, [0, 1, 0, 1, 0], 2)


def test_arrays_dataset_from_npz_and_folder(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    a, b = rng.normal(size=(60, 4)).astype("float32"), rng.normal(size=(60, 2, 3)).astype("float32")
    np.savez(tmp_path / "d.npz", labels=y, audio=a, video=b)
    s = build_splits(DataConfig(name="arrays", root=str(tmp_path / "d.npz")))
    assert s.train.modalities == ["audio", "video"] and len(s.train) + len(s.val) + len(s.test) == 60
    folder = tmp_path / "f"
    folder.mkdir()
    np.save(folder / "labels.npy", y)
    np.save(folder / "audio.npy", a)
    np.save(folder / "video.npy", b)
    np.save(folder / "split.npy", np.array(["train"] * 40 + ["val"] * 10 + ["test"] * 10))
    s = build_splits(DataConfig(name="arrays", root=str(folder)))
    assert (len(s.train), len(s.val), len(s.test)) == (40, 10, 10)


def test_arrays_dataset_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="needs data.root"):
        build_splits(DataConfig(name="arrays"))
    with pytest.raises(DataError, match="nothing.npz: no such file"):
        build_splits(DataConfig(name="arrays", root=str(tmp_path / "nothing.npz")))
    np.savez(tmp_path / "d.npz", labels=np.zeros(10), a=np.zeros((10, 2)))
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="t.npz: cannot read .npz file"):
        build_splits(DataConfig(name="arrays", root=str(tmp_path / "t.npz")))
    np.savez(tmp_path / "nolabel.npz", a=np.zeros((10, 2)))
    with pytest.raises(DataError, match="no 'labels' array"):
        build_splits(DataConfig(name="arrays", root=str(tmp_path / "nolabel.npz")))


def test_unknown_dataset_option_is_named():
    with pytest.raises(DataError, match="no option 'n_samples'"):
        build_splits(DataConfig(name="synthetic", options={"n_samples": 3}))


def test_splits_are_fixed_stratified_and_disjoint():
    s1 = build_splits(DataConfig(name="synthetic", options={"n": 400, "classes": 4}))
    s2 = build_splits(DataConfig(name="synthetic", options={"n": 400, "classes": 4}))
    assert torch.equal(s1.test.labels, s2.test.labels)
    for split in (s1.train, s1.val, s1.test):
        counts = torch.bincount(split.labels, minlength=4).float()
        assert counts.max() - counts.min() <= 1  # stratified
    assert len(s1.train) == 280 and len(s1.val) == 60 and len(s1.test) == 60


def test_python_api_for_own_data():
    splits = from_arrays({"x": np.random.rand(90, 5), "z": np.random.rand(90, 7)}, np.arange(90) % 3)
    s = Trainer(make_cfg("train.epochs=1"), splits=splits).fit()
    assert set(s["test"]["modality_acc"]) == {"x", "z"}


# ---------------------------------------------------------------- nested batches
def test_nested_index_batch_loads_requested_sizes():
    ds = MultimodalDataset({"a": torch.arange(10.0)[:, None], "b": torch.arange(10.0)[:, None]}, torch.zeros(10), 1)
    batch = BatchDataset(ds).__getitems__(IndexBatch([4, 2, 7, 1], sizes={"a": 4, "b": 2}))
    assert batch.inputs["a"].squeeze(1).tolist() == [4, 2, 7, 1]
    assert batch.inputs["b"].squeeze(1).tolist() == [4, 2]
    model = build_model(ModelConfig(feature_dim=8), {"a": (1,), "b": (1,)}, 3)
    out = model(batch.inputs)
    assert out.n_pair == 2 and out.fused.shape == (2, 3)
    assert out.logits["a"].shape == (4, 3) and out.logits["b"].shape == (2, 3)


# ---------------------------------------------------------------- every encoder and fusion trains one step
SHAPES = {"mlp": (1, 8, 8), "cnn": (1, 8, 8), "resnet18": (3, 32, 32), "transformer": (6, 5), "temporal": (3, 20)}


@pytest.mark.parametrize("encoder", ENCODERS.names())
def test_every_encoder_trains_one_step(encoder):
    shape = SHAPES[encoder]
    x = torch.randn(8, *shape)
    splits = from_arrays({"u": x, "v": torch.randn(8, 4)}, np.arange(8) % 2, val_fraction=0.25,
                         test_fraction=0.25)
    cfg = make_cfg("train.epochs=1", f"model.encoder={{u: {encoder}, v: mlp}}", "train.batch_size=4")
    s = Trainer(cfg, splits=splits).fit()
    assert 0 <= s["test"]["acc"] <= 1


@pytest.mark.parametrize("fusion", FUSIONS.names())
@pytest.mark.parametrize("n_mod", [2, 3])
def test_every_fusion_trains_one_step(fusion, n_mod):
    mods = ["a", "b", "c"][:n_mod]
    cfg = make_cfg("train.epochs=1", f"model.fusion={fusion}", f"data.modalities=[{','.join(mods)}]",
                   "data.options.informativeness=1.0")
    model_before = Trainer(cfg).model
    s = Trainer(cfg).fit()
    assert set(s["test"]["modality_acc"]) == set(mods)
    assert model_before.fusion is not None


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_resnet18_channels_and_frames(channels):
    enc = ENCODERS.get("resnet18")((channels, 32, 32))
    assert enc(torch.randn(2, channels, 32, 32)).shape == (2, 512)
    frames = torch.randn(2, 3, channels, 32, 32)  # [B, T, C, H, W]
    f = enc(frames)
    assert f.shape == (2, 512)
    # frames folded into the batch and averaged: equals the mean of per-frame features (eval mode)
    enc.eval()
    per_frame = torch.stack([enc(frames[:, t]) for t in range(3)], 1).mean(1)
    assert torch.allclose(enc(frames), per_frame, atol=1e-5)


def test_concat_modality_logits_sum_to_fused():
    model = build_model(ModelConfig(feature_dim=4), {"a": (3,), "b": (5,), "c": (2,)}, 3)
    feats = model.encode({"a": torch.randn(6, 3), "b": torch.randn(6, 5), "c": torch.randn(6, 2)})
    parts = model.fusion.modality_logits(feats)
    assert torch.allclose(sum(parts.values()), model.fusion(feats), atol=1e-6)


def test_cuda_request_without_cuda_is_clear():
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match="CUDA is not available"):
        Trainer(make_cfg("train.device=cuda"))
