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
from typing import Dict, FrozenSet, List, Optional

import torch
import torch.nn.functional as F

from ..engine.plugin import Plugin
from ..registry import METHODS
from .ogm_ge import (EpochMeans, PARAM_SETS, check_window, in_window, option_error,
                     select_params)

PADS = ("zero_input", "zero_feature", "mean_feature")
MODES = ("output", "encoder")


# =============================================================================== the math
def shapley_weight(size: int, m: int) -> float:
    """``|S|! (M - |S| - 1)! / M!`` for a coalition S (not containing the modality) of ``size``."""
    return math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)


def coalitions(mods: List[str]):
    for r in range(len(mods) + 1):
        for c in itertools.combinations(mods, r):
            yield frozenset(c)


def contributions(values: Dict[FrozenSet[str], torch.Tensor], mods: List[str]) -> Dict[str, torch.Tensor]:
    """Shapley value of each modality plus an equal share of the empty coalition, ``phi_m + v(empty)/M``,
    so that the contributions sum to ``v(all)`` [CODE for M = 2: ``0.5 * (T - P_a + P_v)``; RECON beyond]."""
    m = len(mods)
    empty = values[frozenset()]
    out = {}
    for k in mods:
        rest = [j for j in mods if j != k]
        phi = 0
        for r in range(len(rest) + 1):
            for c in itertools.combinations(rest, r):
                s = frozenset(c)
                phi = phi + shapley_weight(r, m) * (values[s | {k}] - values[s])
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


