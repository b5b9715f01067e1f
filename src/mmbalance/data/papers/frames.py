"""Video frames and images: frame sampling per the papers, JPEG decoding (Pillow), transforms in torch.

Frame sampling (``frame_sampling``), for a clip folder with ``n`` frames and ``T`` frames wanted:

* ``segments`` (D&R / MMPareto, default): the folder is cut into ``T`` equal segments of
  ``seg = n // T`` frames; training draws one random frame per segment, evaluation takes each
  segment's middle frame ``i*seg + (seg-1)//2``.
* ``random`` (OGM-GE's intent): ``T`` distinct random frames, sorted, in training; evaluation uses the
  ``segments`` middle frames (OGM-GE also draws at random at test time; we keep evaluation deterministic).
* ``first`` (what OGM-GE / BSS code effectively reads: it draws indices but opens the first files): the
  first ``T`` frames, always.

Clips with fewer than ``T`` frames repeat frames: index ``i*n//T`` (training and evaluation alike).

Transforms (torchvision semantics, written in torch): training = RandomResizedCrop(size, scale
(0.08, 1), ratio (3/4, 4/3)) + horizontal flip (p=0.5), each frame independently as the papers'
per-image torchvision pipelines do; evaluation = Resize((size, size)); then ``/255`` and mean/std
normalisation (ImageNet by default).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ..base import DataError
from .common import IMAGE_EXTS, IMAGENET_MEAN, IMAGENET_STD, Reader, Record, natural_key

SAMPLING_MODES = ("segments", "random", "first")


# ---------------------------------------------------------------------------------------------- listing / indices
def list_frames(folder: os.PathLike) -> List[str]:
    """Image files of a clip folder, in natural order (``frame_2`` before ``frame_10``)."""
    try:
        names = [e.name for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(IMAGE_EXTS)]
    except FileNotFoundError:
        raise DataError(f"missing frame folder {folder}") from None
    except NotADirectoryError:
        raise DataError(f"{folder} is not a folder of frames") from None
    return sorted(names, key=natural_key)


def frame_indices(n: int, t: int, mode: str = "segments", train: bool = False) -> List[int]:
    """Indices of the ``t`` frames to read from a clip of ``n`` frames (see the module docstring)."""
    if n <= 0:
        raise DataError("clip has no frames")
    if t <= 0:
        raise DataError(f"frames must be >= 1, got {t}")
    if mode not in SAMPLING_MODES:
        raise DataError(f"frame_sampling={mode!r} must be one of {', '.join(SAMPLING_MODES)}")
    if n < t:
        return [i * n // t for i in range(t)]
    if mode == "first":
        return list(range(t))
    if mode == "random" and train:
        return sorted(torch.randperm(n)[:t].tolist())
    seg = n // t
    if train:
        off = torch.randint(0, seg, (t,)).tolist()
        return [i * seg + o for i, o in enumerate(off)]
    return [i * seg + (seg - 1) // 2 for i in range(t)]


# ---------------------------------------------------------------------------------------------- decoding
def decode_image(path: os.PathLike, mode: str = "RGB", draft: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Decode an image file to a uint8 tensor ``[C, H, W]`` (``mode`` ``RGB`` -> 3 channels, ``L`` -> 1).

    ``draft`` lets Pillow's JPEG decoder downscale by 1/2, 1/4 or 1/8 while decoding, never below the
    requested size (used for evaluation-time resizes only).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            if draft is not None and img.format == "JPEG":
                img.draft(mode, draft)
            img = img.convert(mode)
            arr = np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"missing image {path}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot decode image {path} (truncated or corrupt?): {e}") from None
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)


# ---------------------------------------------------------------------------------------------- transforms
def resize(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Bilinear resize with antialiasing of ``[C, H, W]`` (any dtype; returns float32 in [0, 255] scale)."""
    x = x.float()
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x.unsqueeze(0), size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def random_resized_crop_box(h: int, w: int, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)) -> Tuple[int, int, int, int]:
    """torchvision's RandomResizedCrop box ``(top, left, height, width)``, drawn with torch's global RNG."""
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(scale[0], scale[1]))
        ar = math.exp(float(torch.empty(1).uniform_(log_r[0], log_r[1])))
        cw = int(round(math.sqrt(target * ar)))
        ch = int(round(math.sqrt(target / ar)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,)))
            left = int(torch.randint(0, w - cw + 1, (1,)))
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < min(ratio):
        cw, ch = w, int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        ch, cw = h, int(round(h * max(ratio)))
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class FrameTransform:
    """Per-image transform ``uint8 [C, H, W] -> float32 [C, size, size]`` (see the module docstring).

    Args:
        size: output side (the papers: 224).
        augment: RandomResizedCrop + flip in training (False: Resize in training too, as the D&R
            release effectively does for CREMA-D and the GeWu UCF-101 loader does for flow).
        scale, ratio: RandomResizedCrop ranges (torchvision defaults).
        flip_p: horizontal flip probability in training.
        mean, std: per-channel normalisation after ``/255`` (None: no normalisation).
    """

    def __init__(self, size: int = 224, augment: bool = True, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                 flip_p: float = 0.5, mean: Optional[Sequence[float]] = IMAGENET_MEAN,
                 std: Optional[Sequence[float]] = IMAGENET_STD):
        self.size = int(size)
        self.augment = bool(augment)
        self.scale, self.ratio, self.flip_p = tuple(scale), tuple(ratio), float(flip_p)
        self.mean, self.std = mean, std

    def draft(self, train: bool) -> Optional[Tuple[int, int]]:
        return None if (train and self.augment) else (self.size, self.size)

    def __call__(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        s = (self.size, self.size)
        if train and self.augment:
            top, left, ch, cw = random_resized_crop_box(x.shape[-2], x.shape[-1], self.scale, self.ratio)
            x = resize(x[..., top:top + ch, left:left + cw], s)
            if self.flip_p > 0 and float(torch.rand(1)) < self.flip_p:
                x = x.flip(-1)
        else:
            x = resize(x, s)
        x = x / 255.0
        if self.mean is not None:
            c = x.shape[0]
            mean = torch.tensor(self.mean[:c], dtype=x.dtype).view(-1, 1, 1)
            std = torch.tensor(self.std[:c], dtype=x.dtype).view(-1, 1, 1)
            x = (x - mean) / std
        return x


# ---------------------------------------------------------------------------------------------- readers
class FrameReader(Reader):
    """``T`` frames of a clip folder -> ``[T, C, size, size]`` (``record.paths[modality]`` = the folder).

    ``color``: ``RGB`` (3 channels) or ``L`` (1 channel: depth maps, grayscale).
    """

    kind = "frames"

    def __init__(self, modality: str, num_frames: int, transform: FrameTransform, sampling: str = "segments",
                 color: str = "RGB"):
        if sampling not in SAMPLING_MODES:
            raise DataError(f"frame_sampling={sampling!r} must be one of {', '.join(SAMPLING_MODES)}")
        if int(num_frames) < 1:
            raise DataError(f"option frames must be >= 1, got {num_frames!r}")
        self.modality, self.num_frames, self.transform = modality, int(num_frames), transform
        self.sampling, self.color = sampling, color
        self._listing: Dict[str, List[str]] = {}

    def frames_of(self, folder) -> List[str]:
        key = str(folder)
        if key not in self._listing:
            files = list_frames(folder)
            if not files:
                raise DataError(f"frame folder {folder} has no images ({', '.join(IMAGE_EXTS)})")
            self._listing[key] = files
        return self._listing[key]

    def read(self, record: Record, train: bool) -> torch.Tensor:
        folder = record.paths[self.modality]
        files = self.frames_of(folder)
        idx = frame_indices(len(files), self.num_frames, self.sampling, train)
        draft = self.transform.draft(train)
        out = [self.transform(decode_image(Path(folder) / files[i], self.color, draft), train) for i in idx]
        return torch.stack(out)

    def exists(self, record: Record) -> Optional[str]:
        folder = record.paths[self.modality]
        if not os.path.isdir(folder):
            return f"missing frame folder {folder}"
        return None


class FlowReader(Reader):
    """Optical flow: ``T`` frame pairs from a ``u`` and a ``v`` folder -> ``[T, 2, size, size]``.

    ``record.paths[modality]`` = ``(u_folder, v_folder)``. Both components get the same crop (they are
    transformed as one 2-channel image). Default normalisation: mean 0.1307, std 0.3081 (GeWu UCF-101).
    A horizontal flip does not negate the ``u`` component (as in the papers' code), so flow
    augmentation is off by default.
    """

    kind = "flow"

    def __init__(self, modality: str, num_frames: int, transform: FrameTransform, sampling: str = "segments"):
        self.modality, self.num_frames, self.transform, self.sampling = modality, int(num_frames), transform, sampling
        self._frames = FrameReader(modality, num_frames, transform, sampling, "L")

    def read(self, record: Record, train: bool) -> torch.Tensor:
        u_dir, v_dir = record.paths[self.modality]
        us, vs = self._frames.frames_of(u_dir), self._frames.frames_of(v_dir)
        n = min(len(us), len(vs))
        idx = frame_indices(n, self.num_frames, self.sampling, train)
        draft = self.transform.draft(train)
        out = []
        for i in idx:
            uv = torch.cat([decode_image(Path(u_dir) / us[i], "L", draft),
                            decode_image(Path(v_dir) / vs[i], "L", draft)])
            out.append(self.transform(uv, train))
        return torch.stack(out)

    def exists(self, record: Record) -> Optional[str]:
        for d in record.paths[self.modality]:
            if not os.path.isdir(d):
                return f"missing flow folder {d}"
        return None


class ImageReader(Reader):
    """One image file -> ``[C, size, size]`` (``record.paths[modality]`` = the file)."""

    kind = "image"

    def __init__(self, modality: str, transform: FrameTransform, color: str = "RGB"):
        self.modality, self.transform, self.color = modality, transform, color

    def read(self, record: Record, train: bool) -> torch.Tensor:
        return self.transform(decode_image(record.paths[self.modality], self.color, self.transform.draft(train)), train)


def frame_options(opts: dict, defaults_scale=(0.08, 1.0)) -> FrameTransform:
    """Build the RGB frame transform from a dataset's ``image_size``/``augment``/``crop_scale`` options."""
    scale = opts.get("crop_scale") or defaults_scale
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and 0 < float(scale[0]) <= float(scale[1]) <= 1):
        raise DataError(f"option crop_scale={scale!r} must be [min, max] with 0 < min <= max <= 1")
    size = opts.get("image_size", 224)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise DataError(f"option image_size={size!r} must be an integer >= 8")
    return FrameTransform(size, bool(opts.get("augment", True)), (float(scale[0]), float(scale[1])))


__all__ = ["SAMPLING_MODES", "list_frames", "frame_indices", "decode_image", "resize", "random_resized_crop_box",
           "FrameTransform", "FrameReader", "FlowReader", "ImageReader", "frame_options"]
