"""Where and how the model runs: device, determinism, the DDP process group and wrapper, torch.compile,
reductions over ranks and a clock that includes queued GPU work."""
from __future__ import annotations

import os
import time
from typing import Callable, Tuple

import torch
from torch import nn

from ..models import ModelOutput


def init_distributed(device: str) -> Tuple[int, int, int]:
    """``(rank, world_size, local_rank)``; initialises the process group under ``torchrun`` if needed."""
    dist = torch.distributed
    if not dist.is_available():
        return 0, 1, 0
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        use_nccl = device != "cpu" and torch.cuda.is_available()
        dist.init_process_group("nccl" if use_nccl else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return 0, 1, 0


class _DictOutput(nn.Module):
    """DDP finds the tensors of a forward's output only in dicts/lists: return ModelOutput as a dict."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs, fuse=True, transform=None):
        out = self.model(inputs, fuse=fuse, transform=transform)
        return {"features": out.features, "logits": out.logits, "fused": out.fused, "n_pair": out.n_pair}


def ddp_forward(model: nn.Module, device: torch.device) -> Callable[..., ModelOutput]:
    """The training forward through ``DistributedDataParallel`` (returns a :class:`ModelOutput`)."""
    from torch.nn.parallel import DistributedDataParallel

    # unused parameters occur legitimately (a modality with no samples on a rank, unimodal runs)
    ddp = DistributedDataParallel(_DictOutput(model), device_ids=[device.index] if device.type == "cuda" else None,
                                  find_unused_parameters=True)
    return lambda inputs, fuse=True, transform=None: ModelOutput(**ddp(inputs, fuse=fuse, transform=transform))


def all_reduce(tensor: torch.Tensor, world_size: int, op: str = "mean") -> torch.Tensor:
    """Sum or mean of ``tensor`` over ranks (identity in a single process)."""
    if world_size == 1:
        return tensor
    t = tensor.detach().clone()
    torch.distributed.all_reduce(t)
    return t / world_size if op == "mean" else t


def rng_devices(device: torch.device) -> list:
    """The CUDA devices whose RNG a forked side pass must save (none on CPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        return [device.index if device.index is not None else torch.cuda.current_device()]
    return []


def resolve_device(name: str, local_rank: int = 0, world_size: int = 1) -> torch.device:
    if name == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(name)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"train.device={name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    if dev.type == "cuda" and world_size > 1:
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    return dev


def set_determinism(deterministic: bool) -> None:
    """Process-wide switches: deterministic algorithms (and no cuDNN autotuning), or the fast ones."""
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:  # undo what an earlier deterministic Trainer in this process set
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.benchmark = True


def model_calls(model: nn.Module, device: torch.device, world_size: int,
                compile_mode: str) -> Tuple[Callable, Callable]:
    """The training and the evaluation forward: DDP for training on several ranks, ``torch.compile`` when
    ``train.compile`` asks (evaluation bypasses DDP: no collectives, so any rank may evaluate)."""
    train_call: Callable = model
    eval_call: Callable = model
    if world_size > 1:
        train_call = ddp_forward(model, device)
    if compile_mode != "none":
        mode = None if compile_mode == "default" else compile_mode
        # Some plug-ins backpropagate through one forward more than once (MMPareto's per-loss gradients use
        # retain_graph); a compiled backward that donates its buffers refuses that. Off for every compiled
        # run, not only those: dynamo shares compiled graphs between identical models in one process.
        from torch._functorch import config as functorch_config

        functorch_config.donated_buffer = False
        train_call = torch.compile(train_call, mode=mode)
        eval_call = torch.compile(model, mode=mode) if world_size > 1 else train_call
    return train_call, eval_call


class Clock:
    """Wall-clock laps that include queued GPU work (synchronises only at lap boundaries, once per phase)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.t = self._now()

    def _now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def lap(self) -> float:
        now = self._now()
        dt, self.t = now - self.t, now
        return dt
