"""What a run was made from: code version, command, config, library versions and a fingerprint of its data.

:func:`collect` gathers it for ``summary.json`` (key ``provenance``) and the report; :func:`dataset_label`
names the dataset truthfully, also for data passed in from Python (``Trainer(cfg, splits=from_arrays(...))``),
whose config's ``data`` section describes nothing that was used; :func:`config_yaml` writes such a run's
``config.yaml`` with ``data.name: null`` so that no command mistakes it for the default dataset.
"""
from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
import yaml

from . import __version__
from .config import Config
from .data.base import Splits, sample_shape

#: samples per split whose inputs are hashed (evenly spaced over the split, first and last included)
SAMPLE_SIZE = 32
#: reported even when the installed metadata cannot say what mmbalance depends on
_CORE_PACKAGES = ("torch", "numpy", "scipy", "scikit-learn", "torchmetrics", "matplotlib", "PyYAML")
#: what a label says for splits handed to the Trainer instead of built from ``cfg.data``
FROM_PYTHON = "passed from Python"


# ---------------------------------------------------------------------------- code and environment
def git_state(package_dir: Optional[Path] = None) -> Optional[Dict[str, Any]]:
    """``{"commit", "dirty"}`` of the git checkout this package's source lives in, else None.

    None for an installed wheel, also when the environment itself sits inside some other repository: the
    checkout must contain this very package at ``src/mmbalance``."""
    pkg = (package_dir or Path(__file__).resolve().parent).resolve()

    def git(*args: str) -> Optional[str]:
        try:
            r = subprocess.run(["git", "-C", str(pkg), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or (Path(top) / "src" / "mmbalance").resolve() != pkg:
        return None
    commit = git("rev-parse", "HEAD")
    if not commit:
        return None
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status)}


def package_versions() -> Dict[str, str]:
    """Python, the platform, and every installed package mmbalance requires (from its metadata)."""
    names: List[str] = list(_CORE_PACKAGES)
    try:
        for req in metadata.requires("mmbalance") or []:
            if "extra ==" in req:
                continue
            name = req.split(";")[0].strip()
            for sep in "<>=!~[ ":
                name = name.split(sep)[0]
            if name and name.lower() not in {n.lower() for n in names}:
                names.append(name)
    except metadata.PackageNotFoundError:  # running from a source tree that was never installed
        pass
    out = {"python": platform.python_version(), "platform": platform.platform(), "mmbalance": __version__}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out["torch"] = torch.__version__  # the imported one (a local build may lack metadata)
    out["cuda"] = torch.version.cuda or "none"
    return out


# ---------------------------------------------------------------------------- data
def sample_indices(n: int, k: int = SAMPLE_SIZE) -> List[int]:
    """``min(n, k)`` distinct indices spread evenly over ``range(n)`` (first and last included)."""
    if n <= 0:
        return []
    return sorted({int(round(x)) for x in np.linspace(0, n - 1, min(n, k))})


def _sha256(chunks: Sequence[bytes]) -> str:
    h = hashlib.sha256()
    for c in chunks:
        h.update(c)
    return h.hexdigest()


def _tensor_bytes(x: torch.Tensor) -> bytes:
    x = x.detach().cpu().contiguous()
    head = f"{x.dtype}{tuple(x.shape)}".encode()
    return head + x.view(torch.uint8).numpy().tobytes() if x.numel() else head


def _eval_inputs(src, indices: List[int], modality: str) -> torch.Tensor:
    """The evaluation inputs the model would see for ``indices`` (no training augmentation)."""
    idx = torch.as_tensor(indices, dtype=torch.long)
    if hasattr(src, "get_batch"):
        x = src.get_batch(idx, modality)
    else:
        x = torch.stack([src.load(i, modality) if hasattr(src, "load") else src[i]["inputs"][modality]
                         for i in indices])
    if hasattr(src, "batch_transform"):
        x = src.batch_transform(modality, x, False)
    return x