def agm_coefficients(scores: torch.Tensor, running: torch.Tensor, alpha: float, clip: Optional[float] = 10.0):
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


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by ``coeff`` (the official backward hook)."""

    @staticmethod
    def forward(ctx, x, coeff):
        ctx.save_for_backward(coeff)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        (coeff,) = ctx.saved_tensors
        return g * coeff.to(g.dtype), None


def scale_grad(x: torch.Tensor, coeff: torch.Tensor) -> torch.Tensor:
    return _ScaleGrad.apply(x, coeff.detach())


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

    Args:
        alpha: modulation strength. Default 0.1 [BB ``trainer_config.yaml``]. The official README and issue
            #10 use much larger values with long schedules: 2.5 AV-MNIST, 4.0 UR-Funny, 1.5 CREMA-D.
        modulation_starts / modulation_ends: epochs (0-based, inclusive) in which the coefficients are
            applied; scores and the running mean are updated every step regardless [CODE]. Defaults 0 / null
            (the whole run: maintainers in AGM issue #10); BB uses 0-80.
        pad: how an absent modality is filled: ``zero_input`` (its encoder applied, in eval mode and
            without gradient, to an all-zero input -- the release zeroes the input) [CODE], ``zero_feature``
            or ``mean_feature`` (batch mean of its paired features) [spec "zeroed or mean-filled"]. Default
            ``zero_input``. The release runs the padded passes of the whole network in eval mode; here the
            present modalities keep the training-mode features of the main pass (differs only with
            BatchNorm/dropout).
        clip: upper bound on ``eta - r`` inside the exponential. Default 10 [CODE CREMA-D; BB uses 7; the
            MOSEI script has none]; null disables.
        grad_clip: the release's safeguard: if any fused-head weight gradient leaves
            ``[-grad_clip, grad_clip]``, clip the global gradient norm of the model to ``grad_clip``.
            Default 1.0 [CODE CREMA-D; BB uses 5.0]; null disables.
        mode: ``output`` [CODE] or ``encoder`` [BB], see above. Default ``output``.
        params: with ``mode=encoder``, which encoder tensors are scaled (``weights``/``conv``/``all``, see
            ``ogm-ge``). Default ``weights`` [BB].

    Logged per modality: ``agm/<m>/score``, ``agm/<m>/ratio``, ``agm/<m>/target``, ``agm/<m>/coeff`` (epoch
    means) and the per-step series ``agm/<m>/coeff``; ``agm/clipped`` (fraction of steps clipped).
    State (checkpointed): the running-mean scores and the step counter.
    """

    needs_default_step = True  # acts inside the default step (checked by check_plugins)

    def __init__(self, alpha: float = 0.1, modulation_starts: int = 0, modulation_ends: Optional[int] = None,
                 pad: str = "zero_input", clip: Optional[float] = 10.0, grad_clip: Optional[float] = 1.0,
                 mode: str = "output", params: str = "weights"):
        n = "agm"
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
            raise option_error(n, "alpha", "a number >= 0", alpha)
        check_window(n, modulation_starts, modulation_ends)
        if pad not in PADS:
            raise option_error(n, "pad", f"one of {', '.join(PADS)}", pad)
        for arg, v in (("clip", clip), ("grad_clip", grad_clip)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
                raise option_error(n, arg, "null or a number > 0", v)
        if mode not in MODES:
            raise option_error(n, "mode", f"one of {', '.join(MODES)}", mode)
        if params not in PARAM_SETS:
            raise option_error(n, "params", f"one of {', '.join(PARAM_SETS)}", params)
        self.alpha = float(alpha)
        self.modulation_starts = modulation_starts
        self.modulation_ends = modulation_ends
        self.pad = pad
        self.clip = None if clip is None else float(clip)
        self.grad_clip = None if grad_clip is None else float(grad_clip)
        self.mode = mode
        self.params = params
        # state
        self.running: Optional[torch.Tensor] = None
        self.t = 0
        self._means = EpochMeans()
        self._coeff: Optional[torch.Tensor] = None

    def on_fit_start(self, trainer) -> None:
        mods = [m for m in trainer.active_modalities if m in trainer.model.encoders]
        if len(mods) < 2 or trainer.model.fusion is None:
            raise ValueError(f"agm needs a fused head over at least two modalities, got {mods}")
        if trainer.fused_loss_weight <= 0:
            raise ValueError("agm modulates the fused cross-entropy, but train.fused_loss_weight is 0")
        self._mods = mods
        if self.running is None or self.running.numel() != len(mods):
            self.running = torch.zeros(len(mods))
        self.running = self.running.to(trainer.device)
        self._params = {m: select_params(trainer.model.encoders[m], self.params) for m in mods}
        self._fusion_weights = [p for p in trainer.model.fusion.parameters() if p.dim() >= 2]

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
                x0 = torch.zeros((1,) + tuple(batch["inputs"][m].shape[1:]), device=f.device,
                                 dtype=batch["inputs"][m].dtype)
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
        full = frozenset(self._mods)
        vals = {}
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()), trainer.autocast():
            for s in coalitions(self._mods):
                if s == full:
                    vals[s] = out.fused if grad else out.fused.detach()
                else:
                    vals[s] = trainer.model.fusion({m: feats[m] if m in s else fills[m] for m in self._mods})
        return vals

    # ------------------------------------------------------------------ events
    def compute_loss(self, trainer, batch, out, losses) -> None:
        if out.fused is None or out.n_pair == 0:
            return
        y = batch["y"][: out.n_pair]
        active = in_window(trainer.epoch, self.modulation_starts, self.modulation_ends)
        grad_mode = active and self.mode == "output"
        contrib = contributions(self.values(trainer, batch, out, grad=grad_mode), self._mods)
        scores = trainer.all_reduce(contribution_scores(contrib, y, self._mods))
        self.running = self.running.to(scores.device)
        ratio, target, coeff = agm_coefficients(scores, self.running, self.alpha, self.clip)
        self.t += 1
        self.running = update_running(self.running, scores, self.t)
        self._coeff = coeff if active else None
        if grad_mode:
            fused = sum(scale_grad(contrib[m], coeff[i]) for i, m in enumerate(self._mods))
            losses["fused"] = trainer.fused_loss_weight * F.cross_entropy(fused.float(), y)
        for i, m in enumerate(self._mods):
            trainer.log_step(f"agm/{m}/coeff", coeff[i])
            for key, v in (("score", scores[i]), ("ratio", ratio[i]), ("target", target[i]), ("coeff", coeff[i])):
                self._means.add(f"agm/{m}/{key}", v)

    @torch.no_grad()
    def after_backward(self, trainer, batch, out) -> None:
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
        """Clip the model's gradient norm to ``grad_clip`` only when a fused-head weight gradient leaves
        ``[-grad_clip, grad_clip]`` [CODE]; computed on the device (no host synchronisation)."""
        head = [p.grad for p in self._fusion_weights if p.grad is not None]
        grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
        if not head or not grads:
            return
        trigger = torch.stack([g.abs().max() for g in head]).max() > self.grad_clip
        total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads]))
        scale = torch.where(trigger, (self.grad_clip / (total + 1e-6)).clamp_max(1.0), torch.ones_like(total))
        for g in grads:
            g.mul_(scale.to(g.dtype))
        self._means.add("agm/clipped", trigger.float())

    def on_epoch_end(self, trainer, epoch, record) -> None:
        self._means.flush(trainer)

    # ------------------------------------------------------------------ state
    def state_dict(self):
        return {"t": self.t, "running": None if self.running is None else self.running.detach().cpu().clone()}

    def load_state_dict(self, state):
        self.t = int(state["t"])
        r = state.get("running")
        self.running = None if r is None else r.detach().clone()


__all__ = ["AGM", "contributions", "agm_coefficients", "discrepancy", "update_running", "shapley_weight",
           "contribution_scores", "scale_grad"]
