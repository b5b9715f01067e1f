"""MMPareto — Pareto integration of the multimodal and unimodal gradients (Wei & Hu, ICML 2024).

For each encoder, the gradient of the fused loss ``g_mm`` and of its own unimodal loss ``g_uni`` are combined:
equal weights when they agree (cosine > 0), MGDA min-norm weights when they conflict (:func:`pareto_weights`,
:func:`min_norm_weight`), then scaled to at least the norm of the plain sum and by ``gamma``
(:func:`combine`, per tensor; :func:`pareto_rewrite_` does one encoder in place). In your own loop::

    g_mm = torch.autograd.grad(loss_fused, params_m, retain_graph=True)
    g_uni = torch.autograd.grad(loss_uni_m, params_m, retain_graph=True)
    (loss_fused + sum(loss_uni.values())).backward()
    cos, k_uni = pareto_rewrite_(params_m, g_mm, g_uni, gamma=1.5)
    optimizer.step()

The ``mmpareto`` plug-in calls these same functions (``mmbalance.methods.mmpareto``).
"""
from ..methods.mmpareto import combine, min_norm_weight, pareto_rewrite_, pareto_weights

__all__ = ["combine", "min_norm_weight", "pareto_rewrite_", "pareto_weights"]
