"""Monitoring, batching, logging and state shared by DUS-H and DUS-RL (see their docstrings)."""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, TYPE_CHECKING

import torch

from ...engine.options import option
from ...engine.plugin import Plugin, Record
from ...functional.common import true_class_probability
from .allocation import allocate_sizes, discrepancy, heuristic_sizes, modality_scores, update_running_score
from .batcher import DUSBatcher
from .readback import ScoreReadback

if TYPE_CHECKING:
    from ...data.batch import Batch
    from ...engine.samplers import Batcher
    from ...engine.trainer import Trainer
    from ...models.net import ModelOutput, MultimodalNet


@dataclass
class DUSOptions:
    """Options shared by DUS-H and DUS-RL (all [RECON] unless noted: the paper's method section is not
    public; spec §3.3)."""

    base_batch: Optional[int] = option(None, "N_B, the base per-modality batch size; null = train.batch_size "
                                       "(spec §3.3: 64 CREMA-D/KS, 32 Twitter/Sarcasm)", "[RECON]", ge=1)
    min_scale: float = option(0.5, "lower bound n_min = ceil(min_scale * N_B) (spec: N_B/2)", "[RECON]", gt=0, le=1)
    max_scale: float = option(2.0, "upper bound n_max = floor(max_scale * N_B) (spec: 2 N_B)", "[RECON]", ge=1)
    gamma: float = option(1.0, "exponent of the heuristic N_B * rho^(-gamma) (DUS-RL: only during warm-up)",
                          "[RECON]")
    preserve_budget: bool = option(True, "rescale the sizes within the bounds so that sum_j n_j = M * N_B (same "
                                   "compute and steps per epoch as plain training)", "[RECON, spec default]")
    ema_momentum: Optional[float] = option(None, "null keeps the paper's cumulative running mean s_t = (t-1)/t "
                                           "s_{t-1} + s_t/t [SEC]; a value mu uses an EMA instead (reacts to late "
                                           "changes)", "[SEC]", ge=0, lt=1)
    update_every: int = option(1, "decide new sizes every K steps (each decision reads the scores back to the host "
                               "once; K > 1 amortises that sync on a GPU)", "[RECON]", ge=1)
    epoch_budget: Optional[int] = option(None, "samples per modality per epoch; null = the length of the epoch's "
                                         "order (what plain training consumes)", "[RECON]", ge=1)
    pairing: str = option("nested", "nested: one draw of n_max indices, modality j uses the first n_j (spec §3.3); "
                          "independent: a shared paired part, then each modality's own extra samples", "[RECON]",
                          choices=("nested", "independent"))
    size_multiple: int = option(1, "quantise every size to a multiple of this (size buckets for CUDA graphs: 8 with "
                                "N_B = 64 leaves 9 combinations for two modalities); must divide M * N_B", "[RECON]",
                                ge=1)
    decision_lag: int = option(0, "0: the sizes of step t+1 are decided from the scores after step t (the paper's "
                               "semantics; on a GPU the host waits for step t at every decision); 1: from the "
                               "scores after step t-1, copied to the host without blocking while step t runs: the "
                               "same decisions, each applied one step later (docs/methods/dus.md)", "[RECON]",
                               ge=0, le=1)


