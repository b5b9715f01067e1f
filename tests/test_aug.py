"""AUG: the sustained-boosting loss and the assignment test by hand, classifiers grown mid-training (optimised,
saved, re-created on resume, and a best.pt from before a growth evaluates as it was), stacks and refusals."""
import json
import math

import pytest
import torch
import torch.nn.functional as F

from mmbalance import Trainer
from mmbalance.engine import IncompatiblePluginsError, OptionError
from mmbalance.engine.checkpoint import load_checkpoint
from mmbalance.methods import METHODS, build_plugins
from mmbalance.methods.aug import ConfigurableClassifier, needs_classifier, sustained_boosting_terms

from conftest import assert_resume_is_exact, load_metrics, make_cfg

GROW = ["method=aug", "method_args.aug.check_every=1", "method_args.aug.tau=0"]  # a check, and a growth, every epoch


# ----------------------------------------------------------------------------- the math
def test_sustained_boosting_terms_by_hand():
    # one sample, two classes, y = 0; classifier 1 outputs [0, 0], classifier 2 outputs [ln 3, 0]
    z1, z2 = torch.tensor([[0.0, 0.0]]), torch.tensor([[math.log(3.0), 0.0]])
    y = torch.tensor([0])
    t = sustained_boosting_terms([z1, z2], y, lam=0.5)
    assert t["all"].item() == pytest.approx(math.log(4 / 3))  # CE([ln 3, 0]) = -log(3/4)
    assert t["pre"].item() == pytest.approx(math.log(2))  # CE([0, 0])
    # residual label y - 0.5 * y * softmax(z1) = [1 - 0.25, 0]: CE = 0.75 * -log(3/4)
    assert t["residual"].item() == pytest.approx(0.75 * math.log(4 / 3))
    # the same as cross-entropy against the (unnormalised) soft residual label, as the code computes it
    soft = F.cross_entropy(z2, torch.tensor([[0.75, 0.0]]))
    assert t["residual"].item() == pytest.approx(soft.item())
    assert set(sustained_boosting_terms([z1], y, 0.5)) == {"all"}  # one classifier: plain cross-entropy


def test_residual_label_uses_the_ensemble_of_all_earlier_classifiers():
    torch.manual_seed(0)
    zs = [torch.randn(5, 4) for _ in range(3)]
    y = torch.tensor([0, 1, 2, 3, 0])
    t = sustained_boosting_terms(zs, y, lam=1.0)
    p_prev = F.softmax(zs[0] + zs[1], 1)
    target = F.one_hot(y, 4).float() * (1 - p_prev)
    assert t["residual"].item() == pytest.approx(F.cross_entropy(zs[2], target).item(), rel=1e-6)
    assert t["pre"].item() == pytest.approx(F.cross_entropy(zs[0] + zs[1], y).item(), rel=1e-6)


def test_assignment_test_by_hand():
    assert needs_classifier({"a": 0.6, "v": 0.5}, 1.0, 0.01) == "v"  # 0.6 / 0.5 = 1.2 > 1.01
    assert needs_classifier({"a": 0.4, "v": 0.5}, 1.0, 0.01) == "a"
    assert needs_classifier({"a": 0.505, "v": 0.5}, 1.0, 0.01) is None  # 1.01 is inside the dead zone
    assert needs_classifier({"a": 0.6, "v": 0.5}, 1.5, 0.01) is None  # sigma 1.5: 1.2 < 1.51
    assert needs_classifier({"a": 0.6, "v": 0.5}, 1.0, 0.01, "difference") == "v"  # 0.6 - 0.5 > 0.01
    assert needs_classifier({"a": 0.6, "v": 0.5}, 1.0, 0.2, "difference") is None
    assert needs_classifier({"a": 0.9, "b": 0.3, "c": 0.6}, 1.0, 0.01) == "b"  # the weakest of three grows
    assert needs_classifier({"a": 0.5, "v": 0.5}, 1.0, 0.0) is None


