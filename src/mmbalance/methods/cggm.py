"""CGGM -- Classifier-Guided Gradient Modulation (Guo, Jin, Chen, Zhao; NeurIPS 2024).

Auxiliary per-modality classifiers, trained on the detached encoder features, measure how fast each
modality's usefulness improves: ``d_m = acc_m(t) - acc_m(t-1)``, the change of the classifier's accuracy on
the current batch from the previous step's batch [CODE]. Two modulations follow:

* magnitude: after backward every gradient of encoder m is multiplied by
  ``B_m = rho * sum_{k != m} d_k / sum_k d_k`` -- a modality that improves more than the others is slowed;
* direction: ``L_gm = (sum_m |B_m| - sum_m B_m cos(g_m, g_f)) / M`` is added with weight ``lambda``, where
  ``g_m`` is the gradient of classifier m's loss w.r.t. its output weight and ``g_f`` the fused loss's
  gradient w.r.t. the fused head's output weight (here: its slice for modality m) [PAPER].

What the release computes instead of ``L_gm`` (``src/*train.py``, ``cal_cos``): the cosines of the output
*weights* themselves (not of their gradients), built after the step's backward and added to the *next*
step's loss. That term is not inert -- its graph still reaches the fused head's output weight, so the next
backward adds the gradient of ``-lambda B_m cos(W_m, W_f)`` evaluated at the previous step's weights (a
parameter-alignment pull on the fused head, nothing on the encoders); issue zrguo/CGGM#6 reports it as
zero-gradient, which holds for the encoders only. ``direction="code"`` reproduces it exactly;
``direction="gradient"`` (default) is the paper's loss, differentiable in the current step: for linear heads
``dCE/dW = (softmax(z) - onehot(y))^T h / n``, so both gradients are closed-form functions of the features
and the direction loss reaches the encoders.

Spec: ``shared/spec/anchors_2026.md`` sections 1b and 3. Tags: [CODE] the official release (zrguo/CGGM
``src/foodtrain.py``, ``src/msatrain.py``, ``src/eval_metrics.py``, ``run/food_run.py``), [PAPER] the paper as
the release and its issue #6 describe it, [RECON] ours.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..models.fusion import ConcatFusion, SumFusion
from ..registry import METHODS
from .common import encoder_modalities, frozen_call
from .shared_head import refuse_head_owners

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput

DIRECTIONS = ("gradient", "code")
COEFF_FORMS = ("code", "clamped")


# =============================================================================== the math
def cggm_coefficients(improvement: torch.Tensor, rho: float, form: str = "code", eps: float = 1e-8) -> torch.Tensor:
    """``B_m = rho * (S - d_m) / (S + eps)`` with ``S = sum_k d_k`` [CODE].

    ``form="clamped"`` [RECON]: the improvements are clamped at 0 first and, when none is positive, every
    modality gets the even value ``rho (M - 1) / M`` -- the code's value for equal improvements; it keeps
    ``B`` in ``[0, rho]`` where the code's ratio explodes as ``S -> 0`` and turns negative for mixed signs."""
    if form == "code":
        total = improvement.sum()
        return rho * (total - improvement) / (total + eps)
    if form != "clamped":
        raise ValueError(f"cggm: coeff_form must be one of {COEFF_FORMS}, got {form!r}")
    d = improvement.clamp_min(0)
    total = d.sum()
    m = d.shape[-1]
    even = torch.full_like(d, rho * (m - 1) / m)
    return torch.where(total > 0, rho * (total - d) / total.clamp_min(eps), even)


