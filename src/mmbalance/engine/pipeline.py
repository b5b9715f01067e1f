"""The trainer's data access: loaders over the splits, batches moved to the device and transformed there."""
from __future__ import annotations

from typing import Callable, Dict, Iterator, List, Optional

import torch
from torch.utils.data import DataLoader

from ..config import Config
from ..data import BatchDataset, Splits
from ..data.base import passthrough_collate
from ..data.batch import Batch
from .samplers import EpochBatchSampler, FixedBatcher, IndexListOrder, SequentialOrder


class DataPipeline:
    """``trainer.data``: how the loop and plug-ins get device batches of a split (``iter_batches`` for a
    plug-in's own pass over some indices), with training or evaluation transforms."""

    def __init__(self, cfg: Config, splits: Splits, device: torch.device, resident: bool,
                 aug_generator: torch.Generator, modalities: Callable[[], List[str]]):
        self.cfg, self.splits, self.device, self.resident = cfg, splits, device, resident
        #: per-sample randomness of batch transforms (GPU augmentation), seeded and saved for exact resume
        self.aug_generator = aug_generator
        #: the modalities loaded by default (``Trainer.active_modalities``)
        self.modalities = modalities
        #: which splits are in training-transform mode (restored after a side pass)
        self.split_train: Dict[str, bool] = {}

    def loader(self, split: str, batch_sampler, modalities: Optional[List[str]] = None) -> DataLoader:
        return DataLoader(BatchDataset(self.splits[split], modalities or self.modalities()),
                          batch_sampler=batch_sampler, collate_fn=passthrough_collate,
                          num_workers=self.cfg.data.num_workers,
                          pin_memory=self.device.type == "cuda" and not self.resident)

    def eval_loader(self, split: str, modalities: Optional[List[str]] = None) -> DataLoader:
        sampler = EpochBatchSampler(SequentialOrder(len(self.splits[split])), FixedBatcher(self.cfg.eval.batch_size))
        return self.loader(split, sampler, modalities)

    def iter_batches(self, split: str, indices=None, train: bool = False, modalities: Optional[List[str]] = None,
                     batch_size: Optional[int] = None, shuffle: bool = False, epoch: int = 0,
                     salt: int = 0) -> Iterator[Batch]:
        """Device batches of ``split`` (optionally only ``indices``), with training or evaluation transforms;
        a seeded shuffle if ``shuffle``. For plug-ins' own passes (scoring, prototypes, probes)."""
        self.set_split_mode(split, train)
        if indices is None:
            indices = torch.arange(len(self.splits[split]))
        order = IndexListOrder(indices, self.cfg.train.seed, shuffle=shuffle, salt=salt)
        bs = int(batch_size or (self.cfg.train.batch_size if train else self.cfg.eval.batch_size))
        sampler = EpochBatchSampler(order, FixedBatcher(bs))
        sampler.set_epoch(epoch)
        for batch in self.loader(split, sampler, modalities):
            yield self.to_device(batch, split, train=train)

    def to_device(self, batch: Batch, split: str = "train", train: bool = True) -> Batch:
        """Move a batch to the device and apply the source's batch transform (e.g. GPU augmentation)."""
        nb = self.device.type == "cuda"
        cl = self.cfg.train.channels_last and self.device.type == "cuda"
        transform = getattr(self.splits[split], "batch_transform", None)
        on_device = batch.y.device == self.device and batch.y_mod is None  # resident data: no copy of the Batch
        moved = batch if on_device else batch.to(self.device, non_blocking=nb)
        for m, x in batch.inputs.items():
            if x is not None:
                x = x.to(self.device, non_blocking=nb)
                if transform is not None:
                    x = transform(m, x, train, self.aug_generator)
                if cl and x.dim() == 4:
                    x = x.contiguous(memory_format=torch.channels_last)
            moved.inputs[m] = x
        return moved

    def set_split_mode(self, split: str, train: bool) -> None:
        """Switch a split's source between training and evaluation transforms (if it has them)."""
        src = self.splits[split]
        if hasattr(src, "set_train"):
            src.set_train(train)
        self.split_train[split] = train
