"""Stages that run before the main epochs (a teacher to pre-train, a warm-up), declared by plug-ins."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Dict, List, Optional

from torch import Tensor

if TYPE_CHECKING:
    from ..data.batch import Batch
    from .trainer import Trainer


@dataclass
class Stage:
    """``epochs`` epochs over the training split (shuffled, ``train.batch_size``) in which every step is
    ``step(trainer, batch) -> losses`` (the stage's own update, e.g. of a teacher the plug-in owns).

    Stage epochs come before the main epochs, are checkpointed after each epoch (``last.pt``) and resume
    where they stopped; their records go to ``stages.jsonl``. ``modalities`` restricts what is loaded."""

    name: str
    epochs: int
    step: Callable[["Trainer", "Batch"], Dict[str, Tensor]]
    modalities: Optional[List[str]] = None
