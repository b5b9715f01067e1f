"""MMPareto -- Boosting Multimodal Learning with Innocent Unimodal Assistance (Wei & Hu, ICML 2024).

The objective is the fused cross-entropy plus one unimodal cross-entropy per modality head. For each
encoder the two gradients that reach it -- from the multimodal loss and from its own unimodal loss -- are
combined Pareto-style: when they agree (cosine > 0) they are averaged with equal weights; when they
conflict the MGDA min-norm weights are used, so that the update does not hurt either objective. The
combined gradient is then rescaled, tensor by tensor, to at least the norm of the plain summed gradient and
multiplied by ``gamma`` = 1.5, restoring the magnitude (and the generalisation benefit of the noisier
multimodal gradient) that min-norm weighting would lose. Heads and the fused head get plain gradients.

Spec: ``shared/spec/methods.md`` section 4, ``shared/spec/anchors.md`` section 5.4. Tags: [CODE] the official
release (GeWu-Lab/MMPareto_ICML2024 ``code/MMPareto.py`` + its ``min_norm_solvers.py``), [BB]
BalanceBenchmark, [RECON] our choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, TYPE_CHECKING, Tuple

import torch

from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..functional.common import tensor_sum
from ..registry import METHODS
from .common import check_window, encoder_modalities, in_window

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput


# =============================================================================== the math
def min_norm_weight(v11: torch.Tensor, v12: torch.Tensor, v22: torch.Tensor) -> torch.Tensor:
    """Weight ``w`` on ``g1`` minimising ``||w g1 + (1 - w) g2||`` from the dot products (MGDA, two tasks).

    Closed form ``w = (g2.g2 - g1.g2) / ||g1 - g2||^2``, with the release's guards: ``w = 0.999`` if
    ``g1.g2 >= g1.g1`` and ``w = 0.001`` if ``g1.g2 >= g2.g2`` [CODE ``_min_norm_element_from2``].
    """
    denom = (v11 + v22 - 2 * v12).clamp_min(1e-30)
    w = (v22 - v12) / denom
    w = torch.where(v12 >= v22, torch.full_like(w, 0.001), w)
    return torch.where(v12 >= v11, torch.full_like(w, 0.999), w)


def pareto_weights(g_mm: torch.Tensor, g_uni: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(cos, k_mm, k_uni)`` for two flattened gradients: ``(0.5, 0.5)`` if ``cos > 0``, else MGDA [CODE]."""
    v11, v12, v22 = g_mm @ g_mm, g_mm @ g_uni, g_uni @ g_uni
    cos = v12 / (v11.sqrt() * v22.sqrt()).clamp_min(1e-8)
    w = min_norm_weight(v11, v12, v22)
    k_mm = torch.where(cos > 0, torch.full_like(w, 0.5), w)
    return cos, k_mm, 1.0 - k_mm


def combine(g_mm: torch.Tensor, g_uni: torch.Tensor, g_sum: torch.Tensor, k_mm: torch.Tensor, k_uni: torch.Tensor,
            gamma: float) -> torch.Tensor:
    """One tensor's new gradient: ``new = 2 (k_mm g_mm + k_uni g_uni)``, scaled up to ``||g_sum||`` if it is
    shorter, times ``gamma`` [CODE]. With ``k = (0.5, 0.5)`` and ``g_sum = g_mm + g_uni`` this is
    ``gamma * g_sum``."""
    new = 2 * (k_mm * g_mm + k_uni * g_uni)
    ratio = torch.linalg.vector_norm(g_sum) / torch.linalg.vector_norm(new).clamp_min(1e-30)
    return gamma * torch.where(ratio > 1, ratio, torch.ones_like(ratio)) * new


def pareto_rewrite_(params: Sequence[torch.nn.Parameter], g_mm: Sequence[torch.Tensor], g_uni: Sequence[torch.Tensor],
                    gamma: float) -> Tuple[torch.Tensor, torch.Tensor]:
    """In place, for one encoder: every parameter's gradient becomes :func:`combine` of its multimodal and
    unimodal gradients (``g_mm[i]``, ``g_uni[i]``), with the weights of :func:`pareto_weights` from the cosine of
    the *whole encoder's* flattened gradients [CODE]; the plain summed gradient is ``p.grad`` (after the ordinary
    backward) or ``g_mm + g_uni``. Returns ``(cos, k_uni)``."""
    cos, k_mm, k_uni = pareto_weights(torch.cat([g.reshape(-1).float() for g in g_mm]),
                                      torch.cat([g.reshape(-1).float() for g in g_uni]))
    for p, a, b in zip(params, g_mm, g_uni):
        g_sum = p.grad if p.grad is not None else a + b
        p.grad = combine(a, b, g_sum, k_mm.to(a.dtype), k_uni.to(a.dtype), gamma).to(p.dtype)
    return cos, k_uni


