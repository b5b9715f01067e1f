"""Building blocks of ``mmbalance prepare``: ffmpeg commands, parallel jobs, file copies, the manifest.

ffmpeg is an optional dependency (Debian/Ubuntu ``apt-get install ffmpeg``, conda-forge ``ffmpeg``); it
is needed only to turn videos into frames / WAV. ``MMBALANCE_FFMPEG`` may point to a binary.

Jobs run in a thread pool (:func:`run_jobs`): the heavy parts release the GIL (ffmpeg runs as a
subprocess, torch's STFT and Pillow's codecs run in C), so threads parallelise without the start-up
cost and pickling of process pools.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..base import DataError
from .common import IMAGE_EXTS, sha256_file

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1


# ---------------------------------------------------------------------------------------------- ffmpeg
def ffmpeg_binary() -> str:
    """Path of the ffmpeg executable, or a DataError explaining how to get it (or avoid needing it)."""
    env = os.environ.get("MMBALANCE_FFMPEG")
    if env:
        if not (os.path.isfile(env) and os.access(env, os.X_OK)):
            raise DataError(f"MMBALANCE_FFMPEG={env!r} is not an executable file")
        return env
    found = shutil.which("ffmpeg")
    if not found:
        raise DataError("ffmpeg is needed to extract frames/audio from videos but was not found on PATH. "
                        "Install it (Debian/Ubuntu: `sudo apt-get install ffmpeg`; conda: "
                        "`conda install -c conda-forge ffmpeg`), set MMBALANCE_FFMPEG=/path/to/ffmpeg, or "
                        "give `prepare` pre-extracted frame folders and WAV files instead of videos "
                        "(see docs/datasets.md).")
    return found


def frames_command(video: os.PathLike, out_dir: os.PathLike, fps: float = 1.0, height: Optional[int] = None,
                   quality: int = 2, ffmpeg: str = "ffmpeg", frame_range: Optional[Tuple[int, int]] = None,
                   pattern: str = "%05d.jpg") -> List[str]:
    """ffmpeg command extracting JPEG frames: ``fps`` frames per second (None/0: every frame), optionally
    only decoded frames ``[start, end)`` (``frame_range``, NVGesture), scaled to ``height`` px (width
    keeps the aspect ratio, rounded to even). Files are ``out_dir/00001.jpg``, ``00002.jpg``, ...
    """
    filters = []
    if frame_range is not None:
        s, e = int(frame_range[0]), int(frame_range[1])
        if not 0 <= s < e:
            raise DataError(f"bad frame range {frame_range} for {video}")
        filters.append(f"select=between(n\\,{s}\\,{e - 1})")
    if fps:
        filters.append(f"fps={fps:g}")
    if height:
        filters.append(f"scale=-2:{int(height)}")
    cmd = [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video)]
    if filters:
        cmd += ["-vf", ",".join(filters)]
    if frame_range is not None and not fps:
        cmd += ["-vsync", "vfr"]  # keep only the selected frames, no duplicates
    cmd += ["-q:v", str(int(quality)), "-start_number", "1", str(Path(out_dir) / pattern)]
    return cmd


def audio_command(video: os.PathLike, out_wav: os.PathLike, sample_rate: int = 16000,
                  ffmpeg: str = "ffmpeg") -> List[str]:
    """ffmpeg command extracting the audio track as mono 16-bit PCM WAV at ``sample_rate``."""
    return [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(video), "-vn", "-ac", "1",
            "-ar", str(int(sample_rate)), "-acodec", "pcm_s16le", str(out_wav)]


def run_command(cmd: Sequence[str], what: str) -> None:
    try:
        res = subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    except FileNotFoundError:
        raise DataError(f"{what}: cannot run {cmd[0]!r} (not installed?)") from None
    if res.returncode != 0:
        tail = (res.stderr or "").strip().splitlines()[-3:]
        raise DataError(f"{what}: `{' '.join(cmd[:1] + ['...'])}` failed (exit {res.returncode}): {' | '.join(tail)}")


# ---------------------------------------------------------------------------------------------- jobs
def run_jobs(fn: Callable[[Any], Any], items: Sequence[Any], workers: int = 1, desc: str = "",
             progress: bool = True, label: Callable[[Any], str] = str) -> Tuple[List[Any], List[str]]:
    """Run ``fn(item)`` for every item (thread pool of ``workers``); returns (results, error messages).

    An item that raises does not stop the others; its error message names it (``label(item)``).
    """
    from tqdm import tqdm

    results: List[Any] = [None] * len(items)
    errors: List[str] = []
    bar = tqdm(total=len(items), desc=desc, disable=not progress, unit="item", dynamic_ncols=True)
    try:
        if workers <= 1:
            for i, it in enumerate(items):
                try:
                    results[i] = fn(it)
                except Exception as e:  # noqa: BLE001 - collected and reported by name
                    errors.append(f"{label(it)}: {e}")
                bar.update(1)
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                futs = {pool.submit(fn, it): i for i, it in enumerate(items)}
                for f in as_completed(futs):
                    i = futs[f]
                    try:
                        results[i] = f.result()
                    except Exception as e:  # noqa: BLE001
                        errors.append(f"{label(items[i])}: {e}")
                    bar.update(1)
    finally:
        bar.close()
    return results, sorted(errors)


# ---------------------------------------------------------------------------------------------- files
def copy_images(src_dir: Path, dst_dir: Path, link: bool = False) -> int:
    """Copy (or hard-link, falling back to copy) the image files of ``src_dir`` into ``dst_dir``."""
    src_dir, dst_dir = Path(src_dir), Path(dst_dir)
    if not src_dir.is_dir():
        raise DataError(f"missing frame folder {src_dir}")
    files = [p for p in sorted(src_dir.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_EXTS]
    if not files:
        raise DataError(f"frame folder {src_dir} has no images")
    dst_dir.mkdir(parents=True, exist_ok=True)
    for p in files:
        q = dst_dir / p.name
        if q.exists():
            q.unlink()
        if link:
            try:
                os.link(p, q)
                continue
            except OSError:
                pass
        shutil.copyfile(p, q)
    return len(files)


def copy_flow(flow_root: Path, name: str, out: Path, link: bool = False, source: str = "split file") -> None:
    """Copy pre-computed optical flow of clip ``name`` into ``out/flow/{u,v}/name``. Accepts both common
    layouts: ``flow_root/{u,v}/name`` and ``flow_root/name/{u,v}``. ``name`` comes from ``source`` (a data
    file) and must stay inside those folders."""
    from ..paths import contained

    for comp in ("u", "v"):
        src = contained(flow_root / comp, name, source)
        if not src.is_dir():
            src = contained(flow_root, f"{name}/{comp}", source)
        copy_images(src, contained(out / "flow" / comp, name, source), link)


def copy_file(src: Path, dst: Path, link: bool = False) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copyfile(src, dst)


def save_array(path: Path, arr) -> None:
    """Write a float32 ``.npy`` atomically (a killed run leaves no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, np.ascontiguousarray(np.asarray(arr, dtype=np.float32)))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------- manifest
