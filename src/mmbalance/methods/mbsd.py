"""MBSD — modality-balanced self-distillation (Liu et al. 2023, as listed by BalanceBenchmark: an objective-level
method driven by a performance score, two modalities, CV + NLP).

No official code or retrievable paper text was found; this follows BalanceBenchmark's ``MBSD_trainer.py`` (the
same loss as the ``MSBD_trainer.py`` of its history), tagged [BB]. Per step, on the paired rows, with ``z_m``
modality m's logits (by default its additive share of the concat fusion head, as BalanceBenchmark), ``p_m =
softmax(z_m)`` and ``q_m = p_m[y]`` the probability of the true class:

* **performance score / weight**: ``w_i = |q_a − q_b|`` if modality a *or* b predicts sample i correctly (argmax),
  else 0; BalanceBenchmark writes these values into a fresh tensor by index, which keeps their gradient
  (``detach_weight=false``);
* **RS** (regularise the gap of the outputs): ``rs_i = (1/C) Σ_c (z_a,c − z_b,c)²`` (logits; BalanceBenchmark's
  three-modality branch uses probabilities, ``rs_on=probs``);
* **KL** (self-distillation from the stronger to the weaker modality of the sample): BalanceBenchmark calls
  ``F.kl_div(ps, pw)`` on the two scalars ``ps = max(q_a, q_b)``, ``pw = min(q_a, q_b)``, i.e. ``pw·(log pw − ps)``
  (``kl_form=bb``; ``kl_div`` expects a log-probability as its first argument and gets a probability);
  ``kl_form=kl`` uses the distribution KL ``KL(p_strong ‖ p_weak)`` with the stronger one detached [RECON];
* loss = ``CE(fused) + Σ_m CE(z_m) + Σ_i w_i rs_i / N + Σ_i w_i kl_i / N`` inside the window, ``CE(fused)``
  outside it. With M > 2 modalities RS and KL are averaged over all pairs (BalanceBenchmark's three-modality
  branch).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Tuple

import torch
import torch.nn.functional as F

from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..functional.common import true_class_probability
from ..registry import METHODS
from .common import check_window, encoder_modalities, in_window, require_score_source

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models import ModelOutput

RS_SPACES = ("logits", "probs")
KL_FORMS = ("bb", "kl")


# =============================================================================== the math
def performance_weight(z_a: torch.Tensor, z_b: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``w_i = |q_a,i − q_b,i|`` where either modality's argmax is the true class, else 0 (``[n]``, with gradient)."""
    q_a, q_b = true_class_probability(z_a, y), true_class_probability(z_b, y)
    correct = (z_a.argmax(1) == y) | (z_b.argmax(1) == y)
    return torch.where(correct, (q_a - q_b).abs(), torch.zeros_like(q_a))


def rs_term(z_a: torch.Tensor, z_b: torch.Tensor, space: str = "logits") -> torch.Tensor:
    """``(1/C) Σ_c (a_c − b_c)²`` per row, on logits or on softmax probabilities (``[n]``)."""
    if space == "probs":
        a, b = F.softmax(z_a.float(), 1), F.softmax(z_b.float(), 1)
    elif space == "logits":
        a, b = z_a.float(), z_b.float()
    else:
        raise ValueError(f"mbsd: rs_on must be one of {RS_SPACES}, got {space!r}")
    return (a - b).pow(2).mean(1)


def kl_term(z_a: torch.Tensor, z_b: torch.Tensor, y: torch.Tensor, form: str = "bb") -> torch.Tensor:
    """Per-row distillation term from the modality with the higher true-class probability to the other (``[n]``).

    ``bb``: ``pw·(log pw − ps)`` with ``ps``/``pw`` the larger/smaller true-class probability (what
    ``F.kl_div(ps, pw)`` computes); ``kl``: ``Σ_c p_s,c (log p_s,c − log p_w,c)`` with ``p_s`` detached."""
    q_a, q_b = true_class_probability(z_a, y), true_class_probability(z_b, y)
    if form == "bb":
        ps, pw = torch.maximum(q_a, q_b), torch.minimum(q_a, q_b)
        return F.kl_div(ps, pw, reduction="none")
    if form == "kl":
        a_strong = (q_a >= q_b).unsqueeze(1)
        log_a, log_b = F.log_softmax(z_a.float(), 1), F.log_softmax(z_b.float(), 1)
        log_s, log_w = torch.where(a_strong, log_a, log_b).detach(), torch.where(a_strong, log_b, log_a)
        return (log_s.exp() * (log_s - log_w)).sum(1)
    raise ValueError(f"mbsd: kl_form must be one of {KL_FORMS}, got {form!r}")


