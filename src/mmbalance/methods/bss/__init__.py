"""BSS — Balance-aware Sequence Sampling (Guan, Jiang, Yang; IJCAI 2025; arXiv 2501.01470).

BSS acts on the **order of the data**, not on the loss or the gradients. A *multi-perspective measurer*
gives every training sample a balance score (large: both modalities predict the same thing and the
sample's loss is low; small: one modality is confident and the other is not), and the training
sequence goes from balanced to imbalanced samples:

* ``bss-h`` (heuristic scheduler, :class:`BSSHeuristic`): score once, rank balanced-first, and at
  epoch ``t`` train on random batches from the top ``⌊n·λ(t)⌋`` samples with the root pacing
  function ``λ(t) = min(1, sqrt((1−λ0²)/T_grow · t + λ0²))``;
* ``bss-l`` (learned scheduler, :class:`BSSLearned`): re-score every ``E`` epochs with the current
  model, smooth the scores with an EMA and sample by ``p = softmax(ŝ)``.

The model trains with ``CE(fused) + Σ_m CE(head_m)`` (``wants_unimodal_loss``). Both plug-ins only
provide the sample *order* (``epoch_order``), so they stack with ``+`` on any loss-, gradient- or
batcher-level method (``joint-aux+bss-l``, ``ogm-ge+bss-l``, ``bss-l+dus-h``).

Spec: ``shared/spec/methods.md`` section 2. Tags: [PAPER] paper/slides/talk, [CODE] the official
release (njustkmg/IJCAI25-BSS), [RECON] our choice where neither says.

The package: :mod:`.measurer` (the per-sample balance score, pure math), :mod:`.orders` (pacing, sampling
probabilities and the epoch orders), :mod:`.base` (the scoring machinery both plug-ins share),
:mod:`.heuristic` (BSS-H) and :mod:`.learned` (BSS-L).
"""
from .heuristic import BSSHeuristic
from .learned import BSSLearned
from .measurer import (CRITERIA, balance_scores, combine_criteria, mean_pairwise_cosine, minmax_normalise,
                       per_sample_criteria, score_range)
from .orders import BiasedOrder, CurriculumOrder, ema_update, pacing, prefix_size, sampling_probabilities

__all__ = ["BSSHeuristic", "BSSLearned", "BiasedOrder", "CurriculumOrder", "CRITERIA", "balance_scores",
           "combine_criteria", "ema_update", "minmax_normalise", "mean_pairwise_cosine", "pacing",
           "per_sample_criteria", "prefix_size", "sampling_probabilities", "score_range"]
