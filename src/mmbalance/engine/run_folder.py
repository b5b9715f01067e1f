"""The run folder's guards: nothing is written before the checks pass, a run is never replaced or continued
by accident, and a replacing run is prepared aside so that a failing command leaves the old run intact.

* ``train --out F`` where F holds another run is refused unless ``--overwrite``; with it the new run is
  written into a hidden sibling folder and swapped in only when it finishes.
* ``--resume`` compares the requested configuration with the run's ``config.yaml`` and refuses a change with
  the diff (``--allow-change KEY`` for a legitimate one; more epochs need none), and compares the data's
  content fingerprint with the one saved in ``last.pt``.
* Temporary files left by writes that were killed are removed when a run starts.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

from ..config import Config, ConfigError
from .checkpoint import atomic_write_text, load_checkpoint, remove_stale_tmp

if TYPE_CHECKING:
    from .trainer import Trainer

#: keys a resume may change without --allow-change (they do not change what is trained)
RESUME_MAY_CHANGE = ("out", "plugins", "train.epochs", "train.progress", "train.checkpoint_every", "train.device",
                     "data.num_workers", "data.trust_pickle", "log.")

RUN_FILES = ("config.yaml", "last.pt", "summary.json", "metrics.jsonl", "best.pt")


class RunFolderError(ValueError):
    """A command would replace or wrongly continue an existing run; the message says how to proceed."""


def holds_run(folder: Path) -> bool:
    return folder.is_dir() and any((folder / n).exists() for n in RUN_FILES)


def check_resume(folder: Path, cfg: Config, allow_change: Sequence[str] = ()) -> None:
    """Refuse a resume whose configuration differs from the run's (the diff names each key)."""
    stored_file = folder / "config.yaml"
    if not stored_file.is_file():
        return
    try:
        stored = Config.from_yaml(stored_file)
    except ConfigError as e:
        raise RunFolderError(f"{stored_file}: cannot compare with the requested configuration ({e})") from None
    diff = stored.diff(cfg, (*RESUME_MAY_CHANGE, *allow_change))
    if diff:
        raise RunFolderError(f"{folder}: --resume would change the run's configuration ({'; '.join(diff)}); "
                             f"keep the values, pass --allow-change {diff[0].split(':')[0]} if the change is "
                             f"intended, or train into another --out")


def check_data(folder: Path, stored: Optional[str], current: str) -> None:
    if stored is not None and stored != current:
        raise RunFolderError(f"{folder}: the data differ from the data this run was trained on (fingerprint "
                             f"{stored[:19]}... now {current[:19]}...); --resume needs the same data")


def aside(folder: Path) -> Path:
    """The hidden sibling folder in which a replacing run is prepared (emptied first)."""
    tmp = folder.with_name(f".{folder.name}.new")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def swap_in(new: Path, folder: Path) -> None:
    """Replace ``folder`` by the finished run in ``new`` (the old run is removed only after the swap)."""
    old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
    os.replace(folder, old)
    os.replace(new, folder)
    shutil.rmtree(old, ignore_errors=True)


def prepare(folder: Path) -> None:
    """Create the folder and remove temporary files that killed writes left in it."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(folder)


def enter(trainer: "Trainer", resume: bool, overwrite: bool, allow_change: Sequence[str]) -> None:
    """Check the run folder before anything is written, resume from ``last.pt`` if asked, then create the
    folder (aside when replacing another run) and write ``config.yaml``."""
    out = trainer.out
    assert out is not None
    if resume and (out / "last.pt").exists():  # every rank loads the same state
        check_resume(out, trainer.cfg, allow_change)
        ckpt = load_checkpoint(out / "last.pt")
        check_data(out, ckpt.get("data_fingerprint"), trainer.data_fingerprint)
        trainer.load_state(ckpt)
        trainer.resumed = True
    elif resume and holds_run(out):  # a run that stopped before its first checkpoint
        check_resume(out, trainer.cfg, allow_change)
    elif holds_run(out):
        if not overwrite:
            raise RunFolderError(f"{out} holds another run; --resume continues it, --overwrite replaces it (the new "
                                 f"run is prepared aside and replaces it when it finishes), or choose another --out")
        trainer.replaces = out
        if trainer.is_main:
            out = trainer.out = aside(out)
    if trainer.world_size > 1:  # every rank has looked at the folder before the main rank writes into it
        import torch.distributed as dist

        dist.barrier()
    if trainer.is_main:
        prepare(out)
        atomic_write_text(out / "config.yaml", trainer.cfg.to_yaml())
