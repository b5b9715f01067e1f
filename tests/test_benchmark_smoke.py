"""The speed benchmark runs end to end on CPU with tiny sizes (a smoke test: no timing is asserted), its
drift-cancelling arithmetic is right on hand-made cases, and BENCHMARKS.md's generated tables match their JSON."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_runs_on_cpu_tiny():
    mod = _load("run_benchmarks")
    res = mod.main(["--tiny", "--methods", "dus-h[q8],dus-h[lag1],diagnose-relearn[monitor],ogm-ge", "--profile"])
    g = res["groups"]["eager"]
    assert {"device", "torch", "date"} <= set(res["meta"])
    assert set(g["configs"]) == {"floor", "joint", "dus-h[q8]", "dus-h[lag1]", "diagnose-relearn[monitor]", "ogm-ge"}
    assert g["configs"]["floor"]["epoch_s"]["median"] > 0 and g["configs"]["joint"]["epoch_s"]["median"] > 0
    # interleaved: every configuration once per round, the order reversed in the second round
    for label, c in g["configs"].items():
        assert [r["round"] for r in c["rounds"]] == [0, 1]
        p0, p1 = (r["position"] for r in c["rounds"])
        assert p0 + p1 == len(g["configs"]) - 1
        assert all(r["train_s"] > 0 for r in c["rounds"])
    monitor = g["configs"]["diagnose-relearn[monitor]"]["rounds"]
    assert all(r["did_pass"] and r["end_s"] > 0 for r in monitor)  # a diagnosis at every epoch's end
    assert g["ratios"]["joint/floor"]["n"] == 2 and g["ratios"]["ogm-ge/joint"]["median"] > 0
    assert "diagnose-relearn[monitor]/joint amortised H=20" in g["ratios"]
    prof = g["profile"]["joint_vs_floor"]
    assert prof["per_step_wall_ms"]["joint"] > 0 and prof["cpu_more"]  # joint does more host work per step


def test_benchmark_runs_through_the_real_cremad_layout_on_cpu():
    mod = _load("run_benchmarks")
    res = mod.main(["--layout", "cremad", "--n", "20", "--size", "16", "--batch", "8", "--rounds", "1",
                    "--methods", ""])
    g = res["groups"]["eager"]
    assert g["configs"]["floor"]["epoch_s"]["median"] > 0 and g["configs"]["joint"]["epoch_s"]["median"] > 0


class _Scripted:
    """A runner whose epochs take ``base * drift`` seconds, the drift growing with every epoch of *any* runner."""

    clock = [0]

    def __init__(self, label, base, drift=1.1):
        self.label, self.base, self.drift = label, base, drift

    def epoch(self):
        _Scripted.clock[0] += 1
        t = self.base * self.drift ** _Scripted.clock[0]
        return {"epoch_s": t, "train_s": t, "end_s": 0.0}


def test_interleaving_alternates_the_order_and_cancels_a_steady_drift():
    il = _load("interleave")
    _Scripted.clock[0] = 0
    a, b = _Scripted("a", 2.0), _Scripted("b", 1.0)
    rounds = il.interleave([a, b], rounds=4, warmup=1, log=lambda s: None)
    assert [r["position"] for r in rounds["a"]] == [0, 1, 0, 1]
    ratios = il.round_ratios(rounds["a"], rounds["b"])
    # a before b: 2/1 / 1.1; b before a: 2/1 * 1.1 -- the median of the rounds is the true ratio within the drift
    assert ratios == pytest.approx([2 / 1.1, 2 * 1.1, 2 / 1.1, 2 * 1.1])
    s = il.spread(ratios)
    assert s["median"] == pytest.approx((2 / 1.1 + 2 * 1.1) / 2) and s["n"] == 4
    assert s["min"] == pytest.approx(2 / 1.1) and s["max"] == pytest.approx(2.2)
    # sequential measurement (all of a, then all of b) would put the whole drift into the ratio
    assert abs(s["median"] - 2) < abs(2 / 1.1 ** 4 - 2)


def test_deadline_keeps_the_references_and_skips_the_rest():
    il = _load("interleave")
    _Scripted.clock[0] = 0
    runners = [_Scripted(x, 1.0, 1.0) for x in ("floor", "joint", "m1", "m2")]
    skipped = {}
    rounds = il.interleave(runners, rounds=5, warmup=1, min_rounds=2, deadline=0.0, skipped=skipped,
                           log=lambda s: None)
    assert set(rounds) == {"floor", "joint"} and set(skipped) == {"m1", "m2"}
    assert len(rounds["joint"]) == 2  # min_rounds are always measured


def test_amortised_cost_by_hand():
    il = _load("interleave")
    # rounds: an epoch that ends with a diagnosis (train 1.1 s, diagnosis 0.5 s), then one right after it (1.2 s);
    # joint 1.0 s in both rounds: ((20 - 1) * 1.1 + 1.2 + 0.5) / 20 = 1.13
    method = [{"train_s": 1.1, "end_s": 0.5, "did_pass": True, "after_pass": False},
              {"train_s": 1.2, "end_s": 0.0, "did_pass": False, "after_pass": True}]
    joint = [{"epoch_s": 1.0}, {"epoch_s": 1.0}]
    am = il.amortised_ratios(method, joint, every=20)
    assert am["amortised"] == pytest.approx([1.13]) and am["pass_joint_epochs"] == pytest.approx([0.5])
    assert il.amortised_ratios(method[::-1], joint, every=20)["amortised"] == []  # no (pass, after) pair


def test_benchmarks_md_tables_are_generated_from_their_json():
    render = _load("render_benchmarks")
    assert render.main([str(BENCH / "results_cpu.json"), "--key", "cpu", "--check"]) == 0


@pytest.mark.slow
def test_gpu_session_script_runs_at_tiny_sizes(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, OMP_NUM_THREADS="1")
    subprocess.run(["bash", str(BENCH / "gpu_session.sh"), "--tiny"], cwd=BENCH.parent, env=env, check=True)
    written = {p.name for p in tmp_path.iterdir()}
    assert {"gpu_session.json", "gpu_session.log", "device.txt", "BENCHMARKS.md"} <= written
