"""Every logger writes readable output (W&B offline, MLflow file store) and resumes without duplicates."""
from __future__ import annotations

import csv
import json

import pytest

from mmbalance import Trainer
from mmbalance.cli import main

from conftest import make_cfg


def test_csv_logger_one_row_per_epoch_survives_resume(tmp_path):
    cfg = make_cfg("method=dus-h", "log.loggers=[csv]", "train.epochs=2", out=tmp_path / "r")
    Trainer(cfg).fit()
    Trainer(cfg.override(["train.epochs=3"])).fit(resume=True)
    rows = list(csv.DictReader((tmp_path / "r" / "metrics.csv").open()))
    assert [int(float(r["epoch"])) for r in rows] == [0, 1, 2]
    assert {"val/acc", "train/loss", "plugins/dus-h/rho/a"} <= set(rows[0])


def test_tensorboard_has_hparams_step_series_and_no_duplicate_epoch_after_resume(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_cfg("method=dus-h", "log.loggers=[tensorboard]", "log.tensorboard=true", "train.epochs=2",
                   out=tmp_path / "r")
    Trainer(cfg).fit()
    Trainer(cfg.override(["train.epochs=3"])).fit(resume=True)
    acc = EventAccumulator(str(tmp_path / "r" / "tb"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("val/acc")] == [0, 1, 2]
    steps = EventAccumulator(str(tmp_path / "r" / "tb" / "steps"))
    steps.Reload()
    n = steps.Scalars("dus-h/n/a")
    assert len(n) == 3 * 14 and [e.step for e in n] == list(range(42))  # 420 samples / 32 = 14 steps per epoch
    assert (tmp_path / "r" / "tb" / "hparams").exists()


def test_wandb_offline(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    Trainer(make_cfg("log.loggers=[wandb]", out=tmp_path / "r")).fit()
    runs = list((tmp_path / "r" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].glob("*.wandb"))


def test_mlflow_file_store(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    Trainer(make_cfg("log.loggers=[mlflow]", "train.epochs=2", out=tmp_path / "r")).fit()
    client = mlflow.tracking.MlflowClient((tmp_path / "r" / "mlruns").resolve().as_uri())
    exp = client.get_experiment_by_name("mmbalance")
    run = client.search_runs([exp.experiment_id])[0]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val/acc")] == [0, 1]
    assert run.data.params["method"] == "joint" and "final/test/acc" in run.data.metrics


def test_logger_flag_on_the_command_line(tmp_path):
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "--logger", "csv", "--out", str(tmp_path / "r"),
                 "--no-progress", "eval.probe=false"]) == 0
    assert (tmp_path / "r" / "metrics.csv").exists() and not (tmp_path / "r" / "tb").exists()
    cfg = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / "r" / "config.yaml").read_text())))
    assert cfg["log"]["loggers"] == ["csv"]
