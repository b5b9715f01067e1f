"""BSS — Balance-aware Sequence Sampling (Guan, Jiang, Yang; IJCAI 2025; arXiv 2501.01470).

BSS acts on the **order of the data**, not on the loss or the gradients. A *multi-perspective measurer*
gives every training sample a balance score (large: both modalities predict the same thing and the
sample's loss is low; small: one modality is confident and the other is not), and the training
sequence goes from balanced to imbalanced samples:

* ``bss-h`` (heuristic scheduler, :class:`BSSHeuristic`): score once, rank balanced-first, and at
  epoch ``t`` train on random batches from the top ``⌊n·λ(t)⌋`` samples with the root pacing
  function ``λ(t) = min(1, sqrt((1−λ0²)/T_grow · t + λ0²))``;
* ``bss-l`` (learned scheduler, :class:`BSSLearned`): re-score every ``E`` epochs with the current
  model, smooth the scores with an EMA and sample by ``p = softmax(ŝ)``.

The model trains with ``CE(fused) + Σ_m CE(head_m)`` (``wants_unimodal_loss``). Both plug-ins only
replace the sample *order* (``replaces = "order"``), so they stack with ``+`` on any loss-, gradient- or
batcher-level method (``joint-aux+bss-l``, ``ogm-ge+bss-l``, ``bss-l+dus-h``).

Spec: ``shared/spec/methods.md`` section 2. Tags: [PAPER] paper/slides/talk, [CODE] the official
release (njustkmg/IJCAI25-BSS), [RECON] our choice where neither says. The math lives in plain
functions (:func:`per_sample_criteria`, :func:`combine_criteria`, :func:`balance_scores`,
:func:`pacing`, :func:`sampling_probabilities`, :func:`ema_update`) that are usable on their own.
"""
from __future__ import annotations

import math
import time
from itertools import combinations
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from ..data.base import IndexBatch
from ..engine.plugin import IncompatiblePluginsError, Plugin
from ..engine.samplers import Batcher, EpochBatchSampler, EpochOrder, SequentialOrder, epoch_generator
from ..registry import METHODS

#: every criterion of the paper's ablation (arXiv v1 appendix, Table 1) [PAPER]
CRITERIA = ("pred_sim", "feat_sim", "loss", "grad_mag")
#: criteria where *high* means balanced (the modalities agree)
AGREEMENT = ("pred_sim", "feat_sim")
#: criteria where *high* means imbalanced / not yet explained
COST = ("loss", "grad_mag")
#: the final method: prediction similarity & loss [PAPER]
DEFAULT_CRITERIA = ("pred_sim", "loss")
HIST_BINS = 20
_SALT_H, _SALT_L = 0xB55A, 0xB55B  # decorrelate BSS orders from the default shuffling stream


# =============================================================================== the measurer (pure math)
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
            out["loss"] = sum(w * F.cross_entropy(z.float(), y, reduction="none") for w, z in heads)
        if "grad_mag" in crit:
            sq = 0.0
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


def summarize_scores(s: torch.Tensor, lo: float, hi: float, bins: int = HIST_BINS) -> Dict[str, Any]:
    """Mean, std, min/max, quantiles and a fixed-range histogram (counts) of a score vector."""
    s = s.float().cpu()
    q = torch.quantile(s, torch.tensor([0.1, 0.25, 0.5, 0.75, 0.9]))
    out = {"mean": float(s.mean()), "std": float(s.std(unbiased=False)), "min": float(s.min()),
           "max": float(s.max())}
    out.update({f"q{int(round(p * 100)):02d}": float(v) for p, v in zip((0.1, 0.25, 0.5, 0.75, 0.9), q)})
    out["hist"] = torch.histc(s, bins=bins, min=lo, max=hi).long().tolist()
    return out


# =============================================================================== schedulers (pure math)
def pacing(t: float, lambda0: float = 0.1, T_grow: float = 40) -> float:
    """Root pacing function ``λ(t) = min(1, sqrt((1 − λ0²)/T_grow · t + λ0²))`` [PAPER/CODE].

    ``t`` is the pacing clock *as given*; the plug-in passes ``epoch + 1`` like the released code
    (``pace_offset=1``), so epoch 0 already uses ``λ(1) ≈ 0.186`` and epoch ``T_grow − 1`` the full set.
    """
    if not 0.0 < lambda0 <= 1.0:
        raise ValueError(f"bss-h: lambda0 must be in (0, 1], got {lambda0}")
    if T_grow <= 0:
        raise ValueError(f"bss-h: T_grow must be > 0, got {T_grow}")
    return min(1.0, math.sqrt(max(0.0, (1.0 - lambda0 ** 2) / T_grow * t + lambda0 ** 2)))


