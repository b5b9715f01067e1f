"""DUS — Data-aware Unimodal Sampling (Jiang et al., arXiv 2503.03792, 2025), **reconstructed**.

The paper's method section and code are not public. What is known for certain (spec §3.1) is only the
per-modality score ``s_t^(j) = mean_i y_i^T p_i^(j)``, its cumulative running mean ``ŝ_t^(j)``, that a
*heuristic* and a *REINFORCE* strategy choose each modality's batch size at every iteration, and that
DUS is a plug-in for other balancing methods. Everything else here follows the reconstruction of spec
§3.3 [RECON] and is configurable; each choice is explained in the class docstrings.

Data path (nested batches, spec §3.3): at every step :class:`DUSBatcher` draws ``n_max = max_j n_j``
indices from the epoch's order stream and yields ``IndexBatch(indices, sizes={m: n_m})``. The core's
``BatchDataset`` then really loads only the first ``n_m`` samples for modality ``m``, the model encodes
only those, per-modality heads see ``n_m`` rows, and the fused head sees the first ``n_pair = min_j n_j``
(complete) rows. The :class:`~mmbalance.data.batch.Batch` gives every modality its own labels and the fused head
the paired rows' labels, so the host method's loss runs on the paired part.

The package: :mod:`.allocation` (scores and size allocation, pure math), :mod:`.policy` (DUS-RL's
REINFORCE policy), :mod:`.batcher` (the per-modality batches), :mod:`.base` (what both plug-ins share),
:mod:`.heuristic` (DUS-H), :mod:`.rl` (DUS-RL, options in :mod:`.rl_options`), :mod:`.reward` (DUS-RL's
probe losses, rewards and advantage normaliser) and :mod:`.signal` (the reward-signal diagnostic).

Host synchronisation: the sizes of step t+1 must be Python integers when the batcher yields, so the
plug-in reads its (device) scores back to the host once per *decision* (``update_every`` steps; 1 by
default). Scores are otherwise updated and logged as device tensors (no ``.item()`` per step).
"""
from .allocation import allocate_sizes, discrepancy, heuristic_sizes, imbalance, modality_scores, update_running_score
from .base import DUSBase
from .batcher import DUSBatcher
from .heuristic import DUSHeuristic
from .policy import FactorisedPolicy, Reinforce, discounted_returns
from .reward import RunningNormaliser, gain_reward
from .rl import DUSRL
from .rl_options import DEFAULT_ACTIONS
from .signal import SignalRecord, correlation, explained_variance

__all__ = ["DEFAULT_ACTIONS", "DUSBase", "DUSBatcher", "DUSHeuristic", "DUSRL", "FactorisedPolicy", "Reinforce",
           "RunningNormaliser", "SignalRecord", "allocate_sizes", "correlation", "discounted_returns", "discrepancy",
           "explained_variance", "gain_reward", "heuristic_sizes", "imbalance", "modality_scores",
           "update_running_score"]
