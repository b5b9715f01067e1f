"""The shared loader of the audio-visual clip datasets (CREMA-D, Kinetics-Sounds, VGGSound).

A clip is a folder of frames (``visual``) plus one audio file (``audio``). Each split's rows are
``(name, class id)``; the folder/file layout is found by trying the layouts of the papers' repositories
(see each dataset's templates) unless the user names them (``visual_dir`` / ``audio_dir`` options).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..base import DataError
from ..paths import contained
from .common import IMAGE_EXTS, VIDEO_EXTS, Record, is_pickle_path, load_array_file, pickle_refused, strip_media_ext
from .frames import FrameReader, frame_options
from .preprocess import audio_command, copy_images, ffmpeg_binary, frames_command, run_command, run_jobs, save_array
from .spec import Loaded, fill, resolve_template, user_templates
from .waveform import AudioReader, AudioRecipe, get_recipe, read_wav

AUDIO_FILE_EXTS = (".npy", ".pt", ".pkl", ".npz", ".wav")


def audio_reader(opts: dict, default_recipe: str) -> AudioReader:
    recipe = get_recipe(opts.get("audio") or default_recipe)
    frames = opts.get("audio_frames") or recipe.window_frames
    rc = opts.get("audio_random_crop")
    random_crop = (recipe.window_frames is not None) if rc is None else bool(rc)
    return AudioReader("audio", recipe, frames, random_crop)


def prepared_meta(root: Path) -> dict:
    """What ``mmbalance prepare`` recorded about this folder (``prepared.json``: audio recipe...), or {}."""
    import json

    p = root / "prepared.json"
    if not p.is_file():
        return {}
    try:
        m = json.loads(p.read_text())
        return m if isinstance(m, dict) else {}
    except ValueError:
        return {}


def prepared_recipe(root: Path) -> Optional[str]:
    r = prepared_meta(root).get("audio_recipe")
    return r.get("name") if isinstance(r, dict) else None


def build_records(dataset: str, root: Path, rows: Dict[str, List[Tuple[str, int]]],
                  templates: Dict[str, Sequence], what: Dict[str, str],
                  sources: Optional[Dict[str, Any]] = None) -> Tuple[Dict[str, List[Record]], dict]:
    """Records per split: for every modality the layout template matching the split's names is resolved
    once (:func:`..spec.resolve_template`) and filled in per sample. ``sources``: split -> the file its names
    were read from (named if a name would leave its folder)."""
    records: Dict[str, List[Record]] = {}
    layout: Dict[str, dict] = {}
    for split, items in rows.items():
        names = [n for n, _ in items]
        src = str((sources or {}).get(split) or f"the {split} split file of {dataset}")
        chosen = {m: resolve_template(root, t, names, split, what.get(m, m), dataset, source=src)
                  for m, t in templates.items()}
        layout[split] = chosen
        records[split] = [Record(n, y, {m: fill(root, t, n, split, src) for m, t in chosen.items()})
                          for n, y in items]
    return records, layout


def build_av(dataset: str, root: Path, opts: dict, rows: Dict[str, List[Tuple[str, int]]], class_names: Sequence[str],
             visual_templates: Sequence[str], audio_templates: Sequence[str], default_recipe: str,
             info: dict) -> Loaded:
    readers = {
        "audio": audio_reader(opts, prepared_recipe(root) or default_recipe),
        "visual": FrameReader("visual", opts["frames"], frame_options(opts), opts["frame_sampling"]),
    }
    templates = {"audio": user_templates(opts.get("audio_dir"), AUDIO_FILE_EXTS) + list(audio_templates),
                 "visual": user_templates(opts.get("visual_dir")) + list(visual_templates)}
    records, layout = build_records(dataset, root, rows, templates, {"audio": "audio files", "visual": "frame folders"},
                                    info.get("split_files"))
    return Loaded(records, readers, list(class_names), {**info, "layout": layout})


# ---------------------------------------------------------------------------------------------- prepare


@dataclass
class ClipSource:
    """Where the raw data of one clip is: a video, and/or a folder of frames, and/or an audio file."""

    name: str
    video: Optional[Path] = None
    frames: Optional[Path] = None
    audio: Optional[Path] = None
    source: str = "split file"  #: the data file the name was read from (named when the name is refused)


def clip_paths(out: Path, clip: ClipSource, visual_dir: str = "visual", audio_dir: str = "audio") -> Tuple[Path, Path]:
    """Where a clip's frames and audio array go; the name (read from a data file) must stay inside them."""
    return (contained(out / visual_dir, clip.name, clip.source),
            contained(out / audio_dir, f"{clip.name}.npy", clip.source))


