"""Stages that run before the main epochs (a teacher to pre-train, a warm-up), declared by plug-ins."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional

from torch import Tensor

if TYPE_CHECKING:
    from ..data.batch import Batch
    from .trainer import Trainer


@dataclass
class Stage:
    """``epochs`` epochs over the training split (shuffled, ``train.batch_size``) in which every step is
    ``step(trainer, batch) -> losses`` (the stage's own update, e.g. of a teacher the plug-in owns).

    Stage epochs come before the main epochs, are checkpointed after each epoch (``last.pt``) and resume
    where they stopped; their records go to ``stages.jsonl``. ``modalities`` restricts what is loaded.
    ``epoch_end(trainer, epoch)``, if given, runs after each stage epoch and before its record is written and
    checkpointed (evaluate what the stage trains, keep the best state; what it logs goes into that record)."""

    name: str
    epochs: int
    step: Callable[["Trainer", "Batch"], Dict[str, Tensor]]
    modalities: Optional[List[str]] = None
    epoch_end: Optional[Callable[["Trainer", int], None]] = None


def run_stage(trainer: "Trainer", stage: Stage) -> None:
    """The stage's remaining epochs (a resumed run continues where it stopped), each recorded and checkpointed
    through ``on_record`` (the record carries ``stage``)."""
    import time

    from .samplers import RandomOrder

    done = trainer.stage_epochs.get(stage.name, 0)
    for e in range(done, stage.epochs):
        order = RandomOrder(len(trainer.splits.train),
                            trainer.cfg.train.seed * 7919 + 104729 + len(trainer.stage_history))
        record: Dict[str, Any] = {"stage": stage.name, "epoch": e}
        record["train"] = trainer.run_epoch(e, lambda b: {k: v.detach() for k, v in stage.step(trainer, b).items()},
                                            order, trainer.default_batcher, stage.modalities)
        if stage.epoch_end is not None:
            stage.epoch_end(trainer, e)
        record["plugins"], _ = trainer.epoch_log.flush()
        trainer.stage_epochs[stage.name] = e + 1
        trainer.stage_history.append(record)
        trainer.wall_time = time.time() - trainer._t0
        trainer.call("on_record", record)
