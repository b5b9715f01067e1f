"""Plots for D&R runs: the purity gap per modality over training, and each modality's validation
representations before vs after every soft re-initialisation (2-D embedding)."""
from __future__ import annotations

import pathlib
import re
from typing import Dict, List

import numpy as np

from .logkeys import signals
from .plots import read_metrics as _records
from .style import FUSED_COLOR, modality_colors

METHODS = ("diagnose-relearn",)
CAPTIONS = {
    "diagnose_relearn_gap.png": "D&R's diagnosis per modality: the gap between k-means purity of the encoder's "
                                "features on training and validation data (left; a large gap = over-trained), both "
                                "purities (middle), and validation accuracy (right). Dotted: epochs where encoders "
                                "were softly re-initialised.",
    "diagnose_relearn_embedding_pca.png": "Validation features of each modality's encoder before and after each "
                                          "re-initialisation, in one shared 2-D PCA per modality (colour: class).",
    "diagnose_relearn_embedding_tsne.png": "Validation features of each modality's encoder before and after each "
                                           "re-initialisation, in one shared 2-D t-SNE per modality (colour: class).",
}

_KEY = re.compile(r"^(?P<m>.+)/(?P<what>purity_train|purity_val|gap|alpha)$")
_SNAP = re.compile(r"^(?P<m>.+)__(?P<when>before|after|final)__e(?P<epoch>\d+)$")


def _series(records: List[dict]):
    """{modality: {what: [(epoch, value)]}} and the epochs with a re-initialisation."""
    series: Dict[str, Dict[str, list]] = {}
    reinit = []
    for r in records:
        sig = signals(r, "diagnose-relearn")
        for k, v in sig.items():
            mt = _KEY.match(k)
            if mt and isinstance(v, (int, float)):
                series.setdefault(mt["m"], {}).setdefault(mt["what"], []).append((r["epoch"], float(v)))
        if sig.get("reinit") == 1.0:
            reinit.append(r["epoch"])
    return series, reinit


def plot_gap(run_dir: pathlib.Path, out_dir: pathlib.Path) -> List[pathlib.Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = _records(run_dir)
    series, reinit = _series(records)
    if not series:
        return []
    mods = list(series)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors = modality_colors(mods)
    for m in mods:
        s = series[m]
        if "gap" in s:
            e, v = zip(*s["gap"])
            axes[0].plot(e, v, "o-", color=colors[m], label=m)
        for what, style in (("purity_train", "-"), ("purity_val", "--")):
            if what in s:
                e, v = zip(*s[what])
                axes[1].plot(e, v, style, marker="o", ms=3, color=colors[m],
                             label=f"{m} {'train' if what.endswith('train') else 'val'}")
        acc = [(r["epoch"], r["val"]["modality_acc"][m]) for r in records
               if m in (r.get("val") or {}).get("modality_acc", {})]
        if acc:
            e, v = zip(*acc)
            axes[2].plot(e, v, "-", color=colors[m], label=f"{m} head")
    fused = [(r["epoch"], r["val"]["acc"]) for r in records if "acc" in (r.get("val") or {})]
    if fused:
        e, v = zip(*fused)
        axes[2].plot(e, v, "-", color=FUSED_COLOR, lw=2, label="fused")
    for ax in axes:
        for ep in reinit:
            ax.axvline(ep, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("purity gap |P_train - P_val| (dotted: re-initialisation)")
    axes[0].set_ylabel("gap")
    axes[1].set_title("k-means purity (solid train, dashed val)")
    axes[2].set_title("validation accuracy")
    fig.suptitle(f"D&R diagnosis: {run_dir.name}")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "diagnose_relearn_gap.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _embed_2d(parts: List[np.ndarray], method: str, seed: int = 0) -> List[np.ndarray]:
    """One shared 2-D embedding of all snapshots, so that before/after panels share coordinates."""
    x = np.concatenate(parts).astype(np.float64)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)
    if method == "tsne":
        from sklearn.manifold import TSNE

        z = TSNE(2, init="pca", random_state=seed, perplexity=min(30.0, max(5.0, len(x) / 10))).fit_transform(x)
    else:
        from sklearn.decomposition import PCA

        z = PCA(2, random_state=seed).fit_transform(x) if x.shape[1] >= 2 else np.c_[x, np.zeros(len(x))]
    out, i = [], 0
    for p in parts:
        out.append(z[i:i + len(p)])
        i += len(p)
    return out


def plot_embeddings(run_dir: pathlib.Path, out_dir: pathlib.Path, method: str = "pca") -> List[pathlib.Path]:
    from ..methods.diagnose_relearn import EMBEDDINGS_FILE

    path = run_dir / EMBEDDINGS_FILE
    if not path.is_file():
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    labels = data.get("labels")
    snaps: Dict[str, list] = {}
    for k in data:
        mt = _SNAP.match(k)
        if mt:
            snaps.setdefault(mt["m"], []).append((int(mt["epoch"]), ["before", "after", "final"].index(mt["when"]),
                                                  mt["when"], k))
    if not snaps or labels is None:
        return []
    mods = list(snaps)
    cols = max(len(v) for v in snaps.values())
    fig, axes = plt.subplots(len(mods), cols, figsize=(3.2 * cols, 3.0 * len(mods)), squeeze=False)
    for i, m in enumerate(mods):
        items = sorted(snaps[m])
        pts = _embed_2d([data[k] for *_, k in items], method)
        for j, ((epoch, _, when, _), p) in enumerate(zip(items, pts)):
            ax = axes[i, j]
            ax.scatter(p[:, 0], p[:, 1], c=labels, cmap="tab10", s=6, alpha=0.8)
            ax.set_title(f"{m}: {when} (epoch {epoch})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
        for j in range(len(items), cols):
            axes[i, j].axis("off")
    fig.suptitle(f"validation representations around re-initialisations ({method.upper()}, colour = class)")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"diagnose_relearn_embedding_{method}.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


def plot(run_dir: pathlib.Path, out_dir: pathlib.Path, embedding: str = "pca") -> List[pathlib.Path]:
    """Write the D&R plots of one run; ``embedding`` is ``pca`` (fast) or ``tsne``."""
    run_dir, out_dir = pathlib.Path(run_dir), pathlib.Path(out_dir)
    if embedding not in ("pca", "tsne"):
        raise ValueError(f"embedding must be pca or tsne, got {embedding!r}")
    return plot_gap(run_dir, out_dir) + plot_embeddings(run_dir, out_dir, embedding)
