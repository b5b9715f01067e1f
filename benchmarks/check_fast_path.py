"""Fast path vs plain path on CREMA-D-shaped data: the same method must give the same accuracy within noise.

Issue #10, "Equivalent-results check": the fast data path must not change the method. This script builds a
small *learnable* raw CREMA-D tree in the OGM-GE layout (class-coloured JPEG frames, class-dependent tones
in the WAVs, with noise and a fraction of clips whose modality shows another class, so that no modality is
trivially perfect), runs ``mmbalance prepare cremad`` on it, and trains ``joint`` on the ``cremad`` loader
through both paths, for several seeds:

  plain  ``data.options.cache=false`` (per-sample JPEG decode + per-sample torch transforms in the
         DataLoader), ``data.resident=false``, fp32, ``train.channels_last=false``, ``train.compile=none``
  fast   ``data.options.cache=true`` (memory-mapped uint8 frame cache, batches assembled by indexing,
         batched augmentation on the device), ``data.resident=true``; on CUDA also ``train.precision=bf16``,
         ``train.channels_last=true``, ``train.deterministic=false`` and, with ``--compile``,
         ``train.compile=reduce-overhead``

Everything else is identical (split, model, optimizer, seeds: the same seed gives both paths the same model
initialisation and sample order). The checkpoint is selected on validation; its test accuracy is reported
per seed. The two paths draw augmentation randomness differently (global torch RNG per sample vs a seeded
generator per batch), so per-seed numbers differ; the claim is equality within noise:

  RULE  the paths agree when |mean_fast - mean_plain| <= max(2 * pooled_std, floor), where
        pooled_std = sqrt((s_plain^2 + s_fast^2) / 2), s = sample standard deviation (ddof=1) of the test
        accuracies over seeds, and floor = --floor (default 0.05, i.e. 5 accuracy points).

Seconds per training epoch (steady state: epoch 0 excluded when there are several) and per evaluation of
val + test are measured for both paths in the same run; "setup" is building the splits (for the fast path,
the one-off cache build).

    python benchmarks/check_fast_path.py [--seeds 0,1,2] [--epochs N] [--n CLIPS] [--compile] [--json out.json]

Defaults: CPU 240 clips, 32 px frames (raw 85 x 64), a small CNN for the frames and a small Transformer over
the spectrogram's time steps (a small CNN with global pooling cannot tell tone frequencies apart), Adam,
8 epochs; CUDA 1,200 clips, raw 340 x 256 frames fed at 112 px, two ResNet-18s, SGD, 8 epochs. On CPU use
``--threads 1`` when timing on a shared machine.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import wave
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mmbalance import Config, Trainer  # noqa: E402
from mmbalance.data import build_splits  # noqa: E402
from mmbalance.data.papers.cremad import CLASSES as EMOTIONS  # noqa: E402  (cremad class order, ids 0-5)
from bench_data import prepare_cremad  # noqa: E402  (one prepare call for both benchmarks)

#: class colours (RGB offsets around mid-grey) and tones (Hz, and the rate in Hz at which the tone pulses)
COLOURS = np.array([[1, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]], dtype=np.float64)
TONES_HZ = [350, 550, 870, 1370, 2150, 3400]
PULSE_HZ = [2.0, 3.0, 4.5, 6.5, 9.5, 14.0]
SAMPLE_RATE = 22050
VARIANTS = ("ok", "shuffled-cache", "shuffled-labels")


# ---------------------------------------------------------------------------------------------- data
def make_learnable_tree(raw: Path, n: int, frame_hw=(64, 86), frames_per_clip: int = 4, seconds: float = 1.0,
                        test_fraction: float = 0.25, confuse=(0.25, 0.35), seed: int = 0) -> Dict[str, int]:
    """A raw CREMA-D tree in the OGM-GE layout whose clips carry class signal.

    ``train.csv`` / ``test.csv`` (rows ``clip,EMO``), ``AudioWAV/<clip>.wav`` (22,050 Hz mono 16-bit) and
    ``Image-01-FPS/<clip>/0000k.jpg`` (``frame_hw`` = height, width). Class ``k``: frames tinted with
    ``COLOURS[k]`` over smooth noise; audio a ``TONES_HZ[k]`` tone pulsing at ``PULSE_HZ[k]`` in white noise.
    With probability ``confuse[0]`` (audio) / ``confuse[1]`` (visual) a clip's modality shows a different,
    random class instead, so each modality alone is capped near ``1 - confuse`` accuracy.
    Returns the number of clips per split.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = frame_hw
    labels = np.arange(n) % len(EMOTIONS)
    rng.shuffle(labels)
    is_test = np.zeros(n, dtype=bool)
    for k in range(len(EMOTIONS)):  # stratified test split
        idx = np.nonzero(labels == k)[0]
        is_test[idx[: int(round(len(idx) * test_fraction))]] = True
    rows: Dict[str, List[str]] = {"train": [], "test": []}
    (raw / "AudioWAV").mkdir(parents=True, exist_ok=True)
    t = np.arange(int(SAMPLE_RATE * seconds)) / SAMPLE_RATE

    def shown(k: int, p: float) -> int:  # the class a modality shows: the true one, or with prob. p another
        return int((k + rng.integers(1, len(EMOTIONS))) % len(EMOTIONS)) if rng.random() < p else k

    for i, k in enumerate(labels):
        name = f"{1001 + i // 100}_S{i % 100:02d}_{EMOTIONS[k]}_XX"
        rows["test" if is_test[i] else "train"].append(f"{name},{EMOTIONS[k]}\n")
        # frames: clip brightness + smooth coloured noise + the shown class's tint (strength varies per clip)
        kv = shown(k, confuse[1])
        tint = COLOURS[kv] * rng.uniform(15, 45)
        d = raw / "Image-01-FPS" / name
        d.mkdir(parents=True)
        base = 128 + rng.normal(0, 20)
        for f in range(frames_per_clip):
            coarse = rng.normal(0, 35, (max(2, h // 8), max(2, w // 8), 3)).astype(np.float32)
            smooth = np.stack([np.asarray(Image.fromarray(coarse[..., c]).resize((w, h), Image.BILINEAR))
                               for c in range(3)], -1)
            img = base + tint + smooth + rng.normal(0, 12, (h, w, 3))
            Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(d / f"{f + 1:05d}.jpg", quality=90)
        # audio: pulsing class tone in white noise
        ka = shown(k, confuse[0])
        gate = (np.sin(2 * np.pi * PULSE_HZ[ka] * t + rng.uniform(0, 2 * np.pi)) > 0).astype(np.float64)
        x = rng.uniform(0.04, 0.12) * gate * np.sin(2 * np.pi * TONES_HZ[ka] * t + rng.uniform(0, 2 * np.pi))
        x = (x + rng.normal(0, 0.15, t.shape)).clip(-1, 1)
        with wave.open(str(raw / "AudioWAV" / f"{name}.wav"), "wb") as wf:
            wf.setnchannels(1), wf.setsampwidth(2), wf.setframerate(SAMPLE_RATE)
            wf.writeframes((x * 32767).astype("<i2").tobytes())
    for split, r in rows.items():
        (raw / f"{split}.csv").write_text("".join(r))
    return {k: len(v) for k, v in rows.items()}


# ---------------------------------------------------------------------------------------------- settings
@dataclass
class CheckSettings:
    """What both paths share; ``device`` None picks CUDA when available."""

    epochs: int = 8
    batch: int = 16
    image_size: int = 32
    audio_frames: Optional[int] = 64  # time steps of the 257 x 188 spectrogram kept (None: all)
    cache_size: Optional[int] = None  # short side of cached frames (None: the loader's default, 256)
    encoders: Dict[str, str] = field(default_factory=lambda: {"audio": "transformer", "visual": "cnn"})
    encoder_args: Dict[str, dict] = field(default_factory=lambda: {"visual": {"width": 16}})
    optim: str = "adam"
    lr: float = 1e-3
    val_size: float = 0.2
    workers: int = 0  # DataLoader workers of the plain path (the fast path assembles batches by indexing)
    device: Optional[str] = None
    compile: bool = False


def device_of(s: CheckSettings) -> torch.device:
    return torch.device(s.device or ("cuda" if torch.cuda.is_available() else "cpu"))


def data_overrides(root: Path, s: CheckSettings, fast: bool) -> List[str]:
    opts = [f"data.options.image_size={s.image_size}", f"data.options.val_size={s.val_size}",
            f"data.options.cache={str(fast).lower()}"]
    if s.audio_frames:
        opts.append(f"data.options.audio_frames={s.audio_frames}")
    if s.cache_size:
        opts.append(f"data.options.cache_size={s.cache_size}")
    return ["data.name=cremad", f"data.root={root}", *opts]


def path_overrides(path: str, s: CheckSettings) -> List[str]:
    """The config of one path (see the module docstring)."""
    cuda = device_of(s).type == "cuda"
    if path == "plain":
        return ["data.resident=false", f"data.num_workers={s.workers}", "train.precision=fp32",
                "train.channels_last=false", "train.compile=none"]
    if path != "fast":
        raise ValueError(f"path must be plain or fast, got {path!r}")
    over = ["data.resident=true", "data.num_workers=0"]
    if cuda:
        over += ["train.precision=bf16", "train.channels_last=true", "train.deterministic=false",
                 f"train.compile={'reduce-overhead' if s.compile else 'none'}"]
    return over


def make_config(root: Path, path: str, seed: int, s: CheckSettings) -> Config:
    return Config().override([
        "method=joint", *data_overrides(root, s, path == "fast"), *path_overrides(path, s),
        f"model.encoder={json.dumps(s.encoders)}", f"model.encoder_args={json.dumps(s.encoder_args)}",
        "model.fusion=concat", f"optim.name={s.optim}", f"optim.lr={s.lr}", f"train.batch_size={s.batch}",
        f"train.epochs={s.epochs}", f"train.seed={seed}", f"train.device={device_of(s).type}",
        "eval.select_on=val", "eval.probe=false", "log.tensorboard=false", "log.jsonl=false",
        "train.progress=false",
    ])


def break_fast_path(splits, variant: str, seed: int = 0) -> None:
    """Deliberately wrong fast paths, to show that the check can fail.

    ``shuffled-cache``: the training split's cached rows are permuted against its labels (what an indexing
    bug in the cache would do); ``shuffled-labels``: the training labels are permuted."""
    if variant == "ok":
        return
    train = splits.train
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(len(train)))
    if variant == "shuffled-cache":
        train.arrays = {m: x[perm] for m, x in train.arrays.items()}
        train.counts = {m: c[perm] for m, c in train.counts.items()}
    elif variant == "shuffled-labels":
        train.labels = train.labels[perm]
    else:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


# ---------------------------------------------------------------------------------------------- running
def run_path(root: Path, path: str, seeds: Sequence[int], s: CheckSettings, variant: str = "ok") -> dict:
    """Train ``joint`` through one path for every seed; test accuracy of the best-on-val checkpoint each."""
    t = time.perf_counter()
    splits = build_splits(make_config(root, path, seeds[0], s).data)  # fast: builds the cache the first time
    setup_s = time.perf_counter() - t
    if path == "fast":
        break_fast_path(splits, variant)
    elif variant != "ok":
        raise ValueError("only the fast path can be broken")
    runs = []
    for seed in seeds:
        tr = Trainer(make_config(root, path, seed, s), splits=splits)
        t = time.perf_counter()
        summary = tr.fit()
        wall = time.perf_counter() - t
        hist = tr.history[1:] if len(tr.history) > 1 else tr.history
        runs.append({"seed": seed, "test_acc": summary["test"]["acc"], "val_acc": summary["val"]["acc"],
                     "best_epoch": summary["best_epoch"], "share_acc": summary["test"]["share_acc"],
                     "train_s_per_epoch": float(np.mean([h["time"]["train"] for h in hist])),
                     "eval_s_per_epoch": float(np.mean([h["time"]["eval"] for h in hist])), "wall_s": wall})
    accs = [r["test_acc"] for r in runs]
    return {"path": path, "variant": variant, "runs": runs, "mean": float(np.mean(accs)),
            "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0, "setup_s": setup_s,
            "train_s_per_epoch": float(np.mean([r["train_s_per_epoch"] for r in runs])),
            "eval_s_per_epoch": float(np.mean([r["eval_s_per_epoch"] for r in runs]))}


def compare(plain: Sequence[float], fast: Sequence[float], floor: float = 0.05) -> dict:
    """The rule of the module docstring: |mean difference| <= max(2 * pooled std, floor)."""
    sp = float(np.std(plain, ddof=1)) if len(plain) > 1 else 0.0
    sf = float(np.std(fast, ddof=1)) if len(fast) > 1 else 0.0
    pooled = math.sqrt((sp ** 2 + sf ** 2) / 2)
    diff = float(np.mean(fast) - np.mean(plain))
    tol = max(2 * pooled, floor)
    return {"diff": diff, "pooled_std": pooled, "tolerance": tol, "agree": abs(diff) <= tol,
            "rule": f"|mean_fast - mean_plain| <= max(2 * pooled_std, {floor})"}


def check(root: Path, seeds: Sequence[int], s: CheckSettings, floor: float = 0.05, fast_variant: str = "ok",
          plain: Optional[dict] = None) -> dict:
    """Both paths on the prepared ``cremad`` folder ``root``; returns per-path results and the comparison.

    ``fast_variant`` other than ``ok`` breaks the fast path on purpose (:func:`break_fast_path`); ``plain``
    reuses the plain path's results of an earlier call with the same ``root``, ``seeds`` and settings."""
    plain = plain if plain is not None else run_path(root, "plain", seeds, s)
    fast = run_path(root, "fast", seeds, s, fast_variant)
    verdict = compare([r["test_acc"] for r in plain["runs"]], [r["test_acc"] for r in fast["runs"]], floor)
    return {"plain": plain, "fast": fast, **verdict,
            "speedup_train": plain["train_s_per_epoch"] / max(fast["train_s_per_epoch"], 1e-12)}


def report(res: dict) -> str:
    lines = [f"{'path':6s} {'test acc per seed':32s} {'mean +- std':>15s} {'train s/ep':>10s} {'eval s/ep':>9s} "
             f"{'setup s':>7s}"]
    for p in ("plain", "fast"):
        r = res[p]
        per = " ".join(f"{x['test_acc']:.3f}" for x in r["runs"])
        lines.append(f"{p:6s} {per:32s} {r['mean']:7.3f} +- {r['std']:.3f} {r['train_s_per_epoch']:10.3f} "
                     f"{r['eval_s_per_epoch']:9.3f} {r['setup_s']:7.1f}")
    for p in ("plain", "fast"):  # each modality's share of the concat head (test, per seed)
        lines.append(f"{p:6s} share acc " + "; ".join(
            ", ".join(f"{m} {a:.2f}" for m, a in x["share_acc"].items()) for x in res[p]["runs"]))
    lines.append(f"difference of means (fast - plain): {res['diff']:+.3f}; pooled std {res['pooled_std']:.3f}; "
                 f"tolerance {res['tolerance']:.3f}  [{res['rule']}]")
    lines.append(f"training epoch: plain s / fast s = {res['speedup_train']:.2f}")
    lines.append("RESULT: " + ("AGREE (within noise)" if res["agree"] else "DIFFER (beyond noise)")
                 + (f" [fast path deliberately broken: {res['fast']['variant']}]" if res["fast"]["variant"] != "ok"
                    else ""))
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, help="clips in the raw tree (default 1200 on CUDA, 240 on CPU)")
    p.add_argument("--size", type=int, help="frame side fed to the model (default 112 on CUDA, 32 on CPU)")
    p.add_argument("--epochs", type=int, help="epochs per run (default 8 on CUDA and CPU)")
    p.add_argument("--batch", type=int, help="batch size (default 64 on CUDA, 16 on CPU)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated run seeds (default 0,1,2)")
    p.add_argument("--confuse", type=float, nargs=2, default=(0.25, 0.35), metavar=("AUDIO", "VISUAL"),
                   help="fraction of clips whose audio / frames show another class (default 0.25 0.35)")
    p.add_argument("--floor", type=float, default=0.05, help="absolute tolerance floor (accuracy, default 0.05)")
    p.add_argument("--encoder", help="one encoder for both modalities (default: resnet18 on CUDA; CPU: cnn "
                                     "frames + transformer spectrogram)")
    p.add_argument("--compile", action="store_true", help="fast path on CUDA with train.compile=reduce-overhead")
    p.add_argument("--workers", type=int, help="DataLoader workers of the plain path (default min(8, cores) on "
                                               "CUDA, 0 on CPU)")
    p.add_argument("--threads", type=int, help="torch.set_num_threads (use 1 on a shared CPU)")
    p.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    p.add_argument("--variant", choices=VARIANTS, default="ok", help="deliberately break the fast path (to "
                                                                     "see the check fail)")
    p.add_argument("--root", help="work folder, new or empty (default: a new temporary folder)")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = dev.type == "cuda"
    if cuda:
        s = CheckSettings(epochs=args.epochs or 8, batch=args.batch or 64, image_size=args.size or 112,
                          audio_frames=None, encoders={"audio": "resnet18", "visual": "resnet18"}, encoder_args={},
                          optim="sgd", lr=0.01, workers=args.workers if args.workers is not None else
                          min(8, os.cpu_count() or 1), device="cuda", compile=args.compile)
        n, frame_hw = args.n or 1200, (256, 340)  # CREMA-D's 340 x 256 frames; cache short side 256 (default)
    else:
        size = args.size or 32
        s = CheckSettings(epochs=args.epochs or 8, batch=args.batch or 16, image_size=size, device="cpu",
                          workers=args.workers or 0, cache_size=2 * size)
        n, frame_hw = args.n or 240, (2 * size, round(2 * size * 340 / 256))  # raw frames 2x the model input
    if args.encoder:
        s.encoders, s.encoder_args = {"audio": args.encoder, "visual": args.encoder}, {}
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    name = torch.cuda.get_device_name(dev) if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {n} clips, frames {frame_hw[1]}x{frame_hw[0]} -> "
          f"{s.image_size} px, seeds {seeds}, {s.epochs} epochs, batch {s.batch}, encoders {s.encoders}")
    work = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="mmb_fastpath_"))
    t = time.perf_counter()
    counts = make_learnable_tree(work / "raw", n, frame_hw, confuse=tuple(args.confuse))
    prepare_cremad(work / "raw", work / "prep", workers=min(8, os.cpu_count() or 1))
    print(f"raw tree {counts} + prepare cremad in {time.perf_counter() - t:.1f} s: {work}")
    res = check(work / "prep", seeds, s, args.floor, args.variant)
    print(report(res))
    res.update(device=name, torch=torch.__version__, n=n, settings=asdict(s), seeds=seeds, counts=counts)
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
