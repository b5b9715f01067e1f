"""ARL — asymmetric representation learning (Wei, Luo, Luo; ICCV 2025).

Each modality's unimodal logits (of the shared head) give a magnitude and an entropy, the prediction-variance
proxy (:func:`logit_magnitude`, :func:`mean_entropy`, :func:`arl_statistics`); they give each encoder a gradient
weight ``w = softmax(T s)`` (:func:`arl_weights_from`, :func:`arl_weights`), applied by the gradient-scale op
placed right after the encoder (``scale_grad`` of :mod:`.common`: gradient times ``1 + w_m``).

The ``arl`` plug-in calls these same functions (``mmbalance.methods.arl``).
"""
from ..methods.arl import arl_statistics, arl_weights, arl_weights_from, logit_magnitude, mean_entropy
from .common import scale_grad

__all__ = ["arl_statistics", "arl_weights", "arl_weights_from", "logit_magnitude", "mean_entropy", "scale_grad"]
