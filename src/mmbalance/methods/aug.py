"""AUG: sustained boosting with adaptive classifier assignment (Jiang, Huang, Yang, NeurIPS 2025 oral).

Every modality is classified by a *configurable classifier*: a sum of ``n_m`` classifiers
``Layer2(ReLU(Layer1_j(h_m)))`` on the modality's encoder output ``h_m``, where ``Layer1_j`` is ``D × hidden`` and
``Layer2`` (``hidden × K``) is one layer shared by every classifier of every modality [PAPER §4.1, CODE
``AVGBShareClassifier``]. When a modality has ``t = n_m ≥ 2`` classifiers its loss is the sustained-boosting
objective (paper Eq. 2-6) [PAPER, CODE]::

    L = CE(Σ_{j≤t} z_j, y) + CE(Σ_{j<t} z_j, y) + CE(z_t, ŷ),   ŷ = y − λ · y ⊙ softmax(Σ_{j<t} z_j).detach()

(classification error of the whole ensemble, of the ensemble before the newest classifier, and the newest
classifier's residual error; soft labels make ``CE(z_t, ŷ) = (1 − λ p_y) · CE(z_t, y)`` per sample). With one
classifier it is the plain cross-entropy. Adaptive classifier assignment: at the end of every check epoch (every
``check_every`` epochs, and after the first epoch [CODE]) the mean training confidence ``s_m`` (softmax
probability of the true class under modality m's ensemble) decides whether the weakest modality gets one more
classifier: if ``s_strong / s_weak > σ + τ`` (``rule=ratio`` [CODE]) or ``s_strong − σ s_weak > τ``
(``rule=difference`` [PAPER]). New classifiers join the model and the optimizer mid-training
(``Trainer.add_module``) and are re-created on resume (``on_load``).

There is no fusion module: the prediction is ``Σ_m w_m · Σ_j z^m_j`` (``fusion_weights``, normalised to sum to
one: :func:`~mmbalance.functional.common.ensemble_logits`) [CODE ``val``], unless
``keep_fusion`` keeps the configured fusion head (and its fused loss) and leaves the prediction to it [RECON].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.options import option
from ..engine.plugin import Losses, Plugin, Record
from ..functional.common import ensemble_logits, tensor_sum, true_class_probability
from ..registry import METHODS
from .common import encoder_modalities, feature_sizes, modality_weights

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..engine.trainer import Trainer
    from ..models.net import ModelOutput, MultimodalNet


# =============================================================================== the math (tested by hand)
def residual_weights(previous_logits: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """``1 − λ · softmax(previous)[y]`` per sample (detached): the residual label's mass on the true class."""
    return 1.0 - lam * true_class_probability(previous_logits.detach(), y)


def sustained_boosting_terms(components: List[torch.Tensor], y: torch.Tensor, lam: float
                             ) -> Dict[str, torch.Tensor]:
    """The terms of paper Eq. 5 for one modality's classifier outputs ``components`` (oldest first):
    ``all`` = CE(Σ z), and when there are ≥ 2 classifiers ``pre`` = CE(Σ_{j<t} z) and ``residual`` =
    mean_i (1 − λ p_{i,y}) · CE(z_t, y)_i (the soft-label CE against ``y − λ y ⊙ softmax(Σ_{j<t} z)``)."""
    total = torch.stack(components).sum(0).float()
    terms = {"all": F.cross_entropy(total, y)}
    if len(components) >= 2:
        previous = torch.stack(components[:-1]).sum(0).float()
        terms["pre"] = F.cross_entropy(previous, y)
        ce_last = F.cross_entropy(components[-1].float(), y, reduction="none")
        terms["residual"] = (residual_weights(previous, y, lam) * ce_last).mean()
    return terms


RULES = ("ratio", "difference")


