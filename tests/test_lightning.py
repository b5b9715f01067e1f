"""mmbalance.lightning: the plug-ins inside a user's LightningModule (real `lightning` package, CPU). For OGM-GE,
D&R, BSS-L and DUS-H: the same per-epoch test accuracies and final weights as mmbalance's Trainer on the same seed
and data, and an exact resume through Lightning's own checkpoints."""
import importlib.util
from pathlib import Path

import pytest
import torch

L = pytest.importorskip("lightning")

from mmbalance import Config, Trainer  # noqa: E402
from mmbalance.data import build_splits  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "lightning_module.py"

EPOCHS = 4
DATA = ["data.name=synthetic", "data.options.n=400"]
#: the method and its options (OGM-GE with its gradient noise: the global random stream is the Trainer's too)
METHODS = {
    "ogm-ge": {"ogm-ge": {"ge": True}},
    "diagnose-relearn": {"diagnose-relearn": {"reinit_every": 2}},
    "bss-l": {},
    "dus-h": {},
}
#: a signal in epoch 1's record that shows the method acted (not a no-op that would trivially agree)
ACTED = {
    "ogm-ge": lambda p: p["ogm-ge/a/coeff"] < 0.5,  # the dominant modality's gradients were slowed down
    "diagnose-relearn": lambda p: True,  # checked below: re-initialised after epoch 2
    "bss-l": lambda p: p["bss-l/rescored"] == 1 and p["bss-l/p_max_x_n"] > 1.2,  # sampling far from uniform
    "dus-h": lambda p: p["dus-h/mean_n/a"] < 28 < 36 < p["dus-h/mean_n/b"],  # per-modality sizes moved from 32
    "mla": lambda p: p["mla/projector_trace"] < 1.0,  # the OWM projector stored directions
}
OVERRIDES = ["train.batch_size=32", "train.monitor_heads=false"]  # the example adds train.seed=0


def _splits():
    return build_splits(Config().override(DATA).data)


def _example():
    spec = importlib.util.spec_from_file_location("lightning_module_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def Module(splits, method, method_args):
    """What a user writes (examples/lightning_module.py): their model and optimizer, the method from mmbalance."""
    return _example().BalancedClassifier(splits, method, method_args, OVERRIDES)


class StopAfter(L.Callback):
    """Stop after epoch ``n`` (its checkpoint written): an interrupted run."""

    def __init__(self, n):
        self.n = n

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch + 1 >= self.n:
            trainer.should_stop = True


def _lightning(method, method_args, root, epochs=EPOCHS, resume=None, callbacks=()):
    module = Module(_splits(), method, method_args)
    ckpt = L.pytorch.callbacks.ModelCheckpoint(dirpath=root, save_last=True, save_top_k=-1,
                                               filename="{epoch}", every_n_epochs=1)
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
                        callbacks=[ckpt, *callbacks], default_root_dir=root)
    trainer.fit(module, ckpt_path=resume)
    return module


def _trainer(method, method_args):
    args = [f"method_args.{m}.{k}={str(v).lower() if isinstance(v, bool) else v}"
            for m, kv in method_args.items() for k, v in kv.items()]
    cfg = Config().override([*DATA, f"train.epochs={EPOCHS}", f"method={method}", *OVERRIDES, *args,
                             "eval.probe=false", "log.tensorboard=false", "train.progress=false"])
    t = Trainer(cfg)
    t.begin()
    while t.epoch < EPOCHS:
        t.fit_epoch()
    return t


def _max_weight_diff(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    return max(float((sa[k] - sb[k]).abs().max()) for k in sa)


@pytest.mark.parametrize("method", [*METHODS, "mla"])  # mla: a step strategy (one optimiser step per modality)
def test_lightning_equals_the_trainer(method, tmp_path):
    module = _lightning(method, METHODS.get(method, {}), tmp_path)
    trainer = _trainer(method, METHODS.get(method, {}))
    assert ACTED[method](module.balance.history[1]["plugins"])
    if method == "diagnose-relearn":
        assert [r["plugins"].get("diagnose-relearn/reinit") for r in module.balance.history] == [None, None, 1.0, None]
    ours = [r["test"]["acc"] for r in module.balance.history]
    theirs = [r["test"]["acc"] for r in trainer.history]
    assert len(ours) == EPOCHS and max(abs(a - b) for a, b in zip(ours, theirs)) < 1e-6, (ours, theirs)
    assert _max_weight_diff(module.model, trainer.model) < 1e-5
    # the plug-ins saw the same run: their logged signals agree too
    for r_ours, r_theirs in zip(module.balance.history, trainer.history):
        for k, v in r_theirs["plugins"].items():
            if isinstance(v, float) and not k.endswith("time_s"):
                assert abs(r_ours["plugins"][k] - v) < 1e-5, (k, r_ours["plugins"][k], v)


@pytest.mark.parametrize("method", list(METHODS))
def test_lightning_resume_is_exact(method, tmp_path):
    whole = _lightning(method, METHODS[method], tmp_path / "whole")
    _lightning(method, METHODS[method], tmp_path / "cut", callbacks=[StopAfter(2)])
    resumed = _lightning(method, METHODS[method], tmp_path / "cut", resume=str(tmp_path / "cut" / "last.ckpt"))
    assert resumed.balance.resumed and len(resumed.balance.history) == EPOCHS
    assert _max_weight_diff(whole.model, resumed.model) == 0.0
    assert [r["test"]["acc"] for r in whole.balance.history] == [r["test"]["acc"] for r in resumed.balance.history]


def test_methods_the_adapter_cannot_run_are_refused(tmp_path):
    from mmbalance import Plugin

    class Grows(Plugin):  # adds modules during training: needs the Trainer's optimizer, refused here
        name = "grows"

        def on_load(self, trainer):
            pass

    with pytest.raises(ValueError, match="'grows' adds modules during training"):
        Module(_splits(), "joint", {}).setup_balance(torch.nn.Linear(1, 1), _splits(), plugins=[Grows()])


def test_a_checkpoint_of_another_method_is_refused(tmp_path):
    _lightning("joint-aux", {}, tmp_path, epochs=1)
    with pytest.raises(ValueError, match="for method 'joint-aux'"):
        _lightning("dus-h", {}, tmp_path / "other", resume=str(tmp_path / "last.ckpt"))
