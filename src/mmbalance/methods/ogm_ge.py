"""OGM-GE -- On-the-fly Gradient Modulation with Generalization Enhancement (Peng et al., CVPR 2022).

At every step each modality's *score* is the summed softmax probability of the true class under its
additive share of the fused head (``fusion.modality_logits``: for concat, ``f_m W_m^T + b / M``, exactly
how the official code splits the concat layer). The score ratio ``rho`` tells which modality dominates;
after backward, the dominant modality's encoder gradients are scaled down by
``k = 1 - tanh(alpha * relu(rho))`` (paper Eq. 10; the ``relu`` is a no-op since it only applies when
``rho > 1``) and, with GE, every modulated tensor gets Gaussian noise ``N(0, std(grad)^2)`` added.

Spec: ``shared/spec/methods.md`` section 4 and ``shared/spec/anchors.md`` section 5.1. Tags: [PAPER] the
paper, [CODE] the official release (GeWu-Lab/OGM-GE_CVPR2022 ``main.py``), [BB] BalanceBenchmark's
re-implementation (``OGM_trainer.py``), [RECON] our choice where neither says.

This module also holds the small helpers shared by the gradient-level baselines (``agm``, ``pmr``,
``mslr``, ``mmpareto``): modulation windows, encoder parameter selection, per-epoch means of device
tensors and the step-override compatibility check.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from ..engine.plugin import Plugin
from ..registry import METHODS


# =============================================================================== shared helpers
def option_error(method: str, arg: str, what: str, got) -> ValueError:
    return ValueError(f"{method}: method_args.{method}.{arg} must be {what}, got {got!r}")


def check_window(method: str, starts, ends) -> None:
    if isinstance(starts, bool) or not isinstance(starts, int) or starts < 0:
        raise option_error(method, "modulation_starts", "an integer >= 0", starts)
    if ends is not None and (isinstance(ends, bool) or not isinstance(ends, int) or ends < starts):
        raise option_error(method, "modulation_ends", f"null or an integer >= modulation_starts ({starts})", ends)


def in_window(epoch: int, starts: int, ends: Optional[int]) -> bool:
    """``starts <= epoch <= ends`` (both inclusive, as the official ``modulation_starts <= epoch <=
    modulation_ends``); ``ends=None`` means until the end of training."""
    return epoch >= starts and (ends is None or epoch <= ends)


PARAM_SETS = ("weights", "conv", "all")


def select_params(module: torch.nn.Module, which: str) -> List[torch.nn.Parameter]:
    """Parameters of ``module`` that a gradient modulation touches.

    ``weights``: tensors with >= 2 dimensions (conv and linear weights; not biases, not BN affine) [BB,
    spec: "weights only, not biases"]; ``conv``: 4-D tensors only (the official CVPR code, which on MLP
    encoders modulates nothing); ``all``: every parameter.
    """
    ps = [p for p in module.parameters() if p.requires_grad]
    if which == "weights":
        return [p for p in ps if p.dim() >= 2]
    if which == "conv":
        return [p for p in ps if p.dim() == 4]
    if which == "all":
        return ps
    raise ValueError(f"parameter set must be one of {PARAM_SETS}, got {which!r}")


class EpochMeans:
    """Per-epoch means of per-step device tensors: summed on the device, read back once per epoch."""

    def __init__(self):
        self.sums: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = {}

    def add(self, key: str, value: torch.Tensor) -> None:
        v = value.detach().float()
        self.sums[key] = self.sums[key] + v if key in self.sums else v.clone()
        self.counts[key] = self.counts.get(key, 0) + 1

    def flush(self, trainer) -> Dict[str, float]:
        out = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        for k, v in out.items():
            trainer.log(k, v)
        self.sums, self.counts = {}, {}
        return out


def modality_shares(trainer, out) -> Dict[str, torch.Tensor]:
    """Each modality's additive share of the fused logits on the paired rows (detached)."""
    fusion = trainer.model.fusion
    with torch.no_grad():
        # float32 like the head's weights: under bf16 autocast the features arrive in bf16
        feats = {m: f.detach().float() for m, f in out.paired_features().items()}
        return {m: z.float() for m, z in fusion.modality_logits(feats).items()}


