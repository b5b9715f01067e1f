"""Data Remixing (Ma, Chen, Deng, ICML 2025): decouple the multimodal samples, re-assemble modality-pure batches.

After ``warmup_epochs`` of ordinary training, at the start of every epoch each training sample is scored by every
modality's own head (evaluation mode, evaluation transforms) and *assigned to the modality whose prediction is
the least confident*, confidence being ``KL(p_m || uniform)`` (:func:`~mmbalance.functional.common.kl_from_uniform`).
The epoch then trains on **modality-pure batches**: a batch of modality m's samples carries only modality m (the
others are masked), with the loss ``CE(fused head on [f_m, 0, ...]) + γ · CE(head_m)`` [CODE ``train.py``].

It is built on the batch-composition layer DUS uses: :class:`RemixBatcher` is the ``batcher`` answer and yields
*independent* :class:`~mmbalance.data.base.IndexBatch` es whose per-modality index list is the batch for the
assigned modality and empty for the others, so the data layer really loads, and the model really encodes, only
the assigned modality (``Batch.inputs[other] is None``, ``Batch.n_pair == 0``). It reads the sample sequence from
the order layer (``epoch_order``: the default shuffle, or BSS's curriculum), keeping it within each modality's
stream. DUS and Remix therefore answer the same hook (they are interchangeable, never stacked) and stack with the
same loss/gradient methods; methods that compare modalities on paired rows (OGM-GE, AGM, PMR, BSS's recorder)
find none in a pure batch and act only in the warm-up epochs.

Tags: [CODE] MatthewMaxy/Remix_ICML2025 ``train.py`` / ``models/models.py``; [RECON] our choice. The paper's method
section was not readable offline (abstract only), so the fidelity note (``docs/methods/remix.md``) is against
the code.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Optional

import torch

from ..data.base import IndexBatch
from ..engine.options import option
from ..engine.plugin import Losses, Plugin, Record
from ..engine.samplers import Batcher
from ..functional.common import kl_from_uniform
from ..registry import METHODS
from .common import encoder_modalities, feature_sizes

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput

SCHEDULES = ("blocks", "interleaved")


# =============================================================================== the math (tested by hand)
def least_confident_modality(confidence: torch.Tensor) -> torch.Tensor:
    """``[n, M]`` confidences -> ``[n]`` index of the least confident modality. Ties go to the *last* modality
    (the code sends a sample to audio only if ``KL_audio < KL_video`` strictly, else to video)."""
    m = confidence.shape[1]
    return (m - 1) - confidence.flip(1).argmin(1)


def modality_streams(order: torch.Tensor, assignment: torch.Tensor, num_modalities: int) -> List[List[int]]:
    """The epoch's index sequence split by assigned modality, each keeping the order's sequence."""
    owner = assignment[order]
    return [order[owner == k].tolist() for k in range(num_modalities)]


def pure_batch(modality: str, indices: List[int], modalities: List[str]) -> IndexBatch:
    """A batch in which only ``modality`` receives rows (the other modalities' lists are empty)."""
    return IndexBatch([], per_modality={m: (indices if m == modality else []) for m in modalities})


class RemixBatcher(Batcher):
    """Cuts each modality's stream into batches of ``batch_size`` and yields modality-pure batches: all of one
    modality's batches, then the next one's (``blocks``, the code's schedule, in ``block_order``) or alternating
    between modalities (``interleaved``)."""

    def __init__(self, assignment: torch.Tensor, modalities: List[str], block_order: List[str], batch_size: int,
                 drop_last: bool = False, schedule: str = "blocks"):
        self.assignment = assignment.cpu()
        self.modalities, self.block_order = list(modalities), list(block_order)
        self.batch_size, self.drop_last, self.schedule = int(batch_size), drop_last, schedule

    def _chunks(self, stream: List[int]) -> List[List[int]]:
        b = self.batch_size
        stop = len(stream) - len(stream) % b if self.drop_last else len(stream)
        return [stream[s:s + b] for s in range(0, stop, b)]

    def batches(self, order: torch.Tensor, epoch: int) -> Iterator[IndexBatch]:
        streams = modality_streams(order.cpu(), self.assignment, len(self.modalities))
        chunks = {m: self._chunks(streams[self.modalities.index(m)]) for m in self.block_order}
        if self.schedule == "blocks":
            for m in self.block_order:
                for idx in chunks[m]:
                    yield pure_batch(m, idx, self.modalities)
            return
        for r in range(max((len(c) for c in chunks.values()), default=0)):
            for m in self.block_order:
                if r < len(chunks[m]):
                    yield pure_batch(m, chunks[m][r], self.modalities)

    def num_batches(self, num_indices: int) -> int:
        # exact when the order visits every training sample once (the default shuffle)
        counts = torch.bincount(self.assignment, minlength=len(self.modalities)).tolist()
        b = self.batch_size
        return sum(n // b if self.drop_last else -(-n // b) for n in counts)


# =============================================================================== the plug-in
@METHODS.register("remix")
class Remix(Plugin):
    """Data Remixing: each sample goes to its least confident modality; training on modality-pure batches.

    Warm-up (``epoch < warmup_epochs``): paired batches, ``CE(fused) + warmup_unimodal_weight · Σ_m CE(head_m)``.
    After: every ``reassign_every`` epochs a no-grad pass over the training set (evaluation mode and transforms)
    assigns each sample to ``argmin_m KL(softmax(head_m) || uniform)``; the epoch's batches are modality-pure and
    the loss of a batch of modality m is ``CE(fusion({m: f_m, others: 0})) + unimodal_weight · CE(head_m)``.
    Logged: ``remix/<m>/share`` (fraction of the training set assigned to m), ``remix/active``, and
    ``remix/assign_forwards`` (forward passes of the assignment pass, which the per-step cost does not count).
    """

    @dataclass
    class Options:
        warmup_epochs: int = option(10, "epochs of ordinary paired training before remixing (the code: 10 of 60)",
                                    "[CODE --warmup]", ge=0)
        warmup_unimodal_weight: Optional[float] = option(
            0.5, "weight of each unimodal CE during warm-up; null = train.unimodal_loss_weight",
            "[CODE --alpha/--beta]", ge=0)
        unimodal_weight: Optional[float] = option(
            1.0, "weight of the assigned modality's CE in a pure batch (gamma); null = train.unimodal_loss_weight",
            "[CODE --gamma1/--gamma2]", ge=0)
        masked_fused_loss: bool = option(True, "also train the fusion head on each pure batch with the other "
                                         "modalities' features set to zero (the code masks them)", "[CODE]")
        schedule: str = option("blocks", "blocks: all batches of one modality, then the next (the code: video's, "
                               "then audio's); interleaved: alternate modalities batch by batch", "[CODE]",
                               choices=SCHEDULES)
        block_order: Optional[List[str]] = option(None, "order of the modalities' batches; null = the dataset's "
                                                  "modality order (the code trains its second modality first)",
                                                  "[RECON]")
        reassign_every: int = option(1, "re-assign the samples every K epochs after warm-up", "[CODE: every epoch]",
                                     ge=1)
        batch_size: Optional[int] = option(None, "size of a pure batch; null = train.batch_size", "[CODE]", ge=1)

    wants_unimodal_loss = True
    needs_default_step = True  # its loss terms live in the default step's compute_loss

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.assignment: Optional[torch.Tensor] = None  # [N_train] modality index per sample
        self.assigned_at: Optional[int] = None

    def on_fit_start(self, trainer: Trainer) -> None:
        self.modalities = encoder_modalities(trainer, self)
        order = list(self.block_order or self.modalities)
        if sorted(order) != sorted(self.modalities):
            raise self.option_error("block_order", f"a permutation of the modalities {self.modalities}", order)
        self.order = order

    # ------------------------------------------------------------------ decoupling (per epoch)
    def active(self, epoch: int) -> bool:
        return epoch >= self.warmup_epochs

    @torch.no_grad()
    def confidences(self, trainer: Trainer) -> torch.Tensor:
        """``[N_train, M]``: KL from uniform of every modality head's prediction on every training sample."""
        rows, passes = [], 0
        with trainer.side_pass(train=False):
            for batch in trainer.data.iter_batches("train", train=False):
                out = trainer.forward(batch.inputs, fuse=False)
                rows.append(torch.stack([kl_from_uniform(out.logits[m]) for m in self.modalities], 1))
                passes += 1
        self.log("assign_forwards", passes)
        # every DDP rank scores the whole training set; averaging makes their assignments (and batch plans) identical
        return trainer.all_reduce(torch.cat(rows), "mean").cpu()

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        if not self.active(epoch):
            return
        due = self.assigned_at is None or (epoch - self.warmup_epochs) % self.reassign_every == 0
        if due and self.assigned_at != epoch:
            self.assignment = least_confident_modality(self.confidences(trainer))
            self.assigned_at = epoch

    def batcher(self, trainer: Trainer, epoch: int) -> Optional[Batcher]:
        if not self.active(epoch) or self.assignment is None:
            return None
        return RemixBatcher(self.assignment, self.modalities, self.order,
                            self.batch_size or trainer.cfg.train.batch_size, trainer.cfg.train.drop_last,
                            self.schedule)

    # ------------------------------------------------------------------ the objective
    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        weight = self.unimodal_weight if self.active(trainer.epoch) else self.warmup_unimodal_weight
        if weight is not None:
            for m, z in out.logits.items():
                losses[f"uni_{m}"] = weight * trainer.cross_entropy(z, batch.labels(m), batch.global_count(m))
        present = list(out.features)
        fusion = trainer.model.fusion
        if (self.masked_fused_loss and out.fused is None and fusion is not None and len(present) == 1
                and trainer.fused_loss_weight > 0):
            m = present[0]
            f = out.features[m]
            dims = feature_sizes(trainer.model, trainer.model.modalities)  # the fusion head's inputs, all of them
            feats = {k: f if k == m else f.new_zeros(f.shape[0], d) for k, d in dims.items()}
            with trainer.autocast():
                fused = fusion(feats)
            losses["fused"] = trainer.fused_loss_weight * trainer.cross_entropy(fused, batch.labels(m),
                                                                                 batch.global_count(m))

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        self.log("active", 1.0 if self.active(epoch) else 0.0)
        if self.assignment is not None and self.active(epoch):
            counts = torch.bincount(self.assignment, minlength=len(self.modalities)).double()
            for k, m in enumerate(self.modalities):
                self.log(f"{m}/share", float(counts[k] / max(float(counts.sum()), 1.0)))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"assignment": None if self.assignment is None else self.assignment.clone(),
                "assigned_at": self.assigned_at}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.assignment = None if state["assignment"] is None else state["assignment"].clone()
        self.assigned_at = state["assigned_at"]


__all__ = ["Remix", "RemixBatcher", "least_confident_modality", "modality_streams", "pure_batch"]
