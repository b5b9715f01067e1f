"""LFM -- Learning the modality gap dynamically (Yang et al., NeurIPS 2024, "Facilitating Multimodal
Classification via Dynamically Learning Modality Gap").

The supervised multimodal loss is mixed with an unsupervised *alignment* loss that pulls the modalities'
predictions towards each other (the paper speaks of contrastive learning narrowing the modality gap; the
release aligns the modalities' class distributions with a Jensen-Shannon-type divergence), with a weight
that changes over training:

    loss = 2 * (k_cls * CE(fused, y) + k_align * mean over modality pairs D(p_a, p_b))

``k_align = 1 - k_cls`` comes from a fitted schedule (the release's default run), a per-epoch hypergradient
step (the release's learnable variant, also BalanceBenchmark's), or is fixed.

Tags: [CODE] the official release (njustkmg/NeurIPS24-LFM ``Crema_epoch.py``, ``Crema_epoch_learnable.py``),
[BB] BalanceBenchmark's ``LFM_trainer.py``, [PAPER], [RECON] our choice.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..functional.common import tensor_sum
from ..registry import METHODS
from .common import encoder_modalities, fusion_shares

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput

# the release's fit of its learned weight curve (CREMA-D, 200 epochs): k_cls(e) = sum_i c_i e^i [CODE]
FITTED_CLS = (2.04623704e-01, 3.35472727e-03, 1.22989557e-04, -2.92947416e-06, 2.23835486e-08, -5.39717505e-11)
DIVERGENCES = ("code", "js")
WEIGHTINGS = ("fitted", "learned", "fixed")


# =============================================================================== the math
def alignment_divergence(a: torch.Tensor, b: torch.Tensor, kind: str = "code") -> torch.Tensor:
    """Divergence between the class distributions ``p = softmax(a)``, ``q = softmax(b)``, mean over rows.

    With ``m = (p + q) / 2``: ``code`` is the release's ``Alignment``, ``(KL(m||p) + KL(m||q)) / 2`` --
    ``F.kl_div(p.log(), m)`` is ``KL(m || p)``, so despite its name it is not the Jensen-Shannon divergence
    [CODE, BB]; ``js`` is ``(KL(p||m) + KL(q||m)) / 2`` [RECON]. Both are 0 iff p = q."""
    lp, lq = F.log_softmax(a.float(), dim=1), F.log_softmax(b.float(), dim=1)
    p, q = lp.exp(), lq.exp()
    m = 0.5 * (p + q)
    lm = m.clamp_min(1e-30).log()
    n = a.shape[0]
    if kind == "code":
        total = (m * (lm - lp)).sum() + (m * (lm - lq)).sum()
    elif kind == "js":
        total = (p * (lp - lm)).sum() + (q * (lq - lm)).sum()
    else:
        raise ValueError(f"divergence must be one of {DIVERGENCES}, got {kind!r}")
    return total * (0.5 / n)


def pairwise_alignment(logits: Dict[str, torch.Tensor], modalities: List[str], kind: str = "code") -> torch.Tensor:
    """Mean of :func:`alignment_divergence` over every pair of modalities (BB's extension to M > 2)."""
    pairs = list(itertools.combinations(modalities, 2))
    return tensor_sum(alignment_divergence(logits[a], logits[b], kind) for a, b in pairs) / len(pairs)


def fitted_cls_weight(epoch: float) -> float:
    """``k_cls`` of the release's fitted schedule at ``epoch`` (0.205 at epoch 0, 0.30 at 20, 0.54 at 100,
    0.90 at 200: the supervised weight grows as training goes on) [CODE ``getAlpha_Learnable_Fitted``]."""
    return float(sum(c * epoch ** i for i, c in enumerate(FITTED_CLS)))


def hypergradient_step(align_weight: float, direction: float, lr: float, low: float = 0.05,
                       high: float = 0.95) -> float:
    """The release's update of the alignment weight: ``k_align <- clip(k_align - lr * direction, low, high)``
    [CODE ``getAlpha_Learnable``]."""
    return float(min(high, max(low, align_weight - lr * direction)))


def learned_lr(lr0: float, epoch: int, halve_every: int) -> float:
    """The release halves the hypergradient rate at every epoch that is a positive multiple of 20."""
    return lr0 * 0.5 ** (epoch // halve_every) if halve_every > 0 else lr0


# =============================================================================== the plug-in
@METHODS.register("lfm")
class LFM(Plugin):
    """LFM: fused cross-entropy mixed with an alignment of the modalities' predictions, weight k_align.

    Per step, on the paired rows: the modalities' predictions are their additive shares of the fused head
    (``fusion.modality_logits``; with ``model.fusion=sum`` these are exactly the release's per-modality
    classifiers, whose sum is its fused output), ``fused`` becomes ``2 k_cls CE`` and ``lfm_align`` is
    ``2 k_align`` times the mean pairwise divergence. ``weighting=learned``: at the start of every epoch, on a
    fixed probe of training samples, ``k_align`` moves against the mean of the first parameter's
    Hessian-vector product ``d/dθ_0 (∇L_total · ∇CE)`` (the release's heuristic hypergradient; a double
    backward through the plain, uncompiled model). Any number of modalities >= 2 (pairs averaged).
    Logged: ``lfm/cls_weight``, ``lfm/align_weight``, ``lfm/alignment`` (epoch mean), ``lfm/hypergrad``.
    """

    @dataclass
    class Options:
        weighting: str = option("fitted", "fitted: the release's polynomial schedule of the epoch (Crema_epoch.py, "
                                "the README's run); learned: a hypergradient step per epoch (Crema_epoch_learnable.py; "
                                "BalanceBenchmark); fixed: k_align = align_weight", "[CODE]", choices=WEIGHTINGS)
        curve_epochs: Optional[int] = option(None, "fitted: null evaluates the polynomial at the epoch index (it was "
                                             "fitted on 200 CREMA-D epochs) [CODE]; T stretches it over the run, "
                                             "epoch * T / train.epochs [RECON]", "[CODE]", gt=0)
        align_weight: float = option(0.95, "learned: the starting k_align (the release: cls_k = [0.05, 0.95]; "
                                     "BalanceBenchmark starts at 0.05); fixed: the constant k_align", "[CODE]",
                                     ge=0, le=1)
        lr_alpha: float = option(1e-4, "learned: step size of the k_align update", "[CODE, BB]", ge=0)
        halve_every: int = option(20, "learned: halve lr_alpha at every positive multiple of this epoch (0: never)",
                                  "[CODE]", ge=0)
        probe_size: int = option(8, "learned: training samples of the probe batch (the release: half of a 16-sample "
                                 "batch held out of training)", "[CODE]", ge=1)
        divergence: str = option("code", "code: (KL(m||p) + KL(m||q))/2, the release's Alignment [CODE, BB]; js: the "
                                 "Jensen-Shannon divergence [RECON]", "[CODE]", choices=DIVERGENCES)
        fused_mean: bool = option(False, "CE on the fused logits divided by the number of modalities (the release's "
                                  "0.5*(o_a + o_v)); false: the fused logits as they are [BB]", "[BB]")
        loss_scale: float = option(2.0, "overall factor of the mixed loss", "[CODE, BB]", gt=0)

    needs_default_step = True  # changes the default step's loss

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.current_align = float(self.align_weight)
        self._probe: Optional[torch.Tensor] = None

    def on_fit_start(self, trainer: "Trainer") -> None:
        self._mods = encoder_modalities(trainer, self)
        if not hasattr(trainer.model.fusion, "modality_logits"):
            raise ValueError(f"lfm aligns the modalities' additive shares of the fused head, so it needs "
                             f"model.fusion=concat or sum (or mmcosine's head); got {trainer.cfg.model.fusion!r}")
        n = len(trainer.splits.train)
        g = torch.Generator().manual_seed(int(trainer.cfg.train.seed) * 7919 + 41)
        self._probe = torch.randperm(n, generator=g)[: min(self.probe_size, n)]

    # ------------------------------------------------------------------ the weights
    def weights(self, trainer: "Trainer", epoch: int):
        """``(k_cls, k_align)`` for ``epoch``."""
        if self.weighting == "fitted":
            e = epoch if self.curve_epochs is None else epoch * self.curve_epochs / max(trainer.cfg.train.epochs, 1)
            k_cls = fitted_cls_weight(e)
            return k_cls, 1.0 - k_cls
        return 1.0 - self.current_align, self.current_align

    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        if self.weighting == "learned":
            direction = self._hypergradient(trainer, epoch)
            self.current_align = hypergradient_step(self.current_align, direction,
                                                    learned_lr(self.lr_alpha, epoch, self.halve_every))
            self.log("hypergrad", direction)
        self._k = self.weights(trainer, epoch)
        self.log("cls_weight", self._k[0])
        self.log("align_weight", self._k[1])

    def _hypergradient(self, trainer: "Trainer", epoch: int) -> float:
        model = trainer.model
        params = [p for p in model.parameters() if p.requires_grad]
        k_cls, k_align = 1.0 - self.current_align, self.current_align
        with trainer.side_pass(train=True):
            batch = next(iter(trainer.data.iter_batches("train", self._probe, train=False, modalities=self._mods)))
            with trainer.autocast():
                out = model({m: batch.inputs[m] for m in self._mods}, fuse=True)  # plain model: double backward
            ce, align = self._terms(trainer, batch, out)
            total = k_cls * ce + k_align * align
            g_total = torch.autograd.grad(total, params, create_graph=True, allow_unused=True)
            g_ce = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
            used = [i for i, (a, b) in enumerate(zip(g_total, g_ce)) if a is not None and b is not None]
            hvp = torch.autograd.grad([g_total[i] for i in used], params[used[0]],
                                      grad_outputs=[g_ce[i] for i in used], allow_unused=True)[0]
        trainer.count(forwards=1, backwards=3)
        # the release: the mean of the first parameter's Hessian-vector product (None: it enters linearly)
        return 0.0 if hvp is None else float(hvp.mean())

    # ------------------------------------------------------------------ the loss
    def _terms(self, trainer: "Trainer", batch: "Batch", out: "ModelOutput"):
        if out.fused is None:
            raise RuntimeError("lfm: the forward produced no fused logits")
        y = batch.paired_labels()
        fused = out.fused / len(self._mods) if self.fused_mean else out.fused
        ce = trainer.cross_entropy(fused, y, batch.global_count())
        shares = fusion_shares(trainer, out.paired_features(), grad=True)
        return ce, pairwise_alignment(shares, self._mods, self.divergence)

    def compute_loss(self, trainer: "Trainer", batch: "Batch", out: "ModelOutput", losses: Losses) -> None:
        if out.fused is None or out.n_pair == 0:
            return
        ce, align = self._terms(trainer, batch, out)
        k_cls, k_align = self._k
        losses["fused"] = self.loss_scale * k_cls * trainer.fused_loss_weight * ce
        losses["lfm_align"] = self.loss_scale * k_align * align
        self.log_mean("alignment", align.detach())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"align_weight": self.current_align}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.current_align = float(state.get("align_weight", self.align_weight))


__all__ = ["LFM", "alignment_divergence", "fitted_cls_weight", "hypergradient_step", "learned_lr",
           "pairwise_alignment"]
