"""IPRM — instantaneous probe-and-rebalance (Yang, Wu, Jiang; IJCAI 2025).

Features are mixed on the unit sphere (:func:`geodesic_mixup`); a no-grad probe measures each modality's
prediction shift (:func:`prediction_kl`), which sets the mixing weight (:func:`strength_weight`, smoothed by
:func:`ema`).

The ``iprm`` plug-in calls these same functions (``mmbalance.methods.iprm``).
"""
from ..methods.iprm import ema, geodesic_mixup, prediction_kl, strength_weight

__all__ = ["ema", "geodesic_mixup", "prediction_kl", "strength_weight"]
