"""IPRM: instantaneous probe-and-rebalance (Yang, Wu, Jiang, IJCAI 2025).

The fusion is a *geodesic multimodal mixup* (GMM): the unit-normalised features of two modalities are mixed on the
great circle through them, ``f(z̄_a, z̄_v, λ) = sin(λθ)/sin θ · z̄_a + sin((1−λ)θ)/sin θ · z̄_v`` with
``θ = arccos⟨z̄_a, z̄_v⟩`` (paper Eq. 1), and a linear head classifies the mixture. Every training step has two
passes through the fusion [PAPER §4.2, CODE ``main_av.py``]:

1. *probe* (no learning): mix with the running weight ``λ_t`` and measure how far each modality's own prediction
   is from the mixture's, ``KL(p_m || p̄)`` (batch mean); the recalibrated weight of modality a is
   ``ω_a = KL_v / (KL_a + KL_v)`` (Eq. 2-3): the modality closer to the mixture gets the larger weight;
2. *learn*: mix with ``ω`` and train ``CE(mixture head) + Σ_m CE(head_m)``; then ``λ_{t+1} = α λ_t + (1−α) ω_t``
   (Eq. 4; ``λ_1 = 0.5``).

Here the probe runs inside the default step (``transform_features``: after the encoders, before the fusion head),
on the encoder features the training forward already computed — exactly what the official code does — so IPRM
stacks with every default-step method; it re-runs only the per-modality heads and the mixture head(s) under
``no_grad`` (counted as one extra forward per step). For M > 2 modalities every pair of modalities has its own
mixture head and weight, and the fused logits are the mean over pairs [CODE ``main_trimodal.py`` ``tri_cls``].
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Optional, Tuple, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.options import option
from ..engine.plugin import Plugin, Record
from ..functional.common import tensor_sum
from ..registry import METHODS
from .common import encoder_modalities, feature_sizes

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import FeatureRoutes, ModelOutput, MultimodalNet


# =============================================================================== the math (tested by hand)
def geodesic_mixup(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``sin(wθ)/sin θ · x̄ + sin((1−w)θ)/sin θ · ȳ`` row by row (``x̄, ȳ`` unit-normalised, ``θ`` their angle).

    ``weight`` is a scalar (or ``[n]``) in [0, 1]. The cosine is clamped to ``[−1+eps, 1−eps]`` so that ``acos``
    has a finite gradient, and for nearly parallel rows the coefficients fall back to their limit ``w`` and
    ``1−w`` (the code adds 1e-8 to ``sin θ`` instead, which sends identical rows to 0) [RECON]."""
    xn, yn = F.normalize(x.float(), dim=1), F.normalize(y.float(), dim=1)
    cos = (xn * yn).sum(1).clamp(-1.0 + eps, 1.0 - eps)
    theta = torch.acos(cos).unsqueeze(1)
    w = torch.as_tensor(weight, dtype=theta.dtype, device=theta.device).reshape(-1, 1)
    sin = torch.sin(theta)
    small = sin < 1e-4
    a = torch.where(small, w.expand_as(theta), torch.sin(w * theta) / sin.clamp_min(1e-12))
    b = torch.where(small, (1 - w).expand_as(theta), torch.sin((1 - w) * theta) / sin.clamp_min(1e-12))
    return a * xn + b * yn


