"""Declarative method options: one dataclass per method, each field with its doc, provenance and bounds.

A method declares ``class Options`` (a dataclass) whose fields are made with :func:`option`::

    @dataclass
    class Options:
        alpha: float = option(0.8, "modulation strength", "[CODE README]", ge=0)
        ge: bool = option(True, "add the Gaussian noise (OGM-GE)", "[CODE]")

:func:`build_options` validates user values against the annotations, bounds and choices, and raises
:class:`OptionError` naming ``method_args.<method>.<option>`` with the same wording as the config's own
errors. ``mmbalance list --method NAME`` prints every option with its doc and provenance
(:func:`describe_options`).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import MISSING, dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..config import ConfigError
from ..registry import suggest


class OptionError(ConfigError):
    """A method option has a wrong type or value; the message names ``method_args.<method>.<option>``."""


def option_error(method: str, name: str, what: str, got: Any) -> OptionError:
    return OptionError(f"{method}: method_args.{method}.{name} must be {what}, got {got!r}")


def option(default: Any, doc: str, source: str = "[RECON]", *, ge: Optional[float] = None,
           gt: Optional[float] = None, le: Optional[float] = None, lt: Optional[float] = None,
           choices: Optional[Sequence[Any]] = None) -> Any:
    """A dataclass field carrying an option's documentation, provenance tag and allowed values.

    ``ge``/``gt``/``le``/``lt`` bound numbers (and every number of a list); ``choices`` lists the allowed
    values (strings or numbers). Mutable defaults (lists, dicts) are copied for every instance."""
    meta = {"doc": doc, "source": source, "ge": ge, "gt": gt, "le": le, "lt": lt,
            "choices": None if choices is None else tuple(choices)}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=functools.partial(type(default), default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class NoOptions:
    """A method without options."""


# ---------------------------------------------------------------------------------------------- checks
def _describe(tp: Any, meta: Dict[str, Any]) -> str:
    choices = meta.get("choices")
    if choices:
        text = (f"{choices[0]!r} or {choices[1]!r}" if len(choices) == 2 else
                "one of " + ", ".join(str(c) for c in choices))
        return ("null or " + text) if _optional(tp) else text
    base = _non_null(tp)
    origin = typing.get_origin(base)
    if base is bool:
        what = "true or false"
    elif base is int:
        what = "an integer" + _bounds(meta)
    elif base is float:
        what = "a number" + _bounds(meta)
    elif base is str:
        what = "a string"
    elif origin in (list, tuple, typing.get_origin(Sequence)):
        what = "a list" + (f" of numbers{_bounds(meta)}" if _numeric_items(base) else "")
    elif origin is dict:
        what = "a mapping"
    else:
        what = "a valid value"
    return ("null or " + what) if _optional(tp) else what


def _bounds(meta: Dict[str, Any]) -> str:
    lo = ("[", meta["ge"]) if meta.get("ge") is not None else ("(", meta["gt"]) if meta.get("gt") is not None else None
    hi = ("]", meta["le"]) if meta.get("le") is not None else (")", meta["lt"]) if meta.get("lt") is not None else None
    if lo and hi:
        return f" in {lo[0]}{_num(lo[1])}, {_num(hi[1])}{hi[0]}"
    if lo:
        return f" {'>=' if lo[0] == '[' else '>'} {_num(lo[1])}"
    if hi:
        return f" {'<=' if hi[0] == ']' else '<'} {_num(hi[1])}"
    return ""


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else str(v)


def _optional(tp: Any) -> bool:
    return typing.get_origin(tp) is typing.Union and type(None) in typing.get_args(tp)


def _non_null(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else typing.Union[tuple(args)]
    return tp


def _numeric_items(tp: Any) -> bool:
    args = typing.get_args(tp)
    return bool(args) and args[0] in (int, float)


def _in_bounds(v: float, meta: Dict[str, Any]) -> bool:
    return ((meta.get("ge") is None or v >= meta["ge"]) and (meta.get("gt") is None or v > meta["gt"])
            and (meta.get("le") is None or v <= meta["le"]) and (meta.get("lt") is None or v < meta["lt"]))


_FAIL = object()


def _coerce(value: Any, tp: Any, meta: Dict[str, Any]) -> Any:
    """``value`` converted to ``tp`` and checked against the bounds, or ``_FAIL``."""
    if tp is Any:
        return value
    if typing.get_origin(tp) is typing.Union:
        if value is None:
            return None if type(None) in typing.get_args(tp) else _FAIL
        for arg in typing.get_args(tp):
            if arg is type(None):
                continue
            out = _coerce(value, arg, meta)
            if out is not _FAIL:
                return out
        return _FAIL
    if value is None:
        return _FAIL
    if tp is bool:
        return value if isinstance(value, bool) else _FAIL
    if tp in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return _FAIL
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                return _FAIL
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                return _FAIL
        return value if _in_bounds(value, meta) else _FAIL
    if tp is str:
        return value if isinstance(value, str) else _FAIL
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (list, tuple, typing.get_origin(Sequence)):
        if not isinstance(value, (list, tuple)):
            return _FAIL
        item = args[0] if args else Any
        out = [_coerce(v, item, meta) for v in value]
        if any(v is _FAIL for v in out):
            return _FAIL
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            return _FAIL
        vt = args[1] if len(args) == 2 else Any
        out = {k: _coerce(v, vt, meta) for k, v in value.items()}
        return _FAIL if any(v is _FAIL for v in out.values()) else out
    return value if isinstance(tp, type) and isinstance(value, tp) else _FAIL


def _hints(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)  # each base's annotations resolve in its own module


def build_options(cls: type, values: Dict[str, Any], method: str) -> Any:
    """Validate ``values`` (``method_args.<method>``) against the options dataclass ``cls``."""
    names = {f.name: f for f in fields(cls)}
    for key in values:
        if key not in names:
            raise OptionError(f"method {method!r} has no option {key!r}.{suggest(str(key), names)} "
                              f"Options: {', '.join(sorted(names)) or '(none)'}")
    hints = _hints(cls)
    kwargs = {}
    for name, f in names.items():
        if name not in values:
            continue
        meta = dict(f.metadata)
        v = _coerce(values[name], hints[name], meta)
        choices = meta.get("choices")
        if v is _FAIL or (choices and v is not None and v not in choices):
            raise _entry_error(method, name, values[name], hints[name], meta)
        kwargs[name] = v
    return cls(**kwargs)


def _entry_error(method: str, name: str, value: Any, tp: Any, meta: Dict[str, Any]) -> OptionError:
    """The error naming the offending entry of a mapping or list option (``ratios.audio``), else the option."""
    base = _non_null(tp)
    origin, args = typing.get_origin(base), typing.get_args(base)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        for k, v in value.items():
            if _coerce(v, args[1], meta) is _FAIL:
                return option_error(method, f"{name}.{k}", _describe(args[1], meta), v)
    if origin in (list, tuple) and isinstance(value, (list, tuple)) and args:
        for i, v in enumerate(value):
            if _coerce(v, args[0], meta) is _FAIL:
                return option_error(method, f"{name}[{i}]", _describe(args[0], meta), v)
    return option_error(method, name, _describe(tp, meta), value)


def option_defaults(cls: type) -> Dict[str, Any]:
    """``{option: default}`` of an options dataclass."""
    out = {}
    for f in fields(cls):
        out[f.name] = f.default_factory() if f.default_factory is not MISSING else f.default
    return out


def describe_options(cls: type) -> List[Tuple[str, str, Any, str, str]]:
    """``(name, type/constraints, default, provenance, doc)`` for every option, in declaration order."""
    hints = _hints(cls)
    defaults = option_defaults(cls)
    return [(f.name, _describe(hints[f.name], dict(f.metadata)), defaults[f.name], f.metadata.get("source", ""),
             f.metadata.get("doc", "")) for f in fields(cls)]
