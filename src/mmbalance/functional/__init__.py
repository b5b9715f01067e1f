"""``mmbalance.functional``: the math of each method as plain, typed functions, usable in any training loop.

The plug-ins call these same functions (one implementation, two entry points)."""
from .common import coalitions, discrepancy_ratio, ensemble_logits, shapley_weight, true_class_probability

__all__ = ["coalitions", "discrepancy_ratio", "ensemble_logits", "shapley_weight", "true_class_probability"]
