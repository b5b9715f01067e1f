"""Optional pre-decoded cache: uint8 frames and float16 audio in memory-mapped files (``data.options.cache``).

Decoding JPEGs and recomputing spectrograms every epoch costs far more than a small ResNet step on a GPU.
With ``cache: true`` each split is decoded once into ``<cache_dir>/<split>-<key>/``:

* frames: ``uint8 [N, F, C, H, W]`` -- up to ``cache_frames`` (F) frames per clip, evenly spaced when a
  clip has more, resized to short side ``min(cache_size, the first frame's short side)`` keeping the first
  clip's aspect ratio, plus the number of stored frames per clip. How many frames a sample uses
  (``frames``) and how they are chosen (``frame_sampling``) are read from the loader at batch time, so
  changing them needs no rebuild;
* single images: ``uint8 [N, C, H, W]``; audio: ``float16 [N, A, B]`` (the full array when the loader takes
  random windows, else the fixed window); text features: ``float16``.

:meth:`CachedSource.get_batch` then assembles a batch with tensor indexing only -- frame choice per
segment, audio windows -- no per-sample Python; :meth:`CachedSource.batch_transform` does
RandomResizedCrop + flip (training) or Resize (evaluation) and normalisation on the training device
(:class:`mmbalance.data.augment.BatchImageAugment`). ``data.resident=true`` moves the whole cache to the GPU.

Differences from the file path, documented: the crop is taken from the cached (downscaled) frame rather
than the original, and "a random frame per segment" chooses among the cached frames.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from ..augment import BatchImageAugment
from ..base import DataError
from .common import FileSource, fix_length
from .frames import SAMPLING_MODES, decode_image, resize

CACHE_VERSION = 2  # 2: frames are never upscaled (short side min(cache_size, the frame's))


def _reader_key(reader) -> dict:
    keys = ("kind", "color", "frames", "random_crop", "time_axis", "length")
    d = {k: getattr(reader, k, None) for k in keys}
    d["class"] = type(reader).__name__
    rec = getattr(reader, "recipe", None)
    d["recipe"] = rec.describe() if rec is not None else None
    return d


def cache_key(src: FileSource, opts: dict) -> str:
    h = hashlib.sha1()
    payload = {"v": CACHE_VERSION, "name": src.name, "frames": opts.get("cache_frames"), "size": opts.get("cache_size"),
               "readers": {m: _reader_key(r) for m, r in src.readers.items()}}
    h.update(json.dumps(payload, sort_keys=True, default=str).encode())
    for r in src.records:
        h.update(f"{r.name}\t{r.label}\t{json.dumps(r.paths, sort_keys=True, default=str)}\n".encode())
    return h.hexdigest()[:16]


def cached_source(src: FileSource, cache_dir: Path, opts: dict, progress: bool = True) -> "CachedSource":
    """Open the cache of ``src`` (building it first if needed)."""
    d = Path(cache_dir) / f"{src.name.replace('/', '-')}-{cache_key(src, opts)}"
    if not (d / "meta.json").is_file():
        build_cache(src, d, int(opts.get("cache_frames") or 10), int(opts.get("cache_size") or 256), progress)
    return CachedSource(d, src)


def _evenly(n: int, f: int):
    if n <= f:
        return list(range(n))
    return sorted(set(np.linspace(0, n - 1, f).round().astype(int).tolist()))


def _target_hw(h: int, w: int, short: int):
    short = min(short, h, w)  # downscale only: upscaling would store nothing but interpolated pixels
    if h <= w:
        return short, max(1, int(round(w * short / h)))
    return max(1, int(round(h * short / w))), short


def _to_u8(x: torch.Tensor) -> np.ndarray:
    return x.round().clamp(0, 255).to(torch.uint8).numpy()


def build_cache(src: FileSource, d: Path, max_frames: int, short: int, progress: bool = True) -> None:
    from tqdm import tqdm

    # a folder of this process's own: several processes (DDP ranks, parallel jobs) may build the same cache
    # at once; each publishes with one atomic rename and the first one wins
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=d.name + ".building-", dir=d.parent))
    n = len(src)
    meta: Dict[str, dict] = {"version": CACHE_VERSION, "n": n, "modalities": {}}
    for m, reader in src.readers.items():
        kind = reader.kind
        entry: dict = {"kind": kind}
        # disable=None: no bar when stderr is not a terminal (tests, batch jobs)
        bar = tqdm(total=n, desc=f"cache {src.name}:{m}", disable=None if progress else True, unit="sample")
        try:
            if kind in ("frames", "flow"):
                color = "L" if kind == "flow" else reader.color
                channels = 2 if kind == "flow" else (1 if color == "L" else 3)

                def clip_frames(rec):
                    if kind == "flow":
                        u, v = rec.paths[m]
                        us, vs = reader._frames.frames_of(u), reader._frames.frames_of(v)
                        k = min(len(us), len(vs))
                        return [(Path(u) / us[i], Path(v) / vs[i]) for i in range(k)]
                    folder = rec.paths[m]
                    return [(Path(folder) / f,) for f in reader.frames_of(folder)]

                def decode(files):
                    return torch.cat([decode_image(f, color) for f in files])

                first = decode(clip_frames(src.records[0])[0])
                hw = _target_hw(first.shape[-2], first.shape[-1], short)
                arr = np.lib.format.open_memmap(tmp / f"{m}.npy", mode="w+", dtype=np.uint8,
                                                shape=(n, max_frames, channels) + hw)
                counts = np.zeros(n, dtype=np.int64)
                for i, rec in enumerate(src.records):
                    try:
                        files = clip_frames(rec)
                        if not files:
                            raise DataError("no frames")
                        pick = _evenly(len(files), max_frames)
                        for j, k in enumerate(pick):
                            arr[i, j] = _to_u8(resize(decode(files[k]), hw))
                        counts[i] = len(pick)
                    except Exception as e:  # noqa: BLE001
                        raise DataError(f"cache {src.name}: sample {i} ({rec.name!r}), modality {m!r}: {e}") from None
                    bar.update(1)
                arr.flush()
                np.save(tmp / f"{m}.counts.npy", counts)
                # frames per sample and their sampling are not stored: CachedSource reads them from the loader
                entry.update(shape=list(arr.shape), dtype="uint8", channels=channels)
                del arr
            elif kind == "image":
                first = decode_image(src.records[0].paths[m], reader.color)
                hw = _target_hw(first.shape[-2], first.shape[-1], short)
                arr = np.lib.format.open_memmap(tmp / f"{m}.npy", mode="w+", dtype=np.uint8,
                                                shape=(n, first.shape[0]) + hw)
                for i, rec in enumerate(src.records):
                    try:
                        arr[i] = _to_u8(resize(decode_image(rec.paths[m], reader.color), hw))
                    except Exception as e:  # noqa: BLE001
                        raise DataError(f"cache {src.name}: sample {i} ({rec.name!r}), modality {m!r}: {e}") from None
                    bar.update(1)
                arr.flush()
                entry.update(shape=list(arr.shape), dtype="uint8")
                del arr
            else:
                windowed = kind == "audio" and reader.frames and reader.random_crop
                arr = None
                shape0 = None
                for i, rec in enumerate(src.records):
                    x = src.load(i, m) if not windowed else reader.raw(rec.paths[m]).unsqueeze(0)
                    if windowed:
                        axis = 1 + reader.time_axis % 2
                        if shape0 is None:
                            shape0 = tuple(x.shape)
                        x = fix_length(x, shape0[axis], dim=axis)
                    if arr is None:
                        arr = np.lib.format.open_memmap(tmp / f"{m}.npy", mode="w+", dtype=np.float16,
                                                        shape=(n,) + tuple(x.shape))
                    if tuple(x.shape) != arr.shape[1:]:
                        raise DataError(f"cache {src.name}: sample {i} ({rec.name!r}), modality {m!r} has shape "
                                        f"{tuple(x.shape)} but the first sample has {arr.shape[1:]} (set a fixed "
                                        f"length: audio_frames / text_len)")
                    arr[i] = x.numpy().astype(np.float16)
                    bar.update(1)
                arr.flush()
                entry.update(shape=list(arr.shape), dtype="float16", windowed=bool(windowed))
                if windowed:
                    entry.update(frames=int(reader.frames), time_axis=int(1 + reader.time_axis % 2))
                del arr
        finally:
            bar.close()
        meta["modalities"][m] = entry
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    if d.exists() and not (d / "meta.json").is_file():
        shutil.rmtree(d, ignore_errors=True)  # an incomplete folder left by an older version
    try:
        os.replace(tmp, d)
    except OSError:
        if not (d / "meta.json").is_file():
            raise
        shutil.rmtree(tmp, ignore_errors=True)  # another process published the same cache first


class CachedSource:
    """A split served from the cache (see the module docstring); same contract as :class:`FileSource`."""

    def __init__(self, d: Path, src: FileSource):
        meta = json.loads((Path(d) / "meta.json").read_text())
        if meta.get("version") != CACHE_VERSION or meta.get("n") != len(src):
            raise DataError(f"cache {d} is stale (delete it to rebuild)")
        self.dir = Path(d)
        self.name = src.name
        self.meta = meta["modalities"]
        self.modalities = list(src.modalities)
        self.labels = src.labels.clone()
        self.num_classes, self.class_names = src.num_classes, list(src.class_names)
        self.sample_names = src.sample_names
        self.train = False
        self.arrays: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, torch.Tensor] = {}
        self.transforms: Dict[str, Optional[BatchImageAugment]] = {}
        self._augment: Dict[str, bool] = {}
        self.frame_spec: Dict[str, tuple] = {}
        for m in self.modalities:
            info = self.meta[m]
            # copy-on-write map: writable for torch (no warning), never written back
            arr = np.load(self.dir / f"{m}.npy", mmap_mode="c")
            self.arrays[m] = torch.from_numpy(arr)
            if info["kind"] in ("frames", "flow"):
                self.counts[m] = torch.from_numpy(np.load(self.dir / f"{m}.counts.npy"))
                reader = src.readers[m]  # frames per sample and their choice: the loader's current settings
                self.frame_spec[m] = (int(reader.num_frames), str(reader.sampling))
            if info["kind"] in ("frames", "flow", "image"):
                t = src.readers[m].transform
                self.transforms[m] = BatchImageAugment(t.size, t.scale, t.flip_p, t.ratio, t.mean, t.std)
                self._augment[m] = t.augment
        self._shapes: Dict[str, tuple] = {}

    def __len__(self) -> int:
        return len(self.labels)

    def set_train(self, flag: bool) -> None:
        self.train = bool(flag)

    def _frame_index(self, counts: torch.Tensor, t: int, sampling: str, f: int) -> torch.Tensor:
        b = counts.shape[0]
        dev = counts.device
        ar = torch.arange(t, device=dev)
        n = counts.clamp_min(1).unsqueeze(1)
        short = (ar.unsqueeze(0) * n) // t  # fewer frames than wanted: repeat
        seg = (n // t).clamp_min(1)
        base = ar.unsqueeze(0) * seg
        if sampling == "first":
            idx = ar.unsqueeze(0).expand(b, t)
        elif self.train and sampling == "random":
            score = torch.rand(b, f, device=dev)
            score[torch.arange(f, device=dev).unsqueeze(0) >= n] = 2.0  # never pick beyond the clip
            idx = score.argsort(dim=1)[:, :t].sort(dim=1).values
        elif self.train:
            idx = base + (torch.rand(b, t, device=dev) * seg).floor().long()
        else:
            idx = base + (seg - 1) // 2
        return torch.where(n < t, short, idx)

    def get_batch(self, indices: torch.Tensor, modality: str) -> torch.Tensor:
        info = self.meta[modality]
        x = self.arrays[modality]
        idx = torch.as_tensor(indices, dtype=torch.long, device=x.device)
        if info["kind"] in ("frames", "flow"):
            counts = self.counts[modality].index_select(0, idx)
            (t, sampling), f = self.frame_spec[modality], int(info["shape"][1])
            if sampling not in SAMPLING_MODES:
                raise DataError(f"cache {self.dir}: unknown frame sampling {sampling!r}")
            fi = self._frame_index(counts, t, sampling, f)
            return x[idx.unsqueeze(1), fi]
        out = x.index_select(0, idx)
        if info.get("windowed"):
            axis, frames = int(info["time_axis"]), int(info["frames"])
            size = out.shape[axis + 1]  # axis is within one sample [1, A, B]; the batch adds a dim
            if self.train and size > frames:
                off = (torch.rand(out.shape[0], device=out.device) * (size - frames + 1)).floor().long()
            else:
                off = torch.zeros(out.shape[0], dtype=torch.long, device=out.device)
            pos = off.unsqueeze(1) + torch.arange(frames, device=out.device).unsqueeze(0)  # [B, frames]
            shape = [out.shape[0], 1, 1, 1]
            shape[axis + 1] = frames
            pos = pos.reshape(shape).expand(*[out.shape[k] if k != axis + 1 else frames for k in range(4)])
            out = out.gather(axis + 1, pos)
        return out

    def load(self, i: int, modality: str) -> torch.Tensor:
        return self.get_batch(torch.tensor([int(i)]), modality)[0]

    def batch_transform(self, modality: str, x: torch.Tensor, train: bool, generator=None) -> torch.Tensor:
        t = self.transforms.get(modality)
        if t is None:
            return x if x.dtype == torch.float32 else x.float()
        return t(x, train and self._augment[modality], generator)

    def __getitem__(self, i: int):
        inputs = {m: self.batch_transform(m, self.load(i, m).unsqueeze(0), self.train)[0] for m in self.modalities}
        return {"inputs": inputs, "y": int(self.labels[i]), "index": int(i)}

    def input_shape(self, modality: str) -> tuple:
        if modality not in self._shapes:
            was, self.train = self.train, False
            try:
                x = self.batch_transform(modality, self.get_batch(torch.tensor([0]), modality), False)
            finally:
                self.train = was
            self._shapes[modality] = tuple(x.shape[1:])
        return self._shapes[modality]

    def to(self, device) -> "CachedSource":
        """Load the whole cache onto ``device`` (``data.resident=true``)."""
        self.arrays = {m: x.to(device) for m, x in self.arrays.items()}
        self.counts = {m: c.to(device) for m, c in self.counts.items()}
        self.labels = self.labels.to(device)
        return self


__all__ = ["CachedSource", "cached_source", "build_cache", "cache_key"]
