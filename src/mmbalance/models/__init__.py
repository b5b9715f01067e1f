"""Models: encoders and fusions (registered) and the MultimodalNet that combines them."""
from . import encoders, fusion, temporal  # noqa: F401  (register)
from .net import FeatureRoutes, ModelOutput, MultimodalNet, build_model

__all__ = ["FeatureRoutes", "ModelOutput", "MultimodalNet", "build_model"]
