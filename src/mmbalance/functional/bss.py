"""BSS — balance-aware sequence sampling (Guan, Jiang, Yang; IJCAI 2025).

A multi-perspective measurer gives every training sample a balance score from its per-modality predictions
and losses (:func:`balance_scores` = :func:`per_sample_criteria` + :func:`combine_criteria`: large = the
modalities agree and the loss is low); training goes from balanced to imbalanced samples. BSS-H: rank once
and train on a growing prefix (:func:`pacing`, :func:`prefix_size`); BSS-L: re-score every ``E`` epochs,
smooth (:func:`ema_update`) and sample by ``p = softmax(s_hat)`` (:func:`sampling_probabilities`). In your own
loop, score the whole training set once per scoring epoch (eval mode, no grad)::

    s = balance_scores({m: logits[m] for m in mods}, y, fused)             # [N]
    s_hat = ema_update(s_hat, s, beta=0.6)
    order = torch.multinomial(sampling_probabilities(s_hat), len(s_hat), replacement=False, generator=g)

The ``bss-h``/``bss-l`` plug-ins call these same functions (``mmbalance.methods.bss``).
"""
from ..methods.bss.measurer import (CRITERIA, DEFAULT_CRITERIA, balance_scores, combine_criteria,
                                    mean_pairwise_cosine, minmax_normalise, per_sample_criteria, score_range)
from ..methods.bss.orders import ema_update, pacing, prefix_size, sampling_probabilities

__all__ = ["CRITERIA", "DEFAULT_CRITERIA", "balance_scores", "combine_criteria", "ema_update", "mean_pairwise_cosine",
           "minmax_normalise", "pacing", "per_sample_criteria", "prefix_size", "sampling_probabilities",
           "score_range"]
