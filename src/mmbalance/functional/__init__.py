"""``mmbalance.functional``: the core of each method as documented, typed, plain functions, for any training loop.

The plug-ins call these same functions: one implementation, two entry points (``--method ogm-ge`` on mmbalance's
``Trainer``, or ``ogm_coefficients`` + ``modulate_`` in your own loop; ``examples/plain_loop.py`` trains with
OGM-GE and D&R in a plain PyTorch loop and a test checks it matches the ``Trainer``). One module per method
family, each with a short recipe in its docstring (``docs/functional.md`` lists them all):

==================  ==============================================================================
``common``          discrepancy ratios, true-class probability, fused-head shares, Shapley weights,
                    late-fusion ensembles, gradient scaling, confidence as divergence from uniform
``ogm_ge``          OGM-GE scores, coefficients, in-place gradient modulation
``agm``             AGM coalition values, Shapley contributions, coefficients, gradient scaling
``diagnose_relearn`` D&R purity gap and strength, soft re-initialisation
``dus``             DUS modality scores, running score, discrepancy, batch-size allocation
``bss``             BSS balance scores, pacing, sampling probabilities, EMA
``mmpareto``        MMPareto weights and gradient combination
``pmr``             PMR prototypes, prototype logits, coefficients, entropy regulariser
``mla``             MLA OWM projector and entropy fusion weights
``gblending``       G-Blending weights and stratified hold-out
``smv``             SMV Shapley valuation, copies, mixture loss
``mslr``            MSLR parameter groups and dynamic ratio
``reconboost``      ReconBoost reconcilement loss
``arl``             ARL logit statistics and modality weights
``inforeg``         InfoReg acquisition change, proximal strengths and pull
``cggm``            CGGM coefficients and direction loss
``greedy``          Greedy branch speeds and re-balancing schedule
``umt``             UMT feature distillation
``mbsd``            MBSD performance weight and distillation terms
``aug``             AUG residual weights, boosting terms, classifier assignment
``iprm``            IPRM geodesic mixup, probe divergence, strength weights
``remix``           Data Remixing assignment and modality-pure batches
``lfm``             LFM alignment divergences and the weight's schedule or hyper-gradient step
``mmcosine``        MMCosine cosine logits
``opm``             OPM drop probabilities, keep masks, rescaling
``amco``            AMCo dependence, mask ratio, keep masks
``cml``             CML confidence, confidence penalty, removal order
==================  ==============================================================================

``from mmbalance.functional import ogm_ge`` or ``from mmbalance.functional.ogm_ge import ogm_coefficients``;
names that only one family defines are also available here directly (``mmbalance.functional.ogm_coefficients``).
Families are imported on first use (the methods import this package's ``common``).
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any, Dict, List

from .common import (ENSEMBLE_SPACES, coalitions, discrepancy_ratio, ensemble_logits, fusion_shares, kl_from_uniform,
                     scale_grad, shapley_weight, tensor_sum, true_class_probability)

#: the method families, one module each
FAMILIES = ("ogm_ge", "agm", "diagnose_relearn", "dus", "bss", "mmpareto", "pmr", "mla", "gblending", "smv",
            "mslr", "reconboost", "arl", "inforeg", "cggm", "greedy", "umt", "mbsd", "aug", "iprm", "remix", "lfm",
            "mmcosine", "opm", "amco", "cml")

_COMMON = ["ENSEMBLE_SPACES", "coalitions", "discrepancy_ratio", "ensemble_logits", "fusion_shares", "kl_from_uniform",
           "scale_grad", "shapley_weight", "tensor_sum", "true_class_probability"]
_flat: Dict[str, List[str]] = {}  # name -> families defining it (filled on the first flat look-up)


def family(name: str) -> ModuleType:
    """The module of one method family (``family("dus")`` is ``mmbalance.functional.dus``)."""
    if name not in FAMILIES:
        raise AttributeError(f"mmbalance.functional has no family {name!r}; families: {', '.join(FAMILIES)}")
    return importlib.import_module(f"{__name__}.{name}")


def _index() -> Dict[str, List[str]]:
    if not _flat:
        for fam in FAMILIES:
            for n in family(fam).__all__:
                if n not in _COMMON:
                    _flat.setdefault(n, []).append(fam)
    return _flat


def __getattr__(name: str) -> Any:
    if name in FAMILIES:
        return family(name)
    if name.startswith("__"):
        raise AttributeError(name)
    owners = _index().get(name)
    if not owners:
        raise AttributeError(f"mmbalance.functional has no function {name!r}")
    if len(owners) > 1:
        raise AttributeError(f"mmbalance.functional.{name} is ambiguous: use "
                             + " or ".join(f"mmbalance.functional.{f}.{name}" for f in owners))
    return getattr(family(owners[0]), name)


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(FAMILIES) | {n for n, f in _index().items() if len(f) == 1})


__all__ = ["ENSEMBLE_SPACES", "FAMILIES", "agm", "amco", "arl", "aug", "bss", "cggm", "cml", "coalitions",
           "diagnose_relearn", "discrepancy_ratio", "dus", "ensemble_logits", "family", "fusion_shares", "gblending",
           "greedy", "inforeg", "iprm", "kl_from_uniform", "lfm", "mbsd", "mla", "mmcosine", "mmpareto", "mslr",
           "ogm_ge", "opm", "pmr", "reconboost", "remix", "scale_grad", "shapley_weight", "smv", "tensor_sum",
           "true_class_probability", "umt"]
