"""MMCosine -- Multi-Modal Cosine loss (Xu, Feng, Zhang, Hu; ICASSP 2023).

The fused head is made modality-wise *cosine*: each modality's feature and each class's weight slice of
the fused head are L2-normalised, and the fused logits are the scaled sum of the per-modality cosines,
``z_c = s * sum_m cos(f_m, W_{m,c})`` (no bias). Because every modality's share is bounded by ``s``, the
dominant modality can no longer win by growing its feature norm or its weights, which is the imbalance
mechanism the paper targets.

Tags: [CODE] the official release (GeWu-Lab/MMCosine_ICASSP23 ``main_CD.py``), [BB] BalanceBenchmark's
``MMCosine_trainer.py``, [PAPER], [RECON] our choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Optional, Union, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.options import option
from ..engine.plugin import Plugin
from ..functional.common import tensor_sum
from ..models.fusion import ConcatFusion, SumFusion
from ..registry import METHODS

if TYPE_CHECKING:
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput, MultimodalNet


# =============================================================================== the math
def cosine_logits(features: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """``s * cos(f_i, w_c)`` for every row i and class c: ``features`` ``[n, d]``, ``weight`` ``[C, d]``
    (each class row normalised over the feature dimension, as the release normalises ``W^T`` along dim 0)."""
    return scale * (F.normalize(features.float(), dim=1) @ F.normalize(weight.float(), dim=1).t())


class CosineFusion(nn.Module):
    """A concat or sum fusion head used modality-wise cosine: ``fused = sum_m s * cos(f_m, W_m)``.

    ``linear`` is the original head (its weights are the ones trained; its bias is unused, as in the
    release); :meth:`modality_logits` gives each modality's share ``s * cos(f_m, W_m)`` (the shares sum to
    the fused logits, so share-based methods such as OGM-GE stack); :meth:`linear_logits` is the plain
    linear head on the same features (what the release evaluates)."""

    def __init__(self, linear: Union[ConcatFusion, SumFusion], scale: float):
        super().__init__()
        if not isinstance(linear, (ConcatFusion, SumFusion)):
            raise TypeError(type(linear).__name__)
        self.linear: Union[ConcatFusion, SumFusion] = linear
        self.modalities = list(linear.modalities)
        self.scale = float(scale)

    def class_weights(self, modality: str) -> torch.Tensor:
        """``W_m`` (``[C, d_m]``): modality m's slice of the concat weight, or its own layer of a sum head."""
        linear = self.linear
        if isinstance(linear, ConcatFusion):
            return linear.fc.weight[:, linear.weight_slice(modality)]
        layer = cast(nn.Linear, linear.fcs[modality])
        return layer.weight

    def modality_logits(self, feats: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {m: cosine_logits(feats[m], self.class_weights(m), self.scale) for m in self.modalities}

    def forward(self, feats: Dict[str, torch.Tensor]) -> torch.Tensor:
        return tensor_sum(self.modality_logits(feats).values())

    def linear_logits(self, feats: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.linear(feats)


# =============================================================================== the plug-in
@METHODS.register("mmcosine")
class MMCosine(Plugin):
    """MMCosine: the fused head becomes ``s * sum_m cos(f_m, W_m)``; trained with the fused cross-entropy.

    The change is made once, in ``configure_model`` (the concat/sum head is wrapped by :class:`CosineFusion`),
    so every forward -- training, evaluation, other plug-ins' passes -- uses the cosine head, and each
    modality's share of it (``share_acc``, OGM-GE's scores) is its scaled cosine. Any number of modalities
    >= 2. Logged: ``mmcosine/<m>/true_cos`` (epoch mean of the true-class cosine of each modality: the
    release's ``logit_a``/``logit_v`` TensorBoard curves divided by ``s``).
    """

    @dataclass
    class Options:
        scale: float = option(10.0, "scaling s of the cosine logits (the release's --scaling default and README "
                              "command; BalanceBenchmark and the spec use 15)", "[CODE]", gt=0)
        eval_logits: str = option("cosine", "evaluation logits: cosine (the trained cosine head) [PAPER, BB]; linear "
                              "(the plain linear head with its untrained bias on the same features, what the "
                              "release's valid() evaluates) [CODE]", "[PAPER, BB]", choices=("cosine", "linear"))

    #: after every other configure_model, so that a method removing the fusion head (MLA) is caught
    priority = 90

    def configure_model(self, trainer: "Trainer", model: "MultimodalNet") -> None:
        fusion = model.fusion
        if not isinstance(fusion, (ConcatFusion, SumFusion)):
            got = ("no fusion head (a stacked method removed it)" if fusion is None else
                   f"{type(fusion).__name__} (model.fusion={trainer.cfg.model.fusion!r}, or a stacked method "
                   f"changed it)")
            raise ValueError(f"mmcosine normalises the class weights of a linear fusion head per modality, so it "
                             f"needs model.fusion=concat or sum; got {got}")
        model.fusion = CosineFusion(fusion, self.scale)

    def after_forward(self, trainer: "Trainer", batch, out: "ModelOutput") -> None:
        if out.fused is None or out.n_pair == 0:
            return
        fusion = cast(CosineFusion, trainer.model.fusion)  # set in configure_model
        y = batch.paired_labels()
        with torch.no_grad():
            shares = fusion.modality_logits({m: f.detach() for m, f in out.paired_features().items()})
            for m, z in shares.items():
                self.log_mean(f"{m}/true_cos", z.gather(1, y.view(-1, 1)).mean() / self.scale)

    def predict(self, trainer: "Trainer", out: "ModelOutput") -> Optional[torch.Tensor]:
        if self.eval_logits == "cosine" or out.fused is None:
            return None  # the fused output already is the cosine head
        with trainer.autocast():
            return cast(CosineFusion, trainer.model.fusion).linear_logits(out.paired_features())

    def provides(self):
        # the predict hook answers only when the release's linear evaluation is asked for
        return super().provides() - ({"predict"} if self.eval_logits == "cosine" else set())


__all__ = ["CosineFusion", "MMCosine", "cosine_logits"]
