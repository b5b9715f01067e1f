"""BSS: the measurer on hand-made predictions, pacing, samplers, code-compat rule, the real loop, resume."""
import math
import os

import pytest
import torch
from scipy.stats import chisquare

from mmbalance import Plugin, Trainer
from mmbalance.engine import IncompatiblePluginsError
from mmbalance.engine.samplers import epoch_generator
from mmbalance.methods import build_plugins
from mmbalance.diagnostics.scores import spearman, summarize_scores
from mmbalance.methods.bss import (BiasedOrder, CurriculumOrder, balance_scores, combine_criteria, ema_update,
                                   mean_pairwise_cosine, pacing, per_sample_criteria, prefix_size,
                                   sampling_probabilities)
from mmbalance.methods.bss.measurer import parse_criteria
from mmbalance.methods.bss.orders import _SALT_L

from conftest import assert_resume_is_exact, free_port as _free_port, load_metrics, make_cfg


SMALL = ["data.options.n=240"]


def _logits(*probs):
    """Logits whose softmax is exactly ``probs`` (rows)."""
    return torch.tensor(probs, dtype=torch.float64).log()


# ----------------------------------------------------------------------------- the measurer, by hand
# three samples, two modalities, two classes, all labelled 0:
#   0: a=[.5,.5] b=[.5,.5]  cos 1          loss 2 ln 2
#   1: a=[.8,.2] b=[.2,.8]  cos .32/.68    loss -ln .8 - ln .2
#   2: a=[.8,.2] b=[.8,.2]  cos 1          loss -2 ln .8
A = _logits([0.5, 0.5], [0.8, 0.2], [0.8, 0.2])
B = _logits([0.5, 0.5], [0.2, 0.8], [0.8, 0.2])
Y = torch.zeros(3, dtype=torch.long)
LOSS = [2 * math.log(2), -math.log(0.8) - math.log(0.2), -2 * math.log(0.8)]


def test_criteria_values_by_hand():
    v = per_sample_criteria({"a": A, "b": B}, Y, criteria="pred_sim+loss+grad_mag")
    assert v["pred_sim"].tolist() == pytest.approx([1.0, 0.32 / 0.68, 1.0], abs=1e-6)
    assert v["loss"].tolist() == pytest.approx(LOSS, abs=1e-6)
    # dCE/dz = p - onehot(y): sample 0: (.5²+.5²)·2 heads = 1 ; sample 1: 2·.2² + 2·.8² = 1.36
    assert v["grad_mag"].tolist() == pytest.approx([1.0, math.sqrt(1.36), math.sqrt(4 * 0.04)], abs=1e-6)


def test_balance_score_is_sim_norm_minus_loss_norm_by_hand():
    s = balance_scores({"a": A, "b": B}, Y)
    lo, hi = LOSS[2], LOSS[1]
    loss_norm0 = (LOSS[0] - lo) / (hi - lo)  # (2 ln 2 + 2 ln .8) / (ln .8 - ln .2) = ln 1.6 / ln 2
    assert loss_norm0 == pytest.approx(math.log(1.6) / math.log(2)) and loss_norm0 == pytest.approx(0.678072, abs=1e-6)
    assert s.tolist() == pytest.approx([1 - loss_norm0, -1.0, 1.0], abs=1e-6)
    # criterion_weight w: s = 2(w sim_norm - (1-w) loss_norm)
    s2 = balance_scores({"a": A, "b": B}, Y, criterion_weight=0.75)
    assert s2.tolist() == pytest.approx([2 * (0.75 - 0.25 * loss_norm0), -0.5, 1.5], abs=1e-6)
    # single criteria (the ablation rows): sim_norm alone, -loss_norm alone
    assert balance_scores({"a": A, "b": B}, Y, criteria="pred_sim").tolist() == pytest.approx([1, 0, 1])
    assert balance_scores({"a": A, "b": B}, Y, criteria=["loss"]).tolist() == pytest.approx(
        [-loss_norm0, -1, 0], abs=1e-6)



