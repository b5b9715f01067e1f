"""BalanceBenchmark's methods missing before, part 1: LFM, MMCosine, OPM (+ OGM*), AMCo, CML (part 2, Greedy, UMT,
UME, MBSD: tests/test_bb_methods.py).

Hand-computed core math, each plug-in's effect in the real step, runs through the real loop (synthetic,
and mfeat with 3 views), exact resume, and stacks with the seed methods (run or refused with the reason)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mmbalance import Trainer
from mmbalance.engine import IncompatiblePluginsError
from mmbalance.methods.amco import PostLinearFusion, dependence, mask_ratio, random_keep_mask
from mmbalance.methods.cml import confidence, confidence_penalty, removal_order, zeroed
from mmbalance.methods.lfm import (alignment_divergence, fitted_cls_weight, hypergradient_step, learned_lr,
                                   pairwise_alignment)
from mmbalance.methods.mmcosine import CosineFusion, cosine_logits
from mmbalance.methods.ogm_ge import ogm_boost_coefficients
from mmbalance.methods.opm import drop_probabilities, keep_masks, rescale_factors
from mmbalance.models.fusion import ConcatFusion, SumFusion
from mmbalance.models.net import FeatureRoutes

from conftest import assert_resume_is_exact, first_batch, load_metrics, make_cfg

NEW = ["lfm", "mmcosine", "opm", "amco", "cml"]


def _cfg(method, *extra, epochs=2, out=None, data=("data.options.n=240",)):
    return make_cfg(*data, "optim.lr=0.05", f"method={method}", f"train.epochs={epochs}", *extra, out=out)


_batch = first_batch
_records = load_metrics


# ====================================================================== MMCosine
def test_cosine_logits_hand_computed():
    f = torch.tensor([[3.0, 4.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    # cos with (1,0) = 0.6, with (0,1) = 0.8, with (-1,-1)/sqrt2 = -7/(5 sqrt2)
    torch.testing.assert_close(cosine_logits(f, w, 10.0), torch.tensor([[6.0, 8.0, -70 / (5 * math.sqrt(2))]]))


@pytest.mark.parametrize("kind", ["concat", "sum"])
def test_cosine_fusion_is_the_scaled_sum_of_modality_cosines(kind):
    torch.manual_seed(0)
    dims = {"a": 3, "b": 2}
    inner = ConcatFusion(dims, 4) if kind == "concat" else SumFusion(dims, 4)
    head = CosineFusion(inner, 15.0)
    feats = {"a": torch.randn(5, 3), "b": torch.randn(5, 2)}
    if kind == "concat":
        w = {"a": inner.fc.weight[:, :3], "b": inner.fc.weight[:, 3:]}
    else:
        w = {m: inner.fcs[m].weight for m in dims}
    want = {m: 15.0 * F.normalize(feats[m], dim=1) @ F.normalize(w[m], dim=1).t() for m in dims}
    shares = head.modality_logits(feats)
    for m in dims:
        torch.testing.assert_close(shares[m], want[m])
        assert shares[m].abs().max() <= 15.0 + 1e-5
    torch.testing.assert_close(head(feats), want["a"] + want["b"])  # no bias
    torch.testing.assert_close(head.linear_logits(feats), inner(feats))
    # a feature's norm no longer matters
    torch.testing.assert_close(head({"a": 7 * feats["a"], "b": feats["b"]}), head(feats))


def test_mmcosine_trains_the_cosine_head_and_predicts_with_it(tmp_path):
    t = Trainer(_cfg("mmcosine", epochs=3, out=tmp_path))
    assert isinstance(t.model.fusion, CosineFusion)
    s = t.fit()
    assert s["test"]["acc"] > 0.5
    rec = _records(tmp_path)[-1]
    assert set(rec["plugins"]) == {"mmcosine/a/true_cos", "mmcosine/b/true_cos"}
    assert all(-1 <= v <= 1 for v in rec["plugins"].values())
    # evaluation = the cosine head (no plug-in answers predict by default)
    batch = _batch(t)
    t.model.eval()
    with torch.no_grad():
        out = t.forward(batch.inputs)
        torch.testing.assert_close(t.predict(out), sum(t.model.fusion.modality_logits(out.features).values()))
    lin = Trainer(_cfg("mmcosine", "method_args.mmcosine.eval_logits=linear"))
    lin.model.eval()
    with torch.no_grad():
        out = lin.forward(batch.inputs)
        torch.testing.assert_close(lin.predict(out), lin.model.fusion.linear(out.features))


def test_fusion_refusals_name_the_reason():
    for method in ("mmcosine", "amco"):
        with pytest.raises(ValueError, match="needs model.fusion=concat or sum"):
            Trainer(_cfg(method, "model.fusion=gated"))
    for method in ("lfm", "opm"):
        with pytest.raises(ValueError, match="model.fusion=concat or sum"):
            Trainer(_cfg(method, "model.fusion=gated")).fit()
    Trainer(_cfg("cml", "model.fusion=gated", epochs=1)).fit()  # a zero feature works with any head
    with pytest.raises(ValueError, match="no fusion head"):
        Trainer(_cfg("mla+mmcosine"))
    with pytest.raises(IncompatiblePluginsError, match="both decide the evaluation prediction"):
        Trainer(_cfg("mla+mmcosine", "method_args.mmcosine.eval_logits=linear"))


# ====================================================================== OPM and OGM*
def test_opm_drop_probabilities_hand_computed():
    q = drop_probabilities(torch.tensor([30.0, 20.0]), q_base=0.5, lam=0.5)
    # rho = (1.5, 2/3): q_a = 0.5 (1 + 0.5 tanh(0.5)), q_b = 0
    assert q.tolist() == pytest.approx([0.5 * (1 + 0.5 * math.tanh(0.5)), 0.0])
    assert drop_probabilities(torch.tensor([1.0, 100.0]), 0.9, 1.0).tolist() == pytest.approx([0.0, 1.0])  # clipped
    assert drop_probabilities(torch.tensor([5.0, 5.0]), 0.5, 0.5).tolist() == [0.0, 0.0]
    # three modalities: rho = (2, 0.4, 1) -> only the first drops
    q3 = drop_probabilities(torch.tensor([3.0, 1.0, 2.0]), 0.4, 0.5)
    assert q3.tolist() == pytest.approx([0.4 * (1 + 0.5 * math.tanh(1.0)), 0.0, 0.0])
    for _ in range(50):  # never every modality: some sample always keeps a modality
        assert (drop_probabilities(torch.rand(4) * 10, 0.9, 1.0) == 0).any()


def test_opm_rescale_and_masks_hand_computed():
    q, dims = torch.tensor([0.5, 0.0]), torch.tensor([64.0, 32.0])
    # theta = (64 * 0.5) / 96 = 1/3 -> every kept feature x 1.5 (the release)
    assert rescale_factors(q, dims, "shared").tolist() == pytest.approx([1.5, 1.5])
    assert rescale_factors(q, dims, "per_modality").tolist() == pytest.approx([2.0, 1.0])
    assert rescale_factors(q, dims, "none").tolist() == [1.0, 1.0]
    assert keep_masks(torch.tensor([1.0, 0.0]), 6, torch.tensor(False)).tolist() == [[1.0] * 6] * 2
    assert keep_masks(torch.tensor([1.0, 0.0]), 6, torch.tensor(True)).tolist() == [[0.0] * 6, [1.0] * 6]
    torch.manual_seed(0)
    kept = keep_masks(torch.tensor([0.3, 0.0]), 20000, torch.tensor(True))
    assert kept[0].mean().item() == pytest.approx(0.7, abs=0.01) and kept[1].min().item() == 1.0


def test_opm_drops_whole_features_of_the_dominant_modality_on_the_fused_route_only():
    t = Trainer(_cfg("opm", "method_args.opm.p_exe=1.0", "method_args.opm.modulation_starts=0"))
    p = t.plugin("opm")
    p.on_fit_start(t)
    batch = _batch(t, 64)
    feats = {m: t.model.encoders[m](batch.inputs[m]).detach() for m in t.modalities}
    routes = FeatureRoutes(dict(feats))
    torch.manual_seed(1)
    p.transform_features(t, batch, routes)
    scores = torch.stack([F.softmax(z, 1)[torch.arange(64), batch.y].sum()
                          for z in t.model.fusion.modality_logits(feats).values()])
    q = drop_probabilities(scores, 0.5, 0.5)
    dims = torch.tensor([float(feats[m].shape[1]) for m in t.modalities])
    scale = rescale_factors(q, dims, "shared")
    assert (q > 0).sum() == 1
    for i, m in enumerate(t.modalities):
        assert routes.heads[m] is feats[m]  # heads see every feature
        got = routes.fusion[m]
        dropped = got.abs().sum(1) == 0
        kept = ~dropped & (feats[m].abs().sum(1) > 0)
        torch.testing.assert_close(got[kept], feats[m][kept] * scale[i])
        if q[i] == 0:
            assert not (dropped & (feats[m].abs().sum(1) > 0)).any()
        else:
            assert dropped.any()


def test_opm_warm_up_and_real_loop(tmp_path):
    s = Trainer(_cfg("opm", "method_args.opm.modulation_starts=1", epochs=3, out=tmp_path)).fit()
    assert s["test"]["acc"] > 0.5
    recs = _records(tmp_path)
    assert recs[0]["plugins"] == {"opm/active": 0.0}
    assert recs[2]["plugins"]["opm/active"] == 1.0 and 0 < recs[2]["plugins"]["opm/executed"] <= 1
    # synthetic: a is the informative modality, so it is the one dropped
    assert recs[2]["plugins"]["opm/a/q"] > 0.3 and recs[2]["plugins"]["opm/a/kept"] < 1
    assert recs[2]["plugins"]["opm/b/kept"] > recs[2]["plugins"]["opm/a/kept"]


def test_ogm_star_boost_coefficients_hand_computed():
    rho, k = ogm_boost_coefficients(torch.tensor([30.0, 20.0]), 4.0)
    assert rho.tolist() == pytest.approx([1.5, 2 / 3]) and k.tolist() == [1.0, 4.0]
    assert ogm_boost_coefficients(torch.tensor([3.0, 1.0, 2.0]), 4.0)[1].tolist() == [1.0, 4.0, 1.0]


def test_ogm_star_boosts_the_weaker_encoder_in_the_real_loop(tmp_path):
    Trainer(_cfg("ogm-ge", "method_args.ogm-ge.boost=4", "method_args.ogm-ge.ge=false", out=tmp_path)).fit()
    plug = _records(tmp_path)[-1]["plugins"]
    assert plug["ogm-ge/a/ratio"] > 1 and plug["ogm-ge/a/coeff"] == 1.0
    assert plug["ogm-ge/b/coeff"] == 4.0


# ====================================================================== CML
def test_cml_confidence_penalty_hand_computed():
    full = torch.log(torch.tensor([[0.6, 0.4], [0.9, 0.1]]))
    reduced = torch.log(torch.tensor([[0.8, 0.2], [0.3, 0.7]]))  # confidences 0.8 and 0.7
    torch.testing.assert_close(confidence(full), torch.tensor([0.6, 0.9]))
    # batch hinge: max(0, (0.8 - 0.6) + (0.7 - 0.9)) = 0; per sample: 0.2 + 0
    assert confidence_penalty(full, reduced, "batch").item() == pytest.approx(0.0, abs=1e-6)
    assert confidence_penalty(full, reduced, "sample").item() == pytest.approx(0.2, abs=1e-6)
    assert confidence_penalty(reduced, full, "batch").item() == pytest.approx(0.0, abs=1e-6)
    more = torch.log(torch.tensor([[0.7, 0.3], [0.95, 0.05]]))
    assert confidence_penalty(full, more, "batch").item() == pytest.approx(0.15, abs=1e-6)


def test_cml_zeroed_modality_is_balancebenchmarks_share_subtraction():
    torch.manual_seed(0)
    head = ConcatFusion({"a": 3, "b": 2, "c": 4}, 5)
    feats = {"a": torch.randn(6, 3), "b": torch.randn(6, 2), "c": torch.randn(6, 4)}
    shares = head.modality_logits(feats)
    # BB: out_p = out_s - share_m + b / M
    torch.testing.assert_close(head(zeroed(feats, {"b"})), head(feats) - shares["b"] + head.fc.bias / 3)
    order = removal_order(["a", "b", "c"], seed=0, epoch=4)
    assert sorted(order) == ["a", "b", "c"] and order == removal_order(["a", "b", "c"], 0, 4)


def _one_loss_step(method, *extra):
    """A trainer, its plug-in after ``on_fit_start``/``on_epoch_start(0)``, a real batch and forward, the base
    losses, the plain fused CE, and the losses after the plug-in's ``compute_loss``."""
    t = Trainer(_cfg(method, *extra))
    p = t.plugin(method)
    p.on_fit_start(t)
    p.on_epoch_start(t, 0)
    batch = _batch(t)
    out = t.forward(batch.inputs)
    losses = t.compute_losses(batch, out)
    ce = losses["fused"].item()
    p.compute_loss(t, batch, out, losses)
    return t, p, batch, out, ce, losses


