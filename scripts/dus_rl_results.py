#!/usr/bin/env python
"""DUS-RL's learning-signal study (issue 23): the grids of every design tried, and the tables of
docs/results/dus.md that measure each design's reward signal and what its policy did.

    python scripts/dus_rl_results.py --commands      # the exact `mmbalance compare` command of every grid
    python scripts/dus_rl_results.py --run           # run the unfinished grids one at a time, then build
    python scripts/dus_rl_results.py                 # rebuild the tables between the dus-rl markers

Every design spells out all of its DUS-RL options, so the grids keep their meaning when the defaults
change. Tables are recomputed from the run folders (summary.json, metrics.jsonl); building refuses while
a grid is unfinished.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmbalance.report import aggregate as A  # noqa: E402
from mmbalance.report import grids as G  # noqa: E402

A_ = "method_args.dus-rl."
SPEC = {"reward": "spread", "update_every": 1, "rl_gamma": 0.9, "advantage": "episode", "policy_lr": 0.001,
        "policy_update_every": 10, "entropy_final": "null"}
SIGNAL = {"reward": "weakest_gain", "update_every": 5, "rl_gamma": 0, "advantage": "running", "policy_lr": 0.01,
          "policy_update_every": 5, "entropy_final": 0}
FROZEN = {**SPEC, "policy_lr": "1.0e-9"}  # a uniform random policy: the allocation's causal effect

#: (key, label, options, datasets)
DESIGNS = [
    ("random-w1", "random allocation, 1-step windows (spec reward)", {**FROZEN}, ("avd",)),
    ("random-w5", "random allocation, 5-step windows", {**FROZEN, "update_every": 5}, ("avd", "htad")),
    ("random-w20", "random allocation, 20-step windows", {**FROZEN, "update_every": 20}, ("avd",)),
    ("spec", "spec §3.3: spread reward, 1-step windows, lr 1e-3, K = 10", SPEC, ("avd", "htad")),
    ("weakest", "**weakest_gain** (probe-loss gain of the weaker modality), 5-step windows, running "
                "advantage, lr 1e-2, K = 5 — *the default*", SIGNAL, ("avd", "htad")),
    ("fused", "fused_gain (fused probe-loss gain)", {**SIGNAL, "reward": "fused_gain"}, ("avd", "htad")),
    ("own", "own_gain, factorised advantage (one reward per modality)", {**SIGNAL, "reward": "own_gain"},
     ("avd", "htad")),
    ("weaker-by-s-hat", "weakest_gain, weaker = lowest ŝ", {**SIGNAL, "weaker_by": "s_hat"}, ("avd",)),
    ("k1", "weakest_gain, an update every window (K = 1)", {**SIGNAL, "policy_update_every": 1}, ("avd", "htad")),
    ("w10", "weakest_gain, 10-step windows", {**SIGNAL, "update_every": 10}, ("avd",)),
    ("train-probe", "weakest_gain, probe on 1024 training samples", {**SIGNAL, "probe_split": "train",
                                                                     "probe_size": 1024}, ("avd",)),
    ("slope-state", "weakest_gain, + loss slopes in the state",
     {**SIGNAL, "state": "[s_hat,rho,sizes,progress,loss_slope]"}, ("avd",)),
    ("entropy", "weakest_gain, entropy bonus 0.05 → 0", {**SIGNAL, "entropy_coef": 0.05}, ("avd",)),
    ("warm-start", "weakest_gain, warm start: DUS-H cloned (label smoothing 0.5)",
     {**SIGNAL, "warm_start": "imitate"}, ("avd", "htad")),
    ("warm-start-sharp", "weakest_gain, warm start: DUS-H cloned without smoothing",
     {**SIGNAL, "warm_start": "imitate", "imitation_smoothing": 0}, ("avd",)),
]
DATASETS = {"avd": ("av-digits", "hard", "av-digits / hard"), "htad": ("htad", None, "HTAD (real data)")}
SEEDS, EPOCHS = "0-9", 20
SIGNAL_KEYS = ["corr_reward", "corr_own_gain", "corr_weakest_gain", "corr_fused_gain", "corr_ds_hat",
               "corr_train_gain"]


def grids() -> List[G.Grid]:
    out = []
    for ds, (name, preset, title) in DATASETS.items():
        out.append(G.Grid(name=f"{ds}/reference", title=f"{title}: references", dataset=name, preset=preset,
                          seeds=SEEDS, epochs=EPOCHS, methods=["dus-h", "joint-aux"],
                          overrides=["log.tensorboard=false"]))
        for key, label, opts, where in DESIGNS:
            if ds in where:
                over = [f"{A_}{k}={v}" for k, v in opts.items()]
                out.append(G.Grid(name=f"{ds}/{key}", title=label, dataset=name, preset=preset, seeds=SEEDS,
                                  epochs=EPOCHS, methods=["dus-rl"], overrides=["log.tensorboard=false", *over]))
    return out


# ---------------------------------------------------------------------------- one run
def run_stats(run: Path) -> Dict[str, Any]:
    """Test accuracy, the policy's entropy at the end, the first modality's share of the samples early
    (epochs 1-5, after the warm-up) and late (last 5 epochs), and the run's signal correlations."""
    recs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    summary = json.loads((run / "summary.json").read_text())
    mods = summary["modalities"]
    out: Dict[str, Any] = {"acc": summary["test"]["acc"], "first": mods[0]}

    def share(rs: List[dict]) -> float:
        n = [np.mean([x for r in rs for x in r["steps"].get(f"dus-rl/n/{m}", [])]) for m in mods]
        return float(n[0] / sum(n))
    out["early"], out["late"] = share(recs[1:6]), share(recs[-5:])
    entropies = [r["plugins"]["dus-rl/policy_entropy"] for r in recs if "dus-rl/policy_entropy" in r["plugins"]]
    out["entropy"] = entropies[-1] if entropies else None
    last = recs[-1]["plugins"]
    out["windows"] = last.get("dus-rl/signal/transitions")
    out["r2"] = last.get("dus-rl/signal/r2_reward")
    for k in SIGNAL_KEYS:
        out[k] = last.get(f"dus-rl/signal/{k}/{mods[0]}")
    return out


