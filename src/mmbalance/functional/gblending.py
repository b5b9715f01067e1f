"""G-Blending — gradient blending (Wang, Tran, Feiszli, CVPR 2020), online.

Per-head loss weights ``w_k ∝ ΔG_k / ΔO_k²`` from each head's train and held-out losses at the start and end
of a probe (:func:`blend_weights`), measured on a seeded, class-stratified hold-out of the training split
(:func:`stratified_holdout`); the model then trains on ``sum_k w_k CE(head_k)``.

The ``gblending`` plug-in calls these same functions (``mmbalance.methods.gblending``).
"""
from ..methods.gblending import FUSED, blend_weights, stratified_holdout

__all__ = ["FUSED", "blend_weights", "stratified_holdout"]
