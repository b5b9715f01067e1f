"""InfoReg -- Information Acquisition Regulation (Huang, Wei, Yang, Hu; CVPR 2025, "Adaptive Unimodal
Regulation for Balanced Multimodal Information Acquisition").

Claim: the early "prime learning window", in which a network acquires most of its information, is taken
over by the information-sufficient modality, which suppresses the others. While the window is open InfoReg
slows the modality that currently scores higher with a proximal pull towards its weights at the start of the
epoch: after backward, ``g <- g + beta_m (theta - theta_epoch_start)`` for every parameter of encoder m, with
``beta_m = c_m exp(tanh(s_m - s_other))`` where ``s`` is the summed true-class probability of each modality's
share of the fused head on the batch.

The window [CODE ``main.py``]: the squared gradients of the encoder's conv/linear weights are accumulated
over each epoch (after the pull is added); the epoch's *trace* is the sum over layers of the mean of that
accumulator. At the start of epoch t, ``k = (mean_W(tr) - mean_W(tr shifted by one epoch)) / mean_W(tr)``
over the last ``W = 10`` epochs, the history being padded with zeros (so ``k = 1`` in the first two epochs);
the window is open while ``k > 0.05`` and is re-tested every epoch.

Spec: ``shared/spec/anchors_2026.md`` section 1a. Tags: [CODE] the official release
(GeWu-Lab/InfoReg_CVPR2025 ``main.py``), [RECON] ours.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import torch

from ..engine.options import option
from ..engine.plugin import Losses, Plugin, Record
from ..functional.common import true_class_probability
from ..registry import METHODS
from .common import ShareFunction, encoder_modalities, modality_shares, select_params

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput


# =============================================================================== the math
def window_change(history: Sequence[float], window: int) -> float:
    """The relative change ``k`` of the trace's ``window``-epoch moving average, the history padded with
    ``window`` zeros in front [CODE]; 1 when nothing has been measured yet (the release's first epoch)."""
    padded = [0.0] * window + list(history)
    new = sum(padded[-window:]) / window
    old = sum(padded[-window - 1:-1]) / window
    return 1.0 if new == 0 else (new - old) / new


def proximal_betas(scores: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """``beta_m = c_m exp(tanh(s_m - mean_{k != m} s_k))`` for every modality scoring above the mean of the
    others, else 0. For two modalities: only the higher-scoring one, with the code's gap ``s_a - s_v``;
    a tie pulls none [CODE]. Beyond two, every modality above the mean of the others is pulled [RECON]."""
    m = scores.shape[-1]
    gap = scores - (scores.sum(-1, keepdim=True) - scores) / (m - 1)
    return torch.where(gap > 0, coeffs * torch.exp(torch.tanh(gap)), torch.zeros_like(gap))


@torch.no_grad()
def add_proximal_pull_(params: List[torch.nn.Parameter], anchors: List[torch.Tensor], beta: torch.Tensor) -> None:
    """In place: ``p.grad += beta (p - anchor)`` for every parameter with a gradient [CODE]."""
    for p, a in zip(params, anchors):
        if p.grad is not None:
            p.grad.add_((p.detach() - a) * beta.to(p.grad.dtype))


def layer_trace(params: List[torch.nn.Parameter]) -> torch.Tensor:
    """``sum_layers mean(g^2)`` of the current gradients (one step's contribution to the epoch's trace)."""
    terms = [p.grad.float().pow(2).mean() for p in params if p.grad is not None]
    return torch.stack(terms).sum() if terms else torch.zeros(())


# =============================================================================== the plug-in
@METHODS.register("inforeg")
class InfoReg(Plugin):
    """InfoReg: inside the prime learning window, pull the higher-scoring encoder towards its epoch-start weights.

    Training loss as in the release: fused CE plus the CE of each modality's share of the fused head
    (``share_loss``). Works with N >= 2 modalities; scores need a fusion with additive shares (concat, sum).
    Logged: ``inforeg/trace`` and ``inforeg/k`` (epoch), ``inforeg/window`` (1 while open), and per modality
    ``inforeg/<m>/score`` and ``inforeg/<m>/beta`` (epoch means; ``beta`` also per step).
    """

    @dataclass
    class Options:
        c: float = option(0.95, "pull strength c of beta = c exp(tanh(gap)) for every modality; the release uses "
                          "0.95 for audio, the information-sufficient modality on CREMA-D", "[CODE, audio]", ge=0)
        coefficients: Optional[Dict[str, float]] = option(None, "per-modality c (every modality named); "
                                                          "{audio: 0.95, visual: 0.1} reproduces the release",
                                                          "[CODE]", ge=0)
        threshold: float = option(0.05, "the window is open while the relative trace change k exceeds this",
                                  "[CODE]")
        trace_window: int = option(10, "epochs in the trace's moving average (1: plain epoch-to-epoch change)",
                                   "[CODE]", ge=1)
        trace_modality: Optional[str] = option(None, "whose encoder's trace opens the window: null = the sum over "
                                               "all encoders [RECON]; a modality name = that encoder (the release: "
                                               "audio)", "[RECON]")
        share_loss: bool = option(True, "add the cross-entropy of each modality's share of the fused head to the "
                                  "loss, as the release does", "[CODE]")

    needs_default_step = True  # reads the fused head's shares of the default step after backward

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.history: List[float] = []  # one trace per finished epoch
        self.open = True
        self.k = 1.0
        self._anchors: Dict[str, List[torch.Tensor]] = {}
        self._trace = torch.zeros(())

    def on_fit_start(self, trainer: Trainer) -> None:
        self._mods = encoder_modalities(trainer, self)
        fusion = trainer.model.fusion
        if fusion is None or not hasattr(fusion, "modality_logits"):
            raise ValueError(f"inforeg scores each modality by its additive share of the fused head, which fusion "
                             f"{trainer.cfg.model.fusion!r} does not have; use model.fusion=concat or sum")
        if self.coefficients is not None:
            missing = [m for m in self._mods if m not in self.coefficients]
            if missing:
                raise self.option_error("coefficients", f"a mapping with a value for every modality {self._mods} "
                                        f"(missing {missing[0]!r})", self.coefficients)
        if self.trace_modality is not None and self.trace_modality not in self._mods:
            raise self.option_error("trace_modality", f"null or one of {self._mods}", self.trace_modality)
        coeffs = [self.coefficients[m] if self.coefficients else self.c for m in self._mods]
        self._coeffs = torch.tensor(coeffs, device=trainer.device)
        self._params = {m: [p for p in trainer.model.encoders[m].parameters() if p.requires_grad] for m in self._mods}
        traced = [self.trace_modality] if self.trace_modality else self._mods
        self._fim_params = [p for m in traced for p in select_params(trainer.model.encoders[m], "weights")]

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.k = window_change(self.history, self.trace_window)
        self.open = self.k > self.threshold
        self._anchors = {m: [p.detach().clone() for p in ps] for m, ps in self._params.items()}
        self._trace = torch.zeros((), device=trainer.device)

    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        if not self.share_loss or out.n_pair == 0:
            return
        share_fn: ShareFunction = getattr(trainer.model.fusion, "modality_logits")
        shares = share_fn(out.paired_features())
        y = batch.paired_labels()
        for m in self._mods:
            losses[f"share_{m}"] = trainer.cross_entropy(shares[m], y, batch.global_count())

    def after_backward(self, trainer: Trainer, batch: Batch, out: Optional[ModelOutput]) -> None:
        if out is None or out.n_pair == 0:
            return
        y = batch.paired_labels()
        shares = modality_shares(trainer, out)
        scores = trainer.all_reduce(torch.stack([true_class_probability(shares[m], y).sum() for m in self._mods]),
                                    "sum")
        beta = proximal_betas(scores, self._coeffs) if self.open else torch.zeros_like(scores)
        if self.open:
            for i, m in enumerate(self._mods):
                add_proximal_pull_(self._params[m], self._anchors[m], beta[i])
        self._trace = self._trace + layer_trace(self._fim_params).detach()
        for i, m in enumerate(self._mods):
            self.log_step(f"{m}/beta", beta[i])
            self.log_mean(f"{m}/beta", beta[i])
            self.log_mean(f"{m}/score", scores[i] / max(out.n_pair, 1))

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        trace = float(self._trace)  # one host sync per epoch
        self.history.append(trace)
        self.log("trace", trace)
        self.log("k", self.k)
        self.log("window", 1.0 if self.open else 0.0)

    def state_dict(self) -> Dict[str, Any]:
        return {"history": list(self.history)}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.history = [float(v) for v in state.get("history", [])]


__all__ = ["InfoReg", "add_proximal_pull_", "layer_trace", "proximal_betas", "window_change"]
