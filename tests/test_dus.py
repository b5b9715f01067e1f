"""DUS (reconstructed): score recursion, heuristic sizes, batcher, REINFORCE, the real loop, resume."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from mmbalance import Plugin, Trainer
from mmbalance.engine import IncompatiblePluginsError
from mmbalance.methods import METHODS, build_plugins
from mmbalance.methods.dus import (DUSBatcher, Reinforce, allocate_sizes, discounted_returns, discrepancy,
                                   heuristic_sizes, imbalance, update_running_score)

from conftest import assert_resume_is_exact, load_metrics, make_cfg


# ----------------------------------------------------------------------------- scores
def test_running_score_is_the_cumulative_mean_by_hand():
    seq = [torch.tensor([0.2, 0.6]), torch.tensor([0.4, 0.6]), torch.tensor([0.9, 0.0])]
    s_hat = None
    got = []
    for t, s in enumerate(seq, 1):
        s_hat = update_running_score(s_hat, s, t)
        got += s_hat.tolist()
    # t=1: s1; t=2: 1/2*0.2 + 1/2*0.4 = 0.3; t=3: 2/3*0.3 + 1/3*0.9 = 0.5 ; second column 0.6, 0.6, 0.4
    assert got == pytest.approx([0.2, 0.6, 0.3, 0.6, 0.5, 0.4])


def test_running_score_ema_option_by_hand():
    s_hat = None
    for t, v in enumerate([0.2, 0.4, 0.9], 1):
        s_hat = update_running_score(s_hat, torch.tensor([v]), t, ema_momentum=0.5)
    # 0.2 -> 0.5*0.2+0.5*0.4 = 0.3 -> 0.5*0.3+0.5*0.9 = 0.6
    assert float(s_hat) == pytest.approx(0.6)


def test_running_score_is_out_of_place():
    a = torch.tensor([0.5, 0.5])
    b = update_running_score(a, torch.tensor([1.0, 0.0]), 2)
    assert a.tolist() == [0.5, 0.5] and b.tolist() == pytest.approx([0.75, 0.25])


def test_discrepancy_by_hand():
    assert discrepancy(torch.tensor([0.6, 0.3])).tolist() == pytest.approx([2.0, 0.5])
    # three modalities: 0.6 / mean(0.3, 0.3) = 2 ; 0.3 / mean(0.6, 0.3) = 2/3
    assert discrepancy(torch.tensor([0.6, 0.3, 0.3])).tolist() == pytest.approx([2.0, 2 / 3, 2 / 3])


def test_imbalance_spread():
    assert imbalance([0.7, 0.2]) == pytest.approx(0.5)
    assert imbalance([0.7, 0.2], "std") == pytest.approx(0.25)
    assert imbalance([0.1, 0.5, 0.3]) == pytest.approx(0.4)
    with pytest.raises(ValueError, match="maxmin"):
        imbalance([0.1, 0.2], "var")


# ----------------------------------------------------------------------------- heuristic sizes
def test_heuristic_sizes_by_hand_with_clipping_and_renormalisation():
    # N_B = 32, bounds [16, 64]
    # rho = (2, 0.5): raw = (16, 64) -> clipped (16, 64); budget 64: 16 stays at n_min, 16 + 64c = 64 -> 48
    assert heuristic_sizes([2.0, 0.5], 32, 1.0, 16, 64, preserve_budget=False) == [16, 64]
    assert heuristic_sizes([2.0, 0.5], 32, 1.0, 16, 64, preserve_budget=True) == [16, 48]
    # rho = (1.25, 0.8): raw (25.6, 40) -> rounded (26, 40); budget: c = 64/65.6 -> (24.976, 39.024) -> (25, 39)
    assert heuristic_sizes([1.25, 0.8], 32, 1.0, 16, 64, preserve_budget=False) == [26, 40]
    assert heuristic_sizes([1.25, 0.8], 32, 1.0, 16, 64, preserve_budget=True) == [25, 39]
    # gamma = 2: raw (8, 128) -> clipped to both bounds (16, 64)
    assert heuristic_sizes([2.0, 0.5], 32, 2.0, 16, 64, preserve_budget=False) == [16, 64]
    # three modalities, rho (0.25, 1, 4): raw (128, 32, 8) -> clip (64, 32, 16); budget 96: first at n_max,
    # last at n_min, 64 + 32c + 16 = 96 -> c = 0.5 -> (64, 16, 16)
    assert heuristic_sizes([0.25, 1.0, 4.0], 32, 1.0, 16, 64, preserve_budget=False) == [64, 32, 16]
    assert heuristic_sizes([0.25, 1.0, 4.0], 32, 1.0, 16, 64, preserve_budget=True) == [64, 16, 16]
    # balanced -> plain training
    assert heuristic_sizes([1.0, 1.0], 32, 1.0, 16, 64) == [32, 32]


def test_budget_is_preserved_within_bounds():
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        m = int(torch.randint(2, 5, (1,), generator=g))
        rho = (torch.rand(m, generator=g) * 4 + 0.05).tolist()
        nb = int(torch.randint(2, 80, (1,), generator=g))
        lo, hi = max(1, math.ceil(nb / 2)), 2 * nb
        n = heuristic_sizes(rho, nb, float(torch.rand(1, generator=g)) * 3, lo, hi)
        assert sum(n) == m * nb and all(lo <= k <= hi for k in n)
        # the dominant modality never gets more than a less dominant one
        order = sorted(range(m), key=lambda j: rho[j])
        assert all(n[order[i]] >= n[order[i + 1]] for i in range(m - 1))


def test_allocate_rejects_infeasible_budget():
    with pytest.raises(ValueError, match="cannot be split"):
        allocate_sizes([1, 1], 16, 20, total=50)


def test_size_buckets_by_hand():
    # N_B = 64, bounds [32, 128], multiple 8: units of 8 with bounds [4, 16] and budget 128 / 8 = 16.
    # raw (37, 91) -> units (4.625, 11.375), sum 16 -> floors (4, 11), remainder 1 to the larger fraction -> (5, 11)
    assert allocate_sizes([37, 91], 32, 128, 128, multiple=8) == [40, 88]
    assert allocate_sizes([37, 91], 32, 128, 128) == [37, 91]
    # rho = (2, 0.5): raw (32, 128) -> units (4, 16): both bounds, sum 20 > 16 -> c from the kinks:
    # 4 stays at the lower bound, 16c' = 12 -> (4, 12) -> (32, 96)
    assert heuristic_sizes([2.0, 0.5], 64, 1.0, 32, 128, multiple=8) == [32, 96]
    # without a budget: round(raw / 8) * 8 within the bounds (ceil(30/8) = 4 -> 32 is the lowest size)
    assert allocate_sizes([30, 61, 200], 30, 130, None, multiple=8) == [32, 64, 128]
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        rho = (torch.rand(2, generator=g) * 4 + 0.05).tolist()
        n = heuristic_sizes(rho, 64, 1.0, 32, 128, multiple=8)
        assert sum(n) == 128 and all(k % 8 == 0 and 32 <= k <= 128 for k in n)
    with pytest.raises(ValueError, match="not a multiple"):
        allocate_sizes([1, 1], 32, 128, 100, multiple=8)
    with pytest.raises(ValueError, match="no multiple of 8"):
        allocate_sizes([1, 1], 33, 39, None, multiple=8)


def test_size_multiple_in_the_loop_and_its_errors(tmp_path):
    cfg = make_cfg("method=dus-h", "method_args.dus-h.size_multiple=8", "train.epochs=2", out=tmp_path / "r")
    Trainer(cfg).fit()
    seen = set()
    for line in load_metrics(tmp_path / "r"):
        na, nb = line["steps"]["dus-h/n/a"][:-1], line["steps"]["dus-h/n/b"][:-1]  # last step: trimmed to the budget
        assert all(a % 8 == 0 and b % 8 == 0 and a + b == 64 for a, b in zip(na, nb))
        seen |= set(na)
    assert len(seen) > 1 and min(seen) < 32  # still adapts (the dominant modality 'a' gets fewer), in steps of 8
    with pytest.raises(ValueError, match="size_multiple=12 does not fit N_B=32 .*budget 64 is not a multiple of"):
        Trainer(make_cfg("method=dus-h", "method_args.dus-h.size_multiple=12"))
    with pytest.raises(ValueError, match="size_multiple must be an integer"):
        Trainer(make_cfg("method=dus-rl", "method_args.dus-rl.size_multiple=0"))
    with pytest.warns(UserWarning, match="size_multiple=8 to bound"):
        cfg = make_cfg("method=dus-h", "train.compile=reduce-overhead", "train.epochs=1")
        tr = Trainer(cfg)
        tr.call("on_fit_start")


# ----------------------------------------------------------------------------- the batcher
def test_batcher_nested_budget_and_wrap_by_hand():
    order = torch.arange(100, 125)  # 25 indices
    b = DUSBatcher(lambda: [10, 4], ["a", "b"], base_batch=7)
    batches = list(b.batches(order, 0))
    # budget = 2 * 25 = 50 modality-samples; 14 per step -> 3 full steps (42), then 8 left: (10, 4) * 8/14
    assert [batch.sizes for batch in batches] == [{"a": 10, "b": 4}] * 3 + [{"a": 6, "b": 2}]
    assert batches[0] == list(range(100, 110)) and batches[1] == list(range(110, 120))
    assert batches[2] == list(range(120, 125)) + list(range(100, 105))  # the stream wraps
    assert batches[3] == list(range(105, 111))
    assert b.num_batches(25) == 4 == len(batches)
    assert len(list(DUSBatcher(lambda: [10, 4], ["a", "b"], 7, drop_last=True).batches(order, 0))) == 3


def test_batcher_is_lazy():
    sizes = [[8, 8]]
    b = DUSBatcher(lambda: sizes[0], ["a", "b"], base_batch=8)
    it = b.batches(torch.arange(64), 0)
    assert next(it).sizes == {"a": 8, "b": 8}
    sizes[0] = [4, 12]  # the plug-in changes its mind between steps
    assert next(it).sizes == {"a": 4, "b": 12}


# ----------------------------------------------------------------------------- REINFORCE
def test_reinforce_learns_the_better_arm_of_a_bandit():
    rl = Reinforce(state_dim=1, num_modalities=1, num_actions=2, hidden=16, lr=0.05, gamma=0.9,
                   entropy_coef=0.0, seed=0)
    obs = torch.ones(1)
    noise = torch.Generator().manual_seed(1)
    assert float(rl.probs(obs)[0, 1]) == pytest.approx(0.5)  # zero-initialised output layer: uniform
    for _ in range(60 * 10):
        a = rl.act(obs)
        r = (1.0 if int(a[0]) == 1 else 0.0) + 0.3 * float(torch.randn(1, generator=noise))
        rl.record(obs, a, r)
        if len(rl) >= 10:
            rl.update()
    assert rl.updates == 60
    assert float(rl.probs(obs)[0, 1]) > 0.9


def test_discounted_returns_by_hand():
    # G2 = 2, G1 = 0 + 0.5*2 = 1, G0 = 1 + 0.5*1 = 1.5
    assert discounted_returns([1.0, 0.0, 2.0], 0.5) == pytest.approx([1.5, 1.0, 2.0])


def test_reinforce_state_round_trip():
    a = Reinforce(3, 2, 6, seed=3)
    obs = torch.randn(3)
    for _ in range(12):
        act = a.act(obs)
        a.record(obs, act, float(act.sum()))
        if len(a) >= 5:
            a.update()
    b = Reinforce(3, 2, 6, seed=99)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.act(obs), b.act(obs)) and a.baseline == b.baseline and len(a) == len(b) == 2
    a.record(obs, a.act(obs), 1.0), b.record(obs, b.act(obs), 1.0)
    sa, sb = a.update(), b.update()
    assert sa == sb


# ----------------------------------------------------------------------------- the real loop
class Inspector(Plugin):
    """Looks at what really reaches the model and the losses."""

    name = "inspector"
    priority = 90

    def __init__(self):
        self.rows = []

    def after_forward(self, t, batch, out):
        n = {m: batch.inputs[m].shape[0] for m in t.modalities}
        assert n == batch.sizes
        assert {m: out.logits[m].shape[0] for m in n} == n and {m: out.features[m].shape[0] for m in n} == n
        assert out.fused.shape[0] == out.n_pair == min(n.values())
        assert len(batch.index) == len(batch.y) == max(n.values())
        self.rows.append(n)

    def compute_loss(self, t, batch, out, losses):
        for m, z in out.logits.items():  # unimodal CE on each modality's own samples
            ref = F.cross_entropy(z.float(), batch.y[: batch.sizes[m]])
            assert torch.allclose(losses[f"uni_{m}"], ref)
        assert torch.allclose(losses["fused"], F.cross_entropy(out.fused, batch.y[: out.n_pair]))


def test_nested_batches_reach_the_model_with_the_requested_sizes(tmp_path):
    cfg = make_cfg("method=dus-h", "train.epochs=3", out=tmp_path / "r")
    insp = Inspector()
    Trainer(cfg, plugins=build_plugins(cfg) + [insp]).fit()
    lines = load_metrics(tmp_path / "r")
    logged = [dict(zip(["a", "b"], ab)) for l in lines
              for ab in zip(l["steps"]["dus-h/n/a"], l["steps"]["dus-h/n/b"])]
    assert [{k: int(v) for k, v in d.items()} for d in logged] == insp.rows
    # synthetic: modality 'a' is informative (dominant), 'b' weak -> DUS gives 'b' more samples
    late = insp.rows[len(insp.rows) // 2:]
    assert sum(r["b"] for r in late) > sum(r["a"] for r in late)
    assert any(r["a"] != r["b"] for r in insp.rows)
    # same number of steps and modality-samples as plain training: 420 training samples, batch 32
    for l in lines:
        assert l["train"]["steps"] == math.ceil(420 / 32)
        n_epoch = sum(l["steps"]["dus-h/n/a"]) + sum(l["steps"]["dus-h/n/b"])
        assert n_epoch == 2 * 420
    # s_hat is logged per step and changes; rho > 1 for the dominant modality at the end
    s_a = [v for l in lines for v in l["steps"]["dus-h/s_hat/a"]]
    assert len(set(s_a)) > 5 and lines[-1]["plugins"]["dus-h/rho/a"] > 1 > lines[-1]["plugins"]["dus-h/rho/b"]


def test_logged_s_hat_matches_the_recursion(tmp_path):
    """Recompute ŝ from the heads' true-class probabilities seen inside the loop."""

    class Scores(Plugin):
        name = "scores"
        priority = 90

        def __init__(self):
            self.s = []

        def after_forward(self, t, batch, out):
            y = batch.y
            self.s.append(torch.stack([torch.softmax(out.logits[m].detach(), -1)
                                       .gather(1, y[: out.logits[m].shape[0], None]).mean() for m in ("a", "b")]))

    cfg = make_cfg("method=dus-h", "train.epochs=1", out=tmp_path / "r")
    sc = Scores()
    Trainer(cfg, plugins=build_plugins(cfg) + [sc]).fit()
    s = torch.stack(sc.s)
    expected = torch.cumsum(s, 0) / torch.arange(1, len(s) + 1)[:, None]
    line = load_metrics(tmp_path / "r")[0]
    assert line["steps"]["dus-h/s_hat/a"] == pytest.approx(expected[:, 0].tolist(), abs=1e-6)
    assert line["steps"]["dus-h/s_hat/b"] == pytest.approx(expected[:, 1].tolist(), abs=1e-6)


