"""Honest-leaderboard statistics on hand-computed cases: t interval, Holm, paired tests vs joint and joint-aux,
the beyond-noise mark, and the paper-protocol (best-on-test) inflation from a tiny fake grid."""
import json
import math

import pytest

from mmbalance.report import aggregate as A
from mmbalance.report import compare as C
from mmbalance.report import leaderboard as L


def _summary(method, seed, acc, select_on="val"):
    return {"method": method, "seed": seed, "dataset": "toy", "best_epoch": 1, "wall_time_s": 1.0,
            "select_on": select_on, "val": {"acc": acc, "macro_f1": acc, "map": acc, "modality_acc": {}},
            "test": {"acc": acc, "macro_f1": acc, "map": acc, "modality_acc": {}}, "probe": {}}


def test_holm_on_a_hand_computed_example():
    # m = 3 defined p-values sorted: a 0.01 (x3 = 0.03), c 0.03 (x2 = 0.06), b 0.04 (x1 = 0.04 -> max 0.06)
    adj = L.holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": math.nan})
    assert adj["a"] == pytest.approx(0.03) and adj["c"] == pytest.approx(0.06) and adj["b"] == pytest.approx(0.06)
    assert math.isnan(adj["d"])  # undefined stays undefined and is not counted in m
    assert L.holm({"x": 0.5, "y": 0.6}) == {"x": 1.0, "y": 1.0}  # capped at 1, monotone
    assert L.holm({"only": 0.02}) == {"only": 0.02}  # a family of one is not corrected
    assert L.holm({"p": 0.001, "q": 0.04}) == {"p": pytest.approx(0.002), "q": pytest.approx(0.04)}


def test_t_interval_by_hand():
    # diffs 0.01, 0.03, 0.02: mean 0.02, sd 0.01, n 3, t(0.975, 2) = 4.302652729911275
    low, high = L.t_interval([0.01, 0.03, 0.02])
    half = 4.302652729911275 * 0.01 / math.sqrt(3)
    assert low == pytest.approx(0.02 - half, abs=1e-12) and high == pytest.approx(0.02 + half, abs=1e-12)
    assert all(math.isnan(x) for x in L.t_interval([0.05]))
    assert L.t_interval([0.02, 0.02, 0.02]) == (pytest.approx(0.02), pytest.approx(0.02))  # zero spread
    low90, high90 = L.t_interval([0.01, 0.03, 0.02], level=0.90)  # t(0.95, 2) = 2.919985580355516
    assert high90 - low90 == pytest.approx(2 * 2.919985580355516 * 0.01 / math.sqrt(3))


def test_paired_differences_ci_and_holm_against_both_references():
    base = {0: 0.80, 1: 0.82, 2: 0.81}
    runs = [_summary("joint", s, a) for s, a in base.items()]
    runs += [_summary("joint-aux", s, a + d) for (s, a), d in zip(base.items(), (0.01, 0.03, 0.02))]
    runs += [_summary("m", s, a + d) for (s, a), d in zip(base.items(), (0.05, 0.01, 0.03))]
    lb = L.compute(runs, ["joint", "joint-aux", "m"])
    aux = lb["rows"]["joint-aux"]["vs"]["joint"]
    # diffs 0.01, 0.03, 0.02 -> t = 0.02 / (0.01 / sqrt 3) = 3.4641; df 2: p = 1 - t / sqrt(2 + t^2) = 0.074180
    assert aux["mean_diff"] == pytest.approx(0.02)
    assert aux["p"] == pytest.approx(1 - 3.4641016 / math.sqrt(14), abs=1e-6)
    assert aux["ci"] == [pytest.approx(x) for x in L.t_interval([0.01, 0.03, 0.02])]
    # m vs joint: diffs 0.05, 0.01, 0.03: mean 0.03, sd 0.02, t = 2.598076; p = 1 - t / sqrt(2 + t^2) = 0.121690
    m = lb["rows"]["m"]["vs"]["joint"]
    t = 0.03 / (0.02 / math.sqrt(3))
    assert m["p"] == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-6) and m["family_size"] == 2
    # Holm over the family {joint-aux 0.074180, m 0.121690}: 2 x 0.074180 = 0.148360, then max(0.148360, 0.121690)
    assert aux["p_holm"] == pytest.approx(2 * aux["p"]) and m["p_holm"] == pytest.approx(2 * aux["p"])
    # m vs joint-aux: diffs 0.04, -0.02, 0.01; joint vs joint-aux: -0.01, -0.03, -0.02
    assert lb["rows"]["m"]["vs"]["joint-aux"]["mean_diff"] == pytest.approx(0.01)
    assert lb["rows"]["joint"]["vs"]["joint-aux"]["mean_diff"] == pytest.approx(-0.02)
    assert "joint" not in lb["rows"]["joint"]["vs"] and lb["references"] == ["joint", "joint-aux"]
    assert lb["rows"]["m"]["single_seed"] == {"min": pytest.approx(0.83), "max": pytest.approx(0.85)}


