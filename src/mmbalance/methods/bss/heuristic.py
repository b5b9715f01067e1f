"""BSS-H: score once, rank balanced-first, train on a growing prefix (root pacing) [PAPER §2.3]."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, TYPE_CHECKING

import torch

from ...engine.options import option
from ...registry import METHODS
from .base import BSSBase, ScoringOptions
from .orders import CurriculumOrder, pacing

if TYPE_CHECKING:
    from ...engine.trainer import Trainer


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



@METHODS.register("bss-h")
class BSSHeuristic(BSSBase):
    """BSS-H: score once, rank balanced-first, train on a growing prefix (root pacing) [PAPER §2.3].

    At epoch ``t`` the epoch visits a seeded random permutation of the top ``⌊n·λ(t')⌋`` samples of the
    ranking, ``λ(t') = min(1, sqrt((1−λ0²)/T_grow·t' + λ0²))``, ``t' = t − t_score + pace_offset``.
    Steps per epoch therefore grow with ``λ``; the LR scheduler still steps once per epoch (as the code).
    """

    @dataclass
    class Options(ScoringOptions):
        lambda0: float = option(0.1, "initial data fraction", "[CODE]", gt=0, le=1)
        T_grow: float = option(40, "pacing clock value at which the full set is reached (needs >= 40 epochs; set "
                               "it below train.epochs for short runs)", "[CODE]", gt=0)
        pace_offset: int = option(1, "added to the epoch index: 1 = the code's epoch + 1 (epoch 0 uses ~18.6 % with "
                                  "the defaults) [CODE]; 0 = the formula read literally", "[CODE]")
        score_at: Any = option("init", "'init' = score the freshly initialised network before epoch 0 [CODE]; an "
                               "integer w = train w shuffled epochs first, score at the start of epoch w and start "
                               "the pacing clock there [RECON: an untrained net scores almost at random]", "[CODE]")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.warmup = _parse_score_at(self.score_at)
        self.scores: Optional[torch.Tensor] = None
        self.ranking: Optional[torch.Tensor] = None
        self.scored_epoch: Optional[int] = None

    def validate(self) -> None:
        super().validate()
        pacing(0, self.lambda0, self.T_grow)  # validates lambda0 and T_grow together
        _parse_score_at(self.score_at)

    def on_fit_start(self, trainer: Trainer) -> None:
        self._setup(trainer)
        if self.ranking is not None and len(self.ranking) != len(trainer.splits.train):
            raise ValueError(f"bss-h: restored ranking has {len(self.ranking)} samples, the training split "
                             f"{len(trainer.splits.train)}")

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        stats = self._consume_statistics(trainer) if self.score_source == "previous_epoch" else False
        if self.ranking is None and epoch >= self.warmup:
            values, source, seconds = self._raw_values(trainer, epoch, stats)
            self.scores = self._scores(values)
            self.ranking = torch.argsort(self.scores, descending=True, stable=True)
            self.scored_epoch = epoch
            self.log("scored", 1)
            self.log("score_time_s", seconds)
            self.log("score_from_pass", int(source == "pass"))
            self._log_values(trainer, values)
            self._log_summary(trainer, "score", self.scores)
        # record during the warm-up epochs; later visits overwrite earlier ones, so each sample keeps the
        # statistics of its latest visit (a sample no warm-up epoch visited sends the scoring to a pass)
        self._recording = self.score_source == "previous_epoch" and self.ranking is None
        n = len(trainer.splits.train)
        if self.ranking is None:  # warm-up: ordinary shuffling over the full set
            self._order = None
            self.log("fraction", 1.0)
            self.log("n_used", n)
            return
        ranking, scores, scored_epoch = self.ranking, self.scores, self.scored_epoch
        assert scores is not None and scored_epoch is not None, "set (or restored) together with the ranking"
        order = CurriculumOrder(ranking, trainer.cfg.train.seed, self.lambda0, self.T_grow,
                                self.pace_offset, scored_epoch)
        self._order = order
        m = order.num_used(epoch)
        self.log("fraction", order.fraction(epoch))
        self.log("n_used", m)
        self.log("used_score_mean", float(scores[ranking[:m]].mean()))
        self.log("used_score_min", float(scores[ranking[m - 1]]))

    def state_dict(self) -> Dict[str, Any]:
        return {"scores": self.scores, "ranking": self.ranking, "scored_epoch": self.scored_epoch,
                **self._common_state()}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.scores, self.ranking, self.scored_epoch = state["scores"], state["ranking"], state["scored_epoch"]
        self._load_common(state)
