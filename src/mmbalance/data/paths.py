"""Containment of paths built from names read inside data files (manifests, split files, CSV/TSV/JSON).

A name from a data file is joined to the folder it belongs to with :func:`contained`, which refuses it if
the joined path would leave that folder (``../x``, ``/etc/hostname``, ``0/../../../x``). The check is
lexical (``os.path.normpath``): symbolic links the user placed inside the folder (e.g. ``visual`` pointing
at another disk) keep working, but a name cannot climb out of the folder.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Union

PathLike = Union[str, "os.PathLike[str]"]


def contained(root: PathLike, name: str, source: str) -> Path:
    """``root / name``, or a DataError naming ``source`` (the data file), the entry and the root.

    ``name`` may have sub-folders (``class_01/clip``) but must stay strictly below ``root``. Returns the
    joined path as written (not normalised), so that legitimate paths are the same as before.
    """
    from .base import DataError  # late: base imports the data package

    text = str(name)
    base = os.path.normpath(os.path.abspath(os.fspath(root)))
    if "\x00" in text:
        raise DataError(f"{source}: entry {text!r} contains a NUL byte; refused")
    target = os.path.normpath(os.path.join(base, text))
    if not text or os.path.isabs(text) or not target.startswith(base.rstrip(os.sep) + os.sep):
        raise DataError(f"{source}: entry {text!r} is not a path inside {base}; refused (names in data files "
                        f"must stay under their folder)")
    return Path(root) / text


__all__ = ["contained"]
