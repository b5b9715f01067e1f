"""Where a run's numbers go besides ``metrics.jsonl``: TensorBoard, CSV, Weights & Biases, MLflow.

``log.loggers`` (``--logger tensorboard,csv,wandb,mlflow``) chooses them. Each logger gets the run's
hyper-parameters once, every epoch's flattened record (and the per-step series of the plug-ins' signals), and
the summary at the end. W&B runs offline unless ``WANDB_MODE`` says otherwise, and MLflow writes a file store
under the run folder unless ``MLFLOW_TRACKING_URI`` is set: nothing needs a network. A resumed run continues
the same W&B/MLflow run and TensorBoard drops the events written after the checkpoint (``purge_step``).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any, Dict, List, Optional

LOGGERS = ("tensorboard", "csv", "wandb", "mlflow")


def flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "/"))
        else:
            out[key] = v
    return out


def scalars(record: Dict[str, Any]) -> Dict[str, float]:
    """The numeric leaves of an epoch record (``train/loss``, ``val/acc``, ``plugins/dus-h/rho/audio``, ...)."""
    return {k: float(v) for k, v in flatten({k: v for k, v in record.items() if k != "steps"}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}


class Logger:
    """One destination. ``state`` is saved in checkpoints (e.g. the external run id) to resume the same run."""

    def __init__(self, out: Path, state: Dict[str, Any]):
        self.out, self.state = out, state

    def start(self, hparams: Dict[str, Any], history: List[Dict[str, Any]]) -> None:
        """Called once; ``history`` holds the epochs before a resume (empty for a new run)."""

    def epoch(self, record: Dict[str, Any], first_step: int) -> None:
        """An epoch's final record; ``first_step`` is the global step of its first training step."""

    def finish(self, summary: Dict[str, Any]) -> None:
        """The run's summary (the selected checkpoint's metrics)."""


class TensorBoardLogger(Logger):
    """Epoch scalars, each plug-in's per-step series at its global step, and hparams with the final metrics."""

    def start(self, hparams: Dict[str, Any], history: List[Dict[str, Any]]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.hparams = hparams
        # a resumed run drops what was written after its checkpoint (no epoch is recorded twice); per-step series
        # have their own writer because their step axis (global steps) differs from the epochs'
        steps_done = sum(int(r["train"].get("steps", 0)) for r in history)
        self.tb = SummaryWriter(str(self.out / "tb"), purge_step=len(history) if history else None)
        self.tb_steps = SummaryWriter(str(self.out / "tb" / "steps"), purge_step=steps_done if history else None)

    def epoch(self, record: Dict[str, Any], first_step: int) -> None:
        for k, v in scalars(record).items():
            self.tb.add_scalar(k, v, record["epoch"])
        steps = int(record["train"].get("steps", 0))
        for k, series in (record.get("steps") or {}).items():
            if len(series) == steps:  # one value per step: at its global step
                for i, v in enumerate(series):
                    if isinstance(v, (int, float)):
                        self.tb_steps.add_scalar(k, float(v), first_step + i)
        self.tb.flush()
        self.tb_steps.flush()

    def finish(self, summary: Dict[str, Any]) -> None:
        metrics = {f"best/{k}": float(summary[s][k2]) for s in ("val", "test") for k, k2 in
                   ((f"{s}_acc", "acc"), (f"{s}_macro_f1", "macro_f1")) if s in summary}
        self.tb.add_hparams(self.hparams, metrics, run_name="hparams")
        self.tb.close()
        self.tb_steps.close()


class CSVLogger(Logger):
    """``metrics.csv``: one row per epoch, one column per scalar (rewritten whole, so columns may grow)."""

    def start(self, hparams: Dict[str, Any], history: List[Dict[str, Any]]) -> None:
        self.rows: List[Dict[str, float]] = [{"epoch": r["epoch"], **scalars(r)} for r in history]

    def epoch(self, record: Dict[str, Any], first_step: int) -> None:
        from .checkpoint import atomic_write_text

        self.rows.append({"epoch": record["epoch"], **scalars(record)})
        cols: List[str] = []
        for r in self.rows:
            cols += [c for c in r if c not in cols]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols)
        w.writeheader()
        w.writerows(self.rows)
        atomic_write_text(self.out / "metrics.csv", buf.getvalue())


class WandbLogger(Logger):
    """A Weights & Biases run (offline by default: ``WANDB_MODE=online`` to sync)."""

    def start(self, hparams: Dict[str, Any], history: List[Dict[str, Any]]) -> None:
        import wandb

        os.environ.setdefault("WANDB_MODE", "offline")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "mmbalance"), dir=str(self.out),
                              config=hparams, id=self.state.get("id"), resume="allow", reinit=True)
        self.state["id"] = self.run.id

    def epoch(self, record: Dict[str, Any], first_step: int) -> None:
        self.run.log({**scalars(record), "epoch": record["epoch"]}, step=record["epoch"])

    def finish(self, summary: Dict[str, Any]) -> None:
        self.run.summary.update({f"{s}/{k}": summary[s][k] for s in ("val", "test") for k in ("acc", "macro_f1")
                                 if s in summary})
        self.run.finish()


class MLflowLogger(Logger):
    """An MLflow run (file store ``<run>/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set)."""

    def start(self, hparams: Dict[str, Any], history: List[Dict[str, Any]]) -> None:
        import mlflow

        self.mlflow = mlflow
        # a local file store under the run folder unless the user points MLflow elsewhere (its file store is in
        # maintenance mode, still supported behind this switch)
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI", (self.out / "mlruns").resolve().as_uri()))
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "mmbalance"))
        self.run = mlflow.start_run(run_id=self.state.get("id"))
        self.state["id"] = self.run.info.run_id
        if not history:
            mlflow.log_params({k: str(v)[:500] for k, v in hparams.items()})

    def epoch(self, record: Dict[str, Any], first_step: int) -> None:
        self.mlflow.log_metrics(scalars(record), step=record["epoch"])

    def finish(self, summary: Dict[str, Any]) -> None:
        self.mlflow.log_metrics({f"final/{s}/{k}": float(summary[s][k]) for s in ("val", "test")
                                 for k in ("acc", "macro_f1") if s in summary})
        self.mlflow.end_run()


KINDS = {"tensorboard": TensorBoardLogger, "csv": CSVLogger, "wandb": WandbLogger, "mlflow": MLflowLogger}


def hyperparameters(cfg) -> Dict[str, Any]:
    """The run's configuration as flat ``section/key: scalar`` pairs (what hparams tables can show)."""
    flat = flatten(cfg.to_dict())
    return {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in flat.items() if v is not None}


def make(kind: str, out: Path, state: Optional[Dict[str, Any]] = None) -> Logger:
    if kind not in KINDS:
        raise ValueError(f"log.loggers: unknown logger {kind!r}; choose from {', '.join(LOGGERS)}")
    return KINDS[kind](out, state if state is not None else {})
