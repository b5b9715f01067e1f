"""A run's full state (``last.pt``) and model checkpoints (``best.pt``): what is saved and how it comes back."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

from .checkpoint import rng_state, set_rng_state

if TYPE_CHECKING:
    from .trainer import Trainer

CHECKPOINT_FORMAT = 2  #: layout of last.pt (2: plug-in contract v2, bookkeeping state under "plugins")


def capture(trainer: "Trainer") -> Dict[str, Any]:
    """Everything a resumed run needs; only tensors and plain containers (loads with ``weights_only=True``)."""
    return {
        "format": CHECKPOINT_FORMAT,
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
        "model": trainer.model.state_dict(),
        "initial_model": trainer.initial_state,
        "optimizer": trainer.optimizer.state_dict(),
        "scheduler": trainer.scheduler.state_dict() if trainer.scheduler is not None else None,
        "rng": rng_state(),
        "aug_rng": trainer.aug_generator.get_state(),
        "plugins": {p.name: p.state_dict() for p in trainer.plugins},
        "history": trainer.history,
        "stages": {"epochs": dict(trainer.stage_epochs), "history": trainer.stage_history},
        "wall_time": trainer.wall_time,
        "method": trainer.cfg.method,
        "data_fingerprint": getattr(trainer, "data_fingerprint", None),
    }


def restore(trainer: "Trainer", state: Dict[str, Any]) -> None:
    """Continue exactly from :func:`capture`: plug-in states first, then ``on_load`` (plug-ins re-create the
    modules they added), then model, optimizer, scheduler, counters and every random stream."""
    if state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint format {state.get('format', 1)} is not {CHECKPOINT_FORMAT} (written by an "
                         f"older mmbalance); start the run afresh")
    if state.get("method") != trainer.cfg.method:
        raise ValueError(f"checkpoint was written by method {state.get('method')!r}, not {trainer.cfg.method!r}")
    missing = [p.name for p in trainer.plugins if p.name not in state["plugins"]]
    if missing:
        raise ValueError(f"checkpoint has no state for plug-in {missing[0]!r}")
    for p in trainer.plugins:
        p.load_state_dict(state["plugins"][p.name])
    trainer.call("on_load")
    trainer.model.load_state_dict(state["model"])
    trainer.initial_state = state["initial_model"]
    trainer.optimizer.load_state_dict(state["optimizer"])
    if trainer.scheduler is not None and state["scheduler"] is not None:
        trainer.scheduler.load_state_dict(state["scheduler"])
    trainer.epoch, trainer.global_step = state["epoch"], state["global_step"]
    trainer.history, trainer.wall_time = state["history"], state["wall_time"]
    trainer.stage_epochs = dict(state["stages"]["epochs"])
    trainer.stage_history = list(state["stages"]["history"])
    set_rng_state(state["rng"])
    trainer.aug_generator.set_state(state["aug_rng"])


def load_weights(trainer: "Trainer", ckpt: Dict[str, Any]) -> None:
    """Load a model checkpoint: the states of plug-ins that grew the model first (their ``on_load`` re-creates
    missing modules), then the weights; modules added after that checkpoint keep their current values."""
    growing = [p for p in trainer.plugins if p.name in ckpt.get("plugins", {})]
    for p in growing:
        p.load_state_dict(ckpt["plugins"][p.name])
        p.on_load(trainer)
    missing, unexpected = trainer.model.load_state_dict(ckpt["model"], strict=False)
    bad = [k for k in missing if not k.startswith("extras.")] + list(unexpected)
    if bad:
        raise ValueError(f"checkpoint does not fit the model: {bad[0]!r} is missing or unexpected")


def growth_states(trainer: "Trainer") -> Dict[str, Any]:
    """States of the plug-ins that add modules (implement ``on_load``), saved with ``best.pt``."""
    from .plugin import implements

    return {p.name: p.state_dict() for p in trainer.plugins if implements(p, "on_load")}
