"""A method of this project: weight each modality's own loss by how far its head lags (``lag-weighting``).

Every step, each modality head's accuracy on its own rows enters an exponential moving average ``a_m``; its
cross-entropy term is multiplied by ``w_m = (1 - a_m) / mean_k (1 - a_k)`` (the weights average to one), so a
modality whose head lags gets more of the gradient. The fused loss is unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mmbalance import METHODS, Plugin
from mmbalance.engine import option


@METHODS.register("lag-weighting")
class LagWeighting(Plugin):
    """Up-weight the per-modality loss of the modalities whose heads lag (an EMA of their accuracy)."""

    wants_unimodal_loss = True  # the per-modality terms this method re-weights

    @dataclass
    class Options:
        momentum: float = option(0.9, "EMA momentum of the heads' accuracies", "[RECON]", ge=0, lt=1)

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.acc = None  # state: the EMA of each head's accuracy (checkpointed)

    def compute_loss(self, trainer, batch, out, losses) -> None:
        mods = list(out.logits)
        with torch.no_grad():
            acc = torch.stack([(out.logits[m].argmax(1) == batch.labels(m)).float().mean() for m in mods])
            self.acc = acc if self.acc is None else self.momentum * self.acc.to(acc) + (1 - self.momentum) * acc
            lag = (1 - self.acc).clamp_min(1e-3)
            weights = lag / lag.mean()
        for i, m in enumerate(mods):
            if f"uni_{m}" in losses:
                losses[f"uni_{m}"] = weights[i] * losses[f"uni_{m}"]
            self.log_mean(f"{m}/weight", weights[i])

    def state_dict(self):
        return {"acc": None if self.acc is None else self.acc.detach().cpu().clone()}

    def load_state_dict(self, state) -> None:
        self.acc = state["acc"]
