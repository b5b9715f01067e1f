"""One description per paper dataset (:class:`PaperDataset`), and the code every loader shares.

A dataset module defines a ``load(root, opts) -> Loaded`` function (records per split, one reader per
modality, class names) and registers it with :func:`paper_dataset`; this module turns it into the
``DATASETS`` factory (option checking, modality selection, missing-file policy, validation split, optional
cache) and exposes the description to ``mmbalance prepare`` and ``mmbalance verify``.
"""
from __future__ import annotations

import contextlib
import contextvars
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ...config import DataConfig
from ...registry import DATASETS
from ..base import DataError, Splits
from ..paths import contained
from ..validate import require_two_classes
from .common import (FileSource, Reader, Record, dataset_options, drop_or_fail, holdout_size, is_pickle_path,
                     pickle_refused, require_root, selected_modalities, stratified_holdout)

#: options every file-based audio-visual / frames dataset accepts (documented in docs/datasets.md)
COMMON_OPTIONS: Dict[str, Any] = {
    "val": "auto",  # auto (the dataset's val file if any, else stratified) | file | stratified
    "val_size": None,  # count or fraction of train for the stratified hold-out (None: dataset default)
    "missing": "error",  # error | skip: samples whose files are missing
    "cache": False,  # pre-decode into a uint8/float16 memory-mapped cache (see cache.py)
    "cache_dir": None,  # default <root>/cache
    "cache_frames": 10,  # frames kept per clip in the cache (evenly spaced if a clip has more)
    "cache_size": 256,  # short side of cached frames (aspect ratio of the first clip kept)
}
FRAME_OPTIONS: Dict[str, Any] = {
    "frames": 2,  # T frames per clip (one per segment)
    "frame_sampling": "segments",  # segments | random | first
    "image_size": 224,
    "augment": True,  # RandomResizedCrop + flip in training (False: Resize only)
    "crop_scale": [0.08, 1.0],
}
AUDIO_OPTIONS: Dict[str, Any] = {
    "audio": None,  # recipe for .wav files (ogm-ge, bss-cremad, bss-ks, ogm-vggsound, ks-fbank); None: default
    "audio_frames": None,  # fixed number of time steps (crop / zero-pad); None: recipe default or natural
    "audio_random_crop": None,  # random window start in training (None: recipe default)
}
LAYOUT_OPTIONS: Dict[str, Any] = {
    "train_split": None, "val_split": None, "test_split": None,  # split files (relative to root or absolute)
}


@dataclass
class Loaded:
    """What a dataset's ``load`` returns: records per split (``train``, ``test``, optionally ``val``)."""

    records: Dict[str, List[Record]]
    readers: Dict[str, Reader]
    class_names: List[str]
    info: Dict[str, Any] = field(default_factory=dict)  # e.g. which split files / layout were used


@dataclass
class PaperDataset:
    name: str
    doc: str
    modalities: Tuple[str, ...]
    defaults: Dict[str, Any]
    load: Optional[Callable[[Path, Dict[str, Any]], Any]]
    reference_counts: List[Dict[str, int]]  # the papers' complete split sizes (alternatives)
    default_val: Any = 0.1  # count or fraction of train held out when there is no val file
    prepare: Optional[Callable] = None  # prepare(args) -> summary dict
    add_prepare_arguments: Optional[Callable] = None
    build: Optional[Callable[[DataConfig], Splits]] = None  # in-memory datasets build their splits directly

    def options(self, cfg: DataConfig) -> Dict[str, Any]:
        return dataset_options(self.name, cfg, self.defaults)


PAPER_DATASETS: Dict[str, PaperDataset] = {}


def paper_dataset(name: str, doc: str, modalities: Sequence[str], defaults: Dict[str, Any],
                  reference_counts, default_val: Any = 0.1):
    """Decorator on ``load(root, opts) -> Loaded`` (or ``-> Splits`` for in-memory sets)."""

    def deco(load):
        refs = [reference_counts] if isinstance(reference_counts, dict) else list(reference_counts)
        spec = PaperDataset(name, doc, tuple(modalities), dict(defaults), load, [dict(r) for r in refs], default_val)
        PAPER_DATASETS[name] = spec

        def factory(cfg: DataConfig) -> Splits:
            return build_splits(spec, cfg)

        factory.__doc__ = doc
        DATASETS.register(name, doc)(factory)
        return load

    return deco


