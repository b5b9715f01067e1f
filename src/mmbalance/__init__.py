"""mmbalance: balanced multimodal learning — DUS, D&R, BSS and their baselines as plug-ins on one loop."""
__version__ = "0.1.0"

from .config import Config  # noqa: E402
from .engine import Plugin, Trainer  # noqa: E402
from .registry import DATASETS, ENCODERS, FUSIONS, METHODS  # noqa: E402
from . import models  # noqa: E402,F401  (register encoders/fusions)
from . import methods  # noqa: E402,F401  (register methods)


def train(cfg: Config, **kw):
    """Train one run described by ``cfg``; returns the summary dict."""
    return Trainer(cfg, **kw).fit()


__all__ = ["Config", "DATASETS", "ENCODERS", "FUSIONS", "METHODS", "Plugin", "Trainer", "train"]