def test_update_every_keeps_sizes_between_decisions(tmp_path):
    cfg = make_cfg("method=dus-h", "method_args.dus-h.update_every=4", "train.epochs=1", out=tmp_path / "r")
    Trainer(cfg).fit()
    n = load_metrics(tmp_path / "r")[0]["steps"]["dus-h/n/a"][:-1]  # the last step is scaled to the budget
    for k in range(0, len(n), 4):
        assert len(set(n[k:k + 4])) == 1


@pytest.mark.parametrize("method", ["dus-h", "dus-rl"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, method):
    over = [f"method={method}", f"method_args.{method}.ema_momentum=0.9"]
    if method == "dus-rl":
        over += ["method_args.dus-rl.policy_update_every=3", "method_args.dus-rl.reward_scores=window"]
    a = assert_resume_is_exact(tmp_path, over, crash_at=2)
    if method == "dus-rl":
        assert a[-1]["plugins"]["dus-rl/policy_updates"] >= 2  # the policy really trained across the cut
        assert len(set(a[-1]["steps"]["dus-rl/n/a"])) > 1


def test_dus_rl_policy_acts_after_warmup(tmp_path):
    cfg = make_cfg("method=dus-rl", "train.epochs=3", "method_args.dus-rl.policy_update_every=4",
                   out=tmp_path / "r")
    tr = Trainer(cfg)
    before = {k: v.clone() for k, v in tr.plugins[0].rl.policy.state_dict().items()}
    tr.fit()
    after = tr.plugins[0].rl.policy.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    lines = load_metrics(tmp_path / "r")
    assert "dus-rl/reward" not in lines[0]["plugins"] and "dus-rl/reward" in lines[2]["plugins"]
    for l in lines:  # budget preserved under the policy too
        assert sum(l["steps"]["dus-rl/n/a"]) + sum(l["steps"]["dus-rl/n/b"]) == 2 * 420


# ----------------------------------------------------------------------------- stacking
class NeedsPairs(Plugin):
    name = "paired-only"
    requires_paired_batches = True


def test_incompatible_combinations_fail_at_start():
    cfg = make_cfg("method=dus-h")
    with pytest.raises(IncompatiblePluginsError, match="'paired-only' needs strictly paired batches"):
        Trainer(cfg, plugins=build_plugins(cfg) + [NeedsPairs()])
    with pytest.raises(IncompatiblePluginsError, match="both decide the sample batcher"):
        Trainer(make_cfg("method=dus-h+dus-rl"))
    with pytest.raises(ValueError, match="pairing must be 'nested' or 'independent'"):
        build_plugins(make_cfg("method=dus-h", "method_args.dus-h.pairing=random"))
    with pytest.raises(IncompatiblePluginsError, match="unimodal"):
        Trainer(make_cfg("method=unimodal+dus-h"))


@pytest.mark.parametrize("host", ["joint-aux", "diagnose-relearn", "bss-l", "bss-h", "ogm-ge", "agm", "pmr", "mla"])
def test_dus_stacks_on_host_methods(tmp_path, host):
    if host not in METHODS:
        pytest.skip(f"{host} is not registered yet")
    cfg = make_cfg(f"method={host}+dus-h", "train.epochs=2", out=tmp_path / "r")
    insp = Inspector()
    plugins = build_plugins(cfg)
    try:
        Trainer(cfg, plugins=plugins)
    except IncompatiblePluginsError as e:  # a refusal must be explicit and name DUS
        assert "dus" in str(e)
        return
    s = Trainer(cfg, plugins=build_plugins(cfg) + ([insp] if not any("training_step" in p.provides() for p in plugins) else [])).fit()
    assert 0 <= s["test"]["acc"] <= 1
    lines = load_metrics(tmp_path / "r")
    assert len(lines[-1]["steps"]["dus-h/n/a"]) == lines[-1]["train"]["steps"]


def test_step_replacing_host_still_feeds_the_scores(tmp_path):
    class OwnStep(Plugin):
        name = "own-step"

        def training_step(self, t, batch):
            out = t.forward(batch.inputs)
            loss = sum(F.cross_entropy(z, batch.labels(m)) for m, z in out.logits.items())
            t.backward(loss, batch, out)
            t.optimizer_step()
            return {"uni": loss.detach()}

    cfg = make_cfg("method=dus-h", "train.epochs=1", out=tmp_path / "r")
    Trainer(cfg, plugins=build_plugins(cfg) + [OwnStep()]).fit()
    line = load_metrics(tmp_path / "r")[0]
    assert len(line["steps"]["dus-h/s_hat/a"]) == line["train"]["steps"] and len(set(line["steps"]["dus-h/n/b"])) > 1


# ----------------------------------------------------------------------------- report helpers
def test_plots_and_sweep(tmp_path):
    import pathlib

    from mmbalance.cli import main
    from mmbalance.report.plots_dus import plot, step_series

    argv = ["sweep", "--method", "dus-h", "--dataset", "synthetic", "--epochs", "1", "--seeds", "0",
            "--batch-sizes", "16,32", "--lrs", "0.05", "--out", str(tmp_path / "sw"), "--no-progress",
            "log.tensorboard=false", "eval.probe=false", "data.options.n=200"]
    assert main(argv) == 0
    md = (tmp_path / "sw" / "sweep.md").read_text()
    assert "| 16 |" in md and "| 32 |" in md and (tmp_path / "sw" / "sweep_heatmap.png").stat().st_size > 0
    run = tmp_path / "sw" / "bs16_lr0.05" / "seed0"
    stamp = (run / "summary.json").stat().st_mtime_ns
    assert main(argv) == 0 and (run / "summary.json").stat().st_mtime_ns == stamp  # complete cells are skipped
    cfg = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert [c["batch_size"] for c in cfg["cells"]] == [16, 32] and all(c["n"] == 1 for c in cfg["cells"])

    series, starts = step_series(load_metrics(run))
    assert set(series["n"]) == {"a", "b"} and starts == [0]
    files = plot(run, tmp_path / "plots")
    assert [pathlib.Path(f).name for f in files] == ["dus_batch_sizes.png", "dus_scores.png"]
    assert all(pathlib.Path(f).stat().st_size > 0 for f in files)


def test_batcher_last_step_avoids_single_samples():
    # budget 2*34 = 68: two steps of 28+4, then 4 left; the proportional split (3.5, 0.5) is raised to (2, 2)
    b = DUSBatcher(lambda: [28, 4], ["a", "b"], base_batch=16)
    sizes = [x.sizes for x in b.batches(torch.arange(34), 0)]
    assert sizes[-1] == {"a": 2, "b": 2} and sum(s["a"] + s["b"] for s in sizes) == 68


# ---------------------------------------------------------------- independent pairing
def test_independent_batches_give_each_modality_its_own_samples(tmp_path):
    from mmbalance import Config, Plugin, Trainer
    from mmbalance.methods import build_plugins

    seen = []

    class Inspect(Plugin):
        name = "inspect"

        def after_forward(self, trainer, batch, out):
            labels = trainer.splits.train.labels
            n_pair = len(batch.index)
            for m in ("a", "b"):
                idx = batch.index_mod[m]
                assert batch.inputs[m].shape[0] == len(idx) == out.logits[m].shape[0]
                assert torch.equal(idx[:n_pair], batch.index)  # paired prefix first
                assert torch.equal(batch.y_mod[m], labels[idx.cpu()].to(batch.y_mod[m].device))
            assert out.fused.shape[0] == n_pair == min(batch.sizes.values())
            extra_a = set(batch.index_mod["a"][n_pair:].tolist())
            extra_b = set(batch.index_mod["b"][n_pair:].tolist())
            seen.append((batch.sizes["a"], batch.sizes["b"], len(extra_a & extra_b), extra_a | extra_b))

    cfg = Config().override(["data.name=synthetic", "method=dus-h", "method_args.dus-h.pairing=independent",
                             "train.epochs=3", "train.batch_size=16", "log.tensorboard=false",
                             "train.progress=false", "eval.probe=false"])
    s = Trainer(cfg, plugins=build_plugins(cfg) + [Inspect()]).fit()
    assert 0 <= s["test"]["acc"] <= 1
    assert any(a != b for a, b, _, _ in seen)  # DUS moved the sizes apart
    assert all(overlap == 0 for _, _, overlap, _ in seen)  # extra samples are distinct between modalities


@pytest.mark.parametrize("host", ["pmr", "mla", "gblending", "smv", "reconboost"])
def test_independent_pairing_is_correct_by_construction(host):
    """The batch owns label alignment, so methods that read per-modality rows (the ones DUS once refused with
    pairing=independent) now take each modality's own labels; a method that needs paired batches is refused
    by the generic rule, naming DUS."""
    from mmbalance import Config, Plugin, Trainer
    from mmbalance.engine import IncompatiblePluginsError
    from mmbalance.methods import build_plugins

    checked = []

    class OwnLabels(Plugin):
        name = "own-labels"
        priority = 95

        def after_forward(self, trainer, batch, out):
            labels = trainer.splits.train.labels.to(batch.y.device)
            for m in ("a", "b"):
                assert torch.equal(batch.labels(m), labels[batch.indices(m)])
                assert batch.labels(m).shape[0] == out.logits[m].shape[0]
            checked.append(batch.kind)

    cfg = Config().override(["data.name=synthetic", "data.options.n=200", f"method={host}+dus-h",
                             "method_args.dus-h.pairing=independent", "train.epochs=2", "log.tensorboard=false",
                             "train.progress=false", "eval.probe=false"])
    try:
        tr = Trainer(cfg, plugins=build_plugins(cfg) + [OwnLabels()])
    except IncompatiblePluginsError as e:
        assert host == "reconboost" and "needs strictly paired batches" in str(e) and "dus-h" in str(e)
        return
    s = tr.fit()
    assert 0 <= s["test"]["acc"] <= 1
    if host not in ("mla",):  # a step strategy fires no after_forward
        assert "independent" in checked
