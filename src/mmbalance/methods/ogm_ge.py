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

"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..engine.options import option
from ..engine.plugin import Plugin, Record
from ..functional.common import discrepancy_ratio, true_class_probability
from ..registry import METHODS
from .common import PARAM_SETS, check_window, encoder_modalities, in_window, modality_shares, require_score_source, \
    select_params

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput


# =============================================================================== the math
def true_class_score(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sum_i softmax(z_i)[y_i]`` over the batch [CODE: a sum, not a mean; the ratio is unaffected]."""
    return true_class_probability(logits, y).sum()


def ogm_scores(logits: Dict[str, torch.Tensor], y: torch.Tensor, modalities: Sequence[str]) -> torch.Tensor:
    """``s_m = sum_i softmax(z^m_i)[y_i]`` for every modality (``[M]``, in ``modalities`` order) from each
    modality's logits on the paired rows: its share of the fused head (:func:`~mmbalance.functional.common.\
fusion_shares`) [CODE] or its own head."""
    return torch.stack([true_class_score(logits[m], y) for m in modalities])


COEFF_FORMS = ("paper", "shifted")


def ogm_coefficients(scores: torch.Tensor, alpha: float, form: str = "paper") -> Tuple[torch.Tensor, torch.Tensor]:
    """Return ``(rho, k)``: the discrepancy ratios and the gradient coefficients.

    ``k_j = 1 - tanh(alpha * relu(rho_j))`` if ``rho_j > 1`` else 1 [PAPER Eq. 10, CODE]. Note the jump at
    ``rho = 1`` (from 1 to ``1 - tanh(alpha)``); ``form="shifted"`` uses ``1 - tanh(alpha * (rho_j - 1))``
    instead, continuous at 1 [RECON, not in any release].
    """
    rho = discrepancy_ratio(scores)
    if form == "paper":
        k = 1.0 - torch.tanh(alpha * F.relu(rho))
    elif form == "shifted":
        k = 1.0 - torch.tanh(alpha * F.relu(rho - 1.0))
    else:
        raise ValueError(f"coefficient form must be one of {COEFF_FORMS}, got {form!r}")
    return rho, torch.where(rho > 1, k, torch.ones_like(k))


def ogm_boost_coefficients(scores: torch.Tensor, boost: float):
    """OGM* (the TPAMI release's ``--use_OGM_plus``): ``(rho, k)`` with ``k_j = boost`` for every modality
    scoring below the others (``rho_j < 1``) and 1 otherwise: the weaker encoder is sped up instead of the
    dominant one being slowed [CODE: a constant 4; the paper reports that this variant fails]. For two
    modalities with ``rho`` exactly 1 the release boosts the first; here neither (measure zero)."""
    rho = discrepancy_ratio(scores)
    return rho, torch.where(rho < 1, torch.full_like(rho, float(boost)), torch.ones_like(rho))


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
    encoder gradient (dominant or not, as the official code does) gets ``N(0, std(grad)^2)`` noise added,
    inside the modulation window. For two modalities this is exactly the official rule; for M > 2
    modalities every modality scoring above the mean of the others is slowed [RECON; BalanceBenchmark's
    3-modality variant divides by the minimum score and uses a cosine-softmax, which we do not copy].
    Training loss: the fused cross-entropy only (as ``joint``), like the release. ``boost=c`` turns it into
    OGM* (BML_TPAMI2024): every weaker modality's encoder gradients are multiplied by c instead.

    Logged: per step ``ogm-ge/<m>/ratio`` and ``ogm-ge/<m>/coeff`` (``steps`` in metrics.jsonl) and their
    epoch means (``plugins``), plus ``ogm-ge/active`` (1 inside the window).
    """

    @dataclass
    class Options:
        alpha: float = option(0.8, "modulation strength; the README uses 0.1 for VGGSound, BalanceBenchmark "
                              "0.3, the TPAMI follow-up 2.6 with AdamW", "[CODE README, CREMA-D]", ge=0)
        ge: bool = option(True, "add the Gaussian noise (OGM-GE); false gives plain OGM", "[CODE]")
        modulation_starts: int = option(0, "first epoch (0-based) with modulation", "[CODE]", ge=0)
        modulation_ends: Optional[int] = option(50, "last epoch with modulation, inclusive; null = all epochs "
                                                "(BalanceBenchmark: 10-80)", "[CODE]", ge=0)
        params: str = option("weights", "encoder tensors modulated: weights (>= 2-D: conv and linear weights) "
                             "[spec; BB], conv (4-D only, the CVPR code: nothing on MLP encoders) or all",
                             "[BB]", choices=PARAM_SETS)
        coeff_form: str = option("paper", "paper: 1 - tanh(alpha*rho); shifted: 1 - tanh(alpha*(rho-1)), "
                                 "continuous at rho = 1 [RECON]", "[PAPER, CODE]", choices=COEFF_FORMS)
        score_from: str = option("fusion", "fusion: each modality's additive share of the fused head (needs "
                                 "concat or sum); heads: the per-modality heads (needs unimodal losses)", "[CODE]",
                                 choices=("fusion", "heads"))
        boost: Optional[float] = option(None, "null: OGM, slow the dominant modality; a number c: OGM*, leave the "
                                        "dominant modality alone and multiply each weaker modality's encoder "
                                        "gradients by c (the TPAMI release's --use_OGM_plus uses 4; the paper "
                                        "reports that it fails)", "[CODE BML_TPAMI2024]", gt=0)

    needs_default_step = True  # reads the fused head's shares of the default step
    score_from: str  # the option, checked against the model in on_fit_start

    def validate(self) -> None:
        check_window(self)

    def on_fit_start(self, trainer: Trainer) -> None:
        mods = encoder_modalities(trainer, self)
        self.score_from = require_score_source(trainer, self, self.score_from)
        self._mods = mods
        self._params = {m: select_params(trainer.model.encoders[m], self.params) for m in mods}
        empty = [m for m, ps in self._params.items() if not ps]
        if empty:
            raise ValueError(f"ogm-ge: method_args.ogm-ge.params={self.params!r} selects no parameter of the "
                             f"{empty[0]!r} encoder ({type(trainer.model.encoders[empty[0]]).__name__}); use "
                             f"params=weights or all")

    def scores(self, trainer, batch, out) -> torch.Tensor:
        if self.score_from == "fusion":
            logits = modality_shares(trainer, out)
        else:
            logits = {m: z.detach().float() for m, z in out.paired_logits().items()}
        return trainer.all_reduce(ogm_scores(logits, batch.paired_labels(), self._mods), "sum")

    def after_backward(self, trainer: Trainer, batch: Batch, out: Optional[ModelOutput]) -> None:
        if out is None or out.n_pair == 0:
            return
        scores = self.scores(trainer, batch, out)
        rho, coeff = (ogm_coefficients(scores, self.alpha, self.coeff_form) if self.boost is None
                      else ogm_boost_coefficients(scores, self.boost))
        if in_window(trainer.epoch, self.modulation_starts, self.modulation_ends):
            for i, m in enumerate(self._mods):
                modulate_(self._params[m], coeff[i], self.ge)
        for i, m in enumerate(self._mods):
            self.log_step(f"{m}/ratio", rho[i])
            self.log_step(f"{m}/coeff", coeff[i])
            self.log_mean(f"{m}/ratio", rho[i])
            self.log_mean(f"{m}/coeff", coeff[i])

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        self.log("active", 1.0 if in_window(epoch, self.modulation_starts, self.modulation_ends) else 0.0)


__all__ = ["OGMGE", "ogm_boost_coefficients", "ogm_coefficients", "ogm_scores", "true_class_score", "modulate_"]
