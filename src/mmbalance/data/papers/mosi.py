"""CMU-MOSI (Zadeh et al. 2016): opinion video segments; text + audio + visual features (3 modalities).

Reads the MulT-style pickle (``mosi_data.pkl`` aligned / ``mosi_data_noalign.pkl``, also MOSEI's
``mosei_senti_data.pkl``) -- only with ``data.trust_pickle`` / ``--trust-pickle``, since unpickling runs code
from the file: a dict ``{train, valid, test}``, each a dict with ``text`` [N, L, 300 GloVe],
``audio`` [N, L, 5 (MOSI COVAREP) / 74], ``vision`` [N, L, 20 (Facet) / 35], ``labels`` [N, 1, 1] sentiment
in [-3, 3] (and ``id``). ``-inf`` audio values (log of zero energy) become 0, as in MulT. Splits 1,284 /
229 / 686.

``labels`` option: ``binary`` (default: negative < 0 vs non-negative >= 0, BalanceBenchmark), ``binary_nonzero``
(positive vs negative with the neutral ``0`` samples dropped, MulT's "Acc-2 non-zero"), ``7class``
(``round(clip(y, -3, 3)) + 3``). Modalities are named ``text``, ``audio``, ``visual``.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Dict

import numpy as np
import torch

from ...config import DataConfig
from ..base import DataError, MultimodalDataset, Splits
from ..validate import require_two_classes
from .common import dataset_options, pickle_refused, require_root, selected_modalities
from .spec import attach_prepare, in_memory_dataset

DEFAULTS = {"file": None, "labels": "binary"}
FILES = ["mosi_data.pkl", "mosi_data_noalign.pkl", "mosi_senti_data.pkl", "mosei_senti_data.pkl",
         "mosei_senti_data_noalign.pkl"]
KEYS = {"text": "text", "audio": "audio", "visual": "vision"}
SPLIT_KEYS = {"train": ("train",), "val": ("valid", "val", "dev"), "test": ("test",)}
LABEL_MODES = ("binary", "binary_nonzero", "7class")


def find_pickle(root: Path, opts: dict) -> Path:
    if opts.get("file"):
        p = Path(opts["file"]).expanduser()
        p = p if p.is_absolute() else root / p
        if not p.is_file():
            raise DataError(f"mosi: option file={opts['file']!r}: no such file {p}")
        return p
    for f in FILES:
        if (root / f).is_file():
            return root / f
    found = sorted(root.glob("*.pkl"))
    if len(found) == 1:
        return found[0]
    raise DataError(f"mosi: no {FILES[0]} (or {', '.join(FILES[1:3])}) under {root}; set data.options.file")


def read_pickle(path: Path, trust_pickle: bool = False) -> dict:
    """The MulT pickle; only with ``trust_pickle`` (``--trust-pickle``): unpickling runs code from the file."""
    if not trust_pickle:
        raise pickle_refused(path)
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f)  # noqa: S301 - opted in with trust_pickle
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read {path} (truncated or corrupt?): {type(e).__name__}: {e}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict of splits, got {type(obj).__name__}")
    return obj


def split_arrays(data: dict, split: str, path: Path) -> Dict[str, np.ndarray]:
    for k in SPLIT_KEYS[split]:
        if k in data:
            part = data[k]
            break
    else:
        raise DataError(f"{path}: no {split!r} split (keys: {sorted(data)})")
    missing = [k for k in ("text", "audio", "vision", "labels") if k not in part]
    if missing:
        raise DataError(f"{path}: split {split!r} has no {missing[0]!r} array (keys: {sorted(part)})")
    return {k: np.asarray(part[k]) for k in ("text", "audio", "vision", "labels")}


def labels_of(y: np.ndarray, mode: str):
    """-> (class ids, keep mask, class names)."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)[:, 0]
    if mode == "binary":
        return (y >= 0).astype(np.int64), np.ones(len(y), dtype=bool), ["negative", "non-negative"]
    if mode == "binary_nonzero":
        return (y > 0).astype(np.int64), y != 0, ["negative", "positive"]
    if mode == "7class":
        return (np.round(np.clip(y, -3, 3)) + 3).astype(np.int64), np.ones(len(y), dtype=bool), \
            ["-3", "-2", "-1", "0", "1", "2", "3"]
    raise DataError(f"mosi: option labels={mode!r} must be one of {', '.join(LABEL_MODES)}")


@in_memory_dataset("mosi", "CMU-MOSI sentiment: text + audio + visual feature sequences (MulT pickle), 2 or 7 classes",
                   ("text", "audio", "visual"), DEFAULTS, [{"train": 1284, "val": 229, "test": 686}])
def build(cfg: DataConfig) -> Splits:
    opts = dataset_options("mosi", cfg, DEFAULTS)
    root = require_root(cfg, "mosi")
    path = find_pickle(root, opts)
    data = read_pickle(path, bool(cfg.trust_pickle))
    mods = selected_modalities(cfg, list(KEYS), "mosi")
    parts = {}
    for split in ("train", "val", "test"):
        arr = split_arrays(data, split, path)
        y, keep, names = labels_of(arr["labels"], opts["labels"])
        inputs = {}
        for m in mods:
            x = arr[KEYS[m]].astype(np.float32)
            x = np.where(np.isneginf(x) | np.isnan(x), 0.0, x)  # MulT: audio[audio == -inf] = 0
            if len(x) != len(y):
                raise DataError(f"{path}: split {split!r}: {m} has {len(x)} samples but labels has {len(y)}")
            inputs[m] = torch.from_numpy(np.ascontiguousarray(x[keep]))
        parts[split] = MultimodalDataset(inputs, torch.from_numpy(y[keep]), len(names), names, f"mosi/{split}")
    require_two_classes(parts["train"].labels, "mosi/train")
    return Splits(**parts)


@attach_prepare("mosi")
def prepare(args) -> dict:
    """Copy (or link) the MulT pickle into OUT and check that it reads."""
    from .preprocess import copy_file

    raw, out = Path(args.raw), Path(args.out)
    src = raw if raw.is_file() else find_pickle(raw, {})
    data = read_pickle(src, bool(getattr(args, "trust_pickle", False)))
    for split in ("train", "val", "test"):
        split_arrays(data, split, src)
    out.mkdir(parents=True, exist_ok=True)
    copy_file(src, out / src.name, args.link)
    return {"unavailable": [], "errors": [], "meta": {"source": str(src)}}
