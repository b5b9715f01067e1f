"""The training engine: one loop (:class:`Trainer`), the plug-in contract, samplers, checkpoints, metrics."""
from .compat import IncompatiblePluginsError, check_plugins
from .options import OptionError, option
from .plugin import Plugin
from .samplers import Batcher, EpochBatchSampler, EpochOrder, FixedBatcher, RandomOrder
from .stages import Stage
from .losses import NonFiniteLossError
from .trainer import Trainer

__all__ = ["Batcher", "EpochBatchSampler", "EpochOrder", "FixedBatcher", "IncompatiblePluginsError",
           "NonFiniteLossError", "OptionError", "Plugin", "RandomOrder", "Stage", "Trainer", "check_plugins",
           "option"]
