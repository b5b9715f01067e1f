"""VGGSound (Chen et al. 2020): 10-s YouTube clips, 309/310 sound classes; audio + frames.

Split file: the official ``vggsound.csv`` (rows ``ytid,start_seconds,label,train|test``; labels may contain
commas and are quoted). A clip is named ``<ytid>_<start>`` (OGM-GE and BalanceBenchmark; option
``name_format``, e.g. ``{ytid}_{start:06d}``). Class ids follow the order of first appearance among the
csv's train rows (OGM-GE, BalanceBenchmark; ``class_order: sorted`` for alphabetical). Alternatively
``train``/``test`` split files with ``name label`` rows are read like Kinetics-Sounds'.

YouTube attrition means every copy of VGGSound misses clips, so ``missing`` defaults to ``skip`` here
(the number skipped is reported; ``mmbalance verify`` lists them). No validation split: a seeded
stratified 5% of train is held out.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Tuple

from ..base import DataError
from .av import build_av, prepare_av_dataset
from .common import find_file, labels_from_tokens, read_split_file, resolve_path
from .kinetics_sounds import find_splits, resolve_classes
from .spec import (AUDIO_OPTIONS, COMMON_OPTIONS, FRAME_OPTIONS, LAYOUT_OPTIONS, Loaded, attach_prepare,
                   paper_dataset)

DEFAULTS = {**COMMON_OPTIONS, **FRAME_OPTIONS, **AUDIO_OPTIONS, **LAYOUT_OPTIONS, "frames": 1, "missing": "skip",
            "class_order": "csv", "csv": None, "name_format": "{ytid}_{start}", "classes": "auto", "visual_dir": None,
            "audio_dir": None}
VISUAL = ["visual/{name}", "visual/{name}.mp4", "{split}-set-img/Image-01-FPS/{name}.mp4",
          "{split}-videos/{split}-set-img/Image-01-FPS/{name}.mp4", "video_{split}/{name}", "frames/{name}"]
AUDIO = ["audio/{name}.npy", "audio/{name}.wav", "{split}-audios/{split}-set/{name}.wav", "{split}-set/{name}.wav",
         "audio_{split}/{name}.npy", "audio/{name}.pkl", "audio/{name}.pt"]
CSV_NAMES = ["vggsound.csv", "VGGSound.csv"]


def read_vggsound_csv(path: Path, name_format: str = "{ytid}_{start}", class_order: str = "csv"):
    """-> ({"train": [(name, label)], "test": [...]}, class names)."""
    rows: Dict[str, List[Tuple[str, str]]] = {"train": [], "test": []}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for ln, row in enumerate(csv.reader(f), 1):
            if not row or not "".join(row).strip():
                continue
            if len(row) != 4:
                raise DataError(f"{path}: line {ln} has {len(row)} fields; expected ytid,start,label,split")
            ytid, start, label, split = (x.strip() for x in row)
            if ln == 1 and not start.isdigit():
                continue  # header
            if split not in rows:
                raise DataError(f"{path}: line {ln}: split {split!r} is not train or test")
            try:
                name = name_format.format(ytid=ytid, start=int(start) if ":" in name_format else start)
            except (ValueError, KeyError) as e:
                raise DataError(f"option name_format={name_format!r}: {e} (use {{ytid}} and {{start}})") from None
            rows[split].append((name, label))
    if class_order == "csv":
        classes: List[str] = []
        seen = set()
        for _, y in rows["train"] + rows["test"]:
            if y not in seen:
                seen.add(y)
                classes.append(y)
    elif class_order == "sorted":
        classes = sorted({y for rs in rows.values() for _, y in rs})
    else:
        raise DataError(f"vggsound: option class_order={class_order!r} must be csv or sorted")
    return rows, classes


@paper_dataset("vggsound", "VGGSound (audio + frames), 309/310 classes from vggsound.csv; missing clips skipped",
               ("audio", "visual"), DEFAULTS, [{"train": 168618, "test": 13954}], default_val=0.05)
def load(root: Path, opts: dict) -> Loaded:
    csv_path = resolve_path(root, opts.get("csv")) or find_file(root, CSV_NAMES)
    if csv_path is not None and not csv_path.is_file():
        raise DataError(f"vggsound: option csv={opts.get('csv')!r}: no such file {csv_path}")
    if csv_path is not None and not (opts.get("train_split") or opts.get("test_split")):
        from .av import prepared_meta

        fmt = opts["name_format"]
        if fmt == DEFAULTS["name_format"]:
            fmt = prepared_meta(root).get("name_format", fmt)
        rows, classes = read_vggsound_csv(csv_path, fmt, opts["class_order"])
        items = {}
        for k, rs in rows.items():
            idx = {c: i for i, c in enumerate(classes)}
            items[k] = [(n, idx[y]) for n, y in rs]
        info = {"split_files": {"train": str(csv_path), "test": str(csv_path)}}
    else:
        files = find_splits(root, opts, dataset="vggsound")
        srows = {k: read_split_file(p) for k, p in files.items()}
        classes = resolve_classes(str(opts["classes"]), root, [r.label for rs in srows.values() for r in rs],
                                  "vggsound", lists={})
        items = {k: list(zip([r.name for r in rs], labels_from_tokens(rs, classes, str(files[k]))))
                 for k, rs in srows.items()}
        info = {"split_files": {k: str(p) for k, p in files.items()}}
    if not items.get("train") or not items.get("test"):
        raise DataError(f"vggsound: the split file under {root} has no train or no test rows")
    return build_av("vggsound", root, opts, items, classes, VISUAL, AUDIO, "ogm-vggsound", info)


def _add_arguments(p):
    p.add_argument("--name-format", default="{ytid}_{start}", help="clip name from the csv (default {ytid}_{start})")


@attach_prepare("vggsound", _add_arguments)
def prepare(args) -> dict:
    """Raw VGGSound (videos or frame folders + WAV) + ``vggsound.csv`` -> the canonical layout."""
    split_dir = Path(args.splits) if args.splits else Path(args.raw)
    csv_path = find_file(split_dir, CSV_NAMES)
    if csv_path is None:
        raise DataError(f"vggsound: no vggsound.csv under {split_dir} (pass --splits DIR)")
    fmt = getattr(args, "name_format", "{ytid}_{start}")
    rows, _ = read_vggsound_csv(csv_path, fmt)
    return prepare_av_dataset(args, "vggsound", rows, {}, "ogm-vggsound",
                              {"split_source": str(csv_path), "name_format": fmt},
                              extra_files={"vggsound.csv": csv_path.read_bytes()})
