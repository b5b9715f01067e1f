"""examples/plain_loop.py (OGM-GE + D&R in a plain PyTorch loop through mmbalance.functional) equals the same
methods run by mmbalance's Trainer on the same seed and data: per-epoch test accuracy and final weights."""
import importlib.util
from pathlib import Path


from mmbalance import Config, Trainer

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "plain_loop.py"
EPOCHS, REINIT_EVERY = 5, 2  # D&R re-initialises after epochs 2 and 4


def _example():
    spec = importlib.util.spec_from_file_location("plain_loop_example", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_plain_loop_equals_the_trainer():
    model, plain_acc = _example().train("av-digits", "hard", epochs=EPOCHS, seed=0, reinit_every=REINIT_EVERY)
    cfg = Config().override([
        "data.name=av-digits", "data.preset=hard", f"train.epochs={EPOCHS}", "train.seed=0",
        "method=ogm-ge+diagnose-relearn", "method_args.ogm-ge.ge=false",
        f"method_args.diagnose-relearn.reinit_every={REINIT_EVERY}", "train.monitor_heads=false",
        "eval.probe=false", "log.tensorboard=false", "train.progress=false"])
    trainer = Trainer(cfg)
    trainer.begin()
    while trainer.epoch < EPOCHS:
        trainer.fit_epoch()
    trainer_acc = [r["test"]["acc"] for r in trainer.history]
    assert [r["plugins"].get("diagnose-relearn/reinit") for r in trainer.history] == [None, None, 1.0, None, 1.0]
    assert max(abs(a - b) for a, b in zip(plain_acc, trainer_acc)) < 1e-6, (plain_acc, trainer_acc)
    ours, theirs = model.state_dict(), trainer.model.state_dict()
    assert ours.keys() == theirs.keys()
    worst = max(float((ours[k] - theirs[k]).abs().max()) for k in ours)
    assert worst < 1e-5, f"largest weight difference {worst}"
    assert plain_acc[-1] > 0.5  # it learnt something (10 classes)
