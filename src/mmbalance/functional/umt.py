"""UMT — uni-modal teachers (Du et al., ICML 2023).

Unimodal teachers are trained first; the multimodal student then distils each teacher's features into its own
encoder (:func:`feature_distillation`) next to its classification loss.

The ``umt`` plug-in calls this same function (``mmbalance.methods.umt``).
"""
from ..methods.umt import feature_distillation

__all__ = ["feature_distillation"]
