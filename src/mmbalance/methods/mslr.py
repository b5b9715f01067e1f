"""MSLR -- Modality-Specific Learning Rates (Yao & Mihalcea, Findings of ACL 2022, "Modality-specific
Learning Rates for Effective Multimodal Additive Late-fusion").

Each modality's branch (its encoder and its head) trains with its own learning rate ``lr * r_m`` while the
fused head keeps the base rate, so that a modality that learns fast cannot crowd out a slower one. The
rates are either fixed (the paper's "keep" strategy: each modality keeps the rate that suits it) or
adapted after every epoch from each modality's unimodal validation accuracy (the "dynamic" strategy).

No official repository exists (spec section 4). The dynamic rule here follows the re-implementation in the
AGM release (lihong2303/AGM ``run/CREMAD_main.py``, method ``MSLR``): keep the last ``window`` = 5 epochs'
unimodal validation accuracies; once the window is full, ``r_m = r_m^0 * acc_m(t) / mean(previous window)``
(a modality improving faster than its recent average gets a larger rate). That code multiplies the
gradients of the modality's encoder and classifier by ``r_m`` (with initial ratios 0.9 audio / 1.1 visual on
CREMA-D); here the same factor is applied as the learning rate of an optimizer parameter group, as the
paper describes it. Tags: [PAPER] (from the spec's one-line summary), [AGM-CODE], [RECON].
"""
from __future__ import annotations


from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Set, TYPE_CHECKING

from ..engine.options import option
from ..engine.plugin import Plugin
from ..registry import METHODS
from .common import require_score_source

if TYPE_CHECKING:
    from ..engine.trainer import Trainer
    from ..models.net import MultimodalNet


STRATEGIES = ("keep", "dynamic")


# =============================================================================== the math
def dynamic_ratio(acc: float, memory: List[float]) -> float:
    """``acc / mean(memory)``; 1 when the memory is empty or its mean is 0 [AGM-CODE]."""
    if not memory:
        return 1.0
    mean = sum(memory) / len(memory)
    return acc / mean if mean > 0 else 1.0


def param_groups(model: MultimodalNet, base_lr: float, ratios: Dict[str, float]) -> List[Dict[str, Any]]:
    """One group per modality (encoder + head, ``lr = base_lr * r_m``), then one group with everything
    else (fusion head, anything a plug-in added) at ``base_lr``. Each group carries its ``modality``."""
    groups: List[Dict[str, Any]] = []
    seen: Set[int] = set()
    for m, r in ratios.items():
        ps = [p for p in list(model.encoders[m].parameters()) + list(model.heads[m].parameters()) if p.requires_grad]
        seen.update(id(p) for p in ps)
        groups.append({"params": ps, "lr": base_lr * r, "modality": m})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        groups.append({"params": rest, "lr": base_lr, "modality": None})
    return groups


