"""SMV — Sample-level Modality Valuation and re-sampling (Wei, Feng, Wang, Hu, CVPR 2024, "Enhancing
Multimodal Cooperation via Sample-level Modality Valuation"; official code
GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation, ``sample_level.py`` / ``modality_level.py``).

Valuation [CODE ``execute_modulation``]. For every training sample, each modality's Shapley value under
the value function ``v(S) = |S| · 1[argmax fusion(features of S, others zeroed) = y]`` (``v(∅) = 0``):
``φ_m = Σ_{S ⊆ M∖{m}} |S|!(M−|S|−1)!/M! · (v(S ∪ {m}) − v(S))``. For two modalities this is the code's
``contrib_a = (v(a) + v(av) − v(v)) / 2`` with ``v(av) ∈ {0, 2}`` and ``v(a) ∈ {0, 1}``; the values sum to
``|M|`` when the fused prediction is right, so a modality's fair share is 1. The valuation is a forward pass
over the training split (evaluation transforms) at the start of each re-sampled epoch, i.e. after the
previous epoch's training, as the code does after every epoch from ``warmup − 1`` on.

Enhancement by re-sampling [CODE ``AV_KS_Dataset_sample_level`` / ``_modality_level``]. Extra copies of
a sample are added to the next epoch with every modality but the one to be enhanced zeroed before the
fusion head, so those copies train that modality (its encoder and its part of the fusion head) alone:

* ``level="sample"``: sample i gets ``copies(φ_im)`` extra copies that keep only modality m, with
  ``copies = 1`` if ``0.4 < φ < 0.9``, ``2`` if ``−0.1 < φ < 0.4``, ``3`` if ``φ < −0.1``, else 0
  (two modalities: φ = 0.5 → 1, 0 → 2, −0.5 → 3);
* ``level="modality"``: the mean contribution ``c_m`` is estimated on a random ``part_ratio`` subset of the
  training samples (with replacement); with gaps ``g_m = 1 − c_m`` the weaker modality (largest gap) gets
  ``int(d · N)`` copies of uniformly drawn samples (with replacement), ``d = α · (2/3) · (max g − min g)``
  (``func="linear"``; ``"tanh"``: ``tanh`` of it; ``"square"``: ``α · ((2/3)(max g − min g))^1.5``).

The first ``warmup`` epochs are plain joint training. The epoch's order is the shuffled multiset of
original indices plus copies (``epoch_order``), so a re-sampled epoch has more steps, as in the code.

How a copy is recognised. A batch carries dataset indices only, and a copy has the same index as its
original; rather than depending on positions in the order (which breaks under DDP sharding and dynamic
batchers), every occurrence of sample i gets the same *mixture* loss
``(1/T_i) · CE(fused) + Σ_m (c_im/T_i) · CE(fusion(only m))`` with ``T_i = 1 + Σ_m c_im``. Over an epoch
the T_i occurrences sum to ``CE(fused) + Σ_m c_im · CE(fusion(only m))`` — exactly the released code's
epoch objective (one plain copy plus c_im copies with the other modalities dropped) with the same number
of steps and the same samples in each batch; only which occurrence carries which term is spread evenly.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..engine.samplers import EpochOrder, epoch_generator
from ..functional.common import shapley_weight
from ..registry import METHODS

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.samplers import EpochOrder
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput, MultimodalNet


# =============================================================================== pure math (tested by hand)
def shapley_from_correct(correct: Dict[frozenset, torch.Tensor], modalities: Sequence[str]) -> torch.Tensor:
    """Per-sample Shapley values ``[n, M]`` from ``correct[S]`` (bool ``[n]``: fused prediction right with
    only the modalities in S) under ``v(S) = |S| · correct[S]``, ``v(∅) = 0``."""
    mods = list(modalities)
    M = len(mods)
    n = next(iter(correct.values())).shape[0]

    def v(S):
        return torch.zeros(n, dtype=torch.float64) if not S else len(S) * correct[frozenset(S)].double().cpu()

    phi = torch.zeros(n, M, dtype=torch.float64)
    for j, m in enumerate(mods):
        rest = [k for k in mods if k != m]
        for r in range(len(rest) + 1):
            coef = shapley_weight(r, M)
            for S in itertools.combinations(rest, r):
                phi[:, j] += coef * (v(set(S) | {m}) - v(set(S)))
    return phi.float()


def fused_correct_by_subset(fusion: Callable[[Dict[str, torch.Tensor]], torch.Tensor], feats: Dict[str, torch.Tensor],
                            y: torch.Tensor, modalities: Sequence[str]) -> Dict[frozenset, torch.Tensor]:
    """``{S: fused prediction correct with the features outside S zeroed}`` for every non-empty S."""
    mods = list(modalities)
    res = {}
    for r in range(1, len(mods) + 1):
        for S in itertools.combinations(mods, r):
            z = fusion({m: feats[m] if m in S else torch.zeros_like(feats[m]) for m in mods})
            res[frozenset(S)] = z.float().argmax(1) == y
    return res


def sample_copies(phi: torch.Tensor, bins: Sequence[Tuple[float, float, int]] = ((0.4, 0.9, 1), (-0.1, 0.4, 2),
                                                                                (-math.inf, -0.1, 3))) -> torch.Tensor:
    """Extra copies per sample and modality from its contribution: ``k`` where ``lo < φ < hi`` (strict, as the
    code's comparisons), 0 elsewhere."""
    out = torch.zeros(phi.shape, dtype=torch.long)
    for lo, hi, k in bins:
        out[(phi > lo) & (phi < hi)] = int(k)
    return out


def modality_resample(contrib: Sequence[float], n: int, alpha: float = 1.0, func: str = "linear") -> Tuple[int, int]:
    """``(number of extra copies, index of the modality to enhance)`` of the modality-level method."""
    gaps = [1.0 - float(c) for c in contrib]
    spread = (max(gaps) - min(gaps)) * 2.0 / 3.0
    if func == "linear":
        d = spread * alpha
    elif func == "tanh":
        d = math.tanh(spread * alpha)
    elif func == "square":
        d = spread ** 1.5 * alpha
    else:
        raise ValueError(f"smv: func must be linear, tanh or square, got {func!r}")
    return int(d * n), int(np.argmax(gaps))


def mixture_loss(fused: torch.Tensor, y: torch.Tensor, counts: torch.Tensor,
                 enhanced: Dict[int, torch.Tensor]) -> torch.Tensor:
    """Batch mean of ``(1/T_i) CE(fused_i) + sum_j (c_ij/T_i) CE(only_j_i)``, ``T_i = 1 + sum_j c_ij``: sample i's
    share of its epoch objective (one plain copy plus ``c_ij`` copies that keep only modality j) [CODE, spread
    evenly over its occurrences]. ``counts``: ``[n, M]`` extra copies; ``enhanced[j]``: the fused head's logits
    with every modality but j zeroed (only for the j that have copies)."""
    total = 1.0 + counts.sum(1)
    per = F.cross_entropy(fused.float(), y, reduction="none") / total
    for j, z in enhanced.items():
        per = per + counts[:, j] / total * F.cross_entropy(z.float(), y, reduction="none")
    return per.mean()


class ResampledOrder(EpochOrder):
    """Each original index once plus ``extra[i]`` more times, shuffled together with the epoch's generator
    (with no extra copies: the same permutation as :class:`~mmbalance.engine.samplers.RandomOrder`)."""

    def __init__(self, num_samples: int, seed: int, extra: Optional[torch.Tensor] = None):
        super().__init__(num_samples, seed)
        self.extra = extra

    def indices(self, epoch: int) -> torch.Tensor:
        base = torch.arange(self.num_samples)
        if self.extra is not None and int(self.extra.sum()) > 0:
            base = torch.cat([base, torch.repeat_interleave(torch.arange(self.num_samples), self.extra)])
        return base[torch.randperm(len(base), generator=epoch_generator(self.seed, epoch))]


# =============================================================================== the plug-in
@METHODS.register("smv")
class SMV(Plugin):
    """SMV: per-sample Shapley modality valuation, then re-sampling that trains the low-contributing modality.

    Needs a fusion head that accepts zeroed features (``concat``, ``sum``, ``film``, ``gated``).
    Modalities ≥ 3: the same value function and copy bins; "keep only m" zeroes all the others [RECON].
    Logged at valuation epochs: ``smv/contribution/<m>`` (mean φ over the valued samples),
    ``smv/extra/<m>`` (copies that enhance m) and ``smv/extra_total``; modality level also
    ``smv/difference``.
    """

    @dataclass
    class Options:
        level: str = option("sample", "sample: per-sample copies of the low-contribution modality (the paper's main "
                            "method); modality: copies for the globally weaker modality (BalanceBenchmark's "
                            "default)", "[PAPER/CODE]", choices=("sample", "modality"))
        warmup: int = option(5, "epochs of plain joint training before re-sampling starts", "[CODE --warmup 5]", ge=0)
        every: int = option(1, "re-value every this many epochs (the copies are kept in between)", "[CODE]", ge=1)
        part_ratio: float = option(0.2, "share of the training set (with replacement) that estimates the "
                                   "modality-level contributions", "[CODE --part_ratio]", gt=0, le=1)
        alpha: float = option(1.0, "scale of the modality-level re-sampling amount (BalanceBenchmark: 0.5)",
                              "[CODE modality_level.py]")
        func: str = option("linear", "modality-level amount function", "[CODE]",
                           choices=("linear", "tanh", "square"))

    needs_default_step = True  # re-weights the default step's fused loss

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.counts: Optional[torch.Tensor] = None  # [N, M] extra copies per sample and enhanced modality
        self.valued_epoch = -1
        self.contribution: Dict[str, float] = {}
        self._counts_dev: Optional[torch.Tensor] = None
        self._active: List[int] = []

    # ------------------------------------------------------------------ setup
    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        if model.fusion is None:
            raise ValueError(f"smv values modalities through the fusion head; the model has none "
                             f"(modalities {model.modalities})")
        self.modalities = list(trainer.active_modalities)

    def on_fit_start(self, trainer: Trainer) -> None:
        self.n = len(trainer.splits.train)
        self.order = ResampledOrder(self.n, trainer.cfg.train.seed, self._extra())

    def _extra(self):
        return None if self.counts is None else self.counts.sum(1)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if epoch >= self.warmup and (epoch - self.warmup) % self.every == 0 and self.valued_epoch != epoch:
            self.value_and_resample(trainer, epoch)
        self.order.extra = self._extra()
        self._counts_dev = None if self.counts is None else self.counts.to(trainer.device).float()
        self._active = [] if self.counts is None else [
            j for j in range(len(self.modalities)) if int(self.counts[:, j].sum()) > 0]

    def epoch_order(self, trainer: Trainer, epoch: int) -> Optional[EpochOrder]:
        return self.order

    # ------------------------------------------------------------------ valuation
    @torch.no_grad()
    def contributions(self, trainer, indices: torch.Tensor) -> torch.Tensor:
        """Shapley values ``[len(indices), M]`` of the training samples ``indices`` (in that order)."""
        phis = []
        # no RNG fork: the valuation's loader draws from the run's stream, as when the published grids ran
        with trainer.side_pass(fork_rng=False):
            for batch in trainer.data.iter_batches("train", indices, train=False):
                out = trainer.forward(batch.inputs, fuse=False)
                with trainer.autocast():
                    correct = fused_correct_by_subset(trainer.model.fusion, out.features, batch.y, self.modalities)
                phis.append(shapley_from_correct(correct, self.modalities))
        return torch.cat(phis) if phis else torch.zeros(0, len(self.modalities))

    def value_and_resample(self, trainer, epoch: int) -> None:
        g = torch.Generator().manual_seed(int(trainer.cfg.train.seed) * 1_000_003 + int(epoch) * 7_919 + 4242)
        M = len(self.modalities)
        counts = torch.zeros(self.n, M, dtype=torch.long)
        if self.level == "sample":
            phi = self.contributions(trainer, torch.arange(self.n))
            counts = sample_copies(phi)
        else:
            k = max(1, int(self.n * self.part_ratio))
            part = torch.randint(0, self.n, (k,), generator=g)
            phi = self.contributions(trainer, part)
            num, weak = modality_resample(phi.mean(0).tolist(), self.n, self.alpha, self.func)
            if num > 0:
                chosen = torch.randint(0, self.n, (num,), generator=g)
                counts[:, weak] = torch.bincount(chosen, minlength=self.n)
            self.log("difference", num / self.n)
        self.counts = counts
        self.valued_epoch = epoch
        self.contribution = {m: float(v) for m, v in zip(self.modalities, phi.mean(0).tolist())}
        for j, m in enumerate(self.modalities):
            self.log(f"contribution/{m}", self.contribution[m])
            self.log(f"extra/{m}", int(counts[:, j].sum()))
        self.log("extra_total", int(counts.sum()))

    # ------------------------------------------------------------------ the re-weighted fused loss
    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        if self._counts_dev is None or not self._active or out.fused is None or "fused" not in losses:
            return
        y = batch.paired_labels()
        c = self._counts_dev[batch.paired_index()]
        feats = out.paired_features()
        fusion = trainer.model.fusion
        assert fusion is not None  # configure_model refuses a model without one
        with trainer.autocast():
            only = {j: fusion({k: f if k == self.modalities[j] else torch.zeros_like(f) for k, f in feats.items()})
                    for j in self._active}
        losses["fused"] = trainer.fused_loss_weight * mixture_loss(out.fused, y, c, only)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"counts": None if self.counts is None else self.counts.clone(), "valued_epoch": self.valued_epoch,
                "contribution": dict(self.contribution)}

    def load_state_dict(self, state):
        self.counts = None if state.get("counts") is None else state["counts"].clone()
        self.valued_epoch = int(state.get("valued_epoch", -1))
        self.contribution = dict(state.get("contribution", {}))
