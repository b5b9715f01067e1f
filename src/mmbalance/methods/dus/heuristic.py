"""DUS-H (reconstructed): per-modality batch sizes from the cumulative discrepancy by a rule."""
from __future__ import annotations

from ...registry import METHODS
from .base import DUSBase


@METHODS.register("dus-h")
class DUSHeuristic(DUSBase):
    """DUS-H (reconstructed): per-modality batch sizes from the cumulative discrepancy, ``N_B·ρ^(-γ)``.

    After each decision point (every ``update_every`` steps) the next sizes are
    ``n^(j) = clip(round(N_B·(ρ^(j))^(-γ)), n_min, n_max)``, rescaled within the bounds to sum to
    ``M·N_B`` when ``preserve_budget``. The dominant modality (ρ > 1) gets fewer samples, the lagging
    one more; ρ = 1 gives plain training. Rule, bounds and γ are [RECON] (spec §3.3): the paper says
    only that a heuristic maps the discrepancy to batch sizes.

    Scores: ``s_t^(j)`` is the batch mean softmax probability of the true class from modality j's own
    head on its own ``n_j`` samples (no grad) [SEC]; ``ρ^(j) = ŝ^(j) / mean_{k≠j} ŝ^(k)`` [RECON,
    mirrors OGM-GE's ratio]. Logged per step: ``<name>/n/<m>`` (batch size) and ``<name>/s_hat/<m>``;
    per epoch: ``<name>/mean_n/<m>``, ``<name>/s_hat/<m>``, ``<name>/rho/<m>``.

    Stacking: ``wants_unimodal_loss`` (each modality's CE on its own samples; the fused CE and the host
    method's loss run on the paired part); it provides the ``batcher`` so methods needing strictly paired
    batches are refused at start-up. Under DDP the batch scores are means over the global batch
    (all-reduced sums and counts), so every rank holds the same ŝ and decides the same sizes.
    With a step-replacing method (MLA, ReconBoost) the scores come from an extra no-grad forward in
    eval mode after its step.
    """

    def _decide(self, trainer, s_hat, rho, mm_mean):
        return self._heuristic(rho)
