"""DUS per-step overhead relative to plain ``joint-aux`` training, measured in the same process.

Runs ``joint-aux``, ``joint-aux+dus-h`` (decisions every step and every ``--update-every`` steps),
``dus-h`` and ``dus-rl`` on the same data, model and seed, and reports the median training time per
step (epoch training time / steps, evaluation excluded, first epoch dropped as warm-up), and the time
spent inside the DUS hooks themselves. With budget preservation every variant takes the same number
of steps and processes the same number of modality-samples per epoch, so the step times compare
like for like; DUS steps differ only by the scoring, the host read-back of the scores at each decision
(a GPU sync) and the size decision (plus the policy on the CPU for DUS-RL).

Device-agnostic::

    python benchmarks/bench_dus.py                           # CPU, synthetic
    python benchmarks/bench_dus.py --device cuda --dataset synthetic --dim 2048 --batch-size 256
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch


def _timed_hooks(plugin, acc):
    """Wrap the DUS hooks to accumulate their wall time (synchronising CUDA around them)."""
    for name in ("after_forward", "after_step"):
        fn = getattr(plugin, name)

        def wrapped(*a, _fn=fn, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            r = _fn(*a, **k)
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            acc[0] += time.perf_counter() - t0
            return r

        setattr(plugin, name, wrapped)


def run(method, args, extra=(), time_hooks=False):
    from mmbalance import Config, Trainer
    from mmbalance.methods import build_plugins

    items = [f"data.name={args.dataset}", f"method={method}", f"train.epochs={args.epochs}",
             f"train.batch_size={args.batch_size}", f"train.device={args.device}", "log.tensorboard=false",
             "log.jsonl=false", "train.progress=false", "eval.probe=false", f"train.seed={args.seed}"]
    if args.dataset == "synthetic":
        items += [f"data.options.n={args.n}", f"data.options.dim={args.dim}"]
    if args.preset:
        items.append(f"data.preset={args.preset}")
    cfg = Config().override(items + list(extra))
    plugins = build_plugins(cfg)
    acc = [0.0]
    if time_hooks:
        for p in plugins:
            if p.name.startswith("dus"):
                _timed_hooks(p, acc)
    tr = Trainer(cfg, plugins=plugins)
    tr.fit()
    per_step = [h["train"]["time_s"] / h["train"]["steps"] for h in tr.history[1:]] or \
               [h["train"]["time_s"] / h["train"]["steps"] for h in tr.history]
    steps = sum(h["train"]["steps"] for h in tr.history)
    return statistics.median(per_step), steps, acc[0] / max(steps, 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="synthetic")
    p.add_argument("--preset")
    p.add_argument("--device", default="cpu")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n", type=int, default=4000, help="synthetic: number of samples")
    p.add_argument("--dim", type=int, default=256, help="synthetic: input dimension per modality")
    p.add_argument("--update-every", type=int, default=10)
    p.add_argument("--repeats", type=int, default=2, help="alternate the variants this many times; median")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1: least noisy on a shared machine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    run("joint-aux", args)  # warm-up: allocator, kernels, data in the page cache

    K = args.update_every
    variants = [
        ("joint-aux", "joint-aux", ()),
        ("joint-aux+dus-h", "joint-aux+dus-h", ()),
        (f"joint-aux+dus-h (update_every={K})", "joint-aux+dus-h", (f"method_args.dus-h.update_every={K}",)),
        ("dus-h", "dus-h", ()),
        ("dus-rl", "dus-rl", ()),
        (f"dus-rl (update_every={K})", "dus-rl", (f"method_args.dus-rl.update_every={K}",)),
    ]
    times = {name: [] for name, _, _ in variants}
    hook = {name: [] for name, _, _ in variants}
    steps = {}
    for r in range(args.repeats):  # interleave variants so machine-load drift hits all of them alike
        for name, method, extra in variants:
            t, n, h = run(method, args, extra, time_hooks=False)
            times[name].append(t)
            steps[name] = n
            if r == 0 and name != "joint-aux":
                hook[name].append(run(method, args, extra, time_hooks=True)[2])
    base = statistics.median(times["joint-aux"])
    dev = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    print(f"device: {dev}; dataset {args.dataset}"
          + (f" (n={args.n}, dim={args.dim})" if args.dataset == "synthetic" else "")
          + f"; batch {args.batch_size}; {args.epochs} epochs x {args.repeats} repeats; torch {torch.__version__}")
    print()
    print("| variant | steps | ms/step (median) | overhead vs joint-aux | DUS hooks ms/step |")
    print("|---|---|---|---|---|")
    for name, _, _ in variants:
        t = statistics.median(times[name])
        hk = f"{1000 * hook[name][0]:.3f}" if hook[name] else "–"
        print(f"| {name} | {steps[name]} | {1000 * t:.3f} | {100 * (t / base - 1):+.1f}% | {hk} |")


if __name__ == "__main__":
    main()
