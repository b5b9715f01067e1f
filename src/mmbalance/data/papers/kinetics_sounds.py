"""Kinetics-Sounds: the Kinetics-400 clips of classes that can be heard (Arandjelović & Zisserman 2017).

The class count is disputed in the community (31 / 32 / 33 / 34, see docs/datasets.md). Shipped lists:

* ``ks31`` -- the 31 classes OGM-GE and BalanceBenchmark count, as listed by the AdaMML authors
  (IBM/AdaMML#3); the default for class *names*;
* ``ks32`` -- ks31 plus ``strumming_guitar`` (CrissCross, pritamqu/CrissCross#4).

``classes`` option: ``auto`` (a ``classes.txt``/``stat.txt`` in the root if any; integer labels as given,
0-based; class-name labels matched against ks31, then ks32, else the sorted names found), ``ks31``,
``ks32``, ``split`` (whatever the split files contain, sorted) or a path to a class-list file.

OGM-GE split files: ``my_train.txt`` (14,799) / ``my_test.txt`` (2,597), rows ``<ytid_start_end>,10,<int>``.
No validation file in OGM-GE: a seeded stratified 10% of train is held out unless a ``val.csv`` /
``my_val.txt`` exists (the NJUST protocol uses an official ~1.9k validation split).
"""
from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..base import DataError
from .av import build_av, prepare_av_dataset
from .common import find_file, labels_from_tokens, normalise_class_name, read_split_file, resolve_path
from .spec import (AUDIO_OPTIONS, COMMON_OPTIONS, FRAME_OPTIONS, LAYOUT_OPTIONS, Loaded, attach_prepare,
                   paper_dataset)

KS31 = ["blowing_nose", "blowing_out_candles", "bowling", "chopping_wood", "dribbling_basketball", "laughing",
        "mowing_lawn", "playing_accordion", "playing_bagpipes", "playing_bass_guitar", "playing_clarinet",
        "playing_drums", "playing_guitar", "playing_harmonica", "playing_keyboard", "playing_organ",
        "playing_piano", "playing_saxophone", "playing_trombone", "playing_trumpet", "playing_violin",
        "playing_xylophone", "ripping_paper", "shoveling_snow", "shuffling_cards", "singing", "stomping_grapes",
        "tap_dancing", "tapping_guitar", "tapping_pen", "tickling"]
KS32 = sorted(KS31 + ["strumming_guitar"])
CLASS_LISTS = {"ks31": KS31, "ks32": KS32}

DEFAULTS = {**COMMON_OPTIONS, **FRAME_OPTIONS, **AUDIO_OPTIONS, **LAYOUT_OPTIONS, "frames": 3, "classes": "auto",
            "visual_dir": None, "audio_dir": None}
VISUAL = ["visual/{name}", "Image-01-FPS/{name}", "visual/{split}_imgs/Image-01-FPS/{name}",
          "{split}_imgs/Image-01-FPS/{name}", "{split}-set-img/Image-01-FPS/{name}", "frames/{name}",
          "visual_{split}/{name}", "visual/{name}.mp4"]
AUDIO = ["audio/{name}.npy", "audio/{split}_fbank/{name}.npy", "{split}_spec/{name}.npy", "audio_{split}/{name}.npy",
         "audio/{name}.pt", "audio/{name}.pkl", "audio/{name}.wav", "{split}_wav/{split}/{name}.wav",
         "{split}_wav/{name}.wav"]
TRAIN_FILES = ["train.csv", "my_train.txt", "my_train_ks.txt", "train.txt", "ks_train.txt"]
VAL_FILES = ["val.csv", "my_val.txt", "my_val_ks.txt", "val.txt"]
TEST_FILES = ["test.csv", "my_test.txt", "my_test_ks.txt", "test.txt", "ks_test.txt"]
CLASS_FILES = ["classes.txt", "stat.txt", "stat_ks.txt", "class_list.txt"]


def read_class_file(path: Path) -> List[str]:
    """One class per line; ``<int> <name>`` and ``<name>,<anything>`` lines are accepted."""
    names = []
    for line in Path(path).read_text(encoding="utf-8-sig").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "," in line:
            line = line.split(",")[0].strip()
        parts = line.split()
        if len(parts) >= 2 and re.fullmatch(r"\d+", parts[0]):
            parts = parts[1:]
        names.append(" ".join(parts))
    if not names:
        raise DataError(f"class list {path} is empty")
    return names


