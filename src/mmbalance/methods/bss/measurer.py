"""BSS's multi-perspective measurer (pure math): one balance score per sample from its per-modality
predictions, features and losses (large = the modalities agree and the loss is low). [PAPER] arXiv
2501.01470 slides/poster; [CODE] njustkmg/IJCAI25-BSS; [RECON] our choice where neither says."""
from __future__ import annotations

from itertools import combinations
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ...functional.common import tensor_sum

CRITERIA = ("pred_sim", "feat_sim", "loss", "grad_mag")
#: criteria where *high* means balanced (the modalities agree)
AGREEMENT = ("pred_sim", "feat_sim")
#: criteria where *high* means imbalanced / not yet explained
COST = ("loss", "grad_mag")
#: the final method: prediction similarity & loss [PAPER]
DEFAULT_CRITERIA = ("pred_sim", "loss")

def parse_criteria(criteria: Union[str, Sequence[str]]) -> Tuple[str, ...]:
    """``"pred_sim+loss"``, ``"pred_sim,loss"`` or a list -> a validated tuple in canonical order."""
    if isinstance(criteria, str):
        items = [c.strip() for c in criteria.replace(",", "+").split("+") if c.strip()]
    else:
        items = [str(c).strip() for c in criteria]
    if not items:
        raise ValueError(f"bss: criteria is empty; choose from {', '.join(CRITERIA)}")
    bad = [c for c in items if c not in CRITERIA]
    if bad:
        raise ValueError(f"bss: unknown criterion {bad[0]!r} in criteria; choose from {', '.join(CRITERIA)}")
    return tuple(c for c in CRITERIA if c in items)


def mean_pairwise_cosine(vectors: Sequence[torch.Tensor], eps: float = 1e-8) -> torch.Tensor:
    """Per row, the mean cosine similarity over all pairs of the given ``[n, d]`` tensors.

    Two tensors: the plain cosine [PAPER]; three or more: the mean of the pairwise cosines, as the
    NVGesture code does for RGB/OF/Depth [CODE].
    """
    if len(vectors) < 2:
        raise ValueError("bss: a similarity criterion needs at least two modalities")
    sims = [F.cosine_similarity(a.float(), b.float(), dim=1, eps=eps) for a, b in combinations(vectors, 2)]
    return torch.stack(sims).mean(0)


def per_sample_criteria(logits: Mapping[str, torch.Tensor], y: torch.Tensor, fused: Optional[torch.Tensor] = None,
                        features: Optional[Mapping[str, torch.Tensor]] = None,
                        criteria: Union[str, Sequence[str]] = DEFAULT_CRITERIA,
                        loss_weights: Tuple[float, float] = (1.0, 1.0)) -> Dict[str, torch.Tensor]:
    """Raw (un-normalised) per-sample values of each criterion, each ``[n]``.

    * ``pred_sim``: cosine of the unimodal softmax vectors (mean of pairs for ≥ 3 modalities) [PAPER].
    * ``feat_sim``: the same on the pooled encoder features; the features must have equal sizes
      (a cosine between vectors of different spaces is undefined; we refuse rather than invent a
      projection) [PAPER criterion, RECON handling].
    * ``loss``: ``w_f·CE(fused) + w_u·Σ_m CE(head_m)`` per sample, ``loss_weights = (w_f, w_u)``
      [PAPER: plain sum; CODE CREMA-D: (0.1, 0.9)].
    * ``grad_mag``: the norm of the gradient of that loss with respect to all logits,
      ``sqrt(Σ_h w_h² ‖softmax(z_h) − onehot(y)‖²)`` — exact for the logits, a cheap proxy for the
      gradient w.r.t. the parameters (which would need one backward per sample) [RECON].
    """
    crit = parse_criteria(criteria)
    mods = list(logits)
    y = y.long()
    out: Dict[str, torch.Tensor] = {}
    if "pred_sim" in crit:
        if len(mods) < 2:
            raise ValueError(f"bss: criterion 'pred_sim' needs at least two modalities, got {mods}")
        out["pred_sim"] = mean_pairwise_cosine([torch.softmax(logits[m].float(), dim=1) for m in mods])
    if "feat_sim" in crit:
        if features is None:
            raise ValueError("bss: criterion 'feat_sim' needs the encoder features")
        dims = {m: int(features[m].shape[1]) for m in mods}
        if len(set(dims.values())) > 1:
            raise ValueError(f"bss: criterion 'feat_sim' needs features of equal size, got {dims}; set "
                             f"model.feature_dim so that every encoder has the same size, or use 'pred_sim'")
        out["feat_sim"] = mean_pairwise_cosine([features[m] for m in mods])
    if "loss" in crit or "grad_mag" in crit:
        w_f, w_u = (float(w) for w in loss_weights)
        heads = [(w_u, logits[m]) for m in mods]
        if fused is not None and w_f != 0.0:
            heads.append((w_f, fused))
        if "loss" in crit:
            out["loss"] = tensor_sum(w * F.cross_entropy(z.float(), y, reduction="none") for w, z in heads)
        if "grad_mag" in crit:
            sq: Union[float, torch.Tensor] = 0.0
            for w, z in heads:
                resid = torch.softmax(z.float(), dim=1) - F.one_hot(y, z.shape[1]).float()
                sq = sq + (w * w) * resid.pow(2).sum(1)
            out["grad_mag"] = torch.as_tensor(sq).sqrt()
    return {c: out[c] for c in crit}


