"""Datasets that run offline: the embedded real ones, a synthetic generator, and bring-your-own arrays."""
from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from ..config import DataConfig
from ..registry import DATASETS
from .base import DataError, MultimodalDataset, Splits, split_in_memory
from .validate import require_two_classes, split_indices


def _modalities(cfg: DataConfig) -> Optional[List[str]]:
    m = cfg.modalities
    if m is None:
        return None
    if isinstance(m, str):
        m = [s.strip() for s in m.split(",") if s.strip()]
    return list(m)


def _check_options(name: str, options: dict, allowed: set):
    from ..registry import suggest

    for k in options:
        if k not in allowed:
            raise DataError(f"dataset {name!r} has no option {k!r}.{suggest(k, allowed)} Options: {sorted(allowed)}")


def _finish(ds: MultimodalDataset, cfg: DataConfig) -> Splits:
    mods = _modalities(cfg)
    if mods is not None:
        ds = ds.select_modalities(mods)
    if len(ds.modalities) < 1:
        raise DataError(f"dataset {ds.name!r}: no modality selected")
    return split_in_memory(ds, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)


@DATASETS.register("av-digits")
def av_digits(cfg: DataConfig) -> Splits:
    """Handwritten digit images (8x8) paired by class with synthesised spoken digits (log-mel); presets clean/hard."""
    from .embedded import load_av_digits_arrays

    _check_options("av-digits", cfg.options, set())
    arr = load_av_digits_arrays(cfg.preset or "clean")
    ds = MultimodalDataset(arr["inputs"], arr["labels"], len(arr["class_names"]), arr["class_names"],
                           f"av-digits/{cfg.preset or 'clean'}")
    return _finish(ds, cfg)


MFEAT_VIEWS = ["fou", "fac", "kar", "pix", "zer", "mor"]


@DATASETS.register("mfeat")
def mfeat(cfg: DataConfig) -> Splits:
    """UCI Multiple Features: 2,000 digits x 6 naturally paired views; pick >= 2 (default pix,fou)."""
    from .embedded import load_mfeat_arrays

    _check_options("mfeat", cfg.options, set())
    views = _modalities(cfg) or ["pix", "fou"]
    arr = load_mfeat_arrays(views)
    ds = MultimodalDataset(arr["inputs"], arr["labels"], len(arr["class_names"]), arr["class_names"], "mfeat")
    return split_in_memory(_standardised(ds), cfg.val_fraction, cfg.test_fraction, cfg.split_seed)


def _standardised(ds: MultimodalDataset) -> MultimodalDataset:
    """Standardise each modality's features with whole-set statistics (label-free, so no label information
    leaks into val/test); for feature sets whose columns differ in scale by orders of magnitude."""
    for m, x in ds.inputs.items():
        ds.inputs[m] = (x - x.mean(0)) / x.std(0).clamp_min(1e-6)
    return ds


def _standardised_splits(arr: dict, name: str, cfg: DataConfig) -> Splits:
    """Splits of a loader's ``{inputs, labels, class_names}`` with each modality standardised."""
    ds = MultimodalDataset(arr["inputs"], arr["labels"], len(arr["class_names"]), arr["class_names"], name)
    return _finish(_standardised(ds), cfg)


@DATASETS.register("htad")
def htad(cfg: DataConfig) -> Splits:
    """HTAD: 1,386 real home-task recordings, audio (36) + wrist accelerometer (16) features, 7 classes.

    Read at run time from the installed PyPI package multiviewstacking (research/education terms: not
    redistributed with mmbalance)."""
    from .htad import load_htad_arrays

    _check_options("htad", cfg.options, set())
    return _standardised_splits(load_htad_arrays(), "htad", cfg)


@DATASETS.register("emoji-9")
def emoji9(cfg: DataConfig) -> Splits:
    """Emoji-9: 1,870 emoji, image (Noto Color Emoji glyph, 3x32x32) + text (TF-IDF of the CLDR name), 9 groups."""
    from .embedded import load_emoji9_arrays

    _check_options("emoji-9", cfg.options, set())
    # Standardised like the other feature sets: on raw [0, 1] pixels (mostly white background) the default MLP's
    # image encoder stalled at the majority class inside the joint model (measured: image head 19-32 %).
    return _standardised_splits(load_emoji9_arrays(), "emoji-9", cfg)


