"""Drift-cancelling measurement: every configuration runs one epoch per round, in one process, the order
alternating from round to round (A B C, then C B A, ...), and every ratio is taken *within* a round.

A device's speed drifts over minutes (clocks under sustained load, temperature, other tenants): measured one
after another, two configurations can differ by as much as the overhead being judged (9 % in issue 20's H100
runs). Interleaved, both sides of a ratio are measured seconds apart, and alternating the order removes the
bias of always running first or last. Each ratio is reported as the median over rounds of the per-round
ratios, with its spread (min, max, interquartile range), so a reader can tell a real overhead from noise.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Protocol, Sequence

import numpy as np


class Runner(Protocol):
    """One configuration that can be advanced one epoch at a time (the state persists between calls)."""

    label: str

    def epoch(self) -> Dict[str, float]:
        """Run one epoch; return its phase times: ``epoch_s`` (the measured figure), ``train_s`` and
        ``end_s``, plus anything else worth keeping (steps, flags)."""
        ...


def round_order(labels: Sequence[str], r: int) -> List[str]:
    """Round ``r``'s order: as given in even rounds, reversed in odd ones."""
    return list(labels) if r % 2 == 0 else list(reversed(labels))


def interleave(runners: Sequence[Runner], rounds: int, warmup: int = 1, min_rounds: int = 2,
               deadline: Optional[float] = None, skipped: Optional[Dict[str, str]] = None,
               log: Callable[[str], None] = print) -> Dict[str, List[dict]]:
    """``warmup`` unmeasured epochs of every runner (compilation, autotuning, first allocations), then up to
    ``rounds`` measured rounds. With a ``deadline`` (a ``time.monotonic()`` value), a round is started only if
    the longest round so far would still end before it, once ``min_rounds`` are done; the first two runners
    are always warmed up, a later one only before the deadline (else it is left out and named in ``skipped``).
    Returns every runner's per-round results (each with its ``round`` and its ``position`` in that round's
    order)."""
    by_label = {r.label: r for r in runners}
    labels = list(by_label)
    protected = set(labels[:2])  # the references (floor, joint) come first and are always measured
    longest_warmup = 0.0
    for w in range(warmup):
        for label in list(labels):
            # a warm-up may compile for minutes and cannot be cut short: start one only if one as long as the
            # longest so far would still end before the deadline
            if deadline is not None and label not in protected and time.monotonic() + longest_warmup > deadline:
                labels.remove(label)
                if skipped is not None:
                    skipped[label] = "not measured: the group's time ran out during the warm-up"
                continue
            t = time.monotonic()
            by_label[label].epoch()
            longest_warmup = max(longest_warmup, time.monotonic() - t)
            log(f"  warm-up {w}: {label} {time.monotonic() - t:.2f} s")
    out: Dict[str, List[dict]] = {label: [] for label in labels}
    by_label = {lb: by_label[lb] for lb in labels}
    longest = 0.0
    for r in range(rounds):
        if deadline is not None and r >= min_rounds and time.monotonic() + longest > deadline:
            log(f"  stopped after {r} rounds (deadline)")
            break
        t0 = time.monotonic()
        for pos, label in enumerate(round_order(labels, r)):
            res = dict(by_label[label].epoch())
            res.update(round=r, position=pos)
            out[label].append(res)
        longest = max(longest, time.monotonic() - t0)
        log(f"  round {r}: " + "  ".join(f"{lb} {out[lb][-1]['epoch_s']:.3f}" for lb in labels))
    return {lb: v for lb, v in out.items() if lb in labels}


def spread(values: Sequence[float]) -> Dict[str, object]:
    """Median and spread of per-round values: min, max, interquartile range, count, and the values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return {"median": None, "min": None, "max": None, "q25": None, "q75": None, "n": 0, "values": []}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "min": float(v.min()), "max": float(v.max()), "q25": float(q25),
            "q75": float(q75), "n": int(len(v)), "values": [round(float(x), 5) for x in v]}


def round_ratios(num: Sequence[dict], den: Sequence[dict], key: str = "epoch_s",
                 den_key: Optional[str] = None) -> List[float]:
    """``num[key] / den[den_key]`` round by round (both lists in round order, one entry per round)."""
    dk = den_key or key
    return [a[key] / b[dk] for a, b in zip(num, den) if b[dk] > 0]


def amortised_ratios(method: Sequence[dict], joint: Sequence[dict], every: int = 20) -> Dict[str, List[float]]:
    """A method that does a costly pass once every ``every`` epochs (D&R's diagnosis, default H = 20), run so
    that it does the pass every *second* epoch: rounds alternate between an epoch that ends with the pass
    (``did_pass``) and one that follows it. For each such pair of consecutive rounds, the cost over the real
    schedule, as a ratio to joint's epoch in the same rounds:

        ((every - 1) * train_other / joint_other + train_after / joint_after + pass / joint_other) / every

    where ``train_other`` is the training part of the epoch that ends with the pass (no pass before it),
    ``train_after`` the training right after a pass (a re-initialised encoder may train differently), and
    ``pass`` the epoch-end time of the pass. Also returned per pair: the two training ratios and the pass
    in joint epochs."""
    out: Dict[str, List[float]] = {"amortised": [], "train_other": [], "train_after": [], "pass_joint_epochs": []}
    for k in range(len(method) - 1):
        a, b = method[k], method[k + 1]
        if not (a.get("did_pass") and not a.get("after_pass") and b.get("after_pass") and not b.get("did_pass")):
            continue
        ja, jb = joint[k]["epoch_s"], joint[k + 1]["epoch_s"]
        other, after, cost = a["train_s"] / ja, b["train_s"] / jb, a["end_s"] / ja
        out["amortised"].append(((every - 1) * other + after + cost) / every)
        out["train_other"].append(other)
        out["train_after"].append(after)
        out["pass_joint_epochs"].append(cost)
    return out
