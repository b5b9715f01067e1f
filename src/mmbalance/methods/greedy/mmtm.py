"""The multimodal transfer module (MMTM, Joze et al. CVPR 2020) as the Greedy learner uses it, on the pooled
encoder outputs.

Every modality's feature is squeezed (here it already is a pooled vector), the squeezed vectors of all
modalities are concatenated, ``h = relu(W_s [s_1; …; s_M])`` with ``dim(h) = int(2·Σd_m / ratio)``, and modality
m's feature is scaled channel-wise by ``g_m = sigmoid(W_m h)``: each branch receives information from the
others through its gate (the *bypass*). For Greedy's re-balancing steps a modality's gate can be *frozen*: it is
replaced by the running average of that modality's gates over all training forwards so far (a constant, no
gradient), which cuts the cross-modal flow into that branch [CODE ``balanced_mmtm.MMTM_mitigate``].

Placement. The official model puts one MMTM after ResNet ``layer2``, ``layer3`` and ``layer4``, before the
average pooling. A channel-wise gate commutes with average pooling and the squeeze of the last feature map is
the pooled feature, so this module on the pooled encoder outputs computes exactly the official *last* MMTM;
the two intermediate ones are not reproduced because our encoders are opaque modules (``docs/methods/greedy.md``).
"""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn


class MMTM(nn.Module):
    """Gates ``{m: feature [n, d_m]}`` by a squeeze-excitation over all modalities (installed as
    ``model.coupling``). Buffers: ``running_gate`` (the gates' running mean, modalities concatenated), ``steps``
    (training forwards averaged) and ``frozen`` (which modalities' gates the running mean replaces in training)."""

    running_gate: torch.Tensor
    steps: torch.Tensor
    frozen: torch.Tensor

    def __init__(self, dims: Dict[str, int], ratio: float = 4.0):
        super().__init__()
        self.modalities = list(dims)
        self.dims = [int(dims[m]) for m in self.modalities]
        hidden = int(2 * sum(self.dims) / ratio)  # [CODE] dim_out = int(2 * dim / ratio)
        if hidden < 1:
            raise ValueError(f"greedy: MMTM ratio {ratio} leaves no hidden unit for feature sizes {self.dims}")
        self.squeeze = nn.Linear(sum(self.dims), hidden)
        self.excite = nn.ModuleDict({m: nn.Linear(hidden, d) for m, d in zip(self.modalities, self.dims)})
        self.register_buffer("running_gate", torch.zeros(sum(self.dims)))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("frozen", torch.zeros(len(self.modalities), dtype=torch.bool))

    def gates(self, feats: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``sigmoid(W_m relu(W_s [f_1; …; f_M]))`` for every modality (rows are samples)."""
        h = F.relu(self.squeeze(torch.cat([feats[m] for m in self.modalities], dim=1)))
        return {m: torch.sigmoid(self.excite[m](h)) for m in self.modalities}

    def forward(self, feats: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if any(m not in feats for m in self.modalities):
            return feats  # a pass over a subset of the modalities has no partner to exchange with
        if len({int(feats[m].shape[0]) for m in self.modalities}) != 1:
            raise ValueError("greedy: the MMTM couples the modalities sample by sample and needs every modality "
                             "to have the same rows (paired batches)")
        gates = self.gates(feats)
        out = dict(feats)
        start = 0
        if self.training:
            self._update_running_gate(gates)
        for i, (m, d) in enumerate(zip(self.modalities, self.dims)):
            g = gates[m]
            if self.training:  # re-balancing steps act on training forwards only
                avg = self.running_gate[start:start + d].to(g.dtype).expand_as(g)
                g = torch.where(self.frozen[i], avg, g)
            out[m] = feats[m] * g
            start += d
        return out

    @torch.no_grad()
    def _update_running_gate(self, gates: Dict[str, torch.Tensor]) -> None:
        """``avg ← (mean_batch(g) + avg·k) / (k + 1)`` with ``k`` the forwards so far [CODE], each modality its
        own average (the official code feeds the first modality's gates into both averages, a slip we do not
        reproduce; BalanceBenchmark keeps one average per modality)."""
        mean = torch.cat([gates[m].detach().float().mean(0) for m in self.modalities])
        k = self.steps.to(mean.dtype)
        self.running_gate.copy_((mean + self.running_gate * k) / (k + 1))
        self.steps.add_(1)


__all__ = ["MMTM"]
