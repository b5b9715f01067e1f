"""Cost of D&R's diagnosis, and k-means backends on CREMA-D-sized features.

Part 1 (``--part loop``): on a real dataset through the real Trainer, time one training epoch and one
diagnosis (feature extraction of train + val, then 2*M k-means fits), each backend, and print the
ratio diagnosis / epoch measured in the same process.

Part 2 (``--part kmeans``): k-means on features the size of CREMA-D's training set (6,698 x 512 per
modality, 6 classes; D&R's release uses scikit-learn KMeans, n_init=10) with scikit-learn vs the torch
k-means on CPU and, when available, CUDA; prints the device names, times, ratios and purities.

Device-agnostic: ``--device auto`` picks CUDA when present. Run from the repo root:

    python benchmarks/bench_diagnose_relearn.py                      # both parts
    python benchmarks/bench_diagnose_relearn.py --part kmeans --device cuda
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timeit(fn, device, repeats: int, warmup: int = 1):
    for _ in range(warmup):
        fn()
    _sync(device)
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    cpu = platform.processor() or platform.machine()
    return f"cpu: {cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"


def cremad_like_features(n: int, d: int, k: int, seed: int = 0, separation: float = 0.15) -> tuple:
    """ReLU'd pooled-feature look-alikes: k overlapping class clusters in d dimensions."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    means = torch.randn(k, d, generator=g) * separation
    x = torch.relu(means[y] + torch.randn(n, d, generator=g))
    return x, y


def part_kmeans(args) -> None:
    from mmbalance.diagnostics.purity import kmeans, minmax_scale, purity, sklearn_kmeans_labels

    x, y = cremad_like_features(args.n, args.d, args.k)
    xs = minmax_scale(x)
    print(f"\n== k-means on {args.n} x {args.d} features, k={args.k}, n_init={args.n_init} "
          f"(CREMA-D training set size; one fit = one modality x one set)")
    cpu = torch.device("cpu")
    rows = []
    t_sk, ids = _timeit(lambda: sklearn_kmeans_labels(xs, args.k, n_init=args.n_init, seed=0), cpu, args.repeats)
    rows.append(("sklearn KMeans (CPU)", device_name(cpu), t_sk, purity(ids, y)))
    t_tc, res = _timeit(lambda: kmeans(xs, args.k, n_init=args.n_init, seed=0), cpu, args.repeats)
    rows.append(("torch kmeans (CPU)", device_name(cpu), t_tc, purity(res.labels, y)))
    dev = _device(args.device)
    if dev.type == "cuda":
        xg = xs.to(dev)
        t_gpu, res = _timeit(lambda: kmeans(xg, args.k, n_init=args.n_init, seed=0), dev, args.repeats, warmup=2)
        rows.append(("torch kmeans (CUDA)", device_name(dev), t_gpu, purity(res.labels, y)))
    else:
        print("(CUDA not available: no GPU row)")
    for name, where, t, p in rows:
        print(f"  {name:22s} {t * 1000:9.1f} ms   purity {p:.4f}   speed-up vs sklearn {t_sk / t:6.2f}x   [{where}]")
    print(f"  one D&R diagnosis with M=2 modalities = 4 fits (2 on train, 2 on the smaller val set), at most: "
          f"sklearn ~{4 * t_sk:.2f} s, fastest torch ~{4 * min(r[2] for r in rows[1:]):.2f} s")


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def part_loop(args) -> None:
    from mmbalance import Config, Trainer

    dev = _device(args.device)
    items = [f"data.name={args.dataset}", "method=diagnose-relearn", "log.tensorboard=false", "train.progress=false",
             "eval.probe=false", f"train.device={dev.type}", f"method_args.diagnose-relearn.n_init={args.n_init}"]
    if args.preset:
        items.append(f"data.preset={args.preset}")
    if args.modalities:
        items.append(f"data.modalities=[{args.modalities}]")
    if args.encoder:
        items.append(f"model.encoder={args.encoder}")
    trainer = Trainer(Config().override(items + list(args.overrides)))
    plugin = trainer.plugin("diagnose-relearn")
    plugin.on_fit_start(trainer)
    mods = plugin._modalities(trainer)
    n_tr, n_va = len(trainer.splits.train), len(trainer.splits.val)
    print(f"\n== diagnosis vs one training epoch: {args.dataset}{'/' + args.preset if args.preset else ''}, "
          f"modalities {mods}, encoder {trainer.cfg.model.encoder}, train {n_tr} / val {n_va}, "
          f"{trainer.num_classes} classes, n_init {args.n_init} [{device_name(dev)}]")
    epoch = [0]

    def one_epoch():
        trainer.train_epoch(epoch[0])
        epoch[0] += 1

    t_epoch, _ = _timeit(one_epoch, dev, args.repeats)
    t_extract, _ = _timeit(lambda: (trainer.extract_features("train"), trainer.extract_features("val")), dev,
                           args.repeats)
    print(f"  training epoch                      {t_epoch:8.3f} s")
    print(f"  feature extraction (train + val)    {t_extract:8.3f} s   = {t_extract / t_epoch:6.2f} x epoch")
    backends = ["sklearn", "torch"]
    for b in backends:
        plugin.kmeans_backend = b
        t_diag, (stats, _) = _timeit(lambda: plugin.diagnose(trainer), dev, args.repeats)
        gaps = ", ".join(f"{m} gap {s['gap']:.3f}" for m, s in stats.items())
        print(f"  diagnosis, {b:7s} k-means ({2 * len(mods)} fits) {t_diag:8.3f} s   = {t_diag / t_epoch:6.2f} x epoch"
              f"   (k-means part {t_diag - t_extract:7.3f} s; {gaps})")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=["loop", "kmeans", "all"], default="all")
    ap.add_argument("--device", default="auto", help="auto | cpu | cuda (part 1: training device; part 2: GPU row)")
    ap.add_argument("--repeats", type=int, default=3, help="median of this many timings")
    ap.add_argument("--n-init", type=int, default=10)
    ap.add_argument("--n", type=int, default=6698)
    ap.add_argument("--d", type=int, default=512)
    ap.add_argument("--k", type=int, default=6)
    ap.add_argument("--dataset", default="mfeat")
    ap.add_argument("--preset", default=None)
    ap.add_argument("--modalities", default="pix,fou,zer")
    ap.add_argument("--encoder", default=None)
    ap.add_argument("overrides", nargs="*", help="extra dotted config overrides for part 1")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}; CUDA available: {torch.cuda.is_available()}")
    if args.part in ("loop", "all"):
        part_loop(args)
    if args.part in ("kmeans", "all"):
        part_kmeans(args)


if __name__ == "__main__":
    main()
