"""The CREMA-D-shaped stand-in every speed benchmark trains on: written to disk as memory-mappable .npy (or as a
raw CREMA-D tree in the OGM-GE layout run through ``mmbalance prepare cremad``), loaded into an in-memory source
with batched GPU augmentation, and the overrides of the fast path (bf16, channels-last, resident data)."""
from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmbalance import Config  # noqa: E402
from mmbalance.data import MultimodalDataset, Splits  # noqa: E402
from mmbalance.data.augment import BatchImageAugment  # noqa: E402


def make_on_disk(root: Path, n: int, size: int, spec: tuple, classes: int = 6, seed: int = 0):
    """CREMA-D-shaped prepared dataset: frames.npy uint8 [N,2,3,S,S], audio.npy float16 [N,1,F,T], labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    rng.shuffle(labels)
    frames = np.lib.format.open_memmap(root / "frames.npy", "w+", np.uint8, (n, 2, 3, size, size))
    audio = np.lib.format.open_memmap(root / "audio.npy", "w+", np.float16, (n, 1) + spec)
    chunk = 256
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        frames[s:e] = rng.integers(0, 256, size=(e - s, 2, 3, size, size), dtype=np.uint8)
        audio[s:e] = (rng.standard_normal((e - s, 1) + spec) + labels[s:e, None, None, None] * 0.1).astype(np.float16)
    frames.flush(), audio.flush()
    np.save(root / "labels.npy", labels)


def make_cremad_tree(raw: Path, n: int, seed: int = 0, seconds: float = 3.0):
    """A CREMA-D-shaped raw tree in the OGM-GE layout (train.csv/test.csv rows ``clip,EMO``,
    ``AudioWAV/<clip>.wav`` at 22,050 Hz, ``Image-01-FPS/<clip>/0000k.jpg`` 340x256) for ``mmbalance prepare``.
    Clips are written by a thread pool (JPEG encoding releases the GIL); clip ``i`` draws from its own seeded
    generator, so the tree does not depend on the number of threads."""
    import wave
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from mmbalance.data.papers.cremad import CLASSES as emos

    sr = 22050
    names = [f"{1000 + i // 100}_B{i % 100:02d}_{emos[i % 6]}_XX" for i in range(n)]
    (raw / "AudioWAV").mkdir(parents=True, exist_ok=True)

    def clip(i):
        rng = np.random.default_rng([seed, i])
        d = raw / "Image-01-FPS" / names[i]
        d.mkdir(parents=True)
        for k in range(2):
            Image.fromarray(rng.integers(0, 256, (256, 340, 3), dtype=np.uint8)).save(d / f"{k + 1:05d}.jpg",
                                                                                      quality=90)
        x = (0.3 * rng.standard_normal(int(sr * seconds))).clip(-1, 1)
        with wave.open(str(raw / "AudioWAV" / f"{names[i]}.wav"), "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(sr)
            w.writeframes((x * 32767).astype("<i2").tobytes())

    with ThreadPoolExecutor(min(16, os.cpu_count() or 1)) as ex:
        list(ex.map(clip, range(n)))
    rows = {"train": [], "test": []}
    for i, name in enumerate(names):
        rows["test" if i % 10 == 9 else "train"].append(f"{name},{emos[i % 6]}\n")
    for split, r in rows.items():
        (raw / f"{split}.csv").write_text("".join(r))


def prepare_cremad(raw: Path, out: Path, workers: int = 1) -> None:
    """``mmbalance prepare cremad --raw RAW --out OUT`` (frames copied, OGM-GE spectrograms as .npy)."""
    from mmbalance.cli import main as cli

    rc = cli(["prepare", "cremad", "--raw", str(raw), "--out", str(out), "--no-progress", "--workers", str(workers)])
    if rc != 0:
        raise RuntimeError("mmbalance prepare cremad failed")


def cremad_splits(root: Path, n: int, size: int, workers: int) -> Splits:
    """(b) from the real on-disk layout: raw tree -> ``mmbalance prepare cremad`` -> the ``cremad`` loader
    with its memory-mapped uint8 frame cache (``data.options.cache=true``)."""
    from mmbalance.config import DataConfig
    from mmbalance.data import build_splits

    make_cremad_tree(root / "raw", n)
    t = time.perf_counter()
    prepare_cremad(root / "raw", root / "prep", workers)
    print(f"prepare cremad (frames + OGM-GE STFT, {workers} workers): {time.perf_counter() - t:.1f} s")
    return build_splits(DataConfig(name="cremad", root=str(root / "prep"),
                                   options={"cache": True, "frames": 2, "image_size": size,
                                            "val_size": 744 if n >= 6698 else 0.1}))


def load_splits(root: Path, size: int, n_eval: int) -> Splits:
    frames = torch.from_numpy(np.array(np.load(root / "frames.npy", mmap_mode="r")))
    audio = torch.from_numpy(np.array(np.load(root / "audio.npy", mmap_mode="r")))
    labels = torch.from_numpy(np.load(root / "labels.npy"))
    tf = {"visual": BatchImageAugment(size)}
    ds = MultimodalDataset({"audio": audio, "visual": frames}, labels, 6, name="cremad-shaped", check=False,
                           transforms=tf)
    ev = ds.subset(range(n_eval))
    return Splits(ds, ev, ev)


def base_cfg(args, dev) -> Config:
    return Config().override([
        "model.encoder=resnet18", "model.fusion=concat", f"train.batch_size={args.batch}", "train.drop_last=true",
        "optim.name=sgd", "optim.lr=0.002", f"train.device={dev.type}", "data.resident=true",
        f"train.precision={'bf16' if dev.type == 'cuda' else 'fp32'}",
        f"train.channels_last={str(dev.type == 'cuda').lower()}", "train.deterministic=false",
        "eval.probe=false", "log.tensorboard=false", "log.jsonl=false", "train.progress=false",
        f"train.epochs={args.epochs}", f"train.compile={'reduce-overhead' if args.compile else 'none'}",
    ])


def naive_reference(args, n_clips: int, size: int, spec: tuple):
    """Per-sample JPEG decode + PIL augmentation in DataLoader workers (the official loops' data path)."""
    from PIL import Image

    root = Path(tempfile.mkdtemp(prefix="mmb_naive_"))
    rng = np.random.default_rng(0)
    for i in range(n_clips):
        d = root / f"clip{i:05d}"
        d.mkdir()
        for f in range(2):
            frame = rng.integers(0, 256, (256, 340, 3), dtype=np.uint8)
            Image.fromarray(frame).save(d / f"frame_{f:05d}.jpg", quality=90)
        np.save(d / "audio.npy", rng.standard_normal((1,) + spec).astype(np.float32))

    class PILDataset(torch.utils.data.Dataset):
        def __len__(self):
            return n_clips

        def __getitem__(self, i):
            d = root / f"clip{i:05d}"
            frames = []
            for f in range(2):
                img = Image.open(d / f"frame_{f:05d}.jpg").convert("RGB")
                w, h = img.size
                s = rng.uniform(0.08, 1.0) * w * h
                cw, ch = int(min(w, (s ** 0.5))), int(min(h, (s ** 0.5)))
                x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
                img = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((size, size), Image.BILINEAR)
                if rng.random() < 0.5:
                    img = img.transpose(Image.FLIP_LEFT_RIGHT)
                t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
                frames.append((t - 0.45) / 0.225)
            return torch.stack(frames), torch.from_numpy(np.load(d / "audio.npy")), i % 6

    workers = min(16, os.cpu_count() or 1)
    dl = torch.utils.data.DataLoader(PILDataset(), batch_size=args.batch, num_workers=workers, shuffle=True)
    t = time.perf_counter()
    for _ in dl:
        pass
    dt = time.perf_counter() - t
    return dt * args.n / n_clips, workers
