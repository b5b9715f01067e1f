"""CML -- Calibrating Multimodal Learning (Ma, Zhang, Wu, Fu, Hu, Liu; ICML 2023).

A well-calibrated multimodal classifier should not become *more* confident when a modality is taken
away. CML adds a regulariser that penalises exactly that: the fused head is evaluated again with one
modality removed (its features zeroed), and the rise of the prediction confidence (max softmax
probability) from the fuller to the reduced input is penalised; the reduced predictions are also trained
with cross-entropy. With M modalities, M - 1 modalities are removed one after another (a chain: each
reduced output is compared with the previous one), in an order shuffled once per epoch.

Tags: [BB] BalanceBenchmark's ``CML_trainer.py`` (the only implementation read: the paper's release is
not among the references here), [PAPER] the paper as BalanceBenchmark and the spec summarise it, [RECON] ours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Dict, List, Optional

import torch
import torch.nn.functional as F

from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..engine.samplers import epoch_generator
from ..registry import METHODS
from .common import check_window, encoder_modalities, in_window

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput

HINGES = ("batch", "sample")


# =============================================================================== the math
def confidence(logits: torch.Tensor) -> torch.Tensor:
    """The prediction confidence ``max_c softmax(z_i)_c`` of every row (float32)."""
    return F.softmax(logits.float(), dim=1).max(dim=1).values


def confidence_penalty(full: torch.Tensor, reduced: torch.Tensor, hinge: str = "batch") -> torch.Tensor:
    """How much removing a modality *raised* the confidence.

    ``batch`` [BB ``conf_loss``]: ``max(0, sum_i (conf_reduced_i - conf_full_i))`` -- one hinge on the batch
    sum, so samples whose confidence fell offset those whose rose; ``sample``: ``sum_i max(0, conf_reduced_i -
    conf_full_i)`` -- every rise is penalised [PAPER's per-sample constraint; RECON]. Both keep the graph of
    both confidences (BB)."""
    diff = confidence(reduced) - confidence(full)
    if hinge == "batch":
        return F.relu(diff.sum())
    if hinge == "sample":
        return F.relu(diff).sum()
    raise ValueError(f"hinge must be one of {HINGES}, got {hinge!r}")


def removal_order(modalities: List[str], seed: int, epoch: int) -> List[str]:
    """The epoch's removal order: a seeded shuffle of the modalities (BB shuffles once per epoch); CML
    removes from the end of the list first."""
    perm = torch.randperm(len(modalities), generator=epoch_generator(seed, epoch, salt=3023))
    return [modalities[i] for i in perm.tolist()]


def zeroed(features: Dict[str, torch.Tensor], removed: Collection[str]) -> Dict[str, torch.Tensor]:
    """The features with the ``removed`` modalities zeroed (for a concat head exactly BB's ``out - share_m +
    b/M``: the removed modality's feature contribution leaves, the whole bias stays)."""
    return {m: torch.zeros_like(f) if m in removed else f for m, f in features.items()}


# =============================================================================== the plug-in
@METHODS.register("cml")
class CML(Plugin):
    """CML: cross-entropy on the fused output and on outputs with modalities removed, plus a penalty on any
    confidence gained by removing a modality.

    Per step inside the window, on the paired rows, with ``z_0`` the fused logits and ``z_k`` the fused head
    on the features with the last k modalities of the epoch's order zeroed (k = 1..M-1)::

        loss = (CE(z_0) + sum_k CE(z_k)) / M  +  lam * sum_k penalty(z_{k-1}, z_k)

    (``fused`` becomes ``CE(z_0)/M``; ``cml_removed`` and ``cml_conf`` are the other two terms). Outside the
    window: the fused cross-entropy only. Works with any fusion head (a removed modality is a zero feature);
    any number of modalities >= 2. Logged: ``cml/conf_gain`` (epoch mean of the batch-mean confidence rise,
    positive = removing a modality made the model more confident), ``cml/penalty``.
    """

    @dataclass
    class Options:
        lam: float = option(0.1, "weight of the confidence penalty", "[BB]", ge=0)
        hinge: str = option("batch", "batch: one hinge on the batch's summed confidence rise [BB]; sample: a hinge "
                            "per sample, the paper's per-sample constraint [RECON]", "[BB]", choices=HINGES)
        modulation_starts: int = option(0, "first epoch (0-based) with CML", "[BB]", ge=0)
        modulation_ends: Optional[int] = option(None, "last epoch with CML, inclusive; null = all epochs "
                                                "(BalanceBenchmark: 80)", "[BB]", ge=0)

    needs_default_step = True  # changes the default step's loss

    def validate(self) -> None:
        check_window(self)

    def on_fit_start(self, trainer: "Trainer") -> None:
        self._mods = encoder_modalities(trainer, self)
        if trainer.model.fusion is None:
            raise ValueError("cml re-evaluates the fusion head with modalities removed, but the model has no fusion "
                             "head (a method removed it)")

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        self._order = removal_order(self._mods, trainer.cfg.train.seed, epoch)

    def compute_loss(self, trainer: "Trainer", batch: "Batch", out: "ModelOutput", losses: Losses) -> None:
        if out.fused is None or out.n_pair == 0 or "fused" not in losses:
            return
        if not in_window(trainer.epoch, self.modulation_starts, self.modulation_ends):
            return
        y, feats = batch.paired_labels(), out.paired_features()
        fusion = trainer.model.fusion
        assert fusion is not None  # checked in on_fit_start
        m_count = len(self._mods)
        previous, removed = out.fused, set()
        ce_removed: List[torch.Tensor] = []
        penalty: List[torch.Tensor] = []
        gain: List[torch.Tensor] = []
        for m in reversed(self._order[1:]):  # pop from the end of the order, M - 1 times
            removed.add(m)
            with trainer.autocast():
                reduced = fusion(zeroed(feats, removed))
            ce_removed.append(trainer.cross_entropy(reduced, y, batch.global_count()))
            penalty.append(confidence_penalty(previous, reduced, self.hinge))
            gain.append((confidence(reduced) - confidence(previous)).detach().mean())
            previous = reduced
        total_penalty = torch.stack(penalty).sum()
        losses["fused"] = losses["fused"] / m_count
        losses["cml_removed"] = trainer.fused_loss_weight * torch.stack(ce_removed).sum() / m_count
        losses["cml_conf"] = self.lam * total_penalty
        self.log_mean("conf_gain", torch.stack(gain).mean())
        self.log_mean("penalty", total_penalty.detach())


__all__ = ["CML", "confidence", "confidence_penalty", "removal_order", "zeroed"]
