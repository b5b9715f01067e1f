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
