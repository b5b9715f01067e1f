"""MMCosine — multi-modal cosine loss (Xu, Feng, Zhang, Hu; ICASSP 2023).

Each modality's share of the fused logits is a scaled cosine between its feature and the class weights
(:func:`cosine_logits`).

The ``mmcosine`` plug-in calls these same functions (``mmbalance.methods.mmcosine``).
"""
from ..methods.mmcosine import cosine_logits

__all__ = ["cosine_logits"]
