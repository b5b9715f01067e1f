"""OPM -- On-the-fly Prediction Modulation (Wei, Hu, Du, Wen; TPAMI 2024, the journal extension of OGM-GE).

Where OGM slows the dominant modality's gradients after backward, OPM weakens it in the forward pass: at a
step, each modality's score is the summed true-class probability of its share of the fused head (as in
OGM-GE); a modality scoring above the others gets a drop probability ``q_m = q_base * (1 + lam *
tanh(rho_m - 1))`` (the others 0), and -- with probability ``p_exe`` per step -- each sample's feature of
that modality is dropped (zeroed) on its way to the fusion head, the kept features being rescaled. The
fused head then has to predict from the weaker modality alone on those samples. The boost variant OGM*
lives in ``ogm-ge`` (``method_args.ogm-ge.boost``).

Tags: [CODE] the official release (GeWu-Lab/BML_TPAMI2024 ``code/models/Classifier.py``, ``main.py``,
``scripts/train_opm.sh``), [BB] BalanceBenchmark's ``OPM_trainer.py``, [PAPER], [RECON] our choice.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, List, Optional

import torch
import torch.nn.functional as F

from ..engine.options import option
from ..engine.plugin import Plugin
from ..functional.common import discrepancy_ratio
from ..registry import METHODS
from .common import check_window, encoder_modalities, fusion_shares, in_window, require_score_source, \
    true_class_scores

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import FeatureRoutes

RESCALE = ("shared", "per_modality", "none")


# =============================================================================== the math
def drop_probabilities(scores: torch.Tensor, q_base: float, lam: float) -> torch.Tensor:
    """``q_m = clip(q_base * (1 + lam * tanh(relu(rho_m - 1))), 0, 1)`` if ``rho_m > 1`` else 0 [CODE
    ``calcu_q``], with ``rho_m = s_m / mean_{k != m} s_k`` (two modalities: ``s_1/s_2``, the release).

    At least one modality always has ``q = 0``: the ``rho_m - 1`` weighted by the others' means sum to 0, so
    not every modality can score above the others. Every sample therefore keeps at least one modality, and
    the release's removal of samples whose every modality was dropped never fires."""
    r = torch.tanh(F.relu(discrepancy_ratio(scores) - 1.0))
    q = torch.where(r > 0, q_base * (1.0 + lam * r), torch.zeros_like(r))
    return q.clamp(0.0, 1.0)


def rescale_factors(q: torch.Tensor, dims: torch.Tensor, mode: str) -> torch.Tensor:
    """The factor each modality's kept features are multiplied by.

    ``shared`` [CODE, BB]: one factor for every modality, ``1 / (1 - theta)`` with the dimension-weighted mean
    drop rate ``theta = sum_m d_m q_m / sum_m d_m`` (the release's ``custom_autograd``, whose backward is the
    same scaling); ``per_modality``: inverted dropout, ``1 / (1 - q_m)`` [RECON]; ``none``: 1."""
    if mode == "shared":
        theta = (dims * q).sum() / dims.sum()
        return (1.0 / (1.0 - theta)).expand_as(q)
    if mode == "per_modality":
        return torch.where(q < 1, 1.0 / (1.0 - q).clamp_min(1e-12), torch.zeros_like(q))
    if mode == "none":
        return torch.ones_like(q)
    raise ValueError(f"rescale must be one of {RESCALE}, got {mode!r}")


def keep_masks(q: torch.Tensor, n: int, execute: torch.Tensor) -> torch.Tensor:
    """``[M, n]`` 0/1 masks: sample i keeps modality m with probability ``1 - q_m`` (Bernoulli) when the step
    executes the drop, else every feature is kept. Random draws on ``q``'s device, no host sync."""
    keep = (torch.rand(q.shape[0], n, device=q.device) >= q.unsqueeze(1)).to(q.dtype)
    return torch.where(execute, keep, torch.ones_like(keep))


