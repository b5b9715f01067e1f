"""Batched image augmentation in torch, on whatever device the batch lives (GPU: no per-sample Python).

:class:`BatchImageAugment` does the papers' visual pipeline on a whole batch at once: uint8 -> float,
RandomResizedCrop + horizontal flip (training) or Resize (evaluation), then mean/std normalisation.
Per-sample randomness comes from a seeded ``torch.Generator``, so runs are reproducible.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def random_resized_crop_params(n: int, height: int, width: int, scale: Tuple[float, float] = (0.08, 1.0),
                               ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                               generator: Optional[torch.Generator] = None, device="cpu"):
    """Per-sample crop boxes ``(cy, cx, h, w)`` as fractions of the image, RandomResizedCrop-style.

    Vectorised rejection sampling: 10 proposals per sample, the first valid one is kept, and samples
    without a valid proposal fall back to the central crop with the ratio clamped (as torchvision does).
    """
    tries = 10
    area = height * width
    u = torch.rand(n, tries, 4, generator=generator, device=device)
    target = area * (scale[0] + (scale[1] - scale[0]) * u[..., 0])
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[..., 1]
    ar = torch.exp(log_r)
    w = torch.sqrt(target * ar).round()
    h = torch.sqrt(target / ar).round()
    ok = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(ok.any(1), ok.float().argmax(1), torch.full((n,), -1, device=device))
    idx = first.clamp_min(0)
    rows = torch.arange(n, device=device)
    w_s, h_s = w[rows, idx], h[rows, idx]
    y0 = (u[rows, idx, 2] * (height - h_s + 1)).floor().clamp(0, None)
    x0 = (u[rows, idx, 3] * (width - w_s + 1)).floor().clamp(0, None)
    # fallback: whole image, ratio clamped
    in_ratio = width / height
    if in_ratio < ratio[0]:
        fw, fh = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        fh, fw = height, round(height * ratio[1])
    else:
        fw, fh = width, height
    bad = first < 0
    w_s = torch.where(bad, torch.full_like(w_s, fw), w_s)
    h_s = torch.where(bad, torch.full_like(h_s, fh), h_s)
    y0 = torch.where(bad, torch.full_like(y0, (height - fh) // 2), y0)
    x0 = torch.where(bad, torch.full_like(x0, (width - fw) // 2), x0)
    return (y0 + h_s / 2) / height, (x0 + w_s / 2) / width, h_s / height, w_s / width


def resize_weights(start: torch.Tensor, length: torch.Tensor, in_size: int, out_size: int) -> torch.Tensor:
    """Per-sample 1-D antialiased bilinear resampling matrices ``[n, out_size, in_size]``.

    Row ``i`` of sample ``k`` resamples the window ``[start_k, start_k + length_k)`` (whole pixels) of an
    axis of ``in_size`` pixels to output pixel ``i`` with the triangle filter widened by the downscale
    factor: the weights of ``F.interpolate(window, mode="bilinear", antialias=True, align_corners=False)``
    (and of PIL's bilinear resize, which torchvision's RandomResizedCrop uses on images), normalised
    over the pixels inside the window.
    """
    scale = (length / out_size).to(torch.float32)  # [n]
    inv = torch.where(scale >= 1, 1.0 / scale, torch.ones_like(scale))
    centre = (torch.arange(out_size, device=start.device, dtype=torch.float32)[None, :] + 0.5) * scale[:, None]
    j = torch.arange(in_size, device=start.device, dtype=torch.float32)[None, None, :] - start[:, None, None]
    wts = (1 - ((j + 0.5 - centre[:, :, None]) * inv[:, None, None]).abs()).clamp_min(0)
    wts = wts * ((j >= 0) & (j < length[:, None, None])).to(wts.dtype)
    return wts / wts.sum(-1, keepdim=True).clamp_min(1e-12)


def crop_resize_antialiased(x: torch.Tensor, y0: torch.Tensor, x0: torch.Tensor, h: torch.Tensor,
                            w: torch.Tensor, size: int, flip: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Crop box ``[y0, y0+h) x [x0, x0+w)`` of every image of ``x`` [n, C, H, W], resized to ``size x size``
    with antialiasing, optionally mirrored: one batched pair of matrix products, no per-sample loop.

    Equals cropping each image and calling ``F.interpolate(..., antialias=True)`` on it (tested), so
    downscaling a large crop averages over the pixels it covers instead of aliasing.
    """
    wy = resize_weights(y0, h, x.shape[-2], size)  # [n, S, H]
    wx = resize_weights(x0, w, x.shape[-1], size)  # [n, S, W]
    if flip is not None:
        wx = torch.where(flip[:, None, None], wx.flip(1), wx)
    hh, ww = x.shape[-2:]
    if size * hh * (ww + size) <= size * ww * (hh + size):  # the cheaper order of the two products
        return torch.matmul(wy[:, None], torch.matmul(x, wx[:, None].transpose(-1, -2)))  # via [n, C, H, S]
    return torch.matmul(torch.matmul(wy[:, None], x), wx[:, None].transpose(-1, -2))  # via [n, C, S, W]


class BatchImageAugment:
    """The papers' frame transform for a batch ``[B, C, H, W]`` or ``[B, T, C, H, W]`` (uint8 or float).

    Training: RandomResizedCrop(size, scale) + horizontal flip with probability ``flip_p``; each frame of a
    clip gets its own crop (as per-frame torchvision transforms do), resized with antialiasing like the
    evaluation path and PIL. Evaluation: Resize(size) with antialiasing.
    ``mean``/``std`` None skips normalisation.
    """

    def __init__(self, size: int = 224, scale: Tuple[float, float] = (0.08, 1.0), flip_p: float = 0.5,
                 ratio: Tuple[float, float] = (3 / 4, 4 / 3), mean: Optional[Sequence[float]] = IMAGENET_MEAN, std: Optional[Sequence[float]] = IMAGENET_STD):
        self.size, self.scale, self.flip_p, self.ratio = int(size), scale, flip_p, ratio
        self.mean, self.std = mean, std
        self._norm: dict = {}  # device -> (mean, std) tensors: made once, not copied to the GPU every batch

    def _normalisation(self, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
        # a tensor built from Python numbers on a GPU is a blocking host-to-device copy (a host sync) per batch
        if device not in self._norm:
            self._norm[device] = (torch.tensor(self.mean, device=device).view(1, -1, 1, 1),
                                  torch.tensor(self.std, device=device).view(1, -1, 1, 1))
        return self._norm[device]

    def __call__(self, x: torch.Tensor, train: bool, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        frames = x.dim() == 5
        if frames:
            b, t = x.shape[:2]
            x = x.reshape(b * t, *x.shape[2:])
        if x.dtype == torch.uint8:
            x = x.float().div_(255.0)
        else:
            x = x.float()
        n, c, h, w = x.shape
        if train:
            cy, cx, sh, sw = random_resized_crop_params(n, h, w, self.scale, self.ratio, generator=generator,
                                                        device=x.device)
            flip = torch.rand(n, generator=generator, device=x.device) < self.flip_p
            # integer pixel boxes (the params are whole pixels expressed as fractions)
            ch, cw = (sh * h).round(), (sw * w).round()
            y0, x0 = (cy * h - ch / 2).round(), (cx * w - cw / 2).round()
            x = crop_resize_antialiased(x, y0, x0, ch, cw, self.size, flip)
        elif (h, w) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True)
        if self.mean is not None:
            mean, std = self._normalisation(x.device)
            x = (x - mean[:, :c]) / std[:, :c]
        if frames:
            x = x.reshape(b, t, *x.shape[1:])
        return x
