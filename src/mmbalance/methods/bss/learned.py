"""BSS-L: re-score every E epochs, EMA-smooth, sample by p = softmax(s_hat) [PAPER §2.4]."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, TYPE_CHECKING

import torch

from ...diagnostics.scores import spearman
from ...engine.options import option
from ...registry import METHODS
from .base import BSSBase, ScoringOptions
from .orders import BiasedOrder, ema_update, sampling_probabilities

if TYPE_CHECKING:
    from ...engine.trainer import Trainer


@METHODS.register("bss-l")
class BSSLearned(BSSBase):
    """BSS-L: re-score every ``E`` epochs, EMA-smooth, sample by ``p = softmax(ŝ)`` [PAPER §2.4].

    Every epoch installs a :class:`BiasedOrder` drawn from ``p``; by default a p-biased permutation
    (every sample once per epoch, balanced ones earlier, fixed steps per epoch).

    ``code_compat`` reproduces the released ``train-SPL.py``: linear weights ``1.01 + s``, biased permutation,
    E = 1, no EMA (beta = 1), train-mode scoring [CODE]; conflicting explicit options are refused (the code
    also uses ``drop_last=True``: set ``train.drop_last=true``).
    """

    @dataclass
    class Options(ScoringOptions):
        E: int = option(1, "re-score every E epochs (at epochs 0, E, 2E, ...)", "[CODE; paper: every E epochs]", ge=1)
        beta: Optional[float] = option(None, "EMA factor s_hat <- (1-beta) s_hat + beta s (weight of the new score); "
                                       "null = 0.6 (best in Fig. 3(b)) [PAPER], 1 = no smoothing", "[PAPER]",
                                       gt=0, le=1)
        prob_mode: Optional[str] = option(None, "softmax (p ~ exp s_hat) [PAPER] or linear (p ~ linear_offset + s) "
                                          "[CODE]; null = softmax", "[PAPER]", choices=("softmax", "linear"))
        sampling_mode: Optional[str] = option(None, "biased_permutation (multinomial without replacement over all "
                                              "n) [CODE] or with_replacement (n i.i.d. draws) [PAPER, literal]; "
                                              "null = biased_permutation", "[CODE]", choices=BiasedOrder.MODES)
        linear_offset: float = option(1.01, "offset of the linear weights (NVGesture script: 1.0)", "[CODE]")
        code_compat: bool = option(False, "reproduce the released train-SPL.py (see the class doc)", "[CODE]")
        score_mode: Optional[str] = option(None, "eval [RECON] or train [CODE] (see bss-h); null = eval, or train "
                                           "with code_compat", "[RECON]", choices=("eval", "train"))

    # options as validate() leaves them (null resolved)
    beta: float
    prob_mode: str
    sampling_mode: str
    score_mode: str

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.s_hat: Optional[torch.Tensor] = None  # smoothed scores used for sampling
        self.last_scores: Optional[torch.Tensor] = None  # the latest fresh scores s^k
        self.num_scorings = 0
        self.last_scored_epoch: Optional[int] = None

    def validate(self) -> None:
        super().validate()
        if self.code_compat:
            forced = {"E": (self.E, 1), "beta": (self.beta, 1.0), "prob_mode": (self.prob_mode, "linear"),
                      "sampling_mode": (self.sampling_mode, "biased_permutation"),
                      "score_mode": (self.score_mode, "train")}
            for k, (given, want) in forced.items():
                if given is not None and given != want:
                    raise self.option_error(k, f"{want!r} with code_compat=true (code_compat=true fixes {k}={want!r}, "
                                            f"the released code; drop {k} or set code_compat=false)", given)
            self.beta, self.prob_mode = 1.0, "linear"
            self.sampling_mode, self.score_mode = "biased_permutation", "train"
        self.beta = 0.6 if self.beta is None else self.beta
        self.prob_mode = self.prob_mode or "softmax"
        self.sampling_mode = self.sampling_mode or "biased_permutation"
        self.score_mode = self.score_mode or "eval"

    def on_fit_start(self, trainer: Trainer) -> None:
        self._setup(trainer)
        if self.s_hat is not None and len(self.s_hat) != len(trainer.splits.train):
            raise ValueError(f"bss-l: restored scores cover {len(self.s_hat)} samples, the training split "
                             f"{len(trainer.splits.train)}")

    def probabilities(self) -> torch.Tensor:
        assert self.s_hat is not None, "on_epoch_start scores before the first sampling"
        return sampling_probabilities(self.s_hat, self.prob_mode, self.linear_offset)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        stats = self._consume_statistics(trainer) if self.score_source == "previous_epoch" else False
        rescore = self.s_hat is None or epoch % self.E == 0
        if rescore:
            values, source, seconds = self._raw_values(trainer, epoch, stats)
            s = self._scores(values)
            if self.last_scores is not None:
                self.log("rank_corr_prev", spearman(self.last_scores, s))
            self.s_hat = ema_update(self.s_hat, s, self.beta)
            self.last_scores = s
            self.num_scorings += 1
            self.last_scored_epoch = epoch
            self.log("score_time_s", seconds)
            self.log("score_from_pass", int(source == "pass"))
            self._log_values(trainer, values)
            self._log_summary(trainer, "fresh", s, hist=False)
        self.log("rescored", int(rescore))
        self._recording = self.score_source == "previous_epoch" and (epoch + 1) % self.E == 0
        s_hat = self.s_hat
        assert s_hat is not None  # scored above when there was none
        p = self.probabilities()
        self._order = BiasedOrder(p, trainer.cfg.train.seed, self.sampling_mode)
        n = len(p)
        self._log_summary(trainer, "score", s_hat)
        self.log("p_max_x_n", float(p.max()) * n)
        self.log("p_min_x_n", float(p.min()) * n)
        self.log("ess_fraction", float(1.0 / (p.pow(2).sum() * n)))

    def state_dict(self) -> Dict[str, Any]:
        return {"s_hat": self.s_hat, "last_scores": self.last_scores, "num_scorings": self.num_scorings,
                "last_scored_epoch": self.last_scored_epoch, **self._common_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.s_hat, self.last_scores = state["s_hat"], state["last_scores"]
        self.num_scorings, self.last_scored_epoch = int(state["num_scorings"]), state["last_scored_epoch"]
        self._load_common(state)
