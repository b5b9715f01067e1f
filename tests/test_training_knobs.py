"""Training knobs people expect: the selection metric, early stopping, LR warm-up, progress inside an epoch."""
from __future__ import annotations

import math

import pytest

from mmbalance import Plugin, Trainer

from conftest import load_metrics, make_cfg


def test_the_checkpoint_is_selected_on_the_chosen_metric(tmp_path):
    s = Trainer(make_cfg("train.epochs=4", "eval.select_metric=loss", out=tmp_path / "r")).fit()
    losses = [r["val"]["loss"] for r in load_metrics(tmp_path / "r")]
    assert s["best_epoch"] == min(range(4), key=lambda i: (losses[i], i))
    assert s["select_metric"] == "loss" and s["val"]["loss"] == pytest.approx(losses[s["best_epoch"]], abs=1e-6)
    with pytest.raises(ValueError, match="eval.select_metric must be one of acc, macro_f1, map, loss"):
        Trainer(make_cfg("train.epochs=1", "eval.select_metric=f2")).fit()


def test_early_stopping_ends_training_and_reports_the_best_checkpoint(tmp_path):
    # lr 0: nothing improves after the first epoch, so patience 2 stops after epoch 2
    s = Trainer(make_cfg("train.epochs=10", "optim.lr=0", "train.early_stop_patience=2",
                         out=tmp_path / "r")).fit()
    assert len(load_metrics(tmp_path / "r")) == 3 and s["epochs"] == 3
    assert s["stopped_early_at"] == 2 and s["best_epoch"] == 0
    plain = Trainer(make_cfg("train.epochs=3")).fit()
    assert plain["stopped_early_at"] is None


def test_learning_rate_warm_up_then_the_scheduler(tmp_path):
    Trainer(make_cfg("train.epochs=6", "optim.lr=0.1", "optim.warmup_epochs=2", "optim.warmup_start_factor=0.5",
                     "optim.scheduler=cosine", out=tmp_path / "r")).fit()
    lrs = [r["lr"] for r in load_metrics(tmp_path / "r")]
    assert lrs[0] == pytest.approx(0.05) and lrs[1] == pytest.approx(0.075) and lrs[2] == pytest.approx(0.1)
    # then cosine over the remaining 4 epochs
    assert lrs[3] == pytest.approx(0.1 * (1 + math.cos(math.pi / 4)) / 2)
    assert lrs[3] > lrs[4] > lrs[5]


def test_progress_counts_the_steps_of_an_epoch():
    seen = []

    class Look(Plugin):
        name = "look"

        def on_epoch_end(self, trainer, epoch, record):
            bar = trainer.plugin("_progress")._steps
            seen.append((bar.total, bar.n))

    Trainer(make_cfg("train.epochs=2", "train.progress=true"), plugins=[Look()]).fit()
    steps = math.ceil(420 / 32)  # synthetic: 420 training samples, batch 32
    assert seen == [(steps, steps), (steps, steps)]
