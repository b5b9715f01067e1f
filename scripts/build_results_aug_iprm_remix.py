"""Assemble docs/results/remix.md (DUS-H / DUS-RL vs Data Remixing) and docs/results/aug-iprm.md from
`mmbalance compare` grids.

Usage: python scripts/build_results_aug_iprm_remix.py [RUNS_DIR]   (default: runs; the commands are in the pages)

Every number comes from the grids: the method tables are `compare`'s own results.md tables; the selected epochs,
the per-step cost and the "best remixed epoch" column are read from each run's summary.json and metrics.jsonl.
The prose under "What this says" is written by hand against these grids (re-read it if the tables change).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
PAGES = Path(__file__).resolve().parent / "results_pages"
BASE = "mmbalance compare --seeds 0-4 --epochs 20 --threads 1 --jobs 2 --no-progress"
C = f"{BASE} --dataset av-digits --preset hard"
MF = f"{BASE} --dataset mfeat --modalities pix,fou,zer"
LOG = "log.tensorboard=false"
Grid = Tuple[str, str, str, int]  # folder under RUNS_DIR, title, command, Remix warm-up epochs

REMIX: List[Grid] = [
    ("remix/avd-hard", "Head-to-head, shared settings (SGD lr 0.05)",
     f"{C} --methods joint-aux,joint,dus-h,dus-rl,remix --out runs/remix/avd-hard {LOG}", 10),
    ("remix/avd-hard-warmup3", "Remix with a 3-epoch warm-up (the code's 10-of-60 fraction of a 20-epoch run)",
     f"{C} --methods joint-aux,remix --out runs/remix/avd-hard-warmup3 {LOG} method_args.remix.warmup_epochs=3", 3),
    ("remix/avd-hard-interleaved", "Remix, modalities alternating batch by batch",
     f"{C} --methods joint-aux,remix --out runs/remix/avd-hard-interleaved {LOG} "
     "method_args.remix.schedule=interleaved", 10),
    ("remix/avd-hard-nomask", "Remix without the masked fused loss",
     f"{C} --methods joint-aux,remix --out runs/remix/avd-hard-nomask {LOG} "
     "method_args.remix.masked_fused_loss=false", 10),
    ("remix/avd-hard-adam", "Adam (lr 1e-3) instead of SGD, for every method (the official code uses Adam)",
     f"{C} --methods joint-aux,dus-h,dus-rl,remix --out runs/remix/avd-hard-adam {LOG} "
     "optim.name=adam optim.lr=0.001", 10),
]

AUG_IPRM: List[Grid] = [
    ("aug-iprm/avd-hard", "av-digits `hard`, shared settings (SGD lr 0.05)",
     f"{C} --methods joint-aux,joint,aug,iprm --out runs/aug-iprm/avd-hard {LOG}", 0),
    ("aug-iprm/avd-hard-aug-code", "AUG as the official code runs it (alternating steps, added layers not trained)",
     f"{C} --methods joint-aux,aug --out runs/aug-iprm/avd-hard-aug-code {LOG} method_args.aug.alternating=true "
     "method_args.aug.train_new_layers=false", 0),
    ("aug-iprm/avd-hard-lr01", "SGD lr 0.01 (the learning rate of both official codes), every method",
     f"{C} --methods joint-aux,aug,iprm --out runs/aug-iprm/avd-hard-lr01 {LOG} optim.lr=0.01", 0),
    ("aug-iprm/avd-hard-aug-code-lr01", "AUG as the official code runs it, at lr 0.01",
     f"{C} --methods joint-aux,aug --out runs/aug-iprm/avd-hard-aug-code-lr01 {LOG} optim.lr=0.01 "
     "method_args.aug.alternating=true method_args.aug.train_new_layers=false", 0),
    ("aug-iprm/avd-hard-adam", "Adam (lr 1e-3), every method",
     f"{C} --methods joint-aux,aug,iprm --out runs/aug-iprm/avd-hard-adam {LOG} optim.name=adam optim.lr=0.001", 0),
    ("aug-iprm/mfeat-3", "mfeat, three views `pix,fou,zer` (SGD lr 0.05), Remix included",
     f"{MF} --methods joint-aux,aug,iprm,remix --out runs/aug-iprm/mfeat-3 {LOG}", 10),
]


def method_table(grid: Path) -> str:
    """The first table of compare's results.md (methods, accuracy, Δ vs the reference, W/T/L)."""
    lines = (grid / "results.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| method"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def run_details(grid: Path, warmup: int) -> Dict[str, Dict[str, list]]:
    """Per method: the selected epoch of each seed, the per-step cost and added parameters, Remix's assignment
    forwards, the test accuracy at the best-validation epoch *among Remix's remixed epochs*, and the classifiers
    AUG ended with."""
    runs = json.loads((grid / "grid.json").read_text())["runs"]
    out: Dict[str, Dict[str, list]] = {}
    for r in runs:
        if r.get("status") != "complete":
            continue
        run = grid / r["dir"]
        summary = json.loads((run / "summary.json").read_text())
        records = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        d = out.setdefault(r["method"], {k: [] for k in ("epochs", "fwd", "bwd", "params", "assign", "remixed",
                                                          "classifiers")})
        d["epochs"].append(summary["best_epoch"])
        d["fwd"] += [rec["train"]["cost"]["forwards_per_step"] for rec in records]
        d["bwd"] += [rec["train"]["cost"]["backwards_per_step"] for rec in records]
        d["params"].append(records[-1]["train"]["cost"]["added_parameters"])
        d["assign"] += [rec["plugins"]["remix/assign_forwards"] for rec in records
                        if "remix/assign_forwards" in rec["plugins"]]
        remixed = [rec for rec in records if rec["epoch"] >= warmup and rec["plugins"].get("remix/active")]
        if remixed:
            best = max(remixed, key=lambda rec: rec["val"]["acc"])  # the first maximum, like the run's selection
            d["remixed"].append(100 * best["test"]["acc"])
        counts = {k.split("/")[1]: v for k, v in records[-1]["plugins"].items()
                  if k.startswith("aug/") and k.endswith("/classifiers")}
        if counts:
            d["classifiers"].append("/".join(str(int(v)) for v in counts.values()))
    return out


def _mean_sd(values: List[float]) -> str:
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"


def details_table(details: Dict[str, Dict[str, list]], warmup: int) -> str:
    rows = ["| method | selected epochs (seeds 0–4) | test acc at the best remixed epoch (%) | forwards / backwards "
            "per step | added parameters (last epoch) | notes |", "|---|---|---:|---:|---:|---|"]
    for method, d in details.items():
        note, remixed = "", ""
        if d["remixed"]:
            note = f" ({sum(e >= warmup for e in d['epochs'])} of {len(d['epochs'])} after the warm-up)"
            remixed = _mean_sd(d["remixed"])
        notes = []
        if d["assign"]:
            notes.append(f"assignment pass: {statistics.mean(d['assign']):.0f} forwards per remixed epoch")
        if d["classifiers"]:
            notes.append("classifiers per modality at the end: " + ", ".join(d["classifiers"]))
        rows.append(f"| {method} | {', '.join(map(str, d['epochs']))}{note} | {remixed} | "
                    f"{statistics.mean(d['fwd']):.2f} / {statistics.mean(d['bwd']):.2f} | "
                    f"{statistics.mean(d['params']):.0f} | {'; '.join(notes)} |")
    return "\n".join(rows)


def build(page: str, grids: List[Grid], runs: Path) -> str:
    head, findings = (PAGES / f"{page}.md").read_text().split("<!-- TABLES -->")
    parts = [head.replace("{commands}", "\n".join(cmd for _, _, cmd, _ in grids))]
    for folder, title, cmd, warmup in grids:
        grid = runs / folder
        parts.append(f"\n## {title}\n\n`{cmd}`\n\n{method_table(grid)}\n\n"
                     f"{details_table(run_details(grid, warmup), warmup)}\n")
    parts.append(findings)
    return "".join(parts)


def main() -> int:
    runs = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "runs"
    pages = {"remix": REMIX, "aug-iprm": AUG_IPRM}
    missing = [g for grids in pages.values() for g, _, _, _ in grids if not (runs / g / "results.md").is_file()]
    if missing:
        print(f"missing grids under {runs}: {', '.join(missing)} (run the commands in the pages first)",
              file=sys.stderr)
        return 1
    for page, grids in pages.items():
        out = ROOT / "docs" / "results" / f"{page}.md"
        out.write_text(build(page, grids, runs))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
