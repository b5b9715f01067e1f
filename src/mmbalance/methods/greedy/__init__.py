"""Greedy — *Characterizing and overcoming the greedy nature of learning in multi-modal deep neural networks*
(Wu, Jastrzębski, Cho, Geras, ICML 2022), as a plug-in.

The package: :mod:`.mmtm` (the multimodal transfer module the plug-in installs between the encoders and the
heads), :mod:`.speed` (conditional learning speed and the re-balancing schedule, pure tensor math) and
:mod:`.plugin` (the registered ``greedy`` method). Fidelity notes: ``docs/methods/greedy.md``.
"""
from .mmtm import MMTM
from .plugin import Greedy
from .speed import branch_speed, grad_weight_ratio, guided_schedule, random_schedule, speed_gap

__all__ = ["MMTM", "Greedy", "branch_speed", "grad_weight_ratio", "guided_schedule", "random_schedule", "speed_gap"]
