"""The trainer's own bookkeeping, written as ordinary plug-ins on the loop's events (they run after the
methods: priority >= 1000): model selection, metric files, checkpoints, the summary and progress."""
from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import torch

from .checkpoint import atomic_torch_save, atomic_write_json, atomic_write_text, load_checkpoint
from .evaluation import public_metrics
from .plugin import Plugin, Record
from .state import growth_states

if TYPE_CHECKING:
    from tqdm.auto import tqdm

    from .trainer import Trainer


def _cpu_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


SELECT_METRICS = ("acc", "macro_f1", "map", "loss")


def selection_score(trainer: "Trainer", record: Record) -> float:
    """The number model selection maximises: ``eval.select_metric`` on ``eval.select_on`` (``-loss`` for loss)."""
    split, metric = trainer.cfg.eval.select_on, trainer.cfg.eval.select_metric
    if split not in ("val", "test"):
        raise ValueError(f"eval.select_on must be val or test, got {split!r}")
    if metric not in SELECT_METRICS:
        raise ValueError(f"eval.select_metric must be one of {', '.join(SELECT_METRICS)}, got {metric!r}")
    value = float(record[split][metric])
    return -value if metric == "loss" else value


class Selection(Plugin):
    """Keeps the checkpoint with the best ``eval.select_metric`` on ``eval.select_on`` (``best.pt``, or in memory
    without a run folder). Runs at ``after_evaluate``, before any method changes weights at epoch end."""

    name = "_selection"
    priority = 1000

    def __init__(self) -> None:
        self.best: Dict[str, Any] = {"epoch": -1, "score": -math.inf}
        self.best_state: Optional[Dict[str, torch.Tensor]] = None

    def after_evaluate(self, trainer: "Trainer", epoch: int, record: Record) -> None:
        split = trainer.cfg.eval.select_on
        score = selection_score(trainer, record)
        if score > self.best["score"]:
            self.best = {"epoch": epoch, "score": score}
            state = _cpu_state(trainer.model)
            if trainer.out is None:
                self.best_state = state
            elif trainer.is_main:
                atomic_torch_save({"model": state, "epoch": epoch, "score": score, "select_on": split,
                                   "plugins": growth_states(trainer)}, trainer.out / "best.pt")

    def best_checkpoint(self, trainer: "Trainer") -> Optional[Dict[str, Any]]:
        """The selected weights (``{"model": ..., "plugins": ...}``), or None if no epoch ran."""
        if self.best["epoch"] < 0:
            return None
        if self.best_state is not None:
            return {"model": self.best_state, "plugins": {}}
        if trainer.out is not None:
            return load_checkpoint(trainer.out / "best.pt")
        return None

    def state_dict(self) -> Dict[str, Any]:
        return {"best": dict(self.best), "best_state": self.best_state}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best, self.best_state = dict(state["best"]), state.get("best_state")


class EarlyStopping(Plugin):
    """Ends training when the selection score has not improved by more than ``train.early_stop_min_delta`` for
    ``train.early_stop_patience`` epochs (the selected checkpoint is still the best one seen)."""

    name = "_early_stopping"
    priority = 1001

    def __init__(self) -> None:
        self.best = -math.inf
        self.bad_epochs = 0
        self.stopped_at: Optional[int] = None

    def after_evaluate(self, trainer: "Trainer", epoch: int, record: Record) -> None:
        score = selection_score(trainer, record)
        if score > self.best + trainer.cfg.train.early_stop_min_delta:
            self.best, self.bad_epochs = score, 0
        else:
            self.bad_epochs += 1
        patience = trainer.cfg.train.early_stop_patience
        assert patience is not None  # the trainer adds this plug-in only when it is set
        if self.bad_epochs >= int(patience):
            self.stopped_at = epoch
            trainer.stop_training = True

    def state_dict(self) -> Dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "stopped_at": self.stopped_at}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best, self.bad_epochs, self.stopped_at = state["best"], state["bad_epochs"], state["stopped_at"]