def test_fused_head_and_loss_weights_by_hand():
    fused = _logits([0.5, 0.5], [0.5, 0.5], [1 - 1e-9, 1e-9])
    v = per_sample_criteria({"a": A, "b": B}, Y, fused=fused, criteria="loss", loss_weights=(0.1, 0.9))
    want = [0.1 * math.log(2) + 0.9 * LOSS[0], 0.1 * math.log(2) + 0.9 * LOSS[1], 0.9 * LOSS[2]]
    assert v["loss"].tolist() == pytest.approx(want, abs=1e-6)


def test_three_modalities_use_the_mean_pairwise_cosine():
    a, b, c = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 0.0]])
    assert mean_pairwise_cosine([a, b, c]).item() == pytest.approx(1 / 3)  # (0 + 1 + 0) / 3
    v = per_sample_criteria({"a": A, "b": B, "c": A}, Y, criteria="pred_sim")
    assert v["pred_sim"][1].item() == pytest.approx((0.32 / 0.68 + 1 + 0.32 / 0.68) / 3, abs=1e-6)


def test_feature_similarity_and_its_errors():
    f = {"a": torch.tensor([[1.0, 0.0], [1.0, 1.0]]), "b": torch.tensor([[0.0, 2.0], [2.0, 2.0]])}
    v = per_sample_criteria({"a": A[:2], "b": B[:2]}, Y[:2], features=f, criteria="feat_sim")
    assert v["feat_sim"].tolist() == pytest.approx([0.0, 1.0])
    with pytest.raises(ValueError, match="equal size"):
        per_sample_criteria({"a": A[:2], "b": B[:2]}, Y[:2], features={"a": f["a"], "b": torch.ones(2, 3)},
                            criteria="feat_sim")
    with pytest.raises(ValueError, match="at least two modalities"):
        per_sample_criteria({"a": A}, Y, criteria="pred_sim")
    with pytest.raises(ValueError, match="unknown criterion 'cos'"):
        parse_criteria("pred_sim+cos")
    assert parse_criteria("loss,pred_sim") == ("pred_sim", "loss")


def test_constant_criterion_normalises_to_zero():
    s = combine_criteria({"pred_sim": torch.ones(4), "loss": torch.tensor([0.0, 1.0, 2.0, 4.0])})
    assert s.tolist() == pytest.approx([0.0, -0.25, -0.5, -1.0])


def test_summary_and_histogram():
    summ = summarize_scores(torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]), -1.0, 1.0, bins=4)
    assert summ["mean"] == 0 and summ["q50"] == 0 and summ["min"] == -1 and summ["hist"] == [1, 1, 1, 2]
    assert spearman(torch.tensor([1.0, 2, 3]), torch.tensor([10.0, 20, 30])) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2, 3]), torch.tensor([3.0, 2, 1])) == pytest.approx(-1.0)


# ----------------------------------------------------------------------------- pacing and BSS-H order
def test_pacing_values():
    assert pacing(0) == pytest.approx(0.1)
    assert pacing(1) == pytest.approx(math.sqrt(0.99 / 40 + 0.01)) and pacing(1) == pytest.approx(0.186413, abs=1e-6)
    assert pacing(10) == pytest.approx(math.sqrt(0.2575))
    assert pacing(40) == 1.0 and pacing(100) == 1.0
    assert pacing(2, lambda0=0.5, T_grow=4) == pytest.approx(math.sqrt(0.75 / 2 + 0.25))
    # the plug-in's clock is epoch + 1 (code): epoch 0 -> λ(1), epoch 39 -> full set
    order = CurriculumOrder(torch.arange(1000).flip(0), seed=0)
    assert order.num_used(0) == 186 and order.num_used(38) == prefix_size(1000, pacing(39)) < 1000
    assert order.num_used(39) == 1000
    with pytest.raises(ValueError, match="lambda0"):
        pacing(1, lambda0=0.0)


def test_curriculum_order_is_a_seeded_shuffle_of_the_prefix():
    ranking = torch.randperm(200, generator=torch.Generator().manual_seed(1))
    order = CurriculumOrder(ranking, seed=3, lambda0=0.2, T_grow=10, pace_offset=0, start_epoch=2)
    idx = order.indices(2)
    assert len(idx) == 40 and set(idx.tolist()) == set(ranking[:40].tolist())
    assert idx.tolist() != ranking[:40].tolist()  # shuffled
    again = CurriculumOrder(ranking, seed=3, lambda0=0.2, T_grow=10, pace_offset=0, start_epoch=2)
    assert torch.equal(again.indices(2), idx) and not torch.equal(again.indices(3)[:40], idx)


