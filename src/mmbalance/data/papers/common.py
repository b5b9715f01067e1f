"""Shared machinery of the paper datasets: split files, labels, validation splits, the file-backed source.

A paper dataset is a folder (``data.root``) holding split files, per-clip frame folders and per-clip audio
(or feature) files. This module reads the split files in every format the papers' repositories use,
maps labels to class ids, carves a seeded stratified validation split where a dataset has none, and
provides :class:`FileSource`, the source (see :mod:`mmbalance.data.base`) that loads one sample's
modalities from disk on demand.
"""
from __future__ import annotations

import csv
import hashlib
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ...config import DataConfig
from ..base import DataError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: optical flow normalisation of the GeWu UCF-101 loader (BalanceBenchmark ``ucf101_dataset.py``)
FLOW_MEAN = (0.1307, 0.1307)
FLOW_STD = (0.3081, 0.3081)

VIDEO_EXTS = (".mp4", ".avi", ".flv", ".mkv", ".webm", ".mov")
AUDIO_EXTS = (".wav", ".npy", ".pt", ".pkl", ".npz", ".flac", ".mp3")
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
_HEADER_WORDS = {"name", "clip", "id", "path", "video", "label", "class", "filename", "file", "youtube_id",
                 "ytid", "image_path", "index", "emotion", "sample"}


# ---------------------------------------------------------------------------------------------- options
def dataset_options(name: str, cfg: DataConfig, defaults: Dict[str, Any]) -> Dict[str, Any]:
    """``defaults`` updated with ``cfg.options``; an unknown option fails naming it and the valid ones."""
    from ...registry import suggest

    for k in cfg.options:
        if k not in defaults:
            raise DataError(f"dataset {name!r} has no option {k!r}.{suggest(k, defaults)} "
                            f"Options: {', '.join(sorted(defaults))}")
    opts = dict(defaults)
    opts.update(cfg.options)
    return opts


def selected_modalities(cfg: DataConfig, available: Sequence[str], name: str) -> List[str]:
    mods = cfg.modalities
    if mods is None:
        return list(available)
    if isinstance(mods, str):
        mods = [s.strip() for s in mods.split(",") if s.strip()]
    bad = [m for m in mods if m not in available]
    if bad:
        raise DataError(f"dataset {name!r} has no modality {bad[0]!r}; it has {', '.join(available)}")
    if not mods:
        raise DataError(f"dataset {name!r}: data.modalities is empty")
    return list(mods)


