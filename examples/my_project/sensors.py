"""The data of this project as an mmbalance dataset (``toy-sensors``).

Two modalities: ``accel``, a 3-axis signal of 40 steps (``[channels, time]``) whose frequency depends on the
class, and ``mic``, 12 features that carry the class only weakly. Here they are generated (seeded); a real project
would read its files from ``data.root`` in the same function and return the same ``Splits``.
"""
from __future__ import annotations

import math

import torch

from mmbalance.data import DATASETS, MultimodalDataset, split_in_memory


@DATASETS.register("toy-sensors")
def toy_sensors(cfg):
    """Synthetic accelerometer (3 x 40, class = frequency) + microphone features (12, weak), 4 classes."""
    n = int(cfg.options.get("n", 480))
    g = torch.Generator().manual_seed(int(cfg.options.get("seed", 0)))
    y = torch.arange(n) % 4
    t = torch.linspace(0, 1, 40)
    freq = (1.0 + y.float()).view(-1, 1, 1) * 2 * math.pi
    phase = torch.rand(n, 3, 1, generator=g) * 2 * math.pi
    accel = torch.sin(freq * t.view(1, 1, -1) + phase) + 0.8 * torch.randn(n, 3, 40, generator=g)
    centres = torch.randn(4, 12, generator=g)
    mic = 0.5 * centres[y] + torch.randn(n, 12, generator=g)
    data = MultimodalDataset({"accel": accel, "mic": mic}, y, 4, ["still", "walk", "run", "jump"], "toy-sensors")
    return split_in_memory(data, cfg.val_fraction, cfg.test_fraction, cfg.split_seed)