def test_cml_loss_in_the_real_step_matches_a_manual_computation():
    t, p, batch, out, ce_full, losses = _one_loss_step("cml", "method_args.cml.hinge=sample")
    removed = p._order[-1]
    feats = {m: f.detach() for m, f in out.features.items()}
    reduced = t.model.fusion(zeroed(feats, {removed}))
    ce_red = F.cross_entropy(reduced, batch.y).item()
    pen = F.relu(confidence(reduced) - confidence(out.fused.detach())).sum().item()
    assert losses["fused"].item() == pytest.approx(ce_full / 2, rel=1e-5)
    assert losses["cml_removed"].item() == pytest.approx(ce_red / 2, rel=1e-5)
    assert losses["cml_conf"].item() == pytest.approx(0.1 * pen, rel=1e-5, abs=1e-7)


def test_cml_real_loop_logs_the_confidence_gain(tmp_path):
    s = Trainer(_cfg("cml", out=tmp_path)).fit()
    assert s["test"]["acc"] > 0.5
    plug = _records(tmp_path)[-1]["plugins"]
    assert set(plug) == {"cml/conf_gain", "cml/penalty"} and plug["cml/penalty"] >= 0
    rec = _records(tmp_path)[-1]["train"]
    assert {"loss_fused", "loss_cml_removed", "loss_cml_conf"} <= set(rec)


