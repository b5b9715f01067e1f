"""NVGesture (Molchanov et al. 2016): 25 driving-car hand gestures; RGB + depth + optical flow.

Official lists ``nvgesture_{train,test}_correct_cvpr2016_v2.lst`` (1,050 / 482), lines
``path:./Video_data/class_01/subject13_r0 depth:sk_depth:113:192 color:sk_color:113:192 ... label:1``;
a clip is named ``class_01_subject13_r0`` and its gesture spans frames ``[start, end)`` of the
``sk_color``/``sk_depth`` videos. Prepared layout: ``rgb/<name>/``, ``depth/<name>/`` (grayscale),
``flow/u/<name>/`` + ``flow/v/<name>/``, and ``train.csv``/``test.csv`` (``name,label`` with 0-based labels).

The NJUST protocol holds out 20% of train as validation (following Greedy): the default here.
Normalisation maps every modality to [-1, 1] (mean 0.5, std 0.5), the I3D convention the NVGesture code
uses. The papers' I3D backbones are not shipped; the configs use ResNet-18 per frame (documented).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Tuple

from ..base import DataError
from ..paths import contained
from .av import build_records
from .common import find_file, labels_from_tokens, read_split_file, resolve_path
from .frames import FlowReader, FrameReader, FrameTransform, frame_options
from .spec import COMMON_OPTIONS, FRAME_OPTIONS, LAYOUT_OPTIONS, Loaded, attach_prepare, paper_dataset

CLASSES = [f"class_{i:02d}" for i in range(1, 26)]
DEFAULTS = {**COMMON_OPTIONS, **FRAME_OPTIONS, **LAYOUT_OPTIONS, "frames": 8, "flow_augment": False}
HALF = (0.5, 0.5, 0.5)
TEMPLATES = {"rgb": ["rgb/{name}", "color/{name}", "sk_color/{name}"],
             "depth": ["depth/{name}", "sk_depth/{name}"],
             "flow": [("flow/u/{name}", "flow/v/{name}"), ("flow_u/{name}", "flow_v/{name}"),
                      ("flow/{name}/u", "flow/{name}/v")]}
LST = {"train": "nvgesture_train_correct_cvpr2016_v2.lst", "test": "nvgesture_test_correct_cvpr2016_v2.lst"}


def parse_lst(path: Path) -> List[dict]:
    """Rows of an official ``.lst`` file: name, 0-based label, the video folder and color/depth ranges."""
    out = []
    for ln, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        fields = dict(f.split(":", 1) for f in line.split() if ":" in f)
        if "path" not in fields or "label" not in fields:
            raise DataError(f"{path}: line {ln} is not an NVGesture list line (path:... label:...)")
        rel = fields["path"].lstrip("./")
        name = re.sub(r"^Video_data/", "", rel).replace("/", "_")
        rng = {}
        try:
            for key in ("color", "depth"):
                if key in fields:
                    _, s, e = fields[key].rsplit(":", 2)
                    rng[key] = (int(s), int(e))
            label = int(fields["label"]) - 1
        except ValueError:
            raise DataError(f"{path}: line {ln}: label or frame range is not an integer ({line[:80]!r})") from None
        if not 0 <= label < len(CLASSES):
            raise DataError(f"{path}: line {ln}: label {label + 1} is not in 1..{len(CLASSES)}")
        out.append({"name": name, "label": label, "dir": rel, "ranges": rng, "line": ln})
    return out


def split_rows(root: Path, opts: dict) -> Tuple[Dict[str, List[Tuple[str, int]]], Dict[str, str]]:
    rows: Dict[str, List[Tuple[str, int]]] = {}
    used = {}
    for split in ("train", "test"):
        p = resolve_path(root, opts.get(f"{split}_split")) or \
            find_file(root, [f"{split}.csv", f"{split}.txt", LST[split]])
        if p is None:
            raise DataError(f"nvgesture: no {split} split under {root} ({split}.csv or {LST[split]})")
        used[split] = str(p)
        if p.suffix == ".lst":
            rows[split] = [(r["name"], r["label"]) for r in parse_lst(p)]
        else:
            srows = read_split_file(p)
            rows[split] = list(zip([r.name for r in srows], labels_from_tokens(srows, CLASSES, str(p))))
    if opts.get("val") in ("auto", "file"):
        p = resolve_path(root, opts.get("val_split")) or find_file(root, ["val.csv", "val.txt"])
        if p is not None:
            srows = read_split_file(p)
            rows["val"] = list(zip([r.name for r in srows], labels_from_tokens(srows, CLASSES, str(p))))
            vn = {n for n, _ in rows["val"]}
            rows["train"] = [r for r in rows["train"] if r[0] not in vn]
            used["val"] = str(p)
    return rows, used


@paper_dataset("nvgesture", "NVGesture hand gestures: RGB + depth + optical-flow frames, 25 classes (1,050/482)",
               ("rgb", "depth", "flow"), DEFAULTS, [{"train": 1050, "test": 482}], default_val=0.2)
def load(root: Path, opts: dict) -> Loaded:
    rows, used = split_rows(root, opts)
    n, sampling = int(opts["frames"]), opts["frame_sampling"]
    base = frame_options(opts)
    rgb_t = FrameTransform(base.size, base.augment, base.scale, mean=HALF, std=HALF)
    flow_t = FrameTransform(base.size, bool(opts["flow_augment"]), base.scale, mean=HALF, std=HALF)
    readers = {"rgb": FrameReader("rgb", n, rgb_t, sampling),
               "depth": FrameReader("depth", n, rgb_t, sampling, color="L"),
               "flow": FlowReader("flow", n, flow_t, sampling)}
    records, layout = build_records("nvgesture", root, rows, TEMPLATES,
                                    {"rgb": "RGB frame folders", "depth": "depth frame folders",
                                     "flow": "flow folders"}, used)
    return Loaded(records, readers, CLASSES, {"split_files": used, "layout": layout})


def _add_arguments(p):
    p.add_argument("--flow", help="pre-computed optical flow: u/<name>/*.jpg and v/<name>/*.jpg; copied to OUT/flow/")


@attach_prepare("nvgesture", _add_arguments)
def prepare(args) -> dict:
    """Official NVGesture (lists + Video_data/*/sk_color.avi, sk_depth.avi) or frame folders -> canonical layout.

    Videos are cut to the gesture's ``[start, end)`` frames with ffmpeg (every frame kept: ``--fps 0``
    is implied for NVGesture, whose clips are short).
    """
    from .preprocess import copy_flow, copy_images, ffmpeg_binary, frames_command, run_command, run_jobs

    raw, out = Path(args.raw), Path(args.out)
    split_dir = Path(args.splits) if args.splits else raw
    lists = {}
    for split in ("train", "test"):
        p = find_file(split_dir, [LST[split]])
        if p is not None:
            lists[split] = [dict(r, source=f"{p} line {r['line']}") for r in parse_lst(p)]
        else:
            q = find_file(split_dir, [f"{split}.csv", f"{split}.txt"])
            if q is None:
                raise DataError(f"nvgesture: no {LST[split]} (or {split}.csv) under {split_dir}")
            srows = read_split_file(q)
            lists[split] = [{"name": r.name, "label": y, "dir": None, "ranges": {}, "source": f"{q} line {r.line}"}
                            for r, y in zip(srows, labels_from_tokens(srows, CLASSES, str(q)))]
    # names and folders come from the lists: refuse any that would leave RAW or OUT before writing anything
    paths = {}
    for r in (r for rs in lists.values() for r in rs):
        paths[r["name"]] = {
            "dst": {mod: contained(out / mod, r["name"], r["source"]) for mod in ("rgb", "depth")},
            "pre": {mod: contained(raw / mod, r["name"], r["source"]) for mod in ("rgb", "depth")},
            "dir": contained(raw, r["dir"], r["source"]) if r["dir"] else None}
    out.mkdir(parents=True, exist_ok=True)
    for split, rs in lists.items():
        (out / f"{split}.csv").write_text("".join(f"{r['name']},{r['label']}\n" for r in rs))
    flow_root = Path(args.flow) if args.flow else None
    items = [r for rs in lists.values() for r in rs]
    unavailable = []

    def job(r):
        name, where = r["name"], paths[r["name"]]
        for mod, video in (("rgb", "sk_color"), ("depth", "sk_depth")):
            dst = where["dst"][mod]
            if args.skip_existing and dst.is_dir() and any(dst.iterdir()):
                continue
            pre = where["pre"][mod]
            if pre.is_dir():
                copy_images(pre, dst, args.link)
                continue
            vid = where["dir"] / f"{video}.avi" if where["dir"] else None
            if vid is None or not vid.is_file():
                raise DataError(f"no {mod} frames ({pre}) and no video ({vid})")
            dst.mkdir(parents=True, exist_ok=True)
            rng = r["ranges"].get("color" if mod == "rgb" else "depth")
            run_command(frames_command(vid, dst, 0, args.frame_height, ffmpeg=ffmpeg_binary(), frame_range=rng),
                        f"{mod} frames of {vid}")
        if flow_root is not None:
            copy_flow(flow_root, name, out, args.link, r["source"])
        return "done"

    for r in items:
        has_frames = paths[r["name"]]["pre"]["rgb"].is_dir()
        has_video = paths[r["name"]]["dir"] is not None and paths[r["name"]]["dir"].is_dir()
        if not (has_frames or has_video):
            unavailable.append(r["name"])
    todo = [r for r in items if r["name"] not in set(unavailable)]
    _, errors = run_jobs(job, todo, args.workers, "clips", not args.no_progress, label=lambda r: f"clip {r['name']!r}")
    if flow_root is None:
        print("warning: no --flow given; OUT/flow is empty, so train with data.modalities=[rgb,depth] "
              "or add flow later")
    failed = {e.split("'")[1] for e in errors if e.startswith("clip '")}
    return {"unavailable": sorted(set(unavailable) | failed), "errors": errors,
            "meta": {"frame_height": args.frame_height, "flow_source": str(flow_root) if flow_root else None}}
