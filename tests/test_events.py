"""The events the 2025 methods need, each proven by a tiny plug-in through the real loop, resume included:
an encoder-output transform, a step with several forward passes, parameters added mid-training, a stage before
main training, and a test-time prediction rule."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmbalance import Plugin, Trainer
from mmbalance.engine import IncompatiblePluginsError, Stage, check_plugins

from conftest import assert_resume_is_exact, load_metrics, make_cfg


def _resume_is_exact(tmp_path, overrides, extra, crash_at, epochs=3):
    return assert_resume_is_exact(tmp_path, overrides, crash_at=crash_at, epochs=epochs, extra=extra)


# ------------------------------------------------------------------------------------------------ 1. transform
class DetachFusion(Plugin):
    """The fused loss trains only the fusion head: its route to the fusion head is detached (DGL's routing)."""

    name = "detach-fusion"

    def transform_features(self, trainer, batch, routes):
        for m in routes.fusion:
            routes.fusion[m] = routes.fusion[m].detach()


def test_feature_transform_routes_gradients(tmp_path):
    # joint = fused loss only (monitor heads on detached features): with the fused route detached as well, no
    # gradient reaches the encoders, while the fusion head still learns
    tr = Trainer(make_cfg("method=joint", "train.epochs=2"), plugins=[*_joint(), DetachFusion()])
    enc0 = {k: v.clone() for k, v in tr.model.encoders.state_dict().items()}
    fus0 = {k: v.clone() for k, v in tr.model.fusion.state_dict().items()}
    tr.fit()
    assert all(torch.equal(enc0[k], v) for k, v in tr.model.encoders.state_dict().items())
    assert any(not torch.equal(fus0[k], v) for k, v in tr.model.fusion.state_dict().items())
    # without the transform the encoders do learn
    plain = Trainer(make_cfg("method=joint", "train.epochs=1"))
    before = {k: v.clone() for k, v in plain.model.encoders.state_dict().items()}
    plain.fit()
    assert any(not torch.equal(before[k], v) for k, v in plain.model.encoders.state_dict().items())


def _joint():
    from mmbalance.methods import METHODS

    return [METHODS.get("joint")()]


def test_feature_transform_resumes_exactly(tmp_path):
    _resume_is_exact(tmp_path, ["method=joint-aux"], [DetachFusion], crash_at=1, epochs=2)


# ------------------------------------------------------------------------------------------------ 2. two passes
class Probe(Plugin):
    """Probe-then-learn: a no-grad forward before the training forward sets a loss weight (IPRM's shape)."""

    name = "probe"

    def __init__(self):
        self.weight = torch.ones(())

    def before_forward(self, trainer, batch):
        with torch.no_grad(), trainer.side_pass(train=False, fork_rng=False):
            out = trainer.forward(batch.inputs)
            acc = (out.fused.argmax(1) == batch.paired_labels()).float().mean()
        self.weight = 1.0 + acc  # learn harder from batches the model already gets right (any rule will do)
        self.log_mean("acc", acc)

    def compute_loss(self, trainer, batch, out, losses):
        losses["fused"] = losses["fused"] * self.weight


def test_a_step_with_two_forward_passes_counts_its_cost(tmp_path):
    Trainer(make_cfg("method=joint", out=tmp_path / "r"), plugins=[*_joint(), Probe()]).fit()
    for r in load_metrics(tmp_path / "r"):
        assert r["train"]["cost"]["forwards_per_step"] == 2.0 and r["train"]["cost"]["backwards_per_step"] == 1.0
        assert 0.0 <= r["plugins"]["probe/acc"] <= 1.0
    Trainer(make_cfg("method=joint", out=tmp_path / "plain")).fit()
    assert load_metrics(tmp_path / "plain")[0]["train"]["cost"]["forwards_per_step"] == 1.0


def test_a_two_pass_step_resumes_exactly(tmp_path):
    _resume_is_exact(tmp_path, ["method=joint"], [Probe], crash_at=1, epochs=2)


# ------------------------------------------------------------------------------------------------ 3. growth
class GrowHead(Plugin):
    """Adds an extra head on modality 'b' at the start of epoch 1 and trains it (AUG's shape)."""

    name = "grow-head"

    def __init__(self):
        self.grown = False

    def on_epoch_start(self, trainer, epoch):
        if epoch == 1 and not self.grown:
            self.grown = True
            self.on_load(trainer)

    def on_load(self, trainer):
        if self.grown and "grow-head" not in trainer.model.extras:
            torch.manual_seed(1234)  # the new head's initial weights do not depend on the run's RNG position
            trainer.add_module("grow-head", nn.Linear(trainer.model.encoders["b"].out_dim, trainer.num_classes))

    def compute_loss(self, trainer, batch, out, losses):
        if self.grown:
            head = trainer.model.extras["grow-head"]
            losses["extra_b"] = F.cross_entropy(head(out.features["b"]).float(), batch.labels("b"))

    def state_dict(self):
        return {"grown": self.grown}

    def load_state_dict(self, state):
        self.grown = bool(state["grown"])


def test_parameters_added_mid_training_are_optimised_saved_and_resumed(tmp_path):
    tr = Trainer(make_cfg("method=joint", "train.epochs=3", out=tmp_path / "r"), plugins=[*_joint(), GrowHead()])
    groups_before = len(tr.optimizer.param_groups)
    tr.fit()
    assert len(tr.optimizer.param_groups) == groups_before + 1
    records = load_metrics(tmp_path / "r")
    assert "loss_extra_b" not in records[0]["train"] and "loss_extra_b" in records[2]["train"]
    assert records[0]["train"]["cost"]["added_parameters"] == 0 < records[2]["train"]["cost"]["added_parameters"]
    state = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    assert "extras.grow-head.weight" in state["model"]


@pytest.mark.parametrize("crash_at", [1, 2])  # before the growth, and after it
def test_growth_resumes_exactly(tmp_path, crash_at):
    _resume_is_exact(tmp_path, ["method=joint"], [GrowHead], crash_at=crash_at, epochs=3)


def test_a_best_checkpoint_from_before_the_growth_loads(tmp_path):
    tr = Trainer(make_cfg("method=joint", "train.epochs=3", out=tmp_path / "r"), plugins=[*_joint(), GrowHead()])
    tr.fit()
    fresh = Trainer(make_cfg("method=joint", "train.epochs=3"), plugins=[*_joint(), GrowHead()])
    best = torch.load(tmp_path / "r" / "best.pt", weights_only=True)
    fresh.load_weights(best)  # whether best was before the growth or after, the head is re-created as needed
    assert ("grow-head" in fresh.model.extras) == (best["epoch"] >= 1)
    assert fresh.evaluate("test")["acc"] == pytest.approx(
        json.loads((tmp_path / "r" / "summary.json").read_text())["test"]["acc"])


# ------------------------------------------------------------------------------------------------ 4. a stage
class Warmup(Plugin):
    """Two stage epochs that train only the per-modality heads before the main epochs (a warm-up stage)."""

    name = "warmup"

    def stages(self, trainer):
        return [Stage("heads", 2, self.step)]

    def step(self, trainer, batch):
        with torch.no_grad():
            feats = trainer.model.encode(batch.inputs)
        loss = sum(F.cross_entropy(trainer.model.heads[m](f), batch.labels(m)) for m, f in feats.items())
        trainer.backward(loss, batch, None)
        trainer.optimizer_step()
        self.log_mean("loss", loss.detach())
        return {"heads": loss}


class CrashInStage(Warmup):
    """Interrupts the second stage epoch (to test that a stage resumes where it stopped)."""

    def step(self, trainer, batch):
        if trainer.stage_epochs.get("heads", 0) == 1:
            raise KeyboardInterrupt
        return super().step(trainer, batch)


def test_a_stage_runs_before_the_main_epochs_and_is_recorded(tmp_path):
    tr = Trainer(make_cfg("method=joint", out=tmp_path / "r"), plugins=[*_joint(), Warmup()])
    heads0 = {k: v.clone() for k, v in tr.model.heads.state_dict().items()}
    enc0 = {k: v.clone() for k, v in tr.model.encoders.state_dict().items()}
    tr.fit()
    stage = [json.loads(line) for line in (tmp_path / "r" / "stages.jsonl").read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in stage] == [("heads", 0), ("heads", 1)]
    assert stage[1]["plugins"]["warmup/loss"] < stage[0]["plugins"]["warmup/loss"]
    assert len(load_metrics(tmp_path / "r")) == 2
    assert any(not torch.equal(heads0[k], v) for k, v in tr.model.heads.state_dict().items())
    assert any(not torch.equal(enc0[k], v) for k, v in tr.model.encoders.state_dict().items())  # main epochs


def test_a_stage_interrupted_midway_resumes_exactly(tmp_path):
    full = Trainer(make_cfg("method=joint", out=tmp_path / "full"), plugins=[*_joint(), Warmup()]).fit()
    cfg = make_cfg("method=joint", out=tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, plugins=[*_joint(), CrashInStage()]).fit()
    assert not (tmp_path / "cut" / "metrics.jsonl").read_text()
    resumed = Trainer(cfg, plugins=[*_joint(), Warmup()]).fit(resume=True)
    for name in ("stages.jsonl", "metrics.jsonl"):
        a = [_untimed(json.loads(x)) for x in (tmp_path / "full" / name).read_text().splitlines()]
        b = [_untimed(json.loads(x)) for x in (tmp_path / "cut" / name).read_text().splitlines()]
        assert a == b and a
    full.pop("wall_time_s"), resumed.pop("wall_time_s")
    assert full == resumed


def _untimed(r):
    r.pop("time", None)
    r["train"].pop("time_s", None)
    return r


# ------------------------------------------------------------------------------------------------ 5. a rule
class SumOfHeads(Plugin):
    """The test-time prediction is the sum of the per-modality heads (UME's shape)."""

    name = "sum-of-heads"

    def predict(self, trainer, out):
        return sum(out.logits.values())


def test_a_test_time_rule_decides_the_evaluation(tmp_path):
    tr = Trainer(make_cfg("method=joint-aux", "train.epochs=2"), plugins=[*_joint_aux(), SumOfHeads()])
    summary = tr.fit()
    r = tr.collect("test")
    expected = (sum(r["logits"].values()).argmax(1) == r["y"]).float().mean().item()
    assert summary["test"]["acc"] == pytest.approx(expected)
    assert r["fused"] is not None and not torch.equal(r["pred"], r["fused"])


def test_two_test_time_rules_are_refused():
    other = type("Other", (SumOfHeads,), {"name": "other-rule"})
    with pytest.raises(IncompatiblePluginsError, match="both decide the evaluation prediction"):
        check_plugins([SumOfHeads(), other()])


def test_a_test_time_rule_resumes_exactly(tmp_path):
    _resume_is_exact(tmp_path, ["method=joint-aux"], [SumOfHeads], crash_at=1, epochs=2)


def _joint_aux():
    from mmbalance.methods import METHODS

    return [METHODS.get("joint-aux")()]
