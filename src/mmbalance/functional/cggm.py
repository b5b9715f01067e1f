"""CGGM — classifier-guided gradient modulation (Guo, Jin, Chen, Zhao; NeurIPS 2024).

Auxiliary per-modality classifiers measure how fast each modality's accuracy improves; the improvements give
each encoder's gradient coefficient ``B_m`` (:func:`cggm_coefficients`: a modality improving more than the others is
slowed); a direction loss (:func:`direction_loss`) rewards the cosine (:func:`flat_cosine`) between each
classifier's output-weight gradient and the fused head's (:func:`linear_weight_grad` in closed form for linear
heads; the fused head's slice for a modality: :func:`fused_weight`).

The ``cggm`` plug-in calls these same functions (``mmbalance.methods.cggm``).
"""
from ..methods.cggm import cggm_coefficients, direction_loss, flat_cosine, fused_weight, linear_weight_grad

__all__ = ["cggm_coefficients", "direction_loss", "flat_cosine", "fused_weight", "linear_weight_grad"]