def in_memory_dataset(name: str, doc: str, modalities: Sequence[str], defaults: Dict[str, Any], reference_counts):
    """Decorator on ``build(cfg) -> Splits`` for datasets held in memory (MOSI)."""

    def deco(build):
        refs = [reference_counts] if isinstance(reference_counts, dict) else list(reference_counts)
        spec = PaperDataset(name, doc, tuple(modalities), dict(defaults), None, [dict(r) for r in refs], build=build)
        PAPER_DATASETS[name] = spec
        DATASETS.register(name, doc)(build)
        return build

    return deco


def attach_prepare(name: str, add_arguments: Optional[Callable] = None):
    """Decorator: ``prepare(args) -> summary`` for dataset ``name`` (used by ``mmbalance prepare``)."""

    def deco(fn):
        PAPER_DATASETS[name].prepare = fn
        PAPER_DATASETS[name].add_prepare_arguments = add_arguments
        return fn

    return deco


def val_count(spec: PaperDataset, cfg: DataConfig, opts: Dict[str, Any], n_train: int) -> int:
    """Size of the stratified hold-out: ``val_size`` option, else a user-set ``data.val_fraction``, else the
    dataset's documented default."""
    if opts.get("val_size") is not None:
        return holdout_size(n_train, opts["val_size"], 0.1)
    if cfg.val_fraction != DataConfig().val_fraction:
        return holdout_size(n_train, float(cfg.val_fraction), 0.1)
    return holdout_size(n_train, spec.default_val, 0.1)


def build_splits(spec: PaperDataset, cfg: DataConfig) -> Splits:
    if spec.build is not None:
        return spec.build(cfg)
    opts = spec.options(cfg)
    root = require_root(cfg, spec.name)
    loaded = spec.load(root, opts)
    if isinstance(loaded, Splits):  # in-memory datasets (MOSI) do their own selection
        return loaded
    return finish(spec, cfg, opts, loaded, root)


def finish(spec: PaperDataset, cfg: DataConfig, opts: Dict[str, Any], loaded: Loaded, root: Path) -> Splits:
    name = spec.name
    mods = selected_modalities(cfg, list(loaded.readers), name)
    readers = {m: loaded.readers[m] for m in mods}
    trust_pickles(loaded.records, readers, bool(cfg.trust_pickle))
    recs = {k: drop_or_fail(name, v, readers, opts.get("missing", "error"), k) for k, v in loaded.records.items()}
    if opts.get("val") not in ("auto", "file", "stratified"):
        raise DataError(f"dataset {name!r}: option val={opts.get('val')!r} must be auto, file or stratified")
    if "val" not in recs or opts.get("val") == "stratified":
        if opts.get("val") == "file":
            raise DataError(f"dataset {name!r}: val=file but no validation split file was found "
                            f"(set data.options.val_split=PATH)")
        train = recs["train"]
        n_val = val_count(spec, cfg, opts, len(train))
        try:
            tr, va = stratified_holdout([r.label for r in train], n_val, cfg.split_seed)
        except DataError as e:
            raise DataError(f"dataset {name!r}: {e}; set data.options.val_size (a count or a fraction)") from None
        recs["train"], recs["val"] = [train[i] for i in tr], [train[i] for i in va]
    for k in ("train", "val", "test"):
        if not recs.get(k):
            raise DataError(f"dataset {name!r}: split {k!r} is empty")
    require_two_classes([r.label for r in recs["train"]], f"{name}/train")
    sources = {k: FileSource(f"{name}/{k}", recs[k], readers, loaded.class_names) for k in ("train", "val", "test")}
    if opts.get("cache"):
        from .cache import cached_source

        cache_dir = Path(opts["cache_dir"]).expanduser() if opts.get("cache_dir") else root / "cache"
        sources = {k: cached_source(s, cache_dir, opts) for k, s in sources.items()}
    return Splits(**sources)


