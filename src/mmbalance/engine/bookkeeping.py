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
    from .trainer import Trainer


def _cpu_state(model: torch.nn.Module) -> Dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


class Selection(Plugin):
    """Keeps the checkpoint with the best accuracy on ``eval.select_on`` (``best.pt``, or in memory
    without a run folder). Runs at ``after_evaluate``, before any method changes weights at epoch end."""

    name = "_selection"
    priority = 1000

    def __init__(self) -> None:
        self.best: Dict[str, Any] = {"epoch": -1, "score": -math.inf}
        self.best_state: Optional[Dict[str, torch.Tensor]] = None
        self.best_plugins: Dict[str, Any] = {}  # growth states of the in-memory best (as best.pt keeps them)

    def after_evaluate(self, trainer: "Trainer", epoch: int, record: Record) -> None:
        split = trainer.cfg.eval.select_on
        if split not in ("val", "test"):
            raise ValueError(f"eval.select_on must be val or test, got {split!r}")
        score = record[split]["acc"]
        if score > self.best["score"]:
            self.best = {"epoch": epoch, "score": score}
            state = _cpu_state(trainer.model)
            if trainer.out is None:
                self.best_state, self.best_plugins = state, growth_states(trainer)
            elif trainer.is_main:
                atomic_torch_save({"model": state, "epoch": epoch, "score": score, "select_on": split,
                                   "plugins": growth_states(trainer)}, trainer.out / "best.pt")

    def best_checkpoint(self, trainer: "Trainer") -> Optional[Dict[str, Any]]:
        """The selected weights (``{"model": ..., "plugins": ...}``), or None if no epoch ran."""
        if self.best["epoch"] < 0:
            return None
        if self.best_state is not None:
            return {"model": self.best_state, "plugins": self.best_plugins}
        if trainer.out is not None:
            return load_checkpoint(trainer.out / "best.pt")
        return None

    def state_dict(self) -> Dict[str, Any]:
        return {"best": dict(self.best), "best_state": self.best_state, "best_plugins": self.best_plugins}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.best, self.best_state = dict(state["best"]), state.get("best_state")
        self.best_plugins = state.get("best_plugins") or {}


class MetricsWriter(Plugin):
    """``metrics.jsonl`` (one JSON object per epoch; stage epochs in ``stages.jsonl``) and TensorBoard."""

    name = "_metrics"
    priority = 1000

    def __init__(self) -> None:
        self._tb = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        if trainer.out is None or not trainer.is_main or not trainer.cfg.log.jsonl:
            return
        # a resumed run continues exactly from its checkpoint: drop lines written after it
        atomic_write_text(trainer.out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in trainer.history))
        if trainer.stage_history:
            atomic_write_text(trainer.out / "stages.jsonl",
                              "".join(json.dumps(r) + "\n" for r in trainer.stage_history))

    def on_record(self, trainer: "Trainer", record: Record) -> None:
        if trainer.out is None or not trainer.is_main:
            return
        if trainer.cfg.log.jsonl:
            name = "stages.jsonl" if "stage" in record else "metrics.jsonl"
            with open(trainer.out / name, "a") as f:
                f.write(json.dumps(record) + "\n")
        if trainer.cfg.log.tensorboard and "stage" not in record:
            if self._tb is None:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(trainer.out / "tb"))
            for k, v in _flatten(record).items():
                if isinstance(v, (int, float)) and k != "epoch":
                    self._tb.add_scalar(k, v, record["epoch"])
            self._tb.flush()

    def on_fit_end(self, trainer: "Trainer") -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


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
        self._bar = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        from tqdm.auto import tqdm

        cfg = trainer.cfg
        self._bar = tqdm(total=cfg.train.epochs, initial=trainer.epoch, unit="epoch", dynamic_ncols=True, leave=True,
                         desc=f"{cfg.method} seed {cfg.train.seed}")

    def on_record(self, trainer: "Trainer", record: Record) -> None:
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


def _flatten(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v
    return out