def prepare_clip(clip: ClipSource, out: Path, recipe: AudioRecipe, fps: float = 1.0, height: Optional[int] = None,
                 link: bool = False, skip_existing: bool = False, visual_dir: str = "visual",
                 audio_dir: str = "audio", trust_pickle: bool = False) -> str:
    """Write ``out/visual/<name>/*.jpg`` and ``out/audio/<name>.npy`` for one clip; returns 'done'/'skipped'."""
    vdst, adst = clip_paths(out, clip, visual_dir, audio_dir)
    if skip_existing and adst.is_file() and vdst.is_dir() and any(vdst.iterdir()):
        return "skipped"
    if clip.frames is not None:
        copy_images(clip.frames, vdst, link)
    elif clip.video is not None:
        vdst.mkdir(parents=True, exist_ok=True)
        run_command(frames_command(clip.video, vdst, fps, height, ffmpeg=ffmpeg_binary()), f"frames of {clip.video}")
        if not any(vdst.iterdir()):
            raise DataError(f"ffmpeg wrote no frames for {clip.video}")
    else:
        raise DataError("no frames and no video")
    if clip.audio is not None and clip.audio.suffix.lower() in (".wav", ".flac"):
        x, sr = read_wav(clip.audio)
        save_array(adst, recipe.compute(x, sr).numpy())
    elif clip.audio is not None:
        arr = np.asarray(load_array_file(clip.audio, trust_pickle), dtype=np.float32)
        arr = arr.reshape(arr.shape[-2:]) if arr.ndim > 2 and int(np.prod(arr.shape[:-2])) == 1 else arr
        if arr.ndim != 2:
            raise DataError(f"{clip.audio}: expected a 2-D spectrogram/fbank, got shape {arr.shape}")
        save_array(adst, arr)
    elif clip.video is not None:
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "a.wav"
            run_command(audio_command(clip.video, wav, recipe.sample_rate or 16000, ffmpeg_binary()),
                        f"audio of {clip.video}")
            x, sr = read_wav(wav)
            save_array(adst, recipe.compute(x, sr).numpy())
    else:
        raise DataError("no audio and no video")
    return "done"


def prepare_av_clips(clips: List[ClipSource], out: Path, args, recipe: AudioRecipe) -> Tuple[List[str], List[str]]:
    """Prepare every clip in parallel; returns (names without any raw data, error messages naming clips)."""
    unavailable = [c.name for c in clips if c.video is None and (c.frames is None or c.audio is None)]
    todo = [c for c in clips if c.name not in set(unavailable)]
    if any(c.frames is None or c.audio is None for c in todo):
        ffmpeg_binary()  # fail once, up front, if videos must be decoded and there is no ffmpeg

    trust = bool(getattr(args, "trust_pickle", False))

    def job(c):
        return prepare_clip(c, out, recipe, args.fps, args.frame_height, args.link, args.skip_existing,
                            trust_pickle=trust)

    _, errors = run_jobs(job, todo, args.workers, "clips", not args.no_progress, label=lambda c: f"clip {c.name!r}")
    return unavailable, errors


@dataclass
class RawIndex:
    """What a raw folder holds, by clip name: videos, audio files (WAV preferred over arrays), frame folders."""

    videos: Dict[str, Path]
    audio: Dict[str, Path]
    frames: Dict[str, Path]


