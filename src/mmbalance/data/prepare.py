"""``mmbalance prepare DATASET --raw DIR --out DIR``: raw paper dataset -> the documented layout + manifest.

Videos become JPEG frames (1 fps by default; needs ffmpeg, optional), WAV audio becomes ``.npy``
spectrograms (an audio recipe: ``--audio ogm-ge`` ...) or Kaldi fbank, split files are rewritten in one
canonical format, and ``manifest.json`` records the SHA-256 and size of every file plus the per-split
sample counts (checked later by ``mmbalance verify``). Pre-extracted frame folders and WAV/array audio
are accepted instead of videos, so ffmpeg is only needed for videos. See docs/datasets.md.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

from .base import DataError


def add_arguments(p) -> None:
    from .papers import PAPER_DATASETS
    from .papers.waveform import RECIPES

    p.add_argument("dataset", choices=sorted(PAPER_DATASETS), help="paper dataset")
    p.add_argument("--raw", required=True, help="folder with the raw download (videos / frames / audio / split files)")
    p.add_argument("--out", required=True, help="output folder (the data.root of training runs)")
    p.add_argument("--splits", help="folder with the split files, if they are not in --raw")
    p.add_argument("--workers", type=int, default=1, help="parallel jobs (threads; ffmpeg runs as subprocesses)")
    p.add_argument("--audio", choices=sorted(RECIPES), help="audio recipe for WAV/video audio (default: the "
                                                           "dataset's, e.g. ogm-ge for CREMA-D)")
    p.add_argument("--fps", type=float, default=1.0, help="frames per second extracted from videos (default 1)")
    p.add_argument("--frame-height", type=int, help="scale extracted frames to this height (default: keep)")
    p.add_argument("--link", action="store_true", help="hard-link files instead of copying where possible")
    p.add_argument("--skip-existing", action="store_true", help="keep clips already prepared in --out (resume)")
    p.add_argument("--split-seed", type=int, default=0, help="seed of a generated split (CREMA-D without csv files)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from ..cli import add_trust_pickle_argument

    add_trust_pickle_argument(p)
    # options of single datasets: added once, their help naming the datasets that read them
    extra: Dict[str, list] = {}
    for name, spec in sorted(PAPER_DATASETS.items()):
        if spec.add_prepare_arguments is None:
            continue
        probe = _Recorder()
        spec.add_prepare_arguments(probe)
        for args, kw in probe.calls:
            extra.setdefault(args[0], [args, kw, []])[2].append(name)
    group = p.add_argument_group("dataset-specific options")
    for args, kw, users in extra.values():
        kw = dict(kw)
        kw["help"] = (kw.get("help", "") + f" [{', '.join(users)}]").strip()
        group.add_argument(*args, **kw)
    p.set_defaults(flow=None, fold=1, name_format="{ytid}_{start}", text_features=None, bert=None,
                   bert_pooling="cls", max_length=128)


class _Recorder:
    """Collects add_argument calls so that options shared by several datasets are added once."""

    def __init__(self):
        self.calls: List = []

    def add_argument(self, *args, **kw):
        self.calls.append((args, kw))


def split_counts(dataset: str, root: Path, trust_pickle: bool = False) -> Dict[str, Dict[str, object]]:
    """Per split of the prepared folder: rows in the split files and the sample names whose files are missing."""
    from ..config import DataConfig
    from .papers import PAPER_DATASETS

    spec = PAPER_DATASETS[dataset]
    if spec.build is not None:
        splits = spec.build(DataConfig(name=dataset, root=str(root), trust_pickle=trust_pickle))
        return {k: {"rows": len(splits[k]), "missing": []} for k in ("train", "val", "test")}
    from .papers.spec import lenient_layout

    with lenient_layout():
        loaded = spec.load(Path(root), dict(spec.defaults))
    out = {}
    for split, recs in loaded.records.items():
        missing = []
        for r in recs:
            for m, reader in loaded.readers.items():
                msg = reader.exists(r)
                if msg:
                    missing.append((r.name, f"{m}: {msg}"))
                    break
        out[split] = {"rows": len(recs), "missing": missing}
    return out


def main(args) -> int:
    from .papers import PAPER_DATASETS
    from .papers.preprocess import write_manifest

    spec = PAPER_DATASETS[args.dataset]
    raw, out = Path(args.raw).expanduser().resolve(), Path(args.out).expanduser().resolve()
    if not raw.exists():
        raise DataError(f"--raw {args.raw}: no such file or folder")
    if out == raw or raw in out.parents:
        raise DataError(f"--out {args.out} must not be inside --raw {args.raw}")
    if spec.prepare is None:  # pragma: no cover - every paper dataset has one
        raise DataError(f"{args.dataset}: no prepare step")
    args.raw, args.out = str(raw), str(out)
    if args.workers < 1:
        raise DataError("--workers must be >= 1")
    summary = spec.prepare(args)
    meta = {"dataset": args.dataset, **summary.get("meta", {})}
    (out / "prepared.json").write_text(json.dumps(meta, indent=1, default=str))
    counts = split_counts(args.dataset, out, bool(args.trust_pickle))
    available = {k: v["rows"] - len(v["missing"]) for k, v in counts.items()}
    # listed in a split file but without data after preparing (never downloaded, or failed): verify
    # reports these as known gaps, and anything else that goes missing later as an error
    unavailable = {k: sorted({n for n, _ in v["missing"]}) for k, v in counts.items()}
    manifest = write_manifest(out, args.dataset, available, meta, args.workers, not args.no_progress, unavailable)
    print(f"prepared {args.dataset} in {out}")
    for k, n in available.items():
        extra = f"  ({len(unavailable[k])} listed in the split file but unavailable)" if unavailable.get(k) else ""
        print(f"  {k:8s} {n:7d} samples{extra}")
    ref = _reference_line(spec, available)
    if ref:
        print(f"  {ref}")
    print(f"  manifest: {len(manifest['files'])} files, {out / 'manifest.json'}")
    errors = summary.get("errors", [])
    for e in errors:
        print(f"error: {e}")
    if errors:
        print(f"{len(errors)} item(s) failed; fix them and re-run with --skip-existing")
        return 1
    return 0


def _reference_line(spec, counts: Dict[str, int]) -> str:
    for ref in spec.reference_counts:
        if all(counts.get(k) == v for k, v in ref.items()):
            return "complete: counts match the papers' split (" + ", ".join(f"{k} {v}" for k, v in ref.items()) + ")"
    refs = " or ".join("/".join(f"{k} {v}" for k, v in r.items()) for r in spec.reference_counts)
    return f"note: the papers' complete split is {refs}"
