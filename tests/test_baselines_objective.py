"""G-Blending, MLA, ReconBoost and SMV: core math by hand, state round-trips, the real loop, resume."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmbalance import Trainer
from mmbalance.engine.samplers import RandomOrder
from mmbalance.methods import METHODS
from mmbalance.methods.gblending import GBlending, IndexListOrder, blend_weights, stratified_holdout
from mmbalance.methods.mla import MLA, code_alpha, entropy_weights, owm_update, project_gradient
from mmbalance.methods.reconboost import ReconBoost, consolidation_term, reconcilement_loss
from mmbalance.methods.smv import (SMV, ResampledOrder, fused_correct_by_subset, modality_resample,
                                   sample_copies, shapley_from_correct)
from mmbalance.models.fusion import ConcatFusion
from mmbalance.models.net import MultimodalNet

from conftest import assert_resume_is_exact, load_metrics, make_cfg


SMALL = ["data.options.n=300"]


# ============================================================================= G-Blending
def test_blend_weights_by_hand():
    before = {"a": (2.0, 2.1), "b": (2.0, 2.0)}
    after = {"a": (1.0, 1.5), "b": (0.5, 1.8)}
    # a: G = 2.1-1.5 = 0.6, dO = (1.5-1.0)-(2.1-2.0) = 0.4 -> 0.6/0.16 = 3.75
    # b: G = 0.2, dO = 1.3 - 0 = 1.3 -> 0.2/1.69 = 0.118343 ; normalised: 3.75/3.868343 = 0.969407
    w = blend_weights(before, after)
    assert w["a"] == pytest.approx(0.9694072657743785)
    assert w["b"] == pytest.approx(1 - 0.9694072657743785)


def test_blend_weights_negative_gain_abs_or_zero():
    before = {"a": (2.0, 2.1), "c": (1.0, 1.0)}
    after = {"a": (1.0, 1.5), "c": (0.5, 1.2)}  # c: held-out loss rose by 0.2, dO = 0.7
    w_abs = blend_weights(before, after, "abs")
    assert w_abs["c"] / w_abs["a"] == pytest.approx((0.2 / 0.49) / 3.75)
    w_zero = blend_weights(before, after, "zero")
    assert w_zero == pytest.approx({"a": 1.0, "c": 0.0})
    # nothing generalises: uniform
    assert blend_weights({"a": (1, 1), "b": (1, 1)}, {"a": (0.5, 1.2), "b": (0.5, 1.1)}, "zero") == \
        pytest.approx({"a": 0.5, "b": 0.5})
    with pytest.raises(ValueError, match="negative_gain"):
        blend_weights(before, after, "clip")


def test_stratified_holdout_is_per_class_and_seeded():
    labels = torch.tensor([0] * 10 + [1] * 20)
    h = stratified_holdout(labels, 0.2, seed=3)
    assert (labels[h] == 0).sum() == 2 and (labels[h] == 1).sum() == 4
    assert torch.equal(h, torch.sort(h).values) and len(set(h.tolist())) == 6
    assert torch.equal(h, stratified_holdout(labels, 0.2, seed=3))
    assert not torch.equal(h, stratified_holdout(labels, 0.2, seed=4))
    with pytest.raises(ValueError, match="holdout_fraction"):
        stratified_holdout(labels, 1.5, 0)


def test_index_list_order_shuffles_only_its_indices():
    o = IndexListOrder(torch.tensor([3, 5, 7, 9]), seed=1)
    a, b = o.indices(0), o.indices(1)
    assert sorted(a.tolist()) == [3, 5, 7, 9] == sorted(b.tolist())
    assert torch.equal(a, o.indices(0))


def test_gblending_options_fail_clearly():
    with pytest.raises(ValueError, match="super_epoch"):
        GBlending(super_epoch=0)
    with pytest.raises(ValueError, match="holdout must"):
        GBlending(holdout="test")
    assert "epoch_order" not in GBlending(holdout="val").provides() and "epoch_order" in GBlending().provides()


def test_gblending_state_round_trip():
    p = GBlending()
    p.weights, p.weights_epoch = {"a": 0.2, "b": 0.3, "fused": 0.5}, 10
    p.last_estimate = {"a": {"train_before": 1.0}}
    q = GBlending()
    q.load_state_dict(p.state_dict())
    assert q.weights == p.weights and q.weights_epoch == 10 and q.last_estimate == p.last_estimate


def test_gblending_in_the_loop(tmp_path):
    cfg = make_cfg("method=gblending", "train.epochs=3", "method_args.gblending.super_epoch=2",
                   "method_args.gblending.probe_epochs=1", *SMALL, out=tmp_path / "g")
    t = Trainer(cfg)
    t.fit()
    lines = load_metrics(tmp_path / "g")
    plug = [l["plugins"] for l in lines]
    assert "gblending/G/a" in plug[0] and "gblending/G/a" not in plug[1] and "gblending/G/a" in plug[2]
    for p in plug:
        ws = [p[f"gblending/w/{k}"] for k in ("a", "b", "fused")]
        assert sum(ws) == pytest.approx(1.0, abs=1e-5)
        assert max(ws) - min(ws) > 1e-3  # not uniform: the formula decided
    g = t.plugins[0]
    # the weights follow the logged G and O
    raw = {k: abs(plug[2][f"gblending/G/{k}"]) / (plug[2][f"gblending/O/{k}"] ** 2 + 1e-12) for k in ("a", "b", "fused")}
    assert g.weights == pytest.approx({k: v / sum(raw.values()) for k, v in raw.items()}, rel=1e-4)
    # the held-out slice is never trained on
    n = len(t.splits.train)
    assert lines[0]["train"]["samples"] == n - len(g.heldout)
    assert not set(g.heldout.tolist()) & set(t.train_order.indices(0).tolist())
    # the loss terms are the weighted CEs
    assert set(lines[0]["train"]) >= {"loss_fused", "loss_uni_a", "loss_uni_b"}


def test_gblending_holdout_val_warns(tmp_path):
    cfg = make_cfg("method=gblending", "train.epochs=1", "method_args.gblending.holdout=val",
                   "method_args.gblending.probe_epochs=1", *SMALL)
    with pytest.warns(UserWarning, match="validation split"):
        Trainer(cfg).fit()


# ============================================================================= MLA
def test_owm_update_and_projection_by_hand():
    P = torch.eye(2)
    P = owm_update(P, torch.tensor([1.0, 0.0]), alpha=0.5)  # I - e1 e1^T / 1.5
    assert P.flatten().tolist() == pytest.approx([1 / 3, 0.0, 0.0, 1.0])
    P = owm_update(P, torch.tensor([0.0, 2.0]), alpha=1.0)  # k = (0, 2), r k = 4 -> P22 = 1 - 4/5
    assert P.flatten().tolist() == pytest.approx([1 / 3, 0, 0, 0.2])
    g = torch.tensor([[3.0, 5.0]])
    assert project_gradient(g, P).flatten().tolist() == pytest.approx([1.0, 1.0])
    assert project_gradient(g, P, "add").flatten().tolist() == pytest.approx([4.0, 6.0])
    Pn = owm_update(torch.eye(2), torch.tensor([1.0, 0.0]), 0.5, normalize=True)
    assert float(torch.linalg.norm(Pn)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="projection"):
        project_gradient(g, P, "other")


def test_projected_gradient_is_orthogonal_to_the_stored_subspace():
    torch.manual_seed(0)
    d = 6
    P = torch.eye(d, dtype=torch.float64)
    rs = torch.randn(3, d, dtype=torch.float64)
    for r in rs:
        P = owm_update(P, r, alpha=1e-10)
    G = torch.randn(4, d, dtype=torch.float64)
    Gp = project_gradient(G, P)
    assert (Gp @ rs.t()).abs().max() < 1e-6  # no component along any stored feature
    u = torch.linalg.svd(rs).Vh[3:]  # directions orthogonal to all stored features pass unchanged
    assert torch.allclose(Gp @ u.t(), G @ u.t(), atol=1e-6)
    assert torch.allclose(P, P.t(), atol=1e-9)


def test_entropy_fusion_weights_by_hand():
    za = torch.tensor([[0.0, 0.0]])  # entropy ln 2 = 0.693147
    zv = torch.tensor([[math.log(3.0), 0.0]])  # p = (3/4, 1/4): entropy 0.562335
    w = entropy_weights([za, zv])
    # exp(max-e_m) normalised: w_a = e^{-0.693147} / (e^{-0.693147} + e^{-0.562335})
    assert w.flatten().tolist() == pytest.approx([0.467343545268778, 0.532656454731222])
    # the code's batch-level quirk: softmax over the batch, one entropy per modality
    za2, zv2 = torch.zeros(2, 2), torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    wb = entropy_weights([za2, zv2], "batch_code")  # e_a = 2 ln 2, e_v = 0.562335 + ln 2
    assert wb.shape == (1, 2) and wb[0, 0].item() == pytest.approx(0.467343545268778)
    assert code_alpha(0, 10) == pytest.approx(0.1) and code_alpha(5, 10) == pytest.approx(0.1 ** 1.5)


def _tiny_model(dims):
    enc = {m: nn.Sequential(nn.Flatten(), nn.Linear(4, d)) for m, d in dims.items()}
    for m, d in dims.items():
        enc[m].out_dim = d
    return MultimodalNet(enc, 3, ConcatFusion(dims, 3))


class _FakeTrainer:
    def __init__(self, mods):
        self.active_modalities = list(mods)


def test_mla_needs_equal_feature_sizes():
    with pytest.raises(ValueError, match="same feature size.*a=8, b=6.*model.feature_dim"):
        MLA().configure_model(_FakeTrainer("ab"), _tiny_model({"a": 8, "b": 6}))
    with pytest.raises(ValueError, match="shared_head=false"):
        ReconBoost().configure_model(_FakeTrainer("ab"), _tiny_model({"a": 8, "b": 6}))
    ReconBoost(shared_head=False).configure_model(_FakeTrainer("ab"), _tiny_model({"a": 8, "b": 6}))
    with pytest.raises(ValueError, match="permutation"):
        MLA(modality_order=["a", "c"]).configure_model(_FakeTrainer("ab"), _tiny_model({"a": 8, "b": 8}))


def test_mla_state_round_trip():
    p = MLA()
    p.P, p.updates = torch.randn(4, 4), 7
    q = MLA()
    q.load_state_dict(p.state_dict())
    assert torch.equal(q.P, p.P) and q.updates == 7


def test_mla_in_the_loop(tmp_path):
    cfg = make_cfg("method=mla", "train.epochs=2", *SMALL, out=tmp_path / "m")
    t = Trainer(cfg)
    w_before = t.model.heads["a"].weight.detach().clone()
    t.fit()
    m = t.model
    assert m.heads["a"] is m.heads["b"] and m.fusion is None
    assert not torch.equal(w_before, m.heads["a"].weight)
    lines = load_metrics(tmp_path / "m")
    steps = lines[0]["train"]["steps"]
    assert lines[-1]["plugins"]["mla/updates"] == 2 * 2 * steps  # one projector update per modality step
    assert lines[1]["plugins"]["mla/projector_trace"] < lines[0]["plugins"]["mla/projector_trace"] < 1.0
    assert set(lines[0]["train"]) >= {"loss_uni_a", "loss_uni_b"}
    # evaluation uses the entropy-weighted fusion of the shared head's unimodal outputs
    x = {k: v[:5] for k, v in t.splits.test.inputs.items()}
    m.eval()
    with torch.no_grad():
        out = m(x)
        w = entropy_weights([out.logits["a"], out.logits["b"]])
        assert torch.allclose(t.predict(out), w[:, :1] * out.logits["a"] + w[:, 1:] * out.logits["b"])


# ============================================================================= ReconBoost
def test_reconcilement_loss_by_hand():
    z = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    y = torch.tensor([0, 1])
    ens = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # p_ens(y) = 0.75, 0.5
    # row 1: (5 - 0.75) * ln 2 / 2 = 1.472938 ; row 2: (5 - 0.5) * ln 4 / 2 = 3.119162
    assert float(reconcilement_loss(z, y, ens)) == pytest.approx((1.4729377586898837 + 3.119162312519754) / 2)
    assert float(reconcilement_loss(z[:1], y[:1], ens[:1], class_mean=False)) == pytest.approx(4.25 * math.log(2))
    # no ensemble yet: p_ens = 1 (the code's constant initial model): (5 - 1) ln 2 / 2
    assert float(reconcilement_loss(z[:1], y[:1], None)) == pytest.approx(2 * math.log(2))
    # the gradient reaches the learner only
    zg = z.clone().requires_grad_(True)
    eg = ens.clone().requires_grad_(True)
    reconcilement_loss(zg, y, eg).backward()
    assert zg.grad is not None and eg.grad is None


def test_consolidation_term_by_hand():
    z, zp = torch.zeros(1, 2, requires_grad=True), torch.tensor([[math.log(3.0), 0.0]])
    assert float(consolidation_term(z, zp)) == pytest.approx(0.0625)  # mean((.5-.75)^2, (.5-.25)^2)
    assert not consolidation_term(z, zp).requires_grad  # the code detaches both sides
    assert consolidation_term(z, zp, grad=True).requires_grad


def test_reconboost_state_round_trip():
    p = ReconBoost()
    p.stage, p.pos, p.p1, p.p2, p.members = 3, 5, 10, 10, ["b", "a"]
    q = ReconBoost()
    q.load_state_dict(p.state_dict())
    assert (q.stage, q.pos, q.p1, q.p2, q.members) == (3, 5, 10, 10, ["b", "a"])
    with pytest.raises(ValueError, match="stage_epochs"):
        ReconBoost(stage_epochs=0)


def test_reconboost_in_the_loop(tmp_path):
    cfg = make_cfg("method=reconboost", "train.epochs=4", *SMALL, out=tmp_path / "r")
    t = Trainer(cfg)
    t.fit()
    lines = load_metrics(tmp_path / "r")
    p = [l["plugins"] for l in lines]
    # stage 0 = epochs 0 (learn a) + 1 (rectify); stage 1 = epochs 2 (learn b) + 3 (rectify)
    assert [x["reconboost/ensemble_size"] for x in p] == [1, 1, 2, 2]
    assert [x["reconboost/stage"] for x in p] == [0, 1, 1, 2]
    assert set(lines[0]["train"]) >= {"loss_boost"} and "loss_rectify" in lines[1]["train"]
    assert "loss_consolidation" in lines[2]["train"]
    assert p[1]["reconboost/boost_rate"] != 1.0  # ρ is learned in the rectification phase
    assert lines[0]["steps"]["reconboost/phase"] == [1] * lines[0]["train"]["steps"]
    assert t.model.heads["a"] is t.model.heads["b"]
    assert t.plugins[0].members == ["a", "b"]
    x = {k: v[:4] for k, v in t.splits.test.inputs.items()}
    with torch.no_grad():
        t.model.eval()
        out = t.model(x, fuse=False)
        rho = t.plugins[0].rho
        raw = {k: t.model.heads[k].head(out.features[k]) for k in "ab"}  # the shared learner without ρ
        assert torch.allclose(t.predict(out), rho * (raw["a"] + raw["b"]), atol=1e-6)
        assert float(rho) == pytest.approx(p[-1]["reconboost/boost_rate"])


# ============================================================================= SMV
def _shapley_case():
    f = ConcatFusion({"a": 1, "b": 1}, 2)
    with torch.no_grad():  # class 0 logit = a + b, class 1 logit = 0.5
        f.fc.weight.copy_(torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
        f.fc.bias.copy_(torch.tensor([0.0, 0.5]))
    feats = {"a": torch.tensor([[1.0], [0.3], [1.0], [0.0]]), "b": torch.tensor([[0.0], [0.3], [-1.0], [0.0]])}
    return f, feats, torch.tensor([0, 0, 0, 1])


def test_shapley_two_modalities_by_hand():
    f, feats, y = _shapley_case()
    phi = shapley_from_correct(fused_correct_by_subset(f, feats, y, ["a", "b"]), ["a", "b"])
    # sample 1: v(ab)=2, v(a)=1, v(b)=0 -> a (1+2-0)/2 = 1.5, b (0+2-1)/2 = 0.5
    # sample 2: only both right -> 1, 1 ; sample 3: only a right -> 0.5, -0.5 ; sample 4: all right -> 1, 1
    assert phi.tolist() == [[1.5, 0.5], [1.0, 1.0], [0.5, -0.5], [1.0, 1.0]]
    # copies: 0.5 -> 1, 0 -> 2, -0.5 -> 3, >= 0.9 -> 0
    assert sample_copies(phi).tolist() == [[0, 1], [0, 0], [1, 3], [0, 0]]
    assert sample_copies(torch.tensor([[0.0]])).item() == 2


def test_shapley_three_modalities_matches_permutation_average():
    import itertools
    torch.manual_seed(1)
    mods = ["a", "b", "c"]
    f = ConcatFusion({m: 3 for m in mods}, 4)
    feats = {m: torch.randn(12, 3) for m in mods}
    y = torch.randint(0, 4, (12,))
    correct = fused_correct_by_subset(f, feats, y, mods)
    phi = shapley_from_correct(correct, mods)

    def v(S):
        return torch.zeros(12) if not S else len(S) * correct[frozenset(S)].float()

    ref = torch.zeros(12, 3)
    perms = list(itertools.permutations(mods))
    for perm in perms:  # the definition: average marginal contribution over arrival orders
        seen = set()
        for m in perm:
            ref[:, mods.index(m)] += (v(seen | {m}) - v(seen)) / len(perms)
            seen.add(m)
    assert torch.allclose(phi, ref, atol=1e-6)
    assert torch.allclose(phi.sum(1), 3 * correct[frozenset(mods)].float(), atol=1e-5)  # efficiency


def test_modality_level_amount_by_hand():
    # gaps 1-1.2 = -0.2 and 1-0.6 = 0.4 -> (2/3)*0.6 = 0.4 -> 40 of 100, enhance b (larger gap)
    assert modality_resample([1.2, 0.6], 100) == (40, 1)
    assert modality_resample([1.2, 0.6], 100, func="tanh") == (int(math.tanh(0.4) * 100), 1)
    assert modality_resample([1.2, 0.6], 100, func="square") == (int(0.4 ** 1.5 * 100), 1)
    assert modality_resample([0.5, 1.0], 10, alpha=0.5) == (1, 0)  # 0.5*(2/3)*0.5 = 0.1667 -> 1


def test_resampled_order():
    o = ResampledOrder(3, seed=5)
    assert torch.equal(o.indices(2), RandomOrder(3, 5).indices(2))  # warm-up epochs = joint training
    o.extra = torch.tensor([0, 2, 1])
    got = o.indices(2)
    assert sorted(got.tolist()) == [0, 1, 1, 1, 2, 2]


def test_smv_mixture_loss_equals_the_code_objective():
    """Summed over a sample's T = 1 + Σc occurrences, the per-occurrence mixture is CE(fused) + Σ c·CE(only m)."""
    f, feats, y = _shapley_case()
    p = SMV()
    p.modalities = ["a", "b"]
    p._counts_dev = torch.tensor([[0.0, 1.0], [0.0, 0.0], [1.0, 3.0], [0.0, 0.0]])
    p._active = [0, 1]

    class T:
        fused_loss_weight = 1.0

        class model:
            fusion = f

        @staticmethod
        def autocast():
            import contextlib
            return contextlib.nullcontext()

    class Out:
        fused = f(feats)
        n_pair = 4

        @staticmethod
        def paired_features():
            return feats

    losses = {"fused": torch.tensor(0.0)}
    from mmbalance.data.batch import Batch

    p.compute_loss(T, Batch(feats, y, torch.arange(4), {"a": 4, "b": 4}), Out, losses)
    assert losses["fused"].requires_grad  # a real training loss
    with torch.no_grad():
        ce = lambda z: F.cross_entropy(z, y, reduction="none")
        plain = ce(f(feats))
        only_a = ce(f({"a": feats["a"], "b": torch.zeros_like(feats["b"])}))
        only_b = ce(f({"a": torch.zeros_like(feats["a"]), "b": feats["b"]}))
        c = p._counts_dev
        T_ = 1 + c.sum(1)
        assert float(losses["fused"].detach()) == pytest.approx(float(((plain + c[:, 0] * only_a + c[:, 1] * only_b) / T_).mean()))
        # times T (the number of occurrences in the epoch): the code's per-epoch objective for sample 3
        per3 = (plain[2] + only_a[2] + 3 * only_b[2])
        assert float(((plain + c[:, 0] * only_a + c[:, 1] * only_b) / T_)[2] * T_[2]) == pytest.approx(float(per3))