def trust_pickles(records: Dict[str, List[Record]], readers: Dict[str, Reader], trust: bool) -> None:
    """Let ``readers`` read ``.pkl`` files only if ``trust`` (``data.trust_pickle``); without it, refuse now,
    naming the first such file, rather than in the middle of training."""
    for reader in readers.values():
        reader.trust_pickle = trust
    if trust:
        return
    for recs in records.values():
        for r in recs:
            for m in readers:
                p = r.paths.get(m)
                for q in (p if isinstance(p, (list, tuple)) else [p]):
                    if q is not None and is_pickle_path(q):
                        raise pickle_refused(Path(q))


# ---------------------------------------------------------------------------------------------- layout helpers
_LENIENT = contextvars.ContextVar("mmbalance_lenient_layout", default=False)


@contextlib.contextmanager
def lenient_layout():
    """Within this block a layout nothing matches falls back to the first (canonical) template instead of
    failing, so that ``prepare``/``verify`` can count and name the missing files one by one."""
    token = _LENIENT.set(True)
    try:
        yield
    finally:
        _LENIENT.reset(token)


def resolve_template(root: Path, templates: Sequence[Any], names: Sequence[str], split: str, what: str,
                     dataset: str, probe: int = 25, source: str = "split file"):
    """Pick the layout template that matches the most of the first ``probe`` sample names.

    A template is a string (``"visual/{name}"``, ``"audio/{split}_fbank/{name}.npy"``) or a tuple of
    strings (optical flow u/v folders). Returns the template; fails listing what was tried. Names come from
    ``source`` (a data file): one that would leave its folder is refused before anything is looked up.
    """
    sample = list(names[:probe])
    best, best_hits = None, 0
    for t in templates:
        parts = t if isinstance(t, tuple) else (t,)
        hits = sum(all(os.path.exists(template_path(root, p, n, split, source)) for p in parts) for n in sample)
        if hits > best_hits:
            best, best_hits = t, hits
    if best is None and _LENIENT.get():
        return templates[0]
    if best is None:
        tried = ", ".join(str(t if isinstance(t, str) else " + ".join(t)) for t in templates)
        first = sample[0] if sample else "?"
        raise DataError(f"dataset {dataset!r}: cannot find the {what} of split {split!r} under {root} "
                        f"(sample {first!r}; layouts tried: {tried}). See docs/datasets.md or set the "
                        f"dataset's *_dir option.")
    return best


def template_path(root: Path, template: str, name: str, split: str, source: str = "split file") -> Path:
    """``root / template`` filled with ``name``; the name (from a data file) must stay inside the folder the
    template puts it in (``visual/{name}`` -> below ``root/visual``), see :func:`..paths.contained`."""
    head, _, tail = template.partition("{name}")
    folder = os.path.dirname(head.format(split=split))
    rest = head.format(split=split)[len(folder):].lstrip("/") + name + tail.format(split=split)
    return contained(root / folder, rest, source)


def fill(root: Path, template, name: str, split: str, source: str = "split file"):
    if isinstance(template, tuple):
        return tuple(str(template_path(root, p, name, split, source)) for p in template)
    return str(template_path(root, template, name, split, source))


def user_templates(opt: Optional[str], exts: Sequence[str] = ("",)) -> List[str]:
    """Templates from a user's ``*_dir`` option: ``{dir}/{name}<ext>`` (``{split}`` allowed in the dir)."""
    if not opt:
        return []
    d = str(opt).rstrip("/")
    return [f"{d}/{{name}}{e}" for e in exts]


__all__ = ["COMMON_OPTIONS", "FRAME_OPTIONS", "AUDIO_OPTIONS", "LAYOUT_OPTIONS", "Loaded", "PaperDataset",
           "PAPER_DATASETS", "paper_dataset", "in_memory_dataset", "attach_prepare", "build_splits", "finish",
           "resolve_template",
           "fill", "template_path", "user_templates", "val_count", "lenient_layout", "trust_pickles"]