def list_tree(root: Path, exclude: Iterable[str] = (MANIFEST, "cache")) -> List[str]:
    root = Path(root)
    skip = set(exclude)
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in skip]
        for f in filenames:
            rel = f if rel_dir == "." else os.path.join(rel_dir, f)
            if rel in skip or f.endswith(".tmp.npy"):
                continue
            out.append(rel.replace(os.sep, "/"))
    return sorted(out)


def write_manifest(root: Path, dataset: str, counts: Dict[str, int], meta: Dict[str, Any], workers: int = 1,
                   progress: bool = True, unavailable: Optional[Dict[str, List[str]]] = None) -> Dict[str, Any]:
    """Hash every file under ``root`` and write ``root/manifest.json``; returns the manifest."""
    from ... import __version__

    root = Path(root)
    files = list_tree(root)

    def entry(rel):
        p = root / rel
        return rel, {"size": p.stat().st_size, "sha256": sha256_file(p)}

    res, errors = run_jobs(entry, files, workers, "checksums", progress)
    if errors:
        raise DataError("cannot hash: " + "; ".join(errors[:5]))
    manifest = {
        "format": MANIFEST_FORMAT,
        "dataset": dataset,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "mmbalance_version": __version__,
        "counts": dict(counts),
        "unavailable": {k: sorted(v) for k, v in (unavailable or {}).items() if v},
        "meta": meta,
        "files": dict(res),
    }
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False))
    os.replace(tmp, root / MANIFEST)
    return manifest


def read_manifest(root: Path) -> Dict[str, Any]:
    p = Path(root) / MANIFEST
    if not p.is_file():
        raise DataError(f"{root}: no {MANIFEST} (prepare the dataset with `mmbalance prepare`, or verify "
                        f"without one using --no-manifest)")
    try:
        m = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{p}: corrupt manifest: {e}") from None
    if not isinstance(m, dict) or not isinstance(m.get("files"), dict):
        raise DataError(f"{p}: not an mmbalance manifest")
    return m


def check_files(root: Path, manifest: Dict[str, Any], hashes: bool = True, workers: int = 1,
                progress: bool = True) -> Tuple[List[str], List[str]]:
    """Compare the tree with the manifest: (missing files, corrupt files) as relative paths."""
    from ..paths import contained

    root = Path(root)
    items = sorted(manifest["files"].items())
    # entries are names read from a file: every one must stay under root before any file is looked at
    source = str(root / MANIFEST)
    paths = {rel: contained(root, rel, source) for rel, _ in items}

    def check(item):
        rel, info = item
        p = paths[rel]
        if not isinstance(info, dict):
            return "corrupt"
        if not p.is_file():
            return "missing"
        if p.stat().st_size != info.get("size"):
            return "corrupt"
        if hashes and sha256_file(p) != info.get("sha256"):
            return "corrupt"
        return "ok"

    res, errors = run_jobs(check, items, workers, "verify", progress, label=lambda it: it[0])
    missing = [rel for (rel, _), r in zip(items, res) if r == "missing"]
    corrupt = [rel for (rel, _), r in zip(items, res) if r == "corrupt"]
    corrupt += [e.split(":")[0] for e in errors]
    return missing, sorted(corrupt)


__all__ = ["MANIFEST", "ffmpeg_binary", "frames_command", "audio_command", "run_command", "run_jobs", "copy_images",
           "copy_flow",
           "copy_file", "save_array", "list_tree", "write_manifest", "read_manifest", "check_files"]
