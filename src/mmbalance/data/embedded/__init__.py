"""Real multimodal datasets shipped inside the package (no download, no network).

Two small, checksummed ``.npz`` files live in ``files/`` next to this module:

* ``av_digits.npz`` -- **AV-digits**, the AV-MNIST construction on embedded data: the 1,797 8x8 handwritten
  digit images of scikit-learn's ``load_digits`` (UCI optical digits, Alpaydin & Kaynak), each paired by class
  with its own synthesised spoken digit (espeak-ng, varied accent/voice/rate/pitch) stored as a normalised log
  mel spectrogram. Two presets: ``clean`` and ``hard`` (pixel noise + speech at 0 dB SNR with random shift).
  Rebuilt by ``scripts/build_av_digits.py``.
* ``mfeat.npz`` -- **UCI Multiple Features** (van Breukelen, Duin et al.): 2,000 handwritten digits
  (10 classes x 200) described by six views ``fou, fac, kar, pix, zer, mor``. Rebuilt by
  ``scripts/build_mfeat.py``.
* ``emoji9.npz`` -- **Emoji-9**: 1,870 emoji as a colour glyph (Noto Color Emoji, 32x32 RGB) + the words of
  their CLDR name, 9 Unicode emoji groups as classes (:mod:`.emoji9`). Rebuilt by ``scripts/build_emoji9.py``.

Each loader verifies the file's SHA-256 against ``files/SHA256SUMS`` before it reads it and raises
:class:`EmbeddedDataError` naming the file when it is missing, truncated or corrupt. See
``docs/datasets-embedded.md`` for provenance and construction.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np

__all__ = [
    "EmbeddedDataError",
    "AV_DIGITS_PRESETS",
    "MFEAT_VIEWS",
    "FILES_DIR",
    "load_av_digits_arrays",
    "load_mfeat_arrays",
    "load_emoji9_arrays",
    "EMOJI9_FILE",
    "verify_file",
]

FILES_DIR = Path(__file__).resolve().parent / "files"
SHA256SUMS = "SHA256SUMS"
AV_DIGITS_FILE = "av_digits.npz"
MFEAT_FILE = "mfeat.npz"

AV_DIGITS_PRESETS: dict[str, str] = {
    "clean": "images as is; spoken digits near the window centre over a faint dither floor",
    "hard": "images with Gaussian pixel noise; spoken digits at a random time shift in white noise at 0 dB SNR",
}

#: UCI Multiple Features views and their dimensions.
MFEAT_VIEWS: dict[str, int] = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
MFEAT_VIEW_DESCRIPTIONS: dict[str, str] = {
    "fou": "76 Fourier coefficients of the character shapes",
    "fac": "216 profile correlations",
    "kar": "64 Karhunen-Loeve coefficients",
    "pix": "240 pixel averages in 2x3 windows, a 16x15 image",
    "zer": "47 Zernike moments",
    "mor": "6 morphological features",
}

DIGIT_CLASS_NAMES = [str(d) for d in range(10)]


class EmbeddedDataError(ValueError):
    """An embedded data file is missing, truncated, corrupt, or does not match its checksum."""


# ----------------------------------------------------------------------------------------------- checksums
def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_sha256sums(path: str | os.PathLike = FILES_DIR / SHA256SUMS) -> dict[str, str]:
    """Parse a ``sha256sum``-style file (``<hex digest>  <file name>`` per line) into ``{name: digest}``."""
    sums: dict[str, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        digest, name = line.split(maxsplit=1)
        sums[name.lstrip("*").strip()] = digest.lower()
    return sums


def write_sha256sums(sums: Mapping[str, str], path: str | os.PathLike = FILES_DIR / SHA256SUMS) -> None:
    """Write ``{name: digest}`` as a ``sha256sum``-compatible file (sorted by name)."""
    text = "".join(f"{sums[name]}  {name}\n" for name in sorted(sums))
    Path(path).write_text(text, encoding="utf-8")


def rebuild(name: str, build: Callable[[Path], Path], check: bool = False, out: Path | None = None) -> int:
    """What every ``scripts/build_*.py`` does with the file ``build(folder)`` writes: with ``check``, build into a
    temporary folder and compare with the shipped checksum (exit status 0 or 1); else build into ``out``, or
    into the package's ``files/`` and record the new checksum in ``SHA256SUMS``."""
    import tempfile

    expected = read_sha256sums().get(name) if (FILES_DIR / SHA256SUMS).exists() else None
    if check:
        with tempfile.TemporaryDirectory() as tmp:
            digest = sha256_file(build(Path(tmp)))
        print(f"{digest}  {name} (rebuilt)")
        print(f"{expected}  {name} (shipped)")
        ok = digest == expected
        print("OK: rebuild matches the shipped checksum" if ok else "MISMATCH: rebuild differs from the shipped file")
        return 0 if ok else 1
    path = build(out or FILES_DIR)
    digest = sha256_file(path)
    print(f"wrote {path} ({path.stat().st_size:,} bytes)")
    print(f"{digest}  {name}")
    if out is None:
        sums = read_sha256sums() if (FILES_DIR / SHA256SUMS).exists() else {}
        sums[name] = digest
        write_sha256sums(sums)
        print(f"updated {FILES_DIR / SHA256SUMS}")
    return 0


