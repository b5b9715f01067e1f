#!/usr/bin/env python
"""Measure the accuracy bands of tests/test_real_data_regression.py (the CI real-data regression test).

For each dataset and method: train the test's exact config (see ``CONFIG`` in the test) for many seeds, and
print the mean and sample std of the single-run test accuracy, and the band that the test asserts on the
mean of its ``k`` seeds: ``mean ± 4 · std / √k``.

Usage: python scripts/measure_regression_bands.py [--seeds 0-19] [--k 3]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))


def main(argv=None) -> int:
    from mmbalance import Config, Trainer
    from mmbalance.report.compare import parse_seeds, set_threads
    from test_real_data_regression import CASES, CONFIG

    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--seeds", default="0-19")
    p.add_argument("--k", type=int, default=3, help="seeds per case in the test")
    args = p.parse_args(argv)
    set_threads(1)
    seeds = parse_seeds(args.seeds)
    for dataset, method in CASES:
        t0, accs = time.time(), []
        for seed in seeds:
            cfg = Config().override(CONFIG + [f"data.name={dataset}", f"method={method}", f"train.seed={seed}"])
            accs.append(Trainer(cfg).fit()["test"]["acc"])
        mean, sd = float(np.mean(accs)), float(np.std(accs, ddof=1))
        half = 4 * sd / math.sqrt(args.k)
        per_run = (time.time() - t0) / len(seeds)
        print(f'("{dataset}", "{method}"): ({mean - half:.4f}, {mean + half:.4f}),  # mean {mean:.4f}, sd {sd:.4f}, '
              f"min {min(accs):.4f}, max {max(accs):.4f}, {len(seeds)} seeds, {per_run:.2f} s/run", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
