"""Speed benchmark that cancels device drift: the compute floor, `joint` through the full mmbalance pipeline,
and every method, interleaved epoch by epoch in one process (``interleave.py``).

Configurations are measured in *groups*; inside a group every configuration runs one epoch per round, the order
alternating (A B C, C B A, ...), and each ratio is the median of the per-round ratios with its spread:

  eager / compiled        (a) floor: model forward + backward + SGD step on tensors already on the device (same
                          precision, model and batch size): the best any data pipeline can do
                          (b) joint: `joint` through the Trainer on a CREMA-D-shaped dataset (uint8 frames + float16
                          spectrograms, made resident on the device, augmented in batches there)
                          (c) the seed plug-ins and their variants (dus-h exact / size buckets / one-step lag,
                          bss-l, D&R amortised over H = 20), ratio to joint
  eager-rows / compiled-rows   joint and every other registered method (``mmbalance list``), ratio to joint,
                          on the first ``--rows-n`` clips (the same resident tensors, a smaller epoch)

``compiled`` groups run ``torch.compile(mode="reduce-overhead")`` (CUDA graphs on a GPU). ``--profile`` adds a
torch.profiler summary of one training epoch of joint vs the floor in each group (and, on a GPU, the host syncs
per step of the DUS variants). All configurations of a group share one resident dataset.

CREMA-D shape: 6,698 clips x (2 frames 3x224x224 + a 1x257x188 log-spectrogram), 6 classes, two ResNet-18s from
scratch, concat fusion, SGD, batch 64. On CPU the defaults are small; ``--tiny`` is a smoke-test size.

    python benchmarks/run_benchmarks.py [--groups eager,compiled,eager-rows,compiled-rows] [--rounds 5]
        [--methods seeds|all|NAME,...] [--budget-s 420] [--profile] [--json out.json] [--tiny]
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List, Optional, Tuple

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mmbalance import Trainer  # noqa: E402
from mmbalance.data import Splits  # noqa: E402
from mmbalance.models import build_model  # noqa: E402
from mmbalance.registry import METHODS  # noqa: E402

from bench_data import base_cfg, cremad_splits, load_splits, make_on_disk, naive_reference  # noqa: E402
from interleave import amortised_ratios, interleave, round_ratios, spread  # noqa: E402
from profile_pair import compare, print_comparison, profile_epoch  # noqa: E402

# ------------------------------------------------------------------------------------------ what is measured
D_AND_R_H2 = ["method_args.diagnose-relearn.reinit_every=2", "method_args.diagnose-relearn.max_reinit=100"]
#: seed-method variants: label -> (method, overrides)
VARIANTS: Dict[str, Tuple[str, List[str]]] = {
    "dus-h": ("dus-h", []),
    # sizes in steps of 8: a bounded set of batch shapes for a compiled model (CUDA graphs per shape)
    "dus-h[q8]": ("dus-h", ["method_args.dus-h.size_multiple=8"]),
    # the decision of step t applied at step t+2: no host wait for the scores (docs/methods/dus.md)
    "dus-h[lag1]": ("dus-h", ["method_args.dus-h.decision_lag=1"]),
    "dus-h[q8,lag1]": ("dus-h", ["method_args.dus-h.size_multiple=8", "method_args.dus-h.decision_lag=1"]),
    "bss-l": ("bss-l", []),
    "bss-l[previous_epoch]": ("bss-l", ["method_args.bss-l.score_source=previous_epoch"]),
    # the diagnosis every second epoch: pairs of rounds give a training epoch that ends with a diagnosis, the
    # diagnosis itself and the training epoch right after it, hence the cost over the default H = 20
    "diagnose-relearn[H2]": ("diagnose-relearn", D_AND_R_H2),
    # the same diagnosis without re-initialising: its cost without any effect of the weight change
    "diagnose-relearn[monitor]": ("diagnose-relearn", ["method_args.diagnose-relearn.monitor_every=1",
                                                       "method_args.diagnose-relearn.max_reinit=0"]),
}
SEEDS = ["dus-h", "dus-h[q8]", "dus-h[lag1]", "dus-h[q8,lag1]", "bss-l", "bss-l[previous_epoch]",
         "diagnose-relearn[H2]"]
COMPILED_SEEDS = ["dus-h[lag1]", "dus-h[q8]", "dus-h[q8,lag1]", "bss-l[previous_epoch]", "diagnose-relearn[H2]"]
#: overrides under which a short run measures a method's steady state rather than a warm-up of plain training
BENCH_ARGS: Dict[str, List[str]] = {
    "smv": ["method_args.smv.warmup=0"],
    "umt": ["method_args.umt.teacher_epochs=1"],  # the teacher stage runs before the measured epochs
    "gblending": ["method_args.gblending.super_epoch=2", "method_args.gblending.probe_epochs=1"],
}
#: no row in the *-rows groups: the reference itself, one modality alone (not a balancing method), and the seed
#: methods, whose variants the eager / compiled groups measure
NOT_ROWS = ("joint", "unimodal", "dus-h", "bss-l", "diagnose-relearn")
#: the amortised figure of D&R uses its default schedule: one diagnosis every H epochs
H_DEFAULT = 20


def row_methods() -> List[str]:
    """Every registered method that gets an overhead row (the seeds' variants are measured separately)."""
    return [m for m in METHODS.names() if m not in NOT_ROWS]


def resolve(spec: str) -> List[Tuple[str, str, List[str]]]:
    """``seeds`` / ``all`` / labels of :data:`VARIANTS` / registered names -> ``(label, method, overrides)``."""
    out: List[Tuple[str, str, List[str]]] = []
    for token in [t for t in spec.split(",") if t]:
        labels = SEEDS if token == "seeds" else COMPILED_SEEDS if token == "compiled-seeds" else \
            row_methods() if token == "all" else [token]
        for label in labels:
            if label in VARIANTS:
                method, extra = VARIANTS[label]
            elif label in METHODS:
                method, extra = label, BENCH_ARGS.get(label, [])
            else:
                raise SystemExit(f"--methods: unknown {label!r} (variants: {', '.join(VARIANTS)}; methods: "
                                 f"{', '.join(METHODS.names())})")
            if label not in [o[0] for o in out] and label != "joint":
                out.append((label, method, list(extra)))
    return out


# ------------------------------------------------------------------------------------------ runners
def compiled_graphs() -> int:
    """Graphs torch.compile has produced so far in this process (0 when dynamo is not loaded)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters
    return int(counters["stats"]["unique_graphs"])


def cudagraph_skips() -> int:
    """Times inductor ran a compiled graph without CUDA graphs so far (dynamic shapes, mutations, limits)."""
    if "torch._dynamo" not in sys.modules:
        return 0
    from torch._dynamo.utils import counters
    return int(counters["inductor"]["cudagraph_skips"])


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


class FloorRunner:
    """(a) fwd + bwd + step on resident, already-augmented tensors, one epoch (as many steps as joint's) per call."""

    def __init__(self, label: str, args, dev: torch.device, shapes: dict, compiled: bool):
        self.label, self.dev = label, dev
        torch.manual_seed(0)
        cfg = base_cfg(SimpleNamespace(batch=args.batch, epochs=1, compile=False), dev)
        self.model = build_model(cfg.model, shapes, 6).to(dev)
        if dev.type == "cuda":
            self.model = self.model.to(memory_format=torch.channels_last)
        self.call = torch.compile(self.model, mode="reduce-overhead") if compiled else self.model
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.002, momentum=0.9, weight_decay=1e-4)
        b = args.batch
        self.batches = [{"audio": torch.randn(b, *shapes["audio"], device=dev),
                         "visual": torch.randn(b, *shapes["visual"], device=dev)} for _ in range(4)]
        self.y = torch.randint(0, 6, (b,), device=dev)
        self.steps = args.n // b
        self.autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if dev.type == "cuda" else \
            (lambda: torch.autocast("cpu", enabled=False))

    def train(self) -> int:
        for i in range(self.steps):
            with self.autocast():
                out = self.call(self.batches[i % 4])
                loss = torch.nn.functional.cross_entropy(out.fused.float(), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
        return self.steps

    def epoch(self) -> Dict[str, float]:
        g0, k0 = compiled_graphs(), cudagraph_skips()
        sync(self.dev)
        t = time.perf_counter()
        self.train()
        sync(self.dev)
        dt = time.perf_counter() - t
        return {"epoch_s": dt, "train_s": dt, "end_s": 0.0, "steps": self.steps, "graphs": compiled_graphs() - g0,
                "cudagraph_skips": cudagraph_skips() - k0}

    def close(self) -> None:
        self.model = self.call = self.opt = self.batches = None


class TrainerRunner:
    """(b)/(c): a method through the Trainer, one main epoch per call (``Trainer.fit_epoch``). The measured
    ``epoch_s`` = epoch start + training + epoch end (a plug-in's passes included, evaluation excluded)."""

    def __init__(self, label: str, cfg, splits: Splits):
        self.label = label
        self.trainer = Trainer(cfg, splits=splits)
        self.trainer.begin()  # stages (teachers) run here, before any measurement
        self._after_pass = False

    def epoch(self) -> Dict[str, float]:
        g0, k0 = compiled_graphs(), cudagraph_skips()
        rec = self.trainer.fit_epoch()
        t = rec["time"]
        did = any(k.endswith("diagnose_time_s") for k in rec["plugins"])
        res = {"epoch_s": t["epoch_start"] + t["train"] + t["epoch_end"], "train_s": t["epoch_start"] + t["train"],
               "start_s": t["epoch_start"], "end_s": t["epoch_end"], "eval_s": t["eval"],
               "steps": rec["train"]["steps"], "did_pass": did, "after_pass": self._after_pass,
               "graphs": compiled_graphs() - g0, "cudagraph_skips": cudagraph_skips() - k0}
        sizes = {k.split("/", 1)[1]: round(v, 2) for k, v in rec["plugins"].items() if "/mean_n/" in k}
        if sizes:
            res["mean_sizes"] = sizes
        self._after_pass = did
        return res

    def train(self) -> int:
        """One training epoch only (for the profiler; after the measured rounds)."""
        tr = self.trainer
        return tr.train_epoch(tr.epoch)["steps"]

    def close(self) -> None:
        self.trainer = None


# ------------------------------------------------------------------------------------------ one group
def summarise(rounds: Dict[str, List[dict]], floor: Optional[str]) -> Dict[str, dict]:
    """Per-round ratios: joint / floor, and every other configuration / joint (D&R: amortised over H = 20)."""
    ratios: Dict[str, dict] = {}
    joint = rounds.get("joint")
    if floor and joint and floor in rounds:
        ratios["joint/floor"] = spread(round_ratios(joint, rounds[floor]))
    for label, rs in rounds.items():
        if label in ("joint", floor) or not joint:
            continue
        ratios[f"{label}/joint"] = spread(round_ratios(rs, joint))
        if any(r.get("did_pass") for r in rs):
            am = amortised_ratios(rs, joint, H_DEFAULT)
            entry = {k: spread(v) for k, v in am.items()}
            other = spread([r["train_s"] / j["epoch_s"] for r, j in zip(rs, joint) if not r["after_pass"]])
            after = spread([r["train_s"] / j["epoch_s"] for r, j in zip(rs, joint) if r["after_pass"]])
            cost = spread([r["end_s"] / j["epoch_s"] for r, j in zip(rs, joint) if r["did_pass"]])
            if other["n"] and after["n"] and cost["n"]:  # the same formula on the medians of all rounds
                entry["from_medians"] = ((H_DEFAULT - 1) * other["median"] + after["median"]
                                         + cost["median"]) / H_DEFAULT
            ratios[f"{label}/joint amortised H={H_DEFAULT}"] = entry
    return ratios


def run_group(name: str, args, dev, splits: Splits, shapes: dict, methods, compiled: bool, with_floor: bool,
              deadline: Optional[float], profile: bool) -> dict:
    """Build every configuration of the group, interleave their epochs, summarise, optionally profile."""
    print(f"== group {name}: {'compiled (reduce-overhead)' if compiled else 'eager'}, "
          f"{len(splits.train)} training clips, {1 + with_floor + len(methods)} configurations", flush=True)
    epochs = args.warmup + args.rounds
    ns = SimpleNamespace(batch=args.batch, epochs=epochs, compile=compiled)
    runners, skipped, built = [], {}, {}
    floor_label = ("floor (compiled)" if compiled else "floor") if with_floor else None
    if with_floor:
        runners.append(FloorRunner(floor_label, SimpleNamespace(batch=args.batch, n=len(splits.train)), dev, shapes,
                                   compiled))
    for label, method, extra in [("joint", "joint", [])] + list(methods):
        if deadline is not None and time.monotonic() > deadline and label != "joint":
            skipped[label] = "not built: the group's time ran out"
            continue
        t = time.monotonic()
        try:
            runners.append(TrainerRunner(label, base_cfg(ns, dev).override([f"method={method}", *extra]), splits))
        except Exception as e:  # a method that cannot run on this data: one line, the others go on
            skipped[label] = f"{type(e).__name__}: {e}"
            print(f"  {label}: skipped ({skipped[label]})", flush=True)
            continue
        built[label] = {"method": method, "overrides": extra, "build_s": round(time.monotonic() - t, 2)}
    rounds = interleave(runners, args.rounds, warmup=args.warmup, min_rounds=min(2, args.rounds),
                        deadline=deadline, skipped=skipped)
    configs = {}
    for r in runners:
        rs = rounds.get(r.label, [])
        if not rs:
            continue
        configs[r.label] = {**built.get(r.label, {"method": "floor", "overrides": []}),
                            "epoch_s": spread([x["epoch_s"] for x in rs]),
                            "train_s": spread([x["train_s"] for x in rs]),
                            "steady_graphs": sum(x.get("graphs", 0) for x in rs),
                            "cudagraph_skips": sum(x.get("cudagraph_skips", 0) for x in rs), "rounds": rs}
    group = {"compiled": compiled, "train_clips": len(splits.train), "rounds": len(next(iter(rounds.values()), [])),
             "warmup": args.warmup, "configs": configs, "ratios": summarise(rounds, floor_label), "skipped": skipped}
    if "joint" in rounds and rounds["joint"]:
        j = [x["epoch_s"] for x in rounds["joint"]]
        group["joint_drift_last_vs_first"] = j[-1] / j[0]
    if profile and with_floor:
        group["profile"] = run_profiles(runners, dev, floor_label)
    for r in runners:
        r.close()
    del runners
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    print_group(name, group)
    return group


def run_profiles(runners, dev, floor_label: str) -> dict:
    """joint vs the floor (what separates them); on a GPU also the DUS variants' syncs per step."""
    by = {r.label: r for r in runners}
    cuda = dev.type == "cuda"
    out: dict = {}
    try:
        pf = profile_epoch(by[floor_label].train, cuda)
        pj = profile_epoch(by["joint"].train, cuda)
        out["joint_vs_floor"] = compare("joint", pj, floor_label, pf)
        print_comparison(out["joint_vs_floor"])
        if cuda:
            for label in [lb for lb in by if lb.startswith("dus-h")]:
                p = profile_epoch(by[label].train, cuda)
                out[label] = {"per_step_wall_ms": 1e3 * p["wall_s"] / p["steps"], "syncs_per_step": p["syncs_per_step"],
                              "device_busy_fraction": p["device_busy_fraction"]}
                print(f"  {label}: syncs per step {p['syncs_per_step']}, device busy {p['device_busy_fraction']:.2f}")
    except Exception as e:  # the measurements above are kept whatever the profiler does
        out["error"] = f"{type(e).__name__}: {e}"
        print(f"  profile failed: {out['error']}")
    return out


def print_group(name: str, g: dict) -> None:
    print(f"-- {name}: {g['rounds']} rounds after {g['warmup']} warm-up epoch(s); median (min-max) over rounds")
    for label, c in g["configs"].items():
        e = c["epoch_s"]
        print(f"   {label:28s} {e['median']:.3f} s/epoch ({e['min']:.3f}-{e['max']:.3f})"
              + (f"  [{c['steady_graphs']} new graphs in measured rounds]" if c["steady_graphs"] else ""))
    for key, s in g["ratios"].items():
        if "median" in s:
            print(f"   {key:40s} x{s['median']:.3f}  ({s['min']:.3f}-{s['max']:.3f}, "
                  f"IQR {s['q25']:.3f}-{s['q75']:.3f}, n={s['n']})" if s["n"] else f"   {key:40s} -")
        else:
            am = s["amortised"]
            est = s.get("from_medians")
            print(f"   {key:40s} " + (f"x{am['median']:.3f} ({am['min']:.3f}-{am['max']:.3f}, n={am['n']} pairs)"
                                      if am["n"] else "no pair of rounds") +
                  (f"; from the medians of all rounds x{est:.3f}" if est is not None else ""))
    for label, why in g["skipped"].items():
        print(f"   {label}: {why}")
    if "joint_drift_last_vs_first" in g:
        print(f"   joint's last round / first round: x{g['joint_drift_last_vs_first']:.3f} (the drift cancelled)")


# ------------------------------------------------------------------------------------------ the run
def meta(args, dev, size, spec) -> dict:
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else \
        f"CPU {platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"
    return {"device": name, "torch": torch.__version__, "cuda": torch.version.cuda,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "host_cpus": os.cpu_count(), "python": platform.python_version(), "argv": sys.argv[1:],
            "n": args.n, "rows_n": args.rows_n, "size": size, "spec": list(spec), "batch": args.batch,
            "layout": args.layout}


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, help="training clips (default 6698 on GPU, 256 on CPU)")
    p.add_argument("--rows-n", type=int, help="clips of the *-rows groups (default 1024 on GPU, = --n on CPU)")
    p.add_argument("--size", type=int, help="frame size (224 on GPU, 32 on CPU)")
    p.add_argument("--spec", type=int, nargs=2, help="spectrogram F T (257 188 on GPU, 64 48 on CPU)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, help="measured rounds per group (default 5 on GPU, 3 on CPU)")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured epochs of every configuration first")
    p.add_argument("--groups", default="eager", help="comma-separated: eager, compiled, eager-rows, compiled-rows")
    p.add_argument("--methods", default="seeds", help="(c) of the eager group: 'seeds', labels of the variants "
                   f"({', '.join(VARIANTS)}) or registered method names")
    p.add_argument("--compiled-methods", default="compiled-seeds", help="(c) of the compiled group")
    p.add_argument("--rows", default="all", help="methods of the *-rows groups ('all': every registered method)")
    p.add_argument("--budget-s", type=float, help="stop adding rounds (and configurations) when this many seconds "
                   "have passed; each group gets its share")
    p.add_argument("--profile", action="store_true", help="profile joint vs the floor (and the DUS variants' syncs)")
    p.add_argument("--naive-clips", type=int, default=0, help="clips for the naive PIL loader reference (0: skip)")
    p.add_argument("--layout", choices=["npy", "cremad"], default="npy",
                   help="npy: frames/spectrograms written as .npy memmaps; cremad: a raw CREMA-D tree in the OGM-GE "
                        "layout, run through `mmbalance prepare cremad` and the cremad loader's frame cache")
    p.add_argument("--n-eval", type=int, help="val (= test) clips evaluated after every epoch (default 256)")
    p.add_argument("--tiny", action="store_true", help="smoke-test sizes (32 clips of 16 px, 2 rounds)")
    p.add_argument("--json", help="write the results here (after every group)")
    args = p.parse_args(argv)
    if args.tiny:
        args.n, args.size, args.spec, args.batch = args.n or 32, args.size or 16, args.spec or [16, 12], 16
        args.rounds, args.n_eval = args.rounds or 2, args.n_eval or 16
    return args


#: with --budget-s, the share of the budget by whose end each group's rounds must be done (the groups run in
#: this order; sized for benchmarks/gpu_session.sh on an H200, where compilation dominates the compiled groups)
GROUP_SHARE = {"eager": 0.22, "compiled": 0.62, "eager-rows": 0.75, "compiled-rows": 1.0}


def main(argv=None):
    args = parse(argv)
    t_start = time.monotonic()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = dev.type == "cuda"
    args.n = args.n or (6698 if gpu else 256)
    args.rounds = args.rounds or (5 if gpu else 3)
    size = args.size or (224 if gpu else 32)
    spec = tuple(args.spec) if args.spec else ((257, 188) if gpu else (64, 48))
    if gpu:
        torch.backends.cudnn.benchmark = True
    groups = [g for g in args.groups.split(",") if g]
    for g in groups:
        if g not in GROUP_SHARE:
            raise SystemExit(f"--groups: unknown {g!r} (choose from {', '.join(GROUP_SHARE)})")
    if any(g.startswith("compiled") for g in groups):
        from torch import _dynamo

        # every configuration of a group keeps its compiled graphs; the default limit (8 per function) would
        # silently send the later ones back to eager
        for knob in ("recompile_limit", "cache_size_limit"):
            if hasattr(_dynamo.config, knob):
                setattr(_dynamo.config, knob, 256)
    res = {"meta": {}, "groups": {}}
    root = Path(tempfile.mkdtemp(prefix="mmb_bench_"))
    t = time.perf_counter()
    n_eval = args.n_eval or min(256, args.n)
    if args.layout == "cremad":
        splits = cremad_splits(root, args.n, size, workers=min(16, os.cpu_count() or 1))
        spec = tuple(splits.train.input_shape("audio")[-2:])
        shapes = {m: tuple(splits.train.input_shape(m)) for m in splits.train.modalities}
    else:
        make_on_disk(root, args.n, size, spec)
        splits = load_splits(root, size, n_eval=min(n_eval, args.n))
        shapes = {"audio": (1,) + spec, "visual": (2, 3, size, size)}
    args.n = len(splits.train)
    args.rows_n = min(args.rows_n or (1024 if gpu else args.n), args.n)
    res["meta"] = meta(args, dev, size, spec)
    print(f"device: {res['meta']['device']}; torch {torch.__version__}; {res['meta']['date']}; N={args.n} clips, "
          f"frames 2x3x{size}x{size}, spectrogram 1x{spec[0]}x{spec[1]}, batch {args.batch} "
          f"(data ready in {time.perf_counter() - t:.1f} s)", flush=True)
    rows_splits = None
    for g in groups:
        deadline = None if args.budget_s is None else t_start + GROUP_SHARE[g] * args.budget_s
        if deadline is not None and time.monotonic() > deadline - 5:
            res["groups"][g] = {"skipped": "no time left in the budget"}
            print(f"== group {g}: skipped (no time left in the budget)")
            continue
        compiled = g.startswith("compiled")
        if g.endswith("-rows"):
            if rows_splits is None:
                sub = splits.train if args.rows_n >= args.n else splits.train.subset(range(args.rows_n))
                rows_splits = Splits(sub, splits.val, splits.test)
            methods = resolve(args.rows)
            res["groups"][g] = run_group(g, args, dev, rows_splits, shapes, methods, compiled, False, deadline, False)
        else:
            methods = resolve(args.compiled_methods if compiled else args.methods)
            res["groups"][g] = run_group(g, args, dev, splits, shapes, methods, compiled, True, deadline, args.profile)
        res["meta"]["elapsed_s"] = round(time.monotonic() - t_start, 1)
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=1))
    if args.naive_clips:
        sec, workers = naive_reference(SimpleNamespace(batch=args.batch, n=args.n), args.naive_clips, size, spec)
        res["naive_data_only_s"] = sec
        print(f"(ref) naive per-sample PIL loader, data only ({workers} workers), extrapolated: {sec:.2f} s/epoch")
    res["meta"]["elapsed_s"] = round(time.monotonic() - t_start, 1)
    print(f"total {res['meta']['elapsed_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
