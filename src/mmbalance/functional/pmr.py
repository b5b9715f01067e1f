"""PMR — prototypical modal rebalance (Fan et al., CVPR 2023).

Each modality keeps one prototype per class (:func:`class_means`, smoothed by :func:`update_prototypes`); a
sample's prototype logits are minus its distances to them (:func:`prototype_logits`). The summed true-class
prototype probabilities (:func:`prototype_scores`) give ratios and a prototypical cross-entropy weight for every
lagging modality (:func:`pmr_coefficients`); the dominant ones get an entropy regulariser early on
(:func:`entropy_regulariser`, from :func:`prototype_entropy`)::

    sims = {m: prototype_logits(out.features[m], protos[m]) for m in mods}
    rho, beta = pmr_coefficients(prototype_scores(sims, y, mods), alpha=0.6)
    loss = F.cross_entropy(out.fused, y) + sum(beta[i] * F.cross_entropy(sims[m], y) for i, m in enumerate(mods))

The ``pmr`` plug-in calls these same functions (``mmbalance.methods.pmr``).
"""
from ..methods.pmr import (RULES, class_means, entropy_regulariser, pmr_coefficients, prototype_entropy,
                           prototype_logits, prototype_scores, update_prototypes)

__all__ = ["RULES", "class_means", "entropy_regulariser", "pmr_coefficients", "prototype_entropy",
           "prototype_logits", "prototype_scores", "update_prototypes"]
