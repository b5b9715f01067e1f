"""The plug-in contract: a method is a set of typed hooks on the one training loop.

Each plug-in implements only the hooks it needs. In firing order:

=========================  ==========================================================================
set-up
``configure_model``        change the model before the optimizer exists (shared heads, no fusion)
``optimizer_groups``       *one answer*: torch parameter groups (MSLR), or None
``stages``                 stages to run before the main epochs (teachers, warm-up): a list of ``Stage``
``on_load``                resume: plug-in states are restored; re-create what the plug-in added to the
                           model (``Trainer.add_module``) before the model and optimizer weights load
``on_fit_start``           once, before the first (or first resumed) main epoch
every epoch
``on_epoch_start``         start of a training epoch
``epoch_order``            *one answer*: an ``EpochOrder`` (which samples, in which sequence), or None
``batcher``                *one answer*: a ``Batcher`` (how the sequence is cut into batches), or None
every step
``training_step``          *one answer*: a step strategy replacing the default step (MLA, ReconBoost);
                           built on ``Trainer.forward`` / ``backward`` / ``optimizer_step``, so
                           ``after_backward`` and ``after_step`` still fire
``before_forward``         default step: before the training forward (probe passes: IPRM)
``transform_features``     default step: change the encoder outputs on their way to the heads and the
                           fusion head (``FeatureRoutes``: detach, gradient scaling, feature dropout)
``after_forward``          default step: after the forward pass (DUS reads per-modality predictions)
``compute_loss``           default step: add or change entries of the ``losses`` dict
``after_backward``         gradients exist, before clipping and the optimizer step (OGM-GE, AGM)
``after_step``             after ``optimizer.step()``
end of every epoch
``after_evaluate``         val/test metrics are in ``record`` (model selection, early stopping)
``on_epoch_end``           after evaluation (D&R diagnoses and re-initialises here)
``on_record``              the epoch's record is final (writers, checkpoints, progress)
end of training
``on_fit_end``             once, after the last epoch (the summary is written here)
evaluation
``predict``                *one answer*: evaluation logits from a ``ModelOutput``, or None
=========================  ==========================================================================

*One answer*: at most one plug-in may provide each of these hooks (:data:`EXCLUSIVE`); stacking two is
refused before training. Which hooks a plug-in provides is derived from what it implements
(:meth:`Plugin.provides`). Plug-ins run in ascending ``priority`` (ties: the order written). Every
plug-in's ``state_dict`` is saved under its registered ``name`` in each checkpoint; it must hold only
tensors and plain Python containers (checkpoints load with ``weights_only=True``).
"""
from __future__ import annotations

from dataclasses import fields
from typing import TYPE_CHECKING, Any, ClassVar, Dict, FrozenSet, List, Optional

from torch import Tensor

from .options import NoOptions, OptionError, build_options, option_error

if TYPE_CHECKING:
    from ..data.batch import Batch
    from ..models.net import FeatureRoutes, ModelOutput, MultimodalNet
    from .samplers import Batcher, EpochOrder
    from .stages import Stage
    from .trainer import Trainer

Losses = Dict[str, Tensor]
Record = Dict[str, Any]

#: hooks for which at most one plug-in may give an answer, and what providing them means
EXCLUSIVE: Dict[str, str] = {
    "training_step": "replace the training step",
    "epoch_order": "decide the sample order",
    "batcher": "decide the sample batcher",
    "optimizer_groups": "set optimizer parameter groups",
    "predict": "decide the evaluation prediction",
}

#: every hook, in firing order
EVENTS = ["configure_model", "optimizer_groups", "stages", "on_load", "on_fit_start", "on_epoch_start",
          "epoch_order", "batcher", "training_step", "before_forward", "transform_features", "after_forward",
          "compute_loss", "after_backward", "after_step", "after_evaluate", "on_epoch_end", "on_record",
          "on_fit_end", "predict"]


