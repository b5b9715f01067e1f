"""OPM — on-the-fly prediction modulation (Wei, Hu, Du, Wen; TPAMI 2024).

The dominant modality's features are dropped on the fused route with probabilities from the discrepancy
(:func:`drop_probabilities`), as per-sample masks (:func:`keep_masks`), the kept ones rescaled
(:func:`rescale_factors`).

The ``opm`` plug-in calls these same functions (``mmbalance.methods.opm``).
"""
from ..methods.opm import drop_probabilities, keep_masks, rescale_factors

__all__ = ["drop_probabilities", "keep_masks", "rescale_factors"]
