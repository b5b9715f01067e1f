"""Classification metrics (torchmetrics): accuracy, macro-F1, mAP (class-mean one-vs-rest AP)."""
from __future__ import annotations

from typing import Dict

import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_average_precision,
    multiclass_f1_score,
)


def classification_metrics(logits: torch.Tensor, y: torch.Tensor, num_classes: int) -> Dict[str, float]:
    """``acc`` and ``macro_f1`` from argmax, ``map`` from softmax probabilities (classes absent from
    ``y`` are left out of the mean, like scikit-learn's per-class AP on present classes)."""
    logits = logits.float().cpu()
    y = y.cpu()
    if len(y) == 0:
        return {"acc": float("nan"), "macro_f1": float("nan"), "map": float("nan")}
    acc = multiclass_accuracy(logits, y, num_classes, average="micro")
    f1 = multiclass_f1_score(logits, y, num_classes, average="macro")
    probs = logits.softmax(-1)
    present = torch.bincount(y, minlength=num_classes) > 0
    ap = multiclass_average_precision(probs, y, num_classes, average="none")
    m_ap = ap[present].mean() if present.any() else torch.tensor(float("nan"))
    return {"acc": float(acc), "macro_f1": float(f1), "map": float(m_ap)}


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(-1).cpu() == y.cpu()).float().mean()) if len(y) else float("nan")
