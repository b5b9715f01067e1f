"""ReconBoost — modality-alternating boosting with reconcilement (Hua et al., ICML 2024).

Stage s trains one modality's learner against the ensemble of the others with the reconcilement loss
``-(w1 - w2 p_ens(y)) log p_m(y)`` (:func:`reconcilement_loss`); the released code's memory-consolidation term is
:func:`consolidation_term`; a global rectification then fine-tunes the ensemble on plain cross-entropy.

The ``reconboost`` plug-in calls these same functions (``mmbalance.methods.reconboost``).
"""
from ..methods.reconboost import consolidation_term, reconcilement_loss

__all__ = ["consolidation_term", "reconcilement_loss"]
