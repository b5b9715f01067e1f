"""D&R (diagnose-relearn): purity / k-means math, the soft re-initialisation, state, and the real loop."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from mmbalance import Config, Trainer
from mmbalance.data.base import MultimodalDataset, split_in_memory
from mmbalance.diagnostics.purity import clustering_purity, kmeans, minmax_scale, purity
from mmbalance.engine.checkpoint import load_checkpoint
from mmbalance.methods import build_plugins
from mmbalance.methods.diagnose_relearn import (EMBEDDINGS_FILE, DiagnoseRelearn, encoder_init_params,
                                                reinit_strength, soft_reinit_)

from conftest import assert_resume_is_exact, make_cfg

DR = "diagnose-relearn"
DATA = ["data.options.n=160"]
DR_FAST = [f"method_args.{DR}.kmeans_backend=torch", f"method_args.{DR}.n_init=2"]


def _plugin(trainer) -> DiagnoseRelearn:
    return trainer.plugin(DR)


def _image_splits(n=120, classes=3, seed=0):
    """Two 1x8x8 image modalities (for the CNN encoder, which has BatchNorm)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    protos = {m: torch.randn(classes, 1, 8, 8, generator=g) for m in ("img", "aud")}
    inputs = {m: protos[m][y] * s + torch.randn(n, 1, 8, 8, generator=g) for m, s in (("img", 1.5), ("aud", 0.5))}
    return split_in_memory(MultimodalDataset(inputs, y, classes, None, "images"), 0.25, 0.2, 0)


# ====================================================================== purity and k-means
def test_purity_hand_computed():
    # cluster 0 holds labels {0,0,1} -> 2; cluster 1 holds {1,1,1} -> 3; total 5/6
    assert purity([0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]) == pytest.approx(5 / 6, abs=0)
    # arbitrary ids: cluster 7 {5,2} -> 1; cluster 3 {5,5,2} -> 2; cluster 9 {2} -> 1; total 4/6
    assert purity(torch.tensor([7, 7, 3, 3, 3, 9]), np.array([5, 2, 5, 5, 2, 2])) == pytest.approx(4 / 6, abs=0)
    # a perfect clustering under relabelling, and one cluster holding everything (= majority share)
    assert purity([2, 2, 0, 0, 1], [9, 9, 4, 4, 1]) == 1.0
    assert purity([0] * 10, [0] * 3 + [1] * 7) == 0.7
    # one cluster per sample is trivially pure
    assert purity(np.arange(5), [0, 1, 0, 1, 0]) == 1.0
    with pytest.raises(ValueError, match="cluster ids but"):
        purity([0, 1], [0])
    with pytest.raises(ValueError, match="integer"):
        purity([0.5, 1.0], [0, 1])


def test_minmax_scale_matches_sklearn_including_constant_column():
    from sklearn.preprocessing import MinMaxScaler

    x = torch.tensor([[1.0, 5.0, 3.0], [3.0, 5.0, -1.0], [2.0, 5.0, 7.0]], dtype=torch.float64)
    ref = MinMaxScaler(feature_range=(-1, 1)).fit_transform(x.numpy())
    out = minmax_scale(x)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-12)
    assert out[:, 0].tolist() == [-1.0, 1.0, 0.0]
    assert out[:, 1].tolist() == [-1.0, -1.0, -1.0]  # constant feature -> lower bound, as scikit-learn


def test_torch_kmeans_purity_matches_sklearn_on_blobs():
    from sklearn.cluster import KMeans
    from sklearn.datasets import make_blobs

    for std in (1.0, 4.0):
        x, y = make_blobs(600, n_features=16, centers=5, cluster_std=std, random_state=1)
        x = torch.tensor(x, dtype=torch.float32)
        p_torch = clustering_purity(x, y, backend="torch", n_init=5)
        p_sk = clustering_purity(x, y, backend="sklearn", n_init=5)
        assert abs(p_torch - p_sk) <= 0.02, (std, p_torch, p_sk)
        assert p_torch > 0.9
        res = kmeans(minmax_scale(x), 5, n_init=5, seed=0)
        ref = KMeans(5, n_init=5, random_state=0).fit(minmax_scale(x).numpy())
        assert res.inertia == pytest.approx(ref.inertia_, rel=1e-3)
        # labels are consistent with the returned centres
        d = torch.cdist(minmax_scale(x), res.centers)
        assert torch.equal(d.argmin(1), res.labels)


