"""``mmbalance verify DATASET --root DIR``: check a prepared dataset and name every problem.

Checks, in order:

1. the manifest (``manifest.json`` from ``mmbalance prepare``): every file present, with the recorded size
   and SHA-256 (``--quick``: sizes only) -- a missing or corrupt file is reported by path and by sample;
2. the split files as the loader reads them: every sample's files exist (samples recorded as unavailable
   at prepare time are listed as known gaps, not errors);
3. counts per split against the manifest, and against the papers' complete split (a difference is a note,
   or an error with ``--strict``);
4. optionally (``--decode N``) decoding N samples per split through the loader, and every image of their
   frame folders (all samples with ``--decode -1``).

Exit code 0 when nothing is wrong, 1 otherwise. Works without a manifest (``--no-manifest``: steps 2-4).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

from .base import DataError


def add_arguments(p) -> None:
    from .papers import PAPER_DATASETS

    p.add_argument("dataset", choices=sorted(PAPER_DATASETS), help="paper dataset")
    p.add_argument("--root", required=True, help="the prepared folder (data.root)")
    p.add_argument("--quick", action="store_true", help="compare file sizes only (no SHA-256)")
    p.add_argument("--no-manifest", action="store_true", help="skip the manifest (e.g. a folder you laid out yourself)")
    p.add_argument("--decode", type=int, default=0, metavar="N", help="also decode N samples per split (-1: all)")
    p.add_argument("--strict", action="store_true", help="counts that differ from the papers' split are errors")
    p.add_argument("--workers", type=int, default=1, help="parallel hashing threads")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option as in data.options (e.g. -o audio=ks-fbank)")
    p.add_argument("--max-report", type=int, default=50, help="problems listed per kind (default 50)")
    from ..cli import add_trust_pickle_argument

    add_trust_pickle_argument(p)


def _options(spec, items: List[str]) -> dict:
    import yaml

    from ..config import DataConfig

    opts = {}
    for it in items:
        if "=" not in it:
            raise DataError(f"-o {it!r} is not KEY=VALUE")
        k, v = it.split("=", 1)
        opts[k.strip()] = yaml.safe_load(v)
    return spec.options(DataConfig(name=spec.name, options=opts))


def main(args) -> int:
    from ..config import DataConfig
    from .papers import PAPER_DATASETS
    from .papers.preprocess import check_files, read_manifest
    from .papers.spec import lenient_layout

    spec = PAPER_DATASETS[args.dataset]
    root = Path(args.root).expanduser()
    if not root.is_dir():
        raise DataError(f"--root {args.root}: not a folder")
    problems: List[str] = []
    notes: List[str] = []
    limit = max(1, args.max_report)
    manifest = None
    if not args.no_manifest:
        manifest = read_manifest(root)
        if manifest.get("dataset") != args.dataset:
            problems.append(f"manifest is for dataset {manifest.get('dataset')!r}, not {args.dataset!r}")
        missing, corrupt = check_files(root, manifest, hashes=not args.quick, workers=args.workers,
                                       progress=not args.no_progress)
        owners = {}
        try:
            owners = _file_owners(spec, root)
        except DataError:
            pass
        for kind, rels in (("missing", missing), ("corrupt", corrupt)):
            for rel in rels[:limit]:
                who = _owner(owners, root / rel)
                problems.append(f"{kind} file: {rel}" + (f" (sample {who!r})" if who else ""))
            if len(rels) > limit:
                problems.append(f"... and {len(rels) - limit} more {kind} files")
    opts = _options(spec, args.option)
    counts: Dict[str, int] = {}
    try:
        if spec.build is not None:
            cfg = DataConfig(name=spec.name, root=str(root), options={k: v for k, v in opts.items()},
                             trust_pickle=bool(args.trust_pickle))
            splits = spec.build(cfg)
            counts = {k: len(splits[k]) for k in ("train", "val", "test")}
            sources = {k: splits[k] for k in counts}
        else:
            with lenient_layout():
                loaded = spec.load(root, opts)
            for reader in loaded.readers.values():  # decoding a .pkl needs --trust-pickle (reported per sample)
                reader.trust_pickle = bool(args.trust_pickle)
            known = {k: set(v) for k, v in (manifest or {}).get("unavailable", {}).items()}
            sources = {}
            from .papers.common import FileSource

            for split, recs in loaded.records.items():
                ok, gaps, bad = [], [], []
                for i, r in enumerate(recs):
                    msg = next((f"{m}: {e}" for m, rd in loaded.readers.items() for e in [rd.exists(r)] if e), None)
                    if msg is None:
                        ok.append(r)
                    elif r.name in known.get(split, set()):
                        gaps.append(r.name)
                    else:
                        bad.append(f"split {split!r}, sample {i} ({r.name!r}): {msg}")
                problems += bad[:limit]
                if len(bad) > limit:
                    problems.append(f"... and {len(bad) - limit} more samples with missing files in {split!r}")
                if gaps:
                    notes.append(f"split {split!r}: {len(gaps)} samples were unavailable when prepared "
                                 f"(e.g. {gaps[0]!r})")
                counts[split] = len(ok)
                sources[split] = FileSource(f"{spec.name}/{split}", ok, loaded.readers, loaded.class_names)
    except DataError as e:
        problems.append(str(e))
        sources = {}
    if manifest is not None and counts:
        for k, n in manifest.get("counts", {}).items():
            if k in counts and counts[k] != n:
                problems.append(f"split {k!r}: {counts[k]} samples available, the manifest recorded {n}")
            elif k not in counts:
                problems.append(f"split {k!r} is in the manifest but not found by the loader")
    if counts:
        match = [r for r in spec.reference_counts if all(counts.get(k) == v for k, v in r.items())]
        if match:
            notes.append("complete: counts match the papers' split (" +
                         ", ".join(f"{k} {v}" for k, v in match[0].items()) + ")")
        else:
            refs = " or ".join("/".join(f"{k} {v}" for k, v in r.items()) for r in spec.reference_counts)
            msg = f"counts differ from the papers' complete split ({refs})"
            (problems if args.strict else notes).append(msg)
    if args.decode and sources:
        for split, src in sources.items():
            n = len(src) if args.decode < 0 else min(args.decode, len(src))
            if hasattr(src, "set_train"):
                src.set_train(False)
            bad = 0
            for i in range(n):
                try:
                    for m in src.modalities:
                        src.load(i, m) if hasattr(src, "load") else src[i]
                    _decode_every_frame(src, i)
                except DataError as e:
                    bad += 1
                    if bad <= limit:
                        problems.append(f"cannot decode: {e}")
            if n:
                notes.append(f"decoded {n} samples of {split!r}")
    print(f"verify {args.dataset} at {root}")
    for k, n in counts.items():
        print(f"  {k:8s} {n:7d} samples")
    for n in notes:
        print(f"  note: {n}")
    for p in problems:
        print(f"  PROBLEM: {p}")
    if problems:
        print(f"{len(problems)} problem(s) found")
        return 1
    print("OK")
    return 0


def _decode_every_frame(src, i: int) -> None:
    """Decode every image of a sample's frame folders, not only the frames the loader picks."""
    from .papers.frames import decode_image, list_frames

    readers = getattr(src, "readers", {})
    rec = src.records[i] if hasattr(src, "records") else None
    for m, reader in readers.items():
        if reader.kind not in ("frames", "flow"):
            continue
        folders = rec.paths[m] if reader.kind == "flow" else (rec.paths[m],)
        for folder in folders:
            for f in list_frames(folder):
                try:
                    decode_image(Path(folder) / f, "L")
                except DataError as e:
                    raise DataError(f"{src.name}: sample {i} ({rec.name!r}), modality {m!r}: {e}") from None


def _file_owners(spec, root: Path) -> Dict[str, str]:
    """Absolute path of every sample's file or folder -> sample name (to name the sample of a bad file)."""
    if spec.build is not None:
        return {}
    from .papers.spec import lenient_layout

    with lenient_layout():
        loaded = spec.load(root, dict(spec.defaults))
    owners = {}
    for recs in loaded.records.values():
        for r in recs:
            for p in r.paths.values():
                for q in (p if isinstance(p, (tuple, list)) else [p]):
                    if isinstance(q, str):
                        owners[os.path.abspath(q)] = r.name
    return owners


def _owner(owners: Dict[str, str], path: Path) -> str:
    p = os.path.abspath(path)
    if p in owners:
        return owners[p]
    parent = os.path.dirname(p)
    return owners.get(parent, "")