class MetricsWriter(Plugin):
    """``metrics.jsonl`` (one JSON object per epoch; stage epochs in ``stages.jsonl``)."""

    name = "_metrics"
    priority = 1000

    def on_fit_start(self, trainer: "Trainer") -> None:
        if trainer.out is None or not trainer.is_main or not trainer.cfg.log.jsonl:
            return
        # a resumed run continues exactly from its checkpoint: drop lines written after it
        atomic_write_text(trainer.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in trainer.history))
        if trainer.stage_history:
            atomic_write_text(trainer.out / "stages.jsonl",
                              "".join(json.dumps(r) + "\n" for r in trainer.stage_history))

    def on_record(self, trainer: "Trainer", record: Record) -> None:
        if trainer.out is None or not trainer.is_main or not trainer.cfg.log.jsonl:
            return
        name = "stages.jsonl" if "stage" in record else "metrics.jsonl"
        with open(trainer.out / name, "a") as f:
            f.write(json.dumps(record) + "\n")


class Loggers(Plugin):
    """The configured loggers (``log.loggers``: TensorBoard, CSV, W&B, MLflow), fed every epoch's record and the
    summary; their resume state (external run ids) is saved in checkpoints."""

    name = "_loggers"
    priority = 1200  # after the summary exists

    def __init__(self, kinds) -> None:
        self.kinds = list(kinds)
        self.states: Dict[str, Dict[str, Any]] = {k: {} for k in self.kinds}
        self.active: list = []

    def on_fit_start(self, trainer: "Trainer") -> None:
        from .loggers import hyperparameters, make

        if trainer.out is None or not trainer.is_main:
            return
        hp = hyperparameters(trainer.cfg)
        self.active = [make(k, trainer.out, self.states.setdefault(k, {})) for k in self.kinds]
        for logger in self.active:
            logger.start(hp, trainer.history)

    def on_record(self, trainer: "Trainer", record: Record) -> None:
        if "stage" in record:
            return
        for logger in self.active:
            logger.epoch(record, trainer.global_step - int(record["train"].get("steps", 0)))

    def on_fit_end(self, trainer: "Trainer") -> None:
        for logger in self.active:
            logger.finish(trainer.summary)
        self.active = []

    def state_dict(self) -> Dict[str, Any]:
        return {"states": self.states}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.states = {k: dict(v) for k, v in state["states"].items()}


class LastCheckpoint(Plugin):
    """``last.pt`` after every ``train.checkpoint_every`` epochs, the last epoch and every stage epoch."""

    name = "_checkpoint"
    priority = 1010

    def on_record(self, trainer: "Trainer", record: Record) -> None:
        if trainer.out is None or not trainer.is_main:
            return
        every = trainer.cfg.train.checkpoint_every
        if "stage" in record or trainer.epoch % every == 0 or trainer.epoch == trainer.cfg.train.epochs:
            atomic_torch_save(trainer.state_dict(), trainer.out / "last.pt")


class EpochCallback(Plugin):
    """Calls a user function with every main epoch's final record (``Trainer(on_epoch=...)``)."""

    name = "_on_epoch"
    priority = 1005

    def __init__(self, fn: Callable[[Record], None]) -> None:
        self.fn = fn

    def on_record(self, trainer: "Trainer", record: Record) -> None:
        if "stage" not in record:
            self.fn(record)


