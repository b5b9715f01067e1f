import json
import math

import pytest
import torch

from mmbalance import Plugin, Trainer
from mmbalance.engine import NonFiniteLossError
from mmbalance.engine import IncompatiblePluginsError, check_plugins
from mmbalance.engine.samplers import EpochBatchSampler, FixedBatcher, RandomOrder
from mmbalance.methods import build_plugins

from conftest import assert_resume_is_exact, load_metrics, make_cfg


class Recorder(Plugin):
    name = "recorder"

    def __init__(self, priority=50):
        self.priority = priority
        self.events = []
        self.counter = 0

    def _rec(self, e):
        self.events.append(e)

    def on_fit_start(self, t):
        self._rec("on_fit_start")

    def on_epoch_start(self, t, epoch):
        self._rec(f"on_epoch_start:{epoch}")

    def after_forward(self, t, batch, out):
        self._rec("after_forward")

    def compute_loss(self, t, batch, out, losses):
        self._rec("compute_loss")

    def after_backward(self, t, batch, out):
        self._rec("after_backward")
        # gradients exist here
        assert any(p.grad is not None for p in t.model.parameters())

    def after_step(self, t, batch, out):
        self._rec("after_step")
        self.counter += 1

    def on_epoch_end(self, t, epoch, record):
        self._rec(f"on_epoch_end:{epoch}")
        assert "val" in record and "test" in record
        self.log("steps", self.counter)

    def on_fit_end(self, t):
        self._rec("on_fit_end")

    def state_dict(self):
        return {"counter": self.counter}

    def load_state_dict(self, s):
        self.counter = s["counter"]


def test_event_order_and_plugin_logging(tmp_path):
    rec = Recorder()
    cfg = make_cfg("train.epochs=2", "data.options.n=64", "train.batch_size=64", out=tmp_path / "r")
    Trainer(cfg, plugins=[rec]).fit()
    # 64 samples * 0.7 train = 44 samples -> one batch per epoch
    step = ["after_forward", "compute_loss", "after_backward", "after_step"]
    assert rec.events == ["on_fit_start", "on_epoch_start:0", *step, "on_epoch_end:0",
                          "on_epoch_start:1", *step, "on_epoch_end:1", "on_fit_end"]
    lines = [json.loads(l) for l in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [l["plugins"]["recorder/steps"] for l in lines] == [1, 2]


def test_plugins_run_in_priority_order():
    order = []

    class P(Plugin):
        def __init__(self, name, prio):
            self.name, self.priority = name, prio

        def on_fit_start(self, t):
            order.append(self.name)

    cfg = make_cfg("train.epochs=1")  # epochs >= 1 is required; on_fit_start runs once either way
    Trainer(cfg, plugins=[P("late", 90), P("early", 10), P("mid", 50)]).fit()
    assert order == ["early", "mid", "late"]


def test_interrupted_then_resumed_run_is_identical(tmp_path):
    over = ["method=joint-aux", "model.encoder_args.dropout=0.2", "optim.scheduler=cosine"]
    assert_resume_is_exact(tmp_path, over, crash_at=2)


def test_plugin_state_round_trips_through_checkpoint(tmp_path):
    rec = Recorder()
    cfg = make_cfg("train.epochs=2", out=tmp_path / "r")
    Trainer(cfg, plugins=[rec]).fit()
    rec2 = Recorder()
    t = Trainer(cfg.override(["train.epochs=3"]), plugins=[rec2])
    t.fit(resume=True)
    assert rec2.counter == rec.counter + rec.counter // 2  # restored, then one more epoch
    assert rec2.events[0] == "on_fit_start" and rec2.events[1] == "on_epoch_start:2"


class NaNAt(Plugin):
    name = "nan"

    def __init__(self, epoch):
        self.epoch = epoch

    def compute_loss(self, t, batch, out, losses):
        if t.epoch == self.epoch:
            losses["fused"] = losses["fused"] * float("nan")


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    cfg = make_cfg("train.epochs=3", out=tmp_path / "r")
    with pytest.raises(NonFiniteLossError, match=r"epoch 1 step 0.*fused=nan.*last\.pt.*after epoch 0"):
        Trainer(cfg, plugins=[NaNAt(1)]).fit()
    ckpt = torch.load(tmp_path / "r" / "last.pt", weights_only=False)
    assert ckpt["epoch"] == 1  # the state after epoch 0, untouched
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values() if v.is_floating_point())


def test_non_finite_loss_checked_per_epoch_mode(tmp_path):
    cfg = make_cfg("train.epochs=2", "train.check_finite=epoch", out=tmp_path / "r")
    with pytest.raises(NonFiniteLossError, match="epoch 0"):
        Trainer(cfg, plugins=[NaNAt(0)]).fit()


