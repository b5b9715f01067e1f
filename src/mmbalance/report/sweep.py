"""``mmbalance sweep``: a base-batch-size × learning-rate grid for one method, several seeds.

The DUS authors report that DUS is sensitive to the constant batch size N_B and to the learning rate
(spec §3.1); this runs that grid for any method. Each cell × seed is one ordinary run folder
``OUT/bs<B>_lr<LR>/seed<S>``; a run whose ``summary.json`` exists is skipped, so an interrupted sweep
continues where it stopped. A run that diverges (non-finite loss) is recorded as failed and shown as
such. Output: ``OUT/sweep.md`` (mean ± std of test accuracy per cell, the validation accuracy, the
per-modality head accuracies), ``OUT/sweep.json`` and ``OUT/sweep_heatmap.png``.

For DUS, ``train.batch_size`` is N_B (its ``base_batch`` defaults to it), so the grid varies N_B for
DUS and the ordinary batch size for a baseline alike; ``--batch-key`` sweeps another key instead.

Example::

    mmbalance sweep --method dus-h --dataset av-digits --preset hard --epochs 20 --seeds 0,1,2 \\
        --batch-sizes 16,32,64 --lrs 0.01,0.05,0.1 --out runs/sweep-dus-h log.tensorboard=false
"""
from __future__ import annotations

import json
import math
import pathlib
import statistics
from typing import Any, Dict, List, Optional


def _floats(text: str) -> List[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> List[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def add_arguments(p) -> None:
    from ..cli import add_run_arguments

    add_run_arguments(p)
    p.add_argument("--method", required=True, help="method name; stack with + (e.g. ogm-ge+dus-h)")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    p.add_argument("--batch-sizes", required=True, help="comma-separated base batch sizes N_B, e.g. 16,32,64")
    p.add_argument("--lrs", required=True, help="comma-separated learning rates, e.g. 0.01,0.05")
    p.add_argument("--batch-key", default="train.batch_size",
                   help="config key the batch sizes set (default train.batch_size, which is also DUS's N_B)")
    p.add_argument("--out", required=True, help="sweep folder (one run folder per cell and seed)")
    p.add_argument("--retry-failed", action="store_true", help="re-run cells recorded as diverged")
    p.add_argument("--dry-run", action="store_true", help="print the runs that would be started and exit")


def cell_dir(out: pathlib.Path, bs: int, lr: float, seed: int) -> pathlib.Path:
    return out / f"bs{bs}_lr{lr:g}" / f"seed{seed}"


def main(args) -> int:
    from ..cli import config_from_args

    out = pathlib.Path(args.out)
    seeds, sizes, lrs = _ints(args.seeds), _ints(args.batch_sizes), _floats(args.lrs)
    if not seeds or not sizes or not lrs:
        raise ValueError("sweep: --seeds, --batch-sizes and --lrs must each list at least one value")
    if any(b < 1 for b in sizes) or any(lr <= 0 for lr in lrs):
        raise ValueError(f"sweep: batch sizes must be >= 1 and learning rates > 0 (got {sizes}, {lrs})")
    plan = []
    for bs in sizes:
        for lr in lrs:
            for seed in seeds:
                d = cell_dir(out, bs, lr, seed)
                cfg = config_from_args(args, method=args.method, seed=seed, out=str(d))
                cfg = cfg.override([f"{args.batch_key}={bs}", f"optim.lr={lr}"])
                plan.append((bs, lr, seed, d, cfg))  # configs are built (and validated) before any run starts
    todo = [p for p in plan if not _done(p[3], args.retry_failed)]
    print(f"sweep {args.method}: {len(plan)} runs ({len(sizes)} batch sizes x {len(lrs)} lrs x {len(seeds)} seeds), "
          f"{len(plan) - len(todo)} already complete")
    if args.dry_run:
        for bs, lr, seed, d, _ in todo:
            print(f"  would run N_B={bs} lr={lr:g} seed={seed} -> {d}")
        return 0
    from ..engine import Trainer
    from ..engine.losses import NonFiniteLossError

    from ..threads import apply as apply_threads

    apply_threads(args)  # --threads comes with the run options (mmbalance.threads)

    for i, (bs, lr, seed, d, cfg) in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}] N_B={bs} lr={lr:g} seed={seed}", flush=True)
        (d / "failed.json").unlink(missing_ok=True)
        try:
            Trainer(cfg).fit(resume=True)
        except NonFiniteLossError as e:
            d.mkdir(parents=True, exist_ok=True)
            (d / "failed.json").write_text(json.dumps({"error": str(e)}))
            print(f"  diverged: {e}")
    table = aggregate(out, sizes, lrs, seeds)
    from ..engine.checkpoint import atomic_write_text

    atomic_write_text(out / "sweep.json", json.dumps(table, indent=2))
    md = to_markdown(table, args.method)
    atomic_write_text(out / "sweep.md", md)
    png = heatmap(table, out / "sweep_heatmap.png", args.method)
    print(md)
    print(f"wrote {out / 'sweep.md'}, {out / 'sweep.json'}" + (f", {png}" if png else ""))
    return 0