def mbsd_terms(logits: Dict[str, torch.Tensor], y: torch.Tensor, rs_on: str = "logits", kl_form: str = "bb",
               detach_weight: bool = False) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(RS, KL, mean weight)`` over the batch: ``Σ_i w_i t_i / N`` per pair of modalities, averaged over pairs."""
    rs, kl, ws = [], [], []
    n = max(int(y.shape[0]), 1)
    for a, b in itertools.combinations(list(logits), 2):
        w = performance_weight(logits[a], logits[b], y)
        if detach_weight:
            w = w.detach()
        rs.append((w * rs_term(logits[a], logits[b], rs_on)).sum() / n)
        kl.append((w * kl_term(logits[a], logits[b], y, kl_form)).sum() / n)
        ws.append(w.detach().mean())
    return torch.stack(rs).mean(), torch.stack(kl).mean(), torch.stack(ws).mean()


# =============================================================================== the plug-in
@METHODS.register("mbsd")
class MBSD(Plugin):
    """MBSD: unimodal CEs plus performance-weighted output-gap (RS) and distillation (KL) terms per modality pair.

    The RS and KL terms are computed between each pair of modalities, inside the modulation window.
    Logged: ``mbsd/rs``, ``mbsd/kl``, ``mbsd/weight`` (epoch means)."""

    @dataclass
    class Options:
        modulation_starts: int = option(0, "first epoch (0-based) with the MBSD terms; before it only CE(fused)",
                                        "[BB]", ge=0)
        modulation_ends: int = option(80, "last epoch with the MBSD terms, inclusive", "[BB]", ge=0)
        score_from: str = option("fusion", "unimodal logits: fusion (each modality's additive share of the concat/sum "
                                 "head, BalanceBenchmark) or heads (the per-modality heads)", "[BB]",
                                 choices=("fusion", "heads"))
        rs_on: str = option("logits", "RS on logits (BalanceBenchmark, two modalities) or probs (its three-modality "
                            "branch)", "[BB]", choices=RS_SPACES)
        kl_form: str = option("bb", "bb: F.kl_div(ps, pw) on the two true-class probabilities as BalanceBenchmark "
                              "calls it; kl: KL(p_strong || p_weak) over classes, p_strong detached", "[BB]",
                              choices=KL_FORMS)
        detach_weight: bool = option(False, "detach the performance weight w (BalanceBenchmark keeps its gradient)",
                                     "[BB]")

    needs_default_step = True  # adds loss terms in the default step

    def __init__(self, **options) -> None:
        super().__init__(**options)
        # with the heads as unimodal models their CE comes from the base loss; shares get theirs here
        self.wants_unimodal_loss = self.score_from == "heads"

    def validate(self) -> None:
        check_window(self)

    def on_fit_start(self, trainer: "Trainer") -> None:
        self._mods = encoder_modalities(trainer, self)
        require_score_source(trainer, self, self.score_from)

    def _unimodal_logits(self, trainer: "Trainer", out: "ModelOutput") -> Dict[str, torch.Tensor]:
        if self.score_from == "heads":
            return {m: out.logits[m][: out.n_pair] for m in self._mods}
        shares = getattr(trainer.model.fusion, "modality_logits")  # checked at start-up (require_score_source)
        with trainer.autocast():
            return shares(out.paired_features())

    def compute_loss(self, trainer: "Trainer", batch: "Batch", out: "ModelOutput", losses: Losses) -> None:
        # outside the window BalanceBenchmark trains on CE(fused) alone (score_from=heads keeps the heads' CE)
        if not in_window(trainer.epoch, self.modulation_starts, self.modulation_ends) or out.n_pair == 0:
            return
        y = batch.paired_labels()
        z = self._unimodal_logits(trainer, out)
        if self.score_from == "fusion":
            for m in self._mods:
                losses[f"mbsd_uni_{m}"] = trainer.cross_entropy(z[m], y, batch.global_count())
        rs, kl, w = mbsd_terms({m: z[m] for m in self._mods}, y, self.rs_on, self.kl_form, self.detach_weight)
        losses["mbsd_rs"], losses["mbsd_kl"] = rs, kl
        self.log_mean("rs", rs.detach())
        self.log_mean("kl", kl.detach())
        self.log_mean("weight", w)


__all__ = ["MBSD", "kl_term", "mbsd_terms", "performance_weight", "rs_term"]
