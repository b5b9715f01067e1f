"""The base objective every method starts from, with DDP's global-batch weighting."""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional

import torch
import torch.nn.functional as F

from ..data.batch import Batch
from ..models import ModelOutput

if TYPE_CHECKING:
    from .trainer import Trainer


def cross_entropy(logits: torch.Tensor, y: torch.Tensor, world_size: int = 1,
                  global_count: Optional[int] = None) -> torch.Tensor:
    """Mean cross-entropy; under DDP, the sum over this rank's rows divided by the global count times the
    world size, so that DDP's gradient average is the gradient of the global-batch mean even when shards
    differ in size (nested DUS batches)."""
    if world_size == 1 or global_count is None:
        return F.cross_entropy(logits.float(), y)
    return F.cross_entropy(logits.float(), y, reduction="sum") * (world_size / max(global_count, 1))


def _weighted(weight: float, loss: torch.Tensor) -> torch.Tensor:
    # a weight of 1 (the default) is an exact identity: skip the extra kernel and autograd node per step
    return loss if weight == 1.0 else weight * loss


def base_losses(trainer: "Trainer", batch: Batch, out: ModelOutput) -> Dict[str, torch.Tensor]:
    """Fused CE on the paired rows (``fused``) + per-modality CE on each modality's own rows (``uni_<m>``)
    when the method wants them, else the monitor heads' CE on detached features (``monitor_<m>``)."""
    ws = trainer.world_size
    losses: Dict[str, torch.Tensor] = {}
    if out.fused is not None and trainer.fused_loss_weight > 0:
        losses["fused"] = _weighted(trainer.fused_loss_weight,
                                    cross_entropy(out.fused, batch.paired_labels(), ws, batch.global_count()))
    if trainer.unimodal_loss_weight > 0:
        for m, z in out.logits.items():
            losses[f"uni_{m}"] = _weighted(trainer.unimodal_loss_weight,
                                           cross_entropy(z, batch.labels(m), ws, batch.global_count(m)))
    elif trainer.cfg.train.monitor_heads:
        for m, f in out.features.items():
            with trainer.autocast():
                z = trainer.model.heads[m](f.detach())
            losses[f"monitor_{m}"] = cross_entropy(z, batch.labels(m), ws, batch.global_count(m))
    return losses


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""


def nonfinite_error(trainer: "Trainer", where: str, losses: Dict[str, torch.Tensor]) -> NonFiniteLossError:
    """The error naming where the loss stopped being finite, its terms, and the checkpoint that is kept."""
    terms = ", ".join(f"{k}={float(v.detach() if torch.is_tensor(v) else v):.4g}" for k, v in losses.items()) \
        if losses else "?"
    out = trainer.out
    keep = (f" The last good checkpoint is kept: {out / 'last.pt'} (after epoch {trainer.epoch - 1})."
            if out and (out / "last.pt").exists() and (trainer.epoch > 0 or trainer.resumed)
            else " No checkpoint of this run had been written yet.")
    return NonFiniteLossError(f"non-finite training loss at {where} ({terms}). Lower optim.lr, set optim.grad_clip, "
                              f"or check the inputs.{keep}")


def accumulate_(sums: Dict[str, torch.Tensor], terms: Dict[str, torch.Tensor]) -> None:
    """Add a step's loss terms to the epoch's running sums, in place where the dtypes agree (no new tensor per
    term and step); a term seen for the first time starts as a copy."""
    for k, v in terms.items():
        if k in sums and sums[k].dtype == v.dtype:
            sums[k].add_(v)
        elif k in sums:
            sums[k] = sums[k] + v
        else:
            sums[k] = v.clone()
