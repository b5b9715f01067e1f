"""The papers' datasets: CREMA-D, Kinetics-Sounds, VGGSound, UCF-101, CMU-MOSI, Twitter2015, Sarcasm, NVGesture.

Importing this package registers them in ``mmbalance.registry.DATASETS`` and describes them in
:data:`.spec.PAPER_DATASETS` (used by ``mmbalance prepare`` and ``mmbalance verify``). Layouts, options,
commands and counts: ``docs/datasets.md``.
"""
from . import cremad, kinetics_sounds, mosi, nvgesture, sarcasm, twitter2015, ucf101, vggsound  # noqa: F401
from .spec import PAPER_DATASETS

__all__ = ["PAPER_DATASETS"]
