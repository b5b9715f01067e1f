"""Registry-driven contract tests (like timm's tests over ``list_models``): every registered method and every
declared stack builds, trains two synthetic epochs, resumes exactly, keeps a checkpoint state that loads with
``weights_only=True``, logs only under its own name, and names the option when given a wrong type."""
from __future__ import annotations

import dataclasses
import typing

import pytest
import torch

from mmbalance import Trainer
from mmbalance.engine import IncompatiblePluginsError, OptionError
from mmbalance.methods import METHODS

from conftest import assert_resume_is_exact, load_metrics, make_cfg

#: settings that make a method act within two short epochs (its schedule would otherwise start later)
FAST = {
    "diagnose-relearn": ["method_args.diagnose-relearn.reinit_every=1", "method_args.diagnose-relearn.n_init=2",
                         "method_args.diagnose-relearn.kmeans_backend=torch"],
    "gblending": ["method_args.gblending.super_epoch=1", "method_args.gblending.probe_epochs=1"],
    "smv": ["method_args.smv.warmup=1"],
    "bss-h": ["method_args.bss-h.T_grow=2"],
    "dus-rl": ["method_args.dus-rl.policy_update_every=3", "method_args.dus-rl.warmup_epochs=0"],
    "mslr": ["method_args.mslr.window=1"],
}

#: stacks the documentation promises (sampler x gradient x objective levels, seed methods on baselines)
STACKS = ["ogm-ge+dus-h", "joint-aux+bss-l", "bss-l+dus-h", "diagnose-relearn+dus-h", "ogm-ge+diagnose-relearn",
          "mmpareto+bss-l", "agm+dus-h", "mla+dus-h", "pmr+bss-h", "ogm-ge+bss-l+dus-h",
          "greedy+bss-l", "umt+dus-h", "ume+dus-h", "mbsd+dus-h"]

DATA = ["data.options.n=200"]


def _overrides(method: str):
    over = [f"method={method}", *DATA]
    for name in method.split("+"):
        over += FAST.get(name, [])
    return over


def _runnable(method: str) -> bool:
    try:
        Trainer(make_cfg(*_overrides(method)))
    except IncompatiblePluginsError:
        return False
    return True


@pytest.mark.parametrize("method", METHODS.names() + STACKS)
def test_trains_resumes_exactly_and_logs_under_its_name(tmp_path, method):
    if not _runnable(method):
        pytest.skip(f"{method} is refused at start-up (tested where the refusal is declared)")
    records = assert_resume_is_exact(tmp_path, _overrides(method), crash_at=1, epochs=2)
    names = method.split("+")
    for r in records:
        for key in [*r["plugins"], *r.get("steps", {})]:
            assert any(key.startswith(f"{n}/") for n in names), f"{method}: log key {key!r} is not under a method name"
    # the checkpoint holds only tensors and plain containers: it loads without running any pickled code
    state = torch.load(tmp_path / "cut" / "last.pt", map_location="cpu", weights_only=True)
    assert set(names) <= set(state["plugins"])


@pytest.mark.parametrize("method", METHODS.names())
def test_state_round_trips_through_weights_only_save(tmp_path, method):
    if not _runnable(method):
        pytest.skip(f"{method} is refused alone")
    tr = Trainer(make_cfg(*_overrides(method), "train.epochs=1"))
    tr.fit()
    plugin = tr.plugin(method)
    torch.save(plugin.state_dict(), tmp_path / "s.pt")
    loaded = torch.load(tmp_path / "s.pt", weights_only=True)
    fresh = Trainer(make_cfg(*_overrides(method), "train.epochs=1")).plugin(method)  # configured, not trained
    fresh.load_state_dict(loaded)
    assert _same(fresh.state_dict(), plugin.state_dict())


def _same(a, b) -> bool:
    if torch.is_tensor(a):
        return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
    if isinstance(a, dict):
        return isinstance(b, dict) and set(a) == set(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN == NaN


def _wrong_value(tp):
    """A value of the wrong type for an option annotated ``tp`` (None when any value is accepted)."""
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    base = args[0] if origin is typing.Union and len(args) == 1 else tp
    if base is typing.Any:
        return None
    if base in (int, float):
        return "not-a-number"
    if base is bool:
        return "yes"
    return {"not": "this"} if base is not dict and typing.get_origin(base) is not dict else ["a", "list"]


@pytest.mark.parametrize("method", METHODS.names())
def test_a_wrong_option_type_names_the_option(method):
    cls = METHODS.get(method)
    hints = typing.get_type_hints(cls.Options)
    for field in dataclasses.fields(cls.Options):
        bad = _wrong_value(hints[field.name])
        if bad is None:
            continue
        with pytest.raises(OptionError, match=rf"method_args\.{method}\.{field.name}\b.*must be"):
            cls(**{field.name: bad})
    with pytest.raises(OptionError, match=rf"method {method!r} has no option 'no_such_option'"):
        cls(no_such_option=1)


def test_every_method_documents_each_option_with_its_provenance():
    for method in METHODS.names():
        for field in dataclasses.fields(METHODS.get(method).Options):
            assert field.metadata.get("doc"), f"{method}.{field.name} has no doc"
            assert str(field.metadata.get("source", "")).startswith("["), f"{method}.{field.name} has no tag"


def test_stack_log_keys_from_metrics_file(tmp_path):
    """The same property read back from metrics.jsonl of a three-method stack."""
    Trainer(make_cfg(*_overrides("ogm-ge+bss-l+dus-h"), out=tmp_path / "r")).fit()
    for r in load_metrics(tmp_path / "r"):
        assert {k.split("/")[0] for k in r["plugins"]} == {"ogm-ge", "bss-l", "dus-h"}
