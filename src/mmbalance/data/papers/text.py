"""Text for the image-text datasets (Twitter2015, Sarcasm): pre-extracted features, optional local BERT.

Training reads *pre-extracted* text features: one ``text/<id>.npy`` (or ``.pt``) per sample, a vector
``[D]`` or a token sequence ``[L, D]`` (``text_len`` pads/cuts ``L``), or one table for all samples
(``text_features.npz`` with arrays ``ids`` and ``features``, or ``text_features.pt`` = ``{id: tensor}``).

``mmbalance prepare ... --bert DIR`` computes those features with a BERT model from a LOCAL folder
(``config.json``, vocabulary, weights) if the optional ``transformers`` package is importable; nothing is
ever downloaded (``local_files_only=True``). The feature is the final-layer ``[CLS]`` vector by default
(``--bert-pooling pooler|mean`` for the pooler output / the masked mean); the papers fine-tune BERT end to
end instead (a documented deviation: a frozen text encoder).

The canonical prepared layout (both datasets)::

    train.csv / val.csv / test.csv     header id,image,label[,text]
    images/<image file>
    text/<id>.npy
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from ..base import DataError
from ..paths import contained
from .common import Reader, Record, fix_length, load_array_file, resolve_path
from .frames import ImageReader, frame_options
from .spec import COMMON_OPTIONS, Loaded

IMAGE_TEXT_OPTIONS = {**COMMON_OPTIONS, "image_size": 224, "augment": True, "crop_scale": [0.08, 1.0], "text_len": None,
                      "text_features": None, "train_split": None, "val_split": None, "test_split": None}


class TextFeatureReader(Reader):
    """Pre-extracted text features -> float32 ``[D]`` or ``[text_len, D]``.

    ``record.paths["text"]`` is a file path, or the sample id when ``table`` (id -> array) is given.
    """

    kind = "features"

    def __init__(self, modality: str = "text", table: Optional[Dict[str, np.ndarray]] = None,
                 length: Optional[int] = None):
        self.modality, self.table, self.length = modality, table, (int(length) if length else None)

    def read(self, record: Record, train: bool) -> torch.Tensor:
        key = record.paths[self.modality]
        arr = self.table[key] if self.table is not None else load_array_file(Path(key), self.trust_pickle)
        x = torch.from_numpy(np.ascontiguousarray(arr)).float()
        while x.dim() > 2 and x.shape[0] == 1:
            x = x[0]
        if x.dim() not in (1, 2):
            raise DataError(f"text features of {record.name!r} must be [D] or [L, D], got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise DataError(f"text features of {record.name!r} have NaN/inf values")
        if x.dim() == 2 and self.length:
            x = fix_length(x, self.length, dim=0)
        return x

    def exists(self, record: Record) -> Optional[str]:
        key = record.paths[self.modality]
        if self.table is not None:
            return None if key in self.table else f"no text features for id {key!r} in the feature table"
        return None if os.path.exists(key) else f"missing text features {key}"


def load_feature_table(path: Path) -> Dict[str, np.ndarray]:
    """``.npz`` with ``ids`` + ``features`` arrays, or ``.pt`` dict ``{id: tensor}``."""
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                ids, feats = z["ids"], z["features"]
        except KeyError:
            raise DataError(f"{path}: a feature table needs arrays 'ids' and 'features'") from None
        except Exception as e:  # noqa: BLE001
            raise DataError(f"cannot read {path} (truncated or corrupt?): {e}") from None
        if len(ids) != len(feats):
            raise DataError(f"{path}: {len(ids)} ids but {len(feats)} feature rows")
        return {str(i): feats[k] for k, i in enumerate(ids)}
    if path.suffix in (".pt", ".pth"):
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"cannot read {path} (truncated or corrupt?): {e}") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}: expected a dict id -> tensor, got {type(obj).__name__}")
        return {str(k): (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in obj.items()}
    raise DataError(f"{path}: a feature table must be .npz (ids, features) or .pt ({{id: tensor}})")


def read_canonical_split(path: Path) -> List[dict]:
    """Rows of a canonical image-text split csv (header ``id,image,label[,text]``)."""
    if not path.is_file():
        raise DataError(f"split file not found: {path}")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        need = {"id", "image", "label"}
        if reader.fieldnames is None or not need <= set(reader.fieldnames):
            raise DataError(f"{path}: expected a header with id,image,label (got {reader.fieldnames})")
        rows = [dict(r, line=i + 2) for i, r in enumerate(reader)]
    if not rows:
        raise DataError(f"split file {path} has no rows")
    return rows


def load_image_text(dataset: str, root: Path, opts: dict, classes: Sequence[str]) -> Loaded:
    """The shared loader of the canonical image-text layout (see the module docstring)."""
    from .common import find_file, labels_from_tokens, SplitRow

    files = {}
    for split in ("train", "val", "test"):
        names = [f"{split}.csv"] + (["dev.csv"] if split == "val" else [])
        p = resolve_path(root, opts.get(f"{split}_split")) or find_file(root, names)
        if p is not None:
            files[split] = p
    for k in ("train", "test"):
        if k not in files:
            raise DataError(f"{dataset}: no {k}.csv under {root} "
                            f"(run `mmbalance prepare {dataset} --raw RAW --out DIR`)")
    table = None
    tf = resolve_path(root, opts.get("text_features")) if opts.get("text_features") else None
    if tf is None:
        for cand in ("text_features.npz", "text_features.pt"):
            if (root / cand).is_file():
                tf = root / cand
    if tf is not None and tf.is_file():
        table = load_feature_table(tf)
    text_dir = tf if (tf is not None and tf.is_dir()) else root / "text"
    records: Dict[str, List[Record]] = {}
    for split, p in files.items():
        rows = read_canonical_split(p)
        srows = [SplitRow(r["id"], r["label"], [], r["line"]) for r in rows]
        ys = labels_from_tokens(srows, classes, str(p))
        recs = []
        for r, y in zip(rows, ys):
            where = f"{p} line {r['line']}"
            text_key = r["id"] if table is not None else _text_file(text_dir, r["id"], where)
            recs.append(Record(r["id"], y, {"image": str(contained(root / "images", r["image"], where)),
                                            "text": text_key}))
        records[split] = recs
    readers = {"image": ImageReader("image", frame_options(opts)),
               "text": TextFeatureReader("text", table, opts.get("text_len"))}
    return Loaded(records, readers, list(classes), {"split_files": {k: str(v) for k, v in files.items()}})


def _text_file(text_dir: Path, sid: str, where: str) -> str:
    npy = contained(text_dir, f"{sid}.npy", where)
    if npy.exists():
        return str(npy)
    pt = contained(text_dir, f"{sid}.pt", where)
    return str(pt) if pt.exists() else str(npy)


# ---------------------------------------------------------------------------------------------- BERT (optional)
def bert_features(model_dir: os.PathLike, texts: Optional[Sequence[str]] = None,
                  token_ids: Optional[Sequence[Sequence[int]]] = None, max_length: int = 128, batch_size: int = 32,
                  pooling: str = "cls", device: str = "cpu") -> np.ndarray:
    """Frozen BERT features ``[N, hidden]`` of ``texts`` (tokenised here) or of ready ``token_ids``.

    ``model_dir`` must be a local folder; ``transformers`` must be installed. Never downloads.
    """
    try:
        import transformers  # type: ignore
    except ImportError:
        raise DataError("text features need either pre-extracted features (--text-features) or the optional "
                        "`transformers` package with a local BERT folder (--bert DIR); transformers is not "
                        "installed") from None
    p = Path(model_dir).expanduser()
    if not p.is_dir():
        raise DataError(f"--bert {str(model_dir)!r} must be a local folder with config.json, vocabulary and "
                        f"weights (mmbalance never downloads models)")
    if pooling not in ("cls", "pooler", "mean"):
        raise DataError(f"--bert-pooling {pooling!r} must be cls, pooler or mean")
    if (texts is None) == (token_ids is None):
        raise DataError("give texts or token_ids, not both")
    tok = transformers.AutoTokenizer.from_pretrained(str(p), local_files_only=True)
    model = transformers.AutoModel.from_pretrained(str(p), local_files_only=True)
    model.eval().to(device)
    n = len(texts) if texts is not None else len(token_ids)  # type: ignore[arg-type]
    out = []
    with torch.no_grad():
        for s in range(0, n, batch_size):
            if texts is not None:
                enc = tok(list(texts[s:s + batch_size]), padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt")
                ids, mask = enc["input_ids"], enc["attention_mask"]
            else:
                chunk = [list(map(int, t))[:max_length] for t in token_ids[s:s + batch_size]]  # type: ignore[index]
                width = max(len(t) for t in chunk)
                pad = tok.pad_token_id if getattr(tok, "pad_token_id", None) is not None else 0
                ids = torch.tensor([t + [pad] * (width - len(t)) for t in chunk])
                mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in chunk])
            res = model(input_ids=ids.to(device), attention_mask=mask.to(device))
            h = res.last_hidden_state
            if pooling == "cls":
                f = h[:, 0]
            elif pooling == "pooler":
                f = res.pooler_output
            else:
                m = mask.to(device).unsqueeze(-1).to(h.dtype)
                f = (h * m).sum(1) / m.sum(1).clamp_min(1)
            out.append(f.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


# ---------------------------------------------------------------------------------------------- prepare
def add_text_arguments(p) -> None:
    p.add_argument("--text-features", help="pre-extracted text features: a folder of <id>.npy, a .npz "
                                           "(ids, features) or a .pt {id: tensor} keyed by sample id")
    p.add_argument("--bert", help="LOCAL folder of a BERT model (needs the optional `transformers`); "
                                  "computes the text features; never downloads")
    p.add_argument("--bert-pooling", default="cls", choices=["cls", "pooler", "mean"])
    p.add_argument("--max-length", type=int, default=128, help="tokenizer max length (AMSS 128, BSS code 30)")


def prepare_image_text(args, dataset: str, splits: Dict[str, List[dict]], classes: Sequence[str]) -> dict:
    """Write the canonical layout from parsed raw rows ``{id, image (source path), label (int), text}``."""
    from .preprocess import copy_file, run_jobs, save_array

    out = Path(args.out)
    all_rows = [r for rs in splits.values() for r in rs]
    # sample ids come from the raw split files: refuse any that would leave OUT before anything is written
    dst = {r["id"]: (contained(out / "images", Path(r["image"]).name, r.get("where", dataset)),
                     contained(out / "text", f"{r['id']}.npy", r.get("where", dataset))) for r in all_rows}
    feats: Dict[str, np.ndarray] = {}
    if args.text_features:
        src = Path(args.text_features)
        if src.is_dir():
            for r in all_rows:
                for ext in (".npy", ".pt"):
                    f = contained(src, f"{r['id']}{ext}", r.get("where", dataset))
                    if f.is_file():
                        feats[r["id"]] = load_array_file(f)
                        break
        else:
            feats = load_feature_table(src)
    elif args.bert:
        texts = [r["text"] for r in all_rows]
        arr = bert_features(args.bert, texts=texts, max_length=args.max_length, pooling=args.bert_pooling)
        feats = {r["id"]: arr[i] for i, r in enumerate(all_rows)}
    else:
        raise DataError(f"{dataset}: give --text-features PATH (pre-extracted) or --bert LOCAL_DIR to compute them")
    unavailable = set()
    for r in all_rows:
        if r["id"] not in feats or not Path(r["image"]).is_file():
            unavailable.add(r["id"])

    def job(r):
        image, text = dst[r["id"]]
        copy_file(Path(r["image"]), image, args.link)
        save_array(text, feats[r["id"]])
        return "done"

    out.mkdir(parents=True, exist_ok=True)
    todo = [r for r in all_rows if r["id"] not in unavailable]
    _, errors = run_jobs(job, todo, args.workers, "samples", not args.no_progress,
                         label=lambda r: f"sample {r['id']!r}")
    for split, rs in splits.items():
        with open(out / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "image", "label", "text"])
            for r in rs:
                w.writerow([r["id"], Path(r["image"]).name, classes[r["label"]], r.get("text", "")])
    failed = {e.split("'")[1] for e in errors if e.startswith("sample '")}
    src = "bert:" + str(args.bert) if args.bert else str(args.text_features)
    return {"unavailable": sorted(unavailable | failed), "errors": errors,
            "meta": {"text_features": src, "max_length": args.max_length}}


__all__ = ["TextFeatureReader", "load_feature_table", "read_canonical_split", "load_image_text", "bert_features",
           "add_text_arguments", "prepare_image_text", "IMAGE_TEXT_OPTIONS"]