def minmax_normalise(x: torch.Tensor) -> torch.Tensor:
    """``(x − min) / (max − min)`` over the whole set [PAPER]; all zeros if every value is equal."""
    x = x.float()
    lo, hi = x.min(), x.max()
    span = hi - lo
    if not bool(span > 0):
        return torch.zeros_like(x)
    return (x - lo) / span


def combine_criteria(values: Mapping[str, torch.Tensor], criterion_weight: float = 0.5) -> torch.Tensor:
    """Balance score from raw criterion values over the **whole training set**.

    ``s = 2·(w·A − (1−w)·B)`` with ``A`` the mean of the min-max normalised agreement criteria
    (``pred_sim``, ``feat_sim``), ``B`` the same for the cost criteria (``loss``, ``grad_mag``) and
    ``w = criterion_weight``. With ``w = 0.5`` and pred_sim & loss this is the paper's
    ``s = sim_norm − loss_norm ∈ [−1, 1]`` [PAPER]; a single criterion gives ``sim_norm`` or ``−loss_norm``
    (the ablation rows of Table 3). ``w`` is our reading of the undefined "α" of Fig. 3(a) [RECON].
    """
    w = float(criterion_weight)
    if not 0.0 <= w <= 1.0:
        raise ValueError(f"bss: criterion_weight must be in [0, 1], got {criterion_weight}")
    unknown = [c for c in values if c not in CRITERIA]
    if unknown:
        raise ValueError(f"bss: unknown criterion {unknown[0]!r}")
    agree = [minmax_normalise(values[c]) for c in AGREEMENT if c in values]
    cost = [minmax_normalise(values[c]) for c in COST if c in values]
    if not agree and not cost:
        raise ValueError("bss: no criterion values to combine")
    ref = (agree or cost)[0]
    a = torch.stack(agree).mean(0) if agree else torch.zeros_like(ref)
    b = torch.stack(cost).mean(0) if cost else torch.zeros_like(ref)
    return 2.0 * (w * a - (1.0 - w) * b)


def balance_scores(logits: Mapping[str, torch.Tensor], y: torch.Tensor, fused: Optional[torch.Tensor] = None,
                   features: Optional[Mapping[str, torch.Tensor]] = None,
                   criteria: Union[str, Sequence[str]] = DEFAULT_CRITERIA, criterion_weight: float = 0.5,
                   loss_weights: Tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """The multi-perspective measurer on model outputs for a whole set: one score per sample, large =
    balanced. ``logits``/``features`` map modality -> ``[n, ·]``; ``fused`` is ``[n, C]`` or None."""
    vals = per_sample_criteria(logits, y, fused, features, criteria, loss_weights)
    return combine_criteria(vals, criterion_weight)


def score_range(criterion_weight: float = 0.5) -> Tuple[float, float]:
    """The interval scores can take: ``[−2(1−w), 2w]`` (``[−1, 1]`` for ``w = 0.5``)."""
    w = float(criterion_weight)
    return -2.0 * (1.0 - w), 2.0 * w
