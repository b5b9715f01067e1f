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
