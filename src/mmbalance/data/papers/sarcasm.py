"""Multimodal Sarcasm Detection (Cai et al. 2019): tweets with an image, sarcastic or not; 2 classes.

Raw layout (data-of-multimodal-sarcasm-detection): ``text/train.txt``, ``text/valid2.txt`` (or
``valid.txt``), ``text/test2.txt`` (or ``test.txt``) with one Python-literal list per line
``['<image id>', '<text>', ..., <label>]`` (the text is the second field, the label the last: 1 sarcastic),
and ``dataset_image/<image id>.jpg``. JSON-lines files with ``id``/``text``/``label`` keys (the BSS code's
json) are accepted too. Counts 19,816 / 2,410 / 2,409. Training crop scale defaults to (0.5, 1) as in the
BSS Sarcasm code.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Dict, List

from ..base import DataError
from ..paths import contained
from .common import find_dir, find_file
from .spec import attach_prepare, paper_dataset
from .text import IMAGE_TEXT_OPTIONS, add_text_arguments, load_image_text, prepare_image_text

CLASSES = ["not_sarcastic", "sarcastic"]
DEFAULTS = {**IMAGE_TEXT_OPTIONS, "crop_scale": [0.5, 1.0]}


@paper_dataset("sarcasm", "Multimodal sarcasm detection: image + pre-extracted text features, 2 classes",
               ("image", "text"), DEFAULTS, [{"train": 19816, "val": 2410, "test": 2409}], default_val=0.1)
def load(root: Path, opts: dict):
    return load_image_text("sarcasm", root, opts, CLASSES)


def read_raw(path: Path, image_dir: Path) -> List[dict]:
    rows = []
    text = path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    if path.suffix == ".json" and text.lstrip().startswith("["):
        try:
            lines = [json.dumps(o) for o in json.loads(text)]  # a JSON array of objects
        except ValueError as e:
            raise DataError(f"{path}: invalid JSON: {e}") from None
    for ln, line in enumerate(lines, 1):
        line = line.strip()
        if not line:
            continue
        try:
            if line.startswith("{"):
                obj = json.loads(line)
                sid = str(obj.get("id", obj.get("image_id", obj.get("image"))))
                text, label = obj.get("text", obj.get("sentence", "")), obj["label"]
            else:
                obj = ast.literal_eval(line)
                sid, text, label = str(obj[0]), str(obj[1]), obj[-1]
            label = int(label)
        except (ValueError, SyntaxError, KeyError, IndexError, TypeError) as e:
            raise DataError(f"{path}: line {ln} is not ['id', 'text', ..., label] nor a JSON object: {e}") from None
        if label not in (0, 1):
            raise DataError(f"{path}: line {ln}: label {label!r} is not 0 or 1")
        sid = sid[:-4] if sid.endswith(".jpg") else sid
        where = f"{path} line {ln}"
        rows.append({"id": sid, "image": str(contained(image_dir, f"{sid}.jpg", where)), "label": label, "text": text,
                     "where": where})
    return rows


@attach_prepare("sarcasm", add_text_arguments)
def prepare(args) -> dict:
    raw = Path(args.raw)
    split_dir = Path(args.splits) if args.splits else raw
    image_dir = find_dir(raw, ["dataset_image", "images", "image"])
    if image_dir is None:
        raise DataError(f"sarcasm: no dataset_image/ (or images/) folder under {raw}")
    splits: Dict[str, List[dict]] = {}
    for split, names in (("train", ["train.txt", "train.json", "train.jsonl"]),
                         ("val", ["valid2.txt", "valid.txt", "val.txt", "valid.json", "val.json", "valid.jsonl"]),
                         ("test", ["test2.txt", "test.txt", "test.json", "test.jsonl"])):
        p = find_file(split_dir, names + [f"text/{n}" for n in names])
        if p is None:
            raise DataError(f"sarcasm: no {names[0]} under {split_dir} (or text/)")
        splits[split] = read_raw(p, image_dir)
    return prepare_image_text(args, "sarcasm", splits, CLASSES)