def test_best_checkpoint_selected_on_validation(tmp_path):
    s = Trainer(make_cfg("train.epochs=3", "eval.probe=true", out=tmp_path / "r")).fit()
    lines = load_metrics(tmp_path / "r")
    val = [l["val"]["acc"] for l in lines]
    assert s["best_epoch"] == max(range(3), key=lambda i: (val[i], -i))
    assert math.isclose(s["val"]["acc"], val[s["best_epoch"]], abs_tol=1e-6)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    for split in ("val", "test"):
        assert set(summary[split]) >= {"acc", "macro_f1", "map", "modality_acc"}
        assert set(summary[split]["modality_acc"]) == {"a", "b"}
        assert set(summary[split]["share_acc"]) == {"a", "b"}  # concat fusion: per-modality shares
    assert set(summary["probe"]["a"]) == {"trained", "floor"}
    assert 0 <= summary["probe"]["b"]["floor"] <= 1
    assert summary["wall_time_s"] > 0 and (tmp_path / "r" / "best.pt").exists()


def test_incompatible_plugins_fail_at_start():
    class Step(Plugin):
        def training_step(self, trainer, batch):  # a step strategy
            return {}

    a, b = Step(), Step()
    a.name, b.name = "x", "y"
    with pytest.raises(IncompatiblePluginsError, match="'x' and 'y' both replace the training step"):
        check_plugins([a, b])

    class Paired(Plugin):
        name = "paired"
        requires_paired_batches = True

    class Sizes(Plugin):
        name = "sizes"

        def batcher(self, trainer, epoch):  # decides the batch sizes
            return None

    with pytest.raises(IncompatiblePluginsError, match="'paired' needs strictly paired batches"):
        check_plugins([Paired(), Sizes()])
    class Inside(Plugin):
        name = "inside"
        needs_default_step = True

    with pytest.raises(IncompatiblePluginsError, match="'inside' modulates the default training step, but 'x'"):
        check_plugins([Inside(), a])
    with pytest.raises(IncompatiblePluginsError, match="stacked twice"):
        check_plugins(build_plugins(make_cfg("method=joint+joint")))


def test_unimodal_cannot_be_stacked():
    with pytest.raises(IncompatiblePluginsError, match="unimodal"):
        Trainer(make_cfg("method=unimodal+joint-aux"))


def test_unimodal_trains_one_modality(tmp_path):
    s = Trainer(make_cfg("method=unimodal", "method_args.unimodal.modality=b", out=tmp_path / "r")).fit()
    assert s["modalities"] == ["b"] and set(s["test"]["modality_acc"]) == {"b"}
    assert s["test"]["acc"] == pytest.approx(s["test"]["modality_acc"]["b"])


def test_method_args_are_validated():
    from mmbalance.config import ConfigError

    with pytest.raises(ConfigError, match="no option 'modalty'.*Did you mean 'modality'"):
        build_plugins(make_cfg("method=unimodal", "method_args.unimodal.modalty=a"))
    with pytest.raises(ConfigError, match="not in method"):
        build_plugins(make_cfg("method=joint", "method_args.unimodal.modality=a"))


def test_sampler_is_deterministic_resumable_and_shards():
    order, batcher = RandomOrder(10, seed=3), FixedBatcher(3)
    s = EpochBatchSampler(order, batcher)
    s.set_epoch(1)
    full = [list(b) for b in s]
    assert sorted(i for b in full for i in b) == list(range(10)) and len(full) == len(s) == 4
    s.set_epoch(1)
    assert [list(b) for b in s] == full  # same epoch -> same order
    s.set_epoch(2)
    assert [list(b) for b in s] != full
    # resume in the middle of epoch 1
    s2 = EpochBatchSampler(RandomOrder(10, seed=3), FixedBatcher(3))
    s2.load_state_dict({"epoch": 1, "position": 2, "order": {}, "batcher": {}})
    assert [list(b) for b in s2] == full[2:]
    # two ranks split every global batch between them
    r0 = EpochBatchSampler(RandomOrder(10, seed=3), FixedBatcher(3), rank=0, world_size=2)
    r1 = EpochBatchSampler(RandomOrder(10, seed=3), FixedBatcher(3), rank=1, world_size=2)
    r0.set_epoch(1), r1.set_epoch(1)
    assert [list(b) for b in r0] == [b[0::2] for b in full] and [list(b) for b in r1] == [b[1::2] for b in full]


def test_sharding_keeps_nested_batches_nested():
    from mmbalance.data import IndexBatch
    from mmbalance.engine.samplers import shard_batch

    b = IndexBatch(list(range(10)), sizes={"a": 10, "b": 5})
    r0, r1 = shard_batch(b, 0, 2), shard_batch(b, 1, 2)
    assert list(r0) == [0, 2, 4, 6, 8] and r0.sizes == {"a": 5, "b": 3}  # b uses 0, 2, 4
    assert list(r1) == [1, 3, 5, 7, 9] and r1.sizes == {"a": 5, "b": 2}  # b uses 1, 3


