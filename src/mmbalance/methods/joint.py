"""Reference methods: plain joint training, joint training with unimodal losses, and one modality alone."""
from __future__ import annotations

import torch

from dataclasses import dataclass
from typing import List, Optional, TYPE_CHECKING

from ..engine.compat import IncompatiblePluginsError
from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..registry import METHODS

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput, MultimodalNet


@METHODS.register("joint")
class Joint(Plugin):
    """Joint training: cross-entropy on the fused logits only (the "Concat" baseline of the papers)."""


@METHODS.register("joint-aux")
class JointAux(Plugin):
    """Joint training plus one cross-entropy per modality head (fused + sum of unimodal CE)."""

    wants_unimodal_loss = True


@METHODS.register("unimodal")
class Unimodal(Plugin):
    """Train one modality alone (its encoder and head); the unimodal rows of results tables."""

    @dataclass
    class Options:
        modality: Optional[str] = option(None, "which modality to train (None: the dataset's first)", "[RECON]")

    modality: str  # null resolved in configure_model

    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        m = self.modality or trainer.modalities[0]
        if m not in trainer.modalities:
            raise ValueError(f"unimodal: no modality {m!r}; the dataset has {trainer.modalities}")
        self.modality = m
        trainer.active_modalities = [m]

    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        import torch.nn.functional as F

        losses.clear()
        z = out.logits[self.modality]
        losses[f"uni_{self.modality}"] = F.cross_entropy(z.float(), batch.labels(self.modality))

    def predict(self, trainer: Trainer, out: ModelOutput) -> Optional[torch.Tensor]:
        return out.logits[self.modality]

    def check_compatible(self, plugins: List[Plugin]) -> None:
        methods = [p for p in plugins if p.name in METHODS]  # other methods; a user's observer is fine
        if methods:
            raise IncompatiblePluginsError(f"'unimodal' trains one modality alone and cannot be stacked "
                                           f"with {methods[0].name!r}")
