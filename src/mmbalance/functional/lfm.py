"""LFM — learning the modality gap dynamically (Yang et al.; NeurIPS 2024).

The fused cross-entropy is mixed with an alignment of the modalities' predictions
(:func:`alignment_divergence`, :func:`pairwise_alignment`), weighted by a fitted schedule
(:func:`fitted_cls_weight`) or a learned weight (:func:`hypergradient_step`, :func:`learned_lr`).

The ``lfm`` plug-in calls these same functions (``mmbalance.methods.lfm``).
"""
from ..methods.lfm import alignment_divergence, fitted_cls_weight, hypergradient_step, learned_lr, pairwise_alignment

__all__ = ["alignment_divergence", "fitted_cls_weight", "hypergradient_step", "learned_lr", "pairwise_alignment"]
