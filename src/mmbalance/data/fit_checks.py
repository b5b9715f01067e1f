"""Settings that cannot work with the data at hand, checked when a run is set up (before anything is written):
an error where training could not take a single step, a warning where it would run but not as the user likely
means (the batch is larger than the training split, a class has no training sample, the validation split that
selects the checkpoint is tiny)."""
from __future__ import annotations

import warnings
from typing import Any, List

import torch


def check_fit_settings(cfg: Any, splits: Any) -> List[str]:
    """Raise ``ValueError`` for settings under which no training step can run; warn (and return the warnings)
    for settings that run but likely not as meant."""
    notes: List[str] = []
    n_train, bs = len(splits.train), int(cfg.train.batch_size)
    if bs > n_train:
        if cfg.train.drop_last:
            raise ValueError(f"train.batch_size={bs} is larger than the {n_train} training samples and "
                             f"train.drop_last=true: no training step would run; lower --batch-size")
        notes.append(f"train.batch_size={bs} is larger than the {n_train} training samples: every epoch is a single "
                     f"step on all of them; a batch of {max(1, n_train // 4)} gives 4 steps per epoch "
                     f"(--batch-size {max(1, n_train // 4)})")
    classes = int(splits.train.num_classes)
    names = list(getattr(splits.train, "class_names", [str(c) for c in range(classes)]))
    present = set(torch.as_tensor(splits.train.labels).reshape(-1).tolist())
    absent = [names[c] if c < len(names) else str(c) for c in range(classes) if c not in present]
    if absent:
        notes.append(f"{len(absent)} class(es) have no training sample ({', '.join(map(repr, absent[:3]))}"
                     f"{', ...' if len(absent) > 3 else ''}): the model cannot learn to predict them")
    n_val = len(splits.val)
    if 0 < n_val < 2 * classes:
        notes.append(f"the val split has {n_val} samples for {classes} classes: the checkpoint is selected on very "
                     f"few samples (one more right answer is {100 / n_val:.0f} points); raise data.val_fraction")
    for note in notes:
        warnings.warn(note, UserWarning, stacklevel=3)
    return notes


__all__ = ["check_fit_settings"]
