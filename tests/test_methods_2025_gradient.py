"""DGL, ARL, InfoReg, CGGM: hand-computed core math, gradient routing on a real step, runs through the real
loop (synthetic, av-digits, mfeat with three views), exact resume, and stacks with the seed methods."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmbalance import Config, Trainer
from mmbalance.data.batch import Batch
from mmbalance.engine import IncompatiblePluginsError
from mmbalance.methods.arl import arl_weights, logit_magnitude, mean_entropy
from mmbalance.methods.cggm import cggm_coefficients, direction_loss, flat_cosine, linear_weight_grad
from mmbalance.methods.inforeg import add_proximal_pull_, layer_trace, proximal_betas, window_change
from mmbalance.methods.shared_head import FusionHeadView
from mmbalance.models import FeatureRoutes
from mmbalance.models.fusion import ConcatFusion, SumFusion

from conftest import assert_resume_is_exact

FAST = ["log.tensorboard=false", "train.progress=false", "eval.probe=false", "train.batch_size=32"]
METHODS4 = ["dgl", "arl", "inforeg", "cggm"]


def _cfg(method, *extra, data=("data.name=synthetic", "data.options.n=240"), epochs=2, out=None):
    items = list(data) + [f"method={method}", f"train.epochs={epochs}"] + FAST + list(extra)
    if out is not None:
        items.append(f"out={out}")
    return Config().override(items)


def _batch(trainer, n=32):
    src = trainer.splits.train
    idx = torch.arange(n)
    return trainer.data.to_device(Batch({m: src.get_batch(idx, m) for m in trainer.modalities}, src.labels[idx], idx,
                                        {m: n for m in trainer.modalities}))


def _records(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def _grads_of_one_step(trainer, batch):
    """Run the default step without the optimizer update; return {parameter name: gradient}."""
    trainer.optimizer_step = lambda: None
    trainer.call("on_fit_start")
    trainer.call("on_epoch_start", 0)
    trainer.model.train()
    trainer.training_step(batch)
    return {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}


# ====================================================================== the shared head
def test_fusion_head_view_is_the_fusion_read_for_one_modality():
    torch.manual_seed(0)
    fusion = ConcatFusion({"a": 3, "b": 2}, 4)
    x = torch.randn(5, 3)
    w, b = fusion.fc.weight.detach(), fusion.fc.bias.detach()
    zero_others = FusionHeadView(fusion, "a", {"a": 3, "b": 2}, "zero_others", frozen=False)
    share = FusionHeadView(fusion, "a", {"a": 3, "b": 2}, "share", frozen=False)
    torch.testing.assert_close(zero_others(x), x @ w[:, :3].t() + b)  # fc_out(cat(x, 0)) [CODE concat]
    torch.testing.assert_close(share(x), x @ w[:, :3].t() + b / 2)  # OGM-GE's share: bias split in two
    sum_fusion = SumFusion({"a": 3, "b": 3}, 4)
    v = FusionHeadView(sum_fusion, "b", {"a": 3, "b": 3}, "share", frozen=False)
    torch.testing.assert_close(v(x), sum_fusion.fcs["b"](x))  # fc_y(y) [CODE sum]
    assert list(zero_others.parameters()) == []  # the parameters stay registered at model.fusion only


def test_frozen_view_sends_gradient_to_the_features_only():
    torch.manual_seed(0)
    fusion = ConcatFusion({"a": 3, "b": 2}, 4)
    x = torch.randn(5, 3, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 0])
    view = FusionHeadView(fusion, "a", {"a": 3, "b": 2}, "zero_others", frozen=True)
    F.cross_entropy(view(x), y).backward()
    assert all(p.grad is None for p in fusion.parameters())
    z = x.detach() @ fusion.fc.weight[:, :3].detach().t() + fusion.fc.bias.detach()
    p = F.softmax(z, 1) - F.one_hot(y, 4).float()
    torch.testing.assert_close(x.grad, p @ fusion.fc.weight[:, :3].detach() / 5)  # W^T (p - y) / n by hand


# ====================================================================== DGL
def test_dgl_routes_the_fused_loss_to_the_fusion_and_the_unimodal_losses_to_the_encoders():
    t = Trainer(_cfg("dgl", "method_args.dgl.alpha=2.5", epochs=1))
    batch = _batch(t)
    got = _grads_of_one_step(t, batch)
    model = t.model
    feats = {m: model.encoders[m](batch.inputs[m]) for m in t.modalities}
    y = batch.y
    fused = F.cross_entropy(model.fusion({m: f.detach() for m, f in feats.items()}), y)
    expect_fusion = torch.autograd.grad(fused, list(model.fusion.parameters()))
    w, b = model.fusion.fc.weight.detach(), model.fusion.fc.bias.detach()
    uni, start = 0.0, 0
    for m in t.modalities:  # fc_out(cat(h_m, 0)) with the head as a constant
        d = feats[m].shape[1]
        uni = uni + F.cross_entropy(feats[m] @ w[:, start:start + d].t() + b, y)
        start += d
    enc = [p for m in t.modalities for p in model.encoders[m].parameters()]
    expect_enc = torch.autograd.grad(2.5 * uni, enc)
    for (n, _), g in zip(model.fusion.named_parameters(), expect_fusion):
        torch.testing.assert_close(got[f"fusion.{n}"], g)
    names = [f"encoders.{m}.{n}" for m in t.modalities for n, _ in model.encoders[m].named_parameters()]
    for n, g in zip(names, expect_enc):
        torch.testing.assert_close(got[n], g)


def test_dgl_without_detach_lets_the_fused_loss_reach_the_encoders():
    a = _grads_of_one_step(Trainer(_cfg("dgl", epochs=1)), _batch(Trainer(_cfg("dgl", epochs=1))))
    b = _grads_of_one_step(Trainer(_cfg("dgl", "method_args.dgl.detach_fused=false", epochs=1)),
                           _batch(Trainer(_cfg("dgl", epochs=1))))
    assert not torch.allclose(a["encoders.a.net.1.weight"], b["encoders.a.net.1.weight"])
    torch.testing.assert_close(a["fusion.fc.weight"], b["fusion.fc.weight"])  # the head's gradient is the same


def test_dgl_refuses_zero_unimodal_weight_and_a_second_head_owner():
    with pytest.raises(ValueError, match="unimodal_loss_weight"):
        Trainer(_cfg("dgl", "train.unimodal_loss_weight=0", epochs=1)).fit()
    for stack in ("dgl+arl", "cggm+dgl"):
        with pytest.raises(IncompatiblePluginsError, match="per-modality heads"):
            Trainer(_cfg(stack, epochs=1))
    with pytest.raises(IncompatiblePluginsError, match="replaces that step"):  # MLA: own step, no fusion head
        Trainer(_cfg("mla+dgl", epochs=1))


# ====================================================================== ARL
def test_arl_weights_by_hand_two_modalities():
    za = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])  # p = (3/4, 1/4) and (1/2, 1/2)
    zv = torch.tensor([[2.0, -2.0], [1.0, 1.0]])
    mag_a, mag_v = (math.log(3) / 2 + 0.0), (1.5 + 1.5)  # sum_k mean_i |z|
    assert float(logit_magnitude(za)) == pytest.approx(mag_a)
    h = lambda ps: -sum(p * math.log(p) for p in ps)  # noqa: E731
    pv = 1 / (1 + math.exp(-4))
    ha, hv = (h([0.75, 0.25]) + h([0.5, 0.5])) / 2, (h([pv, 1 - pv]) + h([0.5, 0.5])) / 2
    assert float(mean_entropy(za)) == pytest.approx(ha, rel=1e-5)
    # the release: H normalised and floored at 0.3, inverted and normalised; softmax(T [c_v u_a, c_a u_v])
    ha_n, hv_n = max(ha / (ha + hv), 0.3), max(hv / (ha + hv), 0.3)
    ua, uv = (1 / ha_n) / (1 / ha_n + 1 / hv_n), (1 / hv_n) / (1 / ha_n + 1 / hv_n)
    ca, cv = mag_a / (mag_a + mag_v), mag_v / (mag_a + mag_v)
    e = [math.exp(8 * cv * ua), math.exp(8 * ca * uv)]
    expect = [e[0] / sum(e), e[1] / sum(e)]
    torch.testing.assert_close(arl_weights([za, zv], 8.0, 0.3), torch.tensor(expect), rtol=1e-5, atol=1e-6)


def test_arl_entropy_floor_and_three_modalities():
    confident = torch.tensor([[20.0, 0.0]])  # entropy ~0: its normalised share is floored
    unsure = torch.tensor([[0.0, 0.0]])
    w2 = arl_weights([confident, unsure], 1.0, 0.3)
    # shares floored to (0.3, 1.0): u = (1/0.3, 1) / (1/0.3 + 1); c = (1, 0) -> s = (u_a * 0, u_v * 1)
    u_v = 1 / (1 / 0.3 + 1)
    torch.testing.assert_close(w2, F.softmax(torch.tensor([0.0, u_v]), 0), rtol=1e-4, atol=1e-5)
    w3 = arl_weights([confident, unsure, unsure], 4.0, 0.3)
    assert w3.shape == (3,) and float(w3.sum()) == pytest.approx(1.0) and torch.allclose(w3[1], w3[2])


def test_arl_scales_each_encoder_gradient_by_one_plus_its_weight():
    t = Trainer(_cfg("arl", "method_args.arl.start=0", epochs=1))
    arl = t.plugin("arl")
    t.call("on_fit_start")
    t.epoch = 1  # past the warm-up
    arl.weights_now = torch.tensor([0.2, 0.7])
    feats = {m: torch.randn(4, 3, requires_grad=True) for m in ("a", "b")}
    routes = FeatureRoutes(dict(feats))
    arl.transform_features(t, None, routes)
    (routes.heads["a"].sum() + 2 * routes.fusion["a"].sum() + routes.heads["b"].sum()).backward()
    torch.testing.assert_close(feats["a"].grad, torch.full((4, 3), 3 * 1.2))
    torch.testing.assert_close(feats["b"].grad, torch.full((4, 3), 1.7))
    arl.weights = "released"  # the released script never assigns the weights: 1 + 0.5 for every encoder
    feats = {m: torch.randn(4, 3, requires_grad=True) for m in ("a", "b")}
    routes = FeatureRoutes(dict(feats))
    arl.transform_features(t, None, routes)
    routes.heads["b"].sum().backward()
    torch.testing.assert_close(feats["b"].grad, torch.full((4, 3), 1.5))
    t.epoch = 0  # warm-up (epoch <= start): no scaling
    routes = FeatureRoutes(dict(feats))
    arl.transform_features(t, None, routes)
    assert routes.heads["a"] is feats["a"]


def test_arl_warm_up_then_gamma(tmp_path):
    Trainer(_cfg("arl", "method_args.arl.start=1", "method_args.arl.gamma=3", epochs=3, out=tmp_path)).fit()
    recs = _records(tmp_path)
    assert [r["plugins"]["arl/active"] for r in recs] == [0.0, 0.0, 1.0]
    for r in recs:
        w = r["plugins"]["arl/a/weight"] + r["plugins"]["arl/b/weight"]
        assert w == pytest.approx(1.0, abs=1e-5)


# ====================================================================== InfoReg
def test_inforeg_window_change_by_hand():
    assert window_change([], 10) == 1.0  # the release's first epoch
    assert window_change([5.0], 10) == 1.0  # shifted average still all padding
    assert window_change([1.0, 2.0], 10) == pytest.approx((0.3 - 0.1) / 0.3)
    assert window_change([1.0, 2.0], 1) == pytest.approx(0.5)
    hist = [float(i) for i in range(1, 14)]
    new, old = sum(hist[-10:]) / 10, sum(hist[-11:-1]) / 10
    assert window_change(hist, 10) == pytest.approx((new - old) / new)


def test_inforeg_betas_by_hand():
    c = torch.tensor([0.95, 0.1])
    b = proximal_betas(torch.tensor([30.0, 29.5]), c)
    torch.testing.assert_close(b, torch.tensor([0.95 * math.exp(math.tanh(0.5)), 0.0]))
    b = proximal_betas(torch.tensor([20.0, 21.0]), c)
    torch.testing.assert_close(b, torch.tensor([0.0, 0.1 * math.exp(math.tanh(1.0))]))
    assert torch.equal(proximal_betas(torch.tensor([3.0, 3.0]), c), torch.zeros(2))  # a tie pulls none
    b3 = proximal_betas(torch.tensor([6.0, 4.0, 2.0]), torch.ones(3))  # gaps 3, 0, -3
    torch.testing.assert_close(b3, torch.tensor([math.exp(math.tanh(3.0)), 0.0, 0.0]))


def test_inforeg_pull_and_trace_by_hand():
    p = nn.Parameter(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    q = nn.Parameter(torch.tensor([0.5, 0.5]))
    p.grad, q.grad = torch.ones(2, 2), torch.full((2,), 2.0)
    add_proximal_pull_([p, q], [torch.zeros(2, 2), torch.zeros(2)], torch.tensor(0.5))
    torch.testing.assert_close(p.grad, torch.tensor([[1.5, 2.0], [2.5, 3.0]]))
    torch.testing.assert_close(q.grad, torch.tensor([2.25, 2.25]))
    assert float(layer_trace([p, q])) == pytest.approx((1.5 ** 2 + 4 + 2.5 ** 2 + 9) / 4 + 2.25 ** 2)


def test_inforeg_pulls_the_leading_encoder_towards_its_epoch_start_weights():
    t = Trainer(_cfg("inforeg", epochs=1))
    t.call("on_fit_start")
    t.call("on_epoch_start", 0)
    reg = t.plugin("inforeg")
    encs = [t.model.encoders[m] for m in ("a", "b")]
    with torch.no_grad():  # move both encoders away from their epoch-start snapshots
        for p in (p for e in encs for p in e.parameters()):
            p.add_(0.1)
    batch = _batch(t)
    out = t.forward(batch.inputs)
    t.optimizer.zero_grad()
    F.cross_entropy(out.fused, batch.y).backward()
    plain = [{n: p.grad.clone() for n, p in e.named_parameters()} for e in encs]
    reg.after_backward(t, batch, out)
    y = batch.y
    with torch.no_grad():
        shares = t.model.fusion.modality_logits({m: f for m, f in out.features.items()})
        s = torch.stack([F.softmax(shares[m], 1).gather(1, y[:, None]).sum() for m in ("a", "b")])
    beta = proximal_betas(s, torch.full((2,), 0.95))
    assert float(beta.max()) > 0 and float(beta.min()) == 0  # exactly one encoder is pulled
    for e, g, b in zip(encs, plain, beta):
        for n, p in e.named_parameters():
            torch.testing.assert_close(p.grad, g[n] + b * 0.1 * torch.ones_like(p), rtol=1e-5, atol=1e-6)


def test_inforeg_release_coefficients_and_errors(tmp_path):
    s = Trainer(_cfg("inforeg", "method_args.inforeg.coefficients={a: 0.95, b: 0.1}",
                     "method_args.inforeg.trace_modality=a", epochs=3, out=tmp_path)).fit()
    assert s["test"]["acc"] > 0.5
    recs = _records(tmp_path)
    assert [r["plugins"]["inforeg/k"] for r in recs[:2]] == [1.0, 1.0]  # zero-padded history: open at first
    assert all(r["plugins"]["inforeg/trace"] > 0 for r in recs)
    assert "loss_share_a" in recs[0]["train"]
    with pytest.raises(ValueError, match="coefficients"):
        Trainer(_cfg("inforeg", "method_args.inforeg.coefficients={a: 0.95}", epochs=1)).fit()
    with pytest.raises(ValueError, match="trace_modality"):
        Trainer(_cfg("inforeg", "method_args.inforeg.trace_modality=audio", epochs=1)).fit()
    with pytest.raises(ValueError, match="additive share"):
        Trainer(_cfg("inforeg", "model.fusion=gated", epochs=1)).fit()


# ====================================================================== CGGM
def test_cggm_coefficients_by_hand():
    torch.testing.assert_close(cggm_coefficients(torch.tensor([0.1, 0.3]), 1.3, "code"),
                               torch.tensor([1.3 * 0.3 / 0.4, 1.3 * 0.1 / 0.4]))
    exploding = cggm_coefficients(torch.tensor([0.25, -0.25]), 1.3, "code")  # S = 0: the release's 1e-8 guard
    assert float(exploding.abs().max()) > 1e6 and float(exploding.min()) < 0
    torch.testing.assert_close(cggm_coefficients(torch.tensor([0.1, -0.1]), 1.3, "clamped"), torch.tensor([0.0, 1.3]))
    torch.testing.assert_close(cggm_coefficients(torch.tensor([0.0, -0.2]), 1.3, "clamped"), torch.tensor([0.65, 0.65]))
    three = cggm_coefficients(torch.tensor([0.1, 0.2, 0.1]), 1.0, "clamped")
    torch.testing.assert_close(three, torch.tensor([0.75, 0.5, 0.75]))
    assert float(direction_loss(torch.tensor([1.0, -0.5]), torch.tensor([0.2, 0.4]))) == pytest.approx(
        (1.5 - (0.2 - 0.2)) / 2)


def test_cggm_closed_form_weight_gradient_matches_autograd():
    torch.manual_seed(0)
    lin = nn.Linear(5, 3)
    h, y = torch.randn(7, 5), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    F.cross_entropy(lin(h), y).backward()
    torch.testing.assert_close(linear_weight_grad(lin(h).detach(), y, h), lin.weight.grad)


def test_release_direction_loss_has_a_stale_nonzero_gradient_on_the_fused_weight_only():
    """zrguo/CGGM#6 says L_gm has zero gradient. Re-enact the release (``cal_cos`` on the output *weights*,
    the term built after the step's backward and added to the next step's loss): the next backward does give
    the fused output weight a gradient -- that of ``-lambda B cos(W_cls, W_f)`` at the previous step's weights
    -- and the encoders none. Our ``direction="code"`` term gives the fused weight the same gradient."""
    torch.manual_seed(0)
    enc = nn.Linear(4, 3)
    fused_w = nn.Parameter(torch.randn(2, 3))
    cls_w = nn.Parameter(torch.randn(2, 3))
    opt = torch.optim.SGD([enc.weight, enc.bias, fused_w, cls_w], lr=0.1)
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 0, 1, 0, 1])
    lam, coeff = 0.2, [0.7, 0.4]
    # step t: the release's l_gm from this step's weights (graph kept), then the update
    cos = F.cosine_similarity(cls_w.clone().view(-1), fused_w.clone().view(-1), dim=0)
    l_gm = (sum(abs(c) for c in coeff) - coeff[0] * cos) / 2  # one modality pair, as cal_cos does per pair
    prev_fused, prev_cls = fused_w.detach().clone(), cls_w.detach().clone()
    F.cross_entropy(enc(x) @ fused_w.t(), y).backward()
    opt.step()
    opt.zero_grad()
    # step t+1: raw_loss += lam * l_gm; backward; compare with the plain loss's gradient
    base = F.cross_entropy(enc(x) @ fused_w.t(), y)
    (base + lam * l_gm).backward()
    with_term = {"enc": enc.weight.grad.clone(), "fused": fused_w.grad.clone()}
    opt.zero_grad()
    F.cross_entropy(enc(x) @ fused_w.t(), y).backward()
    assert torch.equal(with_term["enc"], enc.weight.grad)  # nothing reaches the encoder
    extra = with_term["fused"] - fused_w.grad
    assert float(extra.abs().max()) > 1e-4  # but the fused weight gets a non-zero gradient
    live = fused_w.detach().clone().requires_grad_()
    ours = (sum(abs(c) for c in coeff) - coeff[0] * flat_cosine(prev_cls, prev_fused + (live - live.detach()))) / 2
    (lam * ours).backward()
    torch.testing.assert_close(extra, live.grad)  # == the derivative at the *previous* weights


def test_cggm_gradient_direction_reaches_the_encoders_and_code_direction_does_not():
    grads = {}
    for direction in ("gradient", "code"):
        t = Trainer(_cfg("cggm", f"method_args.cggm.direction={direction}", "method_args.cggm.lam=1", epochs=1))
        t.call("on_fit_start")
        cg = t.plugin("cggm")
        batch = _batch(t)
        cg._remember_weights(t, torch.tensor([0.5, 1.0]))  # a previous step for direction=code
        with torch.no_grad():
            t.model.fusion.fc.weight.add_(0.05)
        t.model.train()
        out = t.forward(batch.inputs)
        losses = {}
        cg.compute_loss(t, batch, out, losses)
        t.optimizer.zero_grad()
        losses["direction"].backward()
        grads[direction] = (t.model.encoders["a"].net[1].weight.grad, t.model.fusion.fc.weight.grad)
    assert grads["gradient"][0] is not None and float(grads["gradient"][0].abs().sum()) > 0
    assert grads["code"][0] is None and float(grads["code"][1].abs().sum()) > 0


def test_cggm_scales_encoder_gradients_and_trains_its_classifiers(tmp_path):
    t = Trainer(_cfg("cggm", "train.monitor_heads=false", epochs=1))
    batch = _batch(t)
    got = _grads_of_one_step(t, batch)
    assert "heads.a.weight" in got  # cls_<m> terms train the heads when the monitors are off
    t2 = Trainer(_cfg("cggm", "method_args.cggm.lam=0", epochs=1, out=tmp_path))
    t2.fit()
    rec = _records(tmp_path)[0]
    assert {"cggm/a/coeff", "cggm/b/coeff", "cggm/a/improvement"} <= set(rec["plugins"])
    assert "cggm/direction_loss" not in rec["plugins"]
    assert len(rec["steps"]["cggm/a/coeff"]) == rec["train"]["steps"]


def test_cggm_refuses_a_fusion_without_linear_shares_when_the_direction_loss_is_on():
    with pytest.raises(ValueError, match="concat or sum"):
        Trainer(_cfg("cggm", "model.fusion=gated", epochs=1)).fit()
    Trainer(_cfg("cggm", "model.fusion=gated", "method_args.cggm.lam=0", epochs=1)).fit()


# ====================================================================== all four: real loop, resume, stacks
@pytest.mark.parametrize("method", METHODS4)
def test_trains_on_av_digits(method):
    s = Trainer(_cfg(method, data=("data.name=av-digits",), epochs=2)).fit()
    assert s["test"]["acc"] > 0.5


@pytest.mark.parametrize("method", METHODS4)
def test_three_modalities_on_mfeat(method, tmp_path):
    cfg = _cfg(method, "train.batch_size=128", "method_args.arl.start=0" if method == "arl" else "train.seed=0",
               data=("data.name=mfeat", "data.modalities=[pix,fou,zer]"), epochs=2, out=tmp_path)
    s = Trainer(cfg).fit()
    assert s["modalities"] == ["pix", "fou", "zer"] and s["test"]["acc"] > 0.5


@pytest.mark.parametrize("method,extra", [
    ("dgl", []),
    ("arl", ["method_args.arl.start=0"]),
    ("inforeg", ["method_args.inforeg.trace_window=1"]),
    ("cggm", ["method_args.cggm.direction=code"]),
])
def test_resume_is_exact(method, extra, tmp_path):
    assert_resume_is_exact(tmp_path, [f"method={method}", *extra], crash_at=2)


@pytest.mark.parametrize("stack", ["dgl+dus-h", "arl+dus-h", "inforeg+bss-l", "cggm+bss-l",
                                   "joint-aux+inforeg+diagnose-relearn"])
def test_stacks_with_seed_methods(stack):
    extra = ["method_args.diagnose-relearn.reinit_every=1"] if "diagnose" in stack else []
    s = Trainer(_cfg(stack, *extra, epochs=2)).fit()
    assert s["test"]["acc"] > 0