# ====================================================================== LFM
def test_lfm_divergences_hand_computed():
    a, b = torch.log(torch.tensor([[0.5, 0.5]])), torch.log(torch.tensor([[0.9, 0.1]]))
    # m = (0.7, 0.3); code = (KL(m||p) + KL(m||q)) / 2, js = (KL(p||m) + KL(q||m)) / 2
    kl_mp = 0.7 * math.log(0.7 / 0.5) + 0.3 * math.log(0.3 / 0.5)
    kl_mq = 0.7 * math.log(0.7 / 0.9) + 0.3 * math.log(0.3 / 0.1)
    kl_pm = 0.5 * math.log(0.5 / 0.7) + 0.5 * math.log(0.5 / 0.3)
    kl_qm = 0.9 * math.log(0.9 / 0.7) + 0.1 * math.log(0.1 / 0.3)
    assert alignment_divergence(a, b, "code").item() == pytest.approx((kl_mp + kl_mq) / 2, rel=1e-5)
    assert alignment_divergence(a, b, "js").item() == pytest.approx((kl_pm + kl_qm) / 2, rel=1e-5)
    assert alignment_divergence(a, a, "code").item() == pytest.approx(0.0, abs=1e-7)
    # the release's expression, on a batch
    torch.manual_seed(0)
    x, y = torch.randn(7, 4), torch.randn(7, 4)
    p, q = F.softmax(x, 1), F.softmax(y, 1)
    m = 0.5 * (p + q)
    release = 0.5 * (F.kl_div(p.log(), m, reduction="batchmean") + F.kl_div(q.log(), m, reduction="batchmean"))
    torch.testing.assert_close(alignment_divergence(x, y, "code"), release)
    z = {"a": x, "b": y, "c": torch.randn(7, 4)}
    want = (alignment_divergence(x, y) + alignment_divergence(x, z["c"]) + alignment_divergence(y, z["c"])) / 3
    torch.testing.assert_close(pairwise_alignment(z, ["a", "b", "c"]), want)


