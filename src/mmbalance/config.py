"""Typed run configuration: dataclasses loaded from YAML and dotted ``key=value`` overrides.

Every unknown key fails with a message that names it and suggests the nearest valid one.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Sequence, Any, Dict, List, Optional, Union

import yaml

from .registry import suggest


class ConfigError(ValueError):
    """A configuration key or value is invalid."""


@dataclass
class DataConfig:
    name: str = "av-digits"  #: registered dataset name (``mmbalance list``)
    preset: Optional[str] = None  #: dataset variant, e.g. av-digits ``clean``/``hard``
    modalities: Optional[List[str]] = None  #: subset / views to use (mfeat: ``[pix, fou]``)
    root: Optional[str] = None  #: folder of a file-based dataset (paper datasets, your own data)
    split_seed: int = 0  #: seed of the fixed stratified train/val/test split (independent of the run seed)
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    num_workers: int = 0  #: DataLoader workers (0: load in the main process)
    #: keep in-memory / cached datasets on the training device (GPU: no host copies per step) when they fit in
    #: 70 % of its free memory; otherwise a warning and host memory (pinned batches)
    resident: bool = False
    #: read pickle-based data files (MOSI's ``.pkl``, ``.pkl`` audio arrays). Unpickling runs code from the file:
    #: only for files you trust (``--trust-pickle``); otherwise a ``.pkl`` is refused, naming the file
    trust_pickle: bool = False
    options: Dict[str, Any] = field(default_factory=dict)  #: extra dataset-specific keyword arguments


@dataclass
class ModelConfig:
    #: one encoder name, or modality -> encoder name (key ``default``: the others); a name is registered (``mlp``),
    #: your own factory ``my_pkg.nets:make_net`` / ``nets.py:make_net``, or ``timm:<model>`` (models/custom.py)
    encoder: Union[str, Dict[str, str]] = "mlp"
    encoder_args: Dict[str, Any] = field(default_factory=dict)  #: shared kwargs, or modality -> kwargs
    feature_dim: int = 64  #: pooled feature size of every encoder (ResNet-18 ignores it: 512)
    fusion: str = "concat"
    fusion_args: Dict[str, Any] = field(default_factory=dict)
    #: initial weights from a local file, loaded with weights_only=True: a state dict of the whole model or one
    #: per encoder ({modality: state dict}), or {modality: file of that encoder's state dict}
    init_from: Optional[Union[str, Dict[str, str]]] = None


@dataclass
class OptimConfig:
    name: str = "sgd"  #: sgd | adam | adamw
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999])
    scheduler: str = "none"  #: none | step | cosine
    step_size: int = 70  #: StepLR period in epochs
    gamma: float = 0.1  #: StepLR factor
    grad_clip: Optional[float] = None  #: max global grad norm (None: off)
    #: linear learning-rate warm-up over the first N epochs (from warmup_start_factor * lr), then the scheduler
    warmup_epochs: int = 0
    warmup_start_factor: float = 0.1


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 64
    seed: int = 0
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    precision: str = "fp32"  #: fp32 | bf16 (autocast; CUDA and CPU)
    channels_last: bool = False  #: memory format for conv encoders on CUDA
    compile: str = "none"  #: none | default | reduce-overhead (CUDA graphs) — torch.compile of the model
    deterministic: bool = True  #: deterministic algorithms where torch has them
    drop_last: bool = False
    fused_loss_weight: float = 1.0  #: weight of CE on the fused logits
    unimodal_loss_weight: Optional[float] = None  #: weight of per-modality CE; None: method decides (0 for joint)
    #: when the method does not train the per-modality heads, train them on *detached* features so that
    #: per-modality accuracy means something for every method (no gradient reaches encoders or fusion)
    monitor_heads: bool = True
    check_finite: str = "auto"  #: step | epoch | auto (step on CPU, epoch on CUDA: no host sync per step)
    progress: bool = True  #: progress bar
    checkpoint_every: int = 1  #: write last.pt every N epochs
    #: stop when the selection metric (eval.select_metric on eval.select_on) has not improved by more than
    #: early_stop_min_delta for this many epochs (None: off); the checkpoint selected so far is reported
    early_stop_patience: Optional[int] = None
    early_stop_min_delta: float = 0.0


@dataclass
class EvalConfig:
    predict: str = "fused"  #: fused | sum_of_heads (what the BSS code reports)
    select_on: str = "val"  #: val (honest) | test (paper-compatible, labelled as such)
    select_metric: str = "acc"  #: acc | macro_f1 | map | loss (lower is better) — what selects the checkpoint
    probe: bool = True  #: linear probe of each frozen encoder vs the same probe on its untrained init
    batch_size: int = 256


@dataclass
class LogConfig:
    tensorboard: bool = True  #: false drops tensorboard from ``loggers``
    jsonl: bool = True  #: metrics.jsonl (the files the report reads)
    #: tensorboard | csv | wandb (offline unless WANDB_MODE says otherwise) | mlflow (file store under the run)
    loggers: List[str] = field(default_factory=lambda: ["tensorboard"])


@dataclass
class Config:
    method: str = "joint"  #: method name; stack plug-ins with ``+`` (``ogm-ge+dus-h``)
    method_args: Dict[str, Dict[str, Any]] = field(default_factory=dict)  #: method name -> kwargs
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    out: Optional[str] = None  #: run folder
    #: your own modules or .py files to import first (methods, encoders, fusions, datasets: ``mmbalance.extensions``)
    plugins: List[str] = field(default_factory=list)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every value against its range / choices (:data:`RULES`, :data:`CHOICES`); a bad one fails with
        one line naming the key. Runs whenever a Config is built; call it again after changing attributes."""
        check_values(self)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "Config":
        return _build(cls, d, "")

    @classmethod
    def from_yaml(cls, path: str | Path) -> "Config":
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            d = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(d).__name__}")
        return cls.from_dict(d)

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def override(self, items: List[str]) -> "Config":
        """Return a copy with dotted overrides applied: ``optim.lr=0.01``, ``method_args.dus-h.gamma=2``."""
        d = self.to_dict()
        for item in items:
            if "=" not in item:
                raise ConfigError(f"override {item!r} is not of the form key=value")
            key, raw = item.split("=", 1)
            value = yaml.safe_load(raw) if raw != "" else None
            parts = key.strip().split(".")
            node = d
            for i, part in enumerate(parts[:-1]):
                if not isinstance(node, dict):
                    raise ConfigError(f"override {key!r}: {'.'.join(parts[:i])} is not a section")
                if part not in node:
                    if _is_free_dict(parts[:i]):
                        node[part] = {}
                    else:
                        raise ConfigError(f"unknown config key {'.'.join(parts[:i + 1])!r}.{suggest(part, node)}")
                if tuple(parts[:i + 1]) in _PER_MODALITY and not isinstance(node[part], dict):
                    # model.encoder.video=X on one name for all: that name stays the others' default
                    node[part] = {} if node[part] is None else {"default": node[part]}
                node = node[part]
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r}: parent is not a section")
            last = parts[-1]
            if last not in node and not _is_free_dict(parts[:-1]) and tuple(parts[:-1]) not in _PER_MODALITY:
                raise ConfigError(f"unknown config key {key!r}.{suggest(last, node)}")
            node[last] = value
        return Config.from_dict(d)

    def diff(self, other: "Config", ignore: Sequence[str] = ()) -> List[str]:
        """``key: mine -> other's`` for every differing key; ``ignore`` holds keys or prefixes ending in ``.``."""
        fa, fb = _flat(self.to_dict()), _flat(other.to_dict())
        out = []
        for k in sorted(set(fa) | set(fb)):
            if any(k == i or (i.endswith(".") and k.startswith(i)) for i in ignore):
                continue
            if fa.get(k, "<unset>") != fb.get(k, "<unset>"):
                out.append(f"{k}: {fa.get(k, '<unset>')!r} -> {fb.get(k, '<unset>')!r}")
        return out

    def method_names(self) -> List[str]:
        names = [m.strip() for m in self.method.split("+") if m.strip()]
        if not names:
            raise ConfigError("method is empty")
        return names


