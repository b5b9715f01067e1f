"""Emoji-9: a real image + text dataset generated from Debian's ``unicode-data`` and ``fonts-noto-color-emoji``.

Every fully-qualified emoji of Unicode 15.0's ``emoji-test.txt`` without a skin-tone modifier (1,870) is one
sample; its class is its Unicode emoji *group* (9 classes). The **image** is the emoji's colour glyph from
Noto Color Emoji, rendered by Pillow and stored as 32x32 RGB uint8 on white; the **text** is its CLDR short
name (e.g. "grinning face with big eyes") as word counts over the words that occur in at least two names.
The sub-group is *not* part of the text: each sub-group lies inside exactly one group, so it would give the
label away. Built by ``scripts/build_emoji9.py``; see ``docs/datasets-embedded.md`` and
``files/LICENSE-emoji9.txt`` (Unicode data licence; the font is under OFL-1.1).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from . import FILES_DIR, EmbeddedDataError, _load_npz

EMOJI9_FILE = "emoji9.npz"
IMAGE_SIZE = 32
MODALITY_DESCRIPTIONS = {
    "image": f"the Noto Color Emoji glyph, {IMAGE_SIZE}x{IMAGE_SIZE} RGB on white, values in [0, 1]",
    "text": "TF-IDF (smooth idf, l2-normalised, whole-set idf) of the CLDR name's words",
}


def tfidf(counts: np.ndarray) -> np.ndarray:
    """TF-IDF of a word-count matrix with scikit-learn's defaults (smooth idf, l2 rows), float32.

    The idf uses the whole set's document frequencies: label-free, like the whole-set standardisation of
    mfeat and HTAD, so no label information reaches a split."""
    from sklearn.feature_extraction.text import TfidfTransformer

    return TfidfTransformer().fit_transform(counts).toarray().astype(np.float32)


def load_emoji9_arrays(path: str | os.PathLike | None = None, verify: bool = True) -> dict:
    """Load Emoji-9.

    Returns:
        ``{"inputs": {"image": float32 [1870, 3, 32, 32] in [0, 1], "text": float32 [1870, V] TF-IDF},
        "labels": int64 [1870], "class_names": the 9 groups in emoji-test.txt order, "description",
        "meta": {"names", "subgroups", "codepoints", "vocabulary", "text_counts", "build_config", "file"}}``.
        ``meta`` keeps the CLDR names (e.g. to try a text encoder of your own) and the sub-groups (metadata
        only: using them as a feature leaks the label).

    Raises:
        EmbeddedDataError: the file is missing, truncated or corrupt.
    """
    file_path = Path(path) if path is not None else FILES_DIR / EMOJI9_FILE
    data = _load_npz(file_path, EMOJI9_FILE, verify)
    try:
        image = data["image"].astype(np.float32) / 255.0
        counts = data["text_counts"]
        labels = data["labels"].astype(np.int64)
        class_names = [str(c) for c in data["class_names"]]
        meta = {"names": data["names"].astype(str), "subgroups": data["subgroups"].astype(str),
                "codepoints": data["codepoints"].astype(str), "vocabulary": data["vocabulary"].astype(str),
                "text_counts": counts, "build_config": json.loads(str(data["build_config"])),
                "file": str(file_path)}
    except KeyError as exc:
        raise EmbeddedDataError(f"embedded data file {file_path} lacks array {exc}") from exc
    n = len(labels)
    if image.shape != (n, 3, IMAGE_SIZE, IMAGE_SIZE) or counts.shape[0] != n:
        raise EmbeddedDataError(f"embedded data file {file_path}: inconsistent shapes {image.shape}, {counts.shape}")
    description = (f"Emoji-9: {n} fully-qualified emoji of Unicode {meta['build_config']['emoji_version']} "
                   f"(no skin-tone variants), {len(class_names)} emoji groups as classes; image: "
                   f"{MODALITY_DESCRIPTIONS['image']}; text: {MODALITY_DESCRIPTIONS['text']} "
                   f"({counts.shape[1]} words).")
    return {"inputs": {"image": image, "text": tfidf(counts)}, "labels": labels, "class_names": class_names,
            "description": description, "meta": meta}


__all__ = ["EMOJI9_FILE", "IMAGE_SIZE", "load_emoji9_arrays", "tfidf"]
