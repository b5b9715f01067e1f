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
from typing import Any, Dict, List, Optional

import torch
import torch.nn.functional as F

from ..engine.plugin import Plugin
from ..engine.samplers import epoch_generator
from ..registry import METHODS
from .ogm_ge import EpochMeans, check_window, in_window, option_error

RULES = ("step", "clip")


# =============================================================================== the math
def prototype_logits(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """``-||f_i - c_k||_2`` for every sample i and class k (plain, not squared, distance) [CODE]."""
    return -torch.cdist(features.float(), prototypes.float().to(features.device))


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int):
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
    return torch.stack([F.softmax(logits[m].detach(), dim=1).gather(1, y.view(-1, 1)).sum() for m in mods])


def pmr_coefficients(scores: torch.Tensor, alpha: float, rule: str = "step"):
    """Return ``(rho, beta)``: ratios ``rho_j = s_j / mean_{k != j} s_k`` and the PCE weight of each modality.

    Only modalities with ``rho_j < 1`` (lagging) get a weight: ``alpha`` (``rule="step"``, the release and
    BB HEAD) or ``alpha * clip(1/rho_j - 1, 0, 1)`` (``rule="clip"``, BB's earlier ``PMR_PER``) [CODE/BB;
    the ratio generalises the two-modality ``score_a / score_v`` to M modalities, RECON].
    """
    m = scores.shape[-1]
    others = (scores.sum(-1, keepdim=True) - scores) / (m - 1)
    rho = scores / others.clamp_min(1e-12)
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

    Args:
        alpha: PCE weight. Default 0.6 [BB ``trainer_config.yaml``]; the release defaults to 1.0 (its
            ``bash.sh`` uses 3.0 for FiLM).
        momentum: prototype EMA momentum ``mu`` (weight of the old prototypes). Default 0.5 [BB]; the
            release defaults to 0.2 (``--momentum_coef``; ``bash.sh`` 0.0).
        proto_fraction: share of the training set used for each prototype update. Default 0.1 [CODE: the
            first tenth of the shuffled training batches]; 1.0 = the whole set.
        rule: ``step`` (lagging modality weight ``alpha``) [CODE, BB HEAD] or ``clip``
            (``alpha * clip(1/rho - 1, 0, 1)``) [BB earlier PMR_PER]. Default ``step``.
        entropy_weight: PER weight ``mu_e`` (0 disables). Default 0.01 [BB PMR_PER ``mu``; the spec's
            "eta = 0.01"; BB HEAD dropped PER and uses eta for its 3-modality OGM-style variant instead].
            The entropy is summed over the batch, as there.
        entropy_epochs: PER is applied in epochs ``modulation_starts .. modulation_starts + entropy_epochs``.
            Default 10 [BB ``norm_epoch``].
        modulation_starts / modulation_ends: epochs (0-based, inclusive) with the PCE/PER terms. Defaults 0 /
            null (all); the release uses 0-100, BB 0-80.

    Logged per modality: ``pmr/<m>/ratio``, ``pmr/<m>/beta``, ``pmr/<m>/proto_acc`` (training batches,
    prototype classifier) as epoch means; loss terms ``loss_pmr_<m>``/``loss_pmr_entropy`` in ``train``.
    State (checkpointed): the prototypes.
    """

    needs_default_step = True  # acts inside the default step (checked by check_plugins)

    def __init__(self, alpha: float = 0.6, momentum: float = 0.5, proto_fraction: float = 0.1, rule: str = "step",
                 entropy_weight: float = 0.01, entropy_epochs: int = 10, modulation_starts: int = 0,
                 modulation_ends: Optional[int] = None):
        n = "pmr"

        def number(arg, v, lo, hi=math.inf, lo_open=False):
            ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v <= hi and (
                v > lo if lo_open else v >= lo)
            if not ok:
                raise option_error(n, arg, f"a number in {'(' if lo_open else '['}{lo}, {hi}]", v)

        number("alpha", alpha, 0.0)
        number("momentum", momentum, 0.0, 1.0)
        number("proto_fraction", proto_fraction, 0.0, 1.0, lo_open=True)
        number("entropy_weight", entropy_weight, 0.0)
        if rule not in RULES:
            raise option_error(n, "rule", f"one of {', '.join(RULES)}", rule)
        if isinstance(entropy_epochs, bool) or not isinstance(entropy_epochs, int) or entropy_epochs < 0:
            raise option_error(n, "entropy_epochs", "an integer >= 0", entropy_epochs)
        check_window(n, modulation_starts, modulation_ends)
        self.alpha = float(alpha)
        self.momentum = float(momentum)
        self.proto_fraction = float(proto_fraction)
        self.rule = rule
        self.entropy_weight = float(entropy_weight)
        self.entropy_epochs = entropy_epochs
        self.modulation_starts = modulation_starts
        self.modulation_ends = modulation_ends
        # state
        self.prototypes: Optional[Dict[str, torch.Tensor]] = None
        self.updates = 0
        self._means = EpochMeans()

    def on_fit_start(self, trainer) -> None:
        mods = [m for m in trainer.active_modalities if m in trainer.model.encoders]
        if len(mods) < 2:
            raise ValueError(f"pmr needs at least two modalities, got {mods}")
        self._mods = mods
        if self.prototypes is not None and set(self.prototypes) != set(mods):
            raise ValueError(f"pmr: checkpointed prototypes are for {sorted(self.prototypes)}, not {sorted(mods)}")

    # ------------------------------------------------------------------ prototypes
    def on_epoch_start(self, trainer, epoch: int) -> None:
        self.update_prototypes(trainer, epoch)

    @torch.no_grad()
    def update_prototypes(self, trainer, epoch: int) -> None:
        n = len(trainer.splits.train)
        k = max(1, math.ceil(self.proto_fraction * n))
        idx = torch.randperm(n, generator=epoch_generator(trainer.cfg.train.seed, epoch, salt=0x9A7))[:k].sort().values
        feats: Dict[str, list] = {m: [] for m in self._mods}
        labels = []
        was = trainer.model.training
        devices = [trainer.device.index or 0] if trainer.device.type == "cuda" else []
        # DataLoader iterators draw from the global RNG: fork it so that prototypes do not shift training
        with torch.random.fork_rng(devices=devices):
            trainer.model.eval()
            for batch in trainer.iter_batches("train", idx, train=False, modalities=self._mods):
                out = trainer.forward(batch["inputs"], fuse=False)
                labels.append(batch["y"])
                for m in self._mods:
                    feats[m].append(out.features[m].float())
        trainer.model.train(was)
        y = torch.cat(labels)
        new = {}
        for m in self._mods:
            mean, counts = class_means(torch.cat(feats[m]), y, trainer.num_classes)
            new[m] = update_prototypes(mean, counts, None if self.prototypes is None else self.prototypes[m],
                                       self.momentum)
        self.prototypes = new
        self.updates += 1
        trainer.log("pmr/proto_samples", float(k))

    # ------------------------------------------------------------------ loss
    def compute_loss(self, trainer, batch, out, losses) -> None:
        if self.prototypes is None:
            raise RuntimeError("pmr: no prototypes yet (on_epoch_start did not run)")
        y = batch["y"]
        n = out.n_pair
        sims = {m: prototype_logits(out.features[m], self.prototypes[m]) for m in self._mods}
        scores = trainer.all_reduce(prototype_scores({m: s[:n] for m, s in sims.items()}, y[:n], self._mods), "sum")
        rho, beta = pmr_coefficients(scores, self.alpha, self.rule)
        epoch = trainer.epoch
        if in_window(epoch, self.modulation_starts, self.modulation_ends) and n > 0:
            for i, m in enumerate(self._mods):
                losses[f"pmr_{m}"] = beta[i] * F.cross_entropy(sims[m], y[: sims[m].shape[0]])
            if self.entropy_weight > 0 and epoch <= self.modulation_starts + self.entropy_epochs:
                weak = (rho < 1).float()
                beta_weak = beta.sum() / weak.sum().clamp_min(1.0)
                dominant = (rho > 1).float()
                ent = torch.stack([prototype_entropy(sims[m]) for m in self._mods])
                losses["pmr_entropy"] = -self.entropy_weight * beta_weak * (dominant * ent).sum()
        with torch.no_grad():
            for i, m in enumerate(self._mods):
                acc = (sims[m].argmax(1) == y[: sims[m].shape[0]]).float().mean()
                for key, v in (("ratio", rho[i]), ("beta", beta[i]), ("proto_acc", acc)):
                    self._means.add(f"pmr/{m}/{key}", v)

    def on_epoch_end(self, trainer, epoch, record) -> None:
        self._means.flush(trainer)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"updates": self.updates, "prototypes": None if self.prototypes is None else
                {m: p.detach().cpu().clone() for m, p in self.prototypes.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.updates = int(state.get("updates", 0))
        p = state.get("prototypes")
        self.prototypes = None if p is None else {m: v.detach().clone() for m, v in p.items()}


__all__ = ["PMR", "prototype_logits", "class_means", "update_prototypes", "prototype_scores", "pmr_coefficients",
           "prototype_entropy"]