def _flat(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


_FREE_DICTS = {("method_args",), ("data", "options"), ("model", "encoder_args"), ("model", "fusion_args")}
#: keys that hold one value or a mapping modality -> value (``model.encoder.video=...`` turns the first into the
#: second)
_PER_MODALITY = {("model", "encoder"), ("model", "init_from")}


def _is_free_dict(path: List[str]) -> bool:
    return any(tuple(path[: len(p)]) == p for p in _FREE_DICTS)


def _build(cls, d: Any, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"config section {where or '<root>'!r} must be a mapping, got {type(d).__name__}")
    names = {f.name: f for f in fields(cls)}
    kwargs = {}
    for k, v in d.items():
        if k not in names:
            raise ConfigError(f"unknown config key {(where + '.' if where else '') + str(k)!r}.{suggest(str(k), names)}")
        f = names[k]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore
        if is_dataclass(default):
            kwargs[k] = _build(type(default), v or {}, (where + "." if where else "") + k)
        else:
            kwargs[k] = _coerce(v, default, (where + "." if where else "") + k)
    return cls(**kwargs)


def _coerce(v, default, key):
    if v is None or default is None:
        return copy.deepcopy(v)
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise ConfigError(f"config key {key!r} must be true/false, got {v!r}")
        return v
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise ConfigError(f"config key {key!r} must be an integer, got {v!r}")
        return int(v)
    if isinstance(default, float):
        if isinstance(v, str):  # YAML 1.1 reads 1e12 and 1.0e12 (no sign in the exponent) as strings
            try:
                v = float(v) if math.isfinite(float(v)) else v
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"config key {key!r} must be a number, got {v!r}")
        return float(v)
    if isinstance(default, str) and isinstance(v, (dict, list)) and not isinstance(default, dict):
        if key == "model.encoder" and isinstance(v, dict):
            return dict(v)
        raise ConfigError(f"config key {key!r} must be a string, got {v!r}")
    if isinstance(default, dict) and not isinstance(v, dict):
        raise ConfigError(f"config key {key!r} must be a mapping, got {v!r}")
    if isinstance(default, list) and not isinstance(v, list):
        if isinstance(v, str):
            return [s.strip() for s in v.split(",") if s.strip()]
        raise ConfigError(f"config key {key!r} must be a list, got {v!r}")
    return copy.deepcopy(v)


