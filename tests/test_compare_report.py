"""`mmbalance compare` / `mmbalance report`: aggregation maths, grid resumption, report generation."""
import json
import math
import re

import numpy as np
import pytest

from mmbalance.cli import main
from mmbalance.report import aggregate as A
from mmbalance.report import compare as C

# ---------------------------------------------------------------------------- aggregation maths


def _summary(method, seed, acc, f1=None, mAP=None, heads=None, probe=None, wall=1.0, best=3):
    return {"method": method, "seed": seed, "dataset": "toy", "best_epoch": best, "wall_time_s": wall,
            "val": {"acc": acc, "macro_f1": acc, "map": acc, "modality_acc": {}},
            "test": {"acc": acc, "macro_f1": acc if f1 is None else f1, "map": acc if mAP is None else mAP,
                     "modality_acc": heads or {}},
            "probe": probe or {}}


def test_mean_std_is_sample_std():
    s = A.mean_std([0.80, 0.84, 0.88])
    assert s["mean"] == pytest.approx(0.84)
    # hand-computed: deviations ±0.04, 0 -> sum of squares 0.0032, / (n-1=2) = 0.0016 -> 0.04
    assert s["std"] == pytest.approx(0.04)
    assert s["n"] == 3
    one = A.mean_std([0.5])
    assert one["mean"] == 0.5 and math.isnan(one["std"])
    assert A.mean_std([0.5, None, float("nan")])["n"] == 1


def test_paired_comparison_matches_hand_computed_t_test():
    ref = {0: 0.80, 1: 0.82, 2: 0.85}
    oth = {0: 0.83, 1: 0.83, 2: 0.90}
    r = A.paired_comparison(ref, oth)
    d = np.array([0.03, 0.01, 0.05])
    assert r["n"] == 3 and r["seeds"] == [0, 1, 2]
    assert r["mean_diff"] == pytest.approx(0.03)
    assert r["std_diff"] == pytest.approx(0.02)  # deviations -> 0, -0.02, 0.02: sqrt(0.0008 / 2)
    t = 0.03 / (0.02 / math.sqrt(3))  # = 2.598...
    assert r["t"] == pytest.approx(t)
    from scipy import stats

    assert r["p_value"] == pytest.approx(2 * stats.t.sf(t, df=2))  # two-sided, n-1 degrees of freedom
    assert r["p_value"] == pytest.approx(0.1215, abs=1e-3)
    assert (r["wins"], r["ties"], r["losses"]) == (3, 0, 0)
    assert np.allclose(r["diffs"], d)


def test_paired_comparison_edge_cases():
    # only common seeds are paired; one seed -> no p-value, stated why
    r = A.paired_comparison({0: 0.8, 1: 0.9}, {1: 0.85, 2: 0.99})
    assert r["seeds"] == [1] and r["n"] == 1 and math.isnan(r["p_value"]) and "at least 2" in r["p_note"]
    assert (r["wins"], r["ties"], r["losses"]) == (0, 0, 1)
    # constant differences: t undefined -> NaN, not a fake p = 0
    r = A.paired_comparison({0: 0.8, 1: 0.7}, {0: 0.9, 1: 0.8})
    assert math.isnan(r["p_value"]) and "zero variance" in r["p_note"] and r["wins"] == 2
    # identical methods: ties
    r = A.paired_comparison({0: 0.8, 1: 0.7}, {0: 0.8, 1: 0.7})
    assert (r["wins"], r["ties"], r["losses"]) == (0, 2, 0) and r["mean_diff"] == 0
    r = A.paired_comparison({}, {0: 0.5})
    assert r["n"] == 0 and math.isnan(r["mean_diff"])