def _done(d: pathlib.Path, retry_failed: bool) -> bool:
    return (d / "summary.json").is_file() or ((d / "failed.json").is_file() and not retry_failed)


def _mean_std(v: List[float]):
    if not v:
        return None, None
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def aggregate(out: pathlib.Path, sizes, lrs, seeds) -> Dict[str, Any]:
    """Read every cell's summaries: ``{"batch_sizes", "lrs", "cells": [{bs, lr, n, failed, test_acc, ...}]}``."""
    cells = []
    for bs in sizes:
        for lr in lrs:
            test, val, heads, failed = [], [], {}, 0
            for seed in seeds:
                d = cell_dir(out, bs, lr, seed)
                if (d / "summary.json").is_file():
                    s = json.loads((d / "summary.json").read_text())
                    test.append(s["test"]["acc"])
                    val.append(s["val"]["acc"])
                    for m, a in s["test"]["modality_acc"].items():
                        heads.setdefault(m, []).append(a)
                elif (d / "failed.json").is_file():
                    failed += 1
            tm, ts = _mean_std(test)
            vm, vs = _mean_std(val)
            cells.append({"batch_size": bs, "lr": lr, "n": len(test), "failed": failed,
                          "test_acc_mean": tm, "test_acc_std": ts, "val_acc_mean": vm, "val_acc_std": vs,
                          "head_acc_mean": {m: statistics.fmean(v) for m, v in heads.items()}})
    return {"batch_sizes": list(sizes), "lrs": list(lrs), "seeds": list(seeds), "cells": cells}


def _cell(table, bs, lr) -> Optional[dict]:
    return next((c for c in table["cells"] if c["batch_size"] == bs and c["lr"] == lr), None)


def to_markdown(table: Dict[str, Any], method: str) -> str:
    lrs = table["lrs"]
    lines = [f"### {method}: test accuracy (mean ± std over seeds {table['seeds']}; checkpoint selected on val)", "",
             "| N_B \\ lr | " + " | ".join(f"{lr:g}" for lr in lrs) + " |",
             "|---|" + "---|" * len(lrs)]
    for bs in table["batch_sizes"]:
        row = []
        for lr in lrs:
            c = _cell(table, bs, lr)
            if c is None or c["n"] == 0:
                row.append("diverged" if c and c["failed"] else "–")
                continue
            txt = f"{100 * c['test_acc_mean']:.2f} ± {100 * c['test_acc_std']:.2f}"
            if c["n"] < len(table["seeds"]):
                txt += f" (n={c['n']}" + (f", {c['failed']} diverged" if c["failed"] else "") + ")"
            row.append(txt)
        lines.append(f"| {bs} | " + " | ".join(row) + " |")
    lines += ["", "Validation accuracy and mean per-modality head test accuracy per cell:", "",
              "| N_B | lr | val acc | head acc |", "|---|---|---|---|"]
    for c in table["cells"]:
        if c["n"]:
            heads = ", ".join(f"{m} {100 * a:.1f}" for m, a in c["head_acc_mean"].items())
            lines.append(f"| {c['batch_size']} | {c['lr']:g} | {100 * c['val_acc_mean']:.2f} ± "
                         f"{100 * c['val_acc_std']:.2f} | {heads} |")
    best = max((c for c in table["cells"] if c["n"]), key=lambda c: c["val_acc_mean"], default=None)
    if best is not None:
        lines += ["", f"Best cell on validation: N_B={best['batch_size']}, lr={best['lr']:g} "
                      f"(test {100 * best['test_acc_mean']:.2f} ± {100 * best['test_acc_std']:.2f})."]
    return "\n".join(lines) + "\n"


def heatmap(table: Dict[str, Any], path: pathlib.Path, method: str) -> Optional[pathlib.Path]:
    import numpy as np
    from matplotlib.figure import Figure  # no pyplot state: safe headless and in threads

    sizes, lrs = table["batch_sizes"], table["lrs"]
    grid = np.full((len(sizes), len(lrs)), np.nan)
    for i, bs in enumerate(sizes):
        for j, lr in enumerate(lrs):
            c = _cell(table, bs, lr)
            if c and c["n"]:
                grid[i, j] = 100 * c["test_acc_mean"]
    if np.isnan(grid).all():
        return None
    fig = Figure(figsize=(1.6 + 1.3 * len(lrs), 1.4 + 0.8 * len(sizes)))
    ax = fig.add_subplot(111)
    im = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i in range(len(sizes)):
        for j in range(len(lrs)):
            c = _cell(table, sizes[i], lrs[j])
            txt = "–" if math.isnan(grid[i, j]) else f"{grid[i, j]:.1f}\n±{100 * c['test_acc_std']:.1f}"
            if math.isnan(grid[i, j]) and c and c["failed"]:
                txt = "diverged"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="w" if not math.isnan(grid[i, j]) and grid[i, j] < np.nanmean(grid) else "k")
    ax.set_xticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
    ax.set_yticks(range(len(sizes)), [str(b) for b in sizes])
    ax.set_xlabel("learning rate")
    ax.set_ylabel("base batch size N_B")
    ax.set_title(f"{method}: test acc % (mean over {len(table['seeds'])} seeds)", fontsize=9)
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
