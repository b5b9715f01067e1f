"""Your own methods, encoders, fusions, datasets and plots, without editing the package.

Two ways, honoured by every command (``train``, ``compare``, ``eval``, ``report``, ``sweep``, ``list``):

* ``--import module_or_file.py`` on the command line, or ``plugins: [module_or_file.py, ...]`` in a config:
  the module is imported before anything is built, so its ``@METHODS.register(...)`` (``ENCODERS``, ``FUSIONS``,
  ``DATASETS``) decorators run. A run records the resolved list in ``config.yaml``, so ``--resume`` and
  ``compare``'s worker processes import the same files; ``eval`` imports only what its own ``--import`` names
  (a run folder from someone else must not decide which code runs).
* an installed package's entry points in the groups :data:`GROUPS` (``[project.entry-points."mmbalance.methods"]
  my-method = "my_pkg.methods"``): loaded the first time a registry is asked for a name it does not know, or lists
  its names.

A module that defines ``METHODS`` (a tuple of method names) and ``plot(run_dir, out_dir)`` is also a plot module
for ``mmbalance report`` (group ``mmbalance.plots``).
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Dict, Iterable, List

#: entry-point groups that extend mmbalance
GROUPS = ("mmbalance.methods", "mmbalance.encoders", "mmbalance.fusions", "mmbalance.datasets", "mmbalance.plots")

#: plot modules contributed by extensions (``{name: module}``), read by :func:`mmbalance.report.plot_modules`
PLOT_MODULES: Dict[str, ModuleType] = {}

_imported: Dict[str, ModuleType] = {}
_entry_points_loaded = False


class ExtensionError(ImportError):
    """An extension module or entry point could not be imported; the message names it."""


def resolve(spec: str) -> str:
    """A file path made absolute (so that a run folder's config works from anywhere); a module name as is."""
    p = Path(spec)
    return str(p.resolve()) if spec.endswith(".py") or p.exists() else spec


def import_extension(spec: str) -> ModuleType:
    """Import ``spec`` (a ``.py`` file or an importable module name) once; register its plots if it has any."""
    spec = resolve(spec)
    if spec in _imported:
        return _imported[spec]
    if spec.endswith(".py"):
        path = Path(spec)
        if not path.is_file():
            raise ExtensionError(f"--import {spec}: no such file")
        name = f"mmbalance_ext_{path.stem}_{abs(hash(spec)) % 10**8}"
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise ExtensionError(f"--import {spec}: not a Python module")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise ExtensionError(f"--import {spec}: importing it failed: {type(e).__name__}: {e}") from e
    else:
        try:
            module = importlib.import_module(spec)
        except ModuleNotFoundError as e:
            raise ExtensionError(f"--import {spec}: no module or file of that name ({e})") from None
    _imported[spec] = module
    _register_plots(module, spec)
    return module


def import_extensions(specs: Iterable[str]) -> List[ModuleType]:
    return [import_extension(s) for s in specs or ()]


def load_entry_points() -> None:
    """Import every installed extension's entry points (once per process)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    from importlib.metadata import entry_points

    for group in GROUPS:
        for ep in entry_points(group=group):
            try:
                obj = ep.load()
            except Exception as e:
                raise ExtensionError(f"entry point {ep.name!r} = {ep.value!r} (group {group}) failed to load: "
                                     f"{type(e).__name__}: {e}") from e
            if isinstance(obj, ModuleType):
                _register_plots(obj, ep.value)


def _register_plots(module: ModuleType, name: str) -> None:
    if isinstance(getattr(module, "METHODS", None), (tuple, list, set)) and callable(getattr(module, "plot", None)):
        PLOT_MODULES[name] = module
