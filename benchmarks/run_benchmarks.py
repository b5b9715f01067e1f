"""Speed benchmark: the compute floor, `joint` through the full mmbalance pipeline, and each seed plug-in.

One run on whatever device it finds; every number is a ratio measured in that same run.

  (a) floor      model forward + backward + SGD step on tensors already on the device (same precision,
                 same model, same batch size): the best any data pipeline can do
  (b) joint      `joint` through the Trainer, from a CREMA-D-shaped dataset prepared on disk
                 (uint8 frames + float16 spectrograms as .npy, memory-mapped, made resident on the device,
                 augmented in batches on the device)
  (c) plug-ins   diagnose-relearn (diagnosis cost amortised over H=20 epochs; also diagnosis without
                 re-initialisation), bss-l (and its previous_epoch statistics), dus-h (and in size steps of 8)
  (b again)      joint once more after (c): the drift of the device over the run
  (ref) naive    a per-sample PIL decode + augment DataLoader over JPEG frames, as the official loops do

CREMA-D shape: 6,698 clips x (2 frames 3x224x224 + a 1x257x188 log-spectrogram), 6 classes, two
ResNet-18s from scratch, concat fusion, SGD, batch 64. On CPU the same benchmark runs with small sizes.

    python benchmarks/run_benchmarks.py [--n 6698] [--epochs 3] [--compile] [--layout npy|cremad] [--json out.json]

With ``--compile`` the model is ``torch.compile(mode="reduce-overhead")``-d (CUDA graphs on a GPU) in (a),
(b) and (c), the eager floor is measured as well, and every line names the graphs compiled for it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from mmbalance import Config, Trainer  # noqa: E402
from mmbalance.data import MultimodalDataset, Splits  # noqa: E402
from mmbalance.data.augment import BatchImageAugment  # noqa: E402
from mmbalance.models import build_model  # noqa: E402
from mmbalance.registry import METHODS  # noqa: E402


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


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


def compiled_graphs() -> int:
    """Graphs torch.compile has produced so far in this process (0 when dynamo is not loaded)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


def fresh_compile(on: bool) -> None:
    """Forget every compiled graph, so that a measurement pays for (and counts) its own compilation rather
    than reusing the shapes an earlier one made dynamic (dynamo shares graphs across identical models)."""
    if on:
        import torch._dynamo

        torch._dynamo.reset()