def test_beyond_noise_mark_needs_holm_and_the_interval():
    aux = [0.80, 0.82, 0.81, 0.83, 0.79]
    runs = [_summary("joint", s, a - 0.03 + e) for s, a, e in zip(range(5), aux, (0.001, -0.002, 0, 0.002, -0.001))]
    runs += [_summary("joint-aux", s, a) for s, a in enumerate(aux)]
    runs += [_summary("steady", s, a + d) for s, a, d in zip(range(5), aux, (0.020, 0.022, 0.018, 0.021, 0.019))]
    runs += [_summary("noisy", s, a + d) for s, a, d in zip(range(5), aux, (0.06, -0.03, 0.05, -0.02, 0.01))]
    runs += [_summary("worse", s, a + d) for s, a, d in zip(range(5), aux, (-0.020, -0.022, -0.018, -0.021, -0.019))]
    lb = L.compute(runs, ["joint", "joint-aux", "steady", "noisy", "worse"])
    marks = {m: lb["rows"][m]["beyond_noise"] for m in lb["methods"]}
    assert marks == {"joint": L.WORSE, "joint-aux": "", "steady": L.BETTER, "noisy": "", "worse": L.WORSE}
    assert lb["rows"]["noisy"]["vs"]["joint-aux"]["mean_diff"] > 0  # better on average, but not beyond noise
    assert L.verdict(lb) == "Better than joint-aux beyond noise: steady."
    headers, rows = L.table(lb)
    assert headers[3:9] == ["Δ vs joint [95% CI] (pp)", "p (Holm)", "Δ vs joint-aux [95% CI] (pp)", "p (Holm)",
                            "vs joint-aux", "best-on-test acc (%)"]
    steady = rows[2]
    assert steady[0] == "steady" and steady[5].startswith("+2.00 [+1.") and steady[7] == L.BETTER
    # without joint-aux there is no bar, and the verdict says so
    lb2 = L.compute([r for r in runs if r["method"] != "joint-aux"], ["joint", "steady"])
    assert lb2["bar"] is None and "No joint-aux" in L.verdict(lb2)
    # a constant difference has zero variance: no p-value, so no mark however large it is
    lb0 = L.compute(runs + [_summary("shifted", s, a + 0.05) for s, a in enumerate(aux)],
                    ["joint", "joint-aux", "shifted"])
    shifted = lb0["rows"]["shifted"]
    assert shifted["beyond_noise"] == "" and "zero variance" in shifted["vs"]["joint-aux"]["p_note"]
    # a one-seed grid: no interval, no p, no mark
    lb1 = L.compute([r for r in runs if r["seed"] == 0], ["joint", "joint-aux", "steady"])
    steady1 = lb1["rows"]["steady"]
    assert steady1["beyond_noise"] == "" and math.isnan(steady1["vs"]["joint-aux"]["p_holm"])


def _fake_run(d, method, seed, test_per_epoch, best_epoch):
    """A run folder as the trainer leaves it: metrics.jsonl (one record per epoch) + summary.json, whose test
    accuracy is that of the epoch selected on validation (``best_epoch``)."""
    d.mkdir(parents=True)
    d.joinpath("metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "train": {"loss": 1.0}, "val": {"acc": 0.5}, "test": {"acc": a}}) + "\n"
        for e, a in enumerate(test_per_epoch)))
    s = _summary(method, seed, test_per_epoch[best_epoch])
    s["best_epoch"] = best_epoch
    d.joinpath("summary.json").write_text(json.dumps(s))


def test_inflation_from_a_tiny_fake_grid(tmp_path):
    grid = tmp_path / "grid"
    epochs = {("joint", 0): ([0.70, 0.78, 0.74], 2), ("joint", 1): ([0.72, 0.75, 0.80], 1),
              ("joint-aux", 0): ([0.71, 0.80, 0.79], 1), ("joint-aux", 1): ([0.73, 0.77, 0.77], 2)}
    for (m, s), (accs, best) in epochs.items():
        _fake_run(grid / m / f"seed{s}", m, s, accs, best)
    (grid / "grid.json").write_text(json.dumps({"methods": ["joint", "joint-aux"], "runs": [
        {"method": m, "seed": s, "dir": f"{m}/seed{s}"} for (m, s) in epochs]}))
    assert L.paper_protocol(grid / "joint" / "seed1") == {"acc": 0.80, "epoch": 2}
    assert L.paper_protocol(tmp_path / "nothing") is None
    agg = C.aggregate_grid(grid)
    rows = agg["leaderboard"]["rows"]
    # joint: honest 0.74, 0.75 -> best-on-test 0.78, 0.80 -> inflation 0.04, 0.05
    assert rows["joint"]["acc"]["mean"] == pytest.approx(0.745)
    assert rows["joint"]["paper"]["mean"] == pytest.approx(0.79)
    assert rows["joint"]["inflation"]["values"] == [pytest.approx(0.04), pytest.approx(0.05)]
    assert rows["joint"]["inflation"]["std"] == pytest.approx(math.sqrt(0.5 * 0.01 ** 2 * 2 / 2))
    # joint-aux: honest 0.80, 0.77 -> best-on-test 0.80, 0.77 (tie: earliest epoch) -> inflation 0, 0
    assert rows["joint-aux"]["inflation"]["mean"] == pytest.approx(0.0)
    md = A.results_markdown(agg)
    assert "| joint | 2 | 74.50 ± 0.71 | (reference) |  | -4.00 [" in md
    assert "| 79.00 ± 1.41 | +4.50 ± 0.71 | 74.0–75.0 |" in md
    assert "No method beats joint-aux beyond noise on this grid." in md


def test_a_run_selected_on_test_is_labelled():
    runs = [_summary("joint", 0, 0.8), _summary("joint-aux", 0, 0.81, select_on="test")]
    lb = L.compute(runs, ["joint", "joint-aux"])
    assert L.table(lb)[1][1][0] == "joint-aux (selected on test!)"
