"""UME — Uni-Modal Ensemble (Du, Teng, Li, Liu, Yuan, Wang, Yuan, Zhao, *On Uni-Modal Feature Learning in
Supervised Multi-Modal Learning*, ICML 2023).

One unimodal model per modality (encoder m + its own linear head), each trained on its own cross-entropy
only, with no fusion head and no cross-modal term; at test time their outputs are averaged. No official
code was found; BalanceBenchmark has no UME trainer, but trains the same unimodal models for UMT's
teachers (``unimodal_trainer.py``: one encoder + a linear head on CE, separate runs).

Here the M unimodal models train in one run, side by side: the loss is ``Σ_m CE(head_m(enc_m(x_m)), y)``
and no parameter is shared, so with a per-parameter optimiser (SGD, Adam) each model's updates are
exactly those of training it alone on the same batches (``optim.grad_clip`` would couple them: it clips
the global norm). Deviations (see ``docs/methods/ume.md``): the models see the same sample order, and one
checkpoint is selected on the ensemble's validation accuracy instead of one per unimodal model.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, List, Optional

import torch

from ..engine.options import option
from ..engine.plugin import Plugin
from ..functional.common import ENSEMBLE_SPACES, ensemble_logits
from ..registry import METHODS

if TYPE_CHECKING:
    from ..engine.trainer import Trainer
    from ..models import ModelOutput, MultimodalNet


def resolve_weights(weights: Optional[Dict[str, float]], modalities: List[str], method: str) -> Optional[List[float]]:
    """Ensemble weights in ``modalities`` order (None = uniform); every modality needs a weight."""
    if weights is None:
        return None
    missing = [m for m in modalities if m not in weights]
    unknown = [m for m in weights if m not in modalities]
    if missing or unknown:
        raise ValueError(f"{method}: method_args.{method}.weights needs one weight per modality {modalities}; "
                         + (f"{missing[0]!r} has none" if missing else f"{unknown[0]!r} is not a modality"))
    return [weights[m] for m in modalities]


@METHODS.register("ume")
class UME(Plugin):
    """UME: unimodal models trained independently, averaged at test time (uni-modal ensemble).

    Each modality has its own encoder + head and its own CE; there is no fusion head; the test-time
    prediction averages their outputs. Logged: nothing beyond the per-modality accuracies the loop reports."""

    @dataclass
    class Options:
        combine: str = option("logits", "how the unimodal outputs are averaged: logits (mean of logits) or probs "
                              "(log of the mean softmax); the paper averages the unimodal models' outputs, the exact "
                              "space could not be checked against a release", "[RECON]", choices=ENSEMBLE_SPACES)
        weights: Optional[Dict[str, float]] = option(None, "ensemble weight per modality (normalised); null = "
                                                     "uniform", "[RECON]", ge=0)

    wants_unimodal_loss = True  # the only loss: one CE per unimodal model

    def configure_model(self, trainer: "Trainer", model: "MultimodalNet") -> None:
        mods = [m for m in trainer.active_modalities if m in model.encoders]
        if len(mods) < 2:
            raise ValueError(f"ume ensembles at least two unimodal models, got modalities {mods}")
        self._mods = mods
        self._weights = resolve_weights(self.weights, mods, self.name)
        model.fusion = None  # no fusion head: nothing couples the unimodal models

    def on_fit_start(self, trainer: "Trainer") -> None:
        if trainer.unimodal_loss_weight <= 0:
            raise ValueError("ume trains each unimodal model on its own cross-entropy, but "
                             f"train.unimodal_loss_weight is {trainer.unimodal_loss_weight}; leave it unset (or > 0)")

    def predict(self, trainer: "Trainer", out: "ModelOutput") -> Optional[torch.Tensor]:
        mods = [m for m in self._mods if m in out.logits]
        if not mods:
            return None
        weights = None if self._weights is None else [self._weights[self._mods.index(m)] for m in mods]
        return ensemble_logits([out.logits[m] for m in mods], weights, self.combine)


__all__ = ["UME", "resolve_weights"]