def test_smv_state_round_trip_and_options():
    p = SMV()
    p.counts, p.valued_epoch, p.contribution = torch.tensor([[0, 1], [2, 0]]), 7, {"a": 1.2, "b": 0.8}
    q = SMV()
    q.load_state_dict(p.state_dict())
    assert torch.equal(q.counts, p.counts) and q.valued_epoch == 7 and q.contribution == p.contribution
    with pytest.raises(ValueError, match="level"):
        SMV(level="batch")
    with pytest.raises(ValueError, match="part_ratio"):
        SMV(part_ratio=0)


@pytest.mark.parametrize("level", ["sample", "modality"])
def test_smv_in_the_loop(tmp_path, level):
    cfg = make_cfg("method=smv", "train.epochs=3", "method_args.smv.warmup=1", f"method_args.smv.level={level}",
                   *SMALL, out=tmp_path / level)
    t = Trainer(cfg)
    t.fit()
    lines = load_metrics(tmp_path / level)
    n = len(t.splits.train)
    assert lines[0]["train"]["samples"] == n and "smv/extra_total" not in lines[0]["plugins"]
    for l in lines[1:]:
        extra = l["plugins"]["smv/extra_total"]
        assert extra > 0 and l["train"]["samples"] == n + extra  # the copies really are in the epoch
        # on synthetic, b is the weak modality: it receives most copies and contributes less
        assert l["plugins"]["smv/extra/b"] > l["plugins"]["smv/extra/a"]
        assert l["plugins"]["smv/contribution/b"] < l["plugins"]["smv/contribution/a"]
    if level == "modality":
        assert lines[1]["plugins"]["smv/extra/a"] == 0


