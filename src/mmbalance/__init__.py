"""mmbalance: balanced multimodal learning — DUS, D&R, BSS and their baselines as plug-ins on one loop.

The names below are imported on first use (PEP 562), so that ``import mmbalance`` and ``mmbalance --help`` do
not pay for torch and every method: ``from mmbalance import Trainer`` imports the engine then.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> (module that defines or populates it, attribute)
_LAZY = {
    "Config": ("mmbalance.config", "Config"),
    "Trainer": ("mmbalance.engine", "Trainer"),
    "Plugin": ("mmbalance.engine", "Plugin"),
    # a registry is returned once the modules that fill it are imported
    "METHODS": ("mmbalance.methods", "METHODS"),
    "DATASETS": ("mmbalance.data", "DATASETS"),
    "ENCODERS": ("mmbalance.models.encoders", "ENCODERS"),
    "FUSIONS": ("mmbalance.models.fusion", "FUSIONS"),
}

if TYPE_CHECKING:
    from .config import Config
    from .engine import Plugin, Trainer
    from .registry import DATASETS, ENCODERS, FUSIONS, METHODS


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # next access is a plain attribute
        return value
    raise AttributeError(f"module 'mmbalance' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(_LAZY))


def train(cfg: "Config", **kw: Any) -> dict:
    """Train one run described by ``cfg``; returns the summary dict."""
    from .engine import Trainer

    return Trainer(cfg, **kw).fit()


__all__ = ["Config", "DATASETS", "ENCODERS", "FUSIONS", "METHODS", "Plugin", "Trainer", "train"]
