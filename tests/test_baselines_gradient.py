"""OGM-GE, AGM, PMR, MSLR, MMPareto: hand-computed core math, state, and runs through the real loop."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from mmbalance import Config, Trainer
from mmbalance.engine.checkpoint import load_checkpoint
from mmbalance.engine import IncompatiblePluginsError
from mmbalance.engine.samplers import epoch_generator
from mmbalance.functional.common import coalitions
from mmbalance.methods.agm import agm_coefficients, contribution_scores, contributions, scale_grad, update_running
from mmbalance.methods.mmpareto import combine, min_norm_weight, pareto_weights
from mmbalance.methods.mslr import dynamic_ratio, param_groups
from mmbalance.methods.ogm_ge import modulate_, ogm_coefficients, true_class_score
from mmbalance.methods.pmr import (class_means, pmr_coefficients, prototype_entropy, prototype_logits,
                                   update_prototypes)

from conftest import assert_resume_is_exact, first_batch, load_metrics, make_cfg

METHODS5 = ["ogm-ge", "agm", "pmr", "mslr", "mmpareto"]
SMALL = ["data.options.n=240"]


_batch = first_batch


def _assert_exact_resume(tmp_path, method, *extra):
    """The shared exact-resume check; returns the uninterrupted and the resumed run folders."""
    assert_resume_is_exact(tmp_path, [f"method={method}", *SMALL, *extra], crash_at=2, epochs=3)
    return tmp_path / "full", tmp_path / "cut"


# ====================================================================== OGM-GE
def test_ogm_coefficient_hand_computed():
    rho, k = ogm_coefficients(torch.tensor([30.0, 20.0]), alpha=0.8)
    assert rho.tolist() == pytest.approx([1.5, 2 / 3])
    # dominant a: 1 - tanh(0.8 * 1.5) = 1 - tanh(1.2); b untouched
    assert k.tolist() == pytest.approx([1 - math.tanh(1.2), 1.0])
    assert k[0].item() == pytest.approx(0.1663450, abs=1e-6)
    _, ks = ogm_coefficients(torch.tensor([30.0, 20.0]), alpha=0.8, form="shifted")
    assert ks[0].item() == pytest.approx(1 - math.tanh(0.4))
    # three modalities: rho_j = s_j / mean(others) = [3/1.5, 1/2.5, 2/2]; only a (> 1) is slowed
    rho3, k3 = ogm_coefficients(torch.tensor([3.0, 1.0, 2.0]), alpha=0.5)
    assert rho3.tolist() == pytest.approx([2.0, 0.4, 1.0])
    assert k3.tolist() == pytest.approx([1 - math.tanh(1.0), 1.0, 1.0])
    with pytest.raises(ValueError, match="coefficient form"):
        ogm_coefficients(torch.tensor([1.0, 2.0]), 0.1, form="nope")


def test_ogm_true_class_score_is_a_sum_of_probabilities():
    z = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])
    assert true_class_score(z, torch.tensor([0, 0])).item() == pytest.approx(0.5 + 0.75)


def test_ogm_modulate_scales_and_adds_noise_with_the_gradient_std():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.zeros(200, 100))
    g = torch.randn(200, 100) * 3.0
    p.grad = g.clone()
    modulate_([p], torch.tensor(0.25), noise=False)
    torch.testing.assert_close(p.grad, 0.25 * g)
    p.grad = g.clone()
    modulate_([p], torch.tensor(0.25), noise=True)
    noise = p.grad - 0.25 * g
    assert noise.std().item() == pytest.approx(g.std().item(), rel=0.03)
    assert abs(noise.mean().item()) < 0.05


def test_ogm_scales_the_dominant_encoder_gradient_in_the_real_step():
    t = Trainer(make_cfg("method=ogm-ge", *SMALL, "method_args.ogm-ge.ge=false"))
    p = t.plugin("ogm-ge")
    p.on_fit_start(t)
    batch = _batch(t)
    out = t.forward(batch.inputs)
    t.compute_losses(batch, out)["fused"].backward()
    plain = {m: [q.grad.clone() for q in t.model.encoders[m].parameters()] for m in t.modalities}
    # the coefficient by hand from the concat shares: f_m W_m^T + b/2
    fc = t.model.fusion.fc
    y = batch.y
    s = {}
    for m in t.modalities:
        sl = t.model.fusion.weight_slice(m)
        z = out.features[m].detach() @ fc.weight[:, sl].detach().t() + fc.bias.detach() / 2
        s[m] = F.softmax(z, 1)[torch.arange(len(y)), y].sum().item()
    (a, b) = t.modalities
    rho_a = s[a] / s[b]
    k = {a: 1 - math.tanh(0.8 * rho_a) if rho_a > 1 else 1.0, b: 1 - math.tanh(0.8 / rho_a) if rho_a < 1 else 1.0}
    p.after_backward(t, batch, out)
    for m in t.modalities:
        for q, g0 in zip(t.model.encoders[m].parameters(), plain[m]):
            want = g0 * (k[m] if q.dim() >= 2 else 1.0)  # default params=weights: biases untouched
            torch.testing.assert_close(q.grad, want, rtol=1e-5, atol=1e-7)
    assert min(k.values()) < 1.0


def test_ogm_fit_logs_ratios_and_slows_the_informative_modality(tmp_path):
    Trainer(make_cfg("method=ogm-ge", *SMALL, "train.epochs=3", out=tmp_path)).fit()
    recs = load_metrics(tmp_path)
    # synthetic: modality a is far more informative than b, so a dominates and is slowed
    assert all(r["plugins"]["ogm-ge/a/ratio"] > 1 > r["plugins"]["ogm-ge/b/ratio"] for r in recs[1:])
    assert all(r["plugins"]["ogm-ge/a/coeff"] < 1.0 == r["plugins"]["ogm-ge/b/coeff"] for r in recs[1:])
    assert len(recs[0]["steps"]["ogm-ge/a/coeff"]) == recs[0]["train"]["steps"]
    assert recs[0]["plugins"]["ogm-ge/a/ratio"] != recs[-1]["plugins"]["ogm-ge/a/ratio"]


def test_ogm_window_outside_leaves_gradients_alone(tmp_path):
    cfg = make_cfg("method=ogm-ge", *SMALL, "method_args.ogm-ge.modulation_starts=5",
                   "method_args.ogm-ge.modulation_ends=6")
    ref = Trainer(make_cfg("method=joint", *SMALL)).fit()
    got = Trainer(cfg).fit()
    assert got["test"]["acc"] == ref["test"]["acc"] and got["val"]["loss"] == pytest.approx(ref["val"]["loss"])


def test_ogm_startup_errors_name_the_option():
    with pytest.raises(ValueError, match=r"fusion 'film'.*score_from=heads"):
        Trainer(make_cfg("method=ogm-ge", *SMALL, "model.fusion=film")).fit()
    with pytest.raises(ValueError, match="unimodal_loss_weight"):
        Trainer(make_cfg("method=ogm-ge", *SMALL, "model.fusion=film", "method_args.ogm-ge.score_from=heads")).fit()
    # film works when the heads are trained and score the modalities
    Trainer(make_cfg("method=ogm-ge", *SMALL, "model.fusion=film", "method_args.ogm-ge.score_from=heads",
                     "train.unimodal_loss_weight=1", "train.epochs=1")).fit()
    with pytest.raises(ValueError, match="method_args.ogm-ge.alpha"):
        Trainer(make_cfg("method=ogm-ge", *SMALL, "method_args.ogm-ge.alpha=-1"))
    with pytest.raises(ValueError, match="selects no parameter"):
        Trainer(make_cfg("method=ogm-ge", *SMALL, "method_args.ogm-ge.params=conv", "train.epochs=1")).fit()


# ====================================================================== AGM
def test_agm_two_modality_contributions_are_the_official_formula():
    g = torch.Generator().manual_seed(0)
    T, Pa, Pv, Z = (torch.randn(4, 3, generator=g) for _ in range(4))
    # P_a: audio padded (only v present), P_v: visual padded (only a present)
    vals = {frozenset({"a", "v"}): T, frozenset({"v"}): Pa, frozenset({"a"}): Pv, frozenset(): Z}
    c = contributions(vals, ["a", "v"])
    torch.testing.assert_close(c["a"], 0.5 * (T - Pa + Pv))
    torch.testing.assert_close(c["v"], 0.5 * (T - Pv + Pa))


def test_agm_three_modality_shapley_on_an_additive_game():
    w = {"a": torch.tensor([1.0, 0.0]), "b": torch.tensor([0.0, 2.0]), "c": torch.tensor([-1.0, 1.0])}
    e = torch.tensor([0.3, 0.6])
    mods = ["a", "b", "c"]
    vals = {s: e + sum((w[m] for m in s), torch.zeros(2)) for s in coalitions(mods)}
    assert len(vals) == 8
    c = contributions(vals, mods)
    for m in mods:  # additive game: Shapley value = own weight; plus an equal share of v(empty)
        torch.testing.assert_close(c[m], w[m] + e / 3)
    torch.testing.assert_close(sum(c.values()), vals[frozenset(mods)])
    # interaction term split equally between the two players
    vals2 = {s: (torch.tensor([6.0, 0.0]) if {"a", "b"} <= s else torch.zeros(2)) for s in coalitions(mods)}
    c2 = contributions(vals2, mods)
    torch.testing.assert_close(c2["a"], torch.tensor([3.0, 0.0]))
    torch.testing.assert_close(c2["c"], torch.zeros(2))


def test_agm_coefficients_hand_computed():
    ratio, target, k = agm_coefficients(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5]), alpha=0.1)
    # ratio_a = exp(s_b - s_a) = e (a has the lower loss: dominant); target = exp(0) = 1
    assert ratio.tolist() == pytest.approx([math.e, 1 / math.e])
    assert target.tolist() == pytest.approx([1.0, 1.0])
    assert k.tolist() == pytest.approx([math.exp(0.1 * (1 - math.e)), math.exp(0.1 * (1 - 1 / math.e))])
    assert k[0].item() == pytest.approx(0.842124, abs=1e-6)
    # clip of target - ratio at 10
    _, _, kc = agm_coefficients(torch.tensor([5.0, 5.0]), torch.tensor([0.0, 3.0]), alpha=1.0, clip=10.0)
    assert kc[0].item() == pytest.approx(math.exp(10.0))  # target_a = e^3 = 20.1, ratio 1: diff clipped
    assert kc[1].item() == pytest.approx(math.exp(math.exp(-3.0) - 1.0))
    # three modalities: exp(3/2 * (mean - s_m))
    r3, _, _ = agm_coefficients(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3), alpha=0.1)
    assert r3.tolist() == pytest.approx([math.exp(1.5), 1.0, math.exp(-1.5)])


def test_agm_running_mean_and_scores():
    r = update_running(torch.zeros(2), torch.tensor([2.0, 4.0]), 1)
    assert r.tolist() == [2.0, 4.0]
    r = update_running(r, torch.tensor([4.0, 0.0]), 2)
    assert r.tolist() == [3.0, 2.0]
    z = {"a": torch.tensor([[0.0, 0.0]]), "b": torch.tensor([[0.0, -100.0]])}
    s = contribution_scores(z, torch.tensor([1]), ["a", "b"])
    assert s.tolist() == pytest.approx([math.log(2.0), -math.log(1e-8)])  # floor at p = 1e-8
    x = torch.ones(3, requires_grad=True)
    scale_grad(x * 2, torch.tensor(0.25)).sum().backward()
    assert x.grad.tolist() == [0.5, 0.5, 0.5]


def test_agm_output_mode_scales_each_encoder_by_its_coefficient():
    # with zero-feature padding and a concat head, c_m = f_m W_m^T + b/2: the encoder gradients become exactly
    # k_m times the plain ones, and the loss value is unchanged
    t = Trainer(make_cfg("method=agm", *SMALL, "method_args.agm.pad=zero_feature", "method_args.agm.grad_clip=null",
                         "method_args.agm.alpha=0.5"))
    p = t.plugin("agm")
    p.on_fit_start(t)
    p.running = torch.tensor([0.3, 1.9], device=t.device)  # a history in which a was far ahead
    p.t = 7
    batch = _batch(t)
    out = t.forward(batch.inputs)
    losses = t.compute_losses(batch, out)
    plain_loss = losses["fused"].item()
    plain = torch.autograd.grad(losses["fused"], list(t.model.encoders.parameters()), retain_graph=True)
    p.compute_loss(t, batch, out, losses)
    assert losses["fused"].item() == pytest.approx(plain_loss, rel=1e-5)
    losses["fused"].backward()
    k = p._coeff
    assert k is not None and not torch.allclose(k, torch.ones_like(k))
    i = 0
    for j, m in enumerate(t.modalities):
        for q in t.model.encoders[m].parameters():
            torch.testing.assert_close(q.grad, k[j] * plain[i], rtol=1e-4, atol=1e-7)
            i += 1
    assert p.t == 8  # the running mean was updated with this step's scores


def test_agm_state_round_trip_and_exact_resume(tmp_path):
    full, part = _assert_exact_resume(tmp_path, "agm")
    s_full = load_checkpoint(full / "last.pt")["plugins"]["agm"]
    s_part = load_checkpoint(part / "last.pt")["plugins"]["agm"]
    assert s_full["t"] == s_part["t"] > 0 and s_full["running"].shape == (2,)
    assert torch.equal(s_full["running"], s_part["running"])


def test_agm_encoder_mode_and_logs(tmp_path):
    Trainer(make_cfg("method=agm", *SMALL, "method_args.agm.mode=encoder", "method_args.agm.alpha=1.0",
                     "train.epochs=2", out=tmp_path)).fit()
    rec = load_metrics(tmp_path)[-1]["plugins"]
    assert rec["agm/a/ratio"] > 1 > rec["agm/b/ratio"]  # a (informative) has the lower contribution loss
    assert rec["agm/a/score"] < rec["agm/b/score"]
    assert 0.0 <= rec["agm/clipped"] <= 1.0


# ====================================================================== PMR
def test_pmr_prototype_logits_and_loss_hand_computed():
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    c = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    z = prototype_logits(f, c)
    torch.testing.assert_close(z, torch.tensor([[0.0, -4.0], [-5.0, -3.0]]))
    loss = F.cross_entropy(z, torch.tensor([0, 1]))
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-4)) + math.log(1 + math.exp(-2))) / 2)
    assert loss.item() == pytest.approx(0.0725390, abs=1e-6)
    assert prototype_entropy(torch.zeros(3, 2)).item() == pytest.approx(3 * math.log(2))


def test_pmr_coefficients_hand_computed():
    rho, beta = pmr_coefficients(torch.tensor([3.0, 1.0]), alpha=0.6)
    assert rho.tolist() == pytest.approx([3.0, 1 / 3])
    assert beta.tolist() == pytest.approx([0.0, 0.6])  # only the lagging modality gets the PCE term
    _, bc = pmr_coefficients(torch.tensor([1.2, 1.0]), alpha=0.6, rule="clip")
    assert bc.tolist() == pytest.approx([0.0, 0.6 * 0.2])  # 1/rho - 1 = 0.2
    _, bc = pmr_coefficients(torch.tensor([3.0, 1.0]), alpha=0.6, rule="clip")
    assert bc.tolist() == pytest.approx([0.0, 0.6])  # clipped at 1
    _, b3 = pmr_coefficients(torch.tensor([4.0, 1.0, 1.0]), alpha=1.0)
    assert b3.tolist() == pytest.approx([0.0, 1.0, 1.0])  # rho = [4, 0.4, 0.4]


def test_pmr_prototype_update_hand_computed():
    f = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    y = torch.tensor([0, 0, 2])
    mean, counts = class_means(f, y, 3)
    torch.testing.assert_close(mean, torch.tensor([[2.0, 1.0], [0.0, 0.0], [5.0, 5.0]]))
    assert counts.tolist() == [2.0, 0.0, 1.0]
    old = torch.tensor([[0.0, 1.0], [7.0, 7.0], [1.0, 1.0]])
    new = update_prototypes(mean, counts, old, momentum=0.5)
    # EMA where the class was seen; class 1 (absent) keeps its old prototype
    torch.testing.assert_close(new, torch.tensor([[1.0, 1.0], [7.0, 7.0], [3.0, 3.0]]))
    torch.testing.assert_close(update_prototypes(mean, counts, None, 0.5), mean)


def test_pmr_prototypes_follow_the_formula_in_the_real_loop(tmp_path):
    t = Trainer(make_cfg("method=pmr", *SMALL, "train.epochs=2", out=tmp_path))
    t.fit()
    recs = load_metrics(tmp_path)
    assert all(r["plugins"]["pmr/b/beta"] > 0 and r["plugins"]["pmr/a/beta"] == 0 for r in recs)
    assert all(r["train"]["loss_pmr_b"] > 0 and r["train"]["loss_pmr_a"] == 0 for r in recs)
    assert recs[0]["train"]["loss_pmr_entropy"] < 0  # PER maximises the dominant modality's entropy
    p = t.plugin("pmr")
    old = {m: v.clone() for m, v in p.prototypes.items()}
    p.update_prototypes(t, 7)
    feats, y = t.extract_features("train")
    n = len(y)
    idx = torch.randperm(n, generator=epoch_generator(t.cfg.train.seed, 7, salt=0x9A7))[: math.ceil(0.1 * n)]
    for m in t.modalities:
        mean, counts = class_means(feats[m][idx], y[idx], t.num_classes)
        want = torch.where(counts.unsqueeze(1) > 0, 0.5 * mean + 0.5 * old[m], old[m])
        torch.testing.assert_close(p.prototypes[m].cpu(), want, rtol=1e-4, atol=1e-5)
    st = p.state_dict()
    q = type(p)()
    q.load_state_dict(st)
    assert all(torch.equal(q.prototypes[m], p.prototypes[m].cpu()) for m in t.modalities) and q.updates == p.updates


def test_pmr_exact_resume(tmp_path):
    full, part = _assert_exact_resume(tmp_path, "pmr")
    pa = load_checkpoint(full / "last.pt")["plugins"]["pmr"]["prototypes"]
    pb = load_checkpoint(part / "last.pt")["plugins"]["pmr"]["prototypes"]
    assert set(pa) == {"a", "b"} and all(torch.equal(pa[m], pb[m]) for m in pa)


# ====================================================================== MSLR
def test_mslr_param_groups_hand_computed():
    t = Trainer(make_cfg("method=mslr", *SMALL, "method_args.mslr.ratios={a: 0.5, b: 2.0}",
                         "method_args.mslr.strategy=keep"))
    groups = t.optimizer.param_groups
    assert [g["modality"] for g in groups] == ["a", "b", None]
    assert [g["lr"] for g in groups] == pytest.approx([0.025, 0.1, 0.05])
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in t.model.parameters())  # a partition of the model
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in list(t.model.encoders["a"].parameters())
                                                   + list(t.model.heads["a"].parameters())}
    assert {id(p) for p in groups[2]["params"]} == {id(p) for p in t.model.fusion.parameters()}
    direct = param_groups(t.model, 1.0, {"a": 3.0, "b": 1.0})
    assert [g["lr"] for g in direct] == [3.0, 1.0, 1.0]


def test_mslr_dynamic_ratio_hand_computed():
    assert dynamic_ratio(0.6, [0.5, 0.5, 0.4, 0.6, 0.5]) == pytest.approx(1.2)
    assert dynamic_ratio(0.6, []) == 1.0 and dynamic_ratio(0.6, [0.0]) == 1.0


def test_mslr_dynamic_rates_follow_validation_accuracy_and_the_scheduler(tmp_path):
    t = Trainer(make_cfg("method=mslr", *SMALL, "method_args.mslr.window=1", "method_args.mslr.ratios={b: 2.0}",
                         "optim.scheduler=step", "optim.step_size=1", "optim.gamma=0.5", "train.epochs=3",
                         out=tmp_path))
    t.fit()
    recs = load_metrics(tmp_path)
    acc = {m: [r["plugins"][f"mslr/{m}/val_acc"] for r in recs] for m in ("a", "b")}
    init = {"a": 1.0, "b": 2.0}
    for m in ("a", "b"):
        assert recs[0]["plugins"][f"mslr/{m}/ratio"] == init[m]  # window not yet full
        for e in (1, 2):  # ratio = initial * acc_t / acc_{t-1}
            want = init[m] * acc[m][e] / acc[m][e - 1]
            assert recs[e]["plugins"][f"mslr/{m}/ratio"] == pytest.approx(want)
        # lr in force = base * gamma^epochs * ratio (rescale multiplies on top of StepLR)
        g = next(g for g in t.optimizer.param_groups if g["modality"] == m)
        assert g["lr"] == pytest.approx(0.05 * 0.5 ** 3 * recs[-1]["plugins"][f"mslr/{m}/ratio"])
    fusion_group = next(g for g in t.optimizer.param_groups if g["modality"] is None)
    assert fusion_group["lr"] == pytest.approx(0.05 * 0.5 ** 3)
    st = load_checkpoint(tmp_path / "last.pt")["plugins"]["mslr"]
    assert st["ratios"]["b"] == pytest.approx(recs[-1]["plugins"]["mslr/b/ratio"]) and len(st["memory"]["a"]) == 1


def test_mslr_exact_resume(tmp_path):
    _assert_exact_resume(tmp_path, "mslr", "method_args.mslr.window=1")


def test_mslr_errors():
    with pytest.raises(ValueError, match="names modality 'zz'"):
        Trainer(make_cfg("method=mslr", *SMALL, "method_args.mslr.ratios={zz: 2.0}"))
    with pytest.raises(ValueError, match="method_args.mslr.ratios.a"):
        Trainer(make_cfg("method=mslr", *SMALL, "method_args.mslr.ratios={a: -1}"))
    with pytest.raises(ValueError, match="score_from=heads"):
        Trainer(make_cfg("method=mslr", *SMALL, "model.fusion=gated", "train.epochs=1")).fit()


# ====================================================================== MMPareto
def test_mmpareto_min_norm_weights_hand_computed():
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    w = min_norm_weight(g1 @ g1, g1 @ g2, g2 @ g2)
    assert w.item() == pytest.approx(0.6)  # (2 - (-1)) / (1 + 2 + 2)
    d = w * g1 + (1 - w) * g2
    assert d.tolist() == pytest.approx([0.2, 0.4])
    assert (d @ (g1 - g2)).item() == pytest.approx(0.0, abs=1e-6)  # min-norm point: orthogonal to the segment
    cos, k_mm, k_uni = pareto_weights(g1, g2)
    assert cos.item() == pytest.approx(-1 / math.sqrt(2)) and k_mm.item() == pytest.approx(0.6)
    cos, k_mm, k_uni = pareto_weights(g1, torch.tensor([1.0, 1.0]))
    assert cos.item() > 0 and (k_mm.item(), k_uni.item()) == (0.5, 0.5)
    # the release's guards
    assert min_norm_weight(torch.tensor(1.0), torch.tensor(1.0), torch.tensor(4.0)).item() == pytest.approx(0.999)
    assert min_norm_weight(torch.tensor(4.0), torch.tensor(1.0), torch.tensor(1.0)).item() == pytest.approx(0.001)


def test_mmpareto_combine_hand_computed():
    g_mm, g_uni = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0])
    k_mm, k_uni = torch.tensor(0.6), torch.tensor(0.4)
    new = torch.tensor([0.4, 0.8])  # 2 * (0.6 g_mm + 0.4 g_uni)
    out = combine(g_mm, g_uni, g_mm + g_uni, k_mm, k_uni, 1.5)
    # ||g_sum|| = 1 > ||new|| = sqrt(0.8): rescaled up to norm 1, then x1.5
    torch.testing.assert_close(out, 1.5 * new / math.sqrt(0.8))
    assert torch.linalg.vector_norm(out).item() == pytest.approx(1.5)
    # agreeing gradients (0.5/0.5): exactly gamma times the summed gradient
    a, b = torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5])
    torch.testing.assert_close(combine(a, b, a + b, 0.5, 0.5, 1.5), 1.5 * (a + b))


def test_mmpareto_real_step_matches_a_manual_computation():
    t = Trainer(make_cfg("method=mmpareto", *SMALL))
    p = t.plugin("mmpareto")
    p.on_fit_start(t)
    batch = _batch(t)
    # reference gradients from an independent forward with the same weights
    out0 = t.forward(batch.inputs)
    l0 = t.compute_losses(batch, out0)
    assert set(l0) == {"fused", "uni_a", "uni_b"}
    want = {}
    for m in t.modalities:
        ps = list(t.model.encoders[m].parameters())
        gm = torch.autograd.grad(l0["fused"], ps, retain_graph=True)
        gu = torch.autograd.grad(l0[f"uni_{m}"], ps, retain_graph=True)
        fm, fu = torch.cat([g.flatten() for g in gm]), torch.cat([g.flatten() for g in gu])
        v11, v12, v22 = (fm @ fm).item(), (fm @ fu).item(), (fu @ fu).item()
        k = 0.5 if v12 > 0 else (v22 - v12) / (v11 + v22 - 2 * v12)
        want[m] = []
        for a, b in zip(gm, gu):
            new = 2 * (k * a + (1 - k) * b)
            scale = max(1.0, (a + b).norm().item() / new.norm().item())
            want[m].append(1.5 * scale * new)
    out = t.forward(batch.inputs)
    losses = t.compute_losses(batch, out)
    t.call("compute_loss", batch, out, losses)
    t.optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    plain_head = [q.grad.clone() for q in t.model.fusion.parameters()]
    t.call("after_backward", batch, out)
    for m in t.modalities:
        for q, w in zip(t.model.encoders[m].parameters(), want[m]):
            torch.testing.assert_close(q.grad, w, rtol=1e-4, atol=1e-6)
    for q, g in zip(t.model.fusion.parameters(), plain_head):  # heads keep plain gradients
        assert torch.equal(q.grad, g)


def test_mmpareto_fit_and_errors(tmp_path):
    Trainer(make_cfg("method=mmpareto", *SMALL, "train.epochs=2", out=tmp_path)).fit()
    recs = load_metrics(tmp_path)
    for r in recs:
        for m in ("a", "b"):
            assert -1 <= r["plugins"][f"mmpareto/{m}/cos"] <= 1
            assert 0 <= r["plugins"][f"mmpareto/{m}/conflict"] <= 1
        assert r["train"]["loss_uni_a"] > 0
    assert len(recs[0]["steps"]["mmpareto/a/cos"]) == recs[0]["train"]["steps"]
    with pytest.raises(ValueError, match="unimodal_loss_weight"):
        Trainer(make_cfg("method=mmpareto", *SMALL, "train.unimodal_loss_weight=0", "train.epochs=1")).fit()


# ====================================================================== all five
@pytest.mark.parametrize("method", METHODS5)
def test_three_modalities_on_mfeat(method, tmp_path):
    cfg = make_cfg(f"method={method}", "data.name=mfeat", "data.modalities=[pix,fou,zer]", "train.batch_size=128",
                   "train.epochs=1", out=tmp_path)
    s = Trainer(cfg).fit()
    assert s["modalities"] == ["pix", "fou", "zer"] and s["test"]["acc"] > 0.5
    keys = load_metrics(tmp_path)[0]["plugins"]
    prefix = method  # every plug-in logs under its registered name
    assert {m for m in ("pix", "fou", "zer") if any(k.startswith(f"{prefix}/{m}/") for k in keys)} == {"pix", "fou", "zer"}


@pytest.mark.parametrize("method", ["ogm-ge", "mmpareto"])
def test_stateless_methods_resume_exactly(method, tmp_path):
    # OGM-GE's noise comes from the global RNG, which the checkpoint restores
    _assert_exact_resume(tmp_path, method)


@pytest.mark.parametrize("method", ["ogm-ge", "agm", "pmr", "mmpareto"])
def test_stacks_with_dus_nested_batches(method):
    s = Trainer(make_cfg(f"method=dus-h+{method}", *SMALL, "train.epochs=1")).fit()
    assert s["test"]["acc"] > 0


@pytest.mark.parametrize("method", ["ogm-ge", "agm", "pmr", "mmpareto"])
def test_refuses_a_step_replacing_method(method):
    from mmbalance.methods import build_plugins
    from mmbalance.engine import Plugin, check_plugins

    class Stepper(Plugin):
        name = "stepper"

        def training_step(self, trainer, batch):  # a step strategy
            return {}

    plugins = build_plugins(make_cfg(f"method={method}", *SMALL)) + [Stepper()]
    with pytest.raises(IncompatiblePluginsError, match="replaces that step"):
        check_plugins(plugins)