def test_kmeans_is_seeded_and_handles_duplicates():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 8, generator=g)
    a, b = kmeans(x, 4, n_init=3, seed=7), kmeans(x, 4, n_init=3, seed=7)
    assert torch.equal(a.labels, b.labels) and a.inertia == b.inertia
    # only 3 distinct points for k=3: every restart must find them exactly (inertia 0)
    pts = torch.tensor([[0.0, 0.0], [5.0, 5.0], [-5.0, 5.0]])
    dup = pts[torch.arange(30) % 3]
    r = kmeans(dup, 3, n_init=4)
    assert r.inertia == pytest.approx(0.0, abs=1e-6)
    assert purity(r.labels, torch.arange(30) % 3) == 1.0
    with pytest.raises(ValueError, match="k=5"):
        kmeans(pts, 5)


# ====================================================================== alpha and the soft re-initialisation
def test_reinit_strength_formula():
    assert reinit_strength(0.0, 3.0) == 0.0
    assert reinit_strength(0.1, 3.0) == pytest.approx(math.tanh(0.3), abs=1e-15)
    assert reinit_strength(0.5, 2.0) == pytest.approx((math.e - 1 / math.e) / (math.e + 1 / math.e), abs=1e-15)
    assert 0.0 <= reinit_strength(1.0, 100.0) <= 1.0


def _perturb(model):
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g).to(p.device))
        for name, b in model.named_buffers():
            if b.is_floating_point():
                b.add_((torch.rand(b.shape, generator=g) + 0.5).to(b.device))


def test_soft_reinit_blends_parameters_only_of_encoders():
    cfg = make_cfg("data.name=av-digits", f"method={DR}", "train.epochs=20", *DR_FAST, "model.encoder=cnn",
                   "model.feature_dim=16", "model.encoder_args.width=4")
    trainer = Trainer(cfg, splits=_image_splits())
    plugin = _plugin(trainer)
    plugin.on_fit_start(trainer)
    model = trainer.model
    init = trainer.initial_state
    _perturb(model)
    before = {k: v.cpu().clone() for k, v in model.state_dict().items()}
    alphas = {"img": 0.25, "aud": 0.6}
    plugin.relearn(trainer, alphas)
    after = {k: v.cpu() for k, v in model.state_dict().items()}
    params = {n for n, _ in model.named_parameters()}
    n_blended = 0
    for k, v in after.items():
        m = k.split(".")[1] if k.startswith("encoders.") else None
        if m is not None and k in params:
            a = alphas[m]
            expected = (1 - a) * before[k] + a * init[k]
            torch.testing.assert_close(v, expected, rtol=1e-6, atol=1e-6)
            assert not torch.equal(v, before[k])
            n_blended += 1
        else:  # BN running stats / num_batches_tracked, heads, fusion: bit-identical
            assert torch.equal(v, before[k]), k
    assert any("running_mean" in k for k in after) and any("bn" in k or ".1.weight" in k for k in params)
    assert n_blended == sum(1 for k in params if k.startswith("encoders."))
    # alpha = 1 restores the initial parameters exactly; alpha = 0 leaves them bit-identical
    enc = model.encoders["img"]
    ip = encoder_init_params(init, enc, "img")
    soft_reinit_(enc, ip, 0.0)
    assert all(torch.equal(p.cpu(), after[f"encoders.img.{n}"]) for n, p in enc.named_parameters())
    soft_reinit_(enc, ip, 1.0)
    assert all(torch.equal(p.cpu(), ip[n]) for n, p in enc.named_parameters())
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        soft_reinit_(enc, ip, 1.5)


