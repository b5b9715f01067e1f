"""Data Remixing (Ma, Chen, Deng; ICML 2025).

Each sample is assigned to its least confident modality (:func:`least_confident_modality`, confidence as
``kl_from_uniform`` of :mod:`.common`); the assignments become modality-pure index streams
(:func:`modality_streams`) and batches (:func:`pure_batch`).

The ``remix`` plug-in calls these same functions (``mmbalance.methods.remix``).
"""
from ..methods.remix import least_confident_modality, modality_streams, pure_batch
from .common import kl_from_uniform

__all__ = ["kl_from_uniform", "least_confident_modality", "modality_streams", "pure_batch"]
