import pytest
import torch

torch.set_num_threads(1)


def make_cfg(*overrides, out=None):
    from mmbalance import Config

    items = ["data.name=synthetic", "train.epochs=2", "log.tensorboard=false", "train.progress=false",
             "eval.probe=false", "train.batch_size=32"]
    if out is not None:
        items.append(f"out={out}")
    return Config().override(items + list(overrides))


@pytest.fixture
def cfg_factory():
    return make_cfg


class Crash:
    """A plug-in that interrupts training at the start of ``at_epoch`` (to test resume)."""

    def __new__(cls, at_epoch):
        from mmbalance import Plugin

        class _Crash(Plugin):
            name = "crash"

            def on_epoch_start(self, t, epoch):
                if epoch == at_epoch:
                    raise KeyboardInterrupt

        return _Crash()


def free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def load_metrics(run):
    """The epoch records of a run's metrics.jsonl (strict: every line must parse)."""
    import json

    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _without_timings(record):
    record = dict(record)
    record.pop("time", None)
    record["train"] = {k: v for k, v in record["train"].items() if k != "time_s"}
    record["plugins"] = {k: v for k, v in record.get("plugins", {}).items() if not k.endswith("time_s")}
    return record


def assert_resume_is_exact(tmp_path, overrides, crash_at, epochs=4, extra=(), on_cut=None):
    """Train ``epochs`` epochs uninterrupted; train again but interrupt at the start of epoch ``crash_at``
    and resume from ``last.pt``. Every epoch record (timings aside) and the summary must be identical.
    ``extra``: plug-in classes (or factories) added to every run next to the configured method; ``on_cut(folder)``
    is called on the interrupted run's folder before it resumes.
    Returns the uninterrupted run's records for further checks."""
    from mmbalance import Trainer
    from mmbalance.methods import build_plugins

    def plugins(cfg, *more):
        return build_plugins(cfg) + [make() for make in extra] + list(more)

    over = [*overrides, f"train.epochs={epochs}"]
    cfg_full = make_cfg(*over, out=tmp_path / "full")
    full = Trainer(cfg_full, plugins=plugins(cfg_full)).fit()
    cfg = make_cfg(*over, out=tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        Trainer(cfg, plugins=plugins(cfg, Crash(crash_at))).fit()
    assert len(load_metrics(tmp_path / "cut")) == crash_at
    if on_cut is not None:
        on_cut(tmp_path / "cut")
    resumed = Trainer(cfg, plugins=plugins(cfg)).fit(resume=True)
    a, b = load_metrics(tmp_path / "full"), load_metrics(tmp_path / "cut")
    assert len(a) == len(b) == epochs
    for ra, rb in zip(a, b):
        assert _without_timings(ra) == _without_timings(rb)
    for s in (full, resumed):
        s.pop("wall_time_s")
    assert full == resumed
    return a


def assert_weights_only_roundtrip(obj, path=None):
    """Save ``obj`` with ``torch.save`` and load it back with ``weights_only=True`` and nothing allow-listed:
    it must load (tensors and plain containers only) and equal ``obj`` (tensors compared exactly, dtypes
    included). Returns the loaded object."""
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    loaded = torch.load(buf, map_location="cpu", weights_only=True)
    _assert_same(obj, loaded, "obj")
    return loaded


def _assert_same(a, b, where):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a.cpu(), b) or (a.is_floating_point() and torch.equal(a.isnan(), b.isnan())
                                           and torch.equal(a.nan_to_num(), b.nan_to_num())), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), f"{where}: keys {list(a)} vs {list(b)}"
        for k in a:
            _assert_same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), f"{where}: {type(a).__name__} of {len(a)}"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, where
    else:
        assert type(a) is type(b) and a == b, f"{where}: {a!r} vs {b!r}"
