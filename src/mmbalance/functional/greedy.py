"""Greedy — the conditional learning speed of each modality's branch (Wu et al., ICML 2022).

The branch's conditional utilisation rate from the gradient-to-weight ratio (:func:`grad_weight_ratio`,
:func:`branch_speed`), the gap between modalities (:func:`speed_gap`), and the schedule that decides which branch is
re-balanced at each step (:func:`guided_schedule`, :func:`random_schedule`).

The ``greedy`` plug-in calls these same functions (``mmbalance.methods.greedy``).
"""
from ..methods.greedy.speed import branch_speed, grad_weight_ratio, guided_schedule, random_schedule, speed_gap

__all__ = ["branch_speed", "grad_weight_ratio", "guided_schedule", "random_schedule", "speed_gap"]