def require_score_source(trainer, method: str, score_from: str) -> str:
    """Validate where per-modality logits come from; fail at start-up with the option to change."""
    fusion = trainer.model.fusion
    name = trainer.cfg.model.fusion
    if score_from == "auto":
        score_from = "fusion" if hasattr(fusion, "modality_logits") else "heads"
    if score_from == "fusion":
        if fusion is None or not hasattr(fusion, "modality_logits"):
            raise ValueError(
                f"{method}: fusion {name!r} has no additive per-modality share of the fused logits "
                f"(only 'concat' and 'sum' do), so method_args.{method}.score_from=fusion cannot score the "
                f"modalities. Use model.fusion=concat or sum, or method_args.{method}.score_from=heads "
                f"(the per-modality heads, trained with train.unimodal_loss_weight > 0).")
        return "fusion"
    if score_from == "heads":
        if trainer.unimodal_loss_weight <= 0:
            raise ValueError(
                f"{method}: method_args.{method}.score_from=heads scores the modalities with the "
                f"per-modality heads, but they are not trained (train.unimodal_loss_weight is "
                f"{trainer.unimodal_loss_weight}); set train.unimodal_loss_weight=1 or stack with joint-aux")
        return "heads"
    raise option_error(method, "score_from", "fusion, heads or auto", score_from)


# =============================================================================== the math
def true_class_score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sum_i softmax(z_i)[y_i]`` over the batch [CODE: a sum, not a mean; the ratio is unaffected]."""
    return F.softmax(logits.float(), dim=1).gather(1, y.view(-1, 1)).sum()


def discrepancy_ratios(scores: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``rho_j = s_j / mean_{k != j} s_k`` for every modality [RECON for M > 2]; for two modalities this is
    the official ``score_a / score_v`` and ``score_v / score_a``."""
    m = scores.shape[-1]
    if m < 2:
        raise ValueError("OGM-GE needs at least two modalities")
    others = (scores.sum(-1, keepdim=True) - scores) / (m - 1)
    return scores / others.clamp_min(eps)


COEFF_FORMS = ("paper", "shifted")


def ogm_coefficients(scores: torch.Tensor, alpha: float, form: str = "paper"):
    """Return ``(rho, k)``: the discrepancy ratios and the gradient coefficients.

    ``k_j = 1 - tanh(alpha * relu(rho_j))`` if ``rho_j > 1`` else 1 [PAPER Eq. 10, CODE]. Note the jump at
    ``rho = 1`` (from 1 to ``1 - tanh(alpha)``); ``form="shifted"`` uses ``1 - tanh(alpha * (rho_j - 1))``
    instead, continuous at 1 [RECON, not in any release].
    """
    rho = discrepancy_ratios(scores)
    if form == "paper":
        k = 1.0 - torch.tanh(alpha * F.relu(rho))
    elif form == "shifted":
        k = 1.0 - torch.tanh(alpha * F.relu(rho - 1.0))
    else:
        raise ValueError(f"coefficient form must be one of {COEFF_FORMS}, got {form!r}")
    return rho, torch.where(rho > 1, k, torch.ones_like(k))


@torch.no_grad()
def modulate_(params: List[torch.nn.Parameter], coeff: torch.Tensor, noise: bool) -> None:
    """In place: ``g <- coeff * g (+ N(0, std(g)^2))`` for every parameter with a gradient [CODE].

    The noise scale is the tensor's own gradient std before scaling, plus 1e-8 [CODE]; a one-element
    tensor (no std) gets no noise."""
    for p in params:
        g = p.grad
        if g is None:
            continue
        std = g.float().std() if g.numel() > 1 else None
        g.mul_(coeff.to(g.dtype))
        if noise and std is not None:
            g.add_(torch.randn_like(g) * (std + 1e-8).to(g.dtype))


