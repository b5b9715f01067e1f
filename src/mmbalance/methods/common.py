"""Plug-in helpers shared by the gradient-level methods: modulation windows, which encoder tensors a
modulation touches, where per-modality scores come from (shares of the fused head or the heads), the
encoders' feature sizes, and per-modality weights given as an option."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence

import torch

from ..engine.plugin import Plugin
from ..functional.common import fusion_shares as shares_of_head
from ..functional.common import true_class_probability

if TYPE_CHECKING:
    from ..engine.trainer import Trainer
    from ..models import ModelOutput
    from ..models.net import MultimodalNet

PARAM_SETS = ("weights", "conv", "all")

#: a fusion head's ``modality_logits``: each modality's additive share of the fused logits (concat, sum)
ShareFunction = Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]


def check_window(plugin: Plugin) -> None:
    """``modulation_ends`` (when set) must not come before ``modulation_starts``."""
    starts, ends = plugin.modulation_starts, plugin.modulation_ends
    if ends is not None and ends < starts:
        raise plugin.option_error("modulation_ends", f"null or an integer >= modulation_starts ({starts})", ends)


def in_window(epoch: int, starts: int, ends: Optional[int]) -> bool:
    """``starts <= epoch <= ends`` (both inclusive, as the official ``modulation_starts <= epoch <=
    modulation_ends``); ``ends=None`` means until the end of training."""
    return epoch >= starts and (ends is None or epoch <= ends)


def select_params(module: torch.nn.Module, which: str) -> List[torch.nn.Parameter]:
    """Parameters of ``module`` that a gradient modulation touches.

    ``weights``: tensors with >= 2 dimensions (conv and linear weights; not biases, not BN affine) [BB,
    spec: "weights only, not biases"]; ``conv``: 4-D tensors only (the official CVPR code, which on MLP
    encoders modulates nothing); ``all``: every parameter.
    """
    ps = [p for p in module.parameters() if p.requires_grad]
    if which == "weights":
        return [p for p in ps if p.dim() >= 2]
    if which == "conv":
        return [p for p in ps if p.dim() == 4]
    if which == "all":
        return ps
    raise ValueError(f"parameter set must be one of {PARAM_SETS}, got {which!r}")


def modality_shares(trainer: "Trainer", out: "ModelOutput") -> Dict[str, torch.Tensor]:
    """Each modality's additive share of the fused logits on the paired rows (detached)."""
    return fusion_shares(trainer, out.paired_features())


def fusion_shares(trainer: "Trainer", feats: Dict[str, torch.Tensor], grad: bool = False) -> Dict[str, torch.Tensor]:
    """Each modality's additive share of the fused head's logits for the features ``feats`` (float32).

    ``grad=False``: detached, computed in float32 like the head's weights (under bf16 autocast the features
    arrive in bf16). ``grad=True``: a differentiable head call under the run's precision, for methods whose
    loss is built on the shares (LFM's alignment, AMCo's co-optimisation)."""
    # a method reads shares only after checking that the fusion head has them (require_score_source, or its
    # own start-up check)
    shares: ShareFunction = getattr(trainer.model.fusion, "modality_logits")
    if grad:
        with trainer.autocast():
            return {m: z.float() for m, z in shares(feats).items()}
    return shares_of_head(shares, feats)


def true_class_scores(trainer: "Trainer", logits: Dict[str, torch.Tensor], modalities: List[str],
                      y: torch.Tensor) -> torch.Tensor:
    """``s_m = sum_i softmax(z^m_i)[y_i]`` for every modality (``[M]``), summed over DDP ranks: the
    per-modality score that OGM-GE and OPM compare [CODE: a sum over the batch, not a mean]."""
    s = torch.stack([true_class_probability(logits[m], y).sum() for m in modalities])
    return trainer.all_reduce(s, "sum")


def require_score_source(trainer: "Trainer", plugin: Plugin, score_from: str) -> str:
    """Resolve where per-modality logits come from (``auto`` -> fusion if it has shares, else heads); fail
    at start-up with the option to change."""
    fusion = trainer.model.fusion
    name, method = trainer.cfg.model.fusion, plugin.name
    if score_from == "auto":
        score_from = "fusion" if hasattr(fusion, "modality_logits") else "heads"
    if score_from == "fusion":
        if fusion is None or not hasattr(fusion, "modality_logits"):
            raise ValueError(
                f"{method}: fusion {name!r} has no additive per-modality share of the fused logits "
                f"(only 'concat' and 'sum' do), so method_args.{method}.score_from=fusion cannot score the "
                f"modalities. Use model.fusion=concat or sum, or method_args.{method}.score_from=heads "
                f"(the per-modality heads, trained with train.unimodal_loss_weight > 0).")
        return "fusion"
    if score_from == "heads":
        if trainer.unimodal_loss_weight <= 0:
            raise ValueError(
                f"{method}: method_args.{method}.score_from=heads scores the modalities with the "
                f"per-modality heads, but they are not trained (train.unimodal_loss_weight is "
                f"{trainer.unimodal_loss_weight}); set train.unimodal_loss_weight=1 or stack with joint-aux")
        return "heads"
    raise plugin.option_error("score_from", "fusion, heads or auto", score_from)


def encoder_modalities(trainer: "Trainer", plugin: Plugin, need: int = 2) -> List[str]:
    """The active modalities that have an encoder; at least ``need`` of them, else a start-up error."""
    mods = [m for m in trainer.active_modalities if m in trainer.model.encoders]
    if len(mods) < need:
        raise ValueError(f"{plugin.name} needs at least {need} modalities, got {mods}")
    return mods


def feature_sizes(model: "MultimodalNet", modalities: Sequence[str]) -> Dict[str, int]:
    """Each modality's encoder output size (every registered encoder exposes ``out_dim``)."""
    return {m: int(getattr(model.encoders[m], "out_dim")) for m in modalities}


def frozen_call(module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
    """``module(*args)`` with its parameters used as constants: the gradient reaches the inputs, never the
    module's own parameters (DGL's unimodal losses through the shared head, CGGM's direction loss)."""
    params = {name: p.detach() for name, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args, kwargs)


def modality_weights(plugin: Plugin, option: str, value: Any, modalities: List[str]) -> Dict[str, float]:
    """Per-modality weights from an option given as null (equal weights ``1/M``), a list in modality order or a
    mapping ``{modality: weight}``; a start-up error naming ``method_args.<name>.<option>`` otherwise."""
    if value is None:
        return {m: 1.0 / len(modalities) for m in modalities}
    if isinstance(value, dict):
        missing = [m for m in modalities if m not in value]
        if missing:
            raise plugin.option_error(option, f"a weight for every modality {modalities} (no {missing[0]!r})", value)
        value = [value[m] for m in modalities]
    if not isinstance(value, (list, tuple)) or len(value) != len(modalities):
        raise plugin.option_error(option, f"null, a mapping or a list of {len(modalities)} numbers (modalities "
                                          f"{modalities})", value)
    try:
        return {m: float(w) for m, w in zip(modalities, value)}
    except (TypeError, ValueError):
        raise plugin.option_error(option, "numbers", value) from None