def test_reset_optimizer_state_drops_encoder_momentum_only():
    trainer = Trainer(make_cfg(*DATA, f"method={DR}", "train.epochs=20", *DR_FAST,
                               f"method_args.{DR}.reset_optimizer_state=true"))
    plugin = _plugin(trainer)
    plugin.on_fit_start(trainer)
    trainer.train_epoch(0)
    opt = trainer.optimizer
    with_grad = [p for n, p in trainer.model.named_parameters() if not n.startswith("heads.")]  # joint: no head CE
    assert all("momentum_buffer" in opt.state[p] for p in with_grad)
    plugin.relearn(trainer, {"a": 0.3, "b": 0.0})
    assert all(p not in opt.state for p in trainer.model.encoders["a"].parameters())
    assert all(p in opt.state for p in trainer.model.encoders["b"].parameters())  # alpha 0: untouched
    assert all(p in opt.state for p in trainer.model.fusion.parameters())
    trainer.train_epoch(1)  # the optimizer rebuilds the dropped state


# ====================================================================== state
def test_state_keeps_its_own_copy_of_initial_weights():
    t1 = Trainer(make_cfg(*DATA, f"method={DR}", "train.epochs=20", *DR_FAST))
    p1 = _plugin(t1)
    p1.on_fit_start(t1)
    p1.n_reinit = 2
    state = p1.state_dict()
    t2 = Trainer(make_cfg(*DATA, f"method={DR}", "train.epochs=20", *DR_FAST,
                          "train.seed=5"))  # different initial weights
    p2 = _plugin(t2)
    p2.load_state_dict(state)
    p2.on_fit_start(t2)
    assert p2.n_reinit == 2
    for m in ("a", "b"):
        for n, v in p2.init_params[m].items():
            assert torch.equal(v, t1.initial_state[f"encoders.{m}.{n}"])
            assert not torch.equal(v, t2.initial_state[f"encoders.{m}.{n}"])


def test_resume_through_checkpoint_is_exact(tmp_path):
    def after_two_epochs(cut):
        state = load_checkpoint(cut / "last.pt")["plugins"][DR]
        assert state["n_reinit"] == 1 and set(state["init_params"]) == {"a", "b"}

    a = assert_resume_is_exact(tmp_path, [*DATA, f"method={DR}", *DR_FAST, f"method_args.{DR}.reinit_every=1"],
                               crash_at=2, epochs=4, on_cut=after_two_epochs)
    assert [r["plugins"].get("diagnose-relearn/reinit") for r in a] == [None, 1.0, 1.0, 1.0]
    ea, eb = np.load(tmp_path / "full" / EMBEDDINGS_FILE), np.load(tmp_path / "cut" / EMBEDDINGS_FILE)
    assert sorted(ea.files) == sorted(eb.files)
    for k in ea.files:
        np.testing.assert_array_equal(ea[k], eb[k])


