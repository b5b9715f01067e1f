"""D&R — diagnosing and re-learning (Wei et al., ECCV 2024).

Every ``H`` epochs each modality is diagnosed from the separability of its encoder's features: k-means
purity on the training set and on a held-out set, their gap, and a re-initialisation strength
``alpha = tanh(lambda * gap)`` (:func:`purity_gap`); the encoder is then softly re-initialised towards its own
initial weights, ``w <- (1 - alpha) w + alpha w_init`` (:func:`soft_reinit_`). In your own loop::

    init = {m: encoder_init_params(model.state_dict(), model.encoders[m], m) for m in mods}   # at the start
    ...
    if epoch > 0 and epoch % H == 0:                    # after the epoch's evaluation
        for m in mods:                                  # features: eval mode, no grad, [N, d] per split
            stats = purity_gap(train_feats[m], y_train, val_feats[m], y_val, num_classes, lambda_=3.0)
            soft_reinit_(model.encoders[m], init[m], stats["alpha"])

The ``diagnose-relearn`` plug-in calls these same functions (``mmbalance.methods.diagnose_relearn``); the
purity and k-means live in :mod:`mmbalance.diagnostics.purity`.
"""
from ..diagnostics.purity import BACKENDS, clustering_purity, kmeans, minmax_scale, purity
from ..methods.diagnose_relearn import encoder_init_params, purity_gap, reinit_strength, soft_reinit_

__all__ = ["BACKENDS", "clustering_purity", "encoder_init_params", "kmeans", "minmax_scale", "purity", "purity_gap",
           "reinit_strength", "soft_reinit_"]