def prediction_kl(logits: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Batch mean of ``KL(softmax(logits) || softmax(reference))``."""
    p = F.log_softmax(logits.float(), dim=1)
    q = F.log_softmax(reference.float(), dim=1)
    return (p.exp() * (p - q)).sum(1).mean()


def strength_weight(kl_first: torch.Tensor, kl_second: torch.Tensor) -> torch.Tensor:
    """``ω_first = KL_second / (KL_first + KL_second)`` (0.5 when both are 0) [PAPER Eq. 2, CODE]."""
    total = kl_first + kl_second
    return torch.where(total > 0, kl_second / total.clamp_min(1e-12), torch.full_like(total, 0.5))


def ema(previous: torch.Tensor, new: torch.Tensor, alpha: float) -> torch.Tensor:
    """``α · previous + (1 − α) · new`` [PAPER Eq. 4]."""
    return alpha * previous + (1 - alpha) * new


# =============================================================================== the fusion module
class GeodesicMixupFusion(nn.Module):
    """Mixture heads over every pair of modalities. Buffers: ``lam`` (the running weight λ_t of each pair's first
    modality, the probe's), ``omega`` (the recalibrated weight the training forward mixes with) and ``eval_lam``
    (the λ of the last probe: what evaluation mixes with, as the code's ``lam_a_list[-1]``)."""

    lam: torch.Tensor
    omega: torch.Tensor
    eval_lam: torch.Tensor

    def __init__(self, modalities: List[str], dim: int, num_classes: int, shared_head: bool = False):
        super().__init__()
        self.modalities = list(modalities)
        self.pairs: List[Tuple[str, str]] = list(itertools.combinations(self.modalities, 2))
        n_heads = 1 if shared_head else len(self.pairs)
        self.heads = nn.ModuleList([nn.Linear(dim, num_classes) for _ in range(n_heads)])
        for name in ("lam", "omega", "eval_lam"):
            self.register_buffer(name, torch.full((len(self.pairs),), 0.5))

    def head(self, p: int) -> nn.Linear:
        return cast(nn.Linear, self.heads[p if len(self.heads) > 1 else 0])

    def pair_logits(self, feats: Dict[str, torch.Tensor], weights: torch.Tensor) -> List[torch.Tensor]:
        return [self.head(p)(geodesic_mixup(feats[a], feats[b], weights[p]).to(feats[a].dtype))
                for p, (a, b) in enumerate(self.pairs)]

    def forward(self, feats: Dict[str, torch.Tensor]) -> torch.Tensor:
        weights = self.omega if self.training else self.eval_lam
        return torch.stack(self.pair_logits(feats, weights)).mean(0)


# =============================================================================== the plug-in
@METHODS.register("iprm")
class IPRM(Plugin):
    """IPRM: probe modality strength through the geodesic-mixup head (no grad), then learn with the new weights.

    See the module docstring. Logged: ``iprm/<a>~<b>/omega`` (epoch mean of the
    recalibrated weight of ``a`` in the pair) and ``iprm/<a>~<b>/lam`` (the running weight at epoch end)."""

    @dataclass
    class Options:
        alpha: float = option(0.8, "EMA weight of the running mixing weight (0.8 audio-video, 0.7 trimodal and "
                              "image-text in the paper)", "[PAPER, CODE README]", ge=0, lt=1)
        shared_head: bool = option(False, "one mixture head for every pair of modalities (the code's single_cls "
                                   "samples one pair per step; here every pair, every step) instead of one head "
                                   "per pair (tri_cls); no difference for two modalities", "[CODE tri_cls]")
        prediction: str = option("sum_of_heads", "sum_of_heads: evaluate with sum_m head_m + fused (the code); "
                                 "config: leave it to eval.predict", "[CODE]", choices=("sum_of_heads", "config"))

    wants_unimodal_loss = True
    needs_default_step = True  # the probe runs inside the default step's forward
    priority = 60  # probe on the features after other plug-ins' transforms (they run at the default 50)

    def provides(self) -> FrozenSet[str]:
        hooks = set(super().provides())
        if self.prediction != "sum_of_heads":
            hooks.discard("predict")
        return frozenset(hooks)

    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        self.modalities = encoder_modalities(trainer, self)
        dims = feature_sizes(model, self.modalities)
        if len(set(dims.values())) != 1:
            raise ValueError("iprm mixes the modalities' features on one sphere, so every encoder must output the "
                             "same feature size; got " + ", ".join(f"{m}={d}" for m, d in dims.items())
                             + ". Set model.feature_dim (and encoders that honour it).")
        model.fusion = GeodesicMixupFusion(self.modalities, next(iter(dims.values())), model.num_classes,
                                           self.shared_head)

    @torch.no_grad()
    def transform_features(self, trainer: Trainer, batch: Batch, routes: FeatureRoutes) -> None:
        fusion = trainer.model.fusion
        n = batch.n_pair
        if not trainer.model.training or n == 0 or not isinstance(fusion, GeodesicMixupFusion):
            return
        feats = {m: routes.fusion[m][:n].detach() for m in self.modalities}
        uni = {m: trainer.model.heads[m](routes.heads[m][:n].detach()) for m in self.modalities}
        probes = fusion.pair_logits(feats, fusion.lam)
        omega = torch.stack([strength_weight(prediction_kl(uni[a], z), prediction_kl(uni[b], z))
                             for (a, b), z in zip(fusion.pairs, probes)])
        omega = trainer.all_reduce(omega, "mean")  # every DDP rank mixes with the same weights
        fusion.omega.copy_(omega)
        fusion.eval_lam.copy_(fusion.lam)
        fusion.lam.copy_(ema(fusion.lam, omega, self.alpha))
        trainer.count(forwards=1)  # the probe pass (heads and mixture heads on the features already computed)
        for p, (a, b) in enumerate(fusion.pairs):
            self.log_mean(f"{a}~{b}/omega", omega[p])

    def predict(self, trainer: Trainer, out: ModelOutput) -> Optional[torch.Tensor]:
        heads = [out.logits[m].float() for m in self.modalities if m in out.logits]
        if not heads:
            return None
        total = tensor_sum(heads)
        return total + out.fused.float() if out.fused is not None else total

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        fusion = trainer.model.fusion
        if isinstance(fusion, GeodesicMixupFusion):
            for p, (a, b) in enumerate(fusion.pairs):
                self.log(f"{a}~{b}/lam", float(fusion.lam[p]))

    def state_dict(self) -> Dict[str, Any]:
        return {}  # the running weights are buffers of the fusion module: saved with the model (best.pt too)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


__all__ = ["GeodesicMixupFusion", "IPRM", "ema", "geodesic_mixup", "prediction_kl", "strength_weight"]