def index_raw(raw: Path, audio_exts: Sequence[str] = (".wav", ".flac", ".npy", ".pt", ".pkl", ".npz")) -> RawIndex:
    """Walk ``raw`` once. OGM-GE names VGGSound frame folders ``<id>.mp4``: the extension is dropped."""
    videos: Dict[str, Path] = {}
    audio: Dict[str, Path] = {}
    frames: Dict[str, Path] = {}
    rank = {e: i for i, e in enumerate(audio_exts)}
    for dirpath, dirnames, files in os.walk(raw):
        dirnames.sort()
        p = Path(dirpath)
        if any(f.lower().endswith(IMAGE_EXTS) for f in files):
            frames.setdefault(strip_media_ext(p.name), p)
        for f in sorted(files):
            q = p / f
            ext = q.suffix.lower()
            if ext in VIDEO_EXTS:
                videos.setdefault(q.stem, q)
            elif ext in rank:
                old = audio.get(q.stem)
                if old is None or rank[ext] < rank[old.suffix.lower()]:
                    audio[q.stem] = q
    return RawIndex(videos, audio, frames)


def write_split_csv(path: Path, rows: Sequence[Tuple[str, str]]) -> None:
    """The canonical split file: ``name,label`` per line, no header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{n},{y}\n" for n, y in rows))


def prepare_av_dataset(args, dataset: str, split_rows: Dict[str, List[Tuple[str, str]]], split_files: Dict[str, str],
                       default_recipe: str, meta: Optional[dict] = None,
                       extra_files: Optional[Dict[str, bytes]] = None) -> dict:
    """Shared ``prepare`` of the audio-visual sets: canonical split files, frames, audio arrays.

    ``split_rows``: split -> [(name, label token)]; ``split_files``: split -> canonical file name in ``out``
    (splits not in it are not written: the caller passes its own split file in ``extra_files``, name ->
    bytes, written once the names are checked). Nothing is written before every clip name is known to stay
    inside ``out``. Returns the summary ``mmbalance prepare`` turns into the manifest.
    """
    raw, out = Path(args.raw), Path(args.out)
    sources: Dict[str, str] = {}
    for split, rows in split_rows.items():
        for n, _ in rows:
            sources.setdefault(n, _split_source(meta, dataset, split))
    idx = index_raw(raw)
    clips = [ClipSource(n, idx.videos.get(n), idx.frames.get(n), idx.audio.get(n), sources[n]) for n in sorted(sources)]
    # refuse, before anything is written, names that would leave OUT and pickles without the opt-in
    for c in clips:
        clip_paths(out, c)
    if not getattr(args, "trust_pickle", False):
        first = next((c.audio for c in clips if c.audio is not None and is_pickle_path(c.audio)
                      and (c.frames is not None or c.video is not None)), None)
        if first is not None:
            raise pickle_refused(first)
    recipe = get_recipe(args.audio or default_recipe)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (extra_files or {}).items():
        (out / name).write_bytes(data)
    for split, rows in split_rows.items():
        if split in split_files:
            write_split_csv(out / split_files[split], rows)
    unavailable, errors = prepare_av_clips(clips, out, args, recipe)
    failed = {e.split("'")[1] for e in errors if e.startswith("clip '")}
    return {
        "unavailable": sorted(set(unavailable) | failed),
        "errors": errors,
        "meta": {"audio_recipe": recipe.describe(), "fps": args.fps, "frame_height": args.frame_height,
                 "split_files": split_files, **(meta or {})},
    }


def _split_source(meta: Optional[dict], dataset: str, split: str) -> str:
    src = (meta or {}).get("split_source")
    if isinstance(src, dict):
        return str(src.get(split) or f"the {split} split file of {dataset}")
    return str(src) if src else f"the {split} split file of {dataset}"


__all__ = ["build_av", "build_records", "prepared_meta", "audio_reader", "AUDIO_FILE_EXTS", "ClipSource",
           "clip_paths", "prepare_clip", "prepare_av_clips", "RawIndex", "index_raw", "write_split_csv", "prepare_av_dataset"]
