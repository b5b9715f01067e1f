"""Atomic file writes, RNG state capture and safe checkpoint loading, so that nothing is lost, resume is
exact, and opening a checkpoint never runs code.

Checkpoints hold tensors and plain containers only (dicts, lists, tuples, numbers, strings, None) and are
read with ``torch.load(weights_only=True)``: a file whose unpickling would have to call anything else is
refused, whoever wrote it. The numpy RNG state is therefore stored as tensors too (:func:`rng_state`).
"""
from __future__ import annotations

import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
import torch


class CheckpointError(ValueError):
    """A checkpoint is refused (it would run code), unreadable (truncated, corrupt) or does not fit the model."""


# ---------------------------------------------------------------------------------------------- atomic writes
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: Path, write: Callable[[Any], Any]) -> None:
    """Write via a temporary file in the same folder and ``os.replace`` it into place.

    The file gets the mode an ordinary ``open(path, "w")`` would give it (0666 minus the umask: 0644 by
    default), not ``mkstemp``'s private 0600, so that run folders can be shared and read by others.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name + ".", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write_bytes(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def remove_stale_tmp(folder: Path) -> List[Path]:
    """Delete the ``.<name>.*.tmp`` files that writes killed mid-way (``kill -9``) left in ``folder``.

    Only the temporary files of :func:`atomic_write_bytes` match; call it when a run starts, before any
    write of this process is under way. Returns the paths removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for p in folder.iterdir():
        if _STALE_TMP.fullmatch(p.name) and p.is_file():
            p.unlink()
            removed.append(p)
    return sorted(removed)


_STALE_TMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # "." + name + "." + mkstemp's 8 random characters + ".tmp"


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# ---------------------------------------------------------------------------------------------- RNG state
def rng_state() -> Dict[str, Any]:
    """The torch, numpy and Python RNG states as tensors and plain containers (loadable with weights_only)."""
    kind, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    key = np.asarray(key)  # the stub types the legacy tuple's fields loosely
    state = {
        "torch": torch.get_rng_state(),
        # MT19937's 624 uint32 words, widened to int64 (torch has no general uint32 tensor)
        "numpy": {"kind": str(kind), "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": random.getstate(),  # (version, tuple of ints, None): plain already
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (also the numpy tuple of checkpoints written before it)."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    if isinstance(np_state, dict):
        key = np_state["key"]
        key = key.numpy() if isinstance(key, torch.Tensor) else np.asarray(key)
        np_state = (np_state["kind"], key.astype(np.uint32), int(np_state["pos"]), int(np_state["has_gauss"]),
                    float(np_state["cached_gaussian"]))
    np.random.set_state(np_state)
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------- safe loading
def _numpy_array_globals() -> list:
    """What unpickling a plain numpy array needs. Checkpoints written before the RNG state became tensors
    hold the numpy key as a uint32 ndarray; allowing exactly these keeps them loadable (an array's items
    would go through the same restricted unpickler, so no other code can run)."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    return [core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


#: markers of the weights-only unpickler refusing a global (a class or function the file names)
_REFUSED = ("Unsupported global", "unsupported GLOBAL", "not an allowed global", "Trying to call reduce",
            "Can only build", "Can only create new object")


def load_checkpoint(path: Path) -> Dict[str, Any]:
    """Load a checkpoint as tensors and plain containers only; never runs code from the file.

    Raises :class:`CheckpointError` naming the file when it is missing, holds anything else (it is refused:
    loading it would run code), or is truncated / corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with torch.serialization.safe_globals(_numpy_array_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - every failure is reported as one line naming the file
        text = str(e)
        if any(m in text for m in _REFUSED):
            found = _unsafe_globals(path)
            what = f" ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})" if found else ""
            raise CheckpointError(
                f"checkpoint {path} is refused: it holds Python objects{what} that only code from the file "
                f"could rebuild, and loading it would run that code. mmbalance checkpoints hold tensors and "
                f"plain containers only; delete the file, or train again if it was yours") from None
        reason = _first_line(text) or type(e).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt?): {reason}") from None


def _unsafe_globals(path: Path) -> List[str]:
    try:
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in _numpy_array_globals()}
        return [g for g in torch.serialization.get_unsafe_globals_in_checkpoint(path) if g not in allowed]
    except Exception:  # noqa: BLE001 - only decorates the message
        return []


def _first_line(text: str) -> str:
    """torch's messages span lines and advise ``weights_only=False``; keep the first line without advice."""
    for line in text.splitlines():
        line = line.strip()
        if line and "weights_only" not in line:
            return line.split(". ")[0][:300]
    return ""


def check_model_state(model: torch.nn.Module, state: Dict[str, torch.Tensor], path: Path,
                      optional: Tuple[str, ...] = ()) -> None:
    """Raise one line naming the file and the first mismatches if ``state`` does not fit ``model``.

    Keys starting with one of ``optional`` may be missing on either side (modules a plug-in adds when it
    loads its own state, e.g. ``extras.``); tensors present on both sides must have the same shape.
    """
    own = model.state_dict()
    skip = lambda k: k.startswith(optional) if optional else False  # noqa: E731
    missing = [k for k in own if k not in state and not skip(k)]
    extra = [k for k in state if k not in own and not skip(k)]
    shape = [k for k in own if k in state and isinstance(state[k], torch.Tensor)
             and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shape:
        parts = []
        if shape:
            k = shape[0]
            parts.append(f"{len(shape)} tensors of another shape (e.g. {k!r}: {list(state[k].shape)} in the "
                         f"checkpoint, {list(own[k].shape)} in the model)")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        if extra:
            parts.append(f"{len(extra)} unexpected (e.g. {extra[0]!r})")
        raise CheckpointError(f"checkpoint {path} does not fit this model: {'; '.join(parts)}. Was it written "
                              f"by another run, or was config.yaml changed?")
