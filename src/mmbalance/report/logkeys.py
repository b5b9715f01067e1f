"""Where each method's own signals sit in ``metrics.jsonl`` (``plugins`` per epoch, ``steps`` per step).

Every plot module reads them through :func:`signals`, with the *registered method name*, so the prefix a
plug-in logs under is known in one place. Every plug-in logs under its registered name (the contract checks
it); :data:`LEGACY_PREFIX` would map a method to another prefix (it held ``dus``, ``ogm`` and ``dr`` before
the plug-ins were renamed: put them back to plot runs made before that).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping

import yaml

#: registered method name -> the prefix its plug-in logs under, where the two differ
LEGACY_PREFIX: Dict[str, str] = {}


def prefix(method: str) -> str:
    """The ``metrics.jsonl`` key prefix of ``method``'s signals (without the trailing ``/``)."""
    return LEGACY_PREFIX.get(method, method)


def signals(record: Mapping[str, Any], method: str, where: str = "plugins") -> Dict[str, Any]:
    """``{key below the method's prefix: value}`` of one epoch record (``where``: ``plugins`` or ``steps``)."""
    head = prefix(method) + "/"
    return {k[len(head):]: v for k, v in (record.get(where) or {}).items() if k.startswith(head)}


def run_methods(run_dir: Path) -> List[str]:
    """The (stacked) method names of a run, from ``summary.json`` or ``config.yaml``; [] when neither says."""
    run_dir = Path(run_dir)
    method = None
    try:
        method = json.loads((run_dir / "summary.json").read_text()).get("method")
    except (OSError, ValueError):
        pass
    if method is None:
        try:
            method = (yaml.safe_load((run_dir / "config.yaml").read_text()) or {}).get("method")
        except (OSError, ValueError, AttributeError, yaml.YAMLError):
            pass
    return [m.strip() for m in str(method).split("+") if m.strip()] if method else []


def methods_to_plot(run_dir: Path, known: List[str]) -> List[str]:
    """Which of a plot module's ``known`` methods the run stacks (all of them when the run does not say)."""
    used = [m for m in run_methods(run_dir) if m in known]
    return used or list(known)


__all__ = ["LEGACY_PREFIX", "prefix", "signals", "run_methods", "methods_to_plot"]
