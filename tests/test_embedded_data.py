"""The embedded datasets (av-digits, UCI mfeat) and the plain-torch audio features they are built with."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from mmbalance.data.audio import hz_to_mel, log_mel, mel_filterbank, mel_to_hz, stft_log_magnitude
from mmbalance.data.embedded import (
    AV_DIGITS_FILE,
    EMOJI9_FILE,
    FILES_DIR,
    MFEAT_FILE,
    MFEAT_VIEWS,
    EmbeddedDataError,
    expected_sha256,
    load_av_digits_arrays,
    load_mfeat_arrays,
    read_sha256sums,
    sha256_file,
    write_npz_deterministic,
)

N_AV, N_MFEAT = 1797, 2000


@pytest.fixture(scope="module")
def av_clean():
    return load_av_digits_arrays("clean")


@pytest.fixture(scope="module")
def av_hard():
    return load_av_digits_arrays("hard")


# ------------------------------------------------------------------------------------------------ av-digits
def test_av_digits_shapes_dtypes_and_balance(av_clean, av_hard):
    for data in (av_clean, av_hard):
        image, audio, labels = data["inputs"]["image"], data["inputs"]["audio"], data["labels"]
        assert set(data["inputs"]) == {"image", "audio"}
        assert image.shape == (N_AV, 1, 8, 8) and image.dtype == np.float32
        assert audio.ndim == 4 and audio.shape[:2] == (N_AV, 1) and audio.dtype == np.float32
        assert 32 <= audio.shape[2] <= 40 and 30 <= audio.shape[3] <= 50
        assert labels.shape == (N_AV,) and labels.dtype == np.int64
        assert data["class_names"] == [str(d) for d in range(10)]
        assert isinstance(data["description"], str) and data["description"]
        counts = np.bincount(labels, minlength=10)
        assert len(counts) == 10 and counts.min() >= 170 and counts.max() <= 185
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert np.isfinite(audio).all()
        # standardised with one global mean/std (float16 storage)
        assert abs(float(audio.mean())) < 0.01 and abs(float(audio.std()) - 1.0) < 0.01
    np.testing.assert_array_equal(av_clean["labels"], av_hard["labels"])


def test_av_digits_images_are_sklearn_digits(av_clean, av_hard):
    from sklearn.datasets import load_digits

    digits = load_digits()
    np.testing.assert_array_equal(av_clean["labels"], digits.target)
    np.testing.assert_array_equal(av_clean["inputs"]["image"][:, 0], (digits.images / 16.0).astype(np.float32))
    noise = av_hard["inputs"]["image"] - av_clean["inputs"]["image"]
    assert 0.2 < float(noise.std()) < 0.5  # pixel noise, clipped to [0, 1]


def test_av_digits_audio_is_paired_by_class_and_distinct(av_clean):
    audio, labels, meta = av_clean["inputs"]["audio"], av_clean["labels"], av_clean["meta"]
    # one synthesised clip per image: no two samples share the exact same features
    flat = audio.reshape(N_AV, -1)
    assert len(np.unique(flat, axis=0)) == N_AV
    assert len(set(meta["voice"].tolist())) > 100  # many accent/voice combinations
    # audio carries the class: nearest class mean (on half the data) is far above chance on the other half
    rng = np.random.default_rng(0)
    idx = rng.permutation(N_AV)
    fit, ev = idx[: N_AV // 2], idx[N_AV // 2:]
    means = np.stack([flat[fit][labels[fit] == c].mean(0) for c in range(10)])
    pred = np.argmin(((flat[ev, None, :] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == labels[ev]).mean() > 0.5


def test_av_digits_unknown_preset():
    with pytest.raises(ValueError, match="clean.*hard"):
        load_av_digits_arrays("medium")


# ---------------------------------------------------------------------------------------------------- mfeat
def test_mfeat_all_views():
    data = load_mfeat_arrays(list(MFEAT_VIEWS))
    assert list(data["inputs"]) == list(MFEAT_VIEWS)
    for view, dim in MFEAT_VIEWS.items():
        x = data["inputs"][view]
        assert x.shape == (N_MFEAT, dim) and x.dtype == np.float32 and np.isfinite(x).all()
    assert data["labels"].shape == (N_MFEAT,) and data["labels"].dtype == np.int64
    np.testing.assert_array_equal(np.bincount(data["labels"]), np.full(10, 200))
    assert data["class_names"] == [str(d) for d in range(10)]
    pix = data["inputs"]["pix"]
    assert pix.min() == 0 and pix.max() == 6 and np.array_equal(pix, np.round(pix))  # 0..6 pixel counts


def test_mfeat_subset_keeps_order():
    data = load_mfeat_arrays(["zer", "pix"])
    assert list(data["inputs"]) == ["zer", "pix"]
    assert load_mfeat_arrays(["mor"])["inputs"]["mor"].shape == (N_MFEAT, 6)


@pytest.mark.parametrize("views", [["pix", "rgb"], ["audio"], []])
def test_mfeat_bad_views(views):
    with pytest.raises(ValueError, match="fou, fac, kar, pix, zer, mor"):
        load_mfeat_arrays(views)


# ------------------------------------------------------------------------------------------------ checksums
def test_shipped_checksums_match():
    sums = read_sha256sums()
    assert set(sums) == {AV_DIGITS_FILE, MFEAT_FILE, EMOJI9_FILE}
    for name, digest in sums.items():
        assert sha256_file(FILES_DIR / name) == digest == expected_sha256(name)


def test_truncated_copy_is_rejected(tmp_path):
    bad = tmp_path / MFEAT_FILE
    shutil.copyfile(FILES_DIR / MFEAT_FILE, bad)
    with open(bad, "r+b") as fh:
        fh.truncate(bad.stat().st_size // 2)
    with pytest.raises(EmbeddedDataError, match="truncated or corrupt") as err:
        load_mfeat_arrays(["pix"], path=bad)
    assert str(bad) in str(err.value)
    assert isinstance(err.value, ValueError)
    # without the checksum the broken zip is still reported as an EmbeddedDataError naming the file
    with pytest.raises(EmbeddedDataError, match=str(bad)):
        load_mfeat_arrays(["pix"], path=bad, verify=False)


def test_corrupt_and_missing_av_digits_are_rejected(tmp_path):
    bad = tmp_path / AV_DIGITS_FILE
    shutil.copyfile(FILES_DIR / AV_DIGITS_FILE, bad)
    with open(bad, "r+b") as fh:  # flip one byte, same size
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(EmbeddedDataError, match="truncated or corrupt"):
        load_av_digits_arrays("clean", path=bad)
    missing = tmp_path / "nothing.npz"
    with pytest.raises(EmbeddedDataError, match="missing") as err:
        load_av_digits_arrays("clean", path=missing)
    assert str(missing) in str(err.value)


def test_intact_copy_loads(tmp_path):
    copy = tmp_path / MFEAT_FILE
    shutil.copyfile(FILES_DIR / MFEAT_FILE, copy)
    assert load_mfeat_arrays(["fou"], path=copy)["inputs"]["fou"].shape == (N_MFEAT, 76)


def test_write_npz_deterministic(tmp_path):
    arrays = {"a": np.arange(12, dtype=np.float16).reshape(3, 4), "b": np.array("text"), "c": np.float64(2.5)}
    write_npz_deterministic(tmp_path / "x.npz", arrays)
    write_npz_deterministic(tmp_path / "y.npz", arrays)
    assert (tmp_path / "x.npz").read_bytes() == (tmp_path / "y.npz").read_bytes()
    with np.load(tmp_path / "x.npz", allow_pickle=False) as npz:
        np.testing.assert_array_equal(npz["a"], arrays["a"])
        assert str(npz["b"]) == "text" and float(npz["c"]) == 2.5


# ---------------------------------------------------------------------------------------------------- audio
def test_mel_scale_round_trip():
    assert hz_to_mel(0.0) == 0.0
    assert abs(hz_to_mel(1000.0) - 1000.0) < 1.0  # HTK mel: 1000 Hz ~ 1000 mel
    f = torch.tensor([0.0, 440.0, 4000.0, 8000.0], dtype=torch.float64)
    torch.testing.assert_close(mel_to_hz(hz_to_mel(f)), f)


def test_mel_filterbank_partition_of_unity():
    n_fft, sr, n_mels = 512, 16000, 40
    fb = mel_filterbank(n_fft // 2 + 1, n_mels, sr)
    assert fb.shape == (n_mels, n_fft // 2 + 1) and fb.dtype == torch.float32
    assert fb.min() >= 0 and fb.max() <= 1.0
    assert (fb > 0).sum(1).min() >= 1  # no empty band
    peaks = fb.argmax(1)
    assert torch.all(peaks[1:] >= peaks[:-1])  # band centres increase
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1)
    edges = mel_to_hz(torch.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    inside = (freqs >= edges[1]) & (freqs <= edges[-2])
    torch.testing.assert_close(fb.sum(0)[inside], torch.ones(int(inside.sum())), atol=1e-5, rtol=0)
    assert torch.all(fb.sum(0) <= 1.0 + 1e-5)
    # f_min/f_max restrict the support
    fb2 = mel_filterbank(n_fft // 2 + 1, 20, sr, f_min=300.0, f_max=4000.0)
    assert fb2[:, freqs < 300].sum() == 0 and fb2[:, freqs > 4000].sum() == 0
    with pytest.raises(ValueError):
        mel_filterbank(257, 20, sr, f_min=5000.0, f_max=4000.0)


def test_log_mel_sine_shape_and_peak_band():
    sr, n_mels, hop = 16000, 40, 256
    t = torch.arange(sr) / sr  # 1.0 s
    for freq in (300.0, 1000.0, 3000.0):
        wave = 0.5 * torch.sin(2 * math.pi * freq * t)
        spec = log_mel(wave, sr, n_fft=512, hop_length=hop, n_mels=n_mels)
        assert spec.shape == (n_mels, 1 + sr // hop) and spec.dtype == torch.float32
        centres = mel_to_hz(torch.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))[1:-1]
        expected_band = int(torch.argmin((centres - freq).abs()))
        peak_band = int(spec.mean(1).argmax())
        assert abs(peak_band - expected_band) <= 1, (freq, peak_band, expected_band)


def test_log_mel_silence_batch_and_dtype():
    silence = log_mel(torch.zeros(8000), 16000)
    torch.testing.assert_close(silence, torch.full_like(silence, math.log(1e-6)))
    waves = torch.randn(3, 4000, dtype=torch.float64)
    batch = log_mel(waves, 16000, hop_length=400, n_mels=32)
    assert batch.shape == (3, 32, 1 + 4000 // 400) and batch.dtype == torch.float64
    torch.testing.assert_close(batch[1], log_mel(waves[1], 16000, hop_length=400, n_mels=32))
    with pytest.raises(ValueError):
        log_mel(torch.zeros(2, 2, 100), 16000)


def test_stft_log_magnitude():
    sr = 22050
    t = torch.arange(sr) / sr
    wave = torch.sin(2 * math.pi * 1000.0 * t)
    spec = stft_log_magnitude(wave)
    assert spec.shape == (257, 1 + sr // 353)
    peak_bin = int(spec.mean(1).argmax())
    assert abs(peak_bin - round(1000.0 * 512 / sr)) <= 1
    silent = stft_log_magnitude(torch.zeros(1000))
    torch.testing.assert_close(silent, torch.full_like(silent, math.log(1e-7)))