def test_lfm_weight_schedules_hand_computed():
    assert fitted_cls_weight(0) == pytest.approx(0.204623704)
    assert fitted_cls_weight(20) == pytest.approx(0.3008869, abs=1e-6)
    assert fitted_cls_weight(100) == pytest.approx(0.5389, abs=1e-3)
    assert hypergradient_step(0.95, -10.0, 1e-4) == pytest.approx(0.95)  # clipped at 0.95
    assert hypergradient_step(0.5, 1000.0, 1e-4) == pytest.approx(0.4)
    assert hypergradient_step(0.06, 1000.0, 1e-4) == pytest.approx(0.05)
    assert [learned_lr(1e-4, e, 20) for e in (0, 19, 20, 39, 40)] == pytest.approx([1e-4, 1e-4, 5e-5, 5e-5, 2.5e-5])


def test_lfm_loss_in_the_real_step():
    t, p, batch, out, ce, losses = _one_loss_step("lfm")
    k_cls = fitted_cls_weight(0)
    shares = t.model.fusion.modality_logits(out.features)
    align = alignment_divergence(shares["a"], shares["b"]).item()
    assert losses["fused"].item() == pytest.approx(2 * k_cls * ce, rel=1e-5)
    assert losses["lfm_align"].item() == pytest.approx(2 * (1 - k_cls) * align, rel=1e-5)


