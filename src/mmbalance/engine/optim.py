"""The one optimizer and scheduler factory (the main run, plug-ins' probes and added parameter groups)."""
from __future__ import annotations

from typing import Any, Iterable, Optional, Tuple

import torch

from ..config import OptimConfig


def build_optimizer(o: OptimConfig, params: Iterable[Any], lr: Optional[float] = None) -> torch.optim.Optimizer:
    """``optim.name`` over ``params`` (tensors or parameter groups) at ``lr`` (default ``optim.lr``)."""
    lr = o.lr if lr is None else float(lr)
    name = o.name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, betas=_betas(o), weight_decay=o.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=_betas(o), weight_decay=o.weight_decay)
    raise ValueError(f"optim.name={o.name!r} is not one of sgd, adam, adamw")


def _betas(o: OptimConfig) -> Tuple[float, float]:
    """``optim.betas`` as Adam's pair (a list of another length would fail only at the first step)."""
    if len(o.betas) != 2:
        raise ValueError(f"optim.betas must be two numbers [beta1, beta2], got {o.betas!r}")
    return o.betas[0], o.betas[1]


def build_scheduler(o: OptimConfig, optimizer: torch.optim.Optimizer, epochs: int):
    """``optim.scheduler`` (stepped once per epoch) after ``optim.warmup_epochs`` of linear warm-up, or None."""
    w = int(o.warmup_epochs)
    main = _main_scheduler(o, optimizer, epochs - w)
    if w <= 0:
        return main
    warm = torch.optim.lr_scheduler.LinearLR(optimizer, start_factor=o.warmup_start_factor, total_iters=w)
    if main is None:
        return warm
    return torch.optim.lr_scheduler.SequentialLR(optimizer, [warm, main], milestones=[w])


def _main_scheduler(o: OptimConfig, optimizer: torch.optim.Optimizer, epochs: int):
    if o.scheduler == "none":
        return None
    if o.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, o.step_size, o.gamma)
    if o.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(1, epochs))
    raise ValueError(f"optim.scheduler={o.scheduler!r} is not one of none, step, cosine")
