"""Clustering purity of a representation space, with a torch k-means that runs where the features are.

D&R (Wei et al., ECCV 2024) diagnoses how well each modality is learnt from the *separability* of its
encoder features: cluster them with k-means (k = number of classes) and measure purity, i.e. the
accuracy of labelling every cluster with its majority class:

    P(clusters, y) = (1/N) * sum_c max_l |{i : cluster(i) = c, y_i = l}|

Pieces:

* :func:`purity` -- purity of a given clustering (numpy or torch inputs, any label ids).
* :func:`minmax_scale` -- per-feature rescaling to ``[-1, 1]`` exactly like scikit-learn's
  ``MinMaxScaler(feature_range=(-1, 1))`` (a constant feature maps to the lower bound).
* :func:`kmeans` -- k-means++ initialisation (greedy, with ``2 + log k`` local trials, as scikit-learn)
  and Lloyd iterations, with ``n_init`` restarts run *batched* on the features' device; the restart
  with the lowest inertia wins. Random draws come from a seeded CPU generator, so a seed gives the
  same initial centres on CPU and CUDA.
* :func:`clustering_purity` -- scale + k-means + purity in one call, with a scikit-learn backend for
  reference (``backend="sklearn"``) and ``"auto"`` = torch on CUDA, scikit-learn on CPU.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import torch

#: integer ids or feature rows given as a tensor, a numpy array or a nested list
ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]

#: elements of the [restarts, k, N] distance tensor allowed at once (restarts are grouped to fit)
_DIST_BUDGET = 1 << 26

BACKENDS = ("auto", "torch", "sklearn")


# ====================================================================== purity
def _as_numpy_ints(x, what: str) -> np.ndarray:
    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    a = np.asarray(x).reshape(-1)
    if a.dtype.kind not in "iub":
        if a.dtype.kind == "f" and np.all(np.isfinite(a)) and np.all(a == np.round(a)):
            a = a.astype(np.int64)
        else:
            raise ValueError(f"purity: {what} must be integer ids, got dtype {a.dtype}")
    return a


def purity(cluster_ids: ArrayLike, labels: ArrayLike) -> float:
    """Fraction of samples whose label is the majority label of their cluster.

    Cluster and label ids may be any integers (they are remapped to contiguous ids first, as the D&R
    code does); both arrays must have the same length N > 0.
    """
    c = _as_numpy_ints(cluster_ids, "cluster_ids")
    y = _as_numpy_ints(labels, "labels")
    if c.shape[0] != y.shape[0]:
        raise ValueError(f"purity: {c.shape[0]} cluster ids but {y.shape[0]} labels")
    if c.shape[0] == 0:
        raise ValueError("purity: no samples")
    _, ci = np.unique(c, return_inverse=True)
    _, yi = np.unique(y, return_inverse=True)
    table = np.zeros((ci.max() + 1, yi.max() + 1), dtype=np.int64)
    np.add.at(table, (ci, yi), 1)
    return float(table.max(axis=1).sum()) / float(c.shape[0])


# ====================================================================== scaling
def minmax_scale(x: torch.Tensor, low: float = -1.0, high: float = 1.0) -> torch.Tensor:
    """Rescale every column of ``x`` [N, d] to ``[low, high]`` (scikit-learn ``MinMaxScaler`` semantics)."""
    if x.dim() != 2:
        raise ValueError(f"minmax_scale: expected a [N, d] matrix, got shape {tuple(x.shape)}")
    lo = x.min(dim=0).values
    rng = x.max(dim=0).values - lo
    # scikit-learn treats a (near-)zero range as 1, so a constant feature maps to `low`
    eps = 10 * torch.finfo(x.dtype).eps if x.is_floating_point() else 0.0
    rng = torch.where(rng < eps, torch.ones_like(rng), rng)
    scale = (high - low) / rng
    return x * scale + (low - lo * scale)


# ====================================================================== k-means
@dataclass
class KMeansResult:
    labels: torch.Tensor  #: [N] cluster id of each sample (best restart)
    centers: torch.Tensor  #: [k, d]
    inertia: float  #: sum of squared distances to the assigned centre
    n_iter: int  #: Lloyd iterations of the best restart's group


def _sqdist(x: torch.Tensor, xsq: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Squared distances between centres ``c`` [R, m, d] and points ``x`` [N, d] -> [R, m, N]."""
    csq = (c * c).sum(-1, keepdim=True)
    d = torch.matmul(c, x.t()).mul_(-2.0).add_(csq).add_(xsq)
    return d.clamp_min_(0.0)


