"""Encoders from the user's own module or file (model.encoder.<m>=pkg:fn / file.py:fn), timm (optional) and
initial weights from a local file (model.init_from, weights_only=True); clear one-line errors; nothing downloads."""
import re
import textwrap

import pytest
import torch

from mmbalance import Config, Trainer
from mmbalance.cli import main

BASE = ["data.name=synthetic", "data.options.n=200", "train.epochs=1", "eval.probe=false", "log.tensorboard=false",
        "train.progress=false"]

NETS = textwrap.dedent('''
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, d_in, out_dim):
            super().__init__()
            self.fc, self.out_dim = nn.Linear(d_in, out_dim), out_dim

        def forward(self, x):
            return torch.tanh(self.fc(x.flatten(1)))

    def make_net(input_shape, feature_dim, hidden=None):
        return Tiny(int(torch.tensor(input_shape).prod()), feature_dim)

    def no_out_dim(input_shape, feature_dim):
        return nn.Linear(input_shape[0], feature_dim)

    def wrong_size(input_shape, feature_dim):
        net = Tiny(input_shape[0], feature_dim)
        net.out_dim = feature_dim + 1
        return net
''')


@pytest.fixture()
def nets(tmp_path):
    path = tmp_path / "my_nets.py"
    path.write_text(NETS)
    return path


def _trainer(*overrides):
    return Trainer(Config().override([*BASE, *overrides]))


def test_an_encoder_from_the_users_file(nets):
    t = _trainer(f"model.encoder.a={nets}:make_net")
    assert type(t.model.encoders["a"]).__name__ == "Tiny" and type(t.model.encoders["b"]).__name__ == "MLPEncoder"
    assert t.model.encoders["a"].out_dim == t.cfg.model.feature_dim
    t.fit()  # trains and evaluates with it


def test_a_per_modality_encoder_keeps_the_others_default(nets):
    cfg = Config().override([*BASE, "model.encoder=cnn", f"model.encoder.a={nets}:make_net"])
    assert cfg.model.encoder == {"default": "cnn", "a": f"{nets}:make_net"}


def test_an_encoder_from_an_importable_module(nets, monkeypatch):
    monkeypatch.syspath_prepend(str(nets.parent))
    t = _trainer("model.encoder=my_nets:make_net")
    assert all(type(e).__name__ == "Tiny" for e in t.model.encoders.values())


@pytest.mark.parametrize("spec,message", [
    ("{nets}:no_out_dim", "needs an integer attribute out_dim"),
    ("{nets}:wrong_size", "not [2, 65]"),
    ("{nets}:missing", "has no callable 'missing'"),
    ("no_such_module_xyz:make_net", "cannot import module 'no_such_module_xyz'"),
    ("{parent}/absent.py:make_net", "no such file"),
])
def test_bad_encoders_fail_with_one_line(nets, spec, message):
    spec = spec.format(nets=nets, parent=nets.parent)
    with pytest.raises(ValueError, match=re.escape(message)) as e:
        _trainer(f"model.encoder.a={spec}")
    assert "\n" not in str(e.value) and "'a'" in str(e.value)


def test_timm_is_optional():
    try:
        import timm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - timm imports torchvision, which does not load with every torch build
        with pytest.raises(ValueError, match="needs the timm package"):
            _trainer("model.encoder.a=timm:resnet18")
        pytest.skip(f"timm cannot be imported here: {type(e).__name__}")
    t = _trainer("data.name=av-digits", "data.options={}", "model.encoder.image=timm:resnet18")
    assert t.model.encoders["image"].out_dim == 512


# ------------------------------------------------------------------------------------------ init_from
def test_init_from_a_whole_model_state_dict(tmp_path):
    donor = _trainer("train.seed=5")
    torch.save(donor.model.state_dict(), tmp_path / "w.pt")
    t = _trainer("train.seed=0", f"model.init_from={tmp_path / 'w.pt'}")
    for k, v in donor.model.state_dict().items():
        assert torch.equal(t.model.state_dict()[k], v) and torch.equal(t.initial_state[k], v)  # D&R's anchor too


def test_init_from_a_run_folders_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic", "--epochs", "1", "--out", str(out), "--no-progress",
                 "data.options.n=200", "eval.probe=false", "log.tensorboard=false"]) == 0
    t = _trainer(f"model.init_from={out / 'best.pt'}")
    best = torch.load(out / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(t.model.state_dict()[k], v) for k, v in best.items())


def test_init_from_per_encoder_files(tmp_path):
    donor = _trainer("train.seed=5")
    torch.save({"a": donor.model.encoders["a"].state_dict()}, tmp_path / "enc.pt")
    torch.save(donor.model.encoders["b"].state_dict(), tmp_path / "b.pt")
    fresh = _trainer("train.seed=0")
    t = _trainer("train.seed=0", f"model.init_from={tmp_path / 'enc.pt'}")
    assert torch.equal(t.model.encoders["a"].net[1].weight, donor.model.encoders["a"].net[1].weight)
    assert torch.equal(t.model.encoders["b"].net[1].weight, fresh.model.encoders["b"].net[1].weight)  # untouched
    t2 = _trainer("train.seed=0", f"model.init_from.b={tmp_path / 'b.pt'}")
    assert torch.equal(t2.model.encoders["b"].net[1].weight, donor.model.encoders["b"].net[1].weight)
    assert torch.equal(t2.model.heads["a"].weight, fresh.model.heads["a"].weight)


def test_init_from_mismatches_fail_with_one_line(tmp_path):
    state = _trainer().model.state_dict()
    bad_shape = dict(state, **{"heads.a.weight": torch.zeros(3, 3)})
    torch.save(bad_shape, tmp_path / "shape.pt")
    torch.save({k: v for k, v in state.items() if k != "fusion.fc.bias"}, tmp_path / "missing.pt")
    cases = [("shape.pt", "'heads.a.weight' has shape (3, 3), the model has (4, 64)"),
             ("missing.pt", "has no entry 'fusion.fc.bias'"),
             ("absent.pt", "no such file")]
    for name, message in cases:
        with pytest.raises((ValueError, FileNotFoundError), match=re.escape(message)) as e:
            _trainer(f"model.init_from={tmp_path / name}")
        assert "\n" not in str(e.value) and (name == "absent.pt" or name in str(e.value))


class Payload:
    """Unpickling this would run code: weights_only=True must refuse the file."""

    def __reduce__(self):
        return (print, ("pickle ran",))


def test_init_from_never_unpickles_code(tmp_path, capsys):
    torch.save({"x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="not a state dict loadable with weights_only=True"):
        _trainer(f"model.init_from={tmp_path / 'evil.pt'}")
    assert "pickle ran" not in capsys.readouterr().out