def test_lfm_learned_weight_moves_by_the_hypergradient(tmp_path):
    Trainer(_cfg("lfm", "method_args.lfm.weighting=learned", "method_args.lfm.lr_alpha=100", epochs=2,
                 out=tmp_path)).fit()
    recs = _records(tmp_path)
    for r in recs:
        plug = r["plugins"]
        assert plug["lfm/cls_weight"] + plug["lfm/align_weight"] == pytest.approx(1.0)
        assert 0.05 <= plug["lfm/align_weight"] <= 0.95
    g0 = recs[0]["plugins"]["lfm/hypergrad"]
    assert g0 != 0
    assert recs[0]["plugins"]["lfm/align_weight"] == pytest.approx(min(0.95, max(0.05, 0.95 - 100 * g0)))


# ====================================================================== AMCo
def test_amco_schedule_masks_and_dependence_hand_computed():
    assert [mask_ratio(b, 0, 0.3, 0.1) for b in range(5)] == [0.0] * 5  # epoch 0 never masks
    assert [mask_ratio(b, 1, 0.3, 0.1) for b in range(5)] == pytest.approx([0, 0.5, math.sin(math.pi / 3), 1, 1])
    keep = random_keep_mask(10, 0.5, torch.device("cpu"))
    assert keep.sum().item() == 5 and set(keep.tolist()) == {0.0, 1.0}
    assert random_keep_mask(7, 1.0, torch.device("cpu")).sum().item() == 0
    assert random_keep_mask(7, 0.1, torch.device("cpu")).sum().item() == 7  # int(0.7) = 0 dropped
    # one softmax over [0, 0 | ln3, ln3]: masses 2/8 and 6/8 (summed over a one-row batch)
    shares = {"a": torch.zeros(1, 2), "b": torch.full((1, 2), math.log(3.0))}
    assert dependence(shares, ["a", "b"]).tolist() == pytest.approx([0.25, 0.75])


def test_amco_post_linear_fusion():
    torch.manual_seed(0)
    inner = ConcatFusion({"a": 3, "b": 2}, 4)
    head = PostLinearFusion(inner, 4)
    feats = {"a": torch.randn(5, 3), "b": torch.randn(5, 2)}
    torch.testing.assert_close(head(feats), head.post(inner(feats)))
    torch.testing.assert_close(head.modality_logits(feats)["a"], inner.modality_logits(feats)["a"])