def _corr_cell(vals: List[Optional[float]]) -> str:
    v = np.array([x for x in vals if x is not None], dtype=float)
    if not len(v):
        return "—"
    same = int(max((v > 0).sum(), (v < 0).sum()))
    return f"{v.mean():+.2f} ± {v.std(ddof=1):.2f} ({same}/{len(v)})"


def _agree(shares: List[float]) -> str:
    above = sum(s > 0.5 for s in shares)
    below = sum(s < 0.5 for s in shares)
    return f"{np.mean(shares):.2f} ({max(above, below)}/{len(shares)})"


def dataset_markdown(ds: str, root: Path) -> str:
    from mmbalance.report.compare import run_dir

    name, _, title = DATASETS[ds]
    seeds = [int(s) for s in range(10)]
    ref = {m: {s: json.loads((run_dir(root / f"{ds}/reference", m, s) / "summary.json").read_text())["test"]["acc"]
               for s in seeds} for m in ("dus-h", "joint-aux")}
    stats = {key: [run_stats(run_dir(root / f"{ds}/{key}", "dus-rl", s)) for s in seeds]
             for key, _, _, where in DESIGNS if ds in where}
    first = next(iter(stats.values()))[0]["first"]
    sig_rows, out_rows = [], []
    for key, label, _, where in DESIGNS:
        if ds not in where:
            continue
        st = stats[key]
        windows = np.mean([s["windows"] or 0 for s in st])
        sig_rows.append([label, f"{windows:.0f}", f"{np.mean([s['r2'] or 0 for s in st]):.3f}"] +
                        [_corr_cell([s[k] for s in st]) for k in SIGNAL_KEYS])
        ent = [s["entropy"] for s in st if s["entropy"] is not None]
        accs = {s_: st[i]["acc"] for i, s_ in enumerate(seeds)}
        vs = {r: A.paired_comparison(ref[r], accs) for r in ("dus-h", "joint-aux")}
        out_rows.append([label, f"{np.mean(ent):.2f} [{min(ent):.2f}, {max(ent):.2f}]" if ent else "—",
                         _agree([s["early"] for s in st]), _agree([s["late"] for s in st]),
                         A.fmt_pct(A.mean_std(accs.values()))] +
                        [f"{100 * v['mean_diff']:+.2f} (p {A.fmt_p(v['p_value'])}, {v['wins']}/{v['ties']}/"
                         f"{v['losses']})" for v in vs.values()])
    refs = " · ".join(f"{m} {A.fmt_pct(A.mean_std(ref[m].values()))}" for m in ref)
    sig = A.markdown_table(["design", "windows / run", "R² (reward ~ allocation)", "corr(x, reward)",
                            f"corr(x, {first}'s probe gain)", "corr(x, weaker modality's probe gain)",
                            "corr(x, fused probe gain)", f"corr(x, Δŝ {first})",
                            f"corr(x, {first}'s training-loss gain)"], sig_rows)
    res = A.markdown_table(["design", "entropy at the end [min, max]", f"{first}'s share, epochs 1–5 (agree)",
                            f"{first}'s share, last 5 epochs (agree)", "test acc (%)",
                            "Δ vs dus-h (pp, p, W/T/L)", "Δ vs joint-aux (pp, p, W/T/L)"], out_rows)
    return (f"#### {title}\n\nReferences (same seeds): {refs}.\n\nSignal (x = {first}'s samples in a decision "
            f"window / N_B; correlation over the run's windows, mean ± std over 10 seeds, (n/10) = seeds with "
            f"the majority sign):\n\n{sig}\n\nWhat the policy did (uniform policy: entropy 2·ln 6 = 3.58; share "
            f"= {first}'s fraction of the samples; (n/10) = seeds on the majority side of 0.5):\n\n{res}\n")