# ----------------------------------------------------------------------------- BSS-L sampling
def test_probabilities_by_hand():
    p = sampling_probabilities(torch.tensor([0.0, math.log(2.0)]))
    assert p.tolist() == pytest.approx([1 / 3, 2 / 3])
    q = sampling_probabilities(torch.tensor([-1.0, 0.0, 1.0]), "linear")  # code: w = 1.01 + s
    assert q.tolist() == pytest.approx([0.01 / 3.03, 1.01 / 3.03, 2.01 / 3.03])
    assert sampling_probabilities(torch.tensor([-1.0, 1.0]), "linear", 1.0).min() > 0  # NVGesture offset
    assert ema_update(torch.tensor([1.0]), torch.tensor([0.0]), 0.6).item() == pytest.approx(0.4)
    assert ema_update(None, torch.tensor([0.3]), 0.6).item() == pytest.approx(0.3)


P = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)


def test_with_replacement_frequencies_match_p():
    order = BiasedOrder(P, seed=0, mode="with_replacement")
    draws = torch.cat([order.indices(e) for e in range(600)])
    counts = torch.bincount(draws, minlength=4).double()
    assert chisquare(counts.numpy(), (P * len(draws)).numpy()).pvalue > 1e-3
    assert counts.tolist() != [600.0] * 4


def test_biased_permutation_visits_all_and_first_position_follows_p():
    order = BiasedOrder(P, seed=0)
    firsts = []
    for e in range(2000):
        idx = order.indices(e)
        assert sorted(idx.tolist()) == [0, 1, 2, 3]
        firsts.append(int(idx[0]))
    counts = torch.bincount(torch.tensor(firsts), minlength=4).double()
    assert chisquare(counts.numpy(), (P * 2000).numpy()).pvalue > 1e-3
    # deterministic per (seed, epoch)
    assert torch.equal(BiasedOrder(P, seed=0).indices(7), order.indices(7))


def test_code_compat_reproduces_the_released_ordering_rule():
    s = torch.tensor([-1.0, -0.2, 0.3, 1.0, 0.0])
    plugin = build_plugins(make_cfg("method=bss-l", "method_args.bss-l.code_compat=true"))[0]
    assert (plugin.prob_mode, plugin.sampling_mode, plugin.E, plugin.beta, plugin.score_mode) == (
        "linear", "biased_permutation", 1, 1.0, "train")
    plugin.s_hat = s
    p = plugin.probabilities()
    w = 1.0 - ((1 - s) / 2 - (1 + s) / 2) + 0.01  # the code: 1 - (loss_norm - sim_norm) + 0.01 = 1.01 + s
    assert p.tolist() == pytest.approx((w / w.sum()).tolist())
    g = epoch_generator(5, 3, _SALT_L)
    ref = torch.multinomial((w / w.sum()).double(), 5, replacement=False, generator=g)
    assert torch.equal(BiasedOrder(p, seed=5).indices(3), ref)
    with pytest.raises(ValueError, match="code_compat=true fixes beta"):
        build_plugins(make_cfg("method=bss-l", "method_args.bss-l.code_compat=true", "method_args.bss-l.beta=0.6"))


def test_option_errors_name_the_option():
    with pytest.raises(ValueError, match="score_mode"):
        build_plugins(make_cfg("method=bss-h", "method_args.bss-h.score_mode=test"))
    with pytest.raises(ValueError, match="score_at"):
        build_plugins(make_cfg("method=bss-h", "method_args.bss-h.score_at=later"))
    with pytest.raises(ValueError, match="sampling_mode"):
        build_plugins(make_cfg("method=bss-l", "method_args.bss-l.sampling_mode=stratified"))
    with pytest.raises(ValueError, match="E "):
        build_plugins(make_cfg("method=bss-l", "method_args.bss-l.E=0"))


# ----------------------------------------------------------------------------- the real loop
class Visits(Plugin):
    """Records the dataset indices trained on per epoch and reference scores from an eval pass."""

    name = "visits"
    priority = 0  # before BSS: sees the model BSS scores

    def __init__(self):
        self.idx, self.ref = {}, {}

    def on_epoch_start(self, t, epoch):
        r = t.collect("train")
        self.ref[epoch] = balance_scores(r["logits"], r["y"], r["fused"])

    def after_forward(self, t, batch, out):
        self.idx.setdefault(t.epoch, []).extend(batch.index.tolist())