def test_configurable_classifier_sums_its_classifiers_through_one_shared_layer():
    shared = torch.nn.Linear(8, 3)
    a, v = ConfigurableClassifier(4, 8, shared), ConfigurableClassifier(6, 8, shared)
    assert a.shared is v.shared
    h = torch.randn(5, 4)
    keys = set(a.state_dict())
    a.grown.append(torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()))
    parts = a.components(h)
    assert len(parts) == 2 and torch.allclose(a(h), parts[0] + parts[1])
    assert set(a.state_dict()) == keys  # grown layers live in model.extras, not under the head


# ----------------------------------------------------------------------------- the real loop
def _recreated_first_layer(overrides, grown):
    """The first grown layer as it was initialised (the initialisation is seeded by the growth index)."""
    fresh = Trainer(make_cfg(*overrides))
    fresh.plugin("aug").load_state_dict({"grown": [list(grown[0])], "decisions": []})
    fresh.plugin("aug").on_load(fresh)
    return fresh.model.extras[grown[0][1]][0].weight


def test_classifiers_grow_join_the_optimizer_and_learn(tmp_path):
    over = [*GROW, "train.epochs=3"]
    tr = Trainer(make_cfg(*over, out=tmp_path / "r"))
    groups = len(tr.optimizer.param_groups)
    tr.fit()
    last = load_checkpoint(tmp_path / "r" / "last.pt")
    grown = last["plugins"]["aug"]["grown"]
    assert len(grown) == 3 and len(tr.optimizer.param_groups) == groups + 3
    assert tr.model.fusion is None
    aug = tr.plugin("aug")
    records = load_metrics(tmp_path / "r")
    weak = [aug.modalities[r["plugins"]["aug/grew"]] for r in records]
    scores = [{m: r["plugins"][f"aug/{m}/score"] for m in aug.modalities} for r in records]
    assert weak == [min(s, key=s.get) for s in scores]  # each epoch the less confident modality grew
    assert [m for m, _ in grown] == weak
    assert records[0]["train"]["cost"]["added_parameters"] == 0 < records[2]["train"]["cost"]["added_parameters"]
    assert any(k.startswith("loss_residual_") for k in records[2]["train"])
    # the first grown layer was optimised after it was added (epochs 1 and 2)
    assert not torch.equal(_recreated_first_layer(over, grown), last["model"][f"extras.{grown[0][1]}.0.weight"])


def test_frozen_new_layers_reproduce_the_official_code():
    over = [*GROW, "train.epochs=3", "method_args.aug.train_new_layers=false"]
    tr = Trainer(make_cfg(*over))
    groups = len(tr.optimizer.param_groups)
    tr.fit()
    name = next(iter(tr.model.extras))
    modality = name.split("_")[1]
    assert torch.equal(tr.model.extras[name][0].weight, _recreated_first_layer(over, [(modality, name)]))
    assert len(tr.optimizer.param_groups) == groups  # no parameter joined the optimizer


def test_a_run_that_grew_resumes_exactly(tmp_path):
    records = assert_resume_is_exact(tmp_path, GROW, crash_at=2, epochs=3)
    assert [r["plugins"]["aug/grew"] >= 0 for r in records] == [True, True, True]


def test_a_best_checkpoint_from_before_a_growth_evaluates_as_it_was(tmp_path):
    tr = Trainer(make_cfg(*GROW, "train.epochs=3", out=tmp_path / "r"))
    tr.fit()
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=True)
    final = load_checkpoint(tmp_path / "r" / "last.pt")["plugins"]["aug"]["grown"]
    assert len(best["plugins"]["aug"]["grown"]) < len(final) == 3  # best.pt was written before a growth
    assert len(tr.model.extras) == 3
    fresh = Trainer(make_cfg(*GROW, "train.epochs=3"))
    fresh.load_weights(best)
    assert [g for g in fresh.plugin("aug").grown] == [tuple(g) for g in best["plugins"]["aug"]["grown"]]
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert fresh.evaluate("test")["acc"] == pytest.approx(summary["test"]["acc"])
    # the finished run, rolled back to best for its summary, uses exactly best's classifiers (not the later ones)
    assert tr.plugin("aug").grown == fresh.plugin("aug").grown
    for m in tr.plugin("aug").modalities:
        n = sum(1 for k, _ in best["plugins"]["aug"]["grown"] if k == m)
        assert len(tr.model.heads[m].grown) == n


