"""Reports: ``mmbalance compare`` (grid runner + aggregation), ``mmbalance report`` (HTML/markdown), plots.

Per-method plots live in ``plots_<method>.py`` modules of this package, each defining
``METHODS = ("name", ...)`` and ``plot(run_dir, out_dir) -> list[Path]``; :func:`plot_modules` finds them.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Dict, List, Tuple


def plot_modules() -> Tuple[Dict[str, ModuleType], List[str]]:
    """``({module name: module}, [problems])`` for every ``plots_*`` module with ``METHODS`` and ``plot``.

    A module that fails to import or lacks the contract is reported in ``problems`` instead of breaking
    the report."""
    found: Dict[str, ModuleType] = {}
    problems: List[str] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if not info.name.startswith("plots_"):
            continue
        try:
            mod = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as e:  # noqa: BLE001
            problems.append(f"{info.name}: import failed: {type(e).__name__}: {e}")
            continue
        if not isinstance(getattr(mod, "METHODS", None), (tuple, list, set)) or not callable(getattr(mod, "plot", None)):
            problems.append(f"{info.name}: needs METHODS (a tuple of method names) and plot(run_dir, out_dir)")
            continue
        found[info.name] = mod
    from ..extensions import PLOT_MODULES, load_entry_points

    try:
        load_entry_points()
    except ImportError as e:
        problems.append(str(e))
    found.update(PLOT_MODULES)
    return found, problems


def modules_for(method: str, modules: Dict[str, ModuleType]) -> List[str]:
    """Names of the plot modules that apply to a (possibly stacked, ``a+b``) method string."""
    names = {p.strip() for p in method.split("+")}
    return [k for k, mod in modules.items() if names & set(mod.METHODS)]


__all__ = ["plot_modules", "modules_for"]