def test_bf16_autocast_runs_on_cpu(tmp_path):
    s = Trainer(make_cfg("train.precision=bf16", "train.epochs=1")).fit()
    assert 0 <= s["test"]["acc"] <= 1


def test_monitor_heads_learn_without_touching_encoders_or_fusion():
    on = Trainer(make_cfg("train.epochs=3", "train.monitor_heads=true"))
    off = Trainer(make_cfg("train.epochs=3", "train.monitor_heads=false"))
    s_on, s_off = on.fit(), off.fit()
    for name, p in on.model.named_parameters():
        if not name.startswith("heads."):
            assert torch.equal(p, dict(off.model.named_parameters())[name]), name
    # the heads learned: modality "a" is informative in `synthetic`
    assert s_on["test"]["modality_acc"]["a"] > s_off["test"]["modality_acc"]["a"] + 0.2


def test_sharding_independent_batches_keeps_the_paired_prefix():
    from mmbalance.data import IndexBatch
    from mmbalance.engine.samplers import shard_batch

    b = IndexBatch([0, 1, 2, 3], per_modality={"a": [0, 1, 2, 3, 10, 11], "b": [0, 1, 2, 3, 20]})
    assert b.sizes == {"a": 6, "b": 5}
    r1 = shard_batch(b, 1, 2)
    assert list(r1) == [1, 3] and r1.per_modality == {"a": [1, 3, 11], "b": [1, 3]}
    assert r1.global_n_pair == 4 and r1.global_sizes == {"a": 6, "b": 5}
    with pytest.raises(ValueError, match="must start with the paired indices"):
        IndexBatch([0, 1], per_modality={"a": [1, 0]})


def test_determinism_switches_do_not_leak_between_trainers():
    """torch's determinism flags are process-wide: a fast Trainer after a deterministic one must turn them off."""
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    try:
        Trainer(make_cfg("train.deterministic=true"))
        assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
        Trainer(make_cfg("train.deterministic=false"))
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=True)
        torch.backends.cudnn.benchmark = before[1]


def test_resident_data_only_when_it_fits():
    from mmbalance.data import MultimodalDataset
    from mmbalance.engine.residency import resident_fits, tensor_bytes

    ok, _ = resident_fits(7 * 2**30, 10 * 2**30)  # 7 GiB of data, 10 GiB free: exactly the 70 % allowed
    assert ok
    ok, why = resident_fits(8 * 2**30, 10 * 2**30)
    assert not ok and "8.00 GiB" in why and "10.00 GiB" in why
    a = torch.zeros(10, 4)  # 160 bytes
    ds = MultimodalDataset({"x": a, "y": a.view(10, 2, 2)}, torch.zeros(10, dtype=torch.long), 2, check=False)
    # the two modalities share one storage: counted once; labels 80 bytes
    assert tensor_bytes([ds]) == 160 + 80
    assert tensor_bytes([ds, ds]) == 240
    tr = Trainer(make_cfg("data.resident=true", "train.epochs=1"))
    assert tr.resident  # CPU: always "fits" (nothing to move)
    assert not Trainer(make_cfg("train.epochs=1")).resident


def test_tensor_sum_is_builtin_sum_of_tensors_and_refuses_no_terms():
    from mmbalance.functional.common import tensor_sum

    a, b, c = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.25]), torch.tensor([3.0, 1.0])
    assert torch.equal(tensor_sum([a, b, c]), torch.tensor([4.5, -0.75]))
    assert torch.equal(tensor_sum(t for t in [a, b, c]), sum([a, b, c]))  # a generator, same additions
    with pytest.raises(ValueError, match="no terms"):
        tensor_sum([])


def test_adam_betas_must_be_a_pair():
    from mmbalance import Config
    from mmbalance.engine.optim import build_optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    cfg = Config().override(["optim.name=adam", "optim.betas=[0.8,0.99]"])
    assert build_optimizer(cfg.optim, params).param_groups[0]["betas"] == (0.8, 0.99)
    with pytest.raises(ValueError, match=r"optim.betas' must be two numbers"):  # refused when the config is built
        build_optimizer(Config().override(["optim.name=adamw", "optim.betas=[0.9,0.99,0.5]"]).optim, params)
    bad = Config().override(["optim.name=adamw"]).optim
    bad.betas = [0.9, 0.99, 0.5]  # changed after validation: the optimizer still refuses it
    with pytest.raises(ValueError, match=r"optim.betas must be two numbers"):
        build_optimizer(bad, params)