# ============================================================================= three views, stacking, resume
MFEAT = ["data.name=mfeat", "data.modalities=[pix,fou,zer]", "train.epochs=1", "train.batch_size=128"]
FAST = {"gblending": ["method_args.gblending.probe_epochs=1"], "smv": ["method_args.smv.warmup=0"],
        "mla": [], "reconboost": ["method_args.reconboost.stage_epochs=0.4", "method_args.reconboost.correct_epochs=0.4"]}


@pytest.mark.parametrize("method", ["gblending", "mla", "reconboost", "smv"])
def test_three_views_of_mfeat(tmp_path, method):
    s = Trainer(make_cfg(f"method={method}", *MFEAT, *FAST[method], out=tmp_path / method)).fit()
    assert set(s["test"]["modality_acc"]) == {"pix", "fou", "zer"} and s["test"]["acc"] > 0.2  # 10 classes: chance is 0.1
    plug = load_metrics(tmp_path / method)[0]["plugins"]
    if method == "gblending":
        assert {"gblending/w/pix", "gblending/w/fou", "gblending/w/zer", "gblending/w/fused"} <= set(plug)
    if method == "smv":
        assert {"smv/contribution/pix", "smv/contribution/zer"} <= set(plug)
    if method == "reconboost":
        assert plug["reconboost/ensemble_size"] == 1 and plug["reconboost/stage"] == 1


