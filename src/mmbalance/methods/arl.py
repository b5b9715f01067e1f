"""ARL -- Asymmetric Representation Learning (Wei, Luo, Luo; ICCV 2025, "Improving Multimodal Learning via
Imbalanced Learning").

Claim (bias-variance analysis): balanced learning is not optimal; the fused prediction is best when each
modality's dependence is inversely proportional to the variance of its unimodal prediction. ARL (i) adds a
unimodal loss per modality computed with the *shared head* (the fusion head read as a classifier of one
modality, :mod:`.shared_head`) -- it trains encoders *and* the head, and its weight ``gamma`` after a warm-up
targets the prediction bias; (ii) re-weights each encoder's optimisation with a gradient-scale op placed
right after the encoder (identity forward, gradient times ``1 + w_m``).

The weights, per step, from the current batch's unimodal logits ``z_m`` of the shared head (no gradient)
[CODE ``main_arl_variance.py`` "Modality analysis"]:

* magnitude ``c_m = sum_k mean_i |z_m[i, k]|``, normalised ``c_m / sum_j c_j``;
* entropy ``H_m = mean_i H(softmax(z_m[i]))`` (the prediction-variance proxy), normalised ``H_m / sum_j H_j``
  and floored at ``entropy_floor``; ``u_m = (1 / H_m) / sum_j (1 / H_j)``;
* ``s_m = u_m * mean_{k != m} c_k`` and ``w = softmax(T * s)``; for two modalities ``s_a = u_a c_v`` exactly.

A confident (low-entropy) modality facing a large-logit partner gets the larger gradient scale. The weights
computed at step t scale the gradients of step t+1 (the op is built in the forward, before the step's own
logits exist -- how the release threads them through ``args``). Before ``start`` epochs have passed the op is
off and the unimodal losses have weight 1.

Spec: ``shared/spec/anchors_2026.md`` section 1a. Tags: [CODE] the official release
(shicaiwei123/ICCV2025-ARL ``main_arl_variance.py``, ``models/backbone.py`` ``GradScale``,
``models/fusion_modules.py``, ``cramed_arl.sh``), [RECON] ours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List

import torch
import torch.nn.functional as F

from ..engine.options import option
from ..engine.plugin import Losses, Plugin, Record, device_state
from ..functional.common import scale_grad
from ..registry import METHODS
from .common import encoder_modalities
from .shared_head import HEAD_FORMS, install_shared_heads, refuse_head_owners

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import FeatureRoutes, ModelOutput, MultimodalNet

WEIGHT_SOURCES = ("computed", "released")


# =============================================================================== the math
def logit_magnitude(logits: torch.Tensor) -> torch.Tensor:
    """``sum_k mean_i |z[i, k]|`` [CODE ``torch.mean(torch.abs(out), 0).sum()``]."""
    return logits.float().abs().mean(0).sum()


def mean_entropy(logits: torch.Tensor, eps: float = 1e-16) -> torch.Tensor:
    """Batch mean of the prediction entropy, ``-sum_k p log(p + eps)`` [CODE]."""
    p = F.softmax(logits.float(), dim=1)
    return -(p * torch.log(p + eps)).sum(1).mean()


def arl_statistics(logits: List[torch.Tensor]) -> torch.Tensor:
    """``[2, M]``: each modality's logit magnitude and mean prediction entropy (batch means, so that a mean
    over DDP ranks gives the global batch's values)."""
    return torch.stack([torch.stack([logit_magnitude(z) for z in logits]),
                        torch.stack([mean_entropy(z) for z in logits])])


def arl_weights_from(stats: torch.Tensor, temperature: float, entropy_floor: float) -> torch.Tensor:
    """The gradient-scale weights ``w`` (``[M]``, summing to 1) from :func:`arl_statistics`.

    ``entropy_floor`` bounds the normalised entropy shares from below; the release's 0.3 is for two
    modalities, so it is applied as ``entropy_floor * 2 / M`` (the same fraction of an even share) [RECON]."""
    mag, ent = stats[0], stats[1]
    m = mag.shape[0]
    mag = mag / mag.sum().clamp_min(1e-12)
    ent = (ent / ent.sum().clamp_min(1e-12)).clamp_min(entropy_floor * 2.0 / m)
    inv = 1.0 / ent
    inv = inv / inv.sum()
    others = (mag.sum() - mag) / (m - 1)
    return F.softmax(temperature * inv * others, dim=0)


def arl_weights(logits: List[torch.Tensor], temperature: float, entropy_floor: float) -> torch.Tensor:
    """The weights from each modality's unimodal logits (one process)."""
    return arl_weights_from(arl_statistics(logits), temperature, entropy_floor)


