import pytest

from mmbalance import Config
from mmbalance.config import ConfigError


def test_defaults_and_dotted_overrides():
    cfg = Config().override(["optim.lr=0.01", "train.epochs=7", "model.encoder_args.hidden=32",
                             "method=joint+joint-aux", "method_args.joint-aux={}", "data.modalities=[a,b]"])
    assert cfg.optim.lr == 0.01 and cfg.train.epochs == 7
    assert cfg.model.encoder_args == {"hidden": 32}
    assert cfg.method_names() == ["joint", "joint-aux"]
    assert cfg.data.modalities == ["a", "b"]


def test_unknown_key_suggests_nearest():
    with pytest.raises(ConfigError, match="optim.lrr.*Did you mean 'lr'"):
        Config().override(["optim.lrr=1"])
    with pytest.raises(ConfigError, match="Did you mean 'train'"):
        Config.from_dict({"trian": {}})


def test_type_errors_name_the_key():
    with pytest.raises(ConfigError, match="train.epochs.*integer"):
        Config().override(["train.epochs=abc"])
    with pytest.raises(ConfigError, match="log.tensorboard.*true/false"):
        Config().override(["log.tensorboard=3"])
    with pytest.raises(ConfigError, match="key=value"):
        Config().override(["optim.lr"])


def test_yaml_round_trip(tmp_path):
    cfg = Config().override(["optim.name=adamw", "method_args.joint-aux={}", "method=joint-aux"])
    p = tmp_path / "c.yaml"
    p.write_text(cfg.to_yaml())
    assert Config.from_yaml(p) == cfg


def test_missing_yaml_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        Config.from_yaml(tmp_path / "nope.yaml")


def test_numbers_yaml_reads_as_strings_are_numbers_but_not_nan():
    from mmbalance.config import Config, ConfigError

    assert Config().override(["optim.lr=1e-3", "optim.weight_decay=1e2"]).optim.weight_decay == 100.0
    assert Config().override(["optim.lr=1.0e12"]).optim.lr == 1e12
    with pytest.raises(ConfigError, match="optim.lr"):
        Config().override(["optim.lr=nan"])