# ====================================================================== the real loop
class _Spy(DiagnoseRelearn):
    """Records the encoder weights around every re-initialisation."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls = []

    def relearn(self, trainer, alphas):
        before = {k: v.cpu().clone() for k, v in trainer.model.state_dict().items()}
        super().relearn(trainer, alphas)
        after = {k: v.cpu().clone() for k, v in trainer.model.state_dict().items()}
        self.calls.append((trainer.epoch, dict(alphas), before, after))


def test_end_to_end_fires_at_the_right_epochs_and_applies_the_formula(tmp_path):
    cfg = make_cfg(*DATA, f"method={DR}", "train.epochs=7", *DR_FAST, out=str(tmp_path / "run"))
    spy = _Spy(reinit_every=2, max_reinit=2, kmeans_backend="torch", n_init=2)
    spy.name = DR
    trainer = Trainer(cfg, plugins=[spy])
    trainer.fit()
    assert [c[0] for c in spy.calls] == [2, 4]  # e > 0, e % 2 == 0, at most 2 times: not after epoch 6
    recs = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for r in recs:
        has = "diagnose-relearn/a/alpha" in r["plugins"]
        assert has == (r["epoch"] in (2, 4))
    for epoch, alphas, before, after in spy.calls:
        logged = recs[epoch]["plugins"]
        for m in ("a", "b"):
            pt, pv = logged[f"diagnose-relearn/{m}/purity_train"], logged[f"diagnose-relearn/{m}/purity_val"]
            assert 0 < pt <= 1 and 0 < pv <= 1
            assert logged[f"diagnose-relearn/{m}/gap"] == pytest.approx(abs(pt - pv), abs=1e-12)
            assert logged[f"diagnose-relearn/{m}/alpha"] == pytest.approx(math.tanh(3.0 * abs(pt - pv)), abs=1e-12)
            assert alphas[m] == logged[f"diagnose-relearn/{m}/alpha"]
        for k in after:
            if k.startswith("encoders."):
                a = alphas[k.split(".")[1]]
                torch.testing.assert_close(after[k], (1 - a) * before[k] + a * trainer.initial_state[k],
                                           rtol=1e-6, atol=1e-6)
            else:
                assert torch.equal(after[k], before[k])
        assert recs[epoch]["plugins"]["diagnose-relearn/reinit"] == 1.0
    assert recs[4]["plugins"]["diagnose-relearn/n_reinit"] == 2.0
    assert any(a > 0 for _, alphas, _, _ in spy.calls for a in alphas.values())
    z = np.load(tmp_path / "run" / EMBEDDINGS_FILE)
    assert {"a__before__e2", "a__after__e2", "b__before__e4", "b__after__e4", "a__final__e6"} <= set(z.files)
    assert len(z["labels"]) == len(z["a__before__e2"]) == len(trainer.splits.val)


def test_lambda_zero_and_monitoring_leave_training_identical_to_joint():
    joint = Trainer(make_cfg(*DATA, "method=joint", "train.epochs=3")).fit()
    dr = Trainer(make_cfg(*DATA, f"method={DR}", "train.epochs=3", *DR_FAST, f"method_args.{DR}.lambda_=0",
                          f"method_args.{DR}.reinit_every=1",
                             f"method_args.{DR}.monitor_every=1"))
    s = dr.fit()
    assert s["test"] == joint["test"] and s["val"] == joint["val"]
    assert [r["plugins"]["diagnose-relearn/reinit"] for r in dr.history] == [0.0, 1.0, 1.0]
    assert all(r["plugins"]["diagnose-relearn/a/alpha"] == 0.0 for r in dr.history)


def test_stacks_with_joint_aux_and_trains_fused_ce_only_alone():
    t = Trainer(make_cfg(*DATA, f"method=joint-aux+{DR}", "train.epochs=2", *DR_FAST,
                         f"method_args.{DR}.reinit_every=1"))
    t.fit()
    rec = t.history[1]
    assert "loss_uni_a" in rec["train"] and "loss_fused" in rec["train"]
    assert "diagnose-relearn/b/gap" in rec["plugins"]
    alone = Trainer(make_cfg(*DATA, f"method={DR}", "train.epochs=1", *DR_FAST))
    alone.fit()
    assert set(alone.history[0]["train"]) >= {"loss_fused"} and "loss_uni_a" not in alone.history[0]["train"]


def test_stacks_with_ogm_ge_when_registered():
    from mmbalance.registry import METHODS

    if "ogm-ge" not in METHODS:
        pytest.skip("ogm-ge is not registered")
    t = Trainer(make_cfg(*DATA, f"method=ogm-ge+{DR}", "train.epochs=2", *DR_FAST, f"method_args.{DR}.reinit_every=1"))
    t.fit()
    assert "diagnose-relearn/a/alpha" in t.history[1]["plugins"] and t.history[1]["plugins"]["diagnose-relearn/reinit"] == 1.0


def test_three_views_of_mfeat_with_mlp():
    t = Trainer(make_cfg("data.name=mfeat", "data.modalities=[pix,fou,zer]", f"method={DR}", "train.epochs=2",
                         *DR_FAST, f"method_args.{DR}.reinit_every=1", "model.feature_dim=16",
                            "model.encoder_args.hidden=32"))
    t.fit()
    logged = t.history[1]["plugins"]
    assert {f"diagnose-relearn/{m}/alpha" for m in ("pix", "fou", "zer")} <= set(logged)
    assert all(logged[f"diagnose-relearn/{m}/purity_train"] > 0.3 for m in ("pix", "fou", "zer"))


@pytest.mark.parametrize("encoder", ["cnn", "transformer"])
def test_other_encoders(encoder):
    extra = [f"model.encoder={encoder}", "model.feature_dim=16", f"method_args.{DR}.reinit_every=1"]
    extra += ["model.encoder_args.width=4"] if encoder == "cnn" else ["model.encoder_args.layers=1"]
    t = Trainer(make_cfg("data.name=av-digits", f"method={DR}", "train.epochs=2", *DR_FAST, *extra),
                         splits=_image_splits())
    before = {k: v.cpu().clone() for k, v in t.model.encoders.state_dict().items()}
    t.fit()
    assert {"diagnose-relearn/img/alpha", "diagnose-relearn/aud/alpha"} <= set(t.history[1]["plugins"])
    assert any(not torch.equal(v.cpu(), before[k]) for k, v in t.model.encoders.state_dict().items())


def test_diagnose_wiring_matches_a_direct_sklearn_computation():
    """Per set and modality: MinMax to [-1, 1] fitted on that set, KMeans(k=C, n_init, random_state)."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import MinMaxScaler

    t = Trainer(make_cfg(*DATA, f"method={DR}", "train.epochs=1", *DR_FAST, f"method_args.{DR}.kmeans_backend=sklearn",
                         f"method_args.{DR}.n_init=3",
                            f"method_args.{DR}.kmeans_seed=4"))
    plugin = _plugin(t)
    plugin.on_fit_start(t)
    t.train_epoch(0)
    stats, _ = plugin.diagnose(t)
    for split, key in (("train", "purity_train"), ("val", "purity_val")):
        feats, y = t.extract_features(split)
        for m in ("a", "b"):
            x = MinMaxScaler(feature_range=(-1, 1)).fit_transform(feats[m].cpu().numpy())
            ids = KMeans(t.num_classes, n_init=3, random_state=4).fit_predict(x)
            assert stats[m][key] == purity(ids, y)
    for m in ("a", "b"):
        assert stats[m]["gap"] == abs(stats[m]["purity_train"] - stats[m]["purity_val"])
        assert stats[m]["alpha"] == math.tanh(3.0 * stats[m]["gap"])
    # the ablation switch replaces only alpha
    plugin.fixed_alpha = 0.3
    fixed, _ = plugin.diagnose(t)
    assert all(fixed[m]["alpha"] == 0.3 and fixed[m]["gap"] == stats[m]["gap"] for m in ("a", "b"))
    plugin.fixed_alpha = None
    # the torch backend gives the same kind of numbers on the same features
    plugin.kmeans_backend = "torch"
    torch_stats, _ = plugin.diagnose(t)
    assert all(0 < torch_stats[m][k] <= 1 for m in ("a", "b") for k in ("purity_train", "purity_val"))


