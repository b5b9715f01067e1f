"""DGL -- Disentangled Gradient Learning (Wei, Luo, Luo; ICCV 2025, "Boosting Multimodal Learning via
Disentangled Gradient Learning").

Claim: in joint training the fusion module's Jacobian shrinks the gradient that reaches each encoder, so even
the dominant encoder ends up worse than trained alone. DGL cuts the two paths apart:

* the fused loss trains only the fusion head: the encoder outputs reach the fusion detached;
* each encoder learns from its own unimodal loss, computed with the *shared head* -- the fusion head read as
  a classifier of that modality alone (:mod:`.shared_head`: ``fc_out(cat(x, 0))`` for concat);
* the unimodal losses do not train the fusion head: their gradient stops at the features (the official
  code back-propagates them first and then sets every fusion gradient to ``None`` before the fused
  backward; here the head's parameters are used as constants in the unimodal path, which gives the same
  gradients in one backward).

Loss: ``CE(fusion(sg[h]), y) + alpha * sum_m CE(fusion_m(h_m; sg[theta_fusion]), y)`` (``sg``: stop-gradient).

Spec: ``shared/spec/anchors_2026.md`` section 1a. Tags: [CODE] the official release
(shicaiwei123/ICCV2025-GDL ``main_dgl.py``, ``models/fusion_modules.py``, ``cramed_dgl.sh``), [RECON] ours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List

from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..registry import METHODS
from .common import encoder_modalities
from .shared_head import HEAD_FORMS, install_shared_heads, refuse_head_owners

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import FeatureRoutes, ModelOutput, MultimodalNet


@METHODS.register("dgl")
class DGL(Plugin):
    """DGL: the fused loss trains only the fusion head (features detached); each encoder learns from its
    unimodal loss through the frozen shared head.

    Works with any number of modalities >= 2 and any fusion (``head=zero_others``). The per-modality logits
    of the loop (``uni_<m>`` losses, per-modality accuracies) are the shared head's. Nested DUS batches are
    fine: each unimodal loss uses its modality's own rows, the fused loss the paired rows.
    """

    @dataclass
    class Options:
        alpha: float = option(4.0, "weight of the unimodal losses; the release runs 4 and 5 on CREMA-D, 2 and 3 "
                              "on Kinetics-Sounds", "[CODE cramed_dgl.sh, main_dgl.py default]", gt=0)
        head: str = option("zero_others", "how the fusion head scores one modality: zero_others = the fusion with "
                           "the other modalities' features set to zero (any fusion; the release's concat); share = "
                           "the modality's additive share (concat/sum; the release's sum fusion)", "[CODE]",
                           choices=HEAD_FORMS)
        detach_fused: bool = option(True, "the fused loss does not reach the encoders (false keeps only the "
                                    "unimodal-gradient truncation, an ablation)", "[CODE]")

    wants_unimodal_loss = True
    owns_heads = True  # model.heads become views of the fusion head
    needs_default_step = True  # routes features and reweights the unimodal terms of the default step

    def check_compatible(self, plugins: List[Plugin]) -> None:
        refuse_head_owners(self, plugins)

    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        install_shared_heads(model, self.name, self.head, frozen=True)

    def on_fit_start(self, trainer: Trainer) -> None:
        encoder_modalities(trainer, self)
        if trainer.unimodal_loss_weight <= 0:
            raise ValueError(f"dgl trains the encoders with the unimodal losses only, but train.unimodal_loss_weight "
                             f"is {trainer.unimodal_loss_weight}; leave it unset (DGL sets 1) or make it positive")

    def transform_features(self, trainer: Trainer, batch: Batch, routes: FeatureRoutes) -> None:
        if self.detach_fused:
            for m in routes.fusion:
                routes.fusion[m] = routes.fusion[m].detach()

    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        for m in out.logits:
            key = f"uni_{m}"
            if key in losses:
                losses[key] = self.alpha * losses[key]


__all__ = ["DGL"]
