"""Checkpoints hold tensors and plain containers only and load with ``weights_only=True``; writes are atomic
and readable (0644); stale temporary files of killed writes can be removed.

The CLI-level security cases (a crafted checkpoint through ``train --resume``, ``eval`` and ``compare``) are in
``test_bad_input.py``.
"""
import os
import random
import stat
import warnings

import numpy as np
import pytest
import torch

from mmbalance import Trainer
from mmbalance.engine.checkpoint import (CheckpointError, atomic_torch_save, atomic_write_text, load_checkpoint,
                                         check_model_state, remove_stale_tmp, rng_state, set_rng_state)
from mmbalance.methods import METHODS

from conftest import assert_weights_only_roundtrip, make_cfg

STACKS = ["ogm-ge+dus-h", "joint-aux+diagnose-relearn", "bss-l+dus-h"]
EXTRA = {"diagnose-relearn": ["method_args.diagnose-relearn.reinit_every=1"],
         "joint-aux+diagnose-relearn": ["method_args.diagnose-relearn.reinit_every=1"],
         "dus-h": ["method_args.dus-h.size_multiple=8"]}


@pytest.mark.parametrize("method", sorted(METHODS) + STACKS)
def test_every_method_state_loads_weights_only(method, tmp_path):
    """After two epochs (so that every plug-in has state to save), the trainer's full state and last.pt load
    with weights_only=True and nothing allow-listed, and equal what was saved."""
    cfg = make_cfg(f"method={method}", "train.epochs=2", "data.options.n=120", *EXTRA.get(method, []),
                   out=tmp_path / "r")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tr = Trainer(cfg)
        tr.fit()
    assert_weights_only_roundtrip(tr.state_dict())
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "r" / "last.pt") == []
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "r" / "best.pt") == []
    assert load_checkpoint(tmp_path / "r" / "last.pt")["method"] == method


def test_rng_state_is_plain_and_restores_every_generator():
    np.random.seed(3)
    random.seed(4)
    torch.manual_seed(5)
    state = assert_weights_only_roundtrip(rng_state())
    expected = (np.random.rand(3).tolist(), np.random.randn(), random.random(), torch.rand(2).tolist())
    np.random.seed(99)
    random.seed(99)
    torch.manual_seed(99)
    set_rng_state(state)
    assert (np.random.rand(3).tolist(), np.random.randn(), random.random(), torch.rand(2).tolist()) == expected


def test_numpy_gaussian_cache_survives():
    """numpy's state includes a cached second Gaussian: drawing one normal leaves it set."""
    np.random.seed(0)
    np.random.randn()  # has_gauss becomes 1
    assert np.random.get_state()[3] == 1
    state = assert_weights_only_roundtrip(rng_state())
    nxt = np.random.randn()
    np.random.seed(1)
    set_rng_state(state)
    assert np.random.randn() == nxt


def test_checkpoints_of_the_former_format_still_load(tmp_path):
    """Run folders written before the RNG state became tensors (numpy state as a tuple holding a uint32
    ndarray) still load and resume: exactly numpy's array reconstruction is allow-listed, nothing else."""
    np.random.seed(7)
    old = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    nxt = np.random.rand()
    torch.save({"rng": old, "epoch": 3}, tmp_path / "old.pt")
    loaded = load_checkpoint(tmp_path / "old.pt")
    np.random.seed(0)
    set_rng_state(loaded["rng"])
    assert np.random.rand() == nxt and loaded["epoch"] == 3


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):  # unpickling would create the marker file
        return (open, (self.marker, "w"))


def test_a_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.ones(2)}, "plugins": {"x": _Payload(marker)}}, tmp_path / "last.pt")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(tmp_path / "last.pt")
    msg = str(e.value)
    assert not marker.exists()
    assert str(tmp_path / "last.pt") in msg and "refused" in msg and "run" in msg and "\n" not in msg
    assert "weights_only" not in msg  # never advise the unsafe way out


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_is_one_clear_line(tmp_path, damage):
    p = tmp_path / "last.pt"
    atomic_torch_save({"model": {"w": torch.randn(64, 64)}}, p)
    data = p.read_bytes()
    p.write_bytes({"truncated": data[: len(data) // 2], "garbage": os.urandom(300), "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="unreadable") as e:
        load_checkpoint(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value) and "weights_only" not in str(e.value)


def test_model_state_of_another_shape_is_named(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    other = torch.nn.Sequential(torch.nn.Linear(5, 3)).state_dict()
    with pytest.raises(CheckpointError, match=r"another shape \(e.g. '0.weight': \[3, 5\] in the checkpoint, "
                                              r"\[3, 4\] in the model\)"):
        check_model_state(model, other, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match="1 missing .*'0.bias'"):
        check_model_state(model, {"0.weight": torch.zeros(3, 4)}, tmp_path / "best.pt")
    check_model_state(model, torch.nn.Sequential(torch.nn.Linear(4, 3)).state_dict(), tmp_path / "best.pt")
    # keys a plug-in adds on loading may be absent on either side
    grown = dict(model.state_dict(), **{"extras.head.weight": torch.zeros(2)})
    check_model_state(model, grown, tmp_path / "best.pt", optional=("extras.",))
    with pytest.raises(CheckpointError, match="1 unexpected .*'extras.head.weight'"):
        check_model_state(model, grown, tmp_path / "best.pt")


def test_atomic_writes_are_readable_by_others_and_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        atomic_torch_save({"a": 1}, tmp_path / "a.pt")
        assert stat.S_IMODE(os.stat(tmp_path / "a.txt").st_mode) == 0o644
        assert stat.S_IMODE(os.stat(tmp_path / "a.pt").st_mode) == 0o644
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
        assert stat.S_IMODE(os.stat(tmp_path / "b.txt").st_mode) == 0o600
    finally:
        os.umask(old)


def test_remove_stale_tmp_deletes_only_leftovers_of_killed_writes(tmp_path):
    import tempfile

    # what atomic_write_bytes leaves behind when killed between mkstemp and os.replace
    fd, left = tempfile.mkstemp(dir=tmp_path, prefix=".last.pt.", suffix=".tmp")
    os.close(fd)
    fd, left2 = tempfile.mkstemp(dir=tmp_path, prefix=".summary.json.", suffix=".tmp")
    os.close(fd)
    keep = [tmp_path / n for n in ("last.pt", "notes.tmp", ".hidden", "x.tmp.npy", ".cfg.tmp")]
    for k in keep:
        k.write_text("keep")
    (tmp_path / ".dir.abcdefgh.tmp").mkdir()  # a folder is never removed
    removed = remove_stale_tmp(tmp_path)
    assert sorted(map(str, removed)) == sorted([left, left2])
    assert not os.path.exists(left) and not os.path.exists(left2)
    assert all(k.exists() for k in keep) and (tmp_path / ".dir.abcdefgh.tmp").is_dir()
    assert remove_stale_tmp(tmp_path / "absent") == []
