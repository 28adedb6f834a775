"""Loading a configuration: defaults (`app.config.schema`), then a YAML file (safe_load only), then overrides
(`--set section.key=value` and the command's flags), checked once into a `Config`. Run folders' config.yaml files
load with `load_run_config`, which also reads runs written by earlier versions."""
import difflib
import pathlib

import yaml

from app.config.errors import ConfigError
from app.config.schema import DEFAULT_MODEL, Config, defaults, validated

OPEN_SECTIONS = ("model", "loss")
"""Sections whose extra keys pass through to the model builder or the loss."""


def _merge(base, update, path="", strict=True):
    """Merge `update` into the plain dict `base`; an unknown key raises (strict) or is dropped and returned."""
    dropped = []
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in base and path.rstrip(".") not in OPEN_SECTIONS:
            if not strict:
                dropped.append(where)
                continue
            close = difflib.get_close_matches(key, list(base), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(base)}"
            raise ConfigError(f"unknown config key {where!r}{hint}")
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            dropped += _merge(base[key], value, where + ".", strict)
        else:
            base[key] = value
    return dropped


def parse_override(text):
    """'train.epochs=5' -> {'train': {'epochs': 5}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, _, raw = text.partition("=")
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"override {text!r}: {key.strip()!r} is not a key like section.key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:  # the safe loader refuses !!python tags: nothing in a value is ever run
        raise ConfigError(f"override {text!r}: the value is not valid YAML ({_yaml_problem(err)}); "
                          "quote the value to pass it as a string") from None
    nested = value
    for part in reversed(parts):
        nested = {part: nested}
    return nested


def _yaml_problem(err):
    """A YAML error in one line: the problem and where."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def apply_update(config, update, strict=True):
    """Merge `update` into the plain config dict; choosing another model (or an encoder) drops the default
    model's options. Returns the keys dropped as unknown (`strict=False`)."""
    model = update.get("model")
    if isinstance(model, dict) and model.get("name") not in (None, config["model"].get("name")):
        config["model"] = {}
    elif isinstance(model, dict) and model.get("encoder") and config["model"] == DEFAULT_MODEL:
        config["model"] = {"name": config["model"]["name"]}
    return _merge(config, update, strict=strict)


def read_yaml(path):
    """The mapping of a YAML config file; ConfigError naming the file when it cannot be read or is not one."""
    path = pathlib.Path(path)
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections")
    return loaded


def merged_config(updates, absolute=True):
    """The checked Config of the defaults updated by each mapping of `updates` in turn; a run name is given.
    `absolute`: data paths that exist are made absolute (`absolute_data_paths`), as a run stores them."""
    config = defaults()
    for update in updates:
        apply_update(config, update)
    checked = validated(config)
    if not checked.name:
        checked.name = f"{pathlib.Path(checked.data.path).stem}-{checked.model.name}"
    return absolute_data_paths(checked) if absolute else checked


def load_config(path=None, overrides=()):
    """Defaults, updated by a YAML file, updated by override dicts, in that order; every key checked.

    Raises:
        ConfigError: an unknown key, bad YAML, or values their declaration refuses (one line each).
    """
    return merged_config([*([read_yaml(path)] if path is not None else []), *overrides])


def load_run_config(path):
    """The Config of a run folder's config.yaml. Keys that this version no longer has are dropped and keys it
    added take their defaults, so runs of earlier versions still predict, evaluate, export and resume.

    Raises:
        ConfigError: an unreadable file or values their declaration refuses, naming the file.
    """
    loaded = read_yaml(path)
    if not isinstance(loaded.get("data"), dict):
        raise ConfigError(f"{path}: not a run config (no data section)")
    config = defaults()
    apply_update(config, loaded, strict=False)
    try:
        return validated(config, stored=True)
    except ConfigError as err:
        raise ConfigError(f"{path}: " + str(err).replace("\n", f"\n{path}: ")) from None


DATA_PATH_KEYS = ("path", "palette", "import_dir")
"""data.* keys holding paths relative to the working folder (split lists are relative to the dataset)."""


def absolute_data_paths(config):
    """Make the data.* paths that exist absolute, so that a run's config.yaml still finds them from another
    folder; a path that does not exist stays as typed (messages show it so)."""
    for key in DATA_PATH_KEYS:
        value = getattr(config.data, key)
        if isinstance(value, str) and value and not pathlib.Path(value).is_absolute() and pathlib.Path(value).exists():
            setattr(config.data, key, str(pathlib.Path(value).absolute()))
    return config


def dump_config(config, path):
    pathlib.Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))


__all__ = ["Config", "ConfigError", "apply_update", "dump_config", "load_config", "load_run_config",
           "merged_config", "parse_override", "read_yaml"]
