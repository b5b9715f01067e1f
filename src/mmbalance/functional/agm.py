"""AGM — adaptive gradient modulation (Li et al., ICCV 2023).

Each modality's mono-modal contribution to the fused output is its Shapley value over coalitions of padded
modalities (:func:`coalition_values`, :func:`contributions`); its score is the cross-entropy of that
contribution (:func:`contribution_scores`); the discrepancy of the scores is compared with the same map of their
running mean since the start (:func:`update_running`), and the gradient reaching modality m's contribution is
scaled by ``exp(alpha * min(target_m - ratio_m, clip))`` (:func:`agm_coefficients`, applied with
:func:`scale_grad` inside the loss)::

    values = coalition_values(model.fusion, feats, fills, mods, out.fused)
    contrib = contributions(values, mods)
    scores = contribution_scores(contrib, y, mods)
    ratio, target, k = agm_coefficients(scores, running, alpha=0.1)
    t += 1; running = update_running(running, scores, t)
    loss = F.cross_entropy(sum(scale_grad(contrib[m], k[i]) for i, m in enumerate(mods)), y)

The ``agm`` plug-in calls these same functions (``mmbalance.methods.agm``). Note: ``agm.discrepancy`` (an
exponential of score differences) is not DUS's ``dus.discrepancy`` (a ratio).
"""
from ..methods.agm import (MODES, PADS, agm_coefficients, coalition_values, contribution_scores, contributions,
                           discrepancy, update_running)
from .common import coalitions, scale_grad, shapley_weight

__all__ = ["MODES", "PADS", "agm_coefficients", "coalition_values", "coalitions", "contribution_scores",
           "contributions", "discrepancy", "scale_grad", "shapley_weight", "update_running"]