# =============================================================================== the plug-in
@METHODS.register("mmpareto")
class MMPareto(Plugin):
    """MMPareto: per encoder, Pareto-combine the multimodal and unimodal gradients, then boost by ``gamma``.

    Objective: ``CE(fused) + sum_m CE(head_m)`` (unimodal terms on, like ``joint-aux``). In ``compute_loss``
    two extra backward passes (``torch.autograd.grad`` on the retained graph, restricted to the encoders)
    give, per encoder m, ``g_mm`` (of the fused term) and ``g_m`` (of its unimodal term); the ordinary
    backward then fills the plain summed gradient, and ``after_backward`` replaces every encoder-m tensor's
    gradient by ``combine(...)`` with the weights from the whole-encoder cosine. Three backward passes per
    step instead of the release's four, no replaced training step, so it stacks with samplers (DUS, BSS):
    on a nested batch the fused term uses the paired rows and each unimodal term its own rows.
    ``priority = 60``: its ``compute_loss`` sees the terms other loss-shaping methods set, and its
    ``after_backward`` rewrites encoder gradients after theirs.

    Logged per modality (epoch means): ``mmpareto/<m>/cos`` (multimodal-unimodal gradient cosine),
    ``mmpareto/<m>/conflict`` (share of steps with cos <= 0), ``mmpareto/<m>/k_uni`` (weight on the
    unimodal gradient); per step the series ``mmpareto/<m>/cos``. No state across steps.
    """

    @dataclass
    class Options:
        gamma: float = option(1.5, "magnitude factor applied to the combined encoder gradients",
                              "[CODE, hard-coded; BB alpha: 1.5]", gt=0)
        modulation_starts: int = option(0, "first epoch (0-based) with the Pareto combination", "[CODE]", ge=0)
        modulation_ends: Optional[int] = option(None, "last epoch (inclusive); null = always, as the release "
                                                "(BB: 0-80)", "[CODE]", ge=0)

    needs_default_step = True  # rewrites the default step's gradients
    wants_unimodal_loss = True
    priority = 60

    def __init__(self, **options) -> None:
        super().__init__(**options)
        #: set by compute_loss for after_backward: the modalities and their fused / unimodal encoder gradients
        self._pending: Optional[Tuple[List[str], List[torch.Tensor], List[torch.Tensor]]] = None

    def validate(self) -> None:
        check_window(self)

    def on_fit_start(self, trainer: Trainer) -> None:
        mods = encoder_modalities(trainer, self)
        if trainer.model.fusion is None:
            raise ValueError(f"mmpareto needs a fused head over at least two modalities, got {mods}")
        if trainer.fused_loss_weight <= 0 or trainer.unimodal_loss_weight <= 0:
            raise ValueError(
                f"mmpareto combines the fused and the unimodal losses, but train.fused_loss_weight="
                f"{trainer.fused_loss_weight} and train.unimodal_loss_weight={trainer.unimodal_loss_weight}; "
                f"both must be > 0 (leave train.unimodal_loss_weight unset: mmpareto turns it on)")
        self._mods = mods
        self._params = {m: [p for p in trainer.model.encoders[m].parameters() if p.requires_grad] for m in mods}

    def _grads(self, trainer, loss: torch.Tensor, params: List[torch.nn.Parameter]) -> List[torch.Tensor]:
        trainer.count(backwards=1)
        raw = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        gs = [torch.zeros_like(p) if g is None else g for p, g in zip(params, raw)]
        if trainer.world_size > 1:  # the directions must be those of the global batch, like the summed gradient
            flat = trainer.all_reduce(torch.cat([g.reshape(-1) for g in gs]))
            gs = [g.view_as(p) for g, p in zip(torch.split(flat, [g.numel() for g in gs]), params)]
        return gs

    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        self._pending = None
        if not in_window(trainer.epoch, self.modulation_starts, self.modulation_ends):
            return
        mods = [m for m in self._mods if f"uni_{m}" in losses]
        if "fused" not in losses or not mods:
            return
        params = [p for m in mods for p in self._params[m]]
        g_mm = self._grads(trainer, losses["fused"], params)
        # each unimodal term reaches only its own encoder: one backward gives all of them
        g_uni = self._grads(trainer, tensor_sum(losses[f"uni_{m}"] for m in mods), params)
        self._pending = (mods, g_mm, g_uni)

    @torch.no_grad()
    def after_backward(self, trainer: Trainer, batch: Batch, out: Optional[ModelOutput]) -> None:
        if self._pending is None:
            return
        mods, g_mm, g_uni = self._pending
        self._pending = None
        i = 0
        for m in mods:
            ps = self._params[m]
            gm, gu = g_mm[i:i + len(ps)], g_uni[i:i + len(ps)]
            i += len(ps)
            cos, k_uni = pareto_rewrite_(ps, gm, gu, self.gamma)
            self.log_step(f"{m}/cos", cos)
            self.log_mean(f"{m}/cos", cos)
            self.log_mean(f"{m}/conflict", (cos <= 0).float())
            self.log_mean(f"{m}/k_uni", k_uni)


__all__ = ["MMPareto", "min_norm_weight", "pareto_weights", "combine", "pareto_rewrite_"]
