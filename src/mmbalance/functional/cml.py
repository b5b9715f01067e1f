"""CML — calibrating multimodal learning (Ma et al.; ICML 2023).

Confidence (:func:`confidence`) must not rise when a modality is removed (:func:`zeroed`,
:func:`removal_order`): the rise is penalised (:func:`confidence_penalty`).

The ``cml`` plug-in calls these same functions (``mmbalance.methods.cml``).
"""
from ..methods.cml import confidence, confidence_penalty, removal_order, zeroed

__all__ = ["confidence", "confidence_penalty", "removal_order", "zeroed"]
