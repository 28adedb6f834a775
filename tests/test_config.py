import pytest

from app.config.errors import ConfigError
from app.config.loading import load_config, parse_override
from app.config.schema import Train


def test_file_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\ndata:\n  num_classes: 4\n")
    config = load_config(path, [parse_override("train.epochs=5"), parse_override("data.image_size=[64, 96]")])
    assert config.train.epochs == 5
    assert config.data.num_classes == 4
    assert config.data.image_size == [64, 96]
    assert config.train.batch_size == Train().batch_size


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
    assert config.model.options() == {"name": "fcn8s"}
    config = load_config(overrides=[{"model": {"name": "unet", "depth": 3}}])
    assert config.model.depth == 3 and config.model.base_filters == 16


def test_yaml_is_loaded_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_every_key_is_declared_once_with_a_type_default_and_meaning():
    from app.config.schema import Config, allowed, keys

    rows = keys()
    names = [key for key, *_ in rows]
    assert len(names) == len(set(names)) and {"train.epochs", "data.channels", "augment.elastic"} <= set(names)
    defaults = Config().to_dict()
    for key, annotation, default, description in rows:
        section, _, name = key.rpartition(".")
        assert description, key
        assert allowed(annotation) and "typing" not in allowed(annotation), key
        if section != "model":  # the model section's defaults are the U-Net builder's options
            assert (defaults[section][name] if section else defaults[name]) == default, key


def test_reference_table_is_generated_from_the_declarations():
    import pathlib

    from app.config.schema import markdown_table

    docs = pathlib.Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    assert docs.read_text() == markdown_table(), "run: python -m app.config.schema > docs/configuration.md"


@pytest.mark.parametrize("override, message", [
    ("data.channels=0", "data.channels: 0 is not auto or a positive integer"),
    ("data.cache=maybe", "data.cache: 'maybe' is not auto or true or false"),
    ("train.time_budget=soon", "train.time_budget: 'soon' is not seconds or a duration like 90s"),
    ("data.threshold=-1", "data.threshold: -1 is not a number >= 0 or null"),
    ("augment.scale=[2, 1]", "augment.scale: [2, 1] is not a range [low, high] of positive numbers"),
    ("train.learning_rate=true", "train.learning_rate: True is not a number > 0"),
    ("train.learning_rate=.inf", "train.learning_rate: inf is not a number > 0"),
    ("train.steps_per_epoch=1.0", "train.steps_per_epoch: 1.0 is not a positive integer or null"),
])
def test_unions_options_and_numbers_say_every_allowed_form(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=[parse_override(override)])
    assert str(err.value).startswith(message), str(err.value)


def test_sections_are_objects_checked_on_assignment_and_copies_leave_the_original():
    import pydantic

    config = load_config()
    assert config.train.epochs == 40 and config.model.builder_options()["depth"] == 4
    with pytest.raises(pydantic.ValidationError):
        config.train.epochs = 0
    changed = config.replace(data={"channels": 4}, train={"epochs": 2})
    assert (changed.data.channels, changed.train.epochs) == (4, 2)
    assert (config.data.channels, config.train.epochs) == ("auto", 40)


def test_runs_of_earlier_versions_load_and_resume(tmp_path):
    import yaml

    from app.config.loading import load_run_config
    from app.training.runs import find_resumable_run

    config = load_config(overrides=[{"train": {"epochs": 3}}])
    written = config.to_dict()
    del written["data"]["channels"], written["train"]["verbose"]  # keys added since
    written["train"]["retired_key"] = 1  # a key this version no longer has
    run = tmp_path / f"{config.name}-20250101-000000"
    (run / "backup").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(written))
    old = load_run_config(run / "config.yaml")
    assert old.data.channels == "auto" and old.train.epochs == 3 and not hasattr(old.train, "retired_key")
    assert find_resumable_run(tmp_path, config) == run
    assert find_resumable_run(tmp_path, config.replace(train={"epochs": 4})) is None
    (run / "config.yaml").write_text(yaml.safe_dump({**written, "train": {"epochs": 0}}))
    with pytest.raises(ConfigError, match=r"config.yaml: train.epochs: 0 must be >= 1"):
        load_run_config(run / "config.yaml")
    assert find_resumable_run(tmp_path, config) is None  # a config it cannot read is not the same run


def test_a_run_config_whose_palette_moved_still_loads(tmp_path):
    import yaml

    from app.config.loading import load_run_config

    written = load_config().to_dict()
    written["data"]["palette"] = str(tmp_path / "moved.csv")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(written))
    assert load_run_config(tmp_path / "config.yaml").data.palette.endswith("moved.csv")
    with pytest.raises(ConfigError, match="moved.csv: no such palette CSV file"):
        load_config(overrides=[{"data": {"palette": str(tmp_path / "moved.csv")}}])
