"""The dataset contract every mmbalance dataset follows, and the in-memory implementation.

A *source* is any map-style dataset with:
  * ``modalities``: ordered list of modality names,
  * ``labels``: LongTensor [N] of class ids in ``[0, num_classes)``,
  * ``num_classes`` and ``class_names``,
  * ``__getitem__(i) -> {"inputs": {modality: Tensor}, "y": int, "index": int}``,
  * optionally ``load(i, modality) -> Tensor`` (load one modality of one sample only) and
    ``get_batch(indices: LongTensor, modality) -> Tensor`` (whole batch at once, no per-sample Python work),
  * optionally ``set_train(flag)`` to switch between training and evaluation transforms.

Batches are assembled by :class:`BatchDataset` from an :class:`IndexBatch` (a list of indices with
optional per-modality sizes) into a :class:`~mmbalance.data.batch.Batch`, so a modality asked for fewer
samples really loads and encodes fewer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .batch import Batch
from .validate import check_modality_array, integer_labels, require_two_classes, resolve_classes


class DataError(ValueError):
    """Bad input data; the message names the dataset, file, modality or sample at fault."""


class IndexBatch(list):
    """Dataset indices of one step. ``sizes[m]`` = how many of the leading indices modality ``m`` uses.

    Without ``sizes`` every modality uses all indices (an ordinary paired batch). With sizes, the
    batch is *nested*: the first ``min(sizes)`` indices are complete (the paired part). With
    ``per_modality`` it is *independent*: the indices are the paired part and each modality has its own list
    (paired part first, then extra samples of its own).
    """

    # set only on a DDP shard (``samplers.shard_batch``; read with getattr): the global batch's size, sizes
    # and paired count
    global_n: int
    global_sizes: Optional[Dict[str, int]]
    global_n_pair: int

    def __init__(self, indices: Sequence[int], sizes: Optional[Dict[str, int]] = None,
                 per_modality: Optional[Mapping[str, Sequence[int]]] = None):
        super().__init__(int(i) for i in indices)
        self.sizes = dict(sizes) if sizes else None
        #: *independent* batch: modality m's own index list; its first ``len(self)`` entries are the paired
        #: indices (``self``), the rest are samples only that modality sees this step
        self.per_modality = {m: [int(i) for i in v] for m, v in per_modality.items()} if per_modality else None
        if self.per_modality:
            for m, v in self.per_modality.items():
                if v[: len(self)] != list(self):
                    raise ValueError(f"IndexBatch: modality {m!r}'s list must start with the paired indices")
            self.sizes = {m: len(v) for m, v in self.per_modality.items()}


class MultimodalDataset(Dataset):
    """In-memory multimodal dataset: one tensor per modality (first dim = samples) and labels."""

    def __init__(
        self,
        inputs: Dict[str, torch.Tensor],
        labels,
        num_classes: Optional[int] = None,
        class_names: Optional[List[str]] = None,
        name: str = "arrays",
        check: bool = True,
        transforms: Optional[Dict[str, object]] = None,
    ):
        if len(inputs) < 1:
            raise DataError(f"dataset {name!r}: no modalities given")
        self.name = name
        # compact dtypes (uint8 frames, float16 spectrograms) stay compact; a batch transform expands them
        self.inputs = {m: _compact(_as_tensor(x, f"{name}/{m}")) for m, x in inputs.items()}
        for m, x in self.inputs.items():
            check_modality_array(x, name, m)
        #: optional per-modality batch transform ``f(x, train, generator) -> Tensor`` (e.g. BatchImageAugment),
        #: applied by the trainer on the training device
        self.transforms = dict(transforms or {})
        self.labels = integer_labels(_as_tensor(labels, f"{name}/labels"), name)
        self.modalities = list(self.inputs)
        n = len(self.labels)
        for m, x in self.inputs.items():
            if x.shape[0] != n:
                raise DataError(
                    f"dataset {name!r}: modality {m!r} has {x.shape[0]} samples but there are {n} labels "
                    f"(sample counts per modality: "
                    + ", ".join(f"{k}={v.shape[0]}" for k, v in self.inputs.items())
                    + ")"
                )
        if check:  # labels in range, no gaps unless class_names / num_classes say so (see resolve_classes)
            self.num_classes, self.class_names = resolve_classes(self.labels, num_classes, class_names, name)
        else:
            self.num_classes = int(num_classes) if num_classes is not None else int(self.labels.max()) + 1 if n else 0
            self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(self.num_classes)]
        if check:
            self.validate()

    def validate(self) -> None:
        resolve_classes(self.labels, self.num_classes, self.class_names, self.name)
        for m, x in self.inputs.items():
            finite = torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)
            if not finite.all():
                i = int((~finite).nonzero()[0, 0])
                raise DataError(
                    f"dataset {self.name!r}: modality {m!r} has NaN/inf values in sample {i} "
                    f"({int((~finite).sum())} bad samples in all)"
                )

    def batch_transform(self, modality: str, x: torch.Tensor, train: bool, generator=None) -> torch.Tensor:
        t = self.transforms.get(modality)
        if t is not None:
            return t(x, train, generator)
        return x if x.is_floating_point() and x.dtype == torch.float32 else x.float()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return {"inputs": {m: x[i] for m, x in self.inputs.items()}, "y": int(self.labels[i]), "index": int(i)}

    def load(self, i: int, modality: str) -> torch.Tensor:
        return self.inputs[modality][i]

    def get_batch(self, indices: torch.Tensor, modality: str) -> torch.Tensor:
        return self.inputs[modality].index_select(0, indices)

    def subset(self, indices, name: Optional[str] = None) -> "MultimodalDataset":
        idx = torch.as_tensor(np.asarray(indices), dtype=torch.long)
        return MultimodalDataset(
            {m: x.index_select(0, idx) for m, x in self.inputs.items()},
            self.labels.index_select(0, idx),
            self.num_classes,
            self.class_names,
            name or self.name,
            check=False,
            transforms=self.transforms,
        )

    def select_modalities(self, modalities: Sequence[str]) -> "MultimodalDataset":
        missing = [m for m in modalities if m not in self.inputs]
        if missing:
            raise DataError(f"dataset {self.name!r} has no modality {missing[0]!r}; it has {self.modalities}")
        return MultimodalDataset({m: self.inputs[m] for m in modalities}, self.labels, self.num_classes,
                                 self.class_names, self.name, check=False, transforms=self.transforms)

    def input_shape(self, modality: str) -> tuple:
        return tuple(self.inputs[modality].shape[1:])

    def to(self, device) -> "MultimodalDataset":
        """Move every tensor to ``device`` in place (``data.resident``: batches are then indexed on it)."""
        self.inputs = {m: x.to(device) for m, x in self.inputs.items()}
        self.labels = self.labels.to(device)
        return self


def _compact(t: torch.Tensor) -> torch.Tensor:
    if t.dtype in (torch.uint8, torch.float16, torch.bfloat16, torch.float32):
        return t
    return t.float()


def _as_tensor(x, what: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    try:
        return torch.as_tensor(np.asarray(x))
    except Exception as e:  # noqa: BLE001 - report what could not be converted
        raise DataError(f"{what}: cannot convert to a tensor: {e}") from None


def sample_shape(source, modality: str) -> tuple:
    """Shape of one sample of ``modality`` (without the batch dimension)."""
    if hasattr(source, "input_shape"):
        return tuple(source.input_shape(modality))
    return tuple(source[0]["inputs"][modality].shape)


class BatchDataset(Dataset):
    """Wraps a source so that a DataLoader fetches a whole :class:`IndexBatch` at once (``__getitems__``)
    and returns a :class:`~mmbalance.data.batch.Batch` in which modality ``m`` holds its ``sizes[m]`` rows."""

    def __init__(self, source, modalities: Optional[Sequence[str]] = None):
        self.source = source
        self.modalities = list(modalities or source.modalities)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i):  # pragma: no cover - DataLoader always uses __getitems__ with a batch_sampler
        return self.__getitems__(IndexBatch([i]))

    def __getitems__(self, batch) -> Batch:
        dev = getattr(self.source.labels, "device", None)
        idx = torch.as_tensor(list(batch), dtype=torch.long, device=dev)
        y = self.source.labels.index_select(0, idx)
        per_modality = getattr(batch, "per_modality", None)
        if per_modality:  # independent: each modality loads its own index list
            subs = {m: torch.as_tensor(per_modality.get(m, list(batch)), dtype=torch.long, device=dev)
                    for m in self.modalities}
            out = Batch({m: self._load(sub, m) for m, sub in subs.items()}, y, idx,
                        {m: len(sub) for m, sub in subs.items()},
                        y_mod={m: self.source.labels.index_select(0, sub) for m, sub in subs.items()},
                        index_mod=subs)
        else:
            sizes = getattr(batch, "sizes", None) or {}
            inputs = {}
            for m in self.modalities:
                n_m = int(sizes.get(m, len(idx)))
                if n_m > len(idx):
                    raise DataError(f"batch plan asks modality {m!r} for {n_m} samples but the batch has {len(idx)}")
                inputs[m] = self._load(idx[:n_m], m)
            out = Batch(inputs, y, idx, {m: int(sizes.get(m, len(idx))) for m in self.modalities})
        global_n = getattr(batch, "global_n", None)
        if global_n is not None:  # a DDP shard: sizes of the whole global batch
            gs = getattr(batch, "global_sizes", None) or {}
            out.global_sizes = {m: int(gs.get(m, global_n)) for m in self.modalities}
            out.global_n_pair = int(getattr(batch, "global_n_pair", min(out.global_sizes.values())))
        return out

    def _load(self, sub: torch.Tensor, m: str):
        if hasattr(self.source, "get_batch"):
            return self.source.get_batch(sub, m)
        if hasattr(self.source, "load"):
            return torch.stack([self.source.load(int(i), m) for i in sub]) if len(sub) else None
        return torch.stack([self.source[int(i)]["inputs"][m] for i in sub]) if len(sub) else None


def passthrough_collate(batch):
    """The batch is already assembled by :meth:`BatchDataset.__getitems__`."""
    return batch


class SampleSource(Protocol):
    """The source contract of the module docstring, for type checking (``load``, ``get_batch`` and
    ``set_train`` are optional and looked up with ``hasattr``)."""

    modalities: List[str]
    labels: torch.Tensor
    num_classes: int
    class_names: List[str]

    def __len__(self) -> int: ...

    def __getitem__(self, i: int) -> Dict[str, Any]: ...


@dataclass
class Splits:
    train: SampleSource
    val: SampleSource
    test: SampleSource

    def __getitem__(self, name: str) -> SampleSource:
        if name not in ("train", "val", "test"):
            raise KeyError(f"unknown split {name!r}; splits are train, val, test")
        return getattr(self, name)


def stratified_split_indices(labels, val_fraction: float, test_fraction: float, seed: int):
    """Fixed, seeded, stratified train/val/test index arrays (sorted)."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    idx = np.arange(len(labels))
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in (0,1) with sum < 1")
    n_test, n_val = round(test_fraction * len(idx)), round(val_fraction * len(idx))  # exact counts, no float drift
    rest, test = train_test_split(idx, test_size=n_test, stratify=labels, random_state=seed)
    train, val = train_test_split(rest, test_size=n_val, stratify=labels[rest], random_state=seed + 1)
    return np.sort(train), np.sort(val), np.sort(test)


def split_in_memory(ds: MultimodalDataset, val_fraction: float, test_fraction: float, seed: int) -> Splits:
    require_two_classes(ds.labels, ds.name)
    tr, va, te = stratified_split_indices(ds.labels.numpy(), val_fraction, test_fraction, seed)
    return Splits(ds.subset(tr, ds.name + "/train"), ds.subset(va, ds.name + "/val"), ds.subset(te, ds.name + "/test"))