@DATASETS.register("synthetic")
def synthetic(cfg: DataConfig) -> Splits:
    """Gaussian class clusters per modality with an informativeness knob per modality (for tests)."""
    opts = dict(n=600, classes=4, dim=16, informativeness=None, seed=0)
    _check_options("synthetic", cfg.options, set(opts))
    opts.update(cfg.options)
    mods = _modalities(cfg) or ["a", "b"]
    info = opts["informativeness"] or {m: (1.0 if i == 0 else 0.35) for i, m in enumerate(mods)}
    if isinstance(info, (int, float)):
        info = {m: float(info) for m in mods}
    missing = [m for m in mods if m not in info]
    if missing:
        raise DataError(f"synthetic: informativeness has no value for modality {missing[0]!r}")
    g = torch.Generator().manual_seed(int(opts["seed"]))
    n, c, d = int(opts["n"]), int(opts["classes"]), int(opts["dim"])
    y = torch.arange(n) % c
    y = y[torch.randperm(n, generator=g)]
    inputs = {}
    for m in mods:
        means = torch.randn(c, d, generator=g)
        inputs[m] = float(info[m]) * means[y] + torch.randn(n, d, generator=g)
    ds = MultimodalDataset(inputs, y, c, None, "synthetic")
    return split_in_memory(ds, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)


@DATASETS.register("arrays")
def arrays(cfg: DataConfig) -> Splits:
    """Your own data: ``data.root`` = an .npz (``labels`` + one array per modality) or a folder of .npy files."""
    if not cfg.root:
        raise DataError("dataset 'arrays' needs data.root: an .npz file or a folder with labels.npy and <modality>.npy")
    _check_options("arrays", cfg.options, {"class_names"})
    inputs, labels, split = load_arrays(Path(cfg.root))
    mods = _modalities(cfg)
    if mods:
        missing = [m for m in mods if m not in inputs]
        if missing:
            raise DataError(f"{cfg.root}: no modality {missing[0]!r}; found {sorted(inputs)}")
        inputs = {m: inputs[m] for m in mods}
    ds = MultimodalDataset(inputs, labels, None, cfg.options.get("class_names"), f"arrays:{Path(cfg.root).name}")
    if split is None:
        return split_in_memory(ds, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
    parts = {name: ds.subset(idx, f"{ds.name}/{name}")
             for name, idx in split_indices(split, len(ds), f"{cfg.root}").items()}
    require_two_classes(parts["train"].labels, parts["train"].name)
    return Splits(**parts)


def load_arrays(path: Path):
    """Read an .npz file or a folder of .npy files into (inputs, labels, split-or-None)."""
    arrays: Dict[str, np.ndarray] = {}
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as z:
                for k in z.files:
                    arrays[k] = z[k]
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as e:
            raise DataError(f"{path}: cannot read .npz file (missing, truncated or corrupt?): {e}") from None
    elif path.is_dir():
        files = sorted(path.glob("*.npy"))
        if not files:
            raise DataError(f"{path}: folder has no .npy files (expected labels.npy and <modality>.npy)")
        for f in files:
            try:
                arrays[f.stem] = np.load(f, allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise DataError(f"{f}: cannot read .npy file (truncated or corrupt?): {e}") from None
    else:
        raise DataError(f"{path}: no such file or folder")
    label_key = "labels" if "labels" in arrays else ("y" if "y" in arrays else None)
    if label_key is None:
        raise DataError(f"{path}: no 'labels' array (found {sorted(arrays)})")
    labels = arrays.pop(label_key)
    split = arrays.pop("split", None)
    if not arrays:
        raise DataError(f"{path}: no modality arrays besides labels")
    for k, v in arrays.items():
        if v.dtype.kind not in "fiub":
            raise DataError(f"{path}: array {k!r} has non-numeric dtype {v.dtype}")
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}, labels, split