def test_the_eval_command_re_creates_grown_classifiers(tmp_path, capsys):
    from mmbalance.cli import main

    Trainer(make_cfg(*GROW, "train.epochs=3", out=tmp_path / "r")).fit()
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "r"), "--splits", "test", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert shown["test"]["acc"] == pytest.approx(summary["test"]["acc"])
    assert main(["eval", str(tmp_path / "r"), "--splits", "test", "--checkpoint", "last"]) == 0  # all 3 grown


def test_in_memory_selection_keeps_the_growth_state():
    tr = Trainer(make_cfg(*GROW, "train.epochs=3"))
    summary = tr.fit()
    kept = tr.selection.best_plugins["aug"]["grown"]
    assert len(kept) == tr.selection.best["epoch"]  # one growth at the end of each earlier epoch
    assert summary["test"]["acc"] == pytest.approx(tr.evaluate("test")["acc"])


def test_alternating_steps_count_one_pass_per_modality(tmp_path):
    Trainer(make_cfg(*GROW, "train.epochs=2", "method_args.aug.alternating=true", out=tmp_path / "r")).fit()
    cost = load_metrics(tmp_path / "r")[1]["train"]["cost"]
    assert cost["forwards_per_step"] == 2.0 and cost["backwards_per_step"] == 2.0


def test_aug_on_three_views():
    tr = Trainer(make_cfg("data.name=mfeat", "data.modalities=[pix,fou,zer]", *GROW, "train.epochs=3"))
    summary = tr.fit()
    assert summary["test"]["acc"] > 0.5 and len(tr.model.extras) == 3


# ----------------------------------------------------------------------------- stacks and refusals
def test_aug_stacks_with_diagnose_relearn():
    tr = Trainer(make_cfg("method=aug+diagnose-relearn", "method_args.aug.check_every=1", "method_args.aug.tau=0",
                          "method_args.diagnose-relearn.reinit_every=1",
                          "method_args.diagnose-relearn.kmeans_backend=torch", "train.epochs=3"))
    tr.fit()
    assert len(tr.model.extras) == 3  # a classifier grown after every epoch, next to D&R's re-initialisations
    assert any(k.startswith("diagnose-relearn/") for k in tr.history[1]["plugins"])


def test_refusals_name_the_reason():
    with pytest.raises(IncompatiblePluginsError, match="replaces that step"):
        Trainer(make_cfg("method=aug+ogm-ge", "method_args.aug.alternating=true"))
    with pytest.raises(ValueError, match="no additive per-modality share"):  # AUG has no fusion head by default
        Trainer(make_cfg("method=aug+ogm-ge", "train.epochs=1")).fit()
    with pytest.raises(IncompatiblePluginsError, match="both decide the evaluation prediction"):
        Trainer(make_cfg("method=aug+mla"))
    with pytest.raises(OptionError, match="keep_fusion"):
        METHODS.get("aug")(alternating=True, keep_fusion=True)
    with pytest.raises(OptionError, match="fusion_weights"):
        Trainer(make_cfg("method=aug", "method_args.aug.fusion_weights=[1,2,3]"))


def test_keep_fusion_stacks_with_ogm_ge():
    cfg = make_cfg("method=aug+ogm-ge", "method_args.aug.keep_fusion=true", "method_args.aug.check_every=1",
                   "train.epochs=2")
    tr = Trainer(cfg, plugins=build_plugins(cfg))
    tr.fit()
    assert tr.model.fusion is not None and "ogm-ge/a/ratio" in tr.history[1]["plugins"]
