"""The Greedy learner as a plug-in: MMTM-linked branches and re-balancing steps driven by the conditional
learning speed (Wu, Jastrzębski, Cho, Geras, ICML 2022; official code ``nyukat/greedy_multimodal_learning``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, FrozenSet, Optional

import torch

from ...engine.options import option
from ...engine.plugin import Plugin, device_state
from ...functional.common import ensemble_logits
from ...registry import METHODS
from ..common import encoder_modalities, feature_sizes
from .mmtm import MMTM
from .speed import branch_speed, grad_weight_ratio, guided_schedule, random_schedule, speed_gap

if TYPE_CHECKING:
    from ...data.batch import Batch
    from ...engine.trainer import Trainer
    from ...models import ModelOutput, MultimodalNet

STATE = ("m_main", "m_bypass", "rebalancing", "caring", "step")


@METHODS.register("greedy")
class Greedy(Plugin):
    """Greedy: MMTM-linked branches; re-balancing steps when their conditional learning speeds drift apart.

    An MMTM gates each modality's features by all of them; after every backward the conditional learning
    speed ``BDR_m = log10(M_bypass,m / M_main,m)`` (accumulated ``‖∇θ‖²/‖θ‖²`` of the MMTM parameters feeding
    branch m vs. branch m's own encoder and head) is compared across modalities, and when the gap exceeds
    ``epsilon`` the next ``window`` steps are *re-balancing* steps in which the faster-through-the-bypass modality's
    gate is frozen to its running average, so that branch must learn from its own input.

    ``objective=code`` (default): as the official model, every branch has its own classifier (our per-modality
    heads), the loss is the sum of their cross-entropies and the prediction the mean of their logits; the fusion
    head is removed. ``objective=bb``: BalanceBenchmark's variant, the fused head's CE and prediction.
    Logged: per step ``greedy/gap`` (largest speed gap), epoch means ``greedy/rebalancing`` (share of re-balancing
    steps) and ``greedy/<m>/frozen``, and ``greedy/<m>/bdr`` at the end of each epoch."""

    @dataclass
    class Options:
        epsilon: float = option(0.01, "speed gap that starts a re-balancing window (BalanceBenchmark alpha: 0.001)",
                                "[CODE training_guided.gin]", ge=0)
        window: int = option(5, "re-balancing steps per window (curation_windowsize; BalanceBenchmark window_size 5)",
                             "[CODE]", ge=1)
        starting_epoch: int = option(1, "first epoch (0-based) in which re-balancing may start; the official "
                                     "starting_epoch=2 counts epochs from 1 (BalanceBenchmark: from the start)",
                                     "[CODE]", ge=0)
        ratio: float = option(4.0, "MMTM reduction ratio: hidden size int(2 * sum of feature sizes / ratio)",
                              "[CODE]", gt=0)
        schedule: str = option("guided", "guided: by the conditional learning speed; random: each step uniformly "
                               "no re-balancing or one modality (the official random baseline)", "[CODE]",
                               choices=("guided", "random"))
        objective: str = option("code", "code: per-branch heads, sum of their CEs, mean of their logits (no fusion "
                                "head); bb: BalanceBenchmark's fused-head CE and fused prediction", "[CODE]",
                                choices=("code", "bb"))

    requires_paired_batches = True  # the MMTM exchanges information sample by sample
    needs_default_step = True  # reads the default step's gradients and sets the next forward's gates

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.wants_unimodal_loss = self.objective == "code"  # the branches' own classifiers are trained
        self._state: Optional[Dict[str, torch.Tensor]] = None

    def provides(self) -> FrozenSet[str]:
        hooks = super().provides()
        return hooks if self.objective == "code" else hooks - {"predict"}

    # ------------------------------------------------------------------ the architecture
    def configure_model(self, trainer: "Trainer", model: "MultimodalNet") -> None:
        self._mods = encoder_modalities(trainer, self)
        if model.coupling is not None:
            raise ValueError(f"greedy installs an MMTM between the encoders, but the model already has a feature "
                             f"coupling ({type(model.coupling).__name__})")
        model.coupling = MMTM(feature_sizes(model, self._mods), self.ratio)
        if self.objective == "code":
            model.fusion = None  # the official model averages its branch classifiers instead

    def on_fit_start(self, trainer: "Trainer") -> None:
        model = trainer.model
        if self.objective == "bb" and model.fusion is None:
            raise ValueError("greedy: method_args.greedy.objective=bb trains the fusion head, but the model has none "
                             "(another method removed it); use objective=code")
        coupling = model.coupling
        if not isinstance(coupling, MMTM):
            raise ValueError("greedy: the model's MMTM coupling was replaced by another method")
        self._mmtm = coupling
        heads = self.objective == "code"  # the official branch includes its classifier
        self._main = [list(model.encoders[m].parameters()) + (list(model.heads[m].parameters()) if heads else [])
                      for m in self._mods]
        squeeze = list(self._mmtm.squeeze.parameters())  # feeds every branch: counted for each [CODE]
        self._bypass = [list(self._mmtm.excite[m].parameters()) + squeeze for m in self._mods]
        dev, n = trainer.device, len(self._mods)
        if self._state is None:
            self._state = {"m_main": torch.zeros(n, device=dev), "m_bypass": torch.zeros(n, device=dev),
                           "rebalancing": torch.zeros((), dtype=torch.bool, device=dev),
                           "caring": torch.zeros((), dtype=torch.long, device=dev),
                           "step": torch.zeros((), dtype=torch.long, device=dev)}
        else:
            self._state = {k: v.to(dev) for k, v in self._state.items()}

    # ------------------------------------------------------------------ every step
    def after_backward(self, trainer: "Trainer", batch: "Batch", out: Optional["ModelOutput"]) -> None:
        s = self._state
        if out is None or s is None:
            return
        unlocked = trainer.epoch >= self.starting_epoch
        main = torch.stack([grad_weight_ratio(ps) for ps in self._main])
        bypass = torch.stack([grad_weight_ratio(ps) for ps in self._bypass])
        if self.schedule == "guided":
            # the official callback measures only outside re-balancing windows (and always while locked)
            measure = ~(s["rebalancing"] & unlocked)
            s["m_main"] = s["m_main"] + torch.where(measure, main, torch.zeros_like(main))
            s["m_bypass"] = s["m_bypass"] + torch.where(measure, bypass, torch.zeros_like(bypass))
            gap = speed_gap(branch_speed(s["m_bypass"], s["m_main"]))
            s["rebalancing"], s["caring"], s["step"] = guided_schedule(
                s["rebalancing"], s["caring"], s["step"], gap, unlocked, self.epsilon, self.window)
        else:  # the random baseline does not use the speed; it is accumulated for the log only
            s["m_main"], s["m_bypass"] = s["m_main"] + main, s["m_bypass"] + bypass
            gap = speed_gap(branch_speed(s["m_bypass"], s["m_main"]))
            s["rebalancing"], s["caring"] = random_schedule(len(self._mods), unlocked, trainer.device)
        frozen = s["rebalancing"] & (torch.arange(len(self._mods), device=trainer.device) == s["caring"])
        self._mmtm.frozen.copy_(frozen)  # the next training forward cuts the caring modality's inflow
        self.log_step("gap", gap.max())
        self.log_mean("rebalancing", s["rebalancing"].float())
        for i, m in enumerate(self._mods):
            self.log_mean(f"{m}/frozen", frozen[i].float())

    def on_epoch_end(self, trainer: "Trainer", epoch: int, record: Dict[str, Any]) -> None:
        if self._state is None:
            return
        bdr = branch_speed(self._state["m_bypass"], self._state["m_main"]).tolist()
        for m, v in zip(self._mods, bdr):
            self.log(f"{m}/bdr", v)

    # ------------------------------------------------------------------ evaluation
    def predict(self, trainer: "Trainer", out: "ModelOutput") -> Optional[torch.Tensor]:
        mods = [m for m in self._mods if m in out.logits]
        return ensemble_logits([out.logits[m] for m in mods]) if mods else None

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {} if self._state is None else {k: device_state(self._state[k]) for k in STATE}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self._state = {k: state[k].clone() for k in STATE} if state else None


__all__ = ["Greedy"]
