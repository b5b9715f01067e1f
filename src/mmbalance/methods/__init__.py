"""Methods: each registered name builds one plug-in; ``a+b`` stacks them on the one loop.

A method module registers a :class:`~mmbalance.engine.plugin.Plugin` subclass with
``@METHODS.register("name")`` (which sets its ``name``); its ``Options`` dataclass declares the method's
hyper-parameters (set with ``method_args.<name>.<option>=value``).
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Dict, List

from ..config import Config, ConfigError
from ..engine.options import option_defaults
from ..engine.plugin import Plugin
from ..registry import METHODS

# import every module in this package so that its @METHODS.register decorators run
for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")


def method_params(name: str) -> Dict[str, Any]:
    """Options of a registered method and their defaults."""
    return option_defaults(METHODS.get(name).Options)


def build_plugins(cfg: Config) -> List[Plugin]:
    """One plug-in per name of ``cfg.method`` (``a+b``), with its ``method_args`` validated."""
    names = cfg.method_names()
    extra = [k for k in cfg.method_args if k not in names]
    if extra:
        raise ConfigError(f"method_args has settings for {extra[0]!r}, which is not in method {cfg.method!r}")
    return [METHODS.get(name)(**dict(cfg.method_args.get(name) or {})) for name in names]


__all__ = ["METHODS", "build_plugins", "method_params"]