def needs_classifier(scores: Dict[str, float], sigma: float, tau: float, rule: str = "ratio") -> Optional[str]:
    """The modality that gets a new classifier, or None. The weakest (lowest ``s``) is compared with the
    strongest: ``s_strong / s_weak > σ + τ`` (ratio, the code's test with ``--lam`` = σ) or
    ``s_strong − σ · s_weak > τ`` (difference, paper Alg. 1)."""
    weak = min(scores, key=lambda m: scores[m])
    strong = max(scores, key=lambda m: scores[m])
    if weak == strong:
        return None
    s_w, s_s = scores[weak], scores[strong]
    if rule == "ratio":
        return weak if s_s > (sigma + tau) * max(s_w, 1e-12) else None
    if rule == "difference":
        return weak if s_s - sigma * s_w > tau else None
    raise ValueError(f"aug: rule must be one of {RULES}, got {rule!r}")


# =============================================================================== the configurable classifier
class ConfigurableClassifier(nn.Module):
    """One modality's classifiers: ``shared(embed(h)) + Σ_j shared(grown_j(h))``. The grown ``Layer1``s live in
    ``model.extras`` (added mid-training), so they are held in a plain list here: the heads' parameter names
    stay the same whether a checkpoint was written before or after a growth."""

    def __init__(self, in_dim: int, hidden: int, shared: nn.Linear):
        super().__init__()
        self.embed = layer1(in_dim, hidden)
        self.shared = shared
        self.grown: List[nn.Module] = []

    def components(self, h: torch.Tensor) -> List[torch.Tensor]:
        return [self.shared(self.embed(h))] + [self.shared(g(h)) for g in self.grown]

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.stack(self.components(h)).sum(0)


def layer1(in_dim: int, hidden: int, generator: Optional[torch.Generator] = None) -> nn.Sequential:
    """``Linear(in_dim, hidden) → ReLU`` with Xavier-normal weights and zero bias [CODE ``weight_init``]."""
    lin = nn.Linear(in_dim, hidden)
    nn.init.xavier_normal_(lin.weight, generator=generator)
    nn.init.zeros_(lin.bias)
    return nn.Sequential(lin, nn.ReLU())


def classifier(trainer: Trainer, modality: str) -> ConfigurableClassifier:
    """Modality ``modality``'s configurable classifier (``model.heads[m]`` after ``configure_model``)."""
    head = trainer.model.heads[modality]
    if not isinstance(head, ConfigurableClassifier):
        raise RuntimeError(f"aug: the head of {modality!r} was replaced by another plug-in ({type(head).__name__})")
    return head