def prefix_size(n: int, fraction: float) -> int:
    """``⌊n·λ⌋`` (at least one sample). The tiny epsilon keeps ``λ = 1`` computed in floating point as
    ``0.99999999…`` from dropping the last sample."""
    return max(1, min(int(n), int(math.floor(n * fraction + 1e-9))))


def sampling_probabilities(s: torch.Tensor, mode: str = "softmax", linear_offset: float = 1.01) -> torch.Tensor:
    """Sampling distribution from scores (float64, sums to 1).

    ``softmax``: ``p = exp(ŝ) / Σ exp(ŝ)`` [PAPER]. ``linear``: ``w = linear_offset + s``, ``p = w / Σ w``
    with ``linear_offset = 1.01`` [CODE: ``1 − (loss_norm − sim_norm) + 0.01``]; a weight ≤ 0 (possible
    with the NVGesture script's offset 1.0) is raised to a tiny positive value so that a full
    without-replacement permutation stays defined.
    """
    s = s.detach().double().cpu()
    if mode == "softmax":
        return torch.softmax(s, dim=0)
    if mode == "linear":
        w = (float(linear_offset) + s).clamp_min(1e-12)
        return w / w.sum()
    raise ValueError(f"bss-l: prob_mode must be 'softmax' or 'linear', got {mode!r}")


def ema_update(prev: Optional[torch.Tensor], new: torch.Tensor, beta: float) -> torch.Tensor:
    """``ŝ^{k+1} = s^{k+1}`` at the first scoring, else ``(1 − β)·ŝ^k + β·s^{k+1}`` [PAPER]."""
    if prev is None:
        return new.detach().clone()
    return (1.0 - float(beta)) * prev + float(beta) * new.detach()


def spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    """Rank correlation (ties broken by index): how much the ordering changed between two scorings."""
    ra = torch.empty_like(a, dtype=torch.float64)
    rb = torch.empty_like(b, dtype=torch.float64)
    ra[torch.argsort(a, stable=True)] = torch.arange(len(a), dtype=torch.float64)
    rb[torch.argsort(b, stable=True)] = torch.arange(len(b), dtype=torch.float64)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = float(ra.norm() * rb.norm())
    return float((ra * rb).sum()) / den if den > 0 else 1.0