class DUSBase(Plugin):
    """Monitoring, batching, logging and state shared by DUS-H and DUS-RL."""

    Options = DUSOptions
    wants_unimodal_loss = True
    priority = 40  # score update before other plug-ins' after_forward; the order is otherwise irrelevant

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # state
        self.t = 0  # monitored iterations
        self.s_hat: Optional[torch.Tensor] = None
        self.sizes: Optional[List[int]] = None
        self._since_decision = 0
        self._mm_sum: Optional[torch.Tensor] = None
        self._mm_count = 0
        self._seen_forward = False
        self._epoch_sizes: List[List[int]] = []
        self._in_flight: Optional[ScoreReadback] = None  # decision_lag=1: the last decision's values, not yet used

    # ------------------------------------------------------------------ setup
    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        self.modalities = list(trainer.active_modalities)
        if len(self.modalities) < 2:
            raise ValueError(f"{self.name}: DUS balances modalities and needs at least two; got {self.modalities}")
        self.N_B = int(self.base_batch or trainer.cfg.train.batch_size)
        self.n_lo = max(1, int(math.ceil(self.min_scale * self.N_B - 1e-9)))
        self.n_hi = max(self.n_lo, int(math.floor(self.max_scale * self.N_B + 1e-9)))
        try:  # fail at start-up, not at the first decision: the plain-training sizes through the same allocation
            self._allocate([self.N_B] * len(self.modalities))
        except ValueError as e:
            raise ValueError(f"{self.name}: method_args.{self.name}.size_multiple={self.size_multiple} does not "
                             f"fit N_B={self.N_B} with bounds [{self.n_lo}, {self.n_hi}]: {e}") from None
        if self.sizes is None:
            self.sizes = [self.N_B] * len(self.modalities)

    def on_fit_start(self, trainer: Trainer) -> None:
        if trainer.cfg.train.compile == "reduce-overhead" and self.size_multiple == 1:
            warnings.warn(f"{self.name} with train.compile=reduce-overhead: a CUDA graph is recorded for every new "
                          f"combination of per-modality batch sizes; set method_args.{self.name}.size_multiple=8 to "
                          f"bound them (sizes in steps of 8)", stacklevel=2)
        n = len(trainer.splits.train)
        budget = int(self.epoch_budget) if self.epoch_budget is not None else n
        self.total_steps = max(1, trainer.cfg.train.epochs * -(-budget // self.N_B))

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._epoch_sizes = []

    def batcher(self, trainer: Trainer, epoch: int) -> Optional[Batcher]:
        return DUSBatcher(self._next_sizes, self.modalities, self.N_B, self.epoch_budget, trainer.cfg.train.drop_last,
                          self.pairing)

    def _next_sizes(self) -> List[int]:
        assert self.sizes is not None, "configure_model (or a resumed state) sets the sizes"
        return list(self.sizes)

    # ------------------------------------------------------------------ monitoring
    @torch.no_grad()
    def _batch_scores(self, trainer, batch, out):
        """Mean true-class probability of each modality's head on its own rows, and of the fused head (sum
        of heads without one) on the paired rows."""
        dev = batch.y.device
        fused = (out.fused if out.fused is not None else sum(out.logits[m][: out.n_pair] for m in self.modalities)) \
            if out.n_pair > 0 else None
        if trainer.world_size == 1:
            s = modality_scores(out.logits, {m: batch.labels(m) for m in self.modalities}, self.modalities)
            mm = true_class_probability(fused, batch.paired_labels()).mean() if fused is not None else \
                torch.zeros((), device=dev)
            return s, mm
        # DDP: means over the *global* batch (sums and counts all-reduced), so that every rank holds the same
        # ŝ and therefore decides the same sizes for the next global batch
        sums, counts = [], []
        for m in self.modalities:
            sums.append(true_class_probability(out.logits[m], batch.labels(m)).sum())
            counts.append(torch.full((), float(out.logits[m].shape[0]), device=dev))  # no blocking H2D copy
        sums.append(true_class_probability(fused, batch.paired_labels()).sum() if fused is not None else
                    torch.zeros((), device=dev))
        counts.append(torch.full((), float(out.n_pair), device=dev))
        tot = trainer.all_reduce(torch.stack(sums + counts), "sum")
        k = len(self.modalities) + 1
        means = tot[:k] / tot[k:].clamp_min(1)
        return means[:-1], means[-1]

    def after_forward(self, trainer: Trainer, batch: Batch, out: ModelOutput) -> None:
        self._observe(trainer, batch, out)

    def _observe(self, trainer, batch, out):
        s, mm = self._batch_scores(trainer, batch, out)
        self.t += 1
        if self.s_hat is not None and self.s_hat.device != s.device:
            self.s_hat = self.s_hat.to(s.device)
        self.s_hat = update_running_score(self.s_hat, s, self.t, self.ema_momentum)
        self._mm_sum = mm if self._mm_sum is None else self._mm_sum.to(mm.device) + mm
        self._mm_count += 1
        self._seen_forward = True
        for j, m in enumerate(self.modalities):
            self.log_step(f"n/{m}", batch.sizes[m])
            self.log_step(f"s_hat/{m}", self.s_hat[j])
        self._epoch_sizes.append([batch.sizes[m] for m in self.modalities])

    @torch.no_grad()
    def _score_without_forward(self, trainer, batch):
        # A step strategy (MLA, ReconBoost) fired no after_forward: score the batch with an extra forward in
        # eval mode, so dropout and BatchNorm statistics are not disturbed.
        with trainer.side_pass(fork_rng=False):
            out = trainer.forward(batch.inputs)
        self._observe(trainer, batch, out)

    def after_step(self, trainer: Trainer, batch: Batch, out: Optional[ModelOutput]) -> None:
        if not self._seen_forward:
            self._score_without_forward(trainer, batch)
        self._seen_forward = False
        if self._in_flight is not None:  # decision_lag=1: the previous step's values have reached the host
            values, self._in_flight = self._in_flight.values(), None
            self._decide_from(trainer, values)
        self._since_decision += 1
        if self._since_decision >= self.update_every:
            self._since_decision = 0
            mm_sum, s_hat_t = self._mm_sum, self.s_hat
            assert mm_sum is not None and s_hat_t is not None, "_observe ran in this step"
            mm = mm_sum / max(self._mm_count, 1)
            values_t = torch.cat([s_hat_t.float(), mm.float().reshape(1)])
            self._mm_sum, self._mm_count = None, 0
            if self.decision_lag:
                self._in_flight = ScoreReadback(values_t)  # decided at the next step, without waiting now
            else:  # the one host sync of a decision: ŝ and the window's mean fused score, as Python floats
                self._decide_from(trainer, values_t.cpu().tolist())

    def _decide_from(self, trainer: Trainer, values: List[float]) -> None:
        """New sizes from a decision's values ``[ŝ^(1..M), mean fused score of the window]``."""
        s_hat, mm_mean = values[:-1], values[-1]
        rho = discrepancy(torch.tensor(s_hat, dtype=torch.float64)).tolist()
        self.sizes = self._decide(trainer, s_hat, rho, mm_mean)

    def _decide(self, trainer, s_hat, rho, mm_mean) -> List[int]:
        raise NotImplementedError

    def _allocate(self, raw: Sequence[float]) -> List[int]:
        """Wished sizes -> integer sizes: the bounds, budget preservation and size buckets of this plug-in."""
        total = len(raw) * self.N_B if self.preserve_budget else None
        return allocate_sizes(raw, self.n_lo, self.n_hi, total, self.size_multiple)

    def _heuristic(self, rho) -> List[int]:
        return heuristic_sizes(rho, self.N_B, self.gamma, self.n_lo, self.n_hi, self.preserve_budget,
                               self.size_multiple)

    # ------------------------------------------------------------------ logging
    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        if self._epoch_sizes:
            sz = torch.tensor(self._epoch_sizes, dtype=torch.float64)
            for j, m in enumerate(self.modalities):
                self.log(f"mean_n/{m}", float(sz[:, j].mean()))
        if self.s_hat is not None:
            sh = self.s_hat.float().cpu()
            rho = discrepancy(sh.double())
            for j, m in enumerate(self.modalities):
                self.log(f"s_hat/{m}", float(sh[j]))
                self.log(f"rho/{m}", float(rho[j]))

    # ------------------------------------------------------------------ state
    def _common_state(self) -> Dict[str, Any]:
        return {"t": self.t, "s_hat": None if self.s_hat is None else self.s_hat.detach().cpu().clone(),
                "sizes": list(self.sizes) if self.sizes is not None else None,
                "since_decision": self._since_decision,
                "mm_sum": None if self._mm_sum is None else self._mm_sum.detach().cpu().clone(),
                "mm_count": self._mm_count,
                "in_flight": None if self._in_flight is None else self._in_flight.host_values().clone()}

    def _load_common(self, s: Dict[str, Any]) -> None:
        self.t = int(s["t"])
        self.s_hat = s["s_hat"]
        self.sizes = list(s["sizes"]) if s["sizes"] is not None else None
        self._since_decision = int(s["since_decision"])
        self._mm_sum, self._mm_count = s["mm_sum"], int(s["mm_count"])
        in_flight = s.get("in_flight")  # absent in checkpoints written before decision_lag existed
        self._in_flight = None if in_flight is None else ScoreReadback.restored(in_flight)

    def state_dict(self) -> Dict[str, Any]:
        return self._common_state()

    def load_state_dict(self, state):
        self._load_common(state)
