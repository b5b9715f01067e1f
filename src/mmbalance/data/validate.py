"""Checks of user data before anything trains or is written: labels, splits, modality arrays.

Each check fails with one :class:`~mmbalance.data.base.DataError` line naming the dataset (or file), and the
sample, modality or value at fault.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch


def _error(msg: str):
    from .base import DataError  # late: base imports this module

    return DataError(msg)


def integer_labels(labels: torch.Tensor, name: str) -> torch.Tensor:
    """``labels`` as a LongTensor [N]; floats must hold whole numbers (a 1.5 is refused, never truncated)."""
    y = labels.reshape(-1)
    if y.dtype == torch.bool:
        return y.long()
    if y.is_floating_point():
        bad = ~torch.isfinite(y) | (y != torch.round(y))
        if bad.any():
            i = int(bad.nonzero()[0, 0])
            raise _error(f"dataset {name!r}: label {float(y[i])!r} of sample {i} is not an integer class id "
                         f"({int(bad.sum())} such labels in all); labels must be 0, 1, ..., C-1")
        return y.long()
    if y.is_complex() or not (y.dtype.is_floating_point or _is_integer_dtype(y.dtype)):
        raise _error(f"dataset {name!r}: labels have dtype {y.dtype}; they must be integer class ids")
    return y.long()


def _is_integer_dtype(dtype: torch.dtype) -> bool:
    return dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def resolve_classes(labels: torch.Tensor, num_classes: Optional[int], class_names: Optional[Sequence[str]],
                    name: str) -> Tuple[int, List[str]]:
    """The number of classes and their names; refuses labels the model could not be built for.

    * ``class_names`` given: C = ``len(class_names)`` (``num_classes``, if also given, must agree) and labels
      must lie in ``[0, C)``; classes without samples are fine (the names say they exist).
    * only ``num_classes`` given: labels must lie in ``[0, num_classes)``.
    * neither: the labels must be exactly ``0..max`` without gaps -- a stray label 100 among 0-3 would
      otherwise build a 101-class model. Give ``class_names`` when some classes really have no samples.
    """
    names = list(class_names) if class_names is not None else None
    if names is not None and num_classes is not None and len(names) != int(num_classes):
        raise _error(f"dataset {name!r}: class_names has {len(names)} names but num_classes is {num_classes}")
    n = len(labels)
    if names is not None:
        c = len(names)
        where = f"class_names lists {c} classes"
    elif num_classes is not None:
        c = int(num_classes)
        where = f"num_classes is {c}"
    else:
        c = int(labels.max()) + 1 if n else 0
        where = ""
    bad = (labels < 0) | (labels >= c)
    if bad.any():
        i = int(bad.nonzero()[0, 0])
        raise _error(f"dataset {name!r}: label {int(labels[i])} of sample {i} is out of range [0, {c}) "
                     f"({int(bad.sum())} bad labels in all{'; ' + where if where else ''})")
    if names is None and num_classes is None and n:
        present = torch.unique(labels)
        if len(present) != c:
            missing = sorted(set(range(c)) - set(present.tolist()))
            raise _error(f"dataset {name!r}: labels are not 0..C-1 without gaps: the largest is {c - 1} but "
                         f"{len(missing)} of the classes below it have no sample (e.g. {_few(missing)}). Relabel "
                         f"them 0..{len(present) - 1}, or give class_names for all {c} classes if they exist")
    return c, names if names is not None else [str(k) for k in range(c)]


def require_two_classes(labels, name: str) -> None:
    """A classifier needs samples of at least two classes to learn anything."""
    y = torch.as_tensor(labels).reshape(-1)
    present = torch.unique(y)
    if len(y) and len(present) < 2:
        raise _error(f"dataset {name!r}: all {len(y)} samples are of class {int(present[0])}; a classifier needs "
                     f"samples of at least 2 classes")
    if not len(y):
        raise _error(f"dataset {name!r}: no samples")


def check_modality_array(x: torch.Tensor, name: str, modality: str) -> None:
    """Every sample needs features (shape ``[N, ...]`` with at least one non-empty feature axis)."""
    if x.dim() < 2:
        raise _error(f"dataset {name!r}: modality {modality!r} has shape {list(x.shape)}, one number per sample; "
                     f"each sample needs a feature vector: reshape it to [N, 1] (or [N, D])")
    if any(s == 0 for s in x.shape[1:]):
        raise _error(f"dataset {name!r}: modality {modality!r} has shape {list(x.shape)}: zero-width features")


SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


def split_indices(split: np.ndarray, n: int, source: str) -> Dict[str, np.ndarray]:
    """Indices of each split from a ``split`` array of ``train``/``val``/``test`` or ``0``/``1``/``2``.

    Every value must be one of those (no sample is dropped silently) and every split must be non-empty.
    """
    split = np.asarray(split).reshape(-1)
    if len(split) != n:
        raise _error(f"{source}: split array has {len(split)} entries but there are {n} labels")
    if split.dtype.kind in "US":
        codes = {**{k: v for k, v in SPLIT_CODES.items()}, **{str(v): v for v in SPLIT_CODES.values()}}
        values = [codes.get(str(s).strip()) for s in split]
    elif split.dtype.kind in "iub" or (split.dtype.kind == "f" and np.all(np.isfinite(split))
                                        and np.all(split == np.round(split))):
        values = [int(s) if int(s) in SPLIT_CODES.values() else None for s in split]
    else:
        raise _error(f"{source}: split array has dtype {split.dtype}; use train/val/test or 0/1/2")
    bad = [i for i, v in enumerate(values) if v is None]
    if bad:
        raise _error(f"{source}: split value {split[bad[0]].item()!r} of sample {bad[0]} is not train/val/test or 0/1/2 "
                     f"({len(bad)} such samples in all)")
    codes_arr = np.asarray(values)
    out = {}
    for k, code in SPLIT_CODES.items():
        idx = np.nonzero(codes_arr == code)[0]
        if len(idx) == 0:
            raise _error(f"{source}: split array has no {k!r} samples (use train/val/test or 0/1/2)")
        out[k] = idx
    return out


def _few(xs: List[int], k: int = 3) -> str:
    return ", ".join(map(str, xs[:k])) + (", ..." if len(xs) > k else "")