# =============================================================================== epoch orders
class CurriculumOrder(EpochOrder):
    """BSS-H order: a seeded random permutation of the top ``⌊n·λ(t)⌋`` samples of ``ranking``.

    The pacing clock is ``t = epoch − start_epoch + pace_offset`` (``start_epoch``: the epoch the scores
    were computed at). Deterministic per (seed, epoch): identical on every DDP rank and after resume.
    """

    def __init__(self, ranking: torch.Tensor, seed: int, lambda0: float = 0.1, T_grow: float = 40,
                 pace_offset: int = 1, start_epoch: int = 0, salt: int = _SALT_H):
        super().__init__(len(ranking), seed)
        self.ranking = ranking.long().cpu()
        self.lambda0, self.T_grow, self.pace_offset = float(lambda0), float(T_grow), int(pace_offset)
        self.start_epoch, self.salt = int(start_epoch), int(salt)
        self._cache: Optional[Tuple[int, torch.Tensor]] = None

    def fraction(self, epoch: int) -> float:
        return pacing(epoch - self.start_epoch + self.pace_offset, self.lambda0, self.T_grow)

    def num_used(self, epoch: int) -> int:
        return prefix_size(self.num_samples, self.fraction(epoch))

    def indices(self, epoch: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != epoch:
            m = self.num_used(epoch)
            perm = torch.randperm(m, generator=epoch_generator(self.seed, epoch, self.salt))
            self._cache = (epoch, self.ranking[:m][perm])
        return self._cache[1]

    def state_dict(self) -> Dict[str, Any]:
        return {"ranking": self.ranking, "start_epoch": self.start_epoch}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state:
            self.ranking, self.start_epoch = state["ranking"], int(state["start_epoch"])
            self._cache = None


class BiasedOrder(EpochOrder):
    """BSS-L order drawn from per-sample probabilities ``p`` (seeded per epoch).

    ``biased_permutation``: ``n`` draws *without* replacement, i.e. every sample exactly once, balanced
    (high-p) samples tending to come earlier — how the released code realises "sampling by p" [CODE].
    ``with_replacement``: ``n`` i.i.d. draws from ``p`` (some samples repeat, some are skipped) [PAPER,
    literal reading].
    """

    MODES = ("biased_permutation", "with_replacement")

    def __init__(self, probs: torch.Tensor, seed: int, mode: str = "biased_permutation", salt: int = _SALT_L):
        super().__init__(len(probs), seed)
        if mode not in self.MODES:
            raise ValueError(f"bss-l: sampling_mode must be one of {self.MODES}, got {mode!r}")
        self.probs = probs.detach().double().cpu()
        self.mode, self.salt = mode, int(salt)
        self._cache: Optional[Tuple[int, torch.Tensor]] = None

    def indices(self, epoch: int) -> torch.Tensor:
        if self._cache is None or self._cache[0] != epoch:
            g = epoch_generator(self.seed, epoch, self.salt)
            idx = torch.multinomial(self.probs, self.num_samples, replacement=self.mode == "with_replacement",
                                    generator=g)
            self._cache = (epoch, idx)
        return self._cache[1]

    def state_dict(self) -> Dict[str, Any]:
        return {"probs": self.probs, "mode": self.mode}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        if state:
            self.probs, self.mode, self._cache = state["probs"], state["mode"], None


class _ScoringBatcher(Batcher):
    """Fixed-size batches in order; in train mode a trailing batch of one sample is avoided (BatchNorm
    cannot normalise a single sample) by making the last two batches ``bs − 1`` and ``2``."""

    def __init__(self, batch_size: int, avoid_singleton: bool):
        self.batch_size, self.avoid_singleton = int(batch_size), bool(avoid_singleton)

    def _sizes(self, n: int) -> List[int]:
        bs = self.batch_size
        sizes = [bs] * (n // bs) + ([n % bs] if n % bs else [])
        if self.avoid_singleton and len(sizes) > 1 and sizes[-1] == 1 and bs > 2:
            sizes[-2:] = [bs - 1, 2]
        return sizes

    def batches(self, order, epoch) -> Iterator[IndexBatch]:
        start = 0
        for size in self._sizes(len(order)):
            yield IndexBatch(order[start:start + size].tolist())
            start += size

    def num_batches(self, num_indices: int) -> int:
        return len(self._sizes(num_indices))


# =============================================================================== shared plug-in machinery
class _BSSBase(Plugin):
    """Scoring machinery shared by ``bss-h`` and ``bss-l`` (see their docstrings for the options)."""

    wants_unimodal_loss = True
    replaces = "order"
    SCORE_MODES = ("eval", "train")
    SCORE_SOURCES = ("pass", "previous_epoch")

    def _init_common(self, criteria, criterion_weight, loss_weights, score_mode, score_source, score_batch_size):
        self.criteria = parse_criteria(criteria)
        self.criterion_weight = float(criterion_weight)
        if not 0.0 <= self.criterion_weight <= 1.0:
            raise ValueError(f"{self.name}: criterion_weight must be in [0, 1], got {criterion_weight}")
        if loss_weights is not None:
            if isinstance(loss_weights, (int, float)) or len(loss_weights) != 2:
                raise ValueError(f"{self.name}: loss_weights must be [fused_weight, unimodal_weight], "
                                 f"got {loss_weights!r}")
            loss_weights = (float(loss_weights[0]), float(loss_weights[1]))
        self.loss_weights = loss_weights
        if score_mode not in self.SCORE_MODES:
            raise ValueError(f"{self.name}: score_mode must be one of {self.SCORE_MODES}, got {score_mode!r}")
        self.score_mode = score_mode
        if score_source not in self.SCORE_SOURCES:
            raise ValueError(f"{self.name}: score_source must be one of {self.SCORE_SOURCES}, "
                             f"got {score_source!r}")
        self.score_source = score_source
        if score_batch_size is not None and int(score_batch_size) < 1:
            raise ValueError(f"{self.name}: score_batch_size must be >= 1, got {score_batch_size}")
        self.score_batch_size = score_batch_size
        # previous-epoch statistics: persistent raw criterion values [n, K] (CPU) and this epoch's
        # accumulators (device; summed per index, so duplicates and DDP shards average correctly)
        self._values: Optional[torch.Tensor] = None
        self._acc_sum: Optional[torch.Tensor] = None
        self._acc_cnt: Optional[torch.Tensor] = None
        self._recording = False
        self._weights: Tuple[float, float] = (1.0, 1.0)

    # ------------------------------------------------------------------ checks
    def check_compatible(self, plugins: List[Plugin]) -> None:
        if self.score_source == "previous_epoch":
            step = [p.name for p in plugins if p.overrides_step]
            if step:
                raise IncompatiblePluginsError(
                    f"{self.name}: score_source='previous_epoch' reads the training forward in after_forward, "
                    f"which {step[0]!r} replaces with its own step; use score_source='pass'")

    def _setup(self, trainer) -> None:
        mods = list(trainer.active_modalities)
        if any(c in AGREEMENT for c in self.criteria) and len(mods) < 2:
            raise ValueError(f"{self.name}: the similarity criteria need >= 2 modalities, the run has {mods}")
        if "feat_sim" in self.criteria:
            dims = {m: int(trainer.model.encoders[m].out_dim) for m in mods}
            if len(set(dims.values())) > 1:
                raise ValueError(f"{self.name}: criterion 'feat_sim' needs encoders with equal feature sizes, "
                                 f"got {dims}; set model.feature_dim or use criteria=pred_sim+loss")
        self._weights = self.loss_weights or (trainer.fused_loss_weight, trainer.unimodal_loss_weight)
        n, k = len(trainer.splits.train), len(self.criteria)
        if self.score_source == "previous_epoch":
            if self._acc_sum is None:
                self._acc_sum = torch.zeros(n, k, device=trainer.device)
                self._acc_cnt = torch.zeros(n, device=trainer.device)
            else:  # restored from a checkpoint (CPU)
                self._acc_sum = self._acc_sum.to(trainer.device)
                self._acc_cnt = self._acc_cnt.to(trainer.device)

    # ------------------------------------------------------------------ scoring
    def _sync(self, trainer, t: torch.Tensor) -> torch.Tensor:
        """Mean over DDP ranks (identity on one process): every rank then holds bit-identical scores."""
        if trainer.world_size == 1:
            return t
        return trainer.all_reduce(t.to(trainer.device), "mean").cpu()

    @torch.no_grad()
    def scoring_pass(self, trainer) -> torch.Tensor:
        """Raw criterion values ``[n, K]`` (CPU) from one forward over the training split in fixed order.

        ``score_mode='eval'``: eval mode, evaluation transforms, no grad [RECON, default].
        ``score_mode='train'``: train mode (BatchNorm uses and updates batch statistics, dropout on) and
        training transforms, as the audio-visual release code does [CODE]. Every DDP rank scores the
        whole set (same weights, same data) and the result is averaged once so ranks agree bit-for-bit.
        """
        model, src = trainer.model, trainer.splits.train
        train_mode = self.score_mode == "train"
        was_training = model.training
        model.train(train_mode)
        if hasattr(src, "set_train"):
            src.set_train(train_mode)
        bs = int(self.score_batch_size or (trainer.cfg.train.batch_size if train_mode
                                           else trainer.cfg.eval.batch_size))
        sampler = EpochBatchSampler(SequentialOrder(len(src)), _ScoringBatcher(bs, train_mode))
        mods = list(trainer.active_modalities)
        chunks = []
        try:
            for batch in trainer.loader("train", sampler, mods):
                batch = trainer.to_device(batch, "train", train=train_mode)
                if train_mode:  # bypass a DDP wrapper: no collectives in this rank-local pass
                    with trainer.autocast():
                        out = model({m: batch["inputs"][m] for m in mods}, fuse=True)
                else:
                    out = trainer.forward(batch["inputs"])
                chunks.append(self._criteria_matrix(out, batch["y"]))
        finally:
            model.train(was_training)
        return self._sync(trainer, torch.cat(chunks).float().cpu())

    def _criteria_matrix(self, out, y: torch.Tensor, rows: Optional[int] = None) -> torch.Tensor:
        n = out.n_pair if rows is None else rows
        logits = {m: z[:n].detach() for m, z in out.logits.items()}
        feats = ({m: f[:n].detach() for m, f in out.features.items()} if "feat_sim" in self.criteria else None)
        fused = out.fused[:n].detach() if out.fused is not None else None
        vals = per_sample_criteria(logits, y[:n], fused, feats, self.criteria, self._weights)
        return torch.stack([vals[c].float() for c in self.criteria], dim=1)

    def _consume_statistics(self, trainer) -> bool:
        """Fold the previous epoch's recorded statistics into the persistent values; True if any."""
        if self._acc_sum is None:
            return False
        acc, cnt = self._acc_sum, self._acc_cnt
        if trainer.world_size > 1:
            acc, cnt = trainer.all_reduce(acc, "sum"), trainer.all_reduce(cnt, "sum")
        acc, cnt = acc.cpu().clone(), cnt.cpu().clone()  # .cpu() is not a copy on a CPU run
        self._acc_sum.zero_()
        self._acc_cnt.zero_()
        seen = cnt > 0
        if not bool(seen.any()):
            return False
        fresh = acc[seen] / cnt[seen, None]
        if self._values is None:
            # samples never visited yet keep NaN until a pass fills them (handled by the caller)
            self._values = torch.full((len(cnt), len(self.criteria)), float("nan"))
        self._values[seen] = fresh
        return True

    def _raw_values(self, trainer, epoch: int, stats_available: bool) -> Tuple[torch.Tensor, str, float]:
        """Raw criterion values for a scoring at ``epoch``: recorded statistics if configured and complete,
        else a scoring pass. Returns (values, source used, seconds)."""
        t0 = time.perf_counter()
        if (self.score_source == "previous_epoch" and stats_available and self._values is not None
                and not bool(torch.isnan(self._values).any())):
            return self._values.clone(), "previous_epoch", time.perf_counter() - t0
        vals = self.scoring_pass(trainer)
        if self.score_source == "previous_epoch":
            self._values = vals.clone()  # fills samples a with-replacement epoch or drop_last skipped
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        return vals, "pass", time.perf_counter() - t0

    def _scores(self, values: torch.Tensor) -> torch.Tensor:
        return combine_criteria({c: values[:, i] for i, c in enumerate(self.criteria)}, self.criterion_weight)

    def _log_values(self, trainer, values: torch.Tensor) -> None:
        for i, c in enumerate(self.criteria):
            trainer.log(f"{self.name}/{c}_mean", float(values[:, i].mean()))

    def _log_summary(self, trainer, prefix: str, s: torch.Tensor, hist: bool = True) -> None:
        lo, hi = score_range(self.criterion_weight)
        summ = summarize_scores(s, lo, hi)
        h = summ.pop("hist")
        for k, v in summ.items():
            trainer.log(f"{self.name}/{prefix}_{k}", v)
        if hist:
            trainer.log(f"{self.name}/{prefix}_hist", h)
            trainer.log(f"{self.name}/{prefix}_hist_range", [lo, hi])

    # ------------------------------------------------------------------ recording (previous_epoch)
    def after_forward(self, trainer, batch, out) -> None:
        if not self._recording or out is None or out.n_pair == 0:
            return
        # nested (DUS) batches: only the leading, complete rows have every head and the fused logits
        n = out.n_pair
        vals = self._criteria_matrix(out, batch["y"], rows=n)
        idx = batch["index"][:n].to(self._acc_sum.device)
        self._acc_sum.index_add_(0, idx, vals.to(self._acc_sum.dtype))
        self._acc_cnt.index_add_(0, idx, torch.ones(n, device=self._acc_cnt.device))

    # ------------------------------------------------------------------ state
    def _common_state(self) -> Dict[str, Any]:
        def copy(t):  # buffers are updated in place later; a checkpoint must hold a snapshot
            return t.detach().cpu().clone() if t is not None else None

        return {"values": copy(self._values), "acc_sum": copy(self._acc_sum), "acc_cnt": copy(self._acc_cnt)}

    def _load_common(self, state: Dict[str, Any]) -> None:
        self._values = state.get("values")
        self._acc_sum, self._acc_cnt = state.get("acc_sum"), state.get("acc_cnt")


def _parse_score_at(score_at) -> int:
    if score_at in ("init", None):
        return 0
    try:
        w = int(score_at)
    except (TypeError, ValueError):
        raise ValueError(f"bss-h: score_at must be 'init' or a number of warm-up epochs, got {score_at!r}") from None
    if w < 0 or (isinstance(score_at, float) and not float(score_at).is_integer()):
        raise ValueError(f"bss-h: score_at must be 'init' or a number of warm-up epochs >= 0, got {score_at!r}")
    return w


# =============================================================================== BSS-H
@METHODS.register("bss-h")
class BSSHeuristic(_BSSBase):
    """BSS-H: score once, rank balanced-first, train on a growing prefix (root pacing) [PAPER §2.3].

    At epoch ``t`` the epoch visits a seeded random permutation of the top ``⌊n·λ(t')⌋`` samples of the
    ranking, ``λ(t') = min(1, sqrt((1−λ0²)/T_grow·t' + λ0²))``, ``t' = t − t_score + pace_offset``.
    Steps per epoch therefore grow with ``λ``; the LR scheduler still steps once per epoch (as the code).

    Args:
        criteria: criteria of the measurer, subset of ``pred_sim``, ``feat_sim``, ``loss``, ``grad_mag``
            (list or ``"a+b"``). Default ``pred_sim+loss`` [PAPER].
        criterion_weight: ``w`` in ``s = 2(w·A − (1−w)·B)``; 0.5 = the paper's ``sim_norm − loss_norm``
            [PAPER]; other values: a reading of Fig. 3(a)'s undefined α [RECON].
        loss_weights: ``[fused, unimodal]`` weights of the per-sample loss criterion; None = the training
            weights (``train.fused_loss_weight`` and the unimodal weight, 1 and 1) [PAPER]; the CREMA-D
            code uses ``[0.1, 0.9]`` [CODE].
        lambda0: initial data fraction λ0. Default 0.1 [CODE].
        T_grow: pacing clock value at which the full set is reached. Default 40 [CODE] (needs >= 40
            epochs; set it below ``train.epochs`` for short runs).
        pace_offset: added to the epoch index: 1 = the code's ``epoch + 1`` (epoch 0 uses ≈ 18.6 % with
            the defaults, epoch 39 the full set) [CODE]; 0 = the formula read literally (epoch 0 uses λ0).
        score_at: ``"init"`` = score the freshly initialised network before epoch 0 [CODE]; an integer
            ``w`` = train ``w`` ordinary shuffled epochs first, score at the start of epoch ``w``, and start
            the pacing clock there [RECON: an untrained net scores almost at random].
        score_mode: ``eval`` (eval mode, no grad, eval transforms; default) [RECON] or ``train`` (train
            mode and training transforms, BN statistics updated, as the audio-visual code) [CODE].
        score_source: ``pass`` = an extra forward pass over the training set [CODE]; ``previous_epoch`` =
            the statistics recorded during the training forward of the epoch before (only possible with
            ``score_at >= 1``; with ``init`` there is no such epoch and the pass is used) [RECON].
        score_batch_size: batch size of the scoring pass; None = ``train.batch_size`` in train mode (as
            the code), ``eval.batch_size`` in eval mode (results do not depend on it there).
    """

    def __init__(self, criteria: Union[str, Sequence[str]] = DEFAULT_CRITERIA, criterion_weight: float = 0.5,
                 loss_weights: Optional[Sequence[float]] = None, lambda0: float = 0.1, T_grow: float = 40,
                 pace_offset: int = 1, score_at: Union[str, int] = "init", score_mode: str = "eval",
                 score_source: str = "pass", score_batch_size: Optional[int] = None):
        self.name = "bss-h"
        self._init_common(criteria, criterion_weight, loss_weights, score_mode, score_source, score_batch_size)
        pacing(0, lambda0, T_grow)  # validates lambda0 and T_grow
        self.lambda0, self.T_grow, self.pace_offset = float(lambda0), float(T_grow), int(pace_offset)
        self.warmup = _parse_score_at(score_at)
        self.scores: Optional[torch.Tensor] = None
        self.ranking: Optional[torch.Tensor] = None
        self.scored_epoch: Optional[int] = None

    def on_fit_start(self, trainer) -> None:
        self._setup(trainer)
        if self.ranking is not None and len(self.ranking) != len(trainer.splits.train):
            raise ValueError(f"bss-h: restored ranking has {len(self.ranking)} samples, the training split "
                             f"{len(trainer.splits.train)}")

    def on_epoch_start(self, trainer, epoch: int) -> None:
        stats = self._consume_statistics(trainer) if self.score_source == "previous_epoch" else False
        if self.ranking is None and epoch >= self.warmup:
            values, source, seconds = self._raw_values(trainer, epoch, stats)
            self.scores = self._scores(values)
            self.ranking = torch.argsort(self.scores, descending=True, stable=True)
            self.scored_epoch = epoch
            trainer.log(f"{self.name}/scored", 1)
            trainer.log(f"{self.name}/score_time_s", seconds)
            trainer.log(f"{self.name}/score_from_pass", int(source == "pass"))
            self._log_values(trainer, values)
            self._log_summary(trainer, "score", self.scores)
        # record during the warm-up epochs; later visits overwrite earlier ones, so each sample keeps the
        # statistics of its latest visit (a sample no warm-up epoch visited sends the scoring to a pass)
        self._recording = self.score_source == "previous_epoch" and self.ranking is None
        n = len(trainer.splits.train)
        if self.ranking is None:  # warm-up: ordinary shuffling over the full set
            trainer.log(f"{self.name}/fraction", 1.0)
            trainer.log(f"{self.name}/n_used", n)
            return
        order = CurriculumOrder(self.ranking, trainer.cfg.train.seed, self.lambda0, self.T_grow,
                                self.pace_offset, self.scored_epoch)
        trainer.train_order = order
        m = order.num_used(epoch)
        trainer.log(f"{self.name}/fraction", order.fraction(epoch))
        trainer.log(f"{self.name}/n_used", m)
        trainer.log(f"{self.name}/used_score_mean", float(self.scores[self.ranking[:m]].mean()))
        trainer.log(f"{self.name}/used_score_min", float(self.scores[self.ranking[m - 1]]))

    def state_dict(self) -> Dict[str, Any]:
        return {"scores": self.scores, "ranking": self.ranking, "scored_epoch": self.scored_epoch,
                **self._common_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.scores, self.ranking, self.scored_epoch = state["scores"], state["ranking"], state["scored_epoch"]
        self._load_common(state)


# =============================================================================== BSS-L
@METHODS.register("bss-l")
class BSSLearned(_BSSBase):
    """BSS-L: re-score every ``E`` epochs, EMA-smooth, sample by ``p = softmax(ŝ)`` [PAPER §2.4].

    Every epoch installs a :class:`BiasedOrder` drawn from ``p``; by default a p-biased permutation
    (every sample once per epoch, balanced ones earlier, fixed steps per epoch).

    Args:
        criteria, criterion_weight, loss_weights, score_mode, score_batch_size: as in :class:`BSSHeuristic`.
        E: re-score every ``E`` epochs (at epochs 0, E, 2E, …). Default 1 [CODE; paper: "every E epochs"].
        beta: EMA factor, ``ŝ ← (1−β)·ŝ + β·s`` (β = weight of the new score). Default 0.6 (best in
            Fig. 3(b)) [PAPER]; 1 = no smoothing.
        prob_mode: ``softmax`` (``p ∝ exp ŝ``) [PAPER] or ``linear`` (``p ∝ linear_offset + ŝ``) [CODE].
        sampling_mode: ``biased_permutation`` (multinomial without replacement over all ``n``) [CODE] or
            ``with_replacement`` (``n`` i.i.d. draws from p) [PAPER, literal reading].
        linear_offset: offset of the linear weights: 1.01 [CODE] (NVGesture script: 1.0).
        code_compat: reproduce the released ``train-SPL.py``: linear weights ``1.01 + s``, biased
            permutation, E = 1, no EMA (β = 1), train-mode scoring [CODE]. Conflicting explicit options
            are refused. (The code also uses ``drop_last=True``: set ``train.drop_last=true``.)
        score_source: ``pass`` = an extra forward pass over the training set at every re-scoring [CODE];
            ``previous_epoch`` = per-sample statistics recorded during the previous epoch's training
            forward (train mode, weights changing during the epoch, no extra pass); epoch 0 and samples
            not yet visited use a pass [RECON].
    """

    def __init__(self, criteria: Union[str, Sequence[str]] = DEFAULT_CRITERIA, criterion_weight: float = 0.5,
                 loss_weights: Optional[Sequence[float]] = None, E: int = 1, beta: Optional[float] = None,
                 prob_mode: Optional[str] = None, sampling_mode: Optional[str] = None,
                 linear_offset: float = 1.01, code_compat: bool = False, score_mode: Optional[str] = None,
                 score_source: str = "pass", score_batch_size: Optional[int] = None):
        self.name = "bss-l"
        self.code_compat = bool(code_compat)
        if self.code_compat:
            forced = {"E": (E, 1), "beta": (beta, 1.0), "prob_mode": (prob_mode, "linear"),
                      "sampling_mode": (sampling_mode, "biased_permutation"), "score_mode": (score_mode, "train")}
            for k, (given, want) in forced.items():
                if given is not None and given != want and not (k == "E" and int(given) == want):
                    raise ValueError(f"bss-l: code_compat=true fixes {k}={want!r} (the released code); "
                                     f"got {k}={given!r}. Drop {k} or set code_compat=false")
            beta, prob_mode, sampling_mode, score_mode = 1.0, "linear", "biased_permutation", "train"
        beta = 0.6 if beta is None else float(beta)
        prob_mode = prob_mode or "softmax"
        sampling_mode = sampling_mode or "biased_permutation"
        score_mode = score_mode or "eval"
        self._init_common(criteria, criterion_weight, loss_weights, score_mode, score_source, score_batch_size)
        if int(E) < 1 or float(E) != int(E):
            raise ValueError(f"bss-l: E (re-scoring interval in epochs) must be an integer >= 1, got {E!r}")
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"bss-l: beta must be in (0, 1], got {beta}")
        if prob_mode not in ("softmax", "linear"):
            raise ValueError(f"bss-l: prob_mode must be 'softmax' or 'linear', got {prob_mode!r}")
        if sampling_mode not in BiasedOrder.MODES:
            raise ValueError(f"bss-l: sampling_mode must be one of {BiasedOrder.MODES}, got {sampling_mode!r}")
        self.E, self.beta, self.prob_mode, self.sampling_mode = int(E), beta, prob_mode, sampling_mode
        self.linear_offset = float(linear_offset)
        self.s_hat: Optional[torch.Tensor] = None  # smoothed scores used for sampling
        self.last_scores: Optional[torch.Tensor] = None  # the latest fresh scores s^k
        self.num_scorings = 0
        self.last_scored_epoch: Optional[int] = None

    def on_fit_start(self, trainer) -> None:
        self._setup(trainer)
        if self.s_hat is not None and len(self.s_hat) != len(trainer.splits.train):
            raise ValueError(f"bss-l: restored scores cover {len(self.s_hat)} samples, the training split "
                             f"{len(trainer.splits.train)}")

    def probabilities(self) -> torch.Tensor:
        return sampling_probabilities(self.s_hat, self.prob_mode, self.linear_offset)

    def on_epoch_start(self, trainer, epoch: int) -> None:
        stats = self._consume_statistics(trainer) if self.score_source == "previous_epoch" else False
        rescore = self.s_hat is None or epoch % self.E == 0
        if rescore:
            values, source, seconds = self._raw_values(trainer, epoch, stats)
            s = self._scores(values)
            if self.last_scores is not None:
                trainer.log(f"{self.name}/rank_corr_prev", spearman(self.last_scores, s))
            self.s_hat = ema_update(self.s_hat, s, self.beta)
            self.last_scores = s
            self.num_scorings += 1
            self.last_scored_epoch = epoch
            trainer.log(f"{self.name}/score_time_s", seconds)
            trainer.log(f"{self.name}/score_from_pass", int(source == "pass"))
            self._log_values(trainer, values)
            self._log_summary(trainer, "fresh", s, hist=False)
        trainer.log(f"{self.name}/rescored", int(rescore))
        self._recording = self.score_source == "previous_epoch" and (epoch + 1) % self.E == 0
        p = self.probabilities()
        trainer.train_order = BiasedOrder(p, trainer.cfg.train.seed, self.sampling_mode)
        n = len(p)
        self._log_summary(trainer, "score", self.s_hat)
        trainer.log(f"{self.name}/p_max_x_n", float(p.max()) * n)
        trainer.log(f"{self.name}/p_min_x_n", float(p.min()) * n)
        trainer.log(f"{self.name}/ess_fraction", float(1.0 / (p.pow(2).sum() * n)))

    def state_dict(self) -> Dict[str, Any]:
        return {"s_hat": self.s_hat, "last_scores": self.last_scores, "num_scorings": self.num_scorings,
                "last_scored_epoch": self.last_scored_epoch, **self._common_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.s_hat, self.last_scores = state["s_hat"], state["last_scores"]
        self.num_scorings, self.last_scored_epoch = int(state["num_scorings"]), state["last_scored_epoch"]
        self._load_common(state)


__all__ = ["BSSHeuristic", "BSSLearned", "BiasedOrder", "CurriculumOrder", "CRITERIA", "balance_scores",
           "combine_criteria", "ema_update", "minmax_normalise", "mean_pairwise_cosine", "pacing",
           "per_sample_criteria", "prefix_size", "sampling_probabilities", "score_range", "spearman",
           "summarize_scores"]