def _pick(cum: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling: for each row r, indices i with cum[r, i-1] < u[r, j] <= cum[r, i]."""
    idx = torch.searchsorted(cum, u.contiguous(), right=False)
    return idx.clamp_(max=cum.shape[1] - 1)


def _kmeans_pp(x, xsq, k: int, restarts: int, gen: torch.Generator, n_local: int):
    """Greedy k-means++ for ``restarts`` independent runs at once; returns centres [R, k, d]."""
    n = x.shape[0]
    ar = torch.arange(restarts, device=x.device)
    first = torch.randint(n, (restarts,), generator=gen).to(x.device)
    chosen = [first]
    closest = _sqdist(x, xsq, x[first][:, None, :])[:, 0, :]  # [R, N]
    pot = closest.sum(1, dtype=torch.float64)
    for _ in range(1, k):
        # candidates drawn with probability proportional to the squared distance to the nearest centre
        cum = closest.double().cumsum(1)
        u = torch.rand(restarts, n_local, generator=gen, dtype=torch.float64).to(x.device) * pot[:, None]
        cand = _pick(cum, u)  # [R, L]
        d = _sqdist(x, xsq, x[cand])  # [R, L, N]
        new_closest = torch.minimum(closest[:, None, :], d)
        new_pot = new_closest.sum(2, dtype=torch.float64)  # [R, L]
        best = new_pot.argmin(1)
        closest = new_closest[ar, best]
        pot = new_pot[ar, best]
        chosen.append(cand[ar, best])
    idx = torch.stack(chosen, 1)  # [R, k]
    return x[idx].clone()


def _lloyd(x, xsq, centers, k: int, max_iter: int, tol: float):
    prev = None
    it = 0
    for it in range(1, max_iter + 1):
        d = _sqdist(x, xsq, centers)  # [R, k, N]
        mind, assign = d.min(1)  # [R, N]
        onehot = torch.nn.functional.one_hot(assign, k).to(x.dtype)  # [R, N, k]
        counts = onehot.sum(1)  # [R, k]
        sums = torch.matmul(onehot.transpose(1, 2), x)  # [R, k, d] (deterministic, unlike index_add on CUDA)
        new = sums / counts.clamp_min(1)[..., None]
        empty = counts == 0
        if bool(empty.any()):
            # as scikit-learn: move an empty cluster's centre onto the point farthest from its own centre
            for ri in torch.nonzero(empty.any(1)).flatten().tolist():
                e = torch.nonzero(empty[ri]).flatten()
                far = torch.topk(mind[ri], len(e)).indices
                new[ri, e] = x[far]
        shift = ((new - centers) ** 2).sum((1, 2))
        centers = new
        same = prev is not None and bool((assign == prev).all())
        prev = assign
        if same or bool((shift <= tol).all()):
            break
    d = _sqdist(x, xsq, centers)
    mind, assign = d.min(1)
    inertia = mind.sum(1, dtype=torch.float64)
    best = int(inertia.argmin())
    return assign[best], centers[best], float(inertia[best]), it


def kmeans(x: torch.Tensor, k: int, n_init: int = 10, seed: int = 0, max_iter: int = 300, tol: float = 1e-4,
           dtype: Optional[torch.dtype] = None) -> KMeansResult:
    """k-means (k-means++ init, ``n_init`` restarts batched) on ``x`` [N, d], on ``x``'s device.

    ``tol`` is relative, as in scikit-learn: a restart has converged when the squared shift of all its
    centres is at most ``tol * mean(per-feature variance)`` (or when no assignment changed).
    """
    if not torch.is_tensor(x):
        x = torch.as_tensor(np.asarray(x))
    if x.dim() != 2:
        raise ValueError(f"kmeans: expected features [N, d], got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"kmeans: k={k} clusters need 1 <= k <= N={n} samples")
    if n_init < 1:
        raise ValueError(f"kmeans: n_init must be >= 1, got {n_init}")
    if max_iter < 1:
        raise ValueError(f"kmeans: max_iter must be >= 1, got {max_iter}")
    dtype = dtype or (x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32)
    x = x.to(dtype)
    if not bool(torch.isfinite(x).all()):
        raise ValueError("kmeans: features contain NaN or inf")
    xsq = (x * x).sum(1)
    tol_abs = float(tol) * float(x.var(0, unbiased=False).mean())
    gen = torch.Generator().manual_seed(int(seed))
    n_local = 2 + int(math.log(k))
    group = max(1, min(n_init, _DIST_BUDGET // max(1, max(k, n_local) * n)))
    best: Optional[KMeansResult] = None
    done = 0
    while done < n_init:
        r = min(group, n_init - done)
        centers = _kmeans_pp(x, xsq, k, r, gen, n_local)
        labels, c, inertia, it = _lloyd(x, xsq, centers, k, max_iter, tol_abs)
        if best is None or inertia < best.inertia:
            best = KMeansResult(labels, c, inertia, it)
        done += r
    assert best is not None
    return best


def sklearn_kmeans_labels(x, k: int, n_init: int = 10, seed: int = 0, max_iter: int = 300,
                          tol: float = 1e-4) -> np.ndarray:
    """Cluster ids from scikit-learn ``KMeans(init='k-means++')`` (the D&R release's clustering)."""
    from sklearn.cluster import KMeans

    if torch.is_tensor(x):
        x = x.detach().cpu().numpy()
    km = KMeans(n_clusters=k, init="k-means++", n_init=n_init, max_iter=max_iter, tol=tol, random_state=seed)
    return km.fit_predict(np.asarray(x))


def resolve_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"k-means backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "torch" if torch.device(device).type == "cuda" else "sklearn"
    return backend


def clustering_purity(features: ArrayLike, labels: ArrayLike, k: Optional[int] = None, n_init: int = 10, seed: int = 0,
                      scale: bool = True, backend: str = "auto", max_iter: int = 300, tol: float = 1e-4) -> float:
    """Purity of a k-means clustering of ``features`` [N, d] against ``labels`` [N].

    Args:
        k: number of clusters (default: number of distinct labels).
        n_init: k-means restarts (best inertia kept).
        seed: k-means seed (``random_state`` for scikit-learn).
        scale: min-max scale every feature to [-1, 1] first (the D&R release does).
        backend: ``"torch"`` (on the features' device), ``"sklearn"``, or ``"auto"`` (torch on CUDA,
            scikit-learn on CPU).
    """
    if not torch.is_tensor(features):
        features = torch.as_tensor(np.asarray(features))
    y = _as_numpy_ints(labels, "labels")
    if features.shape[0] != y.shape[0]:
        raise ValueError(f"clustering_purity: {features.shape[0]} feature rows but {y.shape[0]} labels")
    if k is None:
        k = int(np.unique(y).size)
    x = features.detach()
    if not x.is_floating_point():
        x = x.float()
    if scale:
        x = minmax_scale(x)
    if resolve_backend(backend, x.device) == "torch":
        ids = kmeans(x, k, n_init=n_init, seed=seed, max_iter=max_iter, tol=tol).labels
    else:
        ids = sklearn_kmeans_labels(x, k, n_init=n_init, seed=seed, max_iter=max_iter, tol=tol)
    return purity(ids, y)


__all__ = ["purity", "minmax_scale", "kmeans", "KMeansResult", "sklearn_kmeans_labels", "clustering_purity",
           "resolve_backend", "BACKENDS"]