def require_root(cfg: DataConfig, name: str) -> Path:
    if not cfg.root:
        raise DataError(f"dataset {name!r} needs data.root (the prepared folder; see docs/datasets.md, "
                        f"`mmbalance prepare {name} --raw RAW --out DIR`)")
    root = Path(cfg.root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset {name!r}: data.root {str(root)!r} is not a folder")
    return root


def resolve_path(root: Path, p: Optional[str]) -> Optional[Path]:
    if p is None:
        return None
    q = Path(p).expanduser()
    return q if q.is_absolute() else root / q


# ---------------------------------------------------------------------------------------------- split files
@dataclass
class SplitRow:
    """One row of a split file: the sample name, its label token (None if the row has none), all fields."""

    name: str
    label: Optional[str]
    fields: List[str] = field(default_factory=list)
    line: int = 0


def strip_media_ext(name: str) -> str:
    """``v_x.avi`` -> ``v_x``; ``clip.flv`` -> ``clip``; other dots are kept (YouTube ids may contain none)."""
    low = name.lower()
    for ext in VIDEO_EXTS + AUDIO_EXTS + IMAGE_EXTS:
        if low.endswith(ext):
            return name[: -len(ext)]
    return name


def _split_fields(line: str) -> List[str]:
    if "," in line:
        return [f.strip() for f in next(csv.reader([line]))]
    if "\t" in line:
        return [f.strip() for f in line.split("\t")]
    return line.split()


def read_split_file(path: Path, label_field: str = "last") -> List[SplitRow]:
    """Read a split file in any of the formats of the papers' repositories.

    Accepted rows (one sample per line, blank lines and ``#`` comments ignored, a header row skipped):

    * ``clip,EMO`` (OGM-GE / PMR / BalanceMM CREMA-D csv), ``name,10,label`` (OGM-GE Kinetics-Sounds);
    * ``name.flv ClassName`` (MLA txt; the class name may contain spaces: everything after the name);
    * ``name ... 7`` space-separated with an integer label last (BalanceMM);
    * ``Class/v_x.avi 1`` or just ``Class/v_x.avi`` (UCF-101 lists; no label -> ``label`` is None).

    The name loses directory parts and a media extension (``.flv``, ``.mp4``, ``.wav``...). With
    ``label_field="last"`` the label is the last field of a comma/tab row; for whitespace rows it is the
    rest of the line after the name (so multi-word class names survive).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not a text file ({e})") from None
    rows: List[SplitRow] = []
    for ln, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        delim = "," in line or "\t" in line
        parts = _split_fields(line)
        if not parts:
            continue
        if not rows and any(p.strip().lower() in _HEADER_WORDS for p in parts):
            continue  # header row
        name = strip_media_ext(parts[0].replace("\\", "/").rstrip("/").split("/")[-1])
        if len(parts) == 1:
            label = None
        elif delim:
            label = parts[-1]
        else:
            label = " ".join(parts[1:])
            # BalanceMM: "name <other tokens> <int label>"
            if len(parts) > 2 and re.fullmatch(r"-?\d+", parts[-1]):
                label = parts[-1]
        rows.append(SplitRow(name, label, parts, ln))
    if not rows:
        raise DataError(f"split file {path} has no rows")
    return rows


def normalise_class_name(s: str) -> str:
    return re.sub(r"[\s_\-]+", "_", s.strip().lower())


def labels_from_tokens(rows: Sequence[SplitRow], class_names: Sequence[str], where: str,
                       int_offset: int = 0, aliases: Optional[Dict[str, str]] = None) -> List[int]:
    """Map label tokens (class names, aliases or integers ``offset``-based) to class ids, naming bad rows."""
    lookup = {normalise_class_name(c): i for i, c in enumerate(class_names)}
    for a, target in (aliases or {}).items():
        lookup[normalise_class_name(a)] = lookup[normalise_class_name(target)]
    out = []
    for r in rows:
        tok = r.label
        if tok is None:
            raise DataError(f"{where}: line {r.line} ({r.name!r}) has no label")
        key = normalise_class_name(tok)
        if key in lookup:
            out.append(lookup[key])
            continue
        if re.fullmatch(r"-?\d+", tok.strip()):
            y = int(tok) - int_offset
            if not 0 <= y < len(class_names):
                raise DataError(f"{where}: line {r.line} ({r.name!r}): label {tok} is out of range for "
                                f"{len(class_names)} classes (labels are {int_offset}-based)")
            out.append(y)
            continue
        from ...registry import suggest

        raise DataError(f"{where}: line {r.line} ({r.name!r}): unknown class {tok!r}.{suggest(key, lookup)}")
    return out


def find_file(root: Path, candidates: Iterable[str]) -> Optional[Path]:
    """First existing file among ``candidates`` (relative to ``root`` and ``root/splits``)."""
    for c in candidates:
        for base in (root, root / "splits", root / "annotations", root / "data"):
            p = base / c
            if p.is_file():
                return p
    return None


def find_dir(root: Path, candidates: Iterable[str]) -> Optional[Path]:
    for c in candidates:
        p = root / c
        if p.is_dir():
            return p
    return None


# ---------------------------------------------------------------------------------------------- val splits
def stratified_holdout(labels: Sequence[int], n_val: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Seeded stratified hold-out: ``n_val`` indices for validation, the rest for training (both sorted).

    Algorithm (documented so that anyone can reproduce it without this library): every class gets
    ``n_val * n_c / N`` validation samples, rounded down, and the remaining slots go to the classes with
    the largest fractional parts (ties: lower class id). Within a class, the samples are ordered by
    ``numpy.random.default_rng(seed).permutation`` of that class's indices (classes processed in
    increasing id, one generator for all), and the first ones go to validation.
    """
    y = np.asarray(labels, dtype=np.int64)
    n = len(y)
    if not 0 < n_val < n:
        raise DataError(f"validation size {n_val} must be between 1 and {n - 1} (training set has {n} samples)")
    classes = np.unique(y)
    counts = np.array([(y == c).sum() for c in classes])
    exact = n_val * counts / n
    quota = np.floor(exact).astype(int)
    rem = n_val - quota.sum()
    order = sorted(range(len(classes)), key=lambda k: (-(exact[k] - quota[k]), k))
    for k in order[:rem]:
        quota[k] += 1
    rng = np.random.default_rng(seed)
    val = []
    for k, c in enumerate(classes):
        idx = np.nonzero(y == c)[0]
        perm = idx[rng.permutation(len(idx))]
        val.extend(perm[: quota[k]].tolist())
    val = np.sort(np.asarray(val, dtype=np.int64))
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return np.nonzero(mask)[0], val


def holdout_size(n_train: int, val_size: Any, default_fraction: float) -> int:
    """``val_size`` as an int count, a fraction in (0, 1), or None (use ``default_fraction``)."""
    v = default_fraction if val_size is None else val_size
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise DataError(f"option val_size must be a count or a fraction, got {v!r}")
    if isinstance(v, float) and 0 < v < 1:
        return max(1, int(round(v * n_train)))
    if float(v).is_integer() and v >= 1:
        return int(v)
    raise DataError(f"option val_size={v!r}: use a count >= 1 or a fraction in (0, 1)")


# ---------------------------------------------------------------------------------------------- records / source
@dataclass
class Record:
    """One sample: its name, class id and, per modality, what the modality's reader needs (paths...)."""

    name: str
    label: int
    paths: Dict[str, Any]


class Reader:
    """Loads one modality of one record: ``read(record, train) -> Tensor``. ``kind`` names what it reads."""

    kind = "file"
    #: whether pickle-based files (``.pkl``) may be read; set from ``data.trust_pickle`` (see spec.finish)
    trust_pickle = False

    def read(self, record: Record, train: bool) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def exists(self, record: Record) -> Optional[str]:
        """None if the record's files for this modality are present, else a message naming what is missing."""
        p = record.paths.get(self.modality)  # type: ignore[attr-defined]
        if p is None:
            return None
        paths = p if isinstance(p, (list, tuple)) else [p]
        for q in paths:
            if not os.path.exists(q):
                return f"missing {q}"
        return None


class FileSource:
    """A split of a file-based dataset; loads each sample's modalities from disk (see :mod:`..base`).

    ``set_train(True)`` switches every reader to its training transforms (random frame per segment,
    RandomResizedCrop + flip, random audio window); evaluation transforms are deterministic. Randomness
    comes from torch's global generator, which the trainer seeds and saves in checkpoints (and which
    DataLoader workers seed per worker from it), so runs are reproducible and resume exactly.
    """

    def __init__(self, name: str, records: List[Record], readers: Dict[str, Reader], class_names: Sequence[str]):
        self.name = name
        self.records = records
        self.readers = dict(readers)
        self.modalities = list(self.readers)
        self.class_names = list(class_names)
        self.num_classes = len(self.class_names)
        self.labels = torch.tensor([r.label for r in records], dtype=torch.long)
        self.train = False
        self._shapes: Dict[str, tuple] = {}

    # -- contract
    def __len__(self) -> int:
        return len(self.records)

    def set_train(self, flag: bool) -> None:
        self.train = bool(flag)

    def load(self, i: int, modality: str) -> torch.Tensor:
        rec = self.records[i]
        reader = self.readers[modality]
        try:
            return reader.read(rec, self.train)
        except DataError as e:
            raise DataError(f"{self.name}: sample {i} ({rec.name!r}), modality {modality!r}: {e}") from None
        except Exception as e:  # noqa: BLE001 - any decode failure must name the sample
            raise DataError(f"{self.name}: sample {i} ({rec.name!r}), modality {modality!r}: "
                            f"{type(e).__name__}: {e}") from None

    def __getitem__(self, i: int):
        return {"inputs": {m: self.load(i, m) for m in self.modalities}, "y": int(self.labels[i]), "index": int(i)}

    def input_shape(self, modality: str) -> tuple:
        if modality not in self._shapes:
            if not self.records:
                raise DataError(f"{self.name}: empty split, cannot infer the shape of {modality!r}")
            was = self.train
            self.train = False
            try:
                self._shapes[modality] = tuple(self.load(0, modality).shape)
            finally:
                self.train = was
        return self._shapes[modality]

    def batch_transform(self, modality: str, x: torch.Tensor, train: bool, generator=None) -> torch.Tensor:
        return x if x.dtype == torch.float32 else x.float()

    # -- helpers
    def subset(self, indices, name: Optional[str] = None) -> "FileSource":
        idx = [int(i) for i in indices]
        return FileSource(name or self.name, [self.records[i] for i in idx], self.readers, self.class_names)

    def select_modalities(self, modalities: Sequence[str]) -> "FileSource":
        return FileSource(self.name, self.records, {m: self.readers[m] for m in modalities}, self.class_names)

    @property
    def sample_names(self) -> List[str]:
        return [r.name for r in self.records]

    def missing(self) -> List[str]:
        """Messages for every record whose files are missing (checked without decoding)."""
        out = []
        for i, r in enumerate(self.records):
            for m, reader in self.readers.items():
                msg = reader.exists(r)
                if msg:
                    out.append(f"{self.name}: sample {i} ({r.name!r}), modality {m!r}: {msg}")
        return out


def drop_or_fail(name: str, records: List[Record], readers: Dict[str, Reader], missing: str,
                 split: str) -> List[Record]:
    """Check every record's files; ``missing='error'`` fails naming the first few, ``'skip'`` drops them."""
    bad: List[Tuple[Record, str]] = []
    for r in records:
        for m, reader in readers.items():
            msg = reader.exists(r)
            if msg:
                bad.append((r, f"{m}: {msg}"))
                break
    if not bad:
        return records
    if missing == "skip":
        warnings.warn(f"{name}/{split}: skipping {len(bad)} of {len(records)} samples with missing files "
                      f"(first: {bad[0][0].name!r}, {bad[0][1]})", stacklevel=3)
        dropped = {id(r) for r, _ in bad}
        return [r for r in records if id(r) not in dropped]
    if missing != "error":
        raise DataError(f"dataset {name!r}: option missing={missing!r} must be 'error' or 'skip'")
    lines = "\n  ".join(f"{r.name!r}: {msg}" for r, msg in bad[:5])
    more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
    raise DataError(f"dataset {name!r}, split {split!r}: {len(bad)} of {len(records)} samples have missing "
                    f"files:\n  {lines}{more}\n(run `mmbalance verify {name} --root ROOT`, or set "
                    f"data.options.missing=skip to drop them)")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def natural_key(s: str):
    """Sort key with numbers compared as numbers: ``frame_2`` < ``frame_10``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", s)]


def pickle_refused(path: Path) -> DataError:
    """The error for a pickle-based file read without the opt-in (``--trust-pickle``)."""
    return DataError(f"{path}: refused: a .pkl file is read with pickle, which runs any code the file holds. If you "
                     f"trust this file, pass --trust-pickle (config: data.trust_pickle=true); or convert it to .npy")


def is_pickle_path(p: Any) -> bool:
    return str(p).lower().endswith(".pkl")


def load_array_file(path: Path, trust_pickle: bool = False) -> np.ndarray:
    """A numeric array from ``.npy``, ``.npz`` (first array), ``.pt``/``.pth`` (weights-only) or ``.pkl``
    (only with ``trust_pickle``: unpickling runs code from the file); errors name the file."""
    path = Path(path)
    suf = path.suffix.lower()
    if suf == ".pkl" and not trust_pickle:
        raise pickle_refused(path)
    try:
        if suf == ".npy":
            return np.load(path, allow_pickle=False)
        if suf == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if not z.files:
                    raise DataError(f"{path}: empty .npz")
                return z[z.files[0]]
        if suf in (".pt", ".pth"):
            obj = torch.load(path, map_location="cpu", weights_only=True)
            return _to_numpy(obj, path)
        if suf == ".pkl":
            import pickle

            with open(path, "rb") as f:
                obj = pickle.load(f)  # noqa: S301 - opted in with trust_pickle (PMR/BSS layouts)
            return _to_numpy(obj, path)
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"missing file {path}") from None
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read {path} (truncated or corrupt?): {type(e).__name__}: {e}") from None
    raise DataError(f"{path}: unsupported array file type {suf!r} (use .npy, .npz, .pt or .pkl)")


def _to_numpy(obj, path) -> np.ndarray:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().numpy()
    if isinstance(obj, np.ndarray):
        return obj
    if isinstance(obj, dict) and len(obj) == 1:
        return _to_numpy(next(iter(obj.values())), path)
    try:
        return np.asarray(obj, dtype=np.float32)
    except Exception:  # noqa: BLE001
        raise DataError(f"{path}: expected an array/tensor, got {type(obj).__name__}") from None


def fix_length(x: torch.Tensor, n: int, dim: int = -1, offset: int = 0) -> torch.Tensor:
    """Crop ``x`` to ``n`` steps along ``dim`` starting at ``offset``, or zero-pad at the end."""
    size = x.shape[dim]
    if size >= n:
        return x.narrow(dim, min(offset, size - n), n)
    pad_shape = list(x.shape)
    pad_shape[dim] = n - size
    return torch.cat([x, x.new_zeros(pad_shape)], dim=dim)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "FLOW_MEAN", "FLOW_STD", "SplitRow", "Record", "Reader", "FileSource",
    "dataset_options", "selected_modalities", "require_root", "resolve_path", "read_split_file",
    "labels_from_tokens", "normalise_class_name", "strip_media_ext", "find_file", "find_dir",
    "stratified_holdout", "holdout_size", "drop_or_fail", "sha256_file", "natural_key", "load_array_file",
    "pickle_refused", "is_pickle_path",
    "fix_length", "ceil_div",
]
