"""AMCo — adaptive mask co-optimisation (Zhou et al.; ICASSP 2023).

The modality the model depends on (:func:`dependence`) has a growing part (:func:`mask_ratio`) of its input to
the fused head masked (:func:`random_keep_mask`).

The ``amco`` plug-in calls these same functions (``mmbalance.methods.amco``).
"""
from ..methods.amco import dependence, mask_ratio, random_keep_mask

__all__ = ["dependence", "mask_ratio", "random_keep_mask"]
