#!/usr/bin/env python
"""Measure the unimodal and joint accuracies of the real-data tier (the table in docs/datasets-embedded.md).

For each dataset, on its fixed split (split seed 0, 70/15/15, the dataset's own preprocessing):
* logistic regression (scikit-learn, default C=1) per modality and on all modalities concatenated, fitted on
  the training split, test accuracy (deterministic: one number);
* the library's own MLP runs (default config: MLP encoders, concat fusion, SGD, 30 epochs, checkpoint selected
  on validation): ``unimodal`` per modality, ``joint`` and ``joint-aux``; test accuracy mean ± sample std over
  seeds.

Usage: python scripts/measure_real_tier.py [--datasets htad,emoji-9] [--seeds 0-4] [--epochs 30]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def logistic_regression(splits, modalities) -> float:
    from sklearn.linear_model import LogisticRegression

    def features(part):
        return np.concatenate([part.inputs[m].reshape(len(part.labels), -1).numpy() for m in modalities], 1)

    clf = LogisticRegression(max_iter=5000).fit(features(splits.train), splits.train.labels.numpy())
    return float(clf.score(features(splits.test), splits.test.labels.numpy()))


def mlp_runs(dataset: str, method: str, seeds, epochs: int, modality: str | None = None) -> list[float]:
    from mmbalance import Config, Trainer

    accs = []
    for seed in seeds:
        items = [f"data.name={dataset}", f"method={method}", f"train.seed={seed}", f"train.epochs={epochs}",
                 "log.tensorboard=false", "log.jsonl=false", "train.progress=false", "eval.probe=false"]
        if modality:
            items.append(f"method_args.unimodal.modality={modality}")
        accs.append(Trainer(Config().override(items)).fit()["test"]["acc"])
    return accs


def fmt(values: list[float]) -> str:
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values, ddof=1):.1f}" if len(values) > 1 \
        else f"{100 * values[0]:.1f}"


def main(argv=None) -> int:
    from mmbalance.config import Config
    from mmbalance.data import build_splits
    from mmbalance.report.compare import parse_seeds, set_threads

    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--datasets", default="htad,emoji-9")
    p.add_argument("--seeds", default="0-4")
    p.add_argument("--epochs", type=int, default=30)
    args = p.parse_args(argv)
    set_threads(1)
    seeds = parse_seeds(args.seeds)
    print("| dataset | classifier | modality A | modality B | both |")
    print("|---|---|---:|---:|---:|")
    for name in args.datasets.split(","):
        splits = build_splits(Config().override([f"data.name={name}"]).data)
        mods = list(splits.train.modalities)
        lr = [logistic_regression(splits, [m]) for m in mods] + [logistic_regression(splits, mods)]
        print(f"| {name} ({', '.join(mods)}) | logistic regression | " + " | ".join(fmt([a]) for a in lr) + " |")
        uni = [mlp_runs(name, "unimodal", seeds, args.epochs, m) for m in mods]
        joint = mlp_runs(name, "joint", seeds, args.epochs)
        aux = mlp_runs(name, "joint-aux", seeds, args.epochs)
        print(f"| {name} | MLP `unimodal` / `joint` | " + " | ".join(fmt(a) for a in uni + [joint]) + " |")
        print(f"| {name} | MLP `joint-aux` | | | {fmt(aux)} |", flush=True)
    print(f"\nseeds {seeds}, {args.epochs} epochs; MLP: test accuracy of the checkpoint selected on validation, "
          "mean ± sample std over seeds; logistic regression: one fit on the training split.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