def expected_sha256(name: str) -> str:
    """The shipped checksum of embedded file ``name`` (from ``files/SHA256SUMS``)."""
    sums_path = FILES_DIR / SHA256SUMS
    try:
        sums = read_sha256sums(sums_path)
    except OSError as exc:
        raise EmbeddedDataError(f"checksum file {sums_path} cannot be read ({exc}); reinstall mmbalance") from exc
    if name not in sums:
        raise EmbeddedDataError(f"checksum file {sums_path} has no entry for {name!r}; reinstall mmbalance")
    return sums[name]


def verify_file(path: str | os.PathLike, expected: str) -> Path:
    """Check that ``path`` exists and has SHA-256 ``expected``; return it as a ``Path``.

    Raises:
        EmbeddedDataError: naming the file, if it is missing, unreadable or its checksum differs
            (a truncated or corrupt copy).
    """
    path = Path(path)
    if not path.is_file():
        raise EmbeddedDataError(
            f"embedded data file {path} is missing; reinstall mmbalance or rebuild it with the script in scripts/"
        )
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise EmbeddedDataError(f"embedded data file {path} cannot be read: {exc}") from exc
    if actual != expected.lower():
        raise EmbeddedDataError(
            f"embedded data file {path} is truncated or corrupt: SHA-256 {actual} "
            f"(size {path.stat().st_size} bytes) does not match the expected {expected}; "
            "reinstall mmbalance or rebuild it with the script in scripts/"
        )
    return path


def _load_npz(path: Path, default_name: str, verify: bool) -> dict[str, np.ndarray]:
    if verify:
        verify_file(path, expected_sha256(default_name))
    elif not path.is_file():
        raise EmbeddedDataError(f"embedded data file {path} is missing")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except Exception as exc:  # zipfile.BadZipFile, ValueError, EOFError, OSError ...
        raise EmbeddedDataError(f"embedded data file {path} cannot be read as .npz: {exc}") from exc


def write_npz_deterministic(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> None:
    """Write a compressed ``.npz`` that is byte-identical for identical arrays.

    ``np.savez_compressed`` stamps the current time into the zip entries; this writes the same format with a
    fixed timestamp and a fixed entry order, so a rebuild reproduces the shipped checksum. Loads with ``np.load``.
    """
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, array in arrays.items():
            array = np.asarray(array)
            if array.ndim and not array.flags.c_contiguous:
                array = np.ascontiguousarray(array)
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue(), compresslevel=9)