# =============================================================================== the plug-in
@METHODS.register("arl")
class ARL(Plugin):
    """ARL: shared-head unimodal losses (weight ``gamma`` after warm-up) and a per-encoder gradient scale
    ``1 + w_m`` from the unimodal predictions' entropy and logit magnitude.

    Logged: ``arl/<m>/weight`` (epoch mean and per step) and ``arl/active`` (1 once the warm-up is over).
    """

    @dataclass
    class Options:
        gamma: float = option(4.0, "weight of the unimodal losses after the warm-up (1 during it); the release "
                              "runs 4 (CREMA-D), 3 (KS), 5 (AVE), 1 (VGGSound)", "[CODE cramed_arl.sh]", ge=0)
        temperature: float = option(8.0, "T of softmax(T * s) giving the weights; 8 (CREMA-D), 4 (KS, AVE)",
                                    "[CODE cramed_arl.sh]", gt=0)
        start: int = option(5, "warm-up: the gradient scale and gamma act from epoch start+1 on (the release "
                            "tests current_epoch > start)", "[CODE --start]", ge=0)
        entropy_floor: float = option(0.3, "lower bound of the normalised entropy shares (two modalities; scaled "
                                      "by 2/M for M modalities)", "[CODE]", gt=0, lt=1)
        weights: str = option("computed", "computed: the gradient scale 1 + w_m uses the weights computed from the "
                              "previous step [the paper's mechanism]; released: the released script never "
                              "assigns the computed weights, so every encoder gets 1 + 0.5 after the warm-up "
                              "(the weights are still computed and logged)", "[PAPER]", choices=WEIGHT_SOURCES)
        head: str = option("zero_others", "how the fusion head scores one modality: zero_others (any fusion; the "
                           "release's concat) or share (concat/sum; the release's sum fusion)", "[CODE]",
                           choices=HEAD_FORMS)

    wants_unimodal_loss = True
    owns_heads = True  # model.heads become views of the fusion head
    needs_default_step = True  # scales encoder outputs and reweights the unimodal terms of the default step

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.weights_now: torch.Tensor = torch.empty(0)  # [M] weights for the next step's gradient scale

    def check_compatible(self, plugins: List[Plugin]) -> None:
        refuse_head_owners(self, plugins)

    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        install_shared_heads(model, self.name, self.head, frozen=False)

    def on_fit_start(self, trainer: Trainer) -> None:
        self._mods = encoder_modalities(trainer, self)
        if trainer.unimodal_loss_weight <= 0:
            raise ValueError(f"arl needs its unimodal losses, but train.unimodal_loss_weight is "
                             f"{trainer.unimodal_loss_weight}; leave it unset (ARL sets 1) or make it positive")
        if self.weights_now.numel() != len(self._mods):  # the release starts every weight at 0.5
            self.weights_now = torch.full((len(self._mods),), 0.5)
        self.weights_now = self.weights_now.to(trainer.device)

    def active(self, trainer: Trainer) -> bool:
        return trainer.epoch > self.start

    def transform_features(self, trainer: Trainer, batch: Batch, routes: FeatureRoutes) -> None:
        if not self.active(trainer):
            return
        w = self.weights_now if self.weights == "computed" else torch.full_like(self.weights_now, 0.5)
        for i, m in enumerate(self._mods):
            coeff = 1.0 + w[i]  # the release's backward: grad + grad * weight
            if m in routes.heads:
                routes.heads[m] = scale_grad(routes.heads[m], coeff)
            if m in routes.fusion:
                routes.fusion[m] = scale_grad(routes.fusion[m], coeff)

    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        active = self.active(trainer)
        if active:
            for m in self._mods:
                if f"uni_{m}" in losses:
                    losses[f"uni_{m}"] = self.gamma * losses[f"uni_{m}"]
        with torch.no_grad():
            stats = trainer.all_reduce(arl_statistics([out.logits[m].detach() for m in self._mods]), "mean")
            w = arl_weights_from(stats, self.temperature, self.entropy_floor)
        if active:  # during the warm-up the release keeps every weight at 0.5
            self.weights_now = w
        for i, m in enumerate(self._mods):
            self.log_step(f"{m}/weight", w[i])
            self.log_mean(f"{m}/weight", w[i])

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        self.log("active", 1.0 if epoch > self.start else 0.0)

    def state_dict(self) -> Dict[str, Any]:
        return {"weights_now": device_state(self.weights_now)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        w = state.get("weights_now")
        self.weights_now = torch.empty(0) if w is None else w.clone()


__all__ = ["ARL", "arl_statistics", "arl_weights", "arl_weights_from", "logit_magnitude", "mean_entropy"]
