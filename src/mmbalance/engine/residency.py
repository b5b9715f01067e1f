"""``data.resident``: keep in-memory / cached datasets on the training device when they fit."""
from __future__ import annotations

import warnings
from typing import Iterable

import torch

RESIDENT_FRACTION = 0.7  #: largest share of the free device memory that data.resident may take


def tensor_bytes(objs: Iterable[object]) -> int:
    """Bytes of the distinct tensor storages held (directly or in dicts/lists) by the attributes of ``objs``."""
    seen, total = set(), 0

    def visit(v):
        nonlocal total
        if torch.is_tensor(v):
            key = (v.device, v.untyped_storage().data_ptr())
            if key not in seen:
                seen.add(key)
                total += v.untyped_storage().nbytes()
        elif isinstance(v, dict):
            for x in v.values():
                visit(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                visit(x)

    for o in objs:
        for v in vars(o).values():
            visit(v)
    return total


def resident_fits(need: int, free: int, fraction: float = RESIDENT_FRACTION):
    """Whether ``need`` bytes of data may live on a device with ``free`` bytes free: ``(ok, reason)``."""
    if need <= fraction * free:
        return True, ""
    return False, (f"the data needs {need / 2**30:.2f} GiB but only {fraction:.0%} of the {free / 2**30:.2f} GiB "
                   f"free on the device may be used for it")


def make_resident(splits, device: torch.device) -> bool:
    """Move the splits onto ``device`` if they fit in its free memory (on CUDA, at most
    ``RESIDENT_FRACTION`` of it; the rest is left for training); otherwise warn and keep them in host
    memory (batches then go through pinned memory). Returns whether they were moved."""
    srcs = {name: splits[name] for name in ("train", "val", "test")}
    for name, src in srcs.items():
        if not hasattr(src, "to"):
            raise ValueError(f"data.resident=true but the {name} source ({type(src).__name__}) cannot "
                             f"be moved to a device; use a cached/in-memory dataset")
    if device.type == "cuda":
        need = tensor_bytes(list(srcs.values()))
        free, _total = torch.cuda.mem_get_info(device)
        ok, why = resident_fits(need, free)
        if not ok:
            warnings.warn(f"data.resident=true: {why}; keeping the data in host memory", stacklevel=3)
            return False
    for src in srcs.values():
        src.to(device)
    return True
