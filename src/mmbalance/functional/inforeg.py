"""InfoReg — information acquisition regulation (Huang, Wei, Yang, Hu; CVPR 2025).

While the "prime learning window" is open (the relative change of the encoders' gradient trace over the last
epochs, :func:`layer_trace`, :func:`window_change`), the modality that scores higher is slowed by a proximal pull
towards its weights at the start of the epoch, ``g <- g + beta_m (theta - theta_start)`` with ``beta_m`` from the
score gap (:func:`proximal_betas`), added to the gradients in place (:func:`add_proximal_pull_`).

The ``inforeg`` plug-in calls these same functions (``mmbalance.methods.inforeg``).
"""
from ..methods.inforeg import add_proximal_pull_, layer_trace, proximal_betas, window_change

__all__ = ["add_proximal_pull_", "layer_trace", "proximal_betas", "window_change"]