def floor(args, dev, shapes, compile_mode=None):
    """(a) fwd + bwd + step on resident, already-augmented tensors: the compute floor."""
    cfg = base_cfg(args, dev)
    torch.manual_seed(0)
    model = build_model(cfg.model, shapes, 6).to(dev)
    if dev.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    fresh_compile(bool(compile_mode))
    call = torch.compile(model, mode=compile_mode) if compile_mode else model
    opt = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9, weight_decay=1e-4)
    b = args.batch
    batches = [{"audio": torch.randn(b, *shapes["audio"], device=dev),
                "visual": torch.randn(b, *shapes["visual"], device=dev)} for _ in range(4)]
    y = torch.randint(0, 6, (b,), device=dev)
    steps = args.n // b
    ac = torch.autocast(dev.type, dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)

    def run(k):
        for i in range(k):
            with ac:
                out = call(batches[i % 4])
                loss = torch.nn.functional.cross_entropy(out.fused.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(min(steps, 10))  # warm-up (cuDNN autotune, compilation)
    sync(dev)
    t = time.perf_counter()
    epochs = max(1, args.epochs - 1)
    for _ in range(epochs):
        run(steps)
    sync(dev)
    return (time.perf_counter() - t) / epochs


def pipeline(args, dev, splits, method, extra=()):
    """(b)/(c): a method through the Trainer. Steady state (epoch 0 excluded): ``s_per_epoch`` = epoch start +
    training + epoch end (a plug-in's epoch-end work included, evaluation excluded), ``train_s`` = epoch start +
    training (a plug-in's epoch-start pass included, its epoch-end work not); ``epochs`` lists every epoch's phases; ``graphs`` = graphs torch.compile produced for this run."""
    cfg = base_cfg(args, dev).override([f"method={method}", *extra])
    fresh_compile(args.compile)
    g0 = compiled_graphs()
    tr = Trainer(cfg, splits=splits)
    tr.fit()
    steady = tr.history[1:] or tr.history
    per_epoch = [h["time"]["epoch_start"] + h["time"]["train"] + h["time"]["epoch_end"] for h in steady]
    return {"s_per_epoch": float(np.mean(per_epoch)),
            "train_s": float(np.mean([h["time"]["train"] + h["time"]["epoch_start"] for h in steady])),
            "epoch_end_s": float(np.mean([h["time"]["epoch_end"] for h in steady])),
            "epochs": [{k: round(v, 4) for k, v in h["time"].items()} for h in tr.history],
            "plugins_last_epoch": {k: v for k, v in tr.history[-1]["plugins"].items() if isinstance(v, (int, float))},
            "diagnosis_epochs": [h["epoch"] for h in tr.history if "diagnose-relearn/diagnose_time_s" in h["plugins"]],
            "graphs": compiled_graphs() - g0}


def d_and_r_amortised(entry: dict, joint: dict, h: int = 20):
    """D&R's cost over the default schedule (one diagnosis per ``h`` epochs), as a ratio to joint's epoch.

    Steady-state epochs (epoch 0 excluded) are split into training epochs that follow a diagnosis and the
    others. With both kinds measured (at least two of the others): ``((h-1)·other + after + diagnosis) / h /
    joint``; when (nearly) every epoch follows a diagnosis, the mean training epoch stands in for both (an upper
    bound if following a diagnosis slows training)."""
    epochs = entry["epochs"][1:]
    diag_epochs = set(entry["diagnosis_epochs"])
    diag = float(np.mean([e["epoch_end"] for k, e in enumerate(entry["epochs"]) if k in diag_epochs] or [0.0]))
    train = {k: e["epoch_start"] + e["train"] for k, e in enumerate(entry["epochs"]) if k > 0}
    after = [t for k, t in train.items() if k - 1 in diag_epochs]
    other = [t for k, t in train.items() if k - 1 not in diag_epochs]
    j = joint["train_s"]
    if after and len(other) >= 2:
        a, o = float(np.mean(after)), float(np.mean(other))
        return ((h - 1) * o + a + diag) / h / joint["s_per_epoch"], diag, {"after_vs_joint": a / j,
                                                                           "other_vs_joint": o / j}
    t = float(np.mean(after or other or [e["train"] for e in epochs]))
    return ((h - 1) * t + t + diag) / h / joint["s_per_epoch"], diag, {}


# (c) variants: name -> (method, extra overrides)
D_AND_R_EVERY_EPOCH = ["method_args.diagnose-relearn.reinit_every=1", "method_args.diagnose-relearn.max_reinit=100"]
VARIANTS = {
    "diagnose-relearn": ("diagnose-relearn", D_AND_R_EVERY_EPOCH),
    # the same diagnosis every epoch but no re-initialisation: separates the cost of the feature extraction
    # and k-means from any effect of the weight change on the following training epoch
    "diagnose-relearn[monitor]": ("diagnose-relearn", ["method_args.diagnose-relearn.monitor_every=1",
                                                       "method_args.diagnose-relearn.max_reinit=0"]),
    # the diagnosis every second epoch: training epochs right after a diagnosis vs the others, so that the
    # amortised cost over H = 20 uses the epochs that do not follow one for 19 of every 20
    "diagnose-relearn[H2]": ("diagnose-relearn", ["method_args.diagnose-relearn.reinit_every=2",
                                                  "method_args.diagnose-relearn.max_reinit=100"]),
    "bss-l": ("bss-l", []),
    "bss-l[previous_epoch]": ("bss-l", ["method_args.bss-l.score_source=previous_epoch"]),
    "dus-h": ("dus-h", []),
    # sizes in steps of 8: a bounded set of batch shapes for a compiled model (CUDA graphs per shape)
    "dus-h[q8]": ("dus-h", ["method_args.dus-h.size_multiple=8"]),
}
def naive_reference(args, n_clips: int, size: int, spec: tuple):
    """Per-sample JPEG decode + PIL augmentation in DataLoader workers (the official loops' data path)."""
    from PIL import Image

    root = Path(tempfile.mkdtemp(prefix="mmb_naive_"))
    rng = np.random.default_rng(0)
    for i in range(n_clips):
        d = root / f"clip{i:05d}"
        d.mkdir()
        for f in range(2):
            Image.fromarray(rng.integers(0, 256, (256, 340, 3), dtype=np.uint8)).save(d / f"frame_{f:05d}.jpg", quality=90)
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, help="training clips (default 6698 on GPU, 256 on CPU)")
    p.add_argument("--size", type=int, help="frame size (224 on GPU, 32 on CPU)")
    p.add_argument("--spec", type=int, nargs=2, help="spectrogram F T (257 188 on GPU, 64 48 on CPU)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per measurement (the first is warm-up)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--compile", action="store_true", help="torch.compile(mode='reduce-overhead') everywhere")
    p.add_argument("--methods", default="diagnose-relearn,diagnose-relearn[monitor],diagnose-relearn[H2],bss-l,dus-h",
                   help=f"comma-separated (c) variants, from: {', '.join(VARIANTS)}")
    p.add_argument("--naive-clips", type=int, default=None, help="clips for the naive PIL reference (0: skip)")
    p.add_argument("--layout", choices=["npy", "cremad"], default="npy",
                   help="npy: frames/spectrograms written as .npy memmaps; cremad: a raw CREMA-D tree in the OGM-GE "
                        "layout, run through `mmbalance prepare cremad` and the cremad loader's frame cache")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = dev.type == "cuda"
    args.n = args.n or (6698 if gpu else 256)
    size = args.size or (224 if gpu else 32)
    spec = tuple(args.spec) if args.spec else ((257, 188) if gpu else (64, 48))
    if gpu:
        torch.backends.cudnn.benchmark = True
    name = torch.cuda.get_device_name(dev) if gpu else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; N={args.n} clips, frames 2x3x{size}x{size}, "
          f"spectrogram 1x{spec[0]}x{spec[1]}, batch {args.batch}, compile={args.compile}")
    root = Path(tempfile.mkdtemp(prefix="mmb_bench_"))
    t = time.perf_counter()
    if args.layout == "cremad":
        splits = cremad_splits(root, args.n, size, workers=min(16, os.cpu_count() or 1))
        spec = tuple(splits.train.input_shape("audio")[-2:])
        shapes = {m: tuple(splits.train.input_shape(m)) for m in splits.train.modalities}
        print(f"cremad layout in {time.perf_counter() - t:.1f} s: {root}; input shapes {shapes}")
    else:
        make_on_disk(root, args.n, size, spec)
        print(f"prepared on disk in {time.perf_counter() - t:.1f} s: {root}")
        splits = load_splits(root, size, n_eval=min(512, args.n))
        shapes = {"audio": (1,) + spec, "visual": (2, 3, size, size)}
    mode = "reduce-overhead" if args.compile else None
    n_clips, args.n = args.n, len(splits.train)  # the floor runs as many steps as a training epoch
    if args.n != n_clips:
        print(f"training split: {args.n} of the {n_clips} clips (the rest are val/test); the floor uses {args.n}")
    res = {"device": name, "torch": torch.__version__, "n": args.n, "size": size, "batch": args.batch,
           "compile": args.compile}
    if args.compile:  # the eager floor too, for reference (the target is against the compiled one)
        res["floor_eager_s"] = floor(args, dev, shapes)
        print(f"(a) compute floor, eager       {res['floor_eager_s']:.3f} s/epoch  "
              f"{args.n / res['floor_eager_s']:.0f} samples/s")
    g0 = compiled_graphs()
    res["floor_s"] = floor(args, dev, shapes, mode)
    res["floor_graphs"] = compiled_graphs() - g0
    print(f"(a) compute floor{' (compiled)' if mode else ''}{'' if mode else '           '}   "
          f"{res['floor_s']:.3f} s/epoch  {args.n / res['floor_s']:.0f} samples/s")
    joint = pipeline(args, dev, splits, "joint")
    res["joint_s"], res["joint"] = joint["s_per_epoch"], joint
    print(f"(b) joint, full pipeline       {res['joint_s']:.3f} s/epoch  x{res['joint_s'] / res['floor_s']:.2f} floor"
          + (f"  ({joint['graphs']} compiled graphs)" if mode else ""))
    res["methods"] = {}
    for v in [v for v in args.methods.split(",") if v]:
        if v not in VARIANTS or VARIANTS[v][0] not in METHODS:
            print(f"(c) {v}: unknown (choose from {', '.join(VARIANTS)}), skipped")
            continue
        method, extra = VARIANTS[v]
        entry = pipeline(args, dev, splits, method, extra)
        sec = entry["s_per_epoch"]
        entry.update(vs_joint=sec / res["joint_s"], vs_floor=sec / res["floor_s"],
                     train_vs_joint=entry["train_s"] / joint["train_s"])
        graphs = f"  ({entry['graphs']} compiled graphs)" if mode else ""
        if v.startswith("diagnose-relearn"):  # the default diagnoses once per H = 20 epochs
            amort, diag, split = d_and_r_amortised(entry, joint)
            entry.update(diagnosis_s=diag, amortised_vs_joint_H20=amort, **split)
            after = (f"; training right after a diagnosis x{split['after_vs_joint']:.3f}, other epochs "
                     f"x{split['other_vs_joint']:.3f} joint") if split else f"; training x{entry['train_vs_joint']:.3f} joint"
            print(f"(c) {v:26s} diagnosis {diag:.3f} s = {diag / res['joint_s']:.2f} joint epochs{after}; "
                  f"amortised over H=20: x{amort:.3f} joint{graphs}")
        else:
            print(f"(c) {v:26s} {sec:.3f} s/epoch  x{entry['vs_joint']:.3f} joint  x{entry['vs_floor']:.2f} floor{graphs}")
        res["methods"][v] = entry
    if res["methods"]:  # joint again at the end: how much the device drifted (clocks, heat) during the run
        again = pipeline(args, dev, splits, "joint")
        res["joint_again_s"] = again["s_per_epoch"]
        print(f"(b) joint again, after (c)     {again['s_per_epoch']:.3f} s/epoch  "
              f"x{again['s_per_epoch'] / res['joint_s']:.3f} of the first joint measurement (drift)")
    naive = args.naive_clips if args.naive_clips is not None else (1024 if gpu else 64)
    if naive:
        sec, workers = naive_reference(args, naive, size, spec)
        res["naive_data_only_s"] = sec
        print(f"(ref) naive per-sample PIL loader, data only ({workers} workers), extrapolated: {sec:.2f} s/epoch "
              f"= x{sec / res['floor_s']:.2f} floor")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
