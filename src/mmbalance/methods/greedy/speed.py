"""Conditional learning speed and the re-balancing schedule of the Greedy learner, as plain tensor functions.

All of it stays on the device (no host synchronisation per step): the schedule's state is three tensors
(``rebalancing``: bool, ``caring``: the modality whose cross-modal inflow is cut, ``step``: re-balancing steps
done in the current window).
"""
from __future__ import annotations

from typing import List, Tuple

import torch

_TINY = 1e-30  # keeps log10 finite when a parameter set has had no gradient yet (the official code does not guard)


def grad_weight_ratio(params: List[torch.nn.Parameter]) -> torch.Tensor:
    """``Σ_p ‖∇p‖² / Σ_p ‖p‖²`` over a parameter set (sums first, then the ratio [CODE ``compute_BDR``]); a
    parameter without a gradient counts in the denominator only."""
    ref = params[0]
    w = torch.zeros((), device=ref.device, dtype=torch.float32)
    g = torch.zeros((), device=ref.device, dtype=torch.float32)
    for p in params:
        w = w + p.detach().float().pow(2).sum()
        if p.grad is not None:
            g = g + p.grad.detach().float().pow(2).sum()
    return g / w.clamp_min(_TINY)


def branch_speed(m_bypass: torch.Tensor, m_main: torch.Tensor) -> torch.Tensor:
    """``BDR_m = log10(M_bypass,m / M_main,m)`` from the accumulated ratios (``[M]``): how fast a branch learns
    through the cross-modal bypass relative to its own (unimodal) parameters."""
    return torch.log10(m_bypass.clamp_min(_TINY) / m_main.clamp_min(_TINY))


def speed_gap(bdr: torch.Tensor) -> torch.Tensor:
    """``BDR_m − mean_{k≠m} BDR_k`` (``[M]``). For two modalities ``[d, −d]`` with the official ``d = BDR_0 − BDR_1``;
    for more, each modality against the mean of the others [RECON]."""
    m = bdr.shape[0]
    return bdr - (bdr.sum() - bdr) / (m - 1)


def guided_schedule(rebalancing: torch.Tensor, caring: torch.Tensor, step: torch.Tensor, gap: torch.Tensor,
                    unlocked: bool, epsilon: float, window: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The next ``(rebalancing, caring, step)`` after a backward pass [CODE ``Bias_Mitigation_Strong``].

    Locked (before ``starting_epoch``): no re-balancing. Outside a window: if ``max_m gap_m > epsilon`` a window
    starts for ``caring = argmax_m gap_m`` (two modalities: ``|d| > ε``, caring 0 if ``d > 0`` else 1), else
    nothing. Inside a window: ``step += 1``; the window closes when ``step == window``, so exactly ``window``
    training steps run with the caring modality's inflow cut."""
    if not unlocked:
        return torch.zeros_like(rebalancing), torch.zeros_like(caring), step
    top, arg = gap.max(0)
    trigger = top > epsilon
    counted = step + 1
    new_rebalancing = torch.where(rebalancing, counted < window, trigger)
    new_caring = torch.where(rebalancing, caring, torch.where(trigger, arg, torch.zeros_like(arg)))
    new_step = torch.where(rebalancing, counted, torch.where(trigger, torch.zeros_like(step), step))
    return new_rebalancing, new_caring, new_step


def random_schedule(n_modalities: int, unlocked: bool, device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """The official *random* variant [CODE ``Bias_Mitigation_Random``]: each step, uniformly, no re-balancing or
    re-balancing for one modality (``M + 1`` choices; for two modalities the official three)."""
    if not unlocked:
        return torch.zeros((), dtype=torch.bool, device=device), torch.zeros((), dtype=torch.long, device=device)
    r = torch.randint(0, n_modalities + 1, (), device=device)
    return r > 0, (r - 1).clamp_min(0)


__all__ = ["branch_speed", "grad_weight_ratio", "guided_schedule", "random_schedule", "speed_gap"]
