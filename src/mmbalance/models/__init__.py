"""Models: encoders and fusions (registered) and the MultimodalNet that combines them."""
from . import encoders, fusion  # noqa: F401  (register)
from .net import ModelOutput, MultimodalNet, build_model

__all__ = ["ModelOutput", "MultimodalNet", "build_model"]