class Plugin:
    """Base class of every method. Subclasses declare ``Options`` (a dataclass of :func:`~.options.option`
    fields) and implement the hooks they need; ``Plugin(**options)`` validates the options and sets each
    as an attribute."""

    #: registered name (set by ``METHODS.register``): checkpoint key and log prefix
    name: str = "plugin"
    #: lower runs first
    priority: int = 50
    #: the method's options (a dataclass built with ``option(...)`` fields)
    Options: ClassVar[type] = NoOptions
    #: the method needs the per-modality cross-entropy terms in the base loss
    wants_unimodal_loss: bool = False
    #: the method works only on batches where every modality has the same samples (refused next to DUS)
    requires_paired_batches: bool = False
    #: the method acts inside the default step (its forward/loss events, or reads the fused output after
    #: backward), which a step strategy (``training_step``) would bypass
    needs_default_step: bool = False

    if TYPE_CHECKING:  # options are set as attributes from the Options dataclass
        def __getattr__(self, name: str) -> Any: ...

    def __init__(self, **options: Any) -> None:
        self.options = build_options(type(self).Options, options, self.name)
        for f in fields(self.options):
            setattr(self, f.name, getattr(self.options, f.name))
        self.validate()

    # ------------------------------------------------------------------ options and wiring
    def validate(self) -> None:
        """Check rules between options (raise :meth:`option_error`)."""

    def option_error(self, option: str, what: str, got: Any) -> OptionError:
        """The error for a bad value of ``method_args.<name>.<option>``."""
        return option_error(self.name, option, what, got)

    def provides(self) -> FrozenSet[str]:
        """The one-answer hooks (:data:`EXCLUSIVE`) this plug-in answers: those it implements. A plug-in
        whose options switch a hook off narrows this set (G-Blending without a train hold-out)."""
        return frozenset(h for h in EXCLUSIVE if implements(self, h))

    def attach(self, trainer: "Trainer") -> None:
        """Called by the trainer that runs this plug-in (gives :meth:`log` its destination)."""
        self._trainer = trainer

    def log(self, key: str, value: Any) -> None:
        """Record a value for this epoch under ``<name>/<key>`` (last value wins)."""
        self._logger().log(f"{self.name}/{key}", value)

    def log_step(self, key: str, value: Any) -> None:
        """Append a per-step value under ``<name>/<key>`` (tensors stay on the device until epoch end)."""
        self._logger().log_step(f"{self.name}/{key}", value)

    def log_mean(self, key: str, value: Tensor) -> None:
        """Add a per-step tensor to the epoch mean logged under ``<name>/<key>`` (summed on the device)."""
        self._logger().log_mean(f"{self.name}/{key}", value)

    def _logger(self):
        trainer = getattr(self, "_trainer", None)
        if trainer is None:
            raise RuntimeError(f"plug-in {self.name!r} logged before a Trainer attached it")
        return trainer.epoch_log

    # ------------------------------------------------------------------ set-up
    def configure_model(self, trainer: "Trainer", model: "MultimodalNet") -> None:
        """Change the model before the optimizer is created."""

    def optimizer_groups(self, trainer: "Trainer", model: "MultimodalNet") -> Optional[List[Dict[str, Any]]]:
        """One answer: torch parameter groups for the optimizer, or None for one group of everything."""
        return None

    def stages(self, trainer: "Trainer") -> List["Stage"]:
        """Stages to run before the main epochs (each checkpointed and resumed like an epoch)."""
        return []

    def on_load(self, trainer: "Trainer") -> None:
        """Resume: this plug-in's state is restored; re-create modules it added to the model."""

    def on_fit_start(self, trainer: "Trainer") -> None:
        """Once before the first (or first resumed) main epoch."""

    # ------------------------------------------------------------------ every epoch
    def on_epoch_start(self, trainer: "Trainer", epoch: int) -> None:
        """Start of a training epoch."""

    def epoch_order(self, trainer: "Trainer", epoch: int) -> Optional["EpochOrder"]:
        """One answer: the epoch's sample order, or None for the default shuffle."""
        return None

    def batcher(self, trainer: "Trainer", epoch: int) -> Optional["Batcher"]:
        """One answer: how the epoch's order is cut into batches, or None for fixed-size batches."""
        return None

    # ------------------------------------------------------------------ every step
    def training_step(self, trainer: "Trainer", batch: "Batch") -> Losses:
        """One answer: run the whole step with the trainer's primitives and return the (detached) losses."""
        raise NotImplementedError

    def before_forward(self, trainer: "Trainer", batch: "Batch") -> None:
        """Default step, before the training forward (extra probe passes go here)."""

    def transform_features(self, trainer: "Trainer", batch: "Batch", routes: "FeatureRoutes") -> None:
        """Default step: replace entries of ``routes.heads`` / ``routes.fusion`` (the encoder outputs)."""

    def after_forward(self, trainer: "Trainer", batch: "Batch", out: "ModelOutput") -> None:
        """Default step, after the training forward."""

    def compute_loss(self, trainer: "Trainer", batch: "Batch", out: "ModelOutput", losses: Losses) -> None:
        """Default step: add or change loss terms (their sum is backpropagated)."""

    def after_backward(self, trainer: "Trainer", batch: "Batch", out: Optional["ModelOutput"]) -> None:
        """Gradients exist, before clipping and the optimizer step."""

    def after_step(self, trainer: "Trainer", batch: "Batch", out: Optional["ModelOutput"]) -> None:
        """After the optimizer step (``out`` is None after a step strategy without a full forward)."""

    # ------------------------------------------------------------------ end of epoch / fit
    def after_evaluate(self, trainer: "Trainer", epoch: int, record: Record) -> None:
        """The epoch's val/test metrics are in ``record``."""

    def on_epoch_end(self, trainer: "Trainer", epoch: int, record: Record) -> None:
        """After the epoch's training and evaluation."""

    def on_record(self, trainer: "Trainer", record: Record) -> None:
        """The epoch's record is final (plug-in scalars, timings) and in ``trainer.history``."""

    def on_fit_end(self, trainer: "Trainer") -> None:
        """Once, after training."""

    def predict(self, trainer: "Trainer", out: "ModelOutput") -> Optional[Tensor]:
        """One answer: evaluation logits from a model output, or None (``eval.predict``)."""
        return None

    # ------------------------------------------------------------------ compatibility and state
    def check_compatible(self, plugins: List["Plugin"]) -> None:
        """Raise ``IncompatiblePluginsError`` if this plug-in cannot run next to ``plugins``."""

    def state_dict(self) -> Dict[str, Any]:
        """What a resumed run needs (tensors and plain containers only)."""
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def implements(plugin: Plugin, hook: str) -> bool:
    """Whether ``plugin``'s class overrides ``hook`` of :class:`Plugin`."""
    return getattr(type(plugin), hook, None) is not getattr(Plugin, hook)


def device_state(t: Optional[Tensor]) -> Optional[Tensor]:
    """A CPU snapshot of a tensor for a state dict (buffers keep changing in place after the save)."""
    return None if t is None else t.detach().cpu().clone()


__all__ = ["EVENTS", "EXCLUSIVE", "Losses", "Plugin", "Record", "device_state", "implements"]
