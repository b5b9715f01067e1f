"""Paper datasets: split-file variants, layouts, prepare/verify, audio recipes, frame sampling, cache, configs.

Every fixture is a tiny synthetic tree in one of the layouts the papers' repositories use (JPEG frames made
with Pillow, WAV files made with ``wave``, split files in each format); nothing is downloaded.
"""
from __future__ import annotations

import ast
import csv
import math
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import mmbalance.data.papers  # noqa: F401  (registers the datasets)
from mmbalance import Config, Trainer
from mmbalance.cli import main
from mmbalance.data import build_splits
from mmbalance.data.base import DataError
from mmbalance.data.papers import PAPER_DATASETS
from mmbalance.data.papers.common import labels_from_tokens, read_split_file, stratified_holdout
from mmbalance.data.papers.fbank import KS_FBANK_MEAN, KS_FBANK_STD, kaldi_fbank, kaldi_mel_banks, ks_fbank
from mmbalance.data.papers.frames import frame_indices
from mmbalance.data.papers.preprocess import audio_command, ffmpeg_binary, frames_command
from mmbalance.data.papers.waveform import RECIPES, read_wav, resample, write_wav

REPO = Path(__file__).resolve().parents[1]
EMO = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]


# ---------------------------------------------------------------------------------------------- fixture helpers
def gray_frame(path: Path, level: int, size=(20, 16), mode="RGB"):
    """A uniform frame whose gray level identifies it (so tests can tell which frame was read)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3) if mode == "RGB" else (size[1], size[0]), level, dtype=np.uint8)
    Image.fromarray(arr, mode).save(path, quality=95)


def clip_frames(folder: Path, n: int, pattern="{:05d}.jpg", mode="RGB", start=1):
    for j in range(n):
        gray_frame(folder / pattern.format(j + start), 10 + 40 * j, mode=mode)


def tone(path: Path, freq: float, sr=8000, seconds=0.25):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    write_wav(path, 0.4 * np.sin(2 * np.pi * freq * t), sr)


def cremad_names(per_class=5):
    return [(f"10{a:02d}_DFA_{e}_XX", e, a) for e in EMO for a in range(per_class)]


def make_cremad_raw(root: Path):
    """OGM-GE layout: train.csv/test.csv rows `clip,EMO`, AudioWAV/*.wav, Image-01-FPS/<clip>/00001.jpg."""
    rows = {"train": [], "test": []}
    for k, (name, e, a) in enumerate(cremad_names()):
        rows["test" if a == 4 else "train"].append(f"{name},{e}\n")
        clip_frames(root / "Image-01-FPS" / name, 3)
        tone(root / "AudioWAV" / f"{name}.wav", 200 + 40 * k)
    for s, r in rows.items():
        (root / f"{s}.csv").write_text("".join(r))


def tiny_train(dataset, root, *extra, encoders=None):
    """One epoch on a tiny tree through the real Trainer; returns the summary."""
    enc = encoders or "cnn"
    enc_item = f"model.encoder={enc}" if isinstance(enc, str) else \
        "model.encoder={" + ", ".join(f"{k}: {v}" for k, v in enc.items()) + "}"
    cfg = Config().override([
        f"data.name={dataset}", f"data.root={root}", enc_item, "model.feature_dim=8", "train.epochs=1",
        "train.batch_size=8", "log.tensorboard=false", "log.jsonl=false", "train.progress=false",
        "eval.probe=false", "eval.batch_size=16", *extra])
    if isinstance(enc, str) and enc == "cnn":
        cfg = cfg.override(["model.encoder_args={width: 4}"])
    elif isinstance(enc, dict):
        cnn = [m for m, e in enc.items() if e == "cnn"]
        if cnn:
            cfg = cfg.override(["model.encoder_args={" + ", ".join(f"{m}: {{width: 4}}" for m in cnn) + "}"])
    summary = Trainer(cfg).fit()
    assert 0.0 <= summary["test"]["acc"] <= 1.0
    return summary


@pytest.fixture(scope="module")
def cremad_prepared(tmp_path_factory):
    base = tmp_path_factory.mktemp("cremad")
    make_cremad_raw(base / "raw")
    rc = main(["prepare", "cremad", "--raw", str(base / "raw"), "--out", str(base / "out"), "--no-progress",
               "--workers", "2"])
    assert rc == 0
    return base / "out"


# ---------------------------------------------------------------------------------------------- split files
def test_split_file_variants(tmp_path):
    cases = {
        "ogm.csv": ("1001_DFA_ANG_XX,ANG\n1002_IEO_HAP_HI,HAP\n",
                    [("1001_DFA_ANG_XX", "ANG"), ("1002_IEO_HAP_HI", "HAP")]),
        "ks.txt": ("--4-0ihtnBU_000058_000068,10,4\n", [("--4-0ihtnBU_000058_000068", "4")]),
        "mla.txt": ("1001_DFA_ANG_XX.flv ANG\nabc.mp4 playing bass guitar\n",
                    [("1001_DFA_ANG_XX", "ANG"), ("abc", "playing bass guitar")]),
        "bmm.txt": ("clip_a 10 extra 7\n", [("clip_a", "7")]),
        "ucf.txt": ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g01_c01.avi\n",
                    [("v_ApplyEyeMakeup_g08_c01", "1"), ("v_YoYo_g01_c01", None)]),
        "header.csv": ("name,label\nx,NEU\n", [("x", "NEU")]),
    }
    for fname, (text, expected) in cases.items():
        (tmp_path / fname).write_text(text)
        rows = read_split_file(tmp_path / fname)
        assert [(r.name, r.label) for r in rows] == expected, fname
    rows = read_split_file(tmp_path / "mla.txt")
    with pytest.raises(DataError, match="line 2 .*'abc'.*unknown class"):
        labels_from_tokens(rows, EMO, "mla.txt")
    (tmp_path / "empty.csv").write_text("\n")
    with pytest.raises(DataError, match="no rows"):
        read_split_file(tmp_path / "empty.csv")


def test_stratified_holdout_quotas_and_seed():
    # 10 samples: class 0 x6, class 1 x3, class 2 x1; n_val=3 -> exact quotas 1.8 / 0.9 / 0.3
    # floors 1/0/0, the two leftover slots go to the largest fractions (class 1: .9, class 0: .8)
    y = [0] * 6 + [1] * 3 + [2]
    tr, va = stratified_holdout(y, 3, seed=0)
    assert sorted(np.bincount(np.asarray(y)[va], minlength=3).tolist()) == [0, 1, 2]
    assert np.bincount(np.asarray(y)[va], minlength=3).tolist() == [2, 1, 0]
    assert sorted(tr.tolist() + va.tolist()) == list(range(10))
    assert stratified_holdout(y, 3, seed=0)[1].tolist() == va.tolist()
    assert any(stratified_holdout(y, 3, seed=s)[1].tolist() != va.tolist() for s in range(1, 6))
    # CREMA-D sizes: 744 of 6,698 leaves the 5,954 of D&R's my_train
    y = np.repeat(np.arange(6), [1087, 1087, 1087, 1087, 1087, 1263])
    tr, va = stratified_holdout(y, 744, seed=0)
    assert (len(tr), len(va)) == (5954, 744)


def test_frame_indices_by_hand():
    assert frame_indices(7, 2, "segments", train=False) == [1, 4]  # seg 3 -> middles 0+1, 3+1
    assert frame_indices(6, 3, "segments", train=False) == [0, 2, 4]  # seg 2 -> (2-1)//2 = 0
    assert frame_indices(1, 3, "segments", train=True) == [0, 0, 0]
    assert frame_indices(2, 3, "random", train=True) == [0, 0, 1]  # i*n//t
    assert frame_indices(5, 3, "first", train=True) == [0, 1, 2]
    torch.manual_seed(0)
    for _ in range(20):
        a, b = frame_indices(7, 2, "segments", train=True)
        assert 0 <= a <= 2 and 3 <= b <= 5
        r = frame_indices(7, 3, "random", train=True)
        assert r == sorted(set(r)) and len(r) == 3
    with pytest.raises(DataError, match="frame_sampling"):
        frame_indices(5, 2, "middle")


# ---------------------------------------------------------------------------------------------- audio
def test_wav_roundtrip_and_errors(tmp_path):
    x = np.array([0.0, 0.5, -0.5, 0.25])
    write_wav(tmp_path / "a.wav", x, 8000)
    y, sr = read_wav(tmp_path / "a.wav")
    assert sr == 8000 and np.allclose(y.numpy(), np.round(x * 32767) / 32768, atol=0)
    raw = (tmp_path / "a.wav").read_bytes()
    (tmp_path / "bad.wav").write_bytes(raw[:-3])
    with pytest.raises(DataError, match="bad.wav"):
        read_wav(tmp_path / "bad.wav")
    with pytest.raises(DataError, match="missing audio file .*nope.wav"):
        read_wav(tmp_path / "nope.wav")


def test_resample_matches_an_analytic_sine():
    sr, f = 16000, 440.0
    t = torch.arange(sr // 2, dtype=torch.float64) / sr
    y = resample(torch.sin(2 * math.pi * f * t), sr, 22050)
    assert y.shape[0] == math.ceil((sr // 2) * 441 / 320)
    t2 = torch.arange(y.shape[0], dtype=torch.float64) / 22050
    ref = torch.sin(2 * math.pi * f * t2)
    mid = slice(200, y.shape[0] - 200)
    assert (y[mid] - ref[mid]).abs().max() < 2e-3
    # a tone above the new Nyquist is removed, not aliased
    hi = resample(torch.sin(2 * math.pi * 7000 * t), sr, 8000)
    assert hi[200:-200].abs().max() < 0.02


def test_ogm_ge_recipe_equals_the_hand_pipeline():
    """22,050 Hz input of 1.1 s: tile to 3 s (= np.tile(x, 3)[:66150]), clip, log|STFT(512, 353)| + 1e-7."""
    sr = 22050
    x = 1.5 * torch.sin(torch.arange(int(1.1 * sr), dtype=torch.float32) * 0.05)  # exceeds [-1, 1]: clipped
    got = RECIPES["ogm-ge"].compute(x, sr)
    tiled = torch.from_numpy(np.tile(x.numpy(), 3)[: 3 * sr]).clamp(-1, 1)
    spec = torch.stft(tiled, 512, 353, window=torch.hann_window(512), center=True, pad_mode="reflect",
                      return_complex=True)
    assert got.shape == (257, 188)
    assert torch.allclose(got, torch.log(spec.abs() + 1e-7), atol=1e-5)
    assert RECIPES["bss-cremad"].compute(x, sr).shape == (257, 1250)


def test_kaldi_fbank_by_hand():
    sr = 16000
    t = torch.arange(sr, dtype=torch.float64) / sr
    fb = kaldi_fbank(torch.sin(2 * math.pi * 1000 * t), sr)
    assert fb.shape == (1 + (sr - 400) // 160, 23)  # 25 ms frames every 10 ms, snip_edges
    banks = kaldi_mel_banks(23, 512, sr, 20.0, 0.0)
    assert banks.shape == (23, 257) and torch.all(banks[:, -1] == 0)
    # the band whose triangle weighs the 1 kHz bin (bin 32 of 512 at 16 kHz) most carries the energy
    assert int(fb.mean(0).argmax()) == int(banks[:, 32].argmax())
    # KS recipe: 0.5 s gives 48 frames, zero-padded (after the log) to 1024, then (x - mean) / (2 std)
    ks = ks_fbank(torch.sin(2 * math.pi * 440 * t[:8000]).float(), sr)
    assert ks.shape == (1024, 128)
    pad_value = (0.0 - KS_FBANK_MEAN) / (2 * KS_FBANK_STD)
    assert torch.allclose(ks[-1], torch.full((128,), pad_value))


# ---------------------------------------------------------------------------------------------- ffmpeg
def test_ffmpeg_commands_and_missing_binary(tmp_path, monkeypatch):
    assert frames_command("v.flv", "out", fps=1, height=256, ffmpeg="ff") == [
        "ff", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", "v.flv", "-vf", "fps=1,scale=-2:256",
        "-q:v", "2", "-start_number", "1", "out/%05d.jpg"]
    cmd = frames_command("c.avi", "o", fps=0, ffmpeg="ff", frame_range=(10, 20))
    assert cmd[cmd.index("-vf") + 1] == "select=between(n\\,10\\,19)" and "vfr" in cmd
    assert audio_command("v.mp4", "a.wav", 16000, "ff") == [
        "ff", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", "v.mp4", "-vn", "-ac", "1", "-ar",
        "16000", "-acodec", "pcm_s16le", "a.wav"]
    monkeypatch.delenv("MMBALANCE_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install ffmpeg"):
        ffmpeg_binary()
    monkeypatch.setenv("MMBALANCE_FFMPEG", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="not an executable"):
        ffmpeg_binary()


def test_prepare_videos_without_ffmpeg_names_the_clip(tmp_path, monkeypatch, capsys):
    raw = tmp_path / "raw"
    (raw / "VideoFlash").mkdir(parents=True)
    (raw / "VideoFlash" / "1001_DFA_ANG_XX.flv").write_bytes(b"not a video")
    (raw / "train.csv").write_text("1001_DFA_ANG_XX,ANG\n")
    (raw / "test.csv").write_text("1002_DFA_ANG_XX,ANG\n")
    monkeypatch.delenv("MMBALANCE_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    rc = main(["prepare", "cremad", "--raw", str(raw), "--out", str(tmp_path / "out"), "--no-progress"])
    assert rc == 2
    assert "ffmpeg is needed" in capsys.readouterr().err
    # with ffmpeg "installed" but failing on this file, the error names the clip and the run exits 1
    fake = tmp_path / "bin" / "ffmpeg"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Invalid data found when processing input' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("MMBALANCE_FFMPEG", str(fake))
    rc = main(["prepare", "cremad", "--raw", str(raw), "--out", str(tmp_path / "out"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "clip '1001_DFA_ANG_XX'" in out and "Invalid data found" in out


# ---------------------------------------------------------------------------------------------- CREMA-D
def test_cremad_prepare_verify_train(cremad_prepared, tmp_path, capsys):
    out = cremad_prepared
    assert (out / "audio" / "1000_DFA_NEU_XX.npy").is_file() and (out / "visual" / "1000_DFA_NEU_XX").is_dir()
    assert np.load(out / "audio" / "1000_DFA_NEU_XX.npy").shape == (257, 188)
    assert main(["verify", "cremad", "--root", str(out), "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "train" in text and "24 samples" in text and "OK" in text

    splits = build_splits(Config().override(["data.name=cremad", f"data.root={out}", "data.options.val_size=6"]).data)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 6, 6)
    assert torch.bincount(splits.val.labels, minlength=6).tolist() == [1] * 6  # stratified
    assert splits.train.class_names == EMO
    tiny_train("cremad", out, "data.options.val_size=6", "data.options.image_size=16", "data.options.frames=1")

    # corrupt one audio array (same size) and delete one frame: both named, exit code 1
    bad = tmp_path / "copy"
    import shutil

    shutil.copytree(out, bad)
    npy = bad / "audio" / "1001_DFA_HAP_XX.npy"
    data = bytearray(npy.read_bytes())
    data[-5] ^= 0xFF
    npy.write_bytes(bytes(data))
    (bad / "visual" / "1002_DFA_SAD_XX" / "00002.jpg").unlink()
    shutil.rmtree(bad / "visual" / "1003_DFA_FEA_XX")
    assert main(["verify", "cremad", "--root", str(bad), "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "corrupt file: audio/1001_DFA_HAP_XX.npy (sample '1001_DFA_HAP_XX')" in text
    assert "missing file: visual/1002_DFA_SAD_XX/00002.jpg (sample '1002_DFA_SAD_XX')" in text
    assert "1003_DFA_FEA_XX" in text and "missing frame folder" in text
    # training on the damaged tree fails up front, naming the sample
    with pytest.raises(DataError, match="1003_DFA_FEA_XX"):
        build_splits(Config().override(["data.name=cremad", f"data.root={bad}", "data.options.val_size=6"]).data)


def test_cremad_dr_layout_uses_the_val_file(tmp_path):
    """D&R: my_train.csv / val.csv / test.csv (+ train.csv), audio/<clip>.pt, visual/<clip>/frame_000NN.jpg."""
    root = tmp_path
    names = cremad_names(4)
    for k, (name, e, a) in enumerate(names):
        clip_frames(root / "visual" / name, 2, pattern="frame_{:05d}.jpg")
        (root / "audio").mkdir(exist_ok=True)
        torch.save(torch.randn(40, 16), root / "audio" / f"{name}.pt")
    rows = lambda sel: "".join(f"{n},{e}\n" for n, e, a in names if sel(a))  # noqa: E731
    (root / "train.csv").write_text(rows(lambda a: a < 3))
    (root / "my_train.csv").write_text(rows(lambda a: a < 2))
    (root / "val.csv").write_text(rows(lambda a: a == 2))
    (root / "test.csv").write_text(rows(lambda a: a == 3))
    sp = build_splits(Config().override(["data.name=cremad", f"data.root={root}"]).data)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (12, 6, 6)
    assert set(sp.val.sample_names) == {n for n, e, a in names if a == 2}
    assert sp.train.load(0, "audio").shape == (1, 40, 16)
    # stratified instead: val carved from the full train.csv
    sp = build_splits(Config().override(["data.name=cremad", f"data.root={root}", "data.options.val=stratified",
                                         "data.options.val_size=6"]).data)
    assert (len(sp.train), len(sp.val)) == (12, 6) and set(sp.val.sample_names) != {n for n, e, a in names if a == 2}


def test_cremad_mla_layout_and_corrupt_frame(tmp_path):
    """MLA: my_{train,test}_cre.txt rows `clip.flv Class`, audio/{split}_fbank/*.npy,
    visual/{split}_imgs/Image-01-FPS/."""
    root = tmp_path
    names = cremad_names(3)
    full = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "FEA": "fear", "DIS": "disgust", "ANG": "anger"}
    for name, e, a in names:
        split = "test" if a == 2 else "train"
        clip_frames(root / "visual" / f"{split}_imgs" / "Image-01-FPS" / name, 3)
        d = root / "audio" / f"{split}_fbank"
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{name}.npy", np.random.randn(32, 8).astype(np.float32))
    (root / "my_train_cre.txt").write_text("".join(f"{n}.flv {full[e]}\n" for n, e, a in names if a < 2))
    (root / "my_test_cre.txt").write_text("".join(f"{n}.flv {full[e]}\n" for n, e, a in names if a == 2))
    cfg = Config().override(["data.name=cremad", f"data.root={root}", "data.options.val_size=6",
                             "data.options.image_size=16", "data.options.audio_frames=20",
                             "data.options.audio=ks-fbank"])
    sp = build_splits(cfg.data)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (6, 6, 6)
    x = sp.test.load(0, "audio")
    assert x.shape == (1, 20, 8)  # ks-fbank arrays are [time, mel]: the time axis is cut to 20
    assert sp.test.load(0, "visual").shape == (2, 3, 16, 16)
    # a corrupt JPEG: the error names the file and the sample
    victim = sp.test.records[0]
    (Path(victim.paths["visual"]) / "00002.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DataError, match=rf"sample 0 \('{victim.name}'\).*00002.jpg"):
        sp.test.load(0, "visual")


def test_frames_and_cache_pick_the_documented_frames(cremad_prepared):
    """Clips have 3 frames of gray levels 10, 50, 90. Eval with T=2: seg = 1, middles -> frames 0 and 1."""
    base = ["data.name=cremad", f"data.root={cremad_prepared}", "data.options.val_size=6",
            "data.options.image_size=16", "data.options.frames=2"]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)

    def levels(x):  # [T, 3, H, W] normalised -> gray level per frame
        return ((x * std + mean) * 255).mean(dim=(1, 2, 3)).round().tolist()

    files = build_splits(Config().override(base).data)
    assert levels(files.test.load(0, "visual")) == [10, 50]
    cached = build_splits(Config().override(base + ["data.options.cache=true", "data.options.cache_size=12"]).data)
    src = cached.test
    assert type(src).__name__ == "CachedSource" and src.input_shape("visual") == (2, 3, 16, 16)
    x = src.batch_transform("visual", src.get_batch(torch.arange(len(src)), "visual"), False)
    assert x.shape == (len(src), 2, 3, 16, 16)
    assert all(levels(v) == [10, 50] for v in x)
    assert torch.allclose(src.batch_transform("audio", src.get_batch(torch.tensor([0]), "audio"), False)[0],
                          files.test.load(0, "audio"), atol=0.01)  # float16 storage
    src.set_train(True)
    torch.manual_seed(1)
    picks = {tuple(levels(v)) for v in src.batch_transform("visual", src.get_batch(torch.arange(6), "visual"), False)}
    assert picks <= {(10, 50), (10, 90)}  # segment 0 = frame 0, segment 1 = frame 1 or 2
    # frames / frame_sampling are read from the loader at batch time: same cache, new settings honoured
    folders = sorted(p.name for p in src.dir.parent.iterdir())
    base3 = [o for o in base if "frames=" not in o] + ["data.options.frames=3", "data.options.cache=true",
                                                        "data.options.cache_size=12"]
    three = build_splits(Config().override(base3).data).test
    assert three.dir == src.dir and sorted(p.name for p in src.dir.parent.iterdir()) == folders
    assert three.input_shape("visual") == (3, 3, 16, 16)
    x3 = three.batch_transform("visual", three.get_batch(torch.arange(len(three)), "visual"), False)
    assert all(levels(v) == [10, 50, 90] for v in x3)
    first = build_splits(Config().override(base + ["data.options.cache=true", "data.options.cache_size=12",
                                                   "data.options.frame_sampling=first"]).data).test
    first.set_train(True)
    x1 = first.batch_transform("visual", first.get_batch(torch.arange(6), "visual"), False)
    assert all(levels(v) == [10, 50] for v in x1)  # 'first' = the first T frames, also in training
    tiny_train("cremad", cremad_prepared, "data.options.val_size=6", "data.options.image_size=16",
               "data.options.cache=true", "data.options.cache_size=12", "data.options.frames=2")


def test_concurrent_cache_builds_publish_one_complete_cache(cremad_prepared, tmp_path):
    """DDP ranks or parallel jobs may build the same cache at once: each builds in its own folder and the
    first atomic rename wins; the others' work is discarded, never mixed in."""
    from concurrent.futures import ThreadPoolExecutor

    from mmbalance.data.papers.cache import CachedSource, build_cache

    src = build_splits(Config().override(["data.name=cremad", f"data.root={cremad_prepared}",
                                          "data.options.val_size=6", "data.options.image_size=16"]).data).test
    d = tmp_path / "cache" / "cremad-test-x"
    with ThreadPoolExecutor(3) as ex:
        list(ex.map(lambda _: build_cache(src, d, 4, 12, progress=False), range(3)))
    assert sorted(p.name for p in d.parent.iterdir()) == [d.name]  # no leftover build folders
    cached = CachedSource(d, src)
    assert cached.input_shape("visual") == src.input_shape("visual")
    build_cache(src, d, 4, 12, progress=False)  # rebuilding over a complete cache is harmless too
    assert (d / "meta.json").is_file()


# ---------------------------------------------------------------------------------------------- Kinetics-Sounds
def test_kinetics_sounds_ogm_layout_prepare_and_train(tmp_path, capsys):
    raw = tmp_path / "raw"
    rows = {"train": [], "test": []}
    for c in range(3):
        for i in range(4):
            name = f"yt{c}{i}-x_{i:06d}_{i + 10:06d}"
            rows["test" if i == 3 else "train"].append(f"{name},10,{c}\n")
            clip_frames(raw / "visual" / name, 4, pattern="frame_{:05d}.jpg")
            (raw / "train_fbank").mkdir(parents=True, exist_ok=True)
            np.save(raw / "train_fbank" / f"{name}.npy", np.random.randn(30, 16).astype(np.float32))
    (raw / "my_train.txt").write_text("".join(rows["train"]))
    (raw / "my_test.txt").write_text("".join(rows["test"]))
    out = tmp_path / "out"
    assert main(["prepare", "kinetics-sounds", "--raw", str(raw), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["verify", "kinetics-sounds", "--root", str(out), "--no-progress", "--decode", "2"]) == 0
    assert "decoded 2 samples" in capsys.readouterr().out
    sp = build_splits(Config().override(["data.name=kinetics-sounds", f"data.root={out}",
                                         "data.options.val_size=3"]).data)
    assert sp.train.num_classes == 3 and sp.train.class_names == ["class_0", "class_1", "class_2"]
    assert (len(sp.train), len(sp.val), len(sp.test)) == (6, 3, 3)
    tiny_train("kinetics-sounds", out, "data.options.val_size=3", "data.options.image_size=16",
               "data.options.frames=3", "data.options.audio_frames=24")
    # class-name labels (BalanceMM/MLA style) are matched against the shipped 31-class list
    (out / "train.csv").write_text("".join(r.replace(",10,0", ",playing guitar").replace(",10,1", ",singing")
                                           .replace(",10,2", ",tickling") for r in rows["train"]))
    (out / "test.csv").write_text("".join(r.replace(",10,0", ",playing guitar").replace(",10,1", ",singing")
                                          .replace(",10,2", ",tickling") for r in rows["test"]))
    sp = build_splits(Config().override(["data.name=kinetics-sounds", f"data.root={out}",
                                         "data.options.val_size=3"]).data)
    assert sp.train.num_classes == 31 and "playing_guitar" in sp.train.class_names


# ---------------------------------------------------------------------------------------------- VGGSound
def test_vggsound_csv_skips_missing_clips_and_trains(tmp_path, recwarn):
    raw = tmp_path / "raw"
    lines = []
    labels = ["dog barking", "male speech, man speaking"]
    for c, lab in enumerate(labels):
        for i in range(4):
            ytid, start = f"v{c}{i}", str(10 * i)
            split = "test" if i == 3 else "train"
            lines.append(f'{ytid},{start},"{lab}",{split}\n')
            if (c, i) == (1, 2):
                continue  # never downloaded
            name = f"{ytid}_{start}"
            clip_frames(raw / "train-set-img" / "Image-01-FPS" / f"{name}.mp4", 2)
            tone(raw / "train-set" / f"{name}.wav", 300 + 100 * c + 10 * i, sr=16000, seconds=0.2)
    (raw / "vggsound.csv").write_text("".join(lines))
    out = tmp_path / "out"
    assert main(["prepare", "vggsound", "--raw", str(raw), "--out", str(out), "--no-progress"]) == 0
    assert main(["verify", "vggsound", "--root", str(out), "--no-progress"]) == 0
    sp = build_splits(Config().override(["data.name=vggsound", f"data.root={out}", "data.options.val_size=2"]).data)
    assert sp.train.class_names == labels  # order of first appearance, commas kept
    assert len(sp.train) + len(sp.val) == 5 and len(sp.test) == 2  # the missing clip is skipped
    assert any("skipping 1 of 6" in str(w.message) for w in recwarn.list)
    assert sp.train.load(0, "audio").shape == (1, 129, 626)  # 5-s window of the 10-s 16 kHz STFT
    cached = build_splits(Config().override(["data.name=vggsound", f"data.root={out}", "data.options.val_size=2",
                                             "data.options.image_size=16", "data.options.cache=true"]).data)
    full = cached.train.arrays["audio"]
    assert tuple(full.shape[1:]) == (1, 129, 1251)  # the whole 10 s is cached; windows are cut per batch
    cached.train.set_train(True)
    torch.manual_seed(0)
    a = cached.train.get_batch(torch.arange(3), "audio")
    assert a.shape == (3, 1, 129, 626)
    starts = [int(((full[i, 0, :, :] - a[i, 0, :, :1]).abs().sum(0) == 0).nonzero()[0]) for i in range(3)]
    assert all(torch.equal(a[i], full[i, :, :, s:s + 626]) for i, s in enumerate(starts))
    tiny_train("vggsound", out, "data.options.val_size=2", "data.options.image_size=16")


# ---------------------------------------------------------------------------------------------- UCF-101
def test_ucf101_lists_rgb_flow_prepare_and_train(tmp_path):
    raw = tmp_path / "raw"
    classes = ["ApplyEyeMakeup", "YoYo"]
    lists = raw / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    train, test = [], []
    for c, cls in enumerate(classes):
        for g in range(5):
            name = f"v_{cls}_g{g:02d}_c01"
            (train if g < 4 else test).append(f"{cls}/{name}.avi" + (f" {c + 1}" if g < 4 else ""))
            clip_frames(raw / "jpegs_256" / name, 4, pattern="frame{:06d}.jpg")
            for comp in ("u", "v"):
                clip_frames(tmp_path / "flow" / comp / name, 6, pattern="frame{:06d}.jpg", mode="L")
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test) + "\n")
    out = tmp_path / "out"
    assert main(["prepare", "ucf101", "--raw", str(raw), "--out", str(out), "--flow", str(tmp_path / "flow"),
                 "--no-progress"]) == 0
    assert main(["verify", "ucf101", "--root", str(out), "--no-progress"]) == 0
    sp = build_splits(Config().override(["data.name=ucf101", f"data.root={out}", "data.options.val_size=2",
                                         "data.options.image_size=16"]).data)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (6, 2, 2) and sp.test.labels.tolist() == [0, 1]
    flow = sp.test.load(0, "flow")
    assert flow.shape == (3, 2, 16, 16)
    # flow frames 6 / T 3 -> seg 2 -> frames 0, 2, 4 -> levels 10, 90, 170, normalised with 0.1307 / 0.3081
    lv = ((flow[:, 0] * 0.3081 + 0.1307) * 255).mean(dim=(1, 2)).round().tolist()
    assert lv == [10, 90, 170]
    cached = build_splits(Config().override(["data.name=ucf101", f"data.root={out}", "data.options.val_size=2",
                                             "data.options.image_size=16", "data.options.cache=true",
                                             "data.options.cache_size=12"]).data)
    assert cached.test.input_shape("flow") == (3, 2, 16, 16)
    x = cached.test.batch_transform("flow", cached.test.get_batch(torch.tensor([0]), "flow"), False)[0]
    assert ((x[:, 0] * 0.3081 + 0.1307) * 255).mean(dim=(1, 2)).round().tolist() == [10, 90, 170]
    tiny_train("ucf101", out, "data.options.val_size=2", "data.options.image_size=16", "data.options.frames=2")


# ---------------------------------------------------------------------------------------------- NVGesture
def test_nvgesture_lst_prepare_and_train(tmp_path):
    raw = tmp_path / "raw"
    lines = {"train": [], "test": []}
    for c in range(2):
        for s in range(3):
            rel = f"Video_data/class_{c + 1:02d}/subject{s}_r0"
            name = f"class_{c + 1:02d}_subject{s}_r0"
            split = "test" if s == 2 else "train"
            lines[split].append(f"path:./{rel} depth:sk_depth:0:8 color:sk_color:0:8 duo_left:duo_left:0:9 "
                                f"label:{c + 1}\n")
            clip_frames(raw / "rgb" / name, 4)
            clip_frames(raw / "depth" / name, 4, mode="L")
            for comp in ("u", "v"):
                clip_frames(tmp_path / "flow" / comp / name, 3, mode="L")
    (raw / "nvgesture_train_correct_cvpr2016_v2.lst").write_text("".join(lines["train"]))
    (raw / "nvgesture_test_correct_cvpr2016_v2.lst").write_text("".join(lines["test"]))
    out = tmp_path / "out"
    assert main(["prepare", "nvgesture", "--raw", str(raw), "--out", str(out), "--flow", str(tmp_path / "flow"),
                 "--no-progress"]) == 0
    assert (out / "train.csv").read_text().splitlines()[0] == "class_01_subject0_r0,0"
    assert main(["verify", "nvgesture", "--root", str(out), "--no-progress"]) == 0
    sp = build_splits(Config().override(["data.name=nvgesture", f"data.root={out}", "data.options.val_size=1",
                                         "data.options.image_size=16", "data.options.frames=2"]).data)
    assert sp.train.modalities == ["rgb", "depth", "flow"]
    assert [sp.test.input_shape(m) for m in sp.test.modalities] == [(2, 3, 16, 16), (2, 1, 16, 16), (2, 2, 16, 16)]
    tiny_train("nvgesture", out, "data.options.val_size=1", "data.options.image_size=16", "data.options.frames=2")


# ---------------------------------------------------------------------------------------------- MOSI
def make_mosi(path: Path, n=(12, 6, 6)):
    rng = np.random.default_rng(0)
    data = {}
    for split, k in zip(("train", "valid", "test"), n):
        labels = np.linspace(-3, 3, k).reshape(k, 1, 1)
        audio = rng.normal(size=(k, 5, 5)).astype(np.float32)
        audio[0, 0, 0] = -np.inf
        data[split] = {"text": rng.normal(size=(k, 5, 300)).astype(np.float32), "audio": audio,
                       "vision": rng.normal(size=(k, 5, 20)).astype(np.float32), "labels": labels,
                       "id": np.array([f"{split}{i}" for i in range(k)])}
    with open(path, "wb") as f:
        pickle.dump(data, f)


def test_mosi_label_modes_prepare_and_train(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    make_mosi(raw / "mosi_data.pkl")
    out = tmp_path / "out"
    # a .pkl is read with pickle: only with the explicit opt-in (--trust-pickle / data.trust_pickle)
    assert main(["prepare", "mosi", "--raw", str(raw), "--out", str(out), "--no-progress", "--trust-pickle"]) == 0
    assert main(["verify", "mosi", "--root", str(out), "--no-progress", "--trust-pickle"]) == 0
    y = np.linspace(-3, 3, 6)  # -3, -1.8, -0.6, 0.6, 1.8, 3
    sp = build_splits(Config().override(["data.name=mosi", f"data.root={out}", "data.trust_pickle=true"]).data)
    assert sp.val.labels.tolist() == (y >= 0).astype(int).tolist()
    assert sp.train.modalities == ["text", "audio", "visual"]
    assert torch.isfinite(sp.train.inputs["audio"]).all() and sp.train.inputs["audio"][0, 0, 0] == 0
    sp = build_splits(Config().override(["data.name=mosi", f"data.root={out}", "data.options.labels=7class",
                                         "data.trust_pickle=true"]).data)
    assert sp.val.labels.tolist() == [0, 1, 2, 4, 5, 6] and sp.val.num_classes == 7  # round(-1.8)=-2 -> 1
    sp = build_splits(Config().override(["data.name=mosi", f"data.root={out}", "data.options.labels=binary_nonzero",
                                         "data.modalities=[text,audio]", "data.trust_pickle=true"]).data)
    assert sp.val.modalities == ["text", "audio"]
    tiny_train("mosi", out, "data.trust_pickle=true", encoders="mlp")


# ---------------------------------------------------------------------------------------------- image + text
def test_twitter2015_tsv_with_feature_table_and_local_bert(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    (raw / "twitter2015_images").mkdir(parents=True)
    feats_ids, feats = [], []
    for split, k in (("train", 6), ("dev", 3), ("test", 3)):
        rows = ["index\t#1 Label\t#2 ImageID\t#3 String\t#3 String"]
        for i in range(k):
            img = f"{split}{i}.jpg"
            gray_frame(raw / "twitter2015_images" / img, 20 * i)
            rows.append(f"{i}\t{i % 3}\t{img}\tRT $T$ is great {i}\tTarget{i}")
            sid = f"{'val' if split == 'dev' else split}_{i}"
            feats_ids.append(sid)
            feats.append(np.full(12, i, dtype=np.float32))
        (raw / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    np.savez(tmp_path / "feats.npz", ids=np.array(feats_ids), features=np.stack(feats))
    out = tmp_path / "out"
    assert main(["prepare", "twitter2015", "--raw", str(raw), "--out", str(out), "--text-features",
                 str(tmp_path / "feats.npz"), "--no-progress"]) == 0
    assert main(["verify", "twitter2015", "--root", str(out), "--no-progress"]) == 0
    with open(out / "train.csv") as f:
        first = next(csv.DictReader(f))
    assert first["text"] == "RT Target0 is great 0" and first["label"] == "negative"
    sp = build_splits(Config().override(["data.name=twitter2015", f"data.root={out}",
                                         "data.options.image_size=16"]).data)
    assert (len(sp.train), len(sp.val), len(sp.test)) == (6, 3, 3)
    assert sp.test.load(2, "text").tolist() == [2.0] * 12
    tiny_train("twitter2015", out, "data.options.image_size=16", encoders={"image": "cnn", "text": "mlp"})

    # --bert: a fake `transformers` proves the local-only call and the CLS pooling
    calls = []

    class Tok:
        pad_token_id = 0

        @classmethod
        def from_pretrained(cls, path, **kw):
            calls.append(("tok", path, kw))
            return cls()

        def __call__(self, texts, **kw):
            ids = torch.tensor([[len(t), 1] for t in texts])
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    class Model(torch.nn.Module):
        @classmethod
        def from_pretrained(cls, path, **kw):
            calls.append(("model", path, kw))
            return cls()

        def forward(self, input_ids, attention_mask):
            h = input_ids.float().unsqueeze(-1).expand(-1, -1, 4)
            return types.SimpleNamespace(last_hidden_state=h, pooler_output=h[:, 0])

    monkeypatch.setitem(sys.modules, "transformers", types.SimpleNamespace(AutoTokenizer=Tok, AutoModel=Model))
    (tmp_path / "bert").mkdir()
    out2 = tmp_path / "out2"
    assert main(["prepare", "twitter2015", "--raw", str(raw), "--out", str(out2), "--bert", str(tmp_path / "bert"),
                 "--no-progress"]) == 0
    assert all(kw.get("local_files_only") is True for _, _, kw in calls)
    assert np.load(out2 / "text" / "train_0.npy").tolist() == [float(len("RT Target0 is great 0"))] * 4


def test_sarcasm_literal_lists_prepare_and_train(tmp_path):
    raw = tmp_path / "raw"
    (raw / "text").mkdir(parents=True)
    feats = tmp_path / "feats"
    feats.mkdir()
    for split, fname, k in (("train", "train.txt", 6), ("val", "valid2.txt", 2), ("test", "test2.txt", 2)):
        lines = []
        for i in range(k):
            sid = f"68{split}{i}"
            gray_frame(raw / "dataset_image" / f"{sid}.jpg", 30 * i)
            extra = ", 0" if split != "train" else ""
            lines.append(repr([sid, f"so 'great' {i}", *([0] if extra else []), i % 2]))
            np.save(feats / f"{sid}.npy", np.random.randn(4, 6).astype(np.float32))
        (raw / "text" / fname).write_text("\n".join(lines) + "\n")
    assert ast.literal_eval((raw / "text" / "valid2.txt").read_text().splitlines()[0])[-1] == 0
    out = tmp_path / "out"
    assert main(["prepare", "sarcasm", "--raw", str(raw), "--out", str(out), "--text-features", str(feats),
                 "--no-progress"]) == 0
    sp = build_splits(Config().override(["data.name=sarcasm", f"data.root={out}", "data.options.image_size=16",
                                         "data.options.text_len=6"]).data)
    assert sp.train.class_names == ["not_sarcastic", "sarcastic"] and sp.val.labels.tolist() == [0, 1]
    assert sp.train.load(0, "text").shape == (6, 6)  # [L=4] padded to text_len 6
    tiny_train("sarcasm", out, "data.options.image_size=16", "data.options.text_len=4",
               encoders={"image": "cnn", "text": "mlp"})


# ---------------------------------------------------------------------------------------------- options / configs
def test_unknown_option_and_missing_root_are_named(tmp_path):
    with pytest.raises(DataError, match="no option 'frame'.*Did you mean 'frames'"):
        build_splits(Config().override(["data.name=cremad", f"data.root={tmp_path}", "data.options.frame=2"]).data)
    with pytest.raises(DataError, match="needs data.root"):
        build_splits(Config().override(["data.name=ucf101"]).data)
    with pytest.raises(DataError, match="no split files"):
        build_splits(Config().override(["data.name=cremad", f"data.root={tmp_path}"]).data)


def test_every_config_file_parses_and_validates():
    from mmbalance.registry import DATASETS, ENCODERS, FUSIONS, METHODS

    files = sorted((REPO / "configs").glob("*.yaml"))
    assert {"cremad-gewu.yaml", "cremad-njust.yaml", "av-digits.yaml", "mfeat.yaml"} <= {f.name for f in files}
    for f in files:
        cfg = Config.from_yaml(f)
        assert cfg.data.name in DATASETS, f
        for m in cfg.method_names():
            assert m in METHODS, f
        from mmbalance.methods import method_params

        for m, kw in cfg.method_args.items():
            assert m in cfg.method_names() and set(kw) <= set(method_params(m)), f
        encs = cfg.model.encoder.values() if isinstance(cfg.model.encoder, dict) else [cfg.model.encoder]
        assert all(e in ENCODERS for e in encs), f
        assert cfg.model.fusion in FUSIONS, f
        assert cfg.optim.name in ("sgd", "adam", "adamw") and cfg.optim.scheduler in ("none", "step", "cosine"), f
        if cfg.data.name in PAPER_DATASETS:
            spec = PAPER_DATASETS[cfg.data.name]
            spec.options(cfg.data)  # every option is known to the dataset
            if isinstance(cfg.model.encoder, dict):
                assert set(cfg.model.encoder) == set(cfg.data.modalities or spec.modalities), f


@pytest.mark.slow
def test_protocol_config_runs_on_a_fixture_tree(cremad_prepared):
    """The full CREMA-D protocol (ResNet-18 on 257 x 188 spectrograms) for one epoch on the fixture."""
    cfg = Config.from_yaml(REPO / "configs" / "cremad-gewu.yaml").override([
        f"data.root={cremad_prepared}", "data.options.image_size=32", "data.options.val_size=6", "train.epochs=1",
        "train.batch_size=8", "log.tensorboard=false", "log.jsonl=false", "train.progress=false", "eval.probe=false"])
    assert Trainer(cfg).fit()["best_epoch"] == 0
