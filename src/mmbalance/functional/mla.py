"""MLA — alternating unimodal adaptation (Zhang et al., CVPR 2024).

Each modality takes its own optimiser step through one head shared by all modalities; the shared head's weight
gradient is projected away from the feature directions already seen (OWM: :func:`owm_update`,
:func:`project_gradient`; the official annealed regulariser :func:`code_alpha`); at test time the unimodal
outputs are fused with entropy weights (:func:`entropy_weights`)::

    for m in mods:                                   # one step per modality
        loss = F.cross_entropy(head(encoders[m](x[m])), y); opt.zero_grad(); loss.backward()
        head.weight.grad.copy_(project_gradient(head.weight.grad, P)); P = owm_update(P, h_m.mean(0), alpha)
        opt.step()

The ``mla`` plug-in calls these same functions (``mmbalance.methods.mla``).
"""
from ..methods.mla import code_alpha, entropy_weights, owm_update, project_gradient

__all__ = ["code_alpha", "entropy_weights", "owm_update", "project_gradient"]
