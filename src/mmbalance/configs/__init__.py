"""Protocol configs shipped inside the package (one YAML per dataset x protocol), found by name.

``mmbalance train --config cremad-gewu`` works from any directory and from a non-editable install; a path to
a YAML file works as before. :func:`resolve` decides which one an argument means.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import List

from ..config import ConfigError

SUFFIX = ".yaml"


def names() -> List[str]:
    """Names of the packaged configs (file names without ``.yaml``), sorted."""
    return sorted(p.name[: -len(SUFFIX)] for p in resources.files(__name__).iterdir()
                  if p.name.endswith(SUFFIX))


def path(name: str) -> Path:
    """The file of the packaged config ``name`` (``cremad-gewu`` or ``cremad-gewu.yaml``)."""
    stem = name[: -len(SUFFIX)] if name.endswith(SUFFIX) else name
    if stem not in names():
        raise ConfigError(f"unknown config {name!r}: not a file, and not a packaged config "
                          f"(packaged: {', '.join(names())})")
    # the package is a plain directory in a wheel or a checkout (never a zip), so this is a real file
    return Path(str(resources.files(__name__).joinpath(stem + SUFFIX)))


def resolve(name_or_path: str) -> Path:
    """A YAML file for ``--config``: an existing file wins; otherwise a packaged config by name.

    A missing path that looks like a path (has a folder part) is reported as a missing file, so that a typo
    in ``configs/x.yaml`` is not silently read as a name."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if len(p.parts) > 1:
        stem = p.name[: -len(SUFFIX)] if p.name.endswith(SUFFIX) else p.name
        hint = (f"; the packaged config of that name is --config {stem}" if stem in names() else
                f" (packaged configs, usable by name: {', '.join(names())})")
        raise ConfigError(f"config file not found: {p}{hint}")
    return path(name_or_path)


__all__ = ["names", "path", "resolve"]
