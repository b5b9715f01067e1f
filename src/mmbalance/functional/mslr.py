"""MSLR — modality-specific learning rates (Yao & Mihalcea, Findings of ACL 2022).

Each modality's encoder and head train in their own optimiser group at ``lr * r_m`` (:func:`param_groups`); the
dynamic strategy rescales ``r_m`` after every epoch by the modality's unimodal validation accuracy over the mean
of its last ``window`` values (:func:`dynamic_ratio`)::

    optimizer = torch.optim.SGD(param_groups(model, 0.05, {"audio": 0.9, "image": 1.1}), momentum=0.9)

The ``mslr`` plug-in calls these same functions (``mmbalance.methods.mslr``).
"""
from ..methods.mslr import dynamic_ratio, param_groups

__all__ = ["dynamic_ratio", "param_groups"]
