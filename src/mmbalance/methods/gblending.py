"""G-Blending — Gradient-Blending (Wang, Tran, Feiszli, CVPR 2020, "What makes training multi-modal
classification networks hard?"), online variant.

The model is trained on a blend of losses, one per head: the fused head and each modality's own head,
``L = w_fused · CE(fused) + Σ_m w_m · CE(head_m)``. Each weight is proportional to how much that head
*generalises* per unit of *overfitting* it causes, measured on a held-out set:

* ``O_t = L^V_t − L^T_t`` — overfitting at checkpoint t (held-out loss minus training loss);
* ``ΔG = L^V_N − L^V_{N+n}`` — generalisation gain over n epochs (held-out loss decrease);
* ``ΔO = O_{N+n} − O_N`` — overfitting increase over the same n epochs;
* ``w_k ∝ ΔG_k / ΔO_k²``, normalised to sum to one (the paper's optimal-blend proposition; the OGR is
  ``ΔO / ΔG``) [PAPER].

Online G-Blend re-estimates the weights every ``super_epoch`` epochs [PAPER Alg. "online", CODE
BalanceBenchmark ``GBlending_trainer.py``, MultiBench ``gradient_blend.py``]: from the current weights,
each head is trained *on a copy of the model* for ``probe_epochs`` epochs, alone (unimodal head k: encoder
k + head k on CE; fused head: all encoders + fusion on the fused CE), and its train/held-out losses before
and after that probe give ``ΔG_k`` and ``ΔO_k``. The copies are then thrown away; the main model trains
the next super-epoch with the new weights. No official code exists; both public re-implementations do
exactly this (BalanceBenchmark: ``super_epoch = 10``).

Held-out slice. The paper holds out part of the *training* data (MultiBench: the first 8 %). We hold out
a seeded, class-stratified ``holdout_fraction`` of the train split: those samples are removed from the
training order (``epoch_order``) and used only to measure held-out losses. ``holdout="val"`` uses the
validation split instead (BalanceBenchmark's choice, where "val" is often the test set) and warns: the
validation split then steers both the loss weights and the model selection.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass
from typing import Any, Dict, FrozenSet, Optional, Sequence, TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..engine.optim import build_optimizer
from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..engine.samplers import IndexListOrder
from ..registry import METHODS

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.samplers import EpochOrder
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput, MultimodalNet


FUSED = "fused"


# =============================================================================== pure math (tested by hand)
def blend_weights(before: Dict[str, Sequence[float]], after: Dict[str, Sequence[float]],
                  negative_gain: str = "abs", eps: float = 1e-12) -> Dict[str, float]:
    """Normalised G-Blend weights from ``{head: (train_loss, heldout_loss)}`` at the start and end of a probe.

    ``w_k ∝ g_k / ΔO_k²`` with ``ΔG_k = L^V_start − L^V_end`` and ``ΔO_k = (L^V − L^T)_end − (L^V − L^T)_start``.
    ``negative_gain`` says what a head whose held-out loss *rose* gets: ``"abs"`` uses ``|ΔG|`` (BalanceBenchmark
    and MultiBench take the absolute value) and ``"zero"`` gives it weight 0. If every raw weight is zero the
    weights are uniform.
    """
    if negative_gain not in ("abs", "zero"):
        raise ValueError(f"gblending: negative_gain must be 'abs' or 'zero', got {negative_gain!r}")
    raw = {}
    for k in before:
        (t0, v0), (t1, v1) = before[k], after[k]
        gain = v0 - v1
        d_over = (v1 - t1) - (v0 - t0)
        g = abs(gain) if negative_gain == "abs" else max(gain, 0.0)
        raw[k] = g / (d_over * d_over + eps)
    total = sum(raw.values())
    if not math.isfinite(total) or total <= 0:
        return {k: 1.0 / len(raw) for k in raw}
    return {k: v / total for k, v in raw.items()}


def stratified_holdout(labels: torch.Tensor, fraction: float, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded, class-stratified ``fraction`` of the samples (at least one per class
    with two or more samples)."""
    if not 0 < fraction < 1:
        raise ValueError(f"gblending: holdout_fraction must be in (0, 1), got {fraction}")
    labels = labels.cpu()
    g = torch.Generator().manual_seed(int(seed) * 7919 + 17)
    picked = []
    for c in torch.unique(labels).tolist():
        idx = (labels == c).nonzero().flatten()
        if len(idx) < 2:
            continue
        k = min(len(idx) - 1, max(1, round(fraction * len(idx))))
        picked.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    if not picked:
        raise ValueError("gblending: the train split is too small to hold out a slice")
    return torch.sort(torch.cat(picked)).values


