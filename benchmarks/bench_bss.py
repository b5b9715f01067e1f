"""Cost of BSS scoring: the extra forward pass vs statistics reused from the previous epoch.

All numbers come from one process on one device and are reported relative to a plain ``joint-aux``
epoch measured in the same run (BSS trains with the same fused + unimodal losses, so ``joint-aux`` is the
exact baseline):

  joint-aux            the reference epoch (train step only; evaluation excluded everywhere)
  bss-l  pass          re-scores every epoch with an extra eval-mode forward over the training set
  bss-l  prev-epoch    re-scores every epoch from per-sample statistics recorded in ``after_forward``
  bss-l  code-compat   the release: train-mode pass at the training batch size, linear weights
  bss-h                one pass before epoch 0 (amortised: shown for epoch 0 and for the others)

Per epoch we time ``epoch_start`` (the scoring and order construction) + ``train`` + ``epoch_end``;
epoch 0 is excluded from the steady state (its first scoring is always a pass, and it carries warm-up).

Datasets:
  cremad-shaped   (default on GPU) 6,698 clips x (2 frames 3x224x224 + 1x257x188 spectrogram), two
                  ResNet-18s, batch 64, bf16 — the same synthetic stand-in as benchmarks/run_benchmarks.py
  av-digits|mfeat|synthetic   the small built-in datasets with MLP encoders (default on CPU: av-digits)

    python benchmarks/bench_bss.py [--dataset cremad-shaped] [--epochs 4] [--n 6698] [--json out.json]

``--fidelity`` measures instead how close the previous-epoch statistics are to a fresh pass (rank
correlation per epoch, 3 seeds):

    python benchmarks/bench_bss.py --fidelity --dataset av-digits --epochs 30
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[0] / "src"))
sys.path.insert(0, str(HERE))

from mmbalance import Config, Trainer  # noqa: E402

VARIANTS = [
    ("joint-aux", "joint-aux", []),
    ("bss-l pass", "bss-l", []),
    ("bss-l prev-epoch", "bss-l", ["method_args.bss-l.score_source=previous_epoch"]),
    ("bss-l code-compat", "bss-l", ["method_args.bss-l.code_compat=true"]),
    ("bss-h", "bss-h", []),
]


def epoch_costs(history):
    """Per-epoch seconds of (scoring at epoch start, training, epoch end)."""
    return [(h["time"]["epoch_start"], h["time"]["train"], h["time"]["epoch_end"]) for h in history]


def run_variant(cfg: Config, splits, method: str, extra):
    tr = Trainer(cfg.override([f"method={method}", *extra]), splits=splits)
    tr.fit()
    costs = epoch_costs(tr.history)
    steady = costs[1:] if len(costs) > 1 else costs
    start = float(np.mean([c[0] for c in steady]))
    train = float(np.mean([c[1] for c in steady]))
    end = float(np.mean([c[2] for c in steady]))
    return {"epoch0_s": float(sum(costs[0])), "start_s": start, "train_s": train, "end_s": end,
            "epoch_s": start + train + end, "steps": tr.history[-1]["train"]["steps"]}


def cremad_setup(args, dev):
    from bench_data import base_cfg, load_splits, make_on_disk  # the shared CREMA-D-shaped stand-in

    size = args.size or (224 if dev.type == "cuda" else 32)
    spec = (257, 188) if dev.type == "cuda" else (64, 48)
    args.n = args.n or (6698 if dev.type == "cuda" else 256)
    root = Path(tempfile.mkdtemp(prefix="mmb_bss_bench_"))
    make_on_disk(root, args.n, size, spec)
    splits = load_splits(root, size, n_eval=min(512, args.n))
    ns = argparse.Namespace(batch=args.batch, epochs=args.epochs, compile=False)
    cfg = base_cfg(ns, dev)
    desc = f"cremad-shaped N={args.n}, frames 2x3x{size}x{size}, spectrogram 1x{spec[0]}x{spec[1]}, ResNet-18 x2"
    return cfg, splits, desc


def builtin_setup(args, dev):
    items = [f"data.name={args.dataset}", f"train.epochs={args.epochs}", f"train.batch_size={args.batch}",
             f"train.device={dev.type}", "eval.probe=false", "log.tensorboard=false", "log.jsonl=false",
             "train.progress=false"]
    if args.dataset == "av-digits":
        items.append("data.preset=hard")
    cfg = Config().override(items)
    from mmbalance.data import build_splits

    splits = build_splits(cfg.data)
    return cfg, splits, f"{args.dataset} (train {len(splits.train)}), MLP encoders"


def fidelity(args, dev, seeds=(0, 1, 2), report_epochs=(1, 2, 5, 10, 20)):
    """How well do previous-epoch statistics stand in for a fresh pass? At every epoch start of a
    ``bss-l score_source=previous_epoch`` run, a spy computes the pass scores (eval mode, same weights)
    and compares them with the scores BSS just built from the statistics: Spearman rank correlation,
    overlap of the top 10 % (the samples sampling favours most) and mean absolute difference."""
    from mmbalance import Plugin
    from mmbalance.methods import build_plugins
    from mmbalance.methods.bss import balance_scores, spearman

    class Spy(Plugin):
        name, priority = "spy", 100

        def __init__(self):
            self.rows = {}

        def on_epoch_start(self, t, epoch):
            r = t.collect("train")
            ref = balance_scores(r["logits"], r["y"], r["fused"])
            got = t.plugin("bss-l").last_scores
            k = max(1, len(ref) // 10)
            top = len(set(torch.topk(ref, k).indices.tolist()) & set(torch.topk(got, k).indices.tolist())) / k
            self.rows[epoch] = (spearman(ref, got), top, float((ref - got).abs().mean()))

    cfg, splits, desc = builtin_setup(args, dev)
    per_seed = []
    for seed in seeds:
        c = cfg.override(["method=bss-l", "method_args.bss-l.score_source=previous_epoch", f"train.seed={seed}"])
        spy = Spy()
        Trainer(c, splits=splits, plugins=build_plugins(c) + [spy]).fit()
        per_seed.append(spy.rows)
    print(f"fidelity of previous-epoch statistics vs a fresh pass: {desc}, {len(seeds)} seeds")
    out = {}
    for e in report_epochs:
        if all(e in r for r in per_seed):
            vals = np.mean([r[e] for r in per_seed], axis=0)
            out[e] = {"spearman": float(vals[0]), "top10_overlap": float(vals[1]), "mean_abs_diff": float(vals[2])}
            print(f"  epoch {e:3d}: Spearman {vals[0]:.3f}  top-10% overlap {vals[1]:.3f}  mean |Δs| {vals[2]:.3f}")
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default=None, help="cremad-shaped | av-digits | mfeat | synthetic")
    p.add_argument("--epochs", type=int, default=4, help="epochs per variant (epoch 0 is excluded)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n", type=int, default=None, help="cremad-shaped: training clips")
    p.add_argument("--size", type=int, default=None, help="cremad-shaped: frame size")
    p.add_argument("--variants", default=None, help="comma-separated labels to run (default: all)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--fidelity", action="store_true",
                   help="instead of timing: compare previous-epoch statistics with a fresh pass (built-in "
                        "datasets; use --epochs 30)")
    args = p.parse_args(argv)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if args.fidelity:
        args.dataset = args.dataset or "av-digits"
        res = fidelity(args, dev)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
        return res
    args.dataset = args.dataset or ("cremad-shaped" if dev.type == "cuda" else "av-digits")
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    setup = cremad_setup if args.dataset == "cremad-shaped" else builtin_setup
    cfg, splits, desc = setup(args, dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; torch {torch.__version__}; {desc}; batch {args.batch}; {args.epochs} epochs per variant")
    chosen = set(args.variants.split(",")) if args.variants else None
    res = {"device": name, "dataset": desc, "batch": args.batch, "epochs": args.epochs, "variants": {}}
    ref = None
    for label, method, extra in VARIANTS:
        if chosen and label not in chosen:
            continue
        t = time.perf_counter()
        r = run_variant(cfg, splits, method, extra)
        res["variants"][label] = r
        if label == "joint-aux":
            ref = r["epoch_s"]
        rel = f"x{r['epoch_s'] / ref:.3f}" if ref else "-"
        print(f"{label:20s} epoch {r['epoch_s']:.3f} s ({rel} joint-aux)  scoring {r['start_s']:.3f} s  "
              f"train {r['train_s']:.3f} s  epoch0 {r['epoch0_s']:.3f} s  steps {r['steps']}  "
              f"[{time.perf_counter() - t:.0f} s]", flush=True)
    if ref:
        for r in res["variants"].values():
            r["vs_joint_aux"] = r["epoch_s"] / ref
            r["scoring_vs_joint_aux_epoch"] = r["start_s"] / ref
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
