"""Render the JSON of ``run_benchmarks.py`` as Markdown tables into a marked section of BENCHMARKS.md.

    python benchmarks/render_benchmarks.py RESULTS.json --key cpu [--md BENCHMARKS.md]

The section lies between ``<!-- generated:begin KEY -->`` and ``<!-- generated:end KEY -->``; everything
between them is replaced, nothing else is touched. ``--check`` exits 1 if the section differs from what the
JSON gives (the tables are never edited by hand; a test runs this check).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import List, Optional

GROUP_TITLES = {"eager": "eager", "compiled": "compiled (`train.compile=reduce-overhead`)",
                "eager-rows": "every other method, eager", "compiled-rows": "every other method, compiled"}


def _f(x: Optional[float], digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def _ratio(s: dict) -> str:
    if not s or not s.get("n"):
        return "–"
    return (f"**×{s['median']:.3f}** ({_f(s['min'])}–{_f(s['max'])}, IQR {_f(s['q25'])}–{_f(s['q75'])}, "
            f"n = {s['n']})")


def _amortised(am: dict) -> str:
    pairs = am["amortised"]
    text = (f"×{pairs['median']:.3f} ({_f(pairs['min'])}–{_f(pairs['max'])}, {pairs['n']} pairs of rounds)"
            if pairs["n"] else "no pair of rounds")
    if "from_medians" in am:
        text += f", from the medians of all rounds ×{am['from_medians']:.3f}"
    if am["train_after"]["n"]:
        text += (f" (training after a diagnosis ×{_f(am['train_after']['median'])}, other epochs "
                 f"×{_f(am['train_other']['median'])}, one diagnosis "
                 f"{_f(am['pass_joint_epochs']['median'], 2)} joint epochs)")
    return text


def _config_rows(g: dict) -> List[str]:
    ratios = g["ratios"]
    floor = next((lb for lb in g["configs"] if lb.startswith("floor")), None)
    rows = ["| configuration | s/epoch, median (min–max) | ratio per round: median (min–max, IQR, rounds) |",
            "|---|---:|---|"]
    for label, c in g["configs"].items():
        e = c["epoch_s"]
        if label == floor:
            ratio = "1 (reference of joint)"
        elif label == "joint":
            ratio = (f"{_ratio(ratios.get('joint/floor', {}))} of the floor" if floor else
                     "1 (reference of every row)")
        else:
            ratio = f"{_ratio(ratios.get(f'{label}/joint', {}))} of joint"
            am = ratios.get(f"{label}/joint amortised H=20")
            if am:
                ratio += "; **amortised over H = 20**: " + _amortised(am)
        graphs = f" [{c['steady_graphs']} new graphs while measured]" if c.get("steady_graphs") else ""
        if c.get("cudagraph_skips"):
            graphs += f" [CUDA graphs skipped {c['cudagraph_skips']} times]"
        sizes = c["rounds"][-1].get("mean_sizes") if c.get("rounds") else None
        note = ""
        if sizes:
            note = " (mean sizes " + ", ".join(f"{k.split('/')[-1]} {v:g}" for k, v in sizes.items()) + ")"
        rows.append(f"| `{label}`{note}{graphs} | {_f(e['median'])} ({_f(e['min'])}–{_f(e['max'])}) | {ratio} |")
    return rows


def _profile_rows(p: dict) -> List[str]:
    jf = p.get("joint_vs_floor")
    if not jf:
        return [f"Profile: {p.get('error', 'not run')}."] if p else []
    a, b = jf["a"], jf["b"]
    w = jf["per_step_wall_ms"]
    out = [f"Profile of one training epoch each (`torch.profiler`): {a} {w[a]:.2f} ms/step, {b} {w[b]:.2f} ms/step."]
    if "device_busy_fraction" in jf:
        busy, syncs = jf["device_busy_fraction"], jf["syncs_per_step"]
        out[-1] += (f" Device busy {_f(busy[a], 2)} / {_f(busy[b], 2)} of the wall time; host syncs per step "
                    f"{syncs[a]} / {syncs[b]}.")
    for key, what in (("cpu_more", "host time (self CPU)"), ("device_more", "device time")):
        if jf.get(key):
            out += ["", f"What `{a}` spends more {what} on than the `{b}` (µs per step):", "",
                    f"| operator | {a} | {b} | difference |", "|---|---:|---:|---:|"]
            out += [f"| `{n[:70]}` | {x:.1f} | {y:.1f} | {d:+.1f} |" for n, x, y, d in jf[key][:8]]
    for label, v in p.items():
        if label not in ("joint_vs_floor", "error"):
            out.append(f"\n`{label}`: {v['per_step_wall_ms']:.2f} ms/step under the profiler, host syncs per step "
                       f"{v['syncs_per_step']}, device busy {_f(v['device_busy_fraction'], 2)}.")
    return out


def render(res: dict) -> str:
    m = res["meta"]
    lines = [f"**{m['device']}, torch {m['torch']}" + (f", CUDA {m['cuda']}" if m.get("cuda") else "") +
             f", {m['date']}** (`python benchmarks/run_benchmarks.py {' '.join(m['argv'])}`, {m['elapsed_s']:.0f} s "
             f"in all): {m['n']} training clips ({m['rows_n']} in the rows groups), "
             f"frames 2×3×{m['size']}×{m['size']}, "
             f"spectrogram 1×{m['spec'][0]}×{m['spec'][1]}, batch {m['batch']}, layout `{m['layout']}`. Every ratio is "
             f"taken within one round (configurations interleaved, order alternating) and summarised over rounds."]
    for name, g in res["groups"].items():
        lines += ["", f"*{GROUP_TITLES.get(name, name)}*"]
        if "configs" not in g:
            lines += ["", f"Not measured: {g.get('skipped')}."]
            continue
        lines[-1] += (f" — {g['rounds']} rounds after {g['warmup']} warm-up epoch(s), {g['train_clips']} training "
                      f"clips" + (f"; joint's last round / first round ×{g['joint_drift_last_vs_first']:.3f}"
                                  if "joint_drift_last_vs_first" in g else "") + ":")
        lines += [""] + _config_rows(g)
        for label, why in g.get("skipped", {}).items():
            lines.append(f"\n`{label}`: {why}.")
        if g.get("profile"):
            lines += [""] + _profile_rows(g["profile"])
    return "\n".join(lines) + "\n"


def section(text: str, key: str) -> re.Match:
    m = re.search(rf"<!-- generated:begin {re.escape(key)} -->\n(.*?)<!-- generated:end {re.escape(key)} -->",
                  text, re.S)
    if m is None:
        raise SystemExit(f"no '<!-- generated:begin {key} -->' ... '<!-- generated:end {key} -->' section found")
    return m


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("json")
    p.add_argument("--key", required=True, help="which generated section of the Markdown file")
    p.add_argument("--md", default=str(Path(__file__).resolve().parents[1] / "BENCHMARKS.md"))
    p.add_argument("--check", action="store_true", help="only check that the section matches the JSON")
    args = p.parse_args(argv)
    body = render(json.loads(Path(args.json).read_text()))
    md = Path(args.md)
    text = md.read_text()
    m = section(text, args.key)
    if args.check:
        if m.group(1) != body:
            print(f"{md}: the section '{args.key}' differs from {args.json}; run benchmarks/render_benchmarks.py")
            return 1
        return 0
    md.write_text(text[: m.start(1)] + body + text[m.end(1):])
    return 0


if __name__ == "__main__":
    sys.exit(main())