# =============================================================================== the plug-in
@METHODS.register("ogm-ge")
class OGMGE(Plugin):
    """OGM-GE: slow down the dominant modality's encoder by its score ratio, plus gradient noise (GE).

    Per step, on the paired rows of the batch: ``s_m = sum_i softmax(z^m_i)[y_i]`` from modality m's share of
    the fused logits, ``rho_m = s_m / mean_{k != m} s_k``; after backward every modality with ``rho_m > 1``
    has its encoder gradients multiplied by ``1 - tanh(alpha * rho_m)`` and, with ``ge``, every selected
    encoder gradient (dominant or not, as the official code does) gets ``N(0, std(g)^2)`` noise added,
    inside the modulation window. For two modalities this is exactly the official rule; for M > 2
    modalities every modality scoring above the mean of the others is slowed [RECON; BalanceBenchmark's
    3-modality variant divides by the minimum score and uses a cosine-softmax, which we do not copy].
    Training loss: the fused cross-entropy only (as ``joint``), like the release.

    Args:
        alpha: modulation strength. Default 0.8 [CODE README, recommended for CREMA-D]; the README uses
            0.1 for VGGSound (and in its "default setting" line); BalanceBenchmark ships 0.3; the TPAMI
            follow-up used 2.6 with AdamW.
        ge: add the Gaussian noise (OGM-GE); False gives plain OGM. Default True [CODE ``--modulation OGM_GE``].
        modulation_starts: first epoch (0-based) with modulation. Default 0 [CODE].
        modulation_ends: last epoch with modulation, inclusive; null = all epochs. Default 50 [CODE];
            BalanceBenchmark uses 10-80.
        params: which encoder tensors are modulated: ``weights`` (every tensor with >= 2 dims: conv and
            linear weights, no biases/BN) [spec "weights only, not biases"; BB ``len(grad.size()) != 1``],
            ``conv`` (4-D conv weights only, the official CVPR code -- it leaves MLP encoders untouched)
            or ``all``. Default ``weights``.
        coeff_form: ``paper`` (``1 - tanh(alpha * rho)``) [PAPER, CODE] or ``shifted``
            (``1 - tanh(alpha * (rho - 1))``, continuous at ``rho = 1``) [RECON]. Default ``paper``.
        score_from: ``fusion`` (each modality's additive share of the fused head, [CODE]; needs
            ``model.fusion`` concat or sum -- film/gated fail at start-up with a message) or ``heads``
            (the per-modality heads; needs ``train.unimodal_loss_weight > 0``). Default ``fusion``.

    Logged: per step ``ogm/<m>/ratio`` and ``ogm/<m>/coeff`` (``steps`` in metrics.jsonl) and their epoch
    means (``plugins``), plus ``ogm/active`` (1 inside the window).
    """

    needs_default_step = True  # acts inside the default step (checked by check_plugins)

    def __init__(self, alpha: float = 0.8, ge: bool = True, modulation_starts: int = 0,
                 modulation_ends: Optional[int] = 50, params: str = "weights", coeff_form: str = "paper",
                 score_from: str = "fusion"):
        n = "ogm-ge"
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
            raise option_error(n, "alpha", "a number >= 0", alpha)
        if not isinstance(ge, bool):
            raise option_error(n, "ge", "true or false", ge)
        check_window(n, modulation_starts, modulation_ends)
        if params not in PARAM_SETS:
            raise option_error(n, "params", f"one of {', '.join(PARAM_SETS)}", params)
        if coeff_form not in COEFF_FORMS:
            raise option_error(n, "coeff_form", f"one of {', '.join(COEFF_FORMS)}", coeff_form)
        if score_from not in ("fusion", "heads"):
            raise option_error(n, "score_from", "fusion or heads", score_from)
        self.alpha = float(alpha)
        self.ge = ge
        self.modulation_starts = modulation_starts
        self.modulation_ends = modulation_ends
        self.params = params
        self.coeff_form = coeff_form
        self.score_from = score_from
        self._means = EpochMeans()
        self._params: Dict[str, List[torch.nn.Parameter]] = {}

    def on_fit_start(self, trainer) -> None:
        mods = [m for m in trainer.active_modalities if m in trainer.model.encoders]
        if len(mods) < 2:
            raise ValueError(f"ogm-ge needs at least two modalities, got {mods}")
        self.score_from = require_score_source(trainer, self.name, self.score_from)
        self._mods = mods
        self._params = {m: select_params(trainer.model.encoders[m], self.params) for m in mods}
        empty = [m for m, ps in self._params.items() if not ps]
        if empty:
            raise ValueError(f"ogm-ge: method_args.ogm-ge.params={self.params!r} selects no parameter of the "
                             f"{empty[0]!r} encoder ({type(trainer.model.encoders[empty[0]]).__name__}); use "
                             f"params=weights or all")

    def scores(self, trainer, batch, out) -> torch.Tensor:
        y = batch["y"][: out.n_pair]
        if self.score_from == "fusion":
            logits = modality_shares(trainer, out)
        else:
            logits = {m: z.detach().float() for m, z in out.paired_logits().items()}
        s = torch.stack([true_class_score(logits[m], y) for m in self._mods])
        return trainer.all_reduce(s, "sum")

    def after_backward(self, trainer, batch, out) -> None:
        if out is None or out.n_pair == 0:
            return
        rho, coeff = ogm_coefficients(self.scores(trainer, batch, out), self.alpha, self.coeff_form)
        if in_window(trainer.epoch, self.modulation_starts, self.modulation_ends):
            for i, m in enumerate(self._mods):
                modulate_(self._params[m], coeff[i], self.ge)
        for i, m in enumerate(self._mods):
            trainer.log_step(f"ogm/{m}/ratio", rho[i])
            trainer.log_step(f"ogm/{m}/coeff", coeff[i])
            self._means.add(f"ogm/{m}/ratio", rho[i])
            self._means.add(f"ogm/{m}/coeff", coeff[i])

    def on_epoch_end(self, trainer, epoch, record) -> None:
        self._means.flush(trainer)
        trainer.log("ogm/active", 1.0 if in_window(epoch, self.modulation_starts, self.modulation_ends) else 0.0)


__all__ = ["OGMGE", "ogm_coefficients", "discrepancy_ratios", "true_class_score", "modulate_", "select_params",
           "in_window", "EpochMeans"]
