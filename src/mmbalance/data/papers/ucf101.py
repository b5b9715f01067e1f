"""UCF-101 (Soomro et al. 2012): 101 actions; RGB frames + optical flow (the D&R / GeWu two-stream setting).

Split files: the official ``classInd.txt`` (``1 ApplyEyeMakeup``), ``trainlist0{fold}.txt``
(``ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1``, 1-based labels) and ``testlist0{fold}.txt`` (no
label: the class is the folder part), in the root or ``ucfTrainTestlist/`` (split 1: 9,537 / 3,783).
Frames: ``rgb/<name>/`` (also ``visual/``, ``frames/``, ``jpegs_256/``); flow: ``flow/u/<name>/`` +
``flow/v/<name>/`` (also ``flow_u``/``flow_v``, ``tvl1_flow/{u,v}``) as grayscale JPEGs, stacked into 2
channels and normalised with mean 0.1307 / std 0.3081 (GeWu). RGB: ImageNet normalisation, training
augmentation on (``augment``); flow: Resize only (``flow_augment`` false), as in the GeWu loader.
No validation split: a seeded stratified 10% of train is held out.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Tuple

from ..base import DataError
from ..paths import contained
from .av import build_records
from .common import FLOW_MEAN, FLOW_STD, find_file, labels_from_tokens, read_split_file, resolve_path
from .frames import FlowReader, FrameReader, FrameTransform, frame_options
from .kinetics_sounds import read_class_file
from .spec import COMMON_OPTIONS, FRAME_OPTIONS, LAYOUT_OPTIONS, Loaded, attach_prepare, paper_dataset

DEFAULTS = {**COMMON_OPTIONS, **FRAME_OPTIONS, **LAYOUT_OPTIONS, "frames": 3, "fold": 1, "flow_augment": False,
            "rgb_dir": None, "flow_dir": None}
RGB = ["rgb/{name}", "visual/{name}", "frames/{name}", "jpegs_256/{name}", "Image-01-FPS/{name}"]
FLOW = [("flow/u/{name}", "flow/v/{name}"), ("flow_u/{name}", "flow_v/{name}"),
        ("tvl1_flow/u/{name}", "tvl1_flow/v/{name}"), ("flow/{name}/u", "flow/{name}/v")]


def split_files(root: Path, opts: dict) -> Dict[str, Path]:
    fold = int(opts.get("fold", 1))
    if fold not in (1, 2, 3):
        raise DataError(f"ucf101: option fold={fold!r} must be 1, 2 or 3")
    files = {
        "classes": find_file(root, ["classInd.txt", "ucfTrainTestlist/classInd.txt", "stat.txt"]),
        "train": resolve_path(root, opts.get("train_split")) or find_file(
            root, [f"trainlist0{fold}.txt", f"ucfTrainTestlist/trainlist0{fold}.txt", "train.txt", "train.csv"]),
        "test": resolve_path(root, opts.get("test_split")) or find_file(
            root, [f"testlist0{fold}.txt", f"ucfTrainTestlist/testlist0{fold}.txt", "test.txt", "test.csv"]),
    }
    if opts.get("val") in ("auto", "file"):
        v = resolve_path(root, opts.get("val_split")) or find_file(root, ["val.txt", "val.csv"])
        if v is not None:
            files["val"] = v
    missing = [k for k, v in files.items() if v is None]
    if missing:
        raise DataError(f"ucf101: no {missing[0]} file under {root} (classInd.txt, trainlist0{fold}.txt, "
                        f"testlist0{fold}.txt, also in ucfTrainTestlist/)")
    return files  # type: ignore[return-value]


def read_rows(path: Path, classes: List[str]) -> List[Tuple[str, int]]:
    rows = read_split_file(path)
    for r in rows:
        if r.label is None:
            first = r.fields[0].replace("\\", "/")
            if "/" not in first:
                raise DataError(f"{path}: line {r.line} ({r.name!r}) has neither a label nor a Class/ prefix")
            r.label = first.split("/")[0]
    # official lists are 1-based; our canonical files (written by prepare) use class names
    return list(zip([r.name for r in rows], labels_from_tokens(rows, classes, str(path), int_offset=1)))


@paper_dataset("ucf101", "UCF-101 actions: RGB frames + 2-channel optical flow, official split 1 (9,537/3,783)",
               ("rgb", "flow"), DEFAULTS, [{"train": 9537, "test": 3783}], default_val=0.1)
def load(root: Path, opts: dict) -> Loaded:
    files = split_files(root, opts)
    classes = read_class_file(files.pop("classes"))
    rows = {k: read_rows(p, classes) for k, p in files.items()}
    if "val" in rows:
        vn = {n for n, _ in rows["val"]}
        rows["train"] = [r for r in rows["train"] if r[0] not in vn]
    n = int(opts["frames"])
    rgb_t = frame_options(opts)
    flow_t = FrameTransform(rgb_t.size, bool(opts["flow_augment"]), rgb_t.scale, mean=FLOW_MEAN, std=FLOW_STD)
    readers = {"rgb": FrameReader("rgb", n, rgb_t, opts["frame_sampling"]),
               "flow": FlowReader("flow", n, flow_t, opts["frame_sampling"])}
    templates = {"rgb": ([f"{opts['rgb_dir'].rstrip('/')}/{{name}}"] if opts.get("rgb_dir") else []) + RGB,
                 "flow": ([(f"{opts['flow_dir'].rstrip('/')}/u/{{name}}", f"{opts['flow_dir'].rstrip('/')}/v/{{name}}")]
                          if opts.get("flow_dir") else []) + FLOW}
    records, layout = build_records("ucf101", root, rows, templates,
                                    {"rgb": "RGB frame folders", "flow": "flow folders"}, files)
    return Loaded(records, readers, classes, {"split_files": {k: str(p) for k, p in files.items()}, "layout": layout})


def _add_arguments(p):
    p.add_argument("--flow", help="folder of pre-computed optical flow: u/<name>/*.jpg and v/<name>/*.jpg "
                                  "(TV-L1, e.g. from the two-stream releases); copied to OUT/flow/")
    p.add_argument("--fold", type=int, default=1, help="official split 1, 2 or 3 (default 1)")


@attach_prepare("ucf101", _add_arguments)
def prepare(args) -> dict:
    """UCF-101 videos (or RGB frame folders) + ucfTrainTestlist + pre-computed flow -> the canonical layout."""
    from .av import index_raw
    from .preprocess import copy_flow, copy_images, ffmpeg_binary, frames_command, run_command, run_jobs

    raw, out = Path(args.raw), Path(args.out)
    split_dir = Path(args.splits) if args.splits else raw
    files = split_files(split_dir, {"fold": args.fold, "val": "stratified"})
    classes = read_class_file(files["classes"])
    rows = {k: read_rows(files[k], classes) for k in ("train", "test")}
    sources = {n: str(files[k]) for k in ("train", "test") for n, _ in rows[k]}
    # clip names come from the lists: refuse any that would leave OUT before anything is written
    dst = {n: contained(out / "rgb", n, src) for n, src in sources.items()}
    out.mkdir(parents=True, exist_ok=True)
    (out / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(classes)))
    for k in ("train", "test"):  # canonical lists: Class/name.avi <1-based label>
        (out / f"{k}.txt").write_text("".join(f"{classes[y]}/{n}.avi {y + 1}\n" for n, y in rows[k]))
    idx = index_raw(raw)
    flow_root = Path(args.flow) if args.flow else None
    names = sorted({n for rs in rows.values() for n, _ in rs})
    unavailable = []

    def job(name):
        d = dst[name]
        if not (args.skip_existing and d.is_dir() and any(d.iterdir())):
            if name in idx.frames:
                copy_images(idx.frames[name], d, args.link)
            else:
                d.mkdir(parents=True, exist_ok=True)
                run_command(frames_command(idx.videos[name], d, args.fps, args.frame_height, ffmpeg=ffmpeg_binary()),
                            f"frames of {idx.videos[name]}")
        if flow_root is not None:
            copy_flow(flow_root, name, out, args.link, sources[name])
        return "done"

    todo = []
    for n in names:
        if n in idx.frames or n in idx.videos:
            todo.append(n)
        else:
            unavailable.append(n)
    _, errors = run_jobs(job, todo, args.workers, "clips", not args.no_progress, label=lambda n: f"clip {n!r}")
    if flow_root is None:
        print("warning: no --flow given; OUT/flow is empty, so train with data.modalities=[rgb] or add flow later")
    failed = {e.split("'")[1] for e in errors if e.startswith("clip '")}
    return {"unavailable": sorted(set(unavailable) | failed), "errors": errors,
            "meta": {"fold": args.fold, "fps": args.fps, "frame_height": args.frame_height,
                     "flow_source": str(flow_root) if flow_root else None}}