# ------------------------------------------------------------------------------------------------ AV-digits
def load_av_digits_arrays(preset: str = "clean", path: str | os.PathLike | None = None, verify: bool = True) -> dict:
    """Load the embedded AV-digits dataset (digit images paired by class with synthesised spoken digits).

    Args:
        preset: ``"clean"`` or ``"hard"`` (see :data:`AV_DIGITS_PRESETS`).
        path: alternative ``.npz`` file (default: the shipped ``files/av_digits.npz``). It is checked against
            the shipped checksum too.
        verify: check the SHA-256 before loading (default ``True``).

    Returns:
        ``{"inputs": {"image": float32 [N, 1, 8, 8] in [0, 1], "audio": float32 [N, 1, n_mels, frames]},
        "labels": int64 [N], "class_names": ["0", ..., "9"], "description": str, "meta": dict}``
        with ``N = 1797``. Audio features are log mel spectrograms standardised with one global mean/std per
        preset (stored in ``meta``). Samples are in scikit-learn's ``load_digits`` order.

    Raises:
        ValueError: unknown preset.
        EmbeddedDataError: the file is missing, truncated or corrupt.
    """
    if preset not in AV_DIGITS_PRESETS:
        raise ValueError(f"unknown av-digits preset {preset!r}; valid presets: {', '.join(AV_DIGITS_PRESETS)}")
    file_path = Path(path) if path is not None else FILES_DIR / AV_DIGITS_FILE
    data = _load_npz(file_path, AV_DIGITS_FILE, verify)
    try:
        image = data[f"image_{preset}"].astype(np.float32)
        audio = data[f"audio_{preset}"].astype(np.float32)
        labels = data["labels"].astype(np.int64)
        config = json.loads(str(data["build_config"]))
        meta = {
            "preset": preset,
            "file": str(file_path),
            "audio_mean": float(data[f"audio_{preset}_mean"]),
            "audio_std": float(data[f"audio_{preset}_std"]),
            "voice": data["voice"].astype(str),
            "rate_wpm": data["rate_wpm"].astype(np.int64),
            "pitch": data["pitch"].astype(np.int64),
            "build_config": config,
        }
    except KeyError as exc:
        raise EmbeddedDataError(f"embedded data file {file_path} lacks array {exc}") from exc
    n = len(labels)
    if image.shape[0] != n or audio.shape[0] != n:
        raise EmbeddedDataError(f"embedded data file {file_path}: inconsistent sample counts")
    description = (
        f"AV-digits ({preset}): {n} scikit-learn 8x8 digit images (UCI optical digits) paired by class with "
        f"synthesised spoken digits (espeak-ng, {config['sample_rate']} Hz, {config['duration_s']} s) as "
        f"standardised log mel spectrograms [{audio.shape[2]} mels x {audio.shape[3]} frames]. "
        f"Preset {preset}: {AV_DIGITS_PRESETS[preset]}"
        + (f" (pixel sigma {config['hard_image_sigma']}, clipped to [0, 1])." if preset == "hard" else ".")
    )
    return {
        "inputs": {"image": image, "audio": audio},
        "labels": labels,
        "class_names": list(DIGIT_CLASS_NAMES),
        "description": description,
        "meta": meta,
    }


# ---------------------------------------------------------------------------------------------------- mfeat
def load_mfeat_arrays(
    views: Iterable[str], path: str | os.PathLike | None = None, verify: bool = True
) -> dict:
    """Load views of the embedded UCI Multiple Features dataset.

    Args:
        views: one or more of ``fou, fac, kar, pix, zer, mor`` (see :data:`MFEAT_VIEWS`); the returned
            ``inputs`` keep this order.
        path: alternative ``.npz`` file (default: the shipped ``files/mfeat.npz``), checked against the shipped
            checksum.
        verify: check the SHA-256 before loading (default ``True``).

    Returns:
        ``{"inputs": {view: float32 [2000, d_view]}, "labels": int64 [2000], "class_names": ["0", ..., "9"],
        "description": str, "meta": dict}``. Features are the raw UCI values (not standardised); samples are
        ordered by class (200 per class), as in the UCI files.

    Raises:
        ValueError: no view, or an unknown view.
        EmbeddedDataError: the file is missing, truncated or corrupt.
    """
    if isinstance(views, str):
        views = [views]
    views = list(views)
    if not views:
        raise ValueError(f"load_mfeat_arrays needs at least one view; valid views: {', '.join(MFEAT_VIEWS)}")
    unknown = [v for v in views if v not in MFEAT_VIEWS]
    if unknown:
        raise ValueError(f"unknown mfeat view(s) {unknown}; valid views: {', '.join(MFEAT_VIEWS)}")
    if len(set(views)) != len(views):
        raise ValueError(f"duplicate mfeat views in {views}")
    file_path = Path(path) if path is not None else FILES_DIR / MFEAT_FILE
    data = _load_npz(file_path, MFEAT_FILE, verify)
    try:
        inputs = {v: data[v].astype(np.float32) for v in views}
        labels = data["labels"].astype(np.int64)
    except KeyError as exc:
        raise EmbeddedDataError(f"embedded data file {file_path} lacks array {exc}") from exc
    description = (
        f"UCI Multiple Features (van Breukelen, Duin et al.): {len(labels)} handwritten digits, views "
        + "; ".join(f"{v}: {MFEAT_VIEW_DESCRIPTIONS[v]}" for v in views)
        + "."
    )
    return {
        "inputs": inputs,
        "labels": labels,
        "class_names": list(DIGIT_CLASS_NAMES),
        "description": description,
        "meta": {"views": views, "file": str(file_path)},
    }


# --------------------------------------------------------------------------------------------------- Emoji-9
from .emoji9 import EMOJI9_FILE, load_emoji9_arrays  # noqa: E402  (emoji9 uses the helpers above)