class Progress(Plugin):
    """A progress bar over the epochs (``train.progress``), with validation accuracies."""

    name = "_progress"
    priority = 1020

    def __init__(self) -> None:
        self._bar: Optional[tqdm] = None  # over the epochs
        self._steps: Optional[tqdm] = None  # inside the current epoch

    def on_fit_start(self, trainer: "Trainer") -> None:
        from tqdm.auto import tqdm

        cfg = trainer.cfg
        self._bar = tqdm(total=cfg.train.epochs, initial=trainer.epoch, unit="epoch", dynamic_ncols=True, leave=True,
                         desc=f"{cfg.method} seed {cfg.train.seed}")

    def after_step(self, trainer: "Trainer", batch, out) -> None:
        # a bar inside the epoch, shown only once an epoch has lasted 2 s (long epochs: paper datasets)
        if self._steps is None:
            from tqdm.auto import tqdm

            total = len(trainer.sampler) if trainer.sampler is not None else None
            self._steps = tqdm(total=total, unit="step", dynamic_ncols=True, leave=False, delay=2.0,
                               desc=f"epoch {trainer.epoch}")
        self._steps.update(1)

    def on_record(self, trainer: "Trainer", record: Record) -> None:
        if self._steps is not None:
            self._steps.close()
            self._steps = None
        if self._bar is None or "stage" in record:
            return
        self._bar.update(1)
        self._bar.set_postfix(val=f"{record['val']['acc']:.3f}",
                              **{m: f"{a:.2f}" for m, a in record["val"]["modality_acc"].items()})

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class Summary(Plugin):
    """At the end: the selected checkpoint's val/test metrics, the encoder probes and ``summary.json``."""

    name = "_summary"
    priority = 1100

    def on_fit_end(self, trainer: "Trainer") -> None:
        if not trainer.is_main:  # rank 0 evaluates the best checkpoint and writes the summary
            trainer.summary = {}
            return
        ckpt = trainer.selection.best_checkpoint(trainer)
        if ckpt is not None:
            trainer.load_weights(ckpt)
        val, test = trainer.evaluate("val"), trainer.evaluate("test")
        cfg = trainer.cfg
        summary = {
            "method": cfg.method,
            "dataset": cfg.data.name + (f"/{cfg.data.preset}" if cfg.data.preset else ""),
            "modalities": trainer.active_modalities,
            "seed": cfg.train.seed,
            "epochs": trainer.epoch,
            "best_epoch": trainer.selection.best["epoch"],
            "select_on": cfg.eval.select_on,
            "select_metric": cfg.eval.select_metric,
            "stopped_early_at": getattr(trainer.plugin("_early_stopping"), "stopped_at", None),
            "val": public_metrics(val),
            "test": public_metrics(test),
            "probe": probe(trainer) if cfg.eval.probe else {},
            # how the per-modality heads behind modality_acc were trained
            "heads": ("trained" if trainer.unimodal_loss_weight > 0 else
                      "monitor" if cfg.train.monitor_heads else "untrained"),
            "wall_time_s": round(trainer.wall_time, 3),
            "device": str(trainer.device),
            "num_parameters": sum(p.numel() for p in trainer.model.parameters()),
            "versions": _versions(),
        }
        if trainer.out is not None:
            atomic_write_json(trainer.out / "summary.json", summary)
        trainer.summary = summary


def probe(trainer: "Trainer") -> Dict[str, Dict[str, float]]:
    """Linear-probe test accuracy of each frozen encoder, next to the same probe on its untrained init."""
    from ..diagnostics.probe import linear_probe_accuracy

    tr_f, tr_y = trainer.extract_features("train")
    te_f, te_y = trainer.extract_features("test")
    trained_state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.model.load_state_dict(trainer.initial_state, strict=False)
    tr0, _ = trainer.extract_features("train")
    te0, _ = trainer.extract_features("test")
    trainer.model.load_state_dict(trained_state)
    seed = trainer.cfg.train.seed
    return {m: {"trained": linear_probe_accuracy(tr_f[m], tr_y, te_f[m], te_y, seed),
                "floor": linear_probe_accuracy(tr0[m], tr_y, te0[m], te_y, seed)} for m in tr_f}


def _versions() -> Dict[str, str]:
    import platform

    return {"python": platform.python_version(), "torch": torch.__version__}