@pytest.mark.parametrize("arg,value,match", [
    ("reinit_every", 0, "reinit_every must be an integer >= 1"),
    ("max_reinit", -1, "max_reinit"),
    ("lambda_", -2, "lambda_ must be a number >= 0"),
    ("kmeans_backend", "faiss", "kmeans_backend must be one of auto, torch, sklearn"),
    ("n_init", 0, "n_init"),
    ("fixed_alpha", 1.5, "fixed_alpha must be null or a number in"),
])
def test_bad_options_name_the_option(arg, value, match):
    with pytest.raises(ValueError, match=match):
        build_plugins(Config().override([f"method={DR}", f"method_args.{DR}.{arg}={value}"]))


def test_val_split_smaller_than_k_is_a_clear_error():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 8
    ds = MultimodalDataset({"a": torch.randn(200, 4, generator=g), "b": torch.randn(200, 4, generator=g)}, y, 8)
    splits = split_in_memory(ds, 0.5, 0.2, 0)
    splits.val = splits.val.subset(np.arange(5))
    t = Trainer(make_cfg(*DATA, f"method={DR}", "train.epochs=20", *DR_FAST), splits=splits)
    with pytest.raises(ValueError, match="data.val_fraction"):
        _plugin(t).on_fit_start(t)


def test_plots(tmp_path):
    pytest.importorskip("matplotlib")
    from mmbalance.report import plots_diagnose_relearn as plots

    run = tmp_path / "run"
    Trainer(make_cfg(*DATA, f"method={DR}", "train.epochs=3", *DR_FAST, f"method_args.{DR}.reinit_every=1",
                     f"method_args.{DR}.monitor_every=1", out=str(run))).fit()
    files = plots.plot(run, tmp_path / "plots")
    names = {f.name for f in files}
    assert any("gap" in n for n in names) and any("embedding" in n for n in names)
    assert all(f.exists() and f.stat().st_size > 1000 for f in files)
    assert plots.plot(tmp_path / "missing", tmp_path / "p2") == []