def split_fingerprint(src, k: int = SAMPLE_SIZE) -> Dict[str, Any]:
    """Size, modality shapes, a hash of every label and a hash per modality of ``k`` evenly spaced samples'
    evaluation inputs of one split."""
    labels = torch.as_tensor(src.labels).long().reshape(-1)
    idx = sample_indices(len(labels), k)
    was_train = getattr(src, "train", None)
    if hasattr(src, "set_train"):
        src.set_train(False)  # evaluation transforms are deterministic; training ones are random
    try:
        inputs = {m: _sha256([_tensor_bytes(_eval_inputs(src, idx, m))]) for m in src.modalities}
    finally:
        if hasattr(src, "set_train") and isinstance(was_train, bool):
            src.set_train(was_train)
    return {
        "n": int(len(labels)),
        "shapes": {m: list(sample_shape(src, m)) for m in src.modalities},
        "labels_sha256": _sha256([_tensor_bytes(labels.to(torch.int64))]),
        "sampled": len(idx),
        "inputs_sha256": inputs,
    }


def data_fingerprint(splits: Splits, k: int = SAMPLE_SIZE) -> Dict[str, Any]:
    """Per split :func:`split_fingerprint`, plus ``id``: a short hash of all of it (equal ids, equal data as far
    as the fingerprint can tell)."""
    out: Dict[str, Any] = {"modalities": list(splits.train.modalities)}
    for name in ("train", "val", "test"):
        out[name] = split_fingerprint(splits[name], k)
    out["id"] = hashlib.sha256(json.dumps(out, sort_keys=True).encode()).hexdigest()[:16]
    return out


def source_name(splits: Splits) -> str:
    """The name the data's own train split gives (``arrays/train`` -> ``arrays``), else ``arrays``."""
    name = str(getattr(splits.train, "name", "") or "arrays")
    return name[: -len("/train")] if name.endswith("/train") else name


def dataset_label(cfg: Config, splits: Optional[Splits] = None, from_python: bool = False) -> str:
    """The dataset as summaries and reports name it: ``av-digits/hard`` for data built from ``cfg.data``;
    ``<name> (passed from Python)`` for splits handed to the Trainer, whose ``cfg.data`` was not used."""
    if from_python:
        return f"{source_name(splits) if splits is not None else 'arrays'} ({FROM_PYTHON})"
    return cfg.data.name + (f"/{cfg.data.preset}" if cfg.data.preset else "")


def config_yaml(cfg: Config, splits: Optional[Splits] = None, from_python: bool = False) -> str:
    """``config.yaml`` of a run. For data passed from Python, ``data.name`` is null (the config's dataset was
    not used, and no command may rebuild it) and a header says what the data was."""
    if not from_python:
        return cfg.to_yaml()
    header = (f"# data: {dataset_label(cfg, splits, True)}; Trainer(cfg, splits=...) was given the data, so "
              f"data.name is null\n# (`mmbalance eval` cannot rebuild it; see summary.json provenance.data)\n")
    return header + yaml.safe_dump(config_dict(cfg, True), sort_keys=False)


def config_dict(cfg: Config, from_python: bool = False, with_out: bool = True) -> Dict[str, Any]:
    """The resolved config as recorded; ``data.name`` is None when the data was passed from Python. Without
    ``with_out`` the run folder is left out (the summary lives in it; two identical runs then record the same)."""
    d = cfg.to_dict()
    if from_python:
        d["data"]["name"] = None
    if not with_out:
        d.pop("out", None)
    return d


# ---------------------------------------------------------------------------- everything
def collect(cfg: Config, splits: Splits, argv: Optional[Sequence[str]] = None,
            from_python: bool = False) -> Dict[str, Any]:
    """The provenance of a run: mmbalance version, git commit (None outside a checkout), the command line,
    the resolved config (without ``out``), package versions and a fingerprint of the data.

    Never raises: a part that cannot be determined (e.g. a custom data source that cannot be read back)
    is recorded as ``{"error": ...}`` so that a finished run still gets its summary."""
    def safe(fn, *args):
        try:
            return fn(*args)
        except Exception as e:  # noqa: BLE001 — provenance must not lose a finished run
            return {"error": f"{type(e).__name__}: {e}"}

    return {
        "mmbalance": __version__,
        "git": safe(git_state),
        "argv": list(sys.argv if argv is None else argv),
        "dataset": dataset_label(cfg, splits, from_python),
        "data_source": "python" if from_python else "config",
        "config": config_dict(cfg, from_python, with_out=False),
        "packages": safe(package_versions),
        "data": safe(data_fingerprint, splits),
    }


__all__ = ["collect", "dataset_label", "config_yaml", "config_dict", "data_fingerprint", "split_fingerprint", "git_state",
           "package_versions", "sample_indices", "FROM_PYTHON"]