def resolve_classes(choice: str, root: Optional[Path], tokens: Sequence[str], dataset: str = "kinetics-sounds",
                    lists: Optional[Dict[str, List[str]]] = None) -> List[str]:
    lists = CLASS_LISTS if lists is None else lists
    if choice in lists:
        return list(lists[choice])
    if choice not in ("auto", "split"):
        p = Path(choice).expanduser()
        if root is not None and not p.is_absolute():
            p = root / p
        if not p.is_file():
            raise DataError(f"{dataset}: option classes={choice!r} is not one of auto, split, "
                            f"{', '.join(lists)} nor an existing class-list file")
        return read_class_file(p)
    if choice == "auto" and root is not None:
        f = find_file(root, CLASS_FILES)
        if f is not None:
            return read_class_file(f)
    toks = [t for t in tokens if t is not None]
    if toks and all(re.fullmatch(r"\d+", t.strip()) for t in toks):
        n = max(int(t) for t in toks) + 1
        return [f"class_{i}" for i in range(n)]
    found = sorted({normalise_class_name(t) for t in toks})
    if choice == "auto":
        for key, names in lists.items():
            if set(found) <= {normalise_class_name(c) for c in names}:
                return list(names)
        warnings.warn(f"{dataset}: the split files name {len(found)} classes that are not a subset of any shipped "
                      f"list ({', '.join(lists)}); using the sorted names found", stacklevel=3)
    return found


def read_split_rows(files: Dict[str, Path]):
    return {k: read_split_file(p) for k, p in files.items()}


def find_splits(root: Path, opts: dict, train_names=TRAIN_FILES, val_names=VAL_FILES, test_names=TEST_FILES,
                dataset: str = "kinetics-sounds") -> Dict[str, Path]:
    train = resolve_path(root, opts.get("train_split")) or find_file(root, train_names)
    test = resolve_path(root, opts.get("test_split")) or find_file(root, test_names)
    if train is None or test is None:
        raise DataError(f"{dataset}: no split files under {root} (looked for {', '.join(train_names)} and "
                        f"{', '.join(test_names)}; set data.options.train_split / test_split)")
    files = {"train": train, "test": test}
    if opts.get("val") in ("auto", "file"):
        val = resolve_path(root, opts.get("val_split")) or find_file(root, val_names)
        if val is not None:
            files["val"] = val
    return files


@paper_dataset("kinetics-sounds", "Kinetics-Sounds (audio + frames), 31 classes by default; OGM-GE split 14,799/2,597",
               ("audio", "visual"), DEFAULTS, [{"train": 14799, "test": 2597}], default_val=0.1)
def load(root: Path, opts: dict) -> Loaded:
    files = find_splits(root, opts)
    rows = read_split_rows(files)
    tokens = [r.label for rs in rows.values() for r in rs]
    classes = resolve_classes(str(opts["classes"]), root, tokens)
    items = {k: list(zip([r.name for r in rs], labels_from_tokens(rs, classes, str(files[k]))))
             for k, rs in rows.items()}
    if "val" in items:
        val_names = {n for n, _ in items["val"]}
        items["train"] = [r for r in items["train"] if r[0] not in val_names]
    return build_av("kinetics-sounds", root, opts, items, classes, VISUAL, AUDIO, "ks-fbank",
                    {"split_files": {k: str(p) for k, p in files.items()}})


@attach_prepare("kinetics-sounds")
def prepare(args) -> dict:
    """Raw Kinetics-Sounds (videos, or frame folders + WAV/fbank) + split files -> the canonical layout."""
    split_dir = Path(args.splits) if args.splits else Path(args.raw)
    files = find_splits(split_dir, {"val": "auto"})
    rows = {k: [(r.name, r.label) for r in rs] for k, rs in read_split_rows(files).items()}
    for k, rs in rows.items():
        missing = [n for n, y in rs if y is None]
        if missing:
            raise DataError(f"kinetics-sounds: {files[k]} row {missing[0]!r} has no label")
    out_files = {k: f"{k}.csv" for k in rows}
    cls = find_file(split_dir, CLASS_FILES)
    extra = {"classes.txt": ("\n".join(read_class_file(cls)) + "\n").encode()} if cls is not None else {}
    return prepare_av_dataset(args, "kinetics-sounds", rows, out_files, "ks-fbank",
                              {"split_source": {k: str(v) for k, v in files.items()}}, extra_files=extra)
