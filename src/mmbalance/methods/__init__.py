"""Methods: each registered name builds one plug-in; ``a+b`` stacks them on the one loop.

A method module registers a :class:`~mmbalance.engine.plugin.Plugin` subclass with
``@METHODS.register("name")``; its ``__init__`` keyword arguments are the method's hyper-parameters
(set with ``method_args.<name>.<arg>=value``).
"""
from __future__ import annotations

import importlib
import inspect
import pkgutil
from typing import List

from ..config import Config, ConfigError
from ..registry import METHODS, suggest
from ..engine.plugin import Plugin

# import every module in this package so that its @METHODS.register decorators run
for _m in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_m.name}")


def method_params(name: str) -> dict:
    """Hyper-parameters of a registered method and their defaults."""
    sig = inspect.signature(METHODS.get(name).__init__)
    return {k: (None if v.default is inspect.Parameter.empty else v.default)
            for k, v in sig.parameters.items() if k != "self" and v.kind is v.POSITIONAL_OR_KEYWORD}


def build_plugins(cfg: Config) -> List[Plugin]:
    names = cfg.method_names()
    extra = [k for k in cfg.method_args if k not in names]
    if extra:
        raise ConfigError(f"method_args has settings for {extra[0]!r}, which is not in method {cfg.method!r}")
    plugins = []
    for name in names:
        cls = METHODS.get(name)
        args = dict(cfg.method_args.get(name) or {})
        params = method_params(name)
        for k in args:
            if k not in params:
                raise ConfigError(f"method {name!r} has no option {k!r}.{suggest(k, params)} "
                                  f"Options: {', '.join(sorted(params)) or '(none)'}")
        plugin = cls(**args)
        plugin.name = name
        plugins.append(plugin)
    return plugins


__all__ = ["METHODS", "build_plugins", "method_params"]
