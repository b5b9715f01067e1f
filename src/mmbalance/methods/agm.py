"""AGM -- Adaptive Gradient Modulation (Li, Li, Hu, Xu; ICCV 2023, "Boosting Multi-modal Model Performance
with Adaptive Gradient Modulation").

Each modality's *mono-modal contribution* to the fused output is its Shapley value over coalitions of
modalities, a coalition being evaluated by the fused head with the absent modalities "padded" (the
official code zeroes their input). With two modalities the official contributions are
``m_a = (T - P_a + P_v) / 2`` and ``m_v = (T - P_v + P_a) / 2`` (``T``: all present, ``P_a``: audio padded),
which sum to ``T``. A modality's *score* is the batch-mean cross-entropy of its contribution; the
discrepancy ``r_m = exp(M/(M-1) * (mean_k s_k - s_m))`` is compared with the same quantity computed from
the running average of the scores since the start of training (``target``), and the gradient that flows
into modality m's contribution is scaled by ``exp(alpha * min(target_m - r_m, 10))``: a modality that is
currently more dominant than usual is slowed, one that is lagging is sped up.

Spec: ``shared/spec/methods.md`` section 4, ``shared/spec/anchors.md`` section 5.3. Tags: [CODE] the official
release (lihong2303/AGM, ``run/CREMAD_main.py``, ``model/CREMAD_net.py``, ``run/MOSEI_main.py``), [BB]
BalanceBenchmark's ``AGM_trainer.py``, [RECON] our choice.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, List, Optional, Tuple, TYPE_CHECKING

import torch
import torch.nn.functional as F

from ..engine.options import option
from ..engine.plugin import Losses, Plugin
from ..functional.common import coalitions, scale_grad, shapley_weight, tensor_sum
from ..registry import METHODS
from .common import PARAM_SETS, check_window, encoder_modalities, in_window, select_params

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput


PADS = ("zero_input", "zero_feature", "mean_feature")
MODES = ("output", "encoder")


# =============================================================================== the math
def contributions(values: Dict[FrozenSet[str], torch.Tensor], mods: List[str]) -> Dict[str, torch.Tensor]:
    """Shapley value of each modality plus an equal share of the empty coalition, ``phi_m + v(empty)/M``,
    so that the contributions sum to ``v(all)`` [CODE for M = 2: ``0.5 * (T - P_a + P_v)``; RECON beyond]."""
    m = len(mods)
    empty = values[frozenset()]
    out = {}
    for k in mods:
        rest = [j for j in mods if j != k]
        phi = tensor_sum(shapley_weight(r, m) * (values[frozenset(c) | {k}] - values[frozenset(c)])
                         for r in range(len(rest) + 1) for c in itertools.combinations(rest, r))
        out[k] = phi + empty / m
    return out


def contribution_scores(contrib: Dict[str, torch.Tensor], y: torch.Tensor, mods: List[str]) -> torch.Tensor:
    """Batch-mean ``-log p(y)`` of each contribution, with ``p`` floored at 1e-8 [CODE]."""
    s = [(-F.log_softmax(contrib[m].detach().float(), dim=1).gather(1, y.view(-1, 1)))
         .clamp_max(-math.log(1e-8)).mean() for m in mods]
    return torch.stack(s)


def discrepancy(scores: torch.Tensor) -> torch.Tensor:
    """``exp(M/(M-1) * (mean_k s_k - s_m))`` [CODE: for M = 2 this is ``exp(s_other - s_m)``; the MOSEI
    script writes ``exp(2 * (mean - s_m))``]. BalanceBenchmark's version has the opposite sign."""
    m = scores.shape[-1]
    return torch.exp(m / (m - 1) * (scores.mean(-1, keepdim=True) - scores))