# =============================================================================== the plug-in
@METHODS.register("aug")
class AUG(Plugin):
    """AUG: sustained boosting; the weakest modality grows one more classifier (shared last layer) per check.

    See the module docstring. Logged per epoch: ``aug/<m>/classifiers``,
    ``aug/<m>/score`` (mean training confidence) and ``aug/grew`` (index of the modality that grew, −1 if none)."""

    @dataclass
    class Options:
        hidden: int = option(256, "width of each classifier's first layer (Layer1: D x hidden; Layer2 shared)",
                             "[PAPER, CODE]", ge=1)
        lam: float = option(0.5, "lambda, softening of the residual label y - lam * y * p (the paper searches "
                             "0.1, 0.2, 0.33, 0.5, 1.0; the code's comment says 0.2, its loss uses 0.5)",
                             "[CODE]", ge=0, le=1)
        sigma: float = option(1.0, "sigma, coefficient of the assignment test (>= 1)", "[PAPER, CODE --lam]", ge=1)
        tau: float = option(0.01, "tau, dead zone of the assignment test", "[PAPER, CODE]", ge=0)
        rule: str = option("ratio", "ratio: s_strong / s_weak > sigma + tau (the code); difference: s_strong - "
                           "sigma * s_weak > tau (the paper's Algorithm 1)", "[CODE]", choices=RULES)
        check_every: Optional[int] = option(None, "t_N, epochs between checks; null = max(1, epochs // 10) (the "
                                            "code; the paper: 20 of 200 epochs on CREMA-D, 10 on KS)", "[CODE]",
                                            ge=1)
        check_first_epoch: bool = option(True, "also check after the first epoch (the code's epoch == 0)", "[CODE]")
        max_classifiers: Optional[int] = option(None, "most classifiers per modality; null = unbounded (the code)",
                                                "[CODE]", ge=1)
        train_new_layers: bool = option(True, "optimise the added classifiers' first layer (the paper); false "
                                        "keeps them at their random initialisation, as the official code does "
                                        "(it adds them after building the optimizer)", "[PAPER]")
        alternating: bool = option(False, "false: one step on the sum of every modality's loss (the paper's "
                                   "Algorithm 1); true: one optimizer step per modality in turn (the code)",
                                   "[PAPER]")
        keep_fusion: bool = option(False, "false: no fusion module, predict with fusion_weights (the code); true: "
                                   "keep the configured fusion head, its fused loss and prediction", "[CODE]")
        fusion_weights: Any = option(None, "prediction weight per modality (a list in modality order or a "
                                     "mapping); null = equal (the code: audio 0.4, video 0.6 on CREMA-D)", "[RECON]")

    wants_unimodal_loss = True

    def validate(self) -> None:
        if self.alternating and self.keep_fusion:
            raise self.option_error("keep_fusion", "false when alternating=true (the alternating unimodal steps "
                                    "never train a fusion head)", self.keep_fusion)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # the default step's loss events, or a step strategy of its own
        self.needs_default_step = not self.alternating
        self.grown: List[Tuple[str, str]] = []  # (modality, module name in model.extras), in growth order
        self.decisions: List[Tuple[int, str]] = []
        self._sum: Optional[torch.Tensor] = None
        self._count: Optional[torch.Tensor] = None

    def provides(self) -> FrozenSet[str]:
        hooks = set(super().provides())
        if not self.alternating:
            hooks.discard("training_step")
        if self.keep_fusion:
            hooks.discard("predict")
        return frozenset(hooks)

    # ------------------------------------------------------------------ set-up
    def configure_model(self, trainer: Trainer, model: MultimodalNet) -> None:
        self.modalities = encoder_modalities(trainer, self)
        self.dims = feature_sizes(model, self.modalities)
        shared = nn.Linear(self.hidden, model.num_classes)
        nn.init.xavier_normal_(shared.weight)
        nn.init.zeros_(shared.bias)
        for m in self.modalities:
            model.heads[m] = ConfigurableClassifier(self.dims[m], self.hidden, shared)
        if not self.keep_fusion:
            model.fusion = None
        self.weights = modality_weights(self, "fusion_weights", self.fusion_weights, self.modalities)

    def on_load(self, trainer: Trainer) -> None:
        """Re-create the classifiers this run had grown (resume, or loading a checkpoint), then wire each
        modality's classifier to exactly the grown layers of the state (a ``best.pt`` from before a growth
        uses fewer than the model may hold)."""
        for i, (m, name) in enumerate(self.grown):
            if name not in trainer.model.extras:
                self._add(trainer, m, name, i)
        for m in self.modalities:
            classifier(trainer, m).grown = [trainer.model.extras[n] for k, n in self.grown if k == m]

    def _add(self, trainer: Trainer, modality: str, name: str, index: int) -> None:
        # a generator of its own: the new layer's initialisation does not move the run's random streams
        gen = torch.Generator().manual_seed(int(trainer.cfg.train.seed) * 1000 + 17 + index)
        module = layer1(self.dims[modality], self.hidden, gen)
        if not self.train_new_layers:
            module.requires_grad_(False)
        trainer.add_module(name, module)

    def grow(self, trainer: Trainer, modality: str) -> None:
        count = sum(1 for m, _ in self.grown if m == modality)
        name = f"aug_{modality.replace('.', '_')}_{count + 1}"
        self._add(trainer, modality, name, len(self.grown))
        self.grown.append((modality, name))
        classifier(trainer, modality).grown.append(trainer.model.extras[name])

    def classifiers(self, modality: str) -> int:
        return 1 + sum(1 for m, _ in self.grown if m == modality)

    # ------------------------------------------------------------------ the objective
    def modality_loss(self, trainer: Trainer, modality: str, h: torch.Tensor, y: torch.Tensor
                      ) -> Dict[str, torch.Tensor]:
        with trainer.autocast():
            parts = classifier(trainer, modality).components(h)
        return sustained_boosting_terms(parts, y, self.lam)

    def compute_loss(self, trainer: Trainer, batch: Batch, out: ModelOutput, losses: Losses) -> None:
        # uni_<m> (the base loss) is CE of the whole ensemble; add the two boosting terms
        for m in self.modalities:
            if m in out.features and self.classifiers(m) >= 2:
                terms = self.modality_loss(trainer, m, out.features[m], batch.labels(m))
                losses[f"pre_{m}"] = terms["pre"]
                losses[f"residual_{m}"] = terms["residual"]

    def after_forward(self, trainer: Trainer, batch: Batch, out: ModelOutput) -> None:
        self._observe(out.logits, batch)

    def training_step(self, trainer: Trainer, batch: Batch) -> Losses:
        """``alternating``: one optimizer step per modality in turn, each on that modality's boosting loss."""
        losses: Dict[str, torch.Tensor] = {}
        for m in self.modalities:
            if batch.inputs.get(m) is None:
                continue
            out = trainer.forward({m: batch.inputs[m]}, fuse=False)
            terms = self.modality_loss(trainer, m, out.features[m], batch.labels(m))
            loss = tensor_sum(terms.values())
            trainer.backward(loss, batch, out)
            trainer.optimizer_step()
            self._observe(out.logits, batch)
            losses.update({f"{k}_{m}": v.detach() for k, v in terms.items()})
        trainer.optimizer.zero_grad(set_to_none=True)
        losses["total"] = tensor_sum(losses.values())
        return losses

    @torch.no_grad()
    def _observe(self, logits: Dict[str, torch.Tensor], batch: Batch) -> None:
        """Add this batch's summed true-class confidence and row count per modality (device tensors, no sync)."""
        dev = batch.y.device
        sums = torch.stack([true_class_probability(logits[m], batch.labels(m)).sum() if m in logits
                            else torch.zeros((), device=dev) for m in self.modalities])
        counts = torch.tensor([float(logits[m].shape[0]) if m in logits else 0.0 for m in self.modalities],
                              device=dev)
        self._sum = sums if self._sum is None else self._sum + sums
        self._count = counts if self._count is None else self._count + counts

    # ------------------------------------------------------------------ assignment
    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self._sum = self._count = None

    def is_check(self, trainer: Trainer, epoch: int) -> bool:
        every = self.check_every or max(1, trainer.cfg.train.epochs // 10)
        return (epoch + 1) % every == 0 or (self.check_first_epoch and epoch == 0)

    def on_epoch_end(self, trainer: Trainer, epoch: int, record: Record) -> None:
        grew = -1
        if self._sum is not None and self._count is not None:
            totals = trainer.all_reduce(torch.cat([self._sum, self._count]), "sum").cpu()
            k = len(self.modalities)
            scores = {m: float(totals[j] / max(float(totals[k + j]), 1.0)) for j, m in enumerate(self.modalities)}
            for m in self.modalities:
                self.log(f"{m}/score", scores[m])
            target = needs_classifier(scores, self.sigma, self.tau, self.rule) if self.is_check(trainer, epoch) \
                else None
            if target is not None and (self.max_classifiers is None or self.classifiers(target) < self.max_classifiers):
                self.grow(trainer, target)
                self.decisions.append((epoch, target))
                grew = self.modalities.index(target)
        self.log("grew", grew)
        for m in self.modalities:
            self.log(f"{m}/classifiers", self.classifiers(m))

    # ------------------------------------------------------------------ prediction and state
    def predict(self, trainer: Trainer, out: ModelOutput) -> Optional[torch.Tensor]:
        present = [m for m in self.modalities if m in out.logits]
        if not present:
            return None
        return ensemble_logits([out.logits[m] for m in present], [self.weights[m] for m in present])

    def state_dict(self) -> Dict[str, Any]:
        return {"grown": [list(g) for g in self.grown], "decisions": [list(d) for d in self.decisions]}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.grown = [(str(m), str(n)) for m, n in state["grown"]]
        self.decisions = [(int(e), str(m)) for e, m in state["decisions"]]


__all__ = ["AUG", "ConfigurableClassifier", "needs_classifier", "residual_weights", "sustained_boosting_terms"]