# =============================================================================== the plug-in
@METHODS.register("opm")
class OPM(Plugin):
    """OPM: drop the dominant modality's features on the fused route with a probability set by the discrepancy.

    Per training step inside the window, on the paired rows: scores ``s_m`` (summed true-class probability of
    modality m's share of the fused head, or of its own head), drop probabilities ``q`` (:func:`drop_probabilities`),
    one Bernoulli draw per step (execute with probability ``p_exe``), per-sample keep masks, and the rescale of
    :func:`rescale_factors`. Only the fusion head's inputs change (``transform_features``); the per-modality heads
    and evaluation see every feature. Loss: the fused cross-entropy (as ``joint``), like the release.
    Any number of modalities >= 2 (for M > 2 the ratio's reference is the mean of the other scores [RECON]).

    Logged (epoch means): ``opm/<m>/ratio``, ``opm/<m>/q`` (drop probability), ``opm/<m>/kept`` (fraction
    of fused-route features kept), ``opm/executed`` (fraction of steps that dropped).
    """

    @dataclass
    class Options:
        q_base: float = option(0.5, "base drop probability of the dominant modality (scripts/train_opm.sh and "
                               "main.py; config.py and BalanceBenchmark 0.4)", "[CODE]", ge=0, le=1)
        lam: float = option(0.5, "how much the discrepancy raises q: q = q_base (1 + lam tanh(rho - 1)) "
                            "(BalanceBenchmark calls it alpha)", "[CODE]", ge=0)
        p_exe: float = option(0.7, "probability that a step drops at all", "[CODE, BB]", ge=0, le=1)
        modulation_starts: int = option(6, "first epoch (0-based) with dropping: the release warms up while "
                                        "epoch <= 5 (BalanceBenchmark: 0)", "[CODE]", ge=0)
        modulation_ends: Optional[int] = option(None, "last epoch with dropping, inclusive; null = all epochs "
                                                "(BalanceBenchmark: 80)", "[CODE]", ge=0)
        rescale: str = option("shared", "kept features x 1/(1 - theta), theta the dimension-weighted mean drop "
                              "rate (shared) [CODE, BB]; x 1/(1 - q_m) (per_modality, inverted dropout) [RECON]; "
                              "none", "[CODE]", choices=RESCALE)
        score_from: str = option("fusion", "fusion: each modality's additive share of the fused head (needs concat "
                                 "or sum) [CODE]; heads: the per-modality heads (needs unimodal losses)", "[CODE]",
                                 choices=("fusion", "heads"))

    needs_default_step = True  # acts on the default step's fused route
    score_from: str  # the option, resolved against the model in on_fit_start

    def validate(self) -> None:
        check_window(self)

    def on_fit_start(self, trainer: "Trainer") -> None:
        self._mods: List[str] = encoder_modalities(trainer, self)
        self.score_from = require_score_source(trainer, self, self.score_from)
        self._dims: Optional[torch.Tensor] = None

    def transform_features(self, trainer: "Trainer", batch: "Batch", routes: "FeatureRoutes") -> None:
        if not in_window(trainer.epoch, self.modulation_starts, self.modulation_ends):
            return
        n = min(routes.features[m].shape[0] for m in self._mods)
        if n == 0:
            return
        paired = {m: routes.features[m][:n] for m in self._mods}
        if self.score_from == "fusion":
            logits = fusion_shares(trainer, paired)
        else:
            with torch.no_grad():
                logits = {m: trainer.model.heads[m](f.detach()).float() for m, f in paired.items()}
        scores = true_class_scores(trainer, logits, self._mods, batch.paired_labels())
        q = drop_probabilities(scores, self.q_base, self.lam)
        rho = discrepancy_ratio(scores)
        if self._dims is None:
            self._dims = torch.tensor([float(paired[m].shape[1]) for m in self._mods], device=q.device)
        execute = torch.rand((), device=q.device) < self.p_exe  # the release: rand >= 1 - p_exe
        keep = keep_masks(q, n, execute)
        scale = torch.where(execute, rescale_factors(q, self._dims, self.rescale), torch.ones_like(q))
        for i, m in enumerate(self._mods):
            f = routes.fusion[m][:n]
            routes.fusion[m] = f * (keep[i] * scale[i]).to(f.dtype).unsqueeze(1)
            self.log_mean(f"{m}/ratio", rho[i])
            self.log_mean(f"{m}/q", q[i])
            self.log_mean(f"{m}/kept", keep[i].mean())
        self.log_mean("executed", execute.float())

    def on_epoch_end(self, trainer: "Trainer", epoch: int, record) -> None:
        self.log("active", 1.0 if in_window(epoch, self.modulation_starts, self.modulation_ends) else 0.0)


__all__ = ["OPM", "drop_probabilities", "keep_masks", "rescale_factors"]
