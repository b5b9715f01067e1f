"""Encoders from your own code or from timm, and initial weights from a local file. Nothing is downloaded.

* ``model.encoder.<modality>=my_pkg.nets:make_net`` (or ``path/to/nets.py:make_net``): ``make_net(input_shape,
  feature_dim, **encoder_args)`` returns an ``nn.Module`` whose ``out_dim`` is the size of the pooled feature it
  outputs (``[batch, out_dim]``); it is checked on a zero batch when the model is built.
* ``model.encoder.<modality>=timm:resnet18``: a timm model built without pretrained weights (``pretrained=False``,
  ``num_classes=0``: the pooled features), ``in_chans`` from the input; needs ``timm`` installed. Pretrained weights
  come from a file you have, through ``model.init_from``.
* ``model.init_from=PATH``: a state dict loaded with ``torch.load(weights_only=True)``: of the whole model
  (``encoders.<m>.…``, ``heads.…``, ``fusion.…``; an mmbalance checkpoint's ``model`` works too), or one per
  encoder (``{modality: encoder state dict}``); ``model.init_from={video: PATH}`` loads one encoder's state dict
  into that modality's encoder. Keys and shapes must match exactly; a mismatch fails with one line naming the file
  and the first key.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Sequence, Union

import torch
from torch import nn

from ..registry import ENCODERS

Factory = Callable[..., nn.Module]


def resolve_encoder(name: str) -> Factory:
    """The factory an encoder name stands for: a registered name (``mlp``), ``module:function``,
    ``file.py:function``, or ``timm:model_name``."""
    if ":" not in name:
        return ENCODERS.get(name)
    target, attr = name.rsplit(":", 1)
    if target == "timm":
        return _timm_factory(attr)
    if target.endswith(".py"):
        from ..extensions import ExtensionError, import_extension

        try:
            module = import_extension(target)
        except ExtensionError as e:
            raise ValueError(str(e)) from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise ValueError(f"cannot import module {target!r} ({e})") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ValueError(f"module {target!r} has no callable {attr!r}")
    return factory


def is_custom(name: str) -> bool:
    return ":" in name


def check_encoder(encoder: Any, input_shape: Sequence[int]) -> None:
    """A user's encoder must be a module with an integer ``out_dim`` that maps ``[2, *input_shape]`` to
    ``[2, out_dim]`` (checked in eval mode on zeros, without gradient; its train/eval mode is kept). The errors
    name neither the encoder nor the modality: ``build_model`` prefixes both."""
    if not isinstance(encoder, nn.Module):
        raise ValueError(f"the factory returned a {type(encoder).__name__}, not a torch.nn.Module")
    out_dim = getattr(encoder, "out_dim", None)
    if not isinstance(out_dim, int) or out_dim < 1:
        raise ValueError(f"the module needs an integer attribute out_dim (the size of the pooled feature "
                         f"it outputs), got {out_dim!r}")
    was = encoder.training
    encoder.eval()
    try:
        with torch.no_grad():
            out = encoder(torch.zeros((2, *input_shape)))
    except Exception as e:  # noqa: BLE001 - name the encoder and the input it failed on
        raise ValueError(f"it fails on an input of shape [2, {', '.join(map(str, input_shape))}]: "
                         f"{type(e).__name__}: {e}") from None
    finally:
        encoder.train(was)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, out_dim):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"it maps [2, {', '.join(map(str, input_shape))}] to {shape}, not [2, {out_dim}] "
                         f"(a pooled feature of size out_dim per sample)")


def _timm_factory(model_name: str) -> Factory:
    try:
        import timm
    except Exception as e:  # noqa: BLE001 - timm imports torchvision, which may fail to load
        raise ValueError(f"timm:{model_name} needs the timm package, which cannot be imported here "
                         f"({type(e).__name__}: {e})") from None

    def build(input_shape: Sequence[int], feature_dim: int = 0, **kwargs: Any) -> nn.Module:
        in_chans = int(input_shape[0]) if len(input_shape) == 3 else 1
        net = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_chans, **kwargs)
        return TimmEncoder(net, int(net.num_features), len(input_shape) == 2)

    return build


class TimmEncoder(nn.Module):
    """A timm backbone's pooled features; a ``[H, W]`` input (a spectrogram) gets a channel axis."""

    def __init__(self, net: nn.Module, out_dim: int, add_channel: bool):
        super().__init__()
        self.net, self.out_dim, self.add_channel = net, out_dim, add_channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.unsqueeze(1) if self.add_channel else x)


# ------------------------------------------------------------------------------------------ initial weights
def load_initial_weights(model: nn.Module, init_from: Union[str, Mapping[str, str]]) -> None:
    """Load ``model.init_from`` into ``model`` (see the module docstring); nothing else is changed."""
    if isinstance(init_from, Mapping):
        for modality, path in init_from.items():
            if modality not in model.encoders:
                raise ValueError(f"model.init_from names modality {modality!r}, but the model's modalities are "
                                 f"{list(model.encoders)}")
            _load_into(model.encoders[modality], _read(path), path, f"the {modality!r} encoder")
        return
    state = _read(init_from)
    if isinstance(state.get("model"), Mapping):  # an mmbalance checkpoint (best.pt / last.pt)
        state = state["model"]
    per_encoder = [k for k in state if k in model.encoders and isinstance(state[k], Mapping)]
    if per_encoder:
        for modality in per_encoder:
            _load_into(model.encoders[modality], state[modality], init_from, f"the {modality!r} encoder")
        return
    _load_into(model, state, init_from, "the model")


def _read(path: Any) -> Dict[str, Any]:
    if not isinstance(path, (str, Path)):
        raise ValueError(f"model.init_from must be a file path or a mapping modality -> file path, got {path!r}")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model.init_from: no such file: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file; weights_only refuses anything but tensors and containers
        raise ValueError(f"model.init_from: {p} is not a state dict loadable with weights_only=True "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, Mapping):
        raise ValueError(f"model.init_from: {p} holds a {type(state).__name__}, not a state dict")
    return dict(state)


def _load_into(module: nn.Module, state: Mapping[str, Any], path: Union[str, Path], what: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        key, kind = (missing[0], "has no entry") if missing else (unexpected[0], "has an entry the model lacks:")
        raise ValueError(f"model.init_from: {path} does not fit {what}: it {kind} {key!r} "
                         f"({len(missing)} missing, {len(unexpected)} unexpected keys)")
    for k, v in state.items():
        if not isinstance(v, torch.Tensor) or v.shape != own[k].shape:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"model.init_from: {path}: {k!r} has shape {shape}, {what} has {tuple(own[k].shape)}")
    module.load_state_dict(dict(state))


def encoder_name(encoder: Union[str, Mapping[str, str]], modality: str) -> str:
    """The encoder name of ``modality``: the one name, or the mapping's entry (else its ``default``, else mlp)."""
    if isinstance(encoder, str):
        return encoder
    return encoder.get(modality, encoder.get("default", "mlp"))


__all__ = ["TimmEncoder", "check_encoder", "encoder_name", "is_custom", "load_initial_weights", "resolve_encoder"]
