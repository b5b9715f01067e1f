"""The fusion head read as a per-modality classifier (the "shared head" of DGL and ARL).

Both official codes (shicaiwei123/ICCV2025-GDL and ICCV2025-ARL, ``models/fusion_modules.py``) compute a
modality's unimodal logits with the *fusion* layer itself, fed that modality's features and zeros in place
of the others (concat: ``fc_out(cat(x, 0)) = W_x x + b``); their sum-fusion variants use the modality's
own layer alone (``fc_x(x)``, the modality's additive share). :class:`FusionHeadView` installs that reading
as ``model.heads[m]``, so the per-modality logits, losses and accuracies of the loop are the shared head's.
The view holds no parameters of its own: the fusion stays registered once, at ``model.fusion``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Dict, List, cast

import torch
from torch import nn

from ..engine.compat import IncompatiblePluginsError
from ..engine.plugin import Plugin
from .common import ShareFunction, feature_sizes, frozen_call

if TYPE_CHECKING:
    from ..models.net import MultimodalNet

HEAD_FORMS = ("zero_others", "share")


class FusionHeadView(nn.Module):
    """Modality ``modality``'s logits from the fusion head.

    ``form="zero_others"``: the fusion applied to this modality's features and zeros for every other modality
    (any fusion) [CODE concat]; ``form="share"``: the fusion's additive share of this modality
    (``fusion.modality_logits``: concat ``W_m x + b / M``, sum ``fc_m(x)``) [CODE sum]. With
    ``frozen=True`` the fusion's parameters act as constants: the gradient reaches the features only (DGL).
    """

    def __init__(self, fusion: nn.Module, modality: str, dims: Dict[str, int], form: str, frozen: bool):
        super().__init__()
        if form not in HEAD_FORMS:
            raise ValueError(f"shared head form must be one of {HEAD_FORMS}, got {form!r}")
        # a reference, not a submodule: the fusion's parameters stay registered once, at model.fusion
        self.__dict__["reader"] = _FusionReader(fusion, modality, dims, form)
        self.modality, self.form, self.frozen = modality, form, frozen

    reader: "_FusionReader"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cast(torch.Tensor, frozen_call(self.reader, x)) if self.frozen else self.reader(x)


class _FusionReader(nn.Module):
    """Holds the fusion as a submodule (so that :func:`frozen_call` can substitute its parameters)."""

    fusion: nn.Module

    def __init__(self, fusion: nn.Module, modality: str, dims: Dict[str, int], form: str):
        super().__init__()
        self.fusion, self.modality, self.dims, self.form = fusion, modality, dict(dims), form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = {m: x if m == self.modality else x.new_zeros(x.shape[0], d) for m, d in self.dims.items()}
        if self.form == "share":  # the shares do not depend on each other: the zeros only fill the dict
            shares: ShareFunction = getattr(self.fusion, "modality_logits")
            return shares(feats)[self.modality]
        fuse: Callable[[Dict[str, torch.Tensor]], torch.Tensor] = self.fusion
        return fuse(feats)


def install_shared_heads(model: MultimodalNet, method: str, form: str, frozen: bool) -> None:
    """Replace every ``model.heads[m]`` by a :class:`FusionHeadView` (start-up errors name ``method``)."""
    fusion = model.fusion
    if fusion is None:
        raise ValueError(f"{method} reads the per-modality logits from the fusion head, but the model has none "
                         f"(one modality, or a method that removed it such as mla)")
    if form == "share" and not hasattr(fusion, "modality_logits"):
        raise ValueError(f"{method}: method_args.{method}.head=share needs a fusion with additive per-modality "
                         f"shares (concat or sum), got {type(fusion).__name__}; use head=zero_others")
    taken = [m for m in model.modalities if isinstance(model.heads[m], FusionHeadView)]
    if taken:
        raise ValueError(f"{method}: the per-modality heads are already read from the fusion head by another "
                         f"method; two shared-head methods cannot be stacked")
    dims = feature_sizes(model, model.modalities)
    for m in model.modalities:
        model.heads[m] = FusionHeadView(fusion, m, dims, form, frozen)


def refuse_head_owners(plugin: Plugin, plugins: List[Plugin]) -> None:
    """Refuse another plug-in that also decides what ``model.heads`` are (``owns_heads``)."""
    other = next((p for p in plugins if getattr(p, "owns_heads", False)), None)
    if other is not None:
        raise IncompatiblePluginsError(f"{plugin.name!r} and {other.name!r} both decide what the per-modality heads "
                                       f"are; they cannot be stacked")


__all__ = ["FusionHeadView", "HEAD_FORMS", "install_shared_heads", "refuse_head_owners"]
