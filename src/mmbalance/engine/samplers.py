"""Sampling in two layers, so that methods acting on each can be stacked:

* an **order** decides which dataset indices an epoch visits and in what sequence
  (:class:`RandomOrder` by default; BSS replaces it with curriculum / probability-biased orders);
* a **batcher** cuts that sequence into :class:`~mmbalance.data.base.IndexBatch` es
  (:class:`FixedBatcher` by default; DUS replaces it with per-modality sizes).

:class:`EpochBatchSampler` combines them into a ``torch.utils.data`` batch sampler with
``set_epoch`` and a saved position. Under DDP every rank computes the same global batches and keeps
its share of each (:func:`shard_batch`: rank r takes positions r, r + W, ...), so ``train.batch_size``
is the global batch and a W-rank run follows the same data as a 1-rank run.
"""
from __future__ import annotations

from typing import Any, Dict, Iterator

import torch
from torch.utils.data import Sampler

from ..data.base import IndexBatch


def epoch_generator(seed: int, epoch: int, salt: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, salt): identical on every rank and after resume."""
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch) * 7_919 + int(salt)) % (2**63 - 1))


class EpochOrder:
    """Which indices an epoch visits, in order. Subclasses override :meth:`indices`."""

    def __init__(self, num_samples: int, seed: int = 0):
        self.num_samples = int(num_samples)
        self.seed = int(seed)

    def indices(self, epoch: int) -> torch.Tensor:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


class RandomOrder(EpochOrder):
    """A fresh seeded permutation every epoch (ordinary shuffling)."""

    def indices(self, epoch: int) -> torch.Tensor:
        return torch.randperm(self.num_samples, generator=epoch_generator(self.seed, epoch))


class IndexListOrder(EpochOrder):
    """A fixed list of dataset indices, reshuffled every epoch with a seeded generator (or kept in order)."""

    def __init__(self, indices, seed: int = 0, shuffle: bool = True, salt: int = 0):
        indices = torch.as_tensor(indices, dtype=torch.long).cpu()
        super().__init__(len(indices), seed)
        self.list = indices
        self.shuffle, self.salt = shuffle, int(salt)

    def indices(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return self.list.clone()
        return self.list[torch.randperm(len(self.list), generator=epoch_generator(self.seed, epoch, self.salt))]


class SequentialOrder(EpochOrder):
    """0..N-1 (evaluation)."""

    def indices(self, epoch: int) -> torch.Tensor:
        return torch.arange(self.num_samples)


class Batcher:
    """Cuts an epoch's index sequence into batches."""

    def batches(self, order: torch.Tensor, epoch: int) -> Iterator[IndexBatch]:
        raise NotImplementedError

    def num_batches(self, num_indices: int) -> int:
        raise NotImplementedError

    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


class FixedBatcher(Batcher):
    def __init__(self, batch_size: int, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.drop_last = drop_last

    def batches(self, order, epoch):
        n = len(order)
        stop = n - n % self.batch_size if self.drop_last else n
        for s in range(0, stop, self.batch_size):
            yield IndexBatch(order[s:s + self.batch_size].tolist())

    def num_batches(self, num_indices):
        return num_indices // self.batch_size if self.drop_last else -(-num_indices // self.batch_size)


def shard_batch(batch: IndexBatch, rank: int, world_size: int) -> IndexBatch:
    """Rank ``rank``'s share of a global batch: every ``world_size``-th index starting at ``rank``.

    Interleaving keeps a nested batch nested: modality m's samples are the global first ``n_m``, so on
    each rank they are again a prefix, of length ``ceil((n_m - rank) / world_size)``.
    """
    if world_size == 1:
        return batch
    idx = list(batch)[rank::world_size]
    sizes = None
    if batch.sizes:
        sizes = {m: max(0, -(-(n - rank) // world_size)) for m, n in batch.sizes.items()}
    per_modality = None
    if batch.per_modality:  # independent: each list's paired prefix shards onto this rank's paired part
        per_modality = {m: v[rank::world_size] for m, v in batch.per_modality.items()}
    shard = IndexBatch(idx, None if per_modality else sizes, per_modality)
    # the global sizes let the trainer weight each rank's loss so that DDP's gradient average equals the
    # gradient of the global-batch mean, also when shards are uneven
    shard.global_n = len(batch)
    shard.global_sizes = dict(batch.sizes) if batch.sizes else None
    shard.global_n_pair = len(batch) if batch.per_modality else min((batch.sizes or {"": len(batch)}).values())
    return shard


class EpochBatchSampler(Sampler):
    """Batch sampler = order + batcher, with ``set_epoch``, resumable position and rank sharding."""

    def __init__(self, order: EpochOrder, batcher: Batcher, rank: int = 0, world_size: int = 1):
        self.order = order
        self.batcher = batcher
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.position = 0  # batches already yielded in this epoch (for mid-epoch resume)

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.position = 0
        self.epoch = int(epoch)

    def __iter__(self):
        order = self.order.indices(self.epoch)
        for b, batch in enumerate(self.batcher.batches(order, self.epoch)):
            if b < self.position:
                continue
            self.position = b + 1
            yield shard_batch(batch, self.rank, self.world_size)
        self.position = 0

    def __len__(self) -> int:
        return self.batcher.num_batches(len(self.order.indices(self.epoch)))

    def state_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position, "order": self.order.state_dict(),
                "batcher": self.batcher.state_dict()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self.order.load_state_dict(state.get("order", {}))
        self.batcher.load_state_dict(state.get("batcher", {}))
