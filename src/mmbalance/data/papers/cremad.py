"""CREMA-D (Cao et al. 2014): 7,442 clips of 91 actors, 6 emotions; audio + face video.

Split: the OGM-GE split (6,698 train / 744 test, ``train.csv`` / ``test.csv``, rows ``clip,EMO``) that all
GeWu and NJUST papers use. Validation: D&R's ``my_train.csv`` (5,954) + ``val.csv`` (744) if present,
else a seeded stratified 744-sample hold-out of train (:func:`..common.stratified_holdout`), so that
train/val are 5,954/744 either way. Classes in OGM-GE's order: NEU, HAP, SAD, FEA, DIS, ANG.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from ..base import DataError
from .av import build_av, prepare_av_dataset
from .common import find_file, labels_from_tokens, read_split_file, resolve_path, stratified_holdout
from .spec import (AUDIO_OPTIONS, COMMON_OPTIONS, FRAME_OPTIONS, LAYOUT_OPTIONS, Loaded, attach_prepare,
                   paper_dataset)

CLASSES = ["NEU", "HAP", "SAD", "FEA", "DIS", "ANG"]
ALIASES = {"neutral": "NEU", "happy": "HAP", "happiness": "HAP", "sad": "SAD", "sadness": "SAD", "fear": "FEA",
           "fearful": "FEA", "disgust": "DIS", "anger": "ANG", "angry": "ANG"}
TOTAL, TEST, VAL = 7442, 744, 744

DEFAULTS = {**COMMON_OPTIONS, **FRAME_OPTIONS, **AUDIO_OPTIONS, **LAYOUT_OPTIONS, "visual_dir": None, "audio_dir": None}

VISUAL = ["visual/{name}", "Image-01-FPS/{name}", "visual/Image-01-FPS/{name}", "frames/{name}",
          "visual/{split}_imgs/Image-01-FPS/{name}", "{split}_imgs/Image-01-FPS/{name}"]
AUDIO = ["audio/{name}.npy", "audio/{name}.pt", "audio/{name}.pkl", "Audio-299/{name}.pkl",
         "audio/{split}_fbank/{name}.npy", "wav_pkl/{name}.pkl", "AudioWAV/{name}.wav", "audio/{name}.wav"]
TRAIN_FILES = ["train.csv", "train.txt", "my_train_cre.txt", "train_list.txt"]
TEST_FILES = ["test.csv", "test.txt", "my_test_cre.txt", "test_list.txt"]


def emotion_of(name: str) -> str:
    """``1001_DFA_ANG_XX`` -> ``ANG`` (the third field of a CREMA-D clip name)."""
    parts = name.split("_")
    if len(parts) < 3:
        raise DataError(f"CREMA-D clip name {name!r} does not look like ACTOR_SENTENCE_EMOTION_LEVEL")
    return parts[2]


def read_rows(path: Path) -> List[Tuple[str, int]]:
    rows = read_split_file(path)
    for r in rows:
        if r.label is None:
            r.label = emotion_of(r.name)
    ys = labels_from_tokens(rows, CLASSES, str(path), aliases=ALIASES)
    return [(r.name, y) for r, y in zip(rows, ys)]


def split_files(root: Path, opts: dict) -> Dict[str, Path]:
    """Which split files to read: train/test (+ D&R my_train/val when validation comes from files)."""
    train = resolve_path(root, opts.get("train_split")) or find_file(root, TRAIN_FILES)
    test = resolve_path(root, opts.get("test_split")) or find_file(root, TEST_FILES)
    if train is None or test is None:
        raise DataError(f"cremad: no split files under {root} (looked for {TRAIN_FILES[0]} / {TEST_FILES[0]} and "
                        f"the MLA/BalanceMM variants; set data.options.train_split / test_split)")
    files = {"train": train, "test": test}
    if opts.get("val") in ("auto", "file"):
        val = resolve_path(root, opts.get("val_split")) or find_file(root, ["val.csv", "my_val.csv", "val.txt"])
        if val is not None:
            files["val"] = val
            dr_train = find_file(root, ["my_train.csv"])
            if dr_train is not None and opts.get("train_split") is None:
                files["train"] = dr_train
    return files


@paper_dataset("cremad", "CREMA-D emotions (audio + face frames), OGM-GE split 6,698/744; D&R or stratified 744 val",
               ("audio", "visual"), DEFAULTS,
               [{"train": TOTAL - TEST - VAL, "val": VAL, "test": TEST}, {"train": TOTAL - TEST, "test": TEST}],
               default_val=VAL)
def load(root: Path, opts: dict) -> Loaded:
    files = split_files(root, opts)
    rows = {k: read_rows(p) for k, p in files.items()}
    if "val" in rows:  # train minus val, whether train is D&R's my_train.csv (already disjoint) or train.csv
        val_names = {n for n, _ in rows["val"]}
        rows["train"] = [r for r in rows["train"] if r[0] not in val_names]
    leak = {n for n, _ in rows["train"]} & {n for n, _ in rows["test"]}
    if leak:
        raise DataError(f"cremad: {len(leak)} clips are in both the train and the test split file "
                        f"(e.g. {sorted(leak)[0]!r}); check {files['train']} and {files['test']}")
    info = {"split_files": {k: str(p) for k, p in files.items()}}
    return build_av("cremad", root, opts, rows, CLASSES, VISUAL, AUDIO, "ogm-ge", info)


@attach_prepare("cremad")
def prepare(args) -> dict:
    """Raw CREMA-D (``AudioWAV/*.wav`` + ``VideoFlash/*.flv`` or frame folders) -> the canonical layout."""
    raw = Path(args.raw)
    split_dir = Path(args.splits) if args.splits else raw
    train_f, test_f = find_file(split_dir, TRAIN_FILES), find_file(split_dir, TEST_FILES)
    rows: Dict[str, List[Tuple[str, str]]] = {}
    files = {"train": "train.csv", "test": "test.csv"}
    meta: dict = {}
    if train_f is not None and test_f is not None:
        for split, f in (("train", train_f), ("test", test_f)):
            rows[split] = [(n, CLASSES[y]) for n, y in read_rows(f)]
        dr_train, dr_val = find_file(split_dir, ["my_train.csv"]), find_file(split_dir, ["val.csv"])
        if dr_train is not None and dr_val is not None:
            rows["my_train"] = [(n, CLASSES[y]) for n, y in read_rows(dr_train)]
            rows["val"] = [(n, CLASSES[y]) for n, y in read_rows(dr_val)]
            files.update(my_train="my_train.csv", val="val.csv")
        meta["split_source"] = {k: str(v) for k, v in (("train", train_f), ("test", test_f)) if v}
    else:
        from .av import index_raw

        idx = index_raw(raw)
        names = sorted(set(idx.audio) | set(idx.videos))
        if not names:
            raise DataError(f"cremad: no split files and no clips (AudioWAV/*.wav, VideoFlash/*.flv) under {raw}")
        labels = [CLASSES.index(emotion_of(n)) if emotion_of(n) in CLASSES else -1 for n in names]
        bad = [n for n, y in zip(names, labels) if y < 0]
        if bad:
            raise DataError(f"cremad: clip {bad[0]!r} has an unknown emotion code")
        n_test = TEST if len(names) == TOTAL else max(1, round(len(names) * TEST / TOTAL))
        tr, te = stratified_holdout(labels, n_test, args.split_seed)
        rows = {"train": [(names[i], CLASSES[labels[i]]) for i in tr],
                "test": [(names[i], CLASSES[labels[i]]) for i in te]}
        meta["split_source"] = f"generated: seeded stratified hold-out (seed {args.split_seed}); NOT the OGM-GE split"
        print("warning: no train.csv/test.csv found (pass --splits DIR with OGM-GE's files for the papers' split); "
              f"wrote a seeded stratified split {len(tr)}/{len(te)}")
    return prepare_av_dataset(args, "cremad", rows, files, "ogm-ge", meta)
