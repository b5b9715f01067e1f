"""IPRM: geodesic mixup, KL strength weights and the EMA by hand; the probe inside a real step reproduces them; the
real loop (two and three modalities), its cost, resume, stacks and refusals."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from mmbalance import Plugin, Trainer
from mmbalance.engine import IncompatiblePluginsError
from mmbalance.methods import build_plugins
from mmbalance.models.fusion import ConcatFusion
from mmbalance.models.net import MultimodalNet
from mmbalance.methods.iprm import IPRM, GeodesicMixupFusion, ema, geodesic_mixup, prediction_kl, strength_weight

from conftest import assert_resume_is_exact, load_metrics, make_cfg


# ----------------------------------------------------------------------------- the math
def test_geodesic_mixup_by_hand():
    x, y = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]])  # theta = pi/2 after normalising
    half = geodesic_mixup(x, y, torch.tensor(0.5))
    assert half.tolist()[0] == pytest.approx([math.sqrt(0.5), math.sqrt(0.5)], abs=1e-6)
    assert geodesic_mixup(x, y, torch.tensor(1.0)).tolist()[0] == pytest.approx([1.0, 0.0], abs=1e-5)
    assert geodesic_mixup(x, y, torch.tensor(0.0)).tolist()[0] == pytest.approx([0.0, 1.0], abs=1e-5)
    # on the great circle: unit norm for any weight
    torch.manual_seed(0)
    a, b = torch.randn(6, 5), torch.randn(6, 5)
    for w in (0.1, 0.37, 0.9):
        assert geodesic_mixup(a, b, torch.tensor(w)).norm(dim=1).tolist() == pytest.approx([1.0] * 6, abs=1e-5)


def test_geodesic_mixup_matches_the_official_formula_and_is_safe_for_parallel_rows():
    torch.manual_seed(1)
    a, b = torch.randn(4, 8), torch.randn(4, 8)
    w = 0.3
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    theta = torch.acos((an * bn).sum(1).clamp(-1, 1)).unsqueeze(1)
    code = torch.sin(w * theta) / (torch.sin(theta) + 1e-8) * an + torch.sin((1 - w) * theta) / (
        torch.sin(theta) + 1e-8) * bn
    assert torch.allclose(geodesic_mixup(a, b, torch.tensor(w)), code, atol=1e-5)
    same = geodesic_mixup(a, 2 * a, torch.tensor(w))  # the code's formula gives 0 here; the limit is a/|a|
    assert torch.allclose(same, an, atol=1e-4)
    x = torch.randn(3, 4, requires_grad=True)
    geodesic_mixup(x, x.detach() * 3, torch.tensor(0.4)).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_kl_weights_and_ema_by_hand():
    p = torch.tensor([[0.0, 0.0]])  # softmax [0.5, 0.5]
    q = torch.tensor([[0.0, math.log(3.0)]])  # softmax [0.25, 0.75]
    assert prediction_kl(p, q).item() == pytest.approx(0.5 * math.log(2.0) + 0.5 * math.log(2 / 3))
    assert prediction_kl(q, q).item() == pytest.approx(0.0, abs=1e-7)
    # the modality closer to the mixture (smaller KL) gets the larger weight
    assert strength_weight(torch.tensor(1.0), torch.tensor(3.0)).item() == pytest.approx(0.75)
    assert strength_weight(torch.tensor(0.0), torch.tensor(0.0)).item() == 0.5
    assert ema(torch.tensor(0.5), torch.tensor(1.0), 0.8).item() == pytest.approx(0.6)


def test_pairs_heads_and_mean_over_pairs():
    fusion = GeodesicMixupFusion(["a", "b", "c"], 4, 3)
    assert fusion.pairs == [("a", "b"), ("a", "c"), ("b", "c")] and len(fusion.heads) == 3
    feats = {m: torch.randn(5, 4) for m in "abc"}
    fusion.eval()
    expected = torch.stack(fusion.pair_logits(feats, fusion.eval_lam)).mean(0)
    assert torch.allclose(fusion(feats), expected)
    assert len(GeodesicMixupFusion(["a", "b", "c"], 4, 3, shared_head=True).heads) == 1


# ----------------------------------------------------------------------------- the probe in a real step
class Capture(Plugin):
    """Records the features and weights around the first training step (priority after IPRM's probe)."""

    name = "capture"
    priority = 70

    def __init__(self):
        self.rows = []

    def transform_features(self, trainer, batch, routes):
        if not self.rows:
            fusion = trainer.model.fusion
            self.rows.append({"feats": {m: f.detach().clone() for m, f in routes.fusion.items()},
                              "omega": fusion.omega.clone(), "lam": fusion.lam.clone(),
                              "eval_lam": fusion.eval_lam.clone(),
                              "heads": {m: {k: v.clone() for k, v in trainer.model.heads[m].state_dict().items()}
                                        for m in routes.fusion},
                              "mix": {k: v.clone() for k, v in fusion.heads[0].state_dict().items()}})


def test_the_probe_recalibrates_with_the_running_weight_then_updates_it():
    cfg = make_cfg("method=iprm", "train.epochs=1")
    cap = Capture()
    tr = Trainer(cfg, plugins=build_plugins(cfg) + [cap])
    tr.fit()
    row = cap.rows[0]
    a, b = tr.modalities
    # recompute the probe by hand from the captured weights and features (first step: lambda_1 = 0.5)
    heads = {m: torch.nn.Linear(*reversed(row["heads"][m]["weight"].shape)) for m in (a, b)}
    for m in heads:
        heads[m].load_state_dict(row["heads"][m])
    mix = torch.nn.Linear(*reversed(row["mix"]["weight"].shape))
    mix.load_state_dict(row["mix"])
    with torch.no_grad():
        probe = mix(geodesic_mixup(row["feats"][a], row["feats"][b], torch.tensor(0.5)))
        kl_a = prediction_kl(heads[a](row["feats"][a]), probe)
        kl_b = prediction_kl(heads[b](row["feats"][b]), probe)
    omega = (kl_b / (kl_a + kl_b)).item()
    assert row["eval_lam"].item() == 0.5
    assert row["omega"].item() == pytest.approx(omega, rel=1e-5)
    assert row["lam"].item() == pytest.approx(0.8 * 0.5 + 0.2 * omega, rel=1e-5)


def test_iprm_trains_counts_its_probe_and_predicts_with_heads_plus_mixture(tmp_path):
    tr = Trainer(make_cfg("method=iprm", "train.epochs=3", out=tmp_path / "r"))
    summary = tr.fit()
    records = load_metrics(tmp_path / "r")
    assert all(r["train"]["cost"]["forwards_per_step"] == 2.0 for r in records)
    key = f"iprm/{tr.modalities[0]}~{tr.modalities[1]}"
    assert 0.0 < records[-1]["plugins"][f"{key}/omega"] < 1.0 and 0.0 < records[-1]["plugins"][f"{key}/lam"] < 1.0
    r = tr.collect("test")
    expected = (sum(r["logits"].values()) + r["fused"]).argmax(1)
    assert summary["test"]["acc"] == pytest.approx((expected == r["y"]).float().mean().item())
    assert summary["test"]["acc"] > 0.6


def test_iprm_on_three_views_mixes_every_pair():
    tr = Trainer(make_cfg("data.name=mfeat", "data.modalities=[pix,fou,zer]", "method=iprm", "train.epochs=2"))
    summary = tr.fit()
    assert len(tr.model.fusion.pairs) == 3 and summary["test"]["acc"] > 0.5
    assert {k for k in tr.history[-1]["plugins"] if k.endswith("/omega")} == {
        "iprm/pix~fou/omega", "iprm/pix~zer/omega", "iprm/fou~zer/omega"}


def test_iprm_resumes_exactly(tmp_path):
    assert_resume_is_exact(tmp_path, ["method=iprm"], crash_at=1, epochs=2)


# ----------------------------------------------------------------------------- stacks and refusals
def test_iprm_stacks_with_dus_on_the_paired_rows():
    tr = Trainer(make_cfg("method=iprm+dus-h", "train.epochs=2"))
    tr.fit()
    assert any(k.startswith("dus-h/mean_n/") for k in tr.history[-1]["plugins"])
    assert 0.0 < float(tr.model.fusion.lam[0]) < 1.0


def test_refusals_name_the_reason():
    with pytest.raises(IncompatiblePluginsError, match="replaces that step"):
        Trainer(make_cfg("method=iprm+mla", "method_args.iprm.prediction=config"))
    with pytest.raises(IncompatiblePluginsError, match="both decide the evaluation prediction"):
        Trainer(make_cfg("method=iprm+mla"))
    with pytest.raises(ValueError, match="no additive per-modality share"):
        Trainer(make_cfg("method=iprm+ogm-ge", "train.epochs=1")).fit()
    model = _tiny_model({"a": 8, "b": 6})
    with pytest.raises(ValueError, match="same feature size.*a=8, b=6.*model.feature_dim"):
        IPRM().configure_model(SimpleNamespace(active_modalities=["a", "b"], model=model), model)


def _tiny_model(dims):
    enc = {m: torch.nn.Linear(4, d) for m, d in dims.items()}
    for m, d in dims.items():
        enc[m].out_dim = d
    return MultimodalNet(enc, 3, ConcatFusion(dims, 3))


def test_prediction_can_be_left_to_the_config():
    tr = Trainer(make_cfg("method=iprm", "method_args.iprm.prediction=config", "eval.predict=fused",
                          "train.epochs=1"))
    tr.fit()
    r = tr.collect("test")
    assert torch.equal(r["pred"], r["fused"]) and not torch.equal(F.softmax(r["pred"], 1), F.softmax(
        sum(r["logits"].values()) + r["fused"], 1))