def test_amco_masks_only_the_dependent_modality():
    t = Trainer(_cfg("amco"))
    p = t.plugin("amco")
    p.on_fit_start(t)
    p.on_epoch_start(t, 1)
    t.epoch = 1
    p._batch_index = 2  # p_t = sin(pi/3): int(0.866 * 64) = 55 of 64 dimensions
    p._dependent = torch.tensor([True, False])
    batch = _batch(t)
    feats = {m: t.model.encoders[m](batch.inputs[m]).detach() + 1.0 for m in t.modalities}
    routes = FeatureRoutes(dict(feats))
    p.before_forward(t, batch)
    p.transform_features(t, batch, routes)
    a, b = t.modalities
    zero_cols = (routes.fusion[a] == 0).all(0)
    assert zero_cols.sum().item() == int(math.sin(math.pi / 3) * feats[a].shape[1])
    torch.testing.assert_close(routes.fusion[a][:, ~zero_cols], feats[a][:, ~zero_cols])
    assert routes.fusion[b] is feats[b] or torch.equal(routes.fusion[b], feats[b])
    assert routes.heads[a] is feats[a]


@pytest.mark.parametrize("variant", [["method_args.amco.mask_on=features"],  # the default
                                     ["method_args.amco.mask_on=logits", "method_args.amco.post_linear=true"]])  # BB
def test_amco_real_loop(variant, tmp_path):
    t = Trainer(_cfg("amco", *variant, epochs=3, out=tmp_path))
    assert isinstance(t.model.fusion, PostLinearFusion) == ("method_args.amco.post_linear=true" in variant)
    s = t.fit()
    assert s["test"]["acc"] > 0.5
    recs = _records(tmp_path)
    assert recs[0]["plugins"]["amco/mask_ratio"] == 0.0 and recs[2]["plugins"]["amco/mask_ratio"] > 0.5
    assert recs[2]["plugins"]["amco/a/dependent"] + recs[2]["plugins"]["amco/b/dependent"] > 0
    assert {"loss_amco_uni_a", "loss_amco_uni_b"} <= set(recs[0]["train"])


# ====================================================================== all five
@pytest.mark.parametrize("method", NEW)
def test_three_modalities_on_mfeat(method, tmp_path):
    cfg = _cfg(method, "train.batch_size=128", data=("data.name=mfeat", "data.modalities=[pix,fou,zer]"), out=tmp_path)
    s = Trainer(cfg).fit()
    assert s["modalities"] == ["pix", "fou", "zer"] and s["test"]["acc"] > 0.5


RESUME = {"lfm": ["method_args.lfm.weighting=learned", "method_args.lfm.lr_alpha=10"],
          "mmcosine": [], "opm": ["method_args.opm.modulation_starts=0"], "amco": [], "cml": []}


@pytest.mark.parametrize("method", NEW)
def test_interrupted_then_resumed_equals_uninterrupted(tmp_path, method):
    assert_resume_is_exact(tmp_path, [f"method={method}", *RESUME[method]], crash_at=2, epochs=3)


SEED = {"dus-h": [], "bss-l": [], "diagnose-relearn": ["method_args.diagnose-relearn.reinit_every=1"]}


@pytest.mark.parametrize("seed_method", sorted(SEED))
@pytest.mark.parametrize("method", NEW)
def test_stacks_with_the_seed_methods(method, seed_method):
    # none of the five needs strictly paired batches (they act on the paired rows), so DUS's nested batches work
    s = Trainer(_cfg(f"{seed_method}+{method}", *SEED[seed_method], epochs=2)).fit()
    assert s["test"]["acc"] > 0


@pytest.mark.parametrize("method", ["lfm", "opm", "amco", "cml"])
def test_refuses_a_step_replacing_method(method):
    with pytest.raises(IncompatiblePluginsError, match="replaces that step"):
        Trainer(_cfg(f"{method}+reconboost"))


def test_share_based_methods_stack_on_the_cosine_head():
    # MMCosine's head has additive shares, so share-based methods read the cosine shares
    for method in ("opm+mmcosine", "amco+mmcosine", "lfm+mmcosine", "ogm-ge+mmcosine"):
        t = Trainer(_cfg(method, epochs=1))
        assert isinstance(t.model.fusion, CosineFusion)
        assert t.fit()["test"]["acc"] > 0
    with pytest.raises(ValueError, match="PostLinearFusion"):
        Trainer(_cfg("amco+mmcosine", "method_args.amco.post_linear=true"))