# ---------------------------------------------------------------------------------------------- value checks
def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _int_at_least(n: int):
    return lambda v: _is_int(v) and v >= n, f"an integer >= {n}"


def _fraction():
    return lambda v: _is_num(v) and 0 < v < 1, "a fraction in (0, 1)"


def _optional(rule):
    pred, text = rule
    return lambda v: v is None or pred(v), f"null or {text}"


def _device(v) -> bool:
    if not isinstance(v, str) or not v:
        return False
    if v == "auto":
        return True
    import torch

    try:
        torch.device(v)
    except (RuntimeError, ValueError):
        return False
    return True


#: key -> (predicate, what a valid value is); the one place where value ranges live
RULES: Dict[str, tuple] = {
    "data.val_fraction": _fraction(),
    "data.test_fraction": _fraction(),
    "data.split_seed": _int_at_least(0),
    "data.num_workers": _int_at_least(0),
    "model.feature_dim": _int_at_least(1),
    # 0 is allowed: frozen weights are a legitimate experiment (and a test technique); negative is not
    "optim.lr": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "optim.momentum": (lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)"),
    "optim.weight_decay": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "optim.betas": (lambda v: isinstance(v, list) and len(v) == 2 and all(_is_num(b) and 0 <= b < 1 for b in v),
                    "two numbers in [0, 1)"),
    "optim.step_size": _int_at_least(1),
    "optim.gamma": (lambda v: _is_num(v) and v > 0, "a number > 0"),
    "optim.grad_clip": _optional((lambda v: _is_num(v) and v > 0, "a number > 0")),
    "train.epochs": _int_at_least(1),
    "train.batch_size": _int_at_least(1),
    "train.seed": (_is_int, "an integer"),
    "train.device": (_device, "auto, cpu, cuda or cuda:N"),
    "train.fused_loss_weight": (lambda v: _is_num(v) and v >= 0, "a number >= 0"),
    "train.unimodal_loss_weight": _optional((lambda v: _is_num(v) and v >= 0, "a number >= 0")),
    "train.checkpoint_every": _int_at_least(1),
    "eval.batch_size": _int_at_least(1),
}
#: key -> the values it may take
CHOICES: Dict[str, tuple] = {
    "optim.name": ("sgd", "adam", "adamw"),
    "optim.scheduler": ("none", "step", "cosine"),
    "train.precision": ("fp32", "bf16"),
    "train.compile": ("none", "default", "reduce-overhead"),
    "train.check_finite": ("auto", "step", "epoch"),
    "eval.predict": ("fused", "sum_of_heads", "heads_only"),
    "eval.select_on": ("val", "test"),
}


def _get(cfg: Config, key: str):
    node: Any = cfg
    for part in key.split("."):
        node = getattr(node, part)
    return node


def check_values(cfg: Config) -> None:
    """Raise :class:`ConfigError` for the first value out of its range or choices, naming the key."""
    method = cfg.method
    if not isinstance(method, str) or not [m for m in method.split("+") if m.strip()]:
        raise ConfigError(f"config key 'method' is empty (got {method!r}): name a method, e.g. joint "
                          f"(`mmbalance list` shows them)")
    for key, (ok, text) in RULES.items():
        v = _get(cfg, key)
        if not ok(v):
            raise ConfigError(f"config key {key!r} must be {text}, got {v!r}")
    for key, choices in CHOICES.items():
        v = _get(cfg, key)
        if v not in choices:
            raise ConfigError(f"{key}={v!r} is not one of {', '.join(choices)}")
    d = cfg.data
    if d.val_fraction + d.test_fraction >= 1:
        raise ConfigError(f"config keys 'data.val_fraction' + 'data.test_fraction' must be < 1 (nothing left to "
                          f"train on), got {d.val_fraction} + {d.test_fraction}")