class Snap(Plugin):
    name = "snap"
    priority = 100

    def __init__(self, target):
        self.target, self.states = target, {}

    def on_epoch_start(self, t, epoch):
        self.states[epoch] = {k: (v.clone() if torch.is_tensor(v) else v)
                              for k, v in t.plugin(self.target).state_dict().items()}


def test_bss_h_trains_on_the_growing_prefix_of_the_ranking(tmp_path):
    cfg = make_cfg(*SMALL, "method=bss-h", "train.epochs=4", "method_args.bss-h.T_grow=3", out=tmp_path / "r")
    vis = Visits()
    tr = Trainer(cfg, plugins=build_plugins(cfg) + [vis])
    tr.fit()
    bss = tr.plugin("bss-h")
    n = len(tr.splits.train)
    assert torch.allclose(bss.scores, vis.ref[0], atol=1e-5)  # scored at init, eval mode
    assert torch.equal(bss.ranking, torch.argsort(bss.scores, descending=True, stable=True))  # balanced first
    lines = load_metrics(tmp_path / "r")
    used = []
    for e, line in enumerate(lines):
        m = prefix_size(n, pacing(e + 1, 0.1, 3))
        used.append(m)
        assert line["plugins"]["bss-h/n_used"] == m
        assert line["plugins"]["bss-h/fraction"] == pytest.approx(pacing(e + 1, 0.1, 3))
        assert line["train"]["steps"] == -(-m // 32)
        assert sorted(vis.idx[e]) == sorted(bss.ranking[:m].tolist())  # exactly the top-m, once each
    assert used[0] < used[1] < used[2] == used[3] == n
    assert "bss-h/score_hist" in lines[0]["plugins"] and sum(lines[0]["plugins"]["bss-h/score_hist"]) == n
    from mmbalance.report import plots_bss

    paths = plots_bss.plot(tmp_path / "r", tmp_path / "plots")
    assert [p.name for p in paths] == ["bss_h_curriculum.png"] and paths[0].stat().st_size > 10_000


def test_bss_h_warmup_scores_after_w_epochs(tmp_path):
    cfg = make_cfg(*SMALL, "method=bss-h", "train.epochs=3", "method_args.bss-h.score_at=1",
                   "method_args.bss-h.T_grow=2", "method_args.bss-h.pace_offset=0", out=tmp_path / "r")
    vis = Visits()
    tr = Trainer(cfg, plugins=build_plugins(cfg) + [vis])
    tr.fit()
    n = len(tr.splits.train)
    lines = load_metrics(tmp_path / "r")
    assert [l["train"]["steps"] for l in lines] == [-(-n // 32), -(-prefix_size(n, 0.1) // 32),
                                                     -(-prefix_size(n, pacing(1, 0.1, 2)) // 32)]
    assert tr.plugin("bss-h").scored_epoch == 1 and torch.allclose(tr.plugin("bss-h").scores, vis.ref[1], atol=1e-5)


def test_bss_l_rescores_smooths_and_visits_everything(tmp_path):
    cfg = make_cfg(*SMALL, "method=joint-aux+bss-l", "train.epochs=3", out=tmp_path / "r")
    vis, snap = Visits(), Snap("bss-l")
    tr = Trainer(cfg, plugins=build_plugins(cfg) + [vis, snap])
    tr.fit()
    n = len(tr.splits.train)
    for e in range(3):
        st = snap.states[e]
        assert torch.allclose(st["last_scores"], vis.ref[e], atol=1e-5)  # fresh scores of the current model
        want = vis.ref[0] if e == 0 else 0.4 * snap.states[e - 1]["s_hat"] + 0.6 * vis.ref[e]
        assert torch.allclose(st["s_hat"], want, atol=1e-5)
        assert sorted(vis.idx[e]) == list(range(n))  # biased permutation: every sample once
    lines = load_metrics(tmp_path / "r")
    assert all(l["plugins"]["bss-l/rescored"] == 1 for l in lines)
    assert lines[0]["plugins"]["bss-l/score_mean"] != lines[2]["plugins"]["bss-l/score_mean"]
    assert 0 < lines[1]["plugins"]["bss-l/ess_fraction"] <= 1 and "bss-l/rank_corr_prev" in lines[1]["plugins"]
    from mmbalance.report import plots_bss

    assert [p.name for p in plots_bss.plot(tmp_path / "r", tmp_path / "plots")] == ["bss_l_scores.png"]


def test_bss_l_every_E_epochs(tmp_path):
    cfg = make_cfg(*SMALL, "method=bss-l", "train.epochs=3", "method_args.bss-l.E=2", out=tmp_path / "r")
    Trainer(cfg).fit()
    assert [l["plugins"]["bss-l/rescored"] for l in load_metrics(tmp_path / "r")] == [1, 0, 1]


def test_previous_epoch_statistics_equal_a_pass_when_weights_are_frozen(tmp_path):
    # lr = 0 and no dropout/BN: the training forward of epoch 0 sees the same model as a pass at epoch 1
    cfg = make_cfg(*SMALL, "method=bss-l", "train.epochs=2", "optim.lr=0", "optim.weight_decay=0",
                   "method_args.bss-l.score_source=previous_epoch", out=tmp_path / "r")
    vis, snap = Visits(), Snap("bss-l")
    tr = Trainer(cfg, plugins=build_plugins(cfg) + [vis, snap])
    tr.fit()
    lines = load_metrics(tmp_path / "r")
    assert [l["plugins"]["bss-l/score_from_pass"] for l in lines] == [1, 0]
    assert torch.allclose(snap.states[1]["last_scores"], vis.ref[1], atol=1e-4)


def test_stacking_rules():
    with pytest.raises(IncompatiblePluginsError, match="both decide the sample order"):
        Trainer(make_cfg("method=bss-h+bss-l"))

    class OwnStep(Plugin):
        name = "own-step"

        def training_step(self, trainer, batch):  # a step strategy
            return {}

    cfg = make_cfg("method=bss-l", "method_args.bss-l.score_source=previous_epoch")
    with pytest.raises(IncompatiblePluginsError, match="score_source='pass'"):
        Trainer(cfg, plugins=build_plugins(cfg) + [OwnStep()])


def test_previous_epoch_with_nested_dus_batches(tmp_path):
    cfg = make_cfg(*SMALL, "method=bss-l+dus-h", "train.epochs=2", "method_args.bss-l.score_source=previous_epoch",
                   out=tmp_path / "r")
    Trainer(cfg).fit()
    assert load_metrics(tmp_path / "r")[1]["plugins"]["bss-l/score_from_pass"] == 0


@pytest.mark.parametrize("method,extra", [
    ("bss-l", ["method_args.bss-l.score_source=previous_epoch", "model.encoder_args.dropout=0.2"]),
    ("bss-h", ["method_args.bss-h.score_at=1", "method_args.bss-h.T_grow=3"]),
])
def test_interrupted_and_resumed_run_is_identical(tmp_path, method, extra):
    assert_resume_is_exact(tmp_path, [*SMALL, f"method={method}", *extra], crash_at=2)


# ----------------------------------------------------------------------------- DDP (2 ranks, gloo)

DDP_OVER = ["train.epochs=2", "data.options.n=240", "method=bss-l", "method_args.bss-l.score_source=previous_epoch"]


def _ddp_worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    Trainer(make_cfg(*DDP_OVER, "train.device=cpu", out=out)).fit()
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_rank_bss_l_matches_one_rank(tmp_path):
    import torch.multiprocessing as mp

    Trainer(make_cfg(*DDP_OVER, out=tmp_path / "one")).fit()
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path / "two")), nprocs=2, join=True)
    one = torch.load(tmp_path / "one" / "last.pt", weights_only=False)
    two = torch.load(tmp_path / "two" / "last.pt", weights_only=False)
    for k in one["model"]:
        assert torch.allclose(one["model"][k].float(), two["model"][k].float(), atol=1e-4), k
    s1, s2 = one["plugins"]["bss-l"]["s_hat"], two["plugins"]["bss-l"]["s_hat"]
    assert torch.allclose(s1, s2, atol=1e-4)
    assert load_metrics(tmp_path / "two")[1]["plugins"]["bss-l/score_from_pass"] == 0