def agm_coefficients(scores: torch.Tensor, running: torch.Tensor, alpha: float,
                     clip: Optional[float] = 10.0) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(ratio, target, coeff)`` with ``coeff = exp(alpha * min(target - ratio, clip))`` [CODE]."""
    ratio = discrepancy(scores)
    target = discrepancy(running)
    diff = target - ratio
    if clip is not None:
        diff = diff.clamp_max(clip)
    return ratio, target, torch.exp(alpha * diff)


def update_running(running: torch.Tensor, scores: torch.Tensor, t: int) -> torch.Tensor:
    """Cumulative mean over all steps so far, ``s_hat_t = s_hat_{t-1} (t-1)/t + s_t / t`` (t is 1-based and
    counts across epochs) [CODE]."""
    return running * ((t - 1) / t) + scores.detach() / t


def coalition_values(fusion: Callable[[Dict[str, torch.Tensor]], torch.Tensor], features: Dict[str, torch.Tensor],
                     fills: Dict[str, torch.Tensor], modalities: List[str],
                     full_value: torch.Tensor) -> Dict[FrozenSet[str], torch.Tensor]:
    """``v(S)`` for every coalition S of ``modalities``: the fused head on the features of the modalities in S
    and the ``fills`` (the padded inputs' features [CODE: the encoder on an all-zero input]) for the others;
    ``v(all)`` is ``full_value``, the ordinary fused output (computed once by the forward)."""
    full = frozenset(modalities)
    return {s: full_value if s == full else fusion({m: features[m] if m in s else fills[m] for m in modalities})
            for s in coalitions(modalities)}


# =============================================================================== the plug-in
@METHODS.register("agm")
class AGM(Plugin):
    """AGM: Shapley mono-modal contributions, scores against their running mean, adaptive gradient scaling.

    Per step, on the paired rows: coalition values ``v(S) = fusion(features with absent modalities padded)``
    (``v(all)`` is the ordinary fused output), contributions ``c_m = phi_m + v(empty)/M`` (Shapley value
    ``phi_m``), scores ``s_m = mean -log softmax(c_m)[y]``, ratio ``r_m`` and target ``eta_m`` (the same map of
    the running-mean scores), coefficient ``k_m = exp(alpha * min(eta_m - r_m, clip))``.

    ``mode="output"`` (default, [CODE]) trains the fused cross-entropy on ``sum_m c_m`` (= the fused logits,
    same value) with the gradient reaching ``c_m`` multiplied by ``k_m`` -- what the official backward hooks
    on ``m_a``/``m_v`` do; on a linear (concat/sum) fusion this scales modality m's encoder gradient and its
    slice of the fused head by ``k_m``. The coalition values keep their graph, as in the release, so the
    padded passes also carry gradient. ``mode="encoder"`` [BB] keeps the plain fused loss and multiplies
    the encoder-m gradients (tensors with >= 2 dims) by ``k_m`` after backward.

    Logged per modality: ``agm/<m>/score``, ``agm/<m>/ratio``, ``agm/<m>/target``, ``agm/<m>/coeff`` (epoch
    means) and the per-step series ``agm/<m>/coeff``; ``agm/clipped`` (fraction of steps clipped).
    State (checkpointed): the running-mean scores and the step counter.
    """

    @dataclass
    class Options:
        alpha: float = option(0.1, "modulation strength; the official README and issue #10 use 2.5 AV-MNIST, "
                              "4.0 UR-Funny, 1.5 CREMA-D with long schedules", "[BB trainer_config.yaml]", ge=0)
        modulation_starts: int = option(0, "first epoch (0-based) in which the coefficients are applied; scores "
                                        "and the running mean are updated every step regardless", "[CODE]", ge=0)
        modulation_ends: Optional[int] = option(None, "last epoch (inclusive) with modulation; null = the whole run "
                                                "(maintainers in AGM issue #10; BB uses 0-80)", "[CODE]", ge=0)
        pad: str = option("zero_input", "how an absent modality is filled: zero_input (its encoder on an all-zero "
                          "input, eval mode, no gradient) [CODE], zero_feature or mean_feature [spec]", "[CODE]",
                          choices=PADS)
        clip: Optional[float] = option(10.0, "upper bound on eta - r inside the exponential; null disables "
                                       "(BB: 7; the MOSEI script: none)", "[CODE CREMA-D]", gt=0)
        grad_clip: Optional[float] = option(1.0, "the release's safeguard: if a fused-head weight gradient leaves "
                                            "[-grad_clip, grad_clip], clip the gradient norm of the encoders and "
                                            "the fused head to grad_clip; null disables (BB: 5.0)",
                                            "[CODE CREMA-D]", gt=0)
        mode: str = option("output", "output: scale the gradient reaching each contribution [CODE]; encoder: "
                           "scale encoder gradients after backward [BB]", "[CODE]", choices=MODES)
        params: str = option("weights", "with mode=encoder, which encoder tensors are scaled (weights/conv/all)",
                             "[BB]", choices=PARAM_SETS)

    needs_default_step = True  # shapes the default step's fused loss

    def __init__(self, **options) -> None:
        super().__init__(**options)
        # state
        self.running: Optional[torch.Tensor] = None
        self.t = 0
        self._coeff: Optional[torch.Tensor] = None

    def validate(self) -> None:
        check_window(self)

    def on_fit_start(self, trainer: Trainer) -> None:
        mods = encoder_modalities(trainer, self)
        if trainer.model.fusion is None:
            raise ValueError(f"agm needs a fused head over at least two modalities, got {mods}")
        if trainer.fused_loss_weight <= 0:
            raise ValueError("agm modulates the fused cross-entropy, but train.fused_loss_weight is 0")
        self._mods = mods
        if self.running is None or self.running.numel() != len(mods):
            self.running = torch.zeros(len(mods))
        self.running = self.running.to(trainer.device)
        self._params = {m: select_params(trainer.model.encoders[m], self.params) for m in mods}
        self._fusion_weights = [p for p in trainer.model.fusion.parameters() if p.dim() >= 2]
        # the official model is encoders + fused head: the monitor heads are not part of the clipped norm
        self._clipped = [p for m in mods for p in trainer.model.encoders[m].parameters()] + list(
            trainer.model.fusion.parameters())

    # ------------------------------------------------------------------ coalition values
    def _fills(self, trainer, batch, feats: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        n = next(iter(feats.values())).shape[0]
        fills = {}
        for m, f in feats.items():
            if self.pad == "zero_feature":
                fills[m] = torch.zeros_like(f)
            elif self.pad == "mean_feature":
                fills[m] = f.detach().mean(0, keepdim=True).expand_as(f)
            else:  # the encoder's response to an all-zero input is the same for every sample: one row
                enc = trainer.model.encoders[m]
                x0 = torch.zeros((1,) + tuple(batch.inputs[m].shape[1:]), device=f.device,
                                 dtype=batch.inputs[m].dtype)
                was = enc.training
                enc.eval()
                with torch.no_grad(), trainer.autocast():
                    f0 = enc(x0)
                enc.train(was)
                fills[m] = f0.to(f.dtype).expand(n, -1)
        return fills

    def values(self, trainer, batch, out, grad: bool) -> Dict[FrozenSet[str], torch.Tensor]:
        feats = out.paired_features()
        if not grad:
            feats = {m: f.detach() for m, f in feats.items()}
        fills = self._fills(trainer, batch, feats)
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()), trainer.autocast():
            return coalition_values(trainer.model.fusion, feats, fills, self._mods,
                                    out.fused if grad else out.fused.detach())

    # ------------------------------------------------------------------ events
    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        if out.fused is None or out.n_pair == 0:
            return
        y = batch.paired_labels()
        active = in_window(trainer.epoch, self.modulation_starts, self.modulation_ends)
        grad_mode = active and self.mode == "output"
        contrib = contributions(self.values(trainer, batch, out, grad=grad_mode), self._mods)
        scores = trainer.all_reduce(contribution_scores(contrib, y, self._mods))
        assert self.running is not None, "on_fit_start creates the running scores"
        self.running = self.running.to(scores.device)
        ratio, target, coeff = agm_coefficients(scores, self.running, self.alpha, self.clip)
        self.t += 1
        self.running = update_running(self.running, scores, self.t)
        self._coeff = coeff if active else None
        if grad_mode:
            fused = tensor_sum(scale_grad(contrib[m], coeff[i]) for i, m in enumerate(self._mods))
            losses["fused"] = trainer.fused_loss_weight * F.cross_entropy(fused.float(), y)
        for i, m in enumerate(self._mods):
            self.log_step(f"{m}/coeff", coeff[i])
            for key, v in (("score", scores[i]), ("ratio", ratio[i]), ("target", target[i]), ("coeff", coeff[i])):
                self.log_mean(f"{m}/{key}", v)

    @torch.no_grad()
    def after_backward(self, trainer: Trainer, batch: Batch, out: Optional[ModelOutput]) -> None:
        if self._coeff is None:
            return
        if self.mode == "encoder":
            for i, m in enumerate(self._mods):
                for p in self._params[m]:
                    if p.grad is not None:
                        p.grad.mul_(self._coeff[i].to(p.grad.dtype))
        if self.grad_clip is not None:
            self._conditional_clip(trainer)
        self._coeff = None

    def _conditional_clip(self, trainer) -> None:
        """Clip the gradient norm of the encoders and the fused head to ``grad_clip`` only when a fused-head
        weight gradient leaves ``[-grad_clip, grad_clip]`` [CODE: ``clip_grad_norm_(model.parameters())`` on a
        model of encoders + fused head; our monitor heads are outside it]. On the device (no host sync)."""
        head = [p.grad for p in self._fusion_weights if p.grad is not None]
        grads = [p.grad for p in self._clipped if p.grad is not None]
        if not head or not grads:
            return
        trigger = torch.stack([g.abs().max() for g in head]).max() > self.grad_clip
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        scale = torch.where(trigger, (self.grad_clip / (total + 1e-6)).clamp_max(1.0), torch.ones_like(total))
        for g in grads:
            g.mul_(scale.to(g.dtype))
        self.log_mean("clipped", trigger.float())

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"t": self.t, "running": None if self.running is None else self.running.detach().cpu().clone()}

    def load_state_dict(self, state):
        self.t = int(state["t"])
        r = state.get("running")
        self.running = None if r is None else r.detach().clone()


__all__ = ["AGM", "contributions", "agm_coefficients", "coalition_values", "discrepancy", "update_running",
           "contribution_scores", "scale_grad"]
