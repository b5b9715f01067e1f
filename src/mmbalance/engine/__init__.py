"""The training engine: one loop (:class:`Trainer`), the plug-in base, samplers, checkpoints, metrics."""
from .plugin import IncompatiblePluginsError, Plugin
from .samplers import Batcher, EpochBatchSampler, EpochOrder, FixedBatcher, RandomOrder
from .trainer import NonFiniteLossError, Trainer

__all__ = ["Batcher", "EpochBatchSampler", "EpochOrder", "FixedBatcher", "IncompatiblePluginsError",
           "NonFiniteLossError", "Plugin", "RandomOrder", "Trainer"]