def linear_weight_grad(logits: torch.Tensor, y: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """``d mean_i CE(z_i, y_i) / dW = (softmax(z) - onehot(y))^T h / n`` for logits ``z = W h + b``; keeps the
    graph (so a loss on it is differentiable in ``h`` and ``z``)."""
    p = F.softmax(logits.float(), dim=1) - F.one_hot(y, logits.shape[1]).float()
    return p.t() @ features.float() / max(features.shape[0], 1)


def direction_loss(coeffs: torch.Tensor, cosines: torch.Tensor) -> torch.Tensor:
    """``(sum_m |B_m| - sum_m B_m cos_m) / M`` [CODE, PAPER] (``B`` treated as constants)."""
    b = coeffs.detach()
    return (b.abs().sum() - (b * cosines).sum()) / coeffs.shape[-1]


def flat_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two tensors flattened to vectors (the release's ``cal_cos``)."""
    return F.cosine_similarity(a.reshape(-1), b.reshape(-1), dim=0)


def fused_weight(fusion: Optional[nn.Module], modality: str) -> torch.Tensor:
    """The fused head's output weight acting on ``modality``'s features (concat: its column slice; sum: its layer)."""
    if isinstance(fusion, ConcatFusion):
        return fusion.fc.weight[:, fusion.weight_slice(modality)]
    if isinstance(fusion, SumFusion):
        return cast(nn.Linear, fusion.fcs[modality]).weight
    raise ValueError(f"cggm's direction loss needs a linear fused head per modality (concat or sum fusion), got "
                     f"{type(fusion).__name__}; use model.fusion=concat or sum, or method_args.cggm.lam=0")


@dataclass
class PreviousStep:
    """``direction="code"``: what the release's stored term was built from (B and the output weights)."""

    coeff: torch.Tensor
    head: List[torch.Tensor]
    fused: List[torch.Tensor]

    def to(self, device: torch.device) -> "PreviousStep":
        return PreviousStep(self.coeff.to(device), [t.to(device) for t in self.head],
                            [t.to(device) for t in self.fused])

    def state(self) -> Dict[str, Any]:
        return {"coeff": self.coeff.detach().cpu().clone(), "head": [t.detach().cpu().clone() for t in self.head],
                "fused": [t.detach().cpu().clone() for t in self.fused]}


# =============================================================================== the plug-in
@METHODS.register("cggm")
class CGGM(Plugin):
    """CGGM: encoder gradients scaled by the classifiers' relative improvement, plus a direction loss.

    The auxiliary classifiers are the per-modality heads trained on detached features (``monitor_<m>``, or a
    ``cls_<m>`` term CGGM adds when nothing trains them); the release uses small Transformer classifiers with
    their own AdamW optimiser. Logged: ``cggm/<m>/coeff``, ``cggm/<m>/improvement`` (epoch mean and per step for
    the coefficient) and ``cggm/direction_loss``.
    """

    @dataclass
    class Options:
        rho: float = option(1.3, "rho of B_m = rho * sum_{k!=m} d_k / sum_k d_k", "[CODE run/*_run.py]", gt=0)
        lam: float = option(0.05, "weight lambda of the direction loss (0: magnitude modulation only); the release "
                            "uses 0.05 on Food-101, 0.2 on MOSI and IEMOCAP", "[CODE run/food_run.py]", ge=0)
        direction: str = option("gradient", "gradient: the paper's L_gm on gradient directions, in the current "
                                "step; code: the release's cosine of the output weights, added to the next step's "
                                "loss (reaches the fused head only)", "[PAPER]", choices=DIRECTIONS)
        coeff_form: str = option("clamped", "clamped: improvements clamped at 0, even B = rho (M-1)/M when none "
                                 "is positive [RECON]; code: the release's ratio of raw improvements, which "
                                 "explodes when they sum to ~0 (run it with optim.grad_clip=0.8, the release's "
                                 "clip)", "[RECON]", choices=COEFF_FORMS)
        eps: float = option(1e-8, "added to the summed improvement", "[CODE]", gt=0)

    needs_default_step = True  # reads the default step's forward and scales its gradients
    owns_heads = True  # trains model.heads as its detached auxiliary classifiers

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.prev_acc: Optional[torch.Tensor] = None
        self.prev: Optional[PreviousStep] = None  # direction="code": B and weights of the previous step
        self._coeff: Optional[torch.Tensor] = None

    def check_compatible(self, plugins: List[Plugin]) -> None:
        refuse_head_owners(self, plugins)

    def on_fit_start(self, trainer: Trainer) -> None:
        model = trainer.model
        self._mods = encoder_modalities(trainer, self)
        not_linear = [m for m in self._mods if not isinstance(model.heads[m], nn.Linear)]
        if not_linear:
            raise ValueError(f"cggm uses the per-modality heads as its auxiliary classifiers, but head "
                             f"{not_linear[0]!r} is a {type(model.heads[not_linear[0]]).__name__} (another method "
                             f"replaced the heads); cggm cannot be stacked with it")
        if self.lam > 0:
            if model.fusion is None:
                raise ValueError("cggm's direction loss needs a fused head; set method_args.cggm.lam=0")
            fused_weight(model.fusion, self._mods[0])  # fails early on a fusion without per-modality weights
        if self.coeff_form == "code" and not trainer.cfg.optim.grad_clip:
            warnings.warn("cggm: coeff_form=code divides by the summed improvement, which is often ~0 (1e8-fold "
                          "gradients); the release clips the gradient norm at 0.8 -- set optim.grad_clip=0.8",
                          stacklevel=2)
        self._params = {m: [p for p in model.encoders[m].parameters() if p.requires_grad] for m in self._mods}
        if self.prev_acc is None:
            self.prev_acc = torch.zeros(len(self._mods))  # the release starts from acc1 = [0] * M
        self.prev_acc = self.prev_acc.to(trainer.device)
        if self.prev is not None:
            self.prev = self.prev.to(trainer.device)

    # ------------------------------------------------------------------ per step
    def _classifier_terms(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        for m in self._mods:
            if f"uni_{m}" not in losses and f"monitor_{m}" not in losses:
                z = trainer.model.heads[m](out.features[m].detach())
                losses[f"cls_{m}"] = trainer.cross_entropy(z, batch.labels(m), batch.global_count(m))

    def _coefficients(self, trainer: Trainer, batch: Batch, out: ModelOutput) -> torch.Tensor:
        assert self.prev_acc is not None  # set in on_fit_start
        with torch.no_grad():
            acc = torch.stack([(out.logits[m].argmax(1) == batch.labels(m)).float().mean() for m in self._mods])
            acc = trainer.all_reduce(acc, "mean")
            improvement = acc - self.prev_acc
            self.prev_acc = acc
            coeff = cggm_coefficients(improvement, self.rho, self.coeff_form, self.eps)
        for i, m in enumerate(self._mods):
            self.log_step(f"{m}/coeff", coeff[i])
            self.log_mean(f"{m}/coeff", coeff[i])
            self.log_mean(f"{m}/improvement", improvement[i])
        return coeff

    def _gradient_direction(self, trainer: Trainer, batch: Batch, out: ModelOutput,
                            coeff: torch.Tensor) -> torch.Tensor:
        assert out.fused is not None  # compute_loss only calls this with a fused output
        y, n = batch.paired_labels(), out.n_pair
        cos = []
        for m in self._mods:
            h = out.features[m]
            own = linear_weight_grad(frozen_call(trainer.model.heads[m], h), batch.labels(m), h)
            fused = linear_weight_grad(out.fused, y, h[:n])
            cos.append(flat_cosine(own, fused))
        return direction_loss(coeff, torch.stack(cos))

    def _code_direction(self, trainer: Trainer) -> Optional[torch.Tensor]:
        """The previous step's weight-cosine term, valued at the previous weights, its gradient landing on
        the current fused weights (what back-propagating the release's stored graph does)."""
        if self.prev is None:
            return None
        fusion, cos = trainer.model.fusion, []
        for m, head_w, fused_w in zip(self._mods, self.prev.head, self.prev.fused):
            live = fused_weight(fusion, m)
            cos.append(flat_cosine(head_w, fused_w + (live - live.detach())))
        return direction_loss(self.prev.coeff, torch.stack(cos))

    def _remember_weights(self, trainer: Trainer, coeff: torch.Tensor) -> None:
        model = trainer.model
        self.prev = PreviousStep(coeff.detach().clone(),
                                 [cast(nn.Linear, model.heads[m]).weight.detach().clone() for m in self._mods],
                                 [fused_weight(model.fusion, m).detach().clone() for m in self._mods])

    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        self._classifier_terms(trainer, batch, out, losses)
        coeff = self._coefficients(trainer, batch, out)
        self._coeff = coeff
        if self.lam <= 0 or out.fused is None or out.n_pair == 0:
            return
        if self.direction == "gradient":
            term: Optional[torch.Tensor] = self._gradient_direction(trainer, batch, out, coeff)
        else:
            term = self._code_direction(trainer)
            self._remember_weights(trainer, coeff)
        if term is not None:
            losses["direction"] = self.lam * term
            self.log_mean("direction_loss", term.detach())

    @torch.no_grad()
    def after_backward(self, trainer: Trainer, batch: Batch, out: Optional[ModelOutput]) -> None:
        if self._coeff is None:
            return
        for i, m in enumerate(self._mods):
            for p in self._params[m]:
                if p.grad is not None:
                    p.grad.mul_(self._coeff[i].to(p.grad.dtype))
        self._coeff = None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"prev_acc": None if self.prev_acc is None else self.prev_acc.detach().cpu().clone(),
                "prev": None if self.prev is None else self.prev.state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        acc, prev = state.get("prev_acc"), state.get("prev")
        self.prev_acc = None if acc is None else acc.clone()
        self.prev = None if prev is None else PreviousStep(prev["coeff"].clone(), [t.clone() for t in prev["head"]],
                                                           [t.clone() for t in prev["fused"]])


__all__ = ["CGGM", "PreviousStep", "cggm_coefficients", "direction_loss", "flat_cosine", "fused_weight",
           "linear_weight_grad"]
