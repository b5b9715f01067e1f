"""OGM-GE — on-the-fly gradient modulation with generalisation enhancement (Peng et al., CVPR 2022).

Per step: each modality's score is the summed true-class probability of its share of the fused logits; the
score ratio ``rho`` says which modality dominates; after ``loss.backward()`` and before ``optimizer.step()``
the dominant modality's encoder gradients are scaled by ``k = 1 - tanh(alpha * rho)`` (GE: plus Gaussian noise
of the gradient's own std). In your own loop::

    shares = fusion_shares(model.fusion.modality_logits, out.features)    # or each modality's own logits
    rho, k = ogm_coefficients(ogm_scores(shares, y, mods), alpha=0.8)
    loss.backward()
    for i, m in enumerate(mods):
        modulate_(select_params(model.encoders[m], "weights"), k[i], noise=True)
    optimizer.step()

The ``ogm-ge`` plug-in calls these same functions (``mmbalance.methods.ogm_ge``).
"""
from ..methods.common import PARAM_SETS, in_window, select_params
from ..methods.ogm_ge import COEFF_FORMS, modulate_, ogm_coefficients, ogm_scores, true_class_score
from .common import fusion_shares

__all__ = ["COEFF_FORMS", "PARAM_SETS", "fusion_shares", "in_window", "modulate_", "ogm_coefficients", "ogm_scores",
           "select_params", "true_class_score"]
