"""A content fingerprint of a run's data: split sizes, labels, input shapes and a fixed sample of inputs.

Cheap (labels plus a few samples per split and modality are hashed, nothing else is read) and sensitive to
what matters for a resume: other samples, other labels, other shapes or other preprocessing.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

SAMPLES = 8  #: inputs hashed per split and modality (evenly spaced over the split)


def data_fingerprint(splits: Any, samples: int = SAMPLES) -> str:
    """``sha256:<hex>`` over every split's size and labels and an evenly spaced sample of its inputs."""
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        src = splits[name]
        labels = torch.as_tensor(src.labels).detach().cpu().long()
        h.update(f"{name}:{len(src)}:{list(src.modalities)}".encode())
        h.update(labels.numpy().tobytes())
        if len(src) == 0:
            continue
        idx = torch.linspace(0, len(src) - 1, min(samples, len(src))).round().long()
        for m in src.modalities:
            x = _rows(src, idx, m)
            h.update(f"{m}:{tuple(x.shape)}:{x.dtype}".encode())
            h.update(np.ascontiguousarray(x.detach().cpu().numpy()).tobytes())
    return "sha256:" + h.hexdigest()


def _rows(src: Any, idx: torch.Tensor, m: str) -> torch.Tensor:
    if hasattr(src, "get_batch"):
        dev = getattr(src.labels, "device", None)
        return src.get_batch(idx.to(dev) if dev is not None else idx, m)
    if hasattr(src, "load"):
        return torch.stack([torch.as_tensor(src.load(int(i), m)) for i in idx])
    return torch.stack([torch.as_tensor(src[int(i)]["inputs"][m]) for i in idx])