def _labels(batch, head: str) -> torch.Tensor:
    """The labels of a head's rows: the paired rows for the fused head, the modality's own for the others."""
    return batch.paired_labels() if head == FUSED else batch.labels(head)


# =============================================================================== the plug-in
@METHODS.register("gblending")
class GBlending(Plugin):
    """G-Blending, online: per-head loss weights ``w_k ∝ ΔG_k / ΔO_k²`` re-estimated every super-epoch.

    Logged per epoch: ``gblending/w/<head>`` (the weights in force) and, at estimation epochs,
    ``gblending/G/<head>`` and ``gblending/O/<head>`` (``ΔG`` and ``ΔO``).
    Cost: each estimation trains M + 1 probes for ``probe_epochs`` epochs (M unimodal, 1 fused).
    """

    @dataclass
    class Options:
        super_epoch: int = option(10, "epochs between two weight estimations; the first is at epoch 0",
                                  "[CODE BalanceBenchmark super_epoch: 10; MultiBench gb_epoch 20]", ge=1)
        probe_epochs: Optional[int] = option(None, "epochs each head is trained on a throw-away copy to measure "
                                             "dG/dO; null = super_epoch", "[PAPER/CODE]", ge=1)
        holdout: str = option("train", "train: hold out part of the training split [PAPER]; val: the validation "
                              "split, which then also drives model selection (a warning says so) [CODE BB]",
                              "[PAPER]", choices=("train", "val"))
        holdout_fraction: float = option(0.1, "share of the train split held out with holdout=train (stratified, "
                                         "seeded by train.seed; MultiBench: 0.08)", "[RECON]", gt=0, lt=1)
        negative_gain: str = option("abs", "weight of a head whose held-out loss rose: abs = |dG|/dO^2 [CODE BB + "
                                    "MultiBench]; zero [RECON]", "[CODE]", choices=("abs", "zero"))
        eps: float = option(1e-12, "added to dO^2 so a head without overfitting change gets a large, finite weight",
                            "[RECON]", gt=0)
        probe_lr: Optional[float] = option(None, "learning rate of the probe optimiser (same type as optim); "
                                           "null = the main optimiser's current rate", "[CODE BB]", gt=0)

    wants_unimodal_loss = True
    probe_epochs: int  # null resolved in __init__

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.probe_epochs = self.probe_epochs if self.probe_epochs is not None else self.super_epoch
        self.weights: Optional[Dict[str, float]] = None
        self.weights_epoch = -1
        self.last_estimate: Dict[str, Dict[str, float]] = {}

    def provides(self) -> FrozenSet[str]:
        # only the train hold-out changes the epoch order
        return super().provides() - ({"epoch_order"} if self.holdout == "val" else set())

    # ------------------------------------------------------------------ setup
    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        if model.fusion is None:
            raise ValueError("gblending needs a fusion head (at least two modalities); "
                             f"the model has modalities {model.modalities}")

    def on_fit_start(self, trainer: Trainer) -> None:
        self.heads = list(trainer.active_modalities) + [FUSED]
        n = len(trainer.splits.train)
        if self.holdout == "train":
            self.heldout = stratified_holdout(trainer.splits.train.labels, self.holdout_fraction,
                                              trainer.cfg.train.seed)
            keep = torch.ones(n, dtype=torch.bool)
            keep[self.heldout] = False
            self.train_part = keep.nonzero().flatten()
            self.order: Optional[EpochOrder] = IndexListOrder(self.train_part, trainer.cfg.train.seed)
        else:
            warnings.warn("gblending: holdout='val' estimates the loss weights on the validation split, which also "
                          "selects the reported checkpoint; the selection is then no longer independent of training",
                          stacklevel=2)
            self.heldout = torch.arange(len(trainer.splits.val))
            self.train_part = torch.arange(n)
            self.order = None

    def epoch_order(self, trainer: Trainer, epoch: int) -> Optional[EpochOrder]:
        return self.order

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch % self.super_epoch == 0 and self.weights_epoch != epoch:
            self.estimate(trainer, epoch)
        elif self.weights is None:  # resumed inside a super-epoch from a checkpoint without weights
            self.estimate(trainer, epoch)
        assert self.weights is not None  # estimated above when there were none
        for k, w in self.weights.items():
            self.log(f"w/{k}", w)

    # ------------------------------------------------------------------ estimation
    def estimate(self, trainer, epoch: int) -> Dict[str, float]:
        """Probe every head on a copy of the model and set ``self.weights``."""
        heldout_split = "train" if self.holdout == "train" else "val"
        before, after = {}, {}
        with trainer.side_pass(train=True):  # probes must not shift the main run's random streams
            for j, head in enumerate(self.heads):
                probe = copy.deepcopy(trainer.model)
                mods = list(trainer.active_modalities) if head == FUSED else [head]
                before[head] = self._losses(trainer, probe, head, mods, heldout_split)
                self._train_probe(trainer, probe, head, mods, epoch, salt=1000 + j)
                after[head] = self._losses(trainer, probe, head, mods, heldout_split)
                del probe
        w = blend_weights(before, after, self.negative_gain, self.eps)
        # ranks must agree exactly (float noise across devices); average them
        vec = trainer.all_reduce(torch.tensor([w[k] for k in self.heads], device=trainer.device), "mean")
        self.weights = {k: float(v) for k, v in zip(self.heads, vec.tolist())}
        self.weights_epoch = epoch
        self.last_estimate = {k: {"train_before": before[k][0], "heldout_before": before[k][1],
                                  "train_after": after[k][0], "heldout_after": after[k][1]} for k in self.heads}
        for k in self.heads:
            (t0, v0), (t1, v1) = before[k], after[k]
            self.log(f"G/{k}", v0 - v1)
            self.log(f"O/{k}", (v1 - t1) - (v0 - t0))
        return self.weights

    def _head_logits(self, trainer, model, head, inputs):
        with trainer.autocast():
            out = model(inputs, fuse=head == FUSED)
        return (out.fused if head == FUSED else out.logits[head]).float()

    @torch.no_grad()
    def _mean_loss(self, trainer, model, head, mods, split, indices) -> float:
        total, count = 0.0, 0
        for batch in trainer.data.iter_batches(split, indices, train=False, modalities=mods):
            z = self._head_logits(trainer, model, head, batch.inputs)
            total += float(F.cross_entropy(z, _labels(batch, head), reduction="sum"))
            count += z.shape[0]
        return total / max(count, 1)

    def _losses(self, trainer, model, head, mods, heldout_split):
        was = model.training
        model.eval()
        lt = self._mean_loss(trainer, model, head, mods, "train", self.train_part)
        lv = self._mean_loss(trainer, model, head, mods, heldout_split, self.heldout)
        model.train(was)
        return lt, lv

    def _train_probe(self, trainer, model, head, mods, epoch, salt):
        if head == FUSED:
            params = [p for m in mods for p in model.encoders[m].parameters()] + list(model.fusion.parameters())
        else:
            params = list(model.encoders[head].parameters()) + list(model.heads[head].parameters())
        params = [p for p in params if p.requires_grad]
        o = trainer.cfg.optim
        lr = float(self.probe_lr) if self.probe_lr is not None else trainer.optimizer.param_groups[0]["lr"]
        opt = build_optimizer(o, params, lr)
        model.train()
        for e in range(self.probe_epochs):
            for batch in trainer.data.iter_batches("train", self.train_part, train=True, modalities=mods,
                                              epoch=epoch * 1000 + e, salt=salt, shuffle=True):
                z = self._head_logits(trainer, model, head, batch.inputs)
                loss = F.cross_entropy(z, _labels(batch, head))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if o.grad_clip:
                    torch.nn.utils.clip_grad_norm_(params, o.grad_clip)
                opt.step()

    # ------------------------------------------------------------------ the blended loss
    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        w = self.weights
        assert w is not None, "on_epoch_start estimates the weights"
        if out.fused is not None:
            losses["fused"] = w[FUSED] * F.cross_entropy(out.fused.float(), batch.paired_labels())
        for m, z in out.logits.items():
            losses[f"uni_{m}"] = w[m] * F.cross_entropy(z.float(), batch.labels(m))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"weights": dict(self.weights) if self.weights else None, "weights_epoch": self.weights_epoch,
                "last_estimate": copy.deepcopy(self.last_estimate)}

    def load_state_dict(self, state):
        self.weights = dict(state["weights"]) if state.get("weights") else None
        self.weights_epoch = int(state.get("weights_epoch", -1))
        self.last_estimate = copy.deepcopy(state.get("last_estimate", {}))
