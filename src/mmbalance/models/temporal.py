"""A 1-D convolutional encoder for time series: ``temporal``.

Layout: one sample is ``[channels, time]`` (**channels first**, like ``torch.nn.Conv1d``; e.g. 3 accelerometer axes
x 100 steps = ``[3, 100]``), or ``[time]`` for a single channel. Store your arrays as ``[N, channels, time]``; an
array stored ``[N, time, channels]`` must be transposed first (``np.swapaxes(x, 1, 2)``), otherwise time steps
would be read as channels.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..registry import ENCODERS


class TemporalEncoder(nn.Module):
    """Three Conv1d-BatchNorm-ReLU blocks over time (kernel ``kernel_size``; the last two with stride 2) and
    global average pooling over time: ``[B, C, T] -> [B, feature_dim]``. Works for any length ``T >= 1``."""

    def __init__(self, input_shape: Sequence[int], feature_dim: int = 64, width: int = 32, kernel_size: int = 5):
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) not in (1, 2):
            raise ValueError(f"temporal encoder: expects one sample as [channels, time] or [time], got {list(shape)}")
        channels = shape[0] if len(shape) == 2 else 1
        pad = kernel_size // 2
        self.net = nn.Sequential(
            nn.Conv1d(channels, width, kernel_size, padding=pad, bias=False), nn.BatchNorm1d(width), nn.ReLU(),
            nn.Conv1d(width, 2 * width, kernel_size, stride=2, padding=pad, bias=False), nn.BatchNorm1d(2 * width),
            nn.ReLU(),
            nn.Conv1d(2 * width, feature_dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(feature_dim),
            nn.ReLU(),
        )
        self.out_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # [B, T]: one channel
            x = x.unsqueeze(1)
        return self.net(x.float()).mean(dim=2)


@ENCODERS.register("temporal")
def temporal(input_shape, feature_dim=64, **kw):
    """1-D CNN over time for [channels, time] series (channels first), mean-pooled over time."""
    return TemporalEncoder(input_shape, feature_dim, **kw)
