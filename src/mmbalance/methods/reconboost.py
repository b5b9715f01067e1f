"""ReconBoost — modality-alternating boosting with reconcilement (Hua, Xu, Bao, Yang, Huang, ICML 2024).

Training proceeds in *stages*. Stage s picks one modality m (round-robin: a, v, a, v, … [CODE
``schedule.py`` fixed mode]) and runs two phases:

1. **Modality learning** (``stage_epochs`` epochs' worth of steps). Only learner m (encoder m + the shared
   head) is updated, with the reconcilement (boosting) loss against the current ensemble of the *other*
   modalities' learners ``F_{−m} = ρ · Σ_{k≠m} f_k`` (no gradient), per sample [CODE ``train.py``]::

       ℓ_i = −(w1 − w2 · softmax(F_{−m}(x_i))_{y_i}) · log softmax(f_m(x_i))_{y_i}  [÷ C, see below]

   i.e. cross-entropy whose weight drops for samples the others already classify well — the learner is
   pushed towards what the ensemble gets wrong (the paper's KL-based reconcilement, which it shows
   behaves like gradient boosting). While the ensemble holds no other learner, ``softmax(F_{−m})_y = 1``
   (the code's single-column constant ``c0``). The released code takes the mean over classes, i.e.
   divides by C (``class_mean=True``). After phase 1, learner m (re)joins the ensemble — only the newest
   learner per modality is kept.
2. **Global rectification** (``correct_epochs`` epochs' worth of steps): every learner in the ensemble,
   the shared head and the boost rate ρ are fine-tuned jointly on ``CE(ρ · Σ_k f_k(x), y)`` [CODE
   ``optimizer_correct``].

Prediction = ``ρ · Σ_{k ∈ ensemble} f_k(x)`` (the ``predict`` hook). Each head is wrapped so that it outputs
``ρ · f_k`` (ρ inside the forward pass, as DDP needs); the learner loss divides ρ back out. The code's "memory
consolidation"
term ``α · MSE(softmax(f_m).detach(), softmax(f_prev).detach())`` has both arguments detached, so it adds
a constant and no gradient; ``consolidation_grad=False`` (default) reproduces that (the value is logged),
``True`` lets its gradient flow into learner m [RECON].

Schedule in this one-loop library: the loop visits each training batch once per epoch; ReconBoost decides
per batch which phase the step belongs to. A stage lasts ``round(stage_epochs · B) + round(correct_epochs · B)``
steps (B = batches per epoch, fixed when the stage starts), so with the defaults (1 + 1) one stage is two
epochs and each modality is revisited every 2·M epochs. The official CREMA-D run uses 4 + 4 epochs per stage
for up to 1000 stages; BalanceBenchmark uses 1 + 1 (``T_epochs = 1``) [CODE].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, TYPE_CHECKING, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.options import option
from ..engine.plugin import Losses, Plugin, Record
from ..functional.common import tensor_sum
from ..registry import METHODS
from .common import feature_sizes

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput, MultimodalNet


# =============================================================================== pure math (tested by hand)
def reconcilement_loss(logits: torch.Tensor, y: torch.Tensor, ensemble_logits: Optional[torch.Tensor],
                       weight1: float = 5.0, weight2: float = 1.0, class_mean: bool = True) -> torch.Tensor:
    """Batch mean of ``−(w1 − w2 · p_ens(y)) · log p_m(y)`` (÷ C if ``class_mean``); ``p_ens(y) = 1`` without
    an ensemble (the released code's constant initial model)."""
    logp = F.log_softmax(logits.float(), 1).gather(1, y.view(-1, 1)).squeeze(1)
    if ensemble_logits is None:
        p_ens = torch.ones_like(logp)
    else:
        p_ens = F.softmax(ensemble_logits.float().detach(), 1).gather(1, y.view(-1, 1)).squeeze(1)
    per = -(weight1 - weight2 * p_ens) * logp
    if class_mean:
        per = per / logits.shape[1]
    return per.mean()


def consolidation_term(logits: torch.Tensor, prev_logits: torch.Tensor, grad: bool = False) -> torch.Tensor:
    """``MSE(softmax(f_m), softmax(f_prev))``; the released code detaches both (``grad=False``)."""
    p = F.softmax(logits.float(), 1)
    q = F.softmax(prev_logits.float().detach(), 1)
    return F.mse_loss(p if grad else p.detach(), q)


@torch.no_grad()
def _head_ce(logits: Dict[str, torch.Tensor], batch) -> Dict[str, torch.Tensor]:
    return {f"uni_{k}": F.cross_entropy(z.detach().float(), batch.labels(k)) for k, z in logits.items()}


class BoostedHead(nn.Module):
    """A learner's logits scaled by the ensemble's boost rate: ``ρ · head(h)``. ρ is used inside the forward
    pass, so DDP sees it (a parameter used outside DDP's forward breaks gradient synchronisation); the
    ensemble is then simply the sum of the heads' outputs."""

    def __init__(self, head: nn.Module, rate: nn.Parameter):
        super().__init__()
        self.head = head
        self.rate = rate

    def forward(self, x):
        return self.rate * self.head(x)


class SharedHead(nn.Module):
    """The common-space head of the released code: ``Linear(d, hidden) → ReLU → Linear(hidden, C)``
    (``hidden = 0``: one linear layer)."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 256):
        super().__init__()
        if hidden and hidden > 0:
            self.net: nn.Module = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        else:
            self.net = nn.Linear(dim, num_classes)

    def forward(self, x):
        return self.net(x)


# =============================================================================== the plug-in
@METHODS.register("reconboost")
class ReconBoost(Plugin):
    """ReconBoost: alternating per-modality boosting stages with a reconcilement loss + global rectification.

    Optimisation uses the trainer's one optimiser (as BalanceBenchmark does) instead of the released
    code's fresh SGD per phase (lr 0.01, momentum 0.9, wd 5e-4): parameters outside the current phase get
    no gradient and are skipped by the optimiser. The model is changed in ``configure_model`` (shared head,
    no fusion head, every head wrapped as ``ρ · head`` with one shared ρ parameter). Logged per epoch:
    ``reconboost/steps/learn/<m>`` and
    ``reconboost/steps/rectify`` (steps of each phase in the epoch), ``reconboost/stage`` and
    ``reconboost/modality`` (the stage and its modality index at the epoch's end), ``reconboost/boost_rate``,
    ``reconboost/ensemble_size``; per step ``reconboost/phase`` (1 learn, 2 rectify). Loss records:
    ``loss_boost`` / ``loss_rectify`` (what trained), ``loss_consolidation`` and ``loss_uni_<m>`` (plain CE of
    the shared head on each modality computed in the step; logged only).
    """

    @dataclass
    class Options:
        weight1: float = option(5.0, "weight of the learner's own cross-entropy",
                                "[CODE README CREMA-D; BalanceBenchmark]", gt=0)
        weight2: float = option(1.0, "weight of the reconcilement term (the ensemble's true-class probability)",
                                "[CODE]", ge=0)
        alpha: float = option(0.5, "weight of the memory-consolidation term (see consolidation_grad)", "[CODE]")
        consolidation_grad: bool = option(False, "let the consolidation term's gradient reach learner m; false = "
                                          "the released code (both sides detached: no effect) [CODE]", "[CODE]")
        stage_epochs: float = option(1.0, "phase-1 length in epochs' worth of steps (may be fractional; official "
                                     "CREMA-D README: 4)", "[CODE BalanceBenchmark T_epochs = 1]", gt=0)
        correct_epochs: float = option(1.0, "global-rectification length likewise; 0 disables it (official: 4)",
                                       "[CODE BalanceBenchmark]", ge=0)
        boost_rate: float = option(1.0, "initial ensemble scale rho", "[CODE --boost_rate 1.0]")
        learn_boost_rate: bool = option(True, "rho is trained in the rectification phase", "[CODE]")
        shared_head: bool = option(True, "one head shared by every modality's learner (common_space); false keeps "
                                   "the per-modality heads", "[CODE]")
        head_hidden: int = option(256, "hidden width of the shared head; 0 = a single linear layer",
                                  "[CODE Head]", ge=0)
        class_mean: bool = option(True, "divide the reconcilement loss by the number of classes (the code's "
                                  ".mean(-1))", "[CODE]")
        modality_order: Optional[List[str]] = option(None, "order of the stages' modalities (round-robin); null = "
                                                     "dataset order", "[CODE]")

    #: the boosting loss compares a learner with the others' ensemble on the same samples
    requires_paired_batches = True

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.boost_rate_init = self.boost_rate
        self.modality_order_arg = self.modality_order
        # schedule state
        self.stage = 0
        self.pos = 0  # steps done in the current stage
        self.p1: Optional[int] = None
        self.p2: Optional[int] = None
        self.members: List[str] = []  # modalities whose learner is in the ensemble (in order of joining)
        self._epoch_steps: Dict[str, int] = {}

    # ------------------------------------------------------------------ setup
    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        mods = list(trainer.active_modalities)
        if len(mods) < 2:
            raise ValueError(f"reconboost needs at least two modalities, got {mods}")
        self.order = list(self.modality_order_arg or mods)
        if sorted(self.order) != sorted(mods):
            raise ValueError(f"reconboost: modality_order={self.modality_order_arg} must be a permutation of {mods}")
        if self.shared_head:
            dims = feature_sizes(model, mods)
            if len(set(dims.values())) != 1:
                raise ValueError(
                    "reconboost: shared_head=true needs every encoder to output the same feature size; got "
                    + ", ".join(f"{m}={d}" for m, d in dims.items())
                    + ". Set model.feature_dim so they match, or method_args.reconboost.shared_head=false.")
        # one ρ for every learner; .to(device) later moves it in place, so this reference stays valid
        self.rho = nn.Parameter(torch.tensor(self.boost_rate_init), requires_grad=self.learn_boost_rate)
        if self.shared_head:
            head = BoostedHead(SharedHead(next(iter(dims.values())), model.num_classes, self.head_hidden), self.rho)
            for m in model.modalities:
                model.heads[m] = head
        else:
            for m in model.modalities:
                model.heads[m] = BoostedHead(model.heads[m], self.rho)
        model.fusion = None

    # ------------------------------------------------------------------ schedule
    def _start_stage(self, trainer: Trainer) -> Tuple[int, int]:
        """Fix the new stage's phase lengths ``(p1, p2)`` in steps from this epoch's number of batches."""
        b = max(1, len(trainer.sampler)) if trainer.sampler is not None else 1
        self.p1 = max(1, int(round(self.stage_epochs * b)))
        self.p2 = max(0, int(round(self.correct_epochs * b)))
        return self.p1, self.p2

    def current_modality(self) -> str:
        return self.order[self.stage % len(self.order)]

    @staticmethod
    def _ensemble_logits(logits: Dict[str, torch.Tensor], modalities) -> torch.Tensor:
        # every head already multiplies by ρ: the sum is ρ · Σ_k f_k
        return tensor_sum(logits[k].float() for k in modalities)

    def _raw(self, logits: torch.Tensor) -> torch.Tensor:
        """A learner's own output ``f = (ρ f) / ρ`` (ρ detached: the division only undoes the scale)."""
        return logits.float() / self.rho.detach()

    # ------------------------------------------------------------------ the step
    def training_step(self, trainer: Trainer, batch: Batch) -> Losses:
        """A step strategy: a boosting step of the stage's learner, or a rectification step of the ensemble."""
        if self.p1 is None or self.p2 is None:  # both are set, and cleared, together
            p1, p2 = self._start_stage(trainer)
        else:
            p1, p2 = self.p1, self.p2
        m = self.current_modality()
        if self.pos < p1:
            losses = self._modality_step(trainer, batch, m)
            self.log_step("phase", 1)
            key = f"learn/{m}"
        else:
            losses = self._rectify_step(trainer, batch)
            self.log_step("phase", 2)
            key = "rectify"
        self._epoch_steps[key] = self._epoch_steps.get(key, 0) + 1
        trainer.optimizer_step()
        trainer.optimizer.zero_grad(set_to_none=True)
        self.pos += 1
        if self.pos == p1:  # phase 1 done: the newest learner of m (re)joins the ensemble
            if m in self.members:
                self.members.remove(m)
            self.members.append(m)
        if self.pos >= p1 + p2:
            self.stage += 1
            self.pos = 0
            self.p1 = self.p2 = None
        return losses

    def _modality_step(self, trainer, batch, m):
        out = trainer.forward({m: batch.inputs[m]}, fuse=False)
        z = self._raw(out.logits[m])
        others = [k for k in self.members if k != m]
        prev = self.order[(self.order.index(m) - 1) % len(self.order)]
        need = sorted(set(others) | ({prev} if prev in self.members and prev != m else set()))
        ctx = {}
        if need:
            with torch.no_grad():
                ctx = trainer.forward({k: batch.inputs[k] for k in need}, fuse=False).logits
        ens = self._ensemble_logits(ctx, others) if others else None
        loss = reconcilement_loss(z, batch.labels(m), ens, self.weight1, self.weight2, self.class_mean)
        losses = {"boost": loss.detach()}
        # plain CE of the shared head on each modality seen this step (logged only; "total" is what trains)
        losses.update(_head_ce({m: z, **{k: self._raw(v) for k, v in ctx.items()}}, batch))
        total = loss
        if prev in ctx:
            ga = consolidation_term(z, self._raw(ctx[prev]), grad=self.consolidation_grad)
            losses["consolidation"] = ga.detach()
            if self.consolidation_grad:
                total = total + self.alpha * ga
        trainer.backward(total, batch, out)
        self.rho.grad = None  # ρ is trained only in the rectification phase [CODE]
        losses["total"] = total.detach()
        return losses

    def _rectify_step(self, trainer, batch):
        mods = list(self.members)
        out = trainer.forward({k: batch.inputs[k] for k in mods}, fuse=False)
        logits = self._ensemble_logits(out.logits, mods)
        loss = F.cross_entropy(logits, batch.paired_labels())
        trainer.backward(loss, batch, out)
        raw = {k: self._raw(z) for k, z in out.logits.items()}
        return {"rectify": loss.detach(), **_head_ce(raw, batch), "total": loss.detach()}

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._epoch_steps = {}

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        for m in self.order:
            self.log(f"steps/learn/{m}", self._epoch_steps.get(f"learn/{m}", 0))
        self.log("steps/rectify", self._epoch_steps.get("rectify", 0))
        self.log("stage", self.stage)
        self.log("modality", self.order.index(self.current_modality()))
        self.log("boost_rate", float(self.rho.detach()))
        self.log("ensemble_size", len(self.members))

    # ------------------------------------------------------------------ prediction
    def predict(self, trainer: Trainer, out: ModelOutput) -> Optional[torch.Tensor]:
        mods = [k for k in self.members if k in out.logits] or list(out.logits)
        if not mods:
            return None
        return self._ensemble_logits(out.logits, mods)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"stage": self.stage, "pos": self.pos, "p1": self.p1, "p2": self.p2, "members": list(self.members)}

    def load_state_dict(self, state):
        self.stage, self.pos = int(state["stage"]), int(state["pos"])
        self.p1, self.p2 = state.get("p1"), state.get("p2")
        self.members = list(state.get("members", []))
