"""DUS — data-aware unimodal sampling (Jiang et al., 2025; the method section is not public: a labelled
reconstruction, see ``docs/methods/dus.md``).

Per step: each modality's score is the mean true-class probability of its own head on its own samples
(:func:`modality_scores`), accumulated into a cumulative mean (:func:`update_running_score`); the discrepancy
``rho_j = s_j / mean_{k != j} s_k`` (:func:`discrepancy`) sets the next step's per-modality batch sizes,
``N_B * rho^(-gamma)`` within bounds and a budget (:func:`heuristic_sizes`, :func:`allocate_sizes`). In your own
loop, feed modality m the first ``n_m`` samples of a batch of ``max(n)`` and the fused head the first ``min(n)``
(the *nested* batch :class:`~mmbalance.methods.dus.DUSBatcher` plans)::

    s_hat = update_running_score(s_hat, modality_scores(logits, labels, mods), t)
    sizes = heuristic_sizes(discrepancy(s_hat).tolist(), base=64, gamma=1.0, n_lo=32, n_hi=128)

The ``dus-h``/``dus-rl`` plug-ins call these same functions (``mmbalance.methods.dus``). Note: ``dus.discrepancy``
(a ratio) is not AGM's ``agm.discrepancy``.
"""
from ..methods.dus.allocation import (allocate_sizes, discrepancy, heuristic_sizes, imbalance, modality_scores,
                                      update_running_score)
from ..methods.dus.policy import discounted_returns

__all__ = ["allocate_sizes", "discounted_returns", "discrepancy", "heuristic_sizes", "imbalance", "modality_scores",
           "update_running_score"]