def test_aggregate_grid_of_summaries():
    heads = lambda a, b: {"audio": a, "image": b}  # noqa: E731
    probe = lambda t, f: {"audio": {"trained": t, "floor": f}}  # noqa: E731
    s = [_summary("joint", 0, 0.80, heads=heads(0.3, 0.7), probe=probe(0.5, 0.2), wall=10),
         _summary("joint", 1, 0.82, heads=heads(0.5, 0.7), probe=probe(0.7, 0.2), wall=12),
         _summary("joint-aux", 1, 0.86, heads=heads(0.6, 0.8), probe=probe(0.8, 0.2)),
         _summary("joint-aux", 0, 0.81, heads=heads(0.4, 0.8), probe=probe(0.6, 0.2))]
    g = A.aggregate(s, order=["joint", "joint-aux", "absent"])
    assert g["methods"] == ["joint", "joint-aux"] and g["reference"] == "joint" and g["missing"] == ["absent"]
    j, x = g["results"]["joint"], g["results"]["joint-aux"]
    assert j["paired"] is None
    assert j["test"]["acc"]["mean"] == pytest.approx(0.81)
    assert j["test"]["acc"]["std"] == pytest.approx(np.std([0.80, 0.82], ddof=1))
    assert x["seeds"] == [0, 1]  # sorted by seed
    assert j["modality_acc"]["audio"]["mean"] == pytest.approx(0.4)
    assert x["probe"]["audio"]["trained"]["mean"] == pytest.approx(0.7)
    assert x["probe"]["audio"]["floor"]["mean"] == pytest.approx(0.2)
    assert j["wall_time_s"]["mean"] == pytest.approx(11) and j["wall_time_s"]["total"] == pytest.approx(22)
    p = x["paired"]["acc"]
    assert p["diffs"] == pytest.approx([0.01, 0.04])  # paired by seed, not by position
    assert p["mean_diff"] == pytest.approx(0.025) and p["wins"] == 2
    assert g["modalities"] == ["audio", "image"]
    with pytest.raises(ValueError, match="two runs with seed 0"):
        A.aggregate(s + [_summary("joint", 0, 0.5)])


def test_tables_render_numbers_and_dashes():
    g = A.aggregate([_summary("joint", 0, 0.80), _summary("joint", 1, 0.82), _summary("ogm", 0, 0.9)])
    headers, rows = A.main_table(g)
    assert rows[0][2] == "81.00 ± 1.41" and rows[0][5] == "(reference)"
    assert rows[1][2] == "90.00 ± —"  # one seed: no std
    assert rows[1][5] == "+10.00" and rows[1][6] == "—" and rows[1][7] == "1/0/0"
    md = A.results_markdown(g)
    assert "| joint | 2 | 81.00 ± 1.41 |" in md and "ddof=1" in md
    assert A.fmt_p(0.0123) == "0.012" and A.fmt_p(1e-5) == "1.0e-05" and A.fmt_p(float("nan")) == "—"
    assert json.dumps(A.json_safe({"a": float("nan"), "b": [np.float32(1.5)]}), allow_nan=False) == \
        '{"a": null, "b": [1.5]}'


# ---------------------------------------------------------------------------- planning / validation


def test_names_seeds_and_overrides():
    assert C.safe_name("ogm-ge+dus-h") == "ogm-ge__dus-h"
    assert C.safe_name("a/b c") == "a_b_c"
    assert C.parse_seeds("0,1, 3-5") == [0, 1, 3, 4, 5]
    with pytest.raises(ValueError, match="twice"):
        C.parse_seeds("1,1")
    common, per = C.split_overrides(["optim.lr=0.1", "method_args.unimodal.modality=b"], ["joint", "joint+unimodal"])
    assert common == ["optim.lr=0.1"] and per == {"unimodal": ["method_args.unimodal.modality=b"]}
    with pytest.raises(ValueError, match="no method in --methods stacks 'dus-h'"):
        C.split_overrides(["method_args.dus-h.gamma=2"], ["joint"])
    with pytest.raises(ValueError, match="--seeds"):
        C.split_overrides(["train.seed=3"], ["joint"])