def commands_markdown(root: Path) -> str:
    lines = [G.command_text(g, root) for g in grids()]
    return "```bash\n" + "\n".join(lines) + "\n```\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    p.add_argument("--root", type=Path, default=Path("runs/dus-rl"), help="folder of the grid folders")
    p.add_argument("--doc", type=Path, default=ROOT / "docs" / "results" / "dus.md")
    p.add_argument("--commands", action="store_true")
    p.add_argument("--run", action="store_true")
    args = p.parse_args(argv)
    if args.commands:
        print(commands_markdown(args.root))
        return 0
    if args.run:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"),
                                                                           os.environ.get("PYTHONPATH")]))}
        for g in grids():
            if not G.is_complete(g, args.root):
                print(f"{g.name}: running", flush=True)
                argv_ = G.command(g, args.root)
                rc = subprocess.call([sys.executable, "-m", "mmbalance", *argv_[1:], "--no-progress"], env=env,
                                     stdout=subprocess.DEVNULL)
                if rc:
                    print(f"{g.name}: exit {rc}", file=sys.stderr)
                    return 1
    missing = [g.name for g in grids() if not G.is_complete(g, args.root)]
    if missing:
        print(f"unfinished grid(s): {', '.join(missing)}; nothing was written", file=sys.stderr)
        return 1
    body = "\n".join(dataset_markdown(ds, args.root) for ds in DATASETS) + "\nReproduce:\n\n" + \
        commands_markdown(args.root)
    text = args.doc.read_text()
    args.doc.write_text(G.replace_marked(text, "dus-rl-signal", body))
    print(f"updated {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
