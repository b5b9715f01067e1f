"""SMV — sample-level modality valuation (Wei et al., CVPR 2024).

Per-sample Shapley values of each modality under ``v(S) = |S| · [fused prediction with only S is right]``
(:func:`fused_correct_by_subset`, :func:`shapley_from_correct`); low-contributing modalities of a sample get
extra copies that train only that modality (:func:`sample_copies`; modality level: :func:`modality_resample`),
realised as a per-sample mixture of the fused loss and the only-m losses (:func:`mixture_loss`).

The ``smv`` plug-in calls these same functions (``mmbalance.methods.smv``).
"""
from ..methods.smv import fused_correct_by_subset, mixture_loss, modality_resample, sample_copies, shapley_from_correct

__all__ = ["fused_correct_by_subset", "mixture_loss", "modality_resample", "sample_copies", "shapley_from_correct"]
