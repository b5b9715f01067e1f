"""Twitter2015 (Yu & Jiang 2019, TomBERT): target-oriented sentiment of tweets with an image; 3 classes.

Raw layout (TomBERT): ``train.tsv`` / ``dev.tsv`` / ``test.tsv`` with header
``index  #1 Label  #2 ImageID  #3 String  #3 String`` (label 0 negative, 1 neutral, 2 positive; the tweet
has the target replaced by ``$T$``; the last column is the target) and ``twitter2015_images/<ImageID>``.
Counts 3,179 / 1,122 / 1,037. A sample's id is ``<split>_<index>`` (one image can carry several targets).
The text fed to BERT is the tweet with ``$T$`` replaced by the target.

Prepared layout: see :mod:`.text` (images/, text/<id>.npy, train/val/test.csv).
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List

from ..base import DataError
from ..paths import contained
from .common import find_dir, find_file
from .spec import attach_prepare, paper_dataset
from .text import IMAGE_TEXT_OPTIONS, add_text_arguments, load_image_text, prepare_image_text

CLASSES = ["negative", "neutral", "positive"]
DEFAULTS = dict(IMAGE_TEXT_OPTIONS)


@paper_dataset("twitter2015", "Twitter2015 target sentiment: image + pre-extracted text features, 3 classes",
               ("image", "text"), DEFAULTS, [{"train": 3179, "val": 1122, "test": 1037}], default_val=0.1)
def load(root: Path, opts: dict):
    return load_image_text("twitter2015", root, opts, CLASSES)


def read_tsv(path: Path, split: str, image_dir: Path) -> List[dict]:
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for ln, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1):
            if ln == 1 and row and not row[0].strip().isdigit():
                continue  # header
            if not row:
                continue
            if len(row) < 5:
                raise DataError(f"{path}: line {ln} has {len(row)} tab-separated fields; expected "
                                f"index, label, image id, tweet, target")
            idx, label, image, tweet, target = (x.strip() for x in row[:5])
            if label not in ("0", "1", "2"):
                raise DataError(f"{path}: line {ln}: label {label!r} is not 0, 1 or 2")
            where = f"{path} line {ln}"
            rows.append({"id": f"{split}_{idx}", "image": str(contained(image_dir, image, where)), "label": int(label),
                         "text": tweet.replace("$T$", target), "where": where})
    return rows


@attach_prepare("twitter2015", add_text_arguments)
def prepare(args) -> dict:
    raw = Path(args.raw)
    split_dir = Path(args.splits) if args.splits else raw
    image_dir = find_dir(raw, ["twitter2015_images", "images", "IJCAI2019_data/twitter2015_images"])
    if image_dir is None:
        raise DataError(f"twitter2015: no twitter2015_images/ (or images/) folder under {raw}")
    splits: Dict[str, List[dict]] = {}
    for split, names in (("train", ["train.tsv"]), ("val", ["dev.tsv", "valid.tsv", "val.tsv"]),
                         ("test", ["test.tsv"])):
        p = find_file(split_dir, names + [f"twitter2015/{n}" for n in names])
        if p is None:
            raise DataError(f"twitter2015: no {names[0]} under {split_dir}")
        splits[split] = read_tsv(p, split, image_dir)
    return prepare_image_text(args, "twitter2015", splits, CLASSES)
