"""The :class:`Batch` every training and evaluation step receives: tensors of one step on one device.

A batch is one of three kinds (see :class:`~mmbalance.data.base.IndexBatch` for how the sampler plans them):

* **paired**: every modality has the same ``n`` rows, row ``i`` of each is sample ``index[i]``;
* **nested** (DUS): modality ``m`` has the first ``sizes[m]`` of the ``n`` rows; the first
  ``n_pair = min_m sizes[m]`` rows are complete;
* **independent** (DUS ``pairing=independent``): the first ``n_pair`` rows are shared by every modality,
  then each modality has rows of its own (``index_mod[m]``, ``y_mod[m]``).

Label alignment is owned here: :meth:`Batch.labels` gives the labels of modality ``m``'s rows, and
:meth:`Batch.paired_labels` those of the fused head's rows, whatever the kind. Methods never slice ``y``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, Optional

import torch
from torch import Tensor


@dataclass
class Batch:
    """One step's data. ``inputs[m]`` has ``sizes[m]`` rows (``None`` when the modality got no samples)."""

    inputs: Dict[str, Optional[Tensor]]
    #: labels of the batch's indices (``[n]``); the first ``n_pair`` are the paired rows
    y: Tensor
    #: dataset indices (``[n]``)
    index: Tensor
    #: rows each modality received
    sizes: Dict[str, int]
    #: independent batches only: each modality's own labels and dataset indices (paired rows first)
    y_mod: Optional[Dict[str, Tensor]] = None
    index_mod: Optional[Dict[str, Tensor]] = None
    #: DDP shards only: the global batch's sizes and paired count (for the global-batch loss weighting)
    global_sizes: Optional[Dict[str, int]] = None
    global_n_pair: Optional[int] = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def kind(self) -> str:
        """``paired``, ``nested`` or ``independent``."""
        if self.y_mod is not None:
            return "independent"
        return "nested" if any(n != len(self) for n in self.sizes.values()) else "paired"

    @property
    def n_pair(self) -> int:
        """Rows complete in every modality (the rows the fused head sees)."""
        return min(self.sizes.values()) if self.sizes else len(self)

    def labels(self, modality: str) -> Tensor:
        """Labels of modality ``modality``'s rows (its own list in an independent batch)."""
        if self.y_mod is not None and modality in self.y_mod:
            return self.y_mod[modality]
        return self.y[: self.sizes.get(modality, len(self))]

    def indices(self, modality: str) -> Tensor:
        """Dataset indices of modality ``modality``'s rows."""
        if self.index_mod is not None and modality in self.index_mod:
            return self.index_mod[modality]
        return self.index[: self.sizes.get(modality, len(self))]

    def paired_labels(self) -> Tensor:
        """Labels of the paired rows (the fused logits' rows)."""
        return self.y[: self.n_pair]

    def paired_index(self) -> Tensor:
        """Dataset indices of the paired rows."""
        return self.index[: self.n_pair]

    def global_count(self, modality: Optional[str] = None) -> Optional[int]:
        """Under DDP: rows of the *global* batch for ``modality`` (None: the paired rows); else None."""
        if self.global_sizes is None:
            return None
        return self.global_n_pair if modality is None else self.global_sizes[modality]

    def select(self, modalities) -> "Batch":
        """The same batch restricted to ``modalities`` (inputs of the others dropped)."""
        keep = list(modalities)
        return replace(self, inputs={m: x for m, x in self.inputs.items() if m in keep})

    def pin_memory(self) -> "Batch":
        """A copy in pinned host memory (the DataLoader calls this with ``pin_memory=True``; without it a
        ``Batch`` would pass through unpinned and its non-blocking copies to the GPU would not overlap)."""
        def pin(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.pin_memory()

        return replace(self, inputs={m: pin(x) for m, x in self.inputs.items()}, y=self.y.pin_memory(),
                       index=self.index.pin_memory(),
                       y_mod=None if self.y_mod is None else {m: v.pin_memory() for m, v in self.y_mod.items()},
                       index_mod=None if self.index_mod is None else {m: v.pin_memory()
                                                                       for m, v in self.index_mod.items()})

    def to(self, device: torch.device, non_blocking: bool = False) -> "Batch":
        """A copy with every tensor on ``device`` (inputs untouched: the trainer moves and transforms them)."""
        def mv(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=non_blocking)

        return replace(self, y=mv(self.y), index=mv(self.index),
                       y_mod=None if self.y_mod is None else {m: mv(v) for m, v in self.y_mod.items()},
                       index_mod=None if self.index_mod is None else {m: mv(v) for m, v in self.index_mod.items()})
