"""``--threads N``: one option and one helper for every command that trains (train, compare, sweep, eval).

Tiny CPU models gain nothing from several threads, and on a machine whose cores are busy, spinning thread
pools slowed a 20-epoch av-digits run ~20x (measured: 4 s with 1 thread vs 80+ s with the defaults).
"""
from __future__ import annotations

import argparse

from .config import ConfigError

HELP = ("CPU threads for torch and for the BLAS/OpenMP pools of scikit-learn (the linear probe), per run (compare "
        "--jobs: per worker; without it each worker takes its share of the cores); default: the libraries' own "
        "choice. Small CPU models run fastest with 1, and much faster on a busy machine")


def add_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, metavar="N", help=HELP)


def set_threads(n: int) -> None:
    """Limit torch's intra-op threads and the BLAS/OpenMP pools (used by the scikit-learn probe) to ``n``."""
    import torch

    if n < 1:
        raise ConfigError(f"--threads must be >= 1, got {n}")
    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # scikit-learn's dependency; without it only torch is limited
        pass


def apply(args: argparse.Namespace) -> None:
    """Apply ``--threads`` if the command was given it."""
    n = getattr(args, "threads", None)
    if n is not None:
        set_threads(n)


__all__ = ["add_argument", "set_threads", "apply"]
