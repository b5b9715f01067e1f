"""Modality dropout, written as your own mmbalance method in your own file.

Run it without touching the package:  mmbalance train --import examples/modality_dropout.py \
    --method modality-dropout --dataset av-digits --preset hard --out runs/md
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mmbalance import METHODS, Plugin
from mmbalance.engine import option


@METHODS.register("modality-dropout")
class ModalityDropout(Plugin):
    """Zero one modality's features on their way to the fusion head, per sample, with probability ``p``:
    the fused head cannot lean on the dominant modality alone, the heads still see every modality."""

    @dataclass
    class Options:
        p: float = option(0.3, "probability that a sample loses one (random) modality in the fused path",
                          "[RECON]", ge=0, le=1)

    def transform_features(self, trainer, batch, routes) -> None:
        mods = list(routes.fusion)
        n = batch.n_pair
        g = trainer.data.aug_generator  # seeded and checkpointed: the run stays reproducible and resumable
        drop = torch.rand(n, generator=g, device=g.device) < self.p
        which = torch.randint(len(mods), (n,), generator=g, device=g.device)
        for j, m in enumerate(mods):
            keep = ~(drop & (which == j))
            f = routes.fusion[m]
            routes.fusion[m] = torch.cat([f[:n] * keep[:, None].to(f.dtype), f[n:]])
        self.log_mean("dropped", drop.float().mean())