# =============================================================================== the plug-in
@METHODS.register("mslr")
class MSLR(Plugin):
    """MSLR: per-modality learning rates (encoder + head of modality m at ``lr * r_m``), fixed or adapted.

    ``strategy="keep"``: the ratios stay at ``ratios``. ``strategy="dynamic"`` (default): after each epoch,
    with ``acc_m`` the unimodal validation accuracy of modality m and ``M_m`` the previous ``window`` values,
    ``r_m = ratios_m * acc_m / mean(M_m)`` once ``M_m`` is full (before that ``r_m = ratios_m``); the group's
    learning rate is rescaled by the change of ``r_m``. Because the rescale is multiplicative on the group's
    current rate, the schedulers (StepLR, cosine with ``eta_min = 0``) keep acting on top of it. The training
    objective is the base one (fused cross-entropy, as ``joint``).

    Logged per modality: ``mslr/<m>/ratio`` (the multiplier in force for the next epoch), ``mslr/<m>/lr`` and
    ``mslr/<m>/val_acc``. State (checkpointed): ratios in force and the accuracy memory.
    """

    @dataclass
    class Options:
        ratios: Dict[str, float] = option({}, "initial rate multiplier per modality {modality: r} (missing: 1.0), "
                                          "e.g. {audio: 0.9, image: 1.1} (the AGM release's CREMA-D values)",
                                          "[AGM-CODE]", gt=0)
        strategy: str = option("dynamic", "keep: fixed ratios; dynamic: adapt them after every epoch",
                               "[AGM-CODE]", choices=STRATEGIES)
        window: int = option(5, "past epochs averaged by dynamic", "[AGM-CODE]", ge=1)
        score_from: str = option("auto", "unimodal accuracy used by dynamic: fusion (shares of the fused head), "
                                 "heads, or auto (heads when trained, else fusion)", "[RECON]",
                                 choices=("fusion", "heads", "auto"))
        min_ratio: float = option(0.1, "lower bound on r_m (the release has none)", "[RECON]", gt=0)
        max_ratio: float = option(10.0, "upper bound on r_m", "[RECON]", gt=0)

    score_from: str  # the option; "auto" is resolved in on_fit_start
    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.initial = {k: float(v) for k, v in self.ratios.items()}
        # state
        self.ratios: Dict[str, float] = {}
        self.memory: Dict[str, List[float]] = {}

    def validate(self) -> None:
        if self.min_ratio > self.max_ratio:
            raise self.option_error("min_ratio", f"<= max_ratio ({self.max_ratio})", self.min_ratio)

    def optimizer_groups(self, trainer: Trainer, model: MultimodalNet) -> Optional[List[Dict[str, Any]]]:
        mods = [m for m in trainer.active_modalities if m in model.encoders]
        unknown = [k for k in self.initial if k not in model.encoders]
        if unknown:
            raise ValueError(f"mslr: method_args.mslr.ratios names modality {unknown[0]!r}, but the modalities "
                             f"are {list(model.encoders)}")
        if not self.ratios:
            self.ratios = {m: self.initial.get(m, 1.0) for m in mods}
        self.memory = self.memory or {m: [] for m in mods}
        return param_groups(model, trainer.cfg.optim.lr, self.ratios)

    def on_fit_start(self, trainer: Trainer) -> None:
        if self.strategy == "dynamic":
            if self.score_from == "auto":
                self.score_from = "heads" if trainer.unimodal_loss_weight > 0 else "fusion"
            self.score_from = require_score_source(trainer, self, self.score_from)
        self._groups = {g["modality"]: g for g in trainer.optimizer.param_groups if g.get("modality")}
        if set(self._groups) != set(self.ratios):
            raise RuntimeError("mslr: the optimizer does not hold the per-modality parameter groups mslr created "
                               "(another method set parameter groups?)")

    def unimodal_val_accuracy(self, trainer, record) -> Dict[str, float]:
        # both measures come with the epoch's validation record: no extra pass over the split
        key = "modality_acc" if self.score_from == "heads" else "share_acc"
        return {m: float(record["val"][key][m]) for m in self.ratios}

    def on_epoch_end(self, trainer, epoch: int, record: Dict[str, Any]) -> None:
        if self.strategy == "dynamic":
            acc = self.unimodal_val_accuracy(trainer, record)
            for m, a in acc.items():
                mem = self.memory[m]
                if len(mem) >= self.window:
                    new = self.initial.get(m, 1.0) * dynamic_ratio(a, mem)
                    self.set_ratio(m, min(self.max_ratio, max(self.min_ratio, new)))
                    mem.pop(0)
                mem.append(a)
                self.log(f"{m}/val_acc", a)
        for m, r in self.ratios.items():
            self.log(f"{m}/ratio", r)
            self.log(f"{m}/lr", self._groups[m]["lr"])

    def set_ratio(self, modality: str, ratio: float) -> None:
        old = self.ratios[modality]
        self._groups[modality]["lr"] *= ratio / old
        self.ratios[modality] = ratio

    def state_dict(self) -> Dict[str, Any]:
        return {"ratios": dict(self.ratios), "memory": {m: list(v) for m, v in self.memory.items()}}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        # the optimizer's own state (restored by the trainer) already holds the rates in force
        self.ratios = {m: float(v) for m, v in state["ratios"].items()}
        self.memory = {m: [float(x) for x in v] for m, v in state["memory"].items()}


__all__ = ["MSLR", "param_groups", "dynamic_ratio"]
