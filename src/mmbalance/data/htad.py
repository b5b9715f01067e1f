"""HTAD (Home-Tasks Activities Dataset): real wrist-accelerometer + audio features, read at run time from the
``multiviewstacking`` wheel on PyPI.

HTAD (Garcia-Ceja et al., MMM 2021, doi:10.1007/978-3-030-67835-7_17) is released "fully open for research
and educational purposes"; other uses (competitions, commercial) need the authors' written permission. Its
terms do not let mmbalance redistribute it, so the file is **never copied into this repository**: the loader
finds ``multiviewstacking/data/htad.csv`` inside the installed package (without importing the package, which
would need pandas) and checks its SHA-256, so that every user trains on the same rows and the same splits.

Install the file with ``pip install --no-deps multiviewstacking==0.7.5`` (``make test`` / ``make demo`` do).
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from .base import DataError

PACKAGE = "multiviewstacking"
PACKAGE_VERSION = "0.7.5"
INSTALL_HINT = f"pip install --no-deps {PACKAGE}=={PACKAGE_VERSION}"
RELATIVE_PATH = Path("data") / "htad.csv"
#: SHA-256 of htad.csv in multiviewstacking 0.7.5 (1,386 rows); another copy would change the splits
HTAD_SHA256 = "eedeef7290720759a6e4851c18eb6bc93cfc839f563098d5f1588a4e3dc47bce"
N_SAMPLES = 1386
#: column prefix of each modality in the CSV -> (modality name, feature count)
MODALITY_COLUMNS: Dict[str, tuple] = {"v1_": ("audio", 36), "v2_": ("accel", 16)}
MODALITY_DESCRIPTIONS = {
    "audio": "36 MFCC-type audio features (v1_mfcc1..36)",
    "accel": "16 wrist-accelerometer features (v2_: per-axis mean/sd/max, axis correlations, magnitude "
             "mean/sd, area under the curve, mean difference)",
}
CITATION = ("E. Garcia-Ceja, V. Thambawita, S. A. Hicks, D. Jha, P. Jakobsen, H. L. Hammer, P. Halvorsen, "
            "M. A. Riegler, \"HTAD: A Home-Tasks Activities Dataset with Wrist-Accelerometer and Audio "
            "Features\", MultiMedia Modeling (MMM 2021), LNCS 12573, Springer, 2021, "
            "doi:10.1007/978-3-030-67835-7_17")


def htad_csv_path() -> Path:
    """The installed ``multiviewstacking/data/htad.csv``; a one-line :class:`DataError` naming the pip command
    when the package is not installed."""
    spec = importlib.util.find_spec(PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in locations:
        path = Path(folder) / RELATIVE_PATH
        if path.is_file():
            return path
    where = f" ({Path(locations[0]) / RELATIVE_PATH} is missing)" if locations else ""
    raise DataError(f"dataset 'htad' reads its data from the PyPI package {PACKAGE!r}, which is not "
                    f"installed{where}: run `{INSTALL_HINT}`")


def load_htad_arrays(path: Optional[Path] = None, verify: bool = True) -> dict:
    """Read HTAD into ``{"inputs": {"audio": float32 [1386, 36], "accel": float32 [1386, 16]}, "labels":
    int64 [1386], "class_names": [7 activity names, sorted], "description", "meta"}`` (raw feature values,
    rows in file order). ``path`` overrides the installed file; ``verify`` checks its SHA-256."""
    path = Path(path) if path is not None else htad_csv_path()
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot read the HTAD file: {e}") from None
    if verify and hashlib.sha256(raw).hexdigest() != HTAD_SHA256:
        raise DataError(f"{path}: SHA-256 differs from HTAD in {PACKAGE} {PACKAGE_VERSION} (another version, or "
                        f"a truncated/edited copy); run `{INSTALL_HINT}`")
    rows = list(csv.reader(raw.decode("utf-8").splitlines()))
    header, body = rows[0], [r for r in rows[1:] if r]
    if not header or header[0] != "class":
        raise DataError(f"{path}: first column must be 'class', found {header[:1]}")
    columns: Dict[str, List[int]] = {}
    for prefix, (name, dim) in MODALITY_COLUMNS.items():
        columns[name] = [i for i, h in enumerate(header) if h.startswith(prefix)]
        if len(columns[name]) != dim:
            raise DataError(f"{path}: expected {dim} '{prefix}*' columns ({name}), found {len(columns[name])}")
    try:
        values = np.array([[float(v) for v in r[1:]] for r in body], dtype=np.float64)
    except ValueError as e:
        raise DataError(f"{path}: non-numeric feature value: {e}") from None
    if values.shape != (len(body), len(header) - 1) or not np.isfinite(values).all():
        raise DataError(f"{path}: ragged rows or non-finite values")
    class_of_row = [r[0] for r in body]
    class_names = sorted(set(class_of_row))
    labels = np.array([class_names.index(c) for c in class_of_row], dtype=np.int64)
    inputs = {m: values[:, [i - 1 for i in cols]].astype(np.float32) for m, cols in columns.items()}
    description = (f"HTAD (Garcia-Ceja et al. 2021): {len(labels)} real home-task recordings, "
                   f"{len(class_names)} activities; " + "; ".join(f"{m}: {MODALITY_DESCRIPTIONS[m]}"
                                                                 for m in inputs) + ".")
    return {"inputs": inputs, "labels": labels, "class_names": class_names, "description": description,
            "meta": {"file": str(path), "sha256_checked": verify, "citation": CITATION}}


__all__ = ["load_htad_arrays", "htad_csv_path", "HTAD_SHA256", "INSTALL_HINT", "CITATION", "MODALITY_DESCRIPTIONS"]
