"""AUG — sustained boosting with adaptive classifier assignment (Jiang, Huang, Yang; NeurIPS 2025).

Each modality's prediction is a sum of classifiers; every new one is fitted to the residual of the earlier ones
(:func:`residual_weights`, :func:`sustained_boosting_terms`), and a modality whose score lags gets another
classifier (:func:`needs_classifier`).

The ``aug`` plug-in calls these same functions (``mmbalance.methods.aug``).
"""
from ..methods.aug import needs_classifier, residual_weights, sustained_boosting_terms

__all__ = ["needs_classifier", "residual_weights", "sustained_boosting_terms"]
