"""The plug-in base class: a method is a set of hooks on the one training loop.

Events, in the order the loop fires them (each plug-in implements only the ones it needs):

======================  =======================================================================
``configure_model``     after the model is built, before the optimizer: change the model
``configure_optimizer`` return parameter groups (MSLR) or None
``on_fit_start``        once, before the first epoch (after resume: with restored state)
``on_epoch_start``      start of each training epoch: replace ``trainer.train_order`` or
                        ``trainer.batcher`` (BSS orders samples, DUS sizes batches)
``training_step``       replace the whole step (at most one plug-in; MLA, ReconBoost)
``after_forward``       after the forward pass (DUS reads per-modality predictions)
``compute_loss``        add or change entries of the ``losses`` dict (PMR, G-Blending, ...)
``after_backward``      gradients exist, before clipping and the step (OGM-GE, AGM, MMPareto)
``after_step``          after ``optimizer.step()`` (DUS-RL bookkeeping)
``on_epoch_end``        after train + val/test evaluation of the epoch (D&R diagnoses here)
``on_fit_end``          once, after training
``predict``             turn a ModelOutput into the logits used for evaluation (or None)
======================  =======================================================================

Plug-ins run in ascending ``priority`` (ties: the order given in the method string). Every plug-in's
``state_dict`` is saved in each checkpoint under its ``name`` and restored on resume.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional


class Plugin:
    #: unique key of this plug-in (checkpoint key, log prefix)
    name: str = "plugin"
    #: lower runs first
    priority: int = 50
    #: True if the method needs the per-modality cross-entropy terms in the loss
    wants_unimodal_loss: bool = False
    #: True if the method only works on strictly paired batches (cannot stack with DUS)
    requires_paired_batches: bool = False
    #: which sampling layer this plug-in replaces: None, "order" (BSS/SMV) or "batcher" (DUS)
    replaces: Optional[str] = None
    #: True if this plug-in implements ``training_step``
    overrides_step: bool = False
    #: True if the method acts inside the default step (its forward/loss/backward events), which a
    #: step-replacing plug-in would silently bypass
    needs_default_step: bool = False

    # ------------------------------------------------------------------ events
    def configure_model(self, trainer, model) -> None:
        """Change the model before the optimizer is created."""

    def configure_optimizer(self, trainer, model) -> Optional[List[Dict[str, Any]]]:
        """Return torch parameter groups, or None for one group of all parameters."""
        return None

    def on_fit_start(self, trainer) -> None:
        """Called once before the first (or first resumed) epoch."""

    def on_epoch_start(self, trainer, epoch: int) -> None:
        """Called at the start of each training epoch."""

    def training_step(self, trainer, batch) -> Dict[str, Any]:
        """Replace the default step; return the ``losses`` dict (detached tensors are fine)."""
        raise NotImplementedError

    def after_forward(self, trainer, batch, out) -> None:
        """Called after the forward pass of a training step."""

    def compute_loss(self, trainer, batch, out, losses: Dict[str, Any]) -> None:
        """Add or modify loss terms in ``losses`` (summed for backward)."""

    def after_backward(self, trainer, batch, out) -> None:
        """Gradients are populated; modulate them here."""

    def after_step(self, trainer, batch, out) -> None:
        """Called after the optimizer step."""

    def on_epoch_end(self, trainer, epoch: int, record: Dict[str, Any]) -> None:
        """Called after the epoch's training and evaluation; ``record`` is the epoch's metrics."""

    def on_fit_end(self, trainer) -> None:
        """Called once after training."""

    def predict(self, trainer, out):
        """Return evaluation logits from a ModelOutput, or None to use ``eval.predict``."""
        return None

    def check_compatible(self, plugins: List["Plugin"]) -> None:
        """Raise ``IncompatiblePluginsError`` if this plug-in cannot run next to ``plugins``."""

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        pass


class IncompatiblePluginsError(ValueError):
    """Stacked methods that cannot work together (raised before training starts)."""


EVENTS = ["configure_model", "configure_optimizer", "on_fit_start", "on_epoch_start", "training_step",
          "after_forward", "compute_loss", "after_backward", "after_step", "on_epoch_end", "on_fit_end",
          "predict"]


def check_plugins(plugins: List[Plugin]) -> None:
    """Generic compatibility rules, then each plug-in's own ``check_compatible``."""
    names = [p.name for p in plugins]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise IncompatiblePluginsError(f"method {sorted(dup)[0]!r} is stacked twice")
    stepping = [p.name for p in plugins if p.overrides_step]
    if len(stepping) > 1:
        raise IncompatiblePluginsError(
            f"{stepping[0]!r} and {stepping[1]!r} both replace the training step; they cannot be stacked")
    for p in plugins:
        if p.needs_default_step and stepping and stepping[0] != p.name:
            raise IncompatiblePluginsError(
                f"{p.name!r} modulates the default training step, but {stepping[0]!r} replaces that step; "
                f"they cannot be stacked")
    for layer in ("order", "batcher"):
        owners = [p.name for p in plugins if p.replaces == layer]
        if len(owners) > 1:
            raise IncompatiblePluginsError(
                f"{owners[0]!r} and {owners[1]!r} both decide the sample {layer}; they cannot be stacked")
    if any(p.replaces == "batcher" for p in plugins):
        paired = [p.name for p in plugins if p.requires_paired_batches]
        if paired:
            owner = next(p.name for p in plugins if p.replaces == "batcher")
            raise IncompatiblePluginsError(
                f"{paired[0]!r} needs strictly paired batches, but {owner!r} gives modalities different "
                f"numbers of samples; these cannot be stacked")
    for p in plugins:
        p.check_compatible([q for q in plugins if q is not p])
