"""What separates two configurations step for step (``joint`` vs the compute floor): one training epoch of
each under ``torch.profiler``, summarised as per-step times by operator and the difference between the two.

On a GPU the summary also counts the CUDA runtime calls that make the host wait for the device
(``cudaStreamSynchronize``, ``cudaDeviceSynchronize``, ``cudaEventSynchronize``, blocking ``cudaMemcpy``) per
step, and the device's busy time (the sum of kernel and copy times) against the epoch's wall time: a host
that keeps the device fed shows a busy fraction near 1.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List

import torch
from torch.profiler import ProfilerActivity, profile

#: CUDA runtime calls after which the host has waited for the device
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy")


def _device_us(evt) -> float:
    return float(getattr(evt, "self_device_time_total", getattr(evt, "self_cuda_time_total", 0.0)) or 0.0)


def profile_epoch(run: Callable[[], int], cuda: bool) -> Dict[str, object]:
    """Profile ``run`` (one training epoch; returns its number of steps): per-step self times by operator."""
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    t = time.perf_counter()
    with profile(activities=acts) as prof:
        steps = run()
        if cuda:
            torch.cuda.synchronize()
    wall = time.perf_counter() - t
    steps = max(int(steps), 1)
    rows = {}
    for e in prof.key_averages():
        rows[e.key] = {"count": e.count / steps, "cpu_us": e.self_cpu_time_total / steps,
                       "dev_us": _device_us(e) / steps}
    out: Dict[str, object] = {"steps": steps, "wall_s": wall, "ops": rows}
    if cuda:
        busy = sum(r["dev_us"] for r in rows.values()) * steps / 1e6
        out["device_busy_s"] = busy
        out["device_busy_fraction"] = busy / wall if wall > 0 else None
        out["syncs_per_step"] = {k: rows[k]["count"] for k in SYNC_CALLS if k in rows}
    return out


def top(rows: Dict[str, dict], key: str, n: int = 15) -> List[List[object]]:
    """The ``n`` operators with the most per-step ``key`` time: ``[name, us/step, calls/step]``."""
    best = sorted(rows.items(), key=lambda kv: -kv[1][key])[:n]
    return [[k, round(v[key], 1), round(v["count"], 2)] for k, v in best if v[key] > 0]


def difference(a: Dict[str, dict], b: Dict[str, dict], key: str, n: int = 15) -> List[List[object]]:
    """Operators ordered by how much more per-step ``key`` time ``a`` spends than ``b``:
    ``[name, a us/step, b us/step, a - b]``."""
    names = set(a) | set(b)
    diff = [(k, a.get(k, {}).get(key, 0.0), b.get(k, {}).get(key, 0.0)) for k in names]
    diff.sort(key=lambda x: -(x[1] - x[2]))
    return [[k, round(x, 1), round(y, 1), round(x - y, 1)] for k, x, y in diff[:n] if x - y > 0]


def compare(name_a: str, prof_a: Dict[str, object], name_b: str, prof_b: Dict[str, object], n: int = 15) -> dict:
    """The summary of two profiled epochs: each one's top operators and what ``a`` does more than ``b``."""
    ra, rb = prof_a["ops"], prof_b["ops"]
    res = {"a": name_a, "b": name_b,
           "per_step_wall_ms": {name_a: 1e3 * prof_a["wall_s"] / prof_a["steps"],
                                name_b: 1e3 * prof_b["wall_s"] / prof_b["steps"]},
           "cpu_more": difference(ra, rb, "cpu_us", n), "top_cpu": {name_a: top(ra, "cpu_us", n),
                                                                    name_b: top(rb, "cpu_us", n)}}
    if "device_busy_s" in prof_a:
        res["device_more"] = difference(ra, rb, "dev_us", n)
        res["top_device"] = {name_a: top(ra, "dev_us", n), name_b: top(rb, "dev_us", n)}
        for key in ("device_busy_fraction", "syncs_per_step"):
            res[key] = {name_a: prof_a.get(key), name_b: prof_b.get(key)}
    return res


def print_comparison(res: dict, log: Callable[[str], None] = print) -> None:
    a, b = res["a"], res["b"]
    walls = res["per_step_wall_ms"]
    log(f"profile: {a} {walls[a]:.2f} ms/step vs {b} {walls[b]:.2f} ms/step")
    if "device_busy_fraction" in res:
        log(f"  device busy: {a} {res['device_busy_fraction'][a]:.2f}, {b} {res['device_busy_fraction'][b]:.2f}; "
            f"syncs per step: {a} {res['syncs_per_step'][a]}, {b} {res['syncs_per_step'][b]}")
    for key, title in (("cpu_more", "host (self CPU) time"), ("device_more", "device time")):
        if res.get(key):
            log(f"  what {a} spends more {title} on than {b} (us/step: {a}, {b}, difference):")
            for name, x, y, d in res[key][:10]:
                log(f"    {name[:60]:60s} {x:9.1f} {y:9.1f} {d:+9.1f}")
