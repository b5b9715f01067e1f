"""The scoring machinery shared by BSS-H and BSS-L: options, the scoring pass, previous-epoch statistics."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, TYPE_CHECKING, Tuple

import torch

from ...diagnostics.scores import summarize_scores
from ...engine.compat import IncompatiblePluginsError
from ...engine.options import option
from ...engine.plugin import Plugin
from ...engine.samplers import EpochBatchSampler, SequentialOrder
from ..common import feature_sizes
from .measurer import AGREEMENT, CRITERIA, DEFAULT_CRITERIA, combine_criteria, parse_criteria, per_sample_criteria, \
    score_range
from .orders import _ScoringBatcher

if TYPE_CHECKING:
    from ...data.batch import Batch
    from ...engine.samplers import EpochOrder
    from ...engine.trainer import Trainer
    from ...models.net import ModelOutput


@dataclass
class ScoringOptions:
    """Options of the measurer and of how scores are obtained (both BSS plug-ins)."""

    criteria: Any = option(DEFAULT_CRITERIA, "criteria of the measurer, a subset of pred_sim, feat_sim, loss, "
                           "grad_mag (list or 'a+b')", "[PAPER: pred_sim+loss]")
    criterion_weight: float = option(0.5, "w in s = 2(w*A - (1-w)*B); 0.5 = the paper's sim_norm - loss_norm "
                                     "[PAPER]; other values: a reading of Fig. 3(a)'s undefined alpha [RECON]",
                                     "[PAPER]", ge=0, le=1)
    loss_weights: Optional[List[float]] = option(None, "[fused, unimodal] weights of the per-sample loss "
                                                 "criterion; null = the training weights [PAPER]; the CREMA-D code "
                                                 "uses [0.1, 0.9] [CODE]", "[PAPER]")
    score_mode: Optional[str] = option("eval", "eval: eval mode, no grad, eval transforms [RECON]; train: train "
                                       "mode and training transforms, BN statistics updated, as the audio-visual "
                                       "code [CODE]", "[RECON]", choices=("eval", "train"))
    score_source: str = option("pass", "pass: an extra forward pass over the training set [CODE]; previous_epoch: "
                               "statistics recorded during the previous epoch's training forward [RECON]",
                               "[CODE]", choices=("pass", "previous_epoch"))
    score_batch_size: Optional[int] = option(None, "batch size of the scoring pass; null = train.batch_size in "
                                             "train mode (as the code), eval.batch_size in eval mode", "[CODE]",
                                             ge=1)


class BSSBase(Plugin):
    """Scoring machinery shared by ``bss-h`` and ``bss-l`` (see their docstrings)."""

    Options = ScoringOptions
    wants_unimodal_loss = True
    # options as validate() leaves them
    criteria: Tuple[str, ...]
    loss_weights: Optional[Tuple[float, float]]

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # previous-epoch statistics: persistent raw criterion values [n, K] (CPU) and this epoch's
        # accumulators (device; summed per index, so duplicates and DDP shards average correctly)
        self._values: Optional[torch.Tensor] = None
        self._acc_sum: Optional[torch.Tensor] = None
        self._acc_cnt: Optional[torch.Tensor] = None
        self._recording = False
        self._weights: Tuple[float, float] = (1.0, 1.0)
        self._order: Optional[EpochOrder] = None

    def validate(self) -> None:
        try:
            self.criteria = parse_criteria(self.criteria)
        except ValueError as e:
            raise self.option_error("criteria", f"a subset of {', '.join(CRITERIA)} ({e})", self.criteria) from None
        if self.loss_weights is not None:
            if len(self.loss_weights) != 2:
                raise self.option_error("loss_weights", "[fused_weight, unimodal_weight]", self.loss_weights)
            self.loss_weights = (float(self.loss_weights[0]), float(self.loss_weights[1]))

    def epoch_order(self, trainer: Trainer, epoch: int) -> Optional[EpochOrder]:
        return self._order

    # ------------------------------------------------------------------ checks
    def check_compatible(self, plugins: List[Plugin]) -> None:
        if self.score_source == "previous_epoch":
            step = [p.name for p in plugins if "training_step" in p.provides()]
            if step:
                raise IncompatiblePluginsError(
                    f"{self.name}: score_source='previous_epoch' reads the training forward in after_forward, "
                    f"which {step[0]!r} replaces with its own step; use score_source='pass'")

    def _setup(self, trainer) -> None:
        mods = list(trainer.active_modalities)
        if any(c in AGREEMENT for c in self.criteria) and len(mods) < 2:
            raise ValueError(f"{self.name}: the similarity criteria need >= 2 modalities, the run has {mods}")
        if "feat_sim" in self.criteria:
            dims = feature_sizes(trainer.model, mods)
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
                assert self._acc_cnt is not None  # saved and restored with _acc_sum
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
        bs = int(self.score_batch_size or (trainer.cfg.train.batch_size if train_mode
                                           else trainer.cfg.eval.batch_size))
        sampler = EpochBatchSampler(SequentialOrder(len(src)), _ScoringBatcher(bs, train_mode))
        mods = list(trainer.active_modalities)
        chunks = []
        # no RNG fork: the scoring loader draws from the run's stream, as when the published grids ran
        with trainer.side_pass(train=train_mode, fork_rng=False):
            trainer.data.set_split_mode("train", train_mode)
            for batch in trainer.data.loader("train", sampler, mods):
                batch = trainer.data.to_device(batch, "train", train=train_mode)
                if train_mode:  # bypass a DDP wrapper: no collectives in this rank-local pass
                    with trainer.autocast():
                        out = model({m: batch.inputs[m] for m in mods}, fuse=True)
                else:
                    out = trainer.forward(batch.inputs)
                chunks.append(self._criteria_matrix(out, batch))
        return self._sync(trainer, torch.cat(chunks).float().cpu())

    def _criteria_matrix(self, out, batch) -> torch.Tensor:
        """Raw criterion values ``[n_pair, K]`` of the paired rows (nested DUS batches: only those rows have
        every head and the fused logits)."""
        n = out.n_pair
        logits = {m: z[:n].detach() for m, z in out.logits.items()}
        feats = ({m: f[:n].detach() for m, f in out.features.items()} if "feat_sim" in self.criteria else None)
        fused = out.fused[:n].detach() if out.fused is not None else None
        vals = per_sample_criteria(logits, batch.paired_labels(), fused, feats, self.criteria, self._weights)
        return torch.stack([vals[c].float() for c in self.criteria], dim=1)

    def _consume_statistics(self, trainer) -> bool:
        """Fold the previous epoch's recorded statistics into the persistent values; True if any."""
        acc_sum, acc_cnt = self._acc_sum, self._acc_cnt
        if acc_sum is None or acc_cnt is None:  # both exist or neither
            return False
        acc, cnt = acc_sum, acc_cnt
        if trainer.world_size > 1:
            acc, cnt = trainer.all_reduce(acc, "sum"), trainer.all_reduce(cnt, "sum")
        acc, cnt = acc.cpu().clone(), cnt.cpu().clone()  # .cpu() is not a copy on a CPU run
        acc_sum.zero_()
        acc_cnt.zero_()
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
            self.log(f"{c}_mean", float(values[:, i].mean()))

    def _log_summary(self, trainer, prefix: str, s: torch.Tensor, hist: bool = True) -> None:
        lo, hi = score_range(self.criterion_weight)
        summ = summarize_scores(s, lo, hi)
        h = summ.pop("hist")
        for k, v in summ.items():
            self.log(f"{prefix}_{k}", v)
        if hist:
            self.log(f"{prefix}_hist", h)
            self.log(f"{prefix}_hist_range", [lo, hi])

    # ------------------------------------------------------------------ recording (previous_epoch)
    def after_forward(self, trainer: Trainer, batch: Batch, out: ModelOutput) -> None:
        if not self._recording or out is None or out.n_pair == 0:
            return
        acc_sum, acc_cnt = self._acc_sum, self._acc_cnt
        assert acc_sum is not None and acc_cnt is not None, "_setup allocates them for score_source=previous_epoch"
        vals = self._criteria_matrix(out, batch)
        idx = batch.paired_index().to(acc_sum.device)
        acc_sum.index_add_(0, idx, vals.to(acc_sum.dtype))
        acc_cnt.index_add_(0, idx, torch.ones(len(idx), device=acc_cnt.device))

    # ------------------------------------------------------------------ state
    def _common_state(self) -> Dict[str, Any]:
        def copy(t):  # buffers are updated in place later; a checkpoint must hold a snapshot
            return t.detach().cpu().clone() if t is not None else None

        return {"values": copy(self._values), "acc_sum": copy(self._acc_sum), "acc_cnt": copy(self._acc_cnt)}

    def _load_common(self, state: Dict[str, Any]) -> None:
        self._values = state.get("values")
        self._acc_sum, self._acc_cnt = state.get("acc_sum"), state.get("acc_cnt")
