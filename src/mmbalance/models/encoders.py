"""Encoders: each maps one modality's input to a pooled feature vector and exposes ``out_dim``.

Factories take ``(input_shape, feature_dim, **kwargs)``; ``input_shape`` excludes the batch dimension.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from ..registry import ENCODERS


class MLPEncoder(nn.Module):
    """Flatten -> [Linear -> ReLU] x layers. The last layer's ReLU output is the feature."""

    def __init__(self, input_shape: Sequence[int], feature_dim: int = 64, hidden: int = 128, layers: int = 2,
                 dropout: float = 0.0):
        super().__init__()
        d_in = int(math.prod(input_shape))
        dims = [d_in] + [hidden] * (layers - 1) + [feature_dim]
        mods = []
        for a, b in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(a, b), nn.ReLU(inplace=True)]
            if dropout > 0:
                mods.append(nn.Dropout(dropout))
        self.net = nn.Sequential(nn.Flatten(), *mods)
        self.out_dim = feature_dim

    def forward(self, x):
        return self.net(x)


def require_image_shape(input_shape: Sequence[int]) -> None:
    """Convolutional encoders take, per sample, an image ``[H, W]`` / ``[C, H, W]`` or frames ``[T, C, H, W]``."""
    if not 2 <= len(input_shape) <= 4:
        raise ValueError(f"needs an image [H, W], [C, H, W] or frames [T, C, H, W] per sample, but the input "
                         f"shape is {list(input_shape)} (flat feature vectors: use the mlp or transformer encoder)")


def _fold_frames(x: torch.Tensor, image_dims: int = 3):
    """[B, T, C, H, W] -> ([B*T, C, H, W], T); [B, C, H, W] -> (x, 1)."""
    if x.dim() == image_dims + 2:
        b, t = x.shape[:2]
        return x.reshape(b * t, *x.shape[2:]), t
    return x, 1


def _to_image(x: torch.Tensor) -> torch.Tensor:
    # [B, H, W] (e.g. a spectrogram without channel) -> [B, 1, H, W]
    return x.unsqueeze(1) if x.dim() == 3 else x


class SmallCNNEncoder(nn.Module):
    """Three conv-BN-ReLU blocks and global average pooling; frames ([B,T,C,H,W]) are folded and averaged."""

    def __init__(self, input_shape: Sequence[int], feature_dim: int = 64, width: int = 32):
        super().__init__()
        require_image_shape(input_shape)
        c_in = input_shape[-3] if len(input_shape) >= 3 else 1
        self.net = nn.Sequential(
            nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * width, feature_dim, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(feature_dim),
            nn.ReLU(inplace=True),
        )
        self.out_dim = feature_dim

    def forward(self, x):
        x = _to_image(x)
        x, t = _fold_frames(x)
        f = self.net(x).mean(dim=(2, 3))
        return f.reshape(-1, t, f.shape[-1]).mean(1)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + idt)


class ResNet18Encoder(nn.Module):
    """ResNet-18 (He et al. 2016) written here, for 1 (spectrogram), 2 (optical flow) or 3 (RGB) channels.

    Video input ``[B, T, C, H, W]`` is folded into the batch and the final map is average-pooled over
    T x H x W, as in the OGM-GE / D&R code. Init follows that code: Kaiming-normal (fan_out) convs,
    BN weight ~ N(1, 0.02), bias 0. ``feature_dim`` is ignored: the feature is 512-d.
    """

    def __init__(self, input_shape: Sequence[int], feature_dim: int = 512, in_channels: int | None = None):
        super().__init__()
        require_image_shape(input_shape)
        c_in = in_channels or (input_shape[-3] if len(input_shape) >= 3 else 1)
        self.conv1 = nn.Conv2d(c_in, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, c = [], 64
        for i, w in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            layers.append(nn.Sequential(BasicBlock(c, w, stride), BasicBlock(w, w, 1)))
            c = w
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.out_dim = 512
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.normal_(m.weight, 1.0, 0.02)
                nn.init.zeros_(m.bias)

    def feature_map(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        x = _to_image(x)
        x, t = _fold_frames(x)
        fm = self.feature_map(x)  # [B*T, 512, h, w]
        f = fm.mean(dim=(2, 3))
        return f.reshape(-1, t, f.shape[-1]).mean(1)


class TransformerEncoder(nn.Module):
    """Linear projection + learned positions + Transformer encoder layers + mean pooling over time.

    Input ``[B, L, D]`` (a sequence of feature vectors, e.g. MOSI), ``[B, D]`` (one token), or
    ``[B, C, H, W]`` (treated as W time steps of C*H features, e.g. a spectrogram).
    """

    def __init__(self, input_shape: Sequence[int], feature_dim: int = 64, layers: int = 2, heads: int = 4,
                 max_len: int = 512, dropout: float = 0.1):
        super().__init__()
        shape = tuple(input_shape)
        if len(shape) == 1:
            d_in = shape[0]
        elif len(shape) == 2:
            d_in = shape[1]
        elif len(shape) == 3:
            d_in = shape[0] * shape[1]
        else:
            raise ValueError(f"needs [D], [L, D] or [C, H, W] per sample, but the input shape is {list(shape)}")
        if feature_dim % heads:
            raise ValueError(f"transformer encoder: feature_dim {feature_dim} must be divisible by heads {heads}")
        self.proj = nn.Linear(d_in, feature_dim)
        self.pos = nn.Parameter(torch.zeros(1, max_len, feature_dim))
        nn.init.normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(feature_dim, heads, 2 * feature_dim, dropout, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out_dim = feature_dim
        self.max_len = max_len

    def forward(self, x):
        if x.dim() == 2:
            x = x.unsqueeze(1)
        elif x.dim() == 4:
            b, c, h, w = x.shape
            x = x.permute(0, 3, 1, 2).reshape(b, w, c * h)
        if x.shape[1] > self.max_len:
            raise ValueError(f"sequence length {x.shape[1]} exceeds max_len {self.max_len}")
        h = self.encoder(self.proj(x) + self.pos[:, : x.shape[1]])
        return h.mean(1)


@ENCODERS.register("mlp")
def mlp(input_shape, feature_dim=64, **kw):
    """Flatten + MLP (default for the embedded datasets)."""
    return MLPEncoder(input_shape, feature_dim, **kw)


@ENCODERS.register("cnn")
def cnn(input_shape, feature_dim=64, **kw):
    """Small 3-block CNN for images / spectrograms / frame stacks."""
    return SmallCNNEncoder(input_shape, feature_dim, **kw)


@ENCODERS.register("resnet18")
def resnet18(input_shape, feature_dim=512, **kw):
    """ResNet-18 from scratch, 1/2/3 input channels, frames folded into the batch (the papers' backbone)."""
    return ResNet18Encoder(input_shape, feature_dim, **kw)


@ENCODERS.register("transformer")
def transformer(input_shape, feature_dim=64, **kw):
    """Small Transformer over a sequence of feature vectors, mean-pooled."""
    return TransformerEncoder(input_shape, feature_dim, **kw)