def test_step_replacing_methods_cannot_stack():
    from mmbalance.engine import IncompatiblePluginsError
    with pytest.raises(IncompatiblePluginsError, match="both replace the training step"):
        Trainer(make_cfg("method=mla+reconboost", *SMALL))
    with pytest.raises(IncompatiblePluginsError, match="both decide the sample order"):
        Trainer(make_cfg("method=gblending+smv", *SMALL))


RESUME = {"gblending": ["method_args.gblending.super_epoch=2", "method_args.gblending.probe_epochs=1"],
          "mla": [], "reconboost": ["method_args.reconboost.stage_epochs=1.5"],
          "smv": ["method_args.smv.warmup=1", "method_args.smv.every=2"]}


@pytest.mark.parametrize("method", ["gblending", "mla", "reconboost", "smv"])
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, method):
    assert_resume_is_exact(tmp_path, [f"method={method}", *SMALL, *RESUME[method]], crash_at=3)


def test_registered():
    for name in ("gblending", "mla", "reconboost", "smv"):
        assert name in METHODS


def test_plots_from_logged_signals(tmp_path):
    from mmbalance.report import plots_baselines_objective as P

    recs = []
    for e in range(4):
        plug = {"gblending/w/a": 0.2, "gblending/w/b": 0.3, "gblending/w/fused": 0.5, "mla/projector_trace": 1 - 0.1 * e,
                "reconboost/steps/learn/a": 5 * (e % 2 == 0), "reconboost/steps/rectify": 5 * (e % 2),
                "reconboost/boost_rate": 1 + 0.1 * e, "reconboost/ensemble_size": 1}
        if e == 0:
            plug.update({"gblending/G/a": 0.1, "gblending/G/b": 0.1, "gblending/G/fused": 0.1})
        if e >= 1:
            plug.update({"smv/contribution/a": 1.2, "smv/contribution/b": 0.8, "smv/extra/a": 3, "smv/extra/b": 9})
        acc = {"acc": 0.5, "modality_acc": {"a": 0.4, "b": 0.3}}
        recs.append({"epoch": e, "train": {}, "val": acc, "test": acc, "plugins": plug})
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    files = P.plot(tmp_path, tmp_path / "plots")
    assert sorted(f.name for f in files) == ["gblending_weights.png", "mla_projector.png", "reconboost_schedule.png",
                                             "smv_valuation.png"]
    assert all(f.stat().st_size > 1000 for f in files)
    assert set(P.METHODS) == {"gblending", "mla", "reconboost", "smv"}
