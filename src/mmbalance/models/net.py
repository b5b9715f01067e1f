"""MultimodalNet: encoders -> per-modality features, per-modality heads, and a fusion head."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import torch
from torch import nn

from ..config import ModelConfig
from ..registry import ENCODERS, FUSIONS


@dataclass
class ModelOutput:
    """What every forward pass returns.

    ``features[m]``/``logits[m]`` have one row per sample modality ``m`` received (``n_m`` rows);
    ``fused`` has ``n_pair = min_m n_m`` rows: the leading, complete part of a nested batch.
    """

    features: Dict[str, torch.Tensor]
    logits: Dict[str, torch.Tensor]
    fused: Optional[torch.Tensor]
    n_pair: int

    def paired_features(self) -> Dict[str, torch.Tensor]:
        return {m: f[: self.n_pair] for m, f in self.features.items()}

    def paired_logits(self) -> Dict[str, torch.Tensor]:
        return {m: z[: self.n_pair] for m, z in self.logits.items()}


@dataclass
class FeatureRoutes:
    """The encoder outputs on their way to the per-modality heads (``heads``) and to the fusion head
    (``fusion``). Both start as the same tensors; a plug-in's ``transform_features`` may replace entries of
    either (detach for the fused path only, scale gradients, drop features) before the heads and fusion run.
    ``features`` keeps the untouched encoder outputs (what :class:`ModelOutput` reports)."""

    features: Dict[str, torch.Tensor]
    heads: Dict[str, torch.Tensor] = field(default_factory=dict)
    fusion: Dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self):
        self.heads = self.heads or dict(self.features)
        self.fusion = self.fusion or dict(self.features)


FeatureTransform = Callable[[FeatureRoutes], None]


class MultimodalNet(nn.Module):
    """Any number of modalities (>= 1; fusion needs >= 2). ``encoders[m]``, ``heads[m]``, ``fusion``, and
    ``extras``: modules a plug-in adds during training (``Trainer.add_module``), saved with the model."""

    def __init__(self, encoders: Dict[str, nn.Module], num_classes: int, fusion: Optional[nn.Module]):
        super().__init__()
        self.modalities = list(encoders)
        self.encoders = nn.ModuleDict(encoders)
        self.heads = nn.ModuleDict({m: nn.Linear(e.out_dim, num_classes) for m, e in encoders.items()})
        self.fusion = fusion
        #: optional ``{m: feature} -> {m: feature}`` module on the encoder outputs, before the heads and the fusion:
        #: cross-modal coupling that is part of the architecture (Greedy's MMTM), installed by a plug-in in
        #: ``configure_model``; its output is what ``ModelOutput.features`` reports
        self.coupling: Optional[nn.Module] = None
        self.extras = nn.ModuleDict()
        self.num_classes = num_classes

    def encode(self, inputs: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {m: self.encoders[m](inputs[m]) for m in self.modalities if m in inputs and inputs[m] is not None}

    def forward(self, inputs: Dict[str, torch.Tensor], fuse: bool = True,
                transform: Optional[FeatureTransform] = None) -> ModelOutput:
        feats = self.encode(inputs)
        if self.coupling is not None:
            feats = self.coupling(feats)
        heads_in = fusion_in = feats
        if transform is not None:
            routes = FeatureRoutes(feats)
            transform(routes)
            heads_in, fusion_in = routes.heads, routes.fusion
        logits = {m: self.heads[m](f) for m, f in heads_in.items()}
        n_pair = min(f.shape[0] for f in feats.values()) if feats else 0
        fused = None
        if fuse and self.fusion is not None and len(feats) == len(self.modalities) and n_pair > 0:
            fused = self.fusion({m: f[:n_pair] for m, f in fusion_in.items()})
        return ModelOutput(feats, logits, fused, n_pair)

    def encoder_parameters(self, modality: str):
        return self.encoders[modality].parameters()


def build_model(cfg: ModelConfig, input_shapes: Dict[str, tuple], num_classes: int) -> MultimodalNet:
    """Build encoders per modality from the registry, the fusion head and per-modality heads."""
    encoders = {}
    for m, shape in input_shapes.items():
        name = cfg.encoder.get(m, "mlp") if isinstance(cfg.encoder, dict) else cfg.encoder
        args = cfg.encoder_args.get(m, {}) if _per_modality(cfg.encoder_args, input_shapes) else cfg.encoder_args
        try:
            encoders[m] = ENCODERS.get(name)(shape, cfg.feature_dim, **args)
        except TypeError as e:
            raise ValueError(f"encoder {name!r} for modality {m!r}: bad encoder_args {args}: {e}") from None
        except ValueError as e:  # the encoder refuses this input shape: name the modality too
            raise ValueError(f"encoder {name!r} for modality {m!r}: {e}") from None
    fusion = None
    if len(encoders) >= 2:
        try:
            fusion = FUSIONS.get(cfg.fusion)({m: e.out_dim for m, e in encoders.items()}, num_classes,
                                             **cfg.fusion_args)
        except TypeError as e:
            raise ValueError(f"fusion {cfg.fusion!r}: bad fusion_args {cfg.fusion_args}: {e}") from None
    return MultimodalNet(encoders, num_classes, fusion)


def _per_modality(args: dict, shapes: dict) -> bool:
    return bool(args) and all(k in shapes for k in args) and all(isinstance(v, dict) for v in args.values())
