"""PMR -- Prototypical Modal Rebalance (Fan, Xu, Wu, Li, Wang; CVPR 2023).

Each modality keeps one *prototype* per class: the mean of that class's encoder features, recomputed at
the start of every epoch from a no-gradient pass over part of the training set and smoothed with an
exponential moving average. A sample's prototype logits are the negative Euclidean distances of its
feature to the prototypes; their softmax gives a classifier that does not depend on the fused head. The
ratio of the modalities' summed true-class prototype probabilities tells which one lags, and that one gets
an extra *prototypical cross-entropy* (PCE) term, which pulls its features towards their class prototypes
and so accelerates its encoder without slowing the other. A *prototypical entropy regulariser* (PER) on the
dominant modality (maximising the entropy of its prototype distribution) is applied during the first
epochs to keep it from converging prematurely.

Spec: ``shared/spec/methods.md`` section 4 and ``shared/spec/anchors.md`` section 5.2. Tags: [CODE] the
official release (fanyunfeng-bit/Modal-Imbalance-PMR ``main_Prototype_grad.py``), [BB] BalanceBenchmark's
``PMR_trainer.py`` (HEAD, and the earlier ``PMR_PER`` version), [PAPER], [RECON] our choice.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..engine.samplers import epoch_generator
from ..functional.common import discrepancy_ratio, true_class_probability
from ..registry import METHODS
from .common import check_window, encoder_modalities, in_window

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput


RULES = ("step", "clip")


# =============================================================================== the math
def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``-||f_i - c_k||_2`` for every sample i and class k (plain, not squared, distance) [CODE]."""
    return -torch.cdist(features.float(), prototypes.float().to(features.device))


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean feature ``[C, d]`` and per-class counts ``[C]`` (empty classes: zero row)."""
    f = features.float()
    sums = torch.zeros(num_classes, f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, labels, f)
    counts = torch.bincount(labels, minlength=num_classes).to(f.dtype)
    return sums / counts.clamp_min(1).unsqueeze(1), counts


def update_prototypes(new: torch.Tensor, counts: torch.Tensor, old: Optional[torch.Tensor],
                      momentum: float) -> torch.Tensor:
    """``(1 - mu) * new + mu * old`` [CODE]; the first computation is taken as is. A class absent from this
    epoch's sample keeps its old prototype [RECON; the release would divide by zero]."""
    if old is None:
        return new.clone()
    old = old.to(new)
    mixed = (1.0 - momentum) * new + momentum * old
    return torch.where(counts.unsqueeze(1) > 0, mixed, old)


def prototype_scores(logits: Dict[str, torch.Tensor], y: torch.Tensor, mods: List[str]) -> torch.Tensor:
    """``sum_i softmax(-d(f_i, C))[y_i]`` per modality (detached) [CODE]."""
    return torch.stack([true_class_probability(logits[m].detach(), y).sum() for m in mods])


def pmr_coefficients(scores: torch.Tensor, alpha: float, rule: str = "step") -> Tuple[torch.Tensor, torch.Tensor]:
    """Return ``(rho, beta)``: ratios ``rho_j = s_j / mean_{k != j} s_k`` and the PCE weight of each modality.

    Only modalities with ``rho_j < 1`` (lagging) get a weight: ``alpha`` (``rule="step"``, the release and
    BB HEAD) or ``alpha * clip(1/rho_j - 1, 0, 1)`` (``rule="clip"``, BB's earlier ``PMR_PER``) [CODE/BB;
    the ratio generalises the two-modality ``score_a / score_v`` to M modalities, RECON].
    """
    rho = discrepancy_ratio(scores)
    if rule == "step":
        w = torch.full_like(rho, float(alpha))
    elif rule == "clip":
        w = alpha * (1.0 / rho.clamp_min(1e-12) - 1.0).clamp(0.0, 1.0)
    else:
        raise ValueError(f"PMR coefficient rule must be one of {RULES}, got {rule!r}")
    return rho, torch.where(rho < 1, w, torch.zeros_like(w))


