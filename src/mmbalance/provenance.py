"""What a run was made from: code version, command, config, library versions and a fingerprint of its data.

:func:`collect` gathers it for ``summary.json`` (key ``provenance``) and the report; :func:`dataset_label`
names the dataset truthfully, also for data passed in from Python (``Trainer(cfg, splits=from_arrays(...))``),
whose config's ``data`` section describes nothing that was used; :func:`config_yaml` writes such a run's
``config.yaml`` with ``data.name: null`` so that no command mistakes it for the default dataset.
"""
from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import torch
import yaml

from . import __version__
from .config import Config
from .data.base import Splits, sample_shape
from .data.fingerprint import data_fingerprint

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
def describe_data(splits: Splits, fingerprint: Optional[str] = None) -> Dict[str, Any]:
    """The data as recorded: modality names, per split its size and input shapes, and ``fingerprint``, the
    content fingerprint the trainer checks on resume (:func:`mmbalance.data.fingerprint.data_fingerprint`:
    sizes, labels and a sample of inputs; computed here when not given)."""
    out: Dict[str, Any] = {"fingerprint": fingerprint or data_fingerprint(splits),
                           "modalities": list(splits.train.modalities)}
    for name in ("train", "val", "test"):
        src = splits[name]
        out[name] = {"n": len(src), "shapes": {m: list(sample_shape(src, m)) for m in src.modalities}}
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


def recorded_config(cfg: Config, from_python: bool = False) -> Config:
    """The config as ``config.yaml`` records it (what a resume compares with)."""
    return Config.from_dict(config_dict(cfg, True)) if from_python else cfg


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
def collect(cfg: Config, splits: Splits, argv: Optional[Sequence[str]] = None, from_python: bool = False,
            fingerprint: Optional[str] = None) -> Dict[str, Any]:
    """The provenance of a run: mmbalance version, git commit (None outside a checkout), the command line,
    the resolved config (without ``out``), package versions and the data (sizes, shapes and the content
    fingerprint ``fingerprint``, the trainer's, or computed).

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
        "data": safe(describe_data, splits, fingerprint),
    }


__all__ = ["collect", "dataset_label", "config_yaml", "config_dict", "recorded_config", "describe_data", "git_state",
           "package_versions", "FROM_PYTHON"]
