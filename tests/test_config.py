import pytest

from app.config.errors import ConfigError
from app.config.loading import DEFAULTS, load_config, parse_override


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\ndata:\n  num_classes: 4\n")
    config = load_config(path, [parse_override("train.epochs=5"), parse_override("data.image_size=[64, 96]")])
    assert config["train"]["epochs"] == 5
    assert config["data"]["num_classes"] == 4
    assert config["data"]["image_size"] == [64, 96]
    assert config["train"]["batch_size"] == DEFAULTS["train"]["batch_size"]


def test_unknown_keys_name_the_key_and_a_suggestion(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epoch' \(did you mean 'epochs'\?\)"):
        load_config(overrides=[parse_override("train.epoch=3")])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="must look like"):
        parse_override("train.epochs")


def test_other_model_drops_default_model_options():
    config = load_config(overrides=[{"model": {"name": "fcn8s"}}])
    assert config["model"] == {"name": "fcn8s"}
    config = load_config(overrides=[{"model": {"name": "unet", "depth": 3}}])
    assert config["model"]["depth"] == 3 and config["model"]["base_filters"] == 16


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