def prototype_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of the prototype distribution, summed over the batch (as BB's PER term)."""
    logp = F.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum()


def entropy_regulariser(rho: torch.Tensor, beta: torch.Tensor, logits: Sequence[torch.Tensor],
                        weight: float) -> torch.Tensor:
    """PER [BB PMR_PER]: ``-weight * beta_weak * sum_{j: rho_j > 1} H(d^j)``, the prototype entropy of every
    dominant modality, weighted by the mean PCE weight of the lagging ones (``beta_weak``); ``logits[j]`` are
    modality j's prototype logits (in the order of ``rho`` and ``beta``). Minimising it raises the dominant
    modalities' prototype entropy."""
    weak = (rho < 1).float()
    beta_weak = beta.sum() / weak.sum().clamp_min(1.0)
    dominant = (rho > 1).float()
    ent = torch.stack([prototype_entropy(z) for z in logits])
    return -weight * beta_weak * (dominant * ent).sum()


# =============================================================================== the plug-in
@METHODS.register("pmr")
class PMR(Plugin):
    """PMR: class prototypes per modality; prototypical cross-entropy for the lagging modality (+ PER).

    At the start of each epoch the prototypes ``C^m`` are recomputed (eval mode, no gradient) from a seeded
    random ``proto_fraction`` of the training set and blended ``C <- (1 - mu) C_new + mu C_old``. Per step,
    with ``d^m_i = -||f^m_i - C^m||``: ``rho_m`` from the summed true-class prototype probabilities of the
    paired rows, and the loss gains ``beta_m * CE(d^m, y)`` for every lagging modality (``rho_m < 1``) plus,
    in the first ``entropy_epochs`` epochs of the window, ``-mu_e * beta_weak * H(d^j)`` for every dominant
    modality j (``rho_j > 1``; ``beta_weak``: mean weight of the lagging ones). For two modalities this is
    ``CE + beta PCE_a + gamma PCE_v - mu (gamma H_a + beta H_v)`` [BB PMR_PER]. Base objective: the fused
    cross-entropy (as ``joint``), like the release.

    Logged per modality: ``pmr/<m>/ratio``, ``pmr/<m>/beta``, ``pmr/<m>/proto_acc`` (training batches,
    prototype classifier) as epoch means; loss terms ``loss_pmr_<m>``/``loss_pmr_entropy`` in ``train``.
    State (checkpointed): the prototypes.
    """

    @dataclass
    class Options:
        alpha: float = option(0.6, "PCE weight (the release defaults to 1.0; its bash.sh uses 3.0 for FiLM)",
                              "[BB trainer_config.yaml]", ge=0)
        momentum: float = option(0.5, "prototype EMA momentum mu, the weight of the old prototypes (release: 0.2)",
                                 "[BB]", ge=0, le=1)
        proto_fraction: float = option(0.1, "share of the training set used for each prototype update (1.0: all)",
                                       "[CODE: the first tenth of the shuffled batches]", gt=0, le=1)
        rule: str = option("step", "step: lagging modality weight alpha [CODE, BB HEAD]; clip: "
                           "alpha * clip(1/rho - 1, 0, 1) [BB earlier PMR_PER]", "[CODE]", choices=RULES)
        entropy_weight: float = option(0.01, "PER weight mu_e (0 disables); the entropy is summed over the batch",
                                       "[BB PMR_PER mu; spec eta = 0.01]", ge=0)
        entropy_epochs: int = option(10, "PER applies in epochs modulation_starts .. + entropy_epochs",
                                     "[BB norm_epoch]", ge=0)
        modulation_starts: int = option(0, "first epoch (0-based) with the PCE/PER terms", "[CODE]", ge=0)
        modulation_ends: Optional[int] = option(None, "last epoch (inclusive); null = all (release 0-100, BB 0-80)",
                                                "[RECON]", ge=0)

    needs_default_step = True  # adds loss terms to the default step

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.prototypes: Optional[Dict[str, torch.Tensor]] = None
        self.updates = 0

    def validate(self) -> None:
        check_window(self)

    def on_fit_start(self, trainer: Trainer) -> None:
        mods = encoder_modalities(trainer, self)
        self._mods = mods
        if self.prototypes is not None and set(self.prototypes) != set(mods):
            raise ValueError(f"pmr: checkpointed prototypes are for {sorted(self.prototypes)}, not {sorted(mods)}")

    # ------------------------------------------------------------------ prototypes
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.update_prototypes(trainer, epoch)

    @torch.no_grad()
    def update_prototypes(self, trainer, epoch: int) -> None:
        n = len(trainer.splits.train)
        k = max(1, math.ceil(self.proto_fraction * n))
        idx = torch.randperm(n, generator=epoch_generator(trainer.cfg.train.seed, epoch, salt=0x9A7))[:k].sort().values
        feats: Dict[str, list] = {m: [] for m in self._mods}
        labels = []
        # DataLoader iterators draw from the global RNG: a side pass so that prototypes do not shift training
        with trainer.side_pass():
            for batch in trainer.data.iter_batches("train", idx, train=False, modalities=self._mods):
                out = trainer.forward(batch.inputs, fuse=False)
                labels.append(batch.y)
                for m in self._mods:
                    feats[m].append(out.features[m].float())
        y = torch.cat(labels)
        new = {}
        for m in self._mods:
            mean, counts = class_means(torch.cat(feats[m]), y, trainer.num_classes)
            new[m] = update_prototypes(mean, counts, None if self.prototypes is None else self.prototypes[m],
                                       self.momentum)
        self.prototypes = new
        self.updates += 1
        self.log("proto_samples", float(k))

    # ------------------------------------------------------------------ loss
    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        if self.prototypes is None:
            raise RuntimeError("pmr: no prototypes yet (on_epoch_start did not run)")
        n = out.n_pair
        if n == 0:  # a modality-pure batch (Remix): no paired rows to compare the modalities on
            return
        sims = {m: prototype_logits(out.features[m], self.prototypes[m]) for m in self._mods}
        scores = trainer.all_reduce(prototype_scores({m: s[:n] for m, s in sims.items()}, batch.paired_labels(),
                                                     self._mods), "sum")
        rho, beta = pmr_coefficients(scores, self.alpha, self.rule)
        epoch = trainer.epoch
        if in_window(epoch, self.modulation_starts, self.modulation_ends) and n > 0:
            for i, m in enumerate(self._mods):
                losses[f"pmr_{m}"] = beta[i] * F.cross_entropy(sims[m], batch.labels(m))
            if self.entropy_weight > 0 and epoch <= self.modulation_starts + self.entropy_epochs:
                losses["pmr_entropy"] = entropy_regulariser(rho, beta, [sims[m] for m in self._mods],
                                                           self.entropy_weight)
        with torch.no_grad():
            for i, m in enumerate(self._mods):
                acc = (sims[m].argmax(1) == batch.labels(m)).float().mean()
                for key, v in (("ratio", rho[i]), ("beta", beta[i]), ("proto_acc", acc)):
                    self.log_mean(f"{m}/{key}", v)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"updates": self.updates, "prototypes": None if self.prototypes is None else
                {m: p.detach().cpu().clone() for m, p in self.prototypes.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        p = state.get("prototypes")
        self.prototypes = None if p is None else {m: v.detach().clone() for m, v in p.items()}


__all__ = ["PMR", "prototype_logits", "class_means", "update_prototypes", "prototype_scores", "pmr_coefficients",
           "prototype_entropy", "entropy_regulariser"]