def test_unknown_methods_fail_before_anything_runs(tmp_path, capsys):
    rc = main(["compare", "--dataset", "synthetic", "--methods", "joint,jiont,nosuch+joint", "--out",
               str(tmp_path / "g"), "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "'jiont'" in err and "'nosuch'" in err and "Did you mean 'joint'" in err and "Nothing was run" in err
    assert not (tmp_path / "g").exists()


def test_per_method_args_reach_only_their_runs(tmp_path):
    import argparse

    p = argparse.ArgumentParser()
    C.add_arguments(p)
    args = p.parse_args(["--dataset", "synthetic", "--methods", "joint,unimodal", "--seeds", "0,1", "--epochs", "1",
                         "--out", str(tmp_path / "g"), "method_args.unimodal.modality=b", "optim.lr=0.02"])
    plan = C.plan_grid(args)
    assert [(r["method"], r["seed"], r["status"]) for r in plan] == [
        ("joint", 0, "todo"), ("joint", 1, "todo"), ("unimodal", 0, "todo"), ("unimodal", 1, "todo")]
    by = {(r["method"], r["seed"]): r["cfg"] for r in plan}
    assert by[("joint", 0)].method_args == {} and by[("unimodal", 1)].method_args == {"unimodal": {"modality": "b"}}
    assert all(c.optim.lr == 0.02 for c in by.values()) and by[("unimodal", 1)].train.seed == 1
    assert plan[3]["dir"] == tmp_path / "g" / "unimodal" / "seed1"
    # a bad option of one method is caught at planning time, naming the method
    args.overrides = ["method_args.unimodal.modalty=b"]
    with pytest.raises(ValueError, match="unimodal.*no option 'modalty'"):
        C.plan_grid(args)


# ---------------------------------------------------------------------------- end to end


GRID = ["compare", "--dataset", "synthetic", "--methods", "joint,joint-aux", "--seeds", "0,1", "--epochs", "2",
        "--batch-size", "32", "--no-progress", "log.tensorboard=false", "eval.probe=false"]


@pytest.fixture
def counted(monkeypatch):
    """Counts the runs actually trained; ``interrupt`` = (method, seed, epoch) raises Ctrl-C after that epoch
    is logged (the checkpoint of the previous epoch is on disk), as a user interrupting the grid would."""
    calls, interrupt = [], []
    real = C.train_run

    def spy(cfg, on_epoch=None):
        calls.append((cfg.method, cfg.train.seed))

        def hook(record):
            if interrupt and interrupt[0] == (cfg.method, cfg.train.seed, record["epoch"]):
                raise KeyboardInterrupt
            if on_epoch is not None:
                on_epoch(record)

        return real(cfg, hook)

    monkeypatch.setattr(C, "train_run", spy)
    spy.calls, spy.interrupt = calls, interrupt
    return spy


def test_grid_runs_skips_completed_and_finishes_interrupted(tmp_path, counted, capsys):
    out = tmp_path / "cmp"
    counted.interrupt.append(("joint-aux", 1, 1))
    assert main(GRID + ["--out", str(out)]) == 130
    assert counted.calls == [("joint", 0), ("joint", 1), ("joint-aux", 0), ("joint-aux", 1)]
    assert "run the same command again" in capsys.readouterr().err
    victim = out / "joint-aux" / "seed1"
    assert (victim / "last.pt").is_file() and not (victim / "summary.json").exists()
    summaries = {d: (d / "summary.json").stat().st_mtime_ns for d in out.glob("*/seed*") if d != victim}
    assert len(summaries) == 3

    counted.calls.clear()
    counted.interrupt.clear()
    assert main(GRID + ["--out", str(out)]) == 0
    assert counted.calls == [("joint-aux", 1)]  # only the unfinished run trained again
    text = capsys.readouterr().out
    assert text.count("complete, skipped") == 3 and "resumed" in text
    for d, mtime in summaries.items():
        assert (d / "summary.json").stat().st_mtime_ns == mtime
    assert (victim / "summary.json").is_file()
    assert [json.loads(l)["epoch"] for l in (victim / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    assert "test acc (%)" in text and "Δ acc vs joint" in text
    grid = json.loads((out / "grid.json").read_text())
    assert grid["methods"] == ["joint", "joint-aux"] and grid["reference"] == "joint"
    assert grid["results"]["joint-aux"]["paired"]["acc"]["n"] == 2
    assert {r["status"] for r in grid["runs"]} == {"complete"}
    assert "| joint-aux | 2 |" in (out / "results.md").read_text()

    # deleting a summary.json (a run that never finished writing it) makes just that run complete again
    (out / "joint" / "seed0" / "summary.json").unlink()
    counted.calls.clear()
    assert main(GRID + ["--out", str(out)]) == 0
    assert counted.calls == [("joint", 0)]

    # a changed config is refused (nothing run) unless --overwrite
    counted.calls.clear()
    assert main(GRID + ["optim.lr=0.01", "--out", str(out)]) == 2
    assert counted.calls == [] and "optim.lr: 0.05 -> 0.01" in capsys.readouterr().err
    assert main(GRID[:4] + ["joint"] + GRID[5:] + ["optim.lr=0.01", "--out", str(out), "--overwrite"]) == 0
    assert counted.calls == [("joint", 0), ("joint", 1)]


def test_report_for_grid_and_run(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(GRID[:4] + ["joint,joint-aux,unimodal"] + GRID[5:] + ["--out", str(out)]) == 0
    (out / "grid.json").unlink()  # the report also works from the run folders alone
    assert main(["report", str(out)]) == 0
    page = (out / "report" / "report.html").read_text()
    assert "<table>" in page and "joint-aux" in page and "unimodal" in page
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{200,}"', page)) >= 2
    md = (out / "report" / "report.md").read_text()
    assert "| method | seeds | test acc (%)" in md and "![test_acc](test_acc.png)" in md
    for name in ("test_acc.png", "modality_curves.png"):
        assert (out / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    run = out / "joint-aux" / "seed0"
    assert main(["report", str(run), "--out", str(tmp_path / "rr")]) == 0
    page = (tmp_path / "rr" / "report.html").read_text()
    assert "<table>" in page and "data:image/png;base64," in page
    assert (tmp_path / "rr" / "report.md").is_file() and (tmp_path / "rr" / "curves.png").is_file()


def test_report_calls_matching_method_plot_modules(tmp_path, monkeypatch):
    """plots_* modules are discovered and called for runs whose (stacked) method contains one of METHODS."""
    import types

    import mmbalance.report as R
    from mmbalance.report import html as H

    seen = []

    def fake_plot(run_dir, out_dir):
        seen.append(run_dir.name)
        out_dir.mkdir(parents=True, exist_ok=True)
        p = out_dir / "fake_signal.png"
        from matplotlib.figure import Figure

        fig = Figure(figsize=(2, 2))
        fig.add_subplot(111).plot([0, 1], [1, 0])
        fig.savefig(p)
        return [p]

    fake = types.SimpleNamespace(METHODS=("joint-aux",), plot=fake_plot)
    broken = types.SimpleNamespace(METHODS=("joint",), plot=lambda r, o: 1 / 0)
    monkeypatch.setattr(H, "plot_modules", lambda: ({"plots_fake": fake, "plots_broken": broken}, []))
    assert R.modules_for("ogm-ge+joint-aux", {"plots_fake": fake}) == ["plots_fake"]
    assert R.modules_for("joint-auxx", {"plots_fake": fake}) == []
    out = tmp_path / "cmp"
    assert main(GRID + ["--seeds", "1,0", "--out", str(out)]) == 0
    res = H.build_report(out, tmp_path / "rep")
    assert seen == ["seed0"]  # one run per method, the lowest seed
    assert (tmp_path / "rep" / "methods" / "joint-aux" / "fake_signal.png").is_file()
    assert any("plots_broken" in w and "ZeroDivisionError" in w for w in res["warnings"])
    assert "fake signal" in (tmp_path / "rep" / "report.html").read_text()


def test_real_plot_modules_follow_the_contract():
    import mmbalance.report as R

    modules, problems = R.plot_modules()
    assert not problems, problems
    for name, mod in modules.items():
        assert all(isinstance(m, str) for m in mod.METHODS), name


def test_failed_run_is_recorded_and_the_grid_goes_on(tmp_path, monkeypatch, capsys):
    real = C.train_run

    def flaky(cfg, on_epoch=None):
        if cfg.train.seed == 0:
            raise RuntimeError("boom")
        return real(cfg, on_epoch)

    monkeypatch.setattr(C, "train_run", flaky)
    out = tmp_path / "cmp"
    argv = GRID[:4] + ["joint"] + GRID[5:] + ["--epochs", "1", "--out", str(out)]
    assert main(argv) == 1
    assert "joint seed 0: RuntimeError: boom" in capsys.readouterr().err
    grid = json.loads((out / "grid.json").read_text())
    assert [(r["seed"], r["status"]) for r in grid["runs"]] == [(0, "failed"), (1, "complete")]
    assert grid["results"]["joint"]["n"] == 1 and grid["results"]["joint"]["test"]["acc"]["std"] is None
    # --stop-on-error: nothing after the failed run starts, the table of what exists is still written
    monkeypatch.setattr(C, "train_run", lambda cfg, on_epoch=None: (_ for _ in ()).throw(RuntimeError("boom")))
    assert main(GRID[:4] + ["joint"] + GRID[5:] + ["--epochs", "1", "--seeds", "0,1,2", "--stop-on-error",
                                                    "--out", str(tmp_path / "cmp2")]) == 1
    text = capsys.readouterr()
    assert "stopping (--stop-on-error)" in text.out and "[2/3]" not in text.out
    runs = json.loads((tmp_path / "cmp2" / "grid.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["failed", "missing", "missing"]
