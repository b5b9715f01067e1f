"""Your own arrays as they usually come (``--dataset arrays``): class names stored in the file, string labels, an
official train/test split without a validation part, modalities on different scales.

* class names: an array ``classes`` (or ``class_names``) of strings in the ``.npz`` / folder; with integer labels
  it names classes ``0..C-1``; with string labels it also fixes their ids (their order in it);
* string labels (``"walking"``): ids by their order in the class names, else in sorted order;
* ``data.options.val_from_train=true`` (or a fraction): a ``split`` array with only train and test samples gets a
  seeded, class-stratified validation split carved from its train part (``data.val_fraction`` of it, or the
  fraction given; seed ``data.split_seed``);
* ``data.options.standardize=channel|feature|true``: every modality standardised with the mean and standard
  deviation of the **training split only** (no statistics of val or test leak into training): ``channel`` (= true)
  per channel, i.e. over samples and every axis after the first (``[N, C, T]`` time series, ``[N, C, H, W]``
  images; for ``[N, D]`` features that is per feature), ``feature`` per element of the sample.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch

from .base import DataError, MultimodalDataset, Splits

#: array names that hold the class names (not a modality)
NAME_KEYS = ("classes", "class_names")
STANDARDIZE = {True: "channel", "channel": "channel", "feature": "feature"}


def pop_class_names(arrays: Dict[str, np.ndarray], source: str) -> Optional[List[str]]:
    """Remove and return the class-name array (``classes`` / ``class_names``) of a loaded file, if any."""
    key = next((k for k in NAME_KEYS if k in arrays), None)
    if key is None:
        return None
    raw = arrays.pop(key)
    if raw.dtype.kind not in "US":
        raise DataError(f"{source}: array {key!r} must hold the class names as strings, got dtype {raw.dtype}")
    names = [str(s).strip() for s in raw.reshape(-1)]
    dup = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if dup is not None:
        raise DataError(f"{source}: array {key!r} names class {dup!r} twice")
    return names


def label_ids(labels: np.ndarray, names: Optional[List[str]], source: str) -> Tuple[np.ndarray, Optional[List[str]]]:
    """Integer class ids and the class names. String labels map to their position in ``names`` (given) or in the
    sorted set of the labels; other labels are returned as they are (checked by the dataset)."""
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "US":
        return labels, names
    text = [str(s).strip() for s in labels]
    if names is None:
        names = sorted(set(text))
    index = {n: i for i, n in enumerate(names)}
    bad = [i for i, s in enumerate(text) if s not in index]
    if bad:
        shown = ", ".join(repr(n) for n in names[:6]) + (", ..." if len(names) > 6 else "")
        raise DataError(f"{source}: label {text[bad[0]]!r} of sample {bad[0]} is not one of the class names "
                        f"({shown}; {len(bad)} such labels in all)")
    return np.array([index[s] for s in text], dtype=np.int64), names


def carve_validation(train_idx: np.ndarray, labels: torch.Tensor, fraction: float, seed: int,
                     source: str) -> Tuple[np.ndarray, np.ndarray]:
    """``(train, val)`` indices: a seeded, class-stratified ``fraction`` of ``train_idx`` (at least one sample of
    every class) becomes the validation split."""
    from sklearn.model_selection import train_test_split

    if not 0 < fraction < 1:
        raise DataError(f"{source}: the validation fraction must be in (0, 1), got {fraction}")
    y = labels[torch.as_tensor(train_idx)].numpy()
    classes, counts = np.unique(y, return_counts=True)
    if counts.min() < 2:
        raise DataError(f"{source}: class {int(classes[counts.argmin()])} has {int(counts.min())} training sample; "
                        f"carving a stratified validation split needs at least 2 per class")
    n_val = max(len(classes), int(round(fraction * len(train_idx))))
    if len(train_idx) - n_val < len(classes):
        raise DataError(f"{source}: {len(train_idx)} training samples are too few to carve a validation split of "
                        f"{n_val} and keep every class in training")
    train, val = train_test_split(train_idx, test_size=n_val, stratify=y, random_state=seed)
    return np.sort(train), np.sort(val)


def val_fraction_option(value: Any, default: float, source: str) -> Optional[float]:
    """``data.options.val_from_train``: false/absent -> None, true -> ``data.val_fraction``, a number -> itself."""
    if value is None or value is False:
        return None
    if value is True:
        return float(default)
    if isinstance(value, (int, float)) and 0 < float(value) < 1:
        return float(value)
    raise DataError(f"{source}: data.options.val_from_train must be true, false or a fraction in (0, 1), got {value!r}")


def standardise(splits: Splits, how: Any) -> Splits:
    """Standardise every modality of every split with statistics of the training split (see the module doc)."""
    if how in (False, None, "none"):
        return splits
    mode = STANDARDIZE.get(how)
    if mode is None:
        raise DataError(f"data.options.standardize must be channel, feature, true or false, got {how!r}")
    train = splits.train
    if not all(isinstance(s, MultimodalDataset) for s in (splits.train, splits.val, splits.test)):
        raise DataError("data.options.standardize needs in-memory splits")
    for m, x in train.inputs.items():
        x = x.float()
        dims = (0,) if mode == "feature" else (0, *range(2, x.dim()))
        mean = x.mean(dims, keepdim=True)
        std = x.std(dims, keepdim=True).clamp_min(1e-6)  # a constant channel stays finite
        for split in (splits.train, splits.val, splits.test):
            split.inputs[m] = (split.inputs[m].float() - mean) / std
    return splits


__all__ = ["NAME_KEYS", "carve_validation", "label_ids", "pop_class_names", "standardise", "val_fraction_option"]
