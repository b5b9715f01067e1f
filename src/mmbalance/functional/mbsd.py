"""MBSD — modality-balanced self-distillation (as listed by BalanceBenchmark).

A performance score weights two modalities' mutual distillation (:func:`performance_weight`): a representation
similarity term (:func:`rs_term`) and a KL term (:func:`kl_term`), combined per pair of modalities by
:func:`mbsd_terms`.

The ``mbsd`` plug-in calls these same functions (``mmbalance.methods.mbsd``).
"""
from ..methods.mbsd import kl_term, mbsd_terms, performance_weight, rs_term

__all__ = ["kl_term", "mbsd_terms", "performance_weight", "rs_term"]
