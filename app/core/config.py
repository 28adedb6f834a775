"""Run configuration: defaults, YAML files (safe_load only) and command-line overrides."""
import copy
import difflib
import pathlib

import yaml

from data.augment import DEFAULT_AUGMENT

DEFAULTS = {
    "name": None,
    "seed": 42,
    "data": {
        "path": "data/nuclei",
        "layout": "auto",
        "images_dir": "images",
        "masks_dir": "masks",
        "instances_dir": "instances",
        "mask": "auto",
        "num_classes": None,
        "class_names": None,
        "palette": None,
        "void": None,
        "threshold": 127,
        "invert": False,
        "channels": 3,
        "val_fraction": 0.25,
        "image_size": [256, 256],
        "resize": None,
        "cache": "auto",
        "one_hot": False,
    },
    "augment": dict(DEFAULT_AUGMENT),
    "model": {"name": "unet", "depth": 4, "base_filters": 16, "batch_norm": True, "dropout": 0.0,
              "upsampling": "transpose"},
    "loss": {"name": "dice_ce", "class_weights": "none", "border_weights": None},
    "train": {
        "batch_size": 8,
        "epochs": 40,
        "optimizer": "adamw",
        "learning_rate": 3e-3,
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "warmup_epochs": 1,
        "early_stopping_patience": 15,
        "monitor": "val_miou",
        "precision": "float32",
        "jit_compile": "auto",
        "steps_per_execution": 1,
        "verbose": "auto",
        "freeze_encoder_epochs": 0,
        "encoder_lr_scale": 1.0,
    },
}
OPEN_SECTIONS = ("model", "loss")
"""Sections whose extra keys pass through to the model builder or the loss."""


class ConfigError(ValueError):
    """A bad configuration key or value; the message says which."""


def _merge(base, update, path=""):
    for key, value in update.items():
        where = f"{path}{key}"
        if key not in base and path.rstrip(".") not in OPEN_SECTIONS:
            close = difflib.get_close_matches(key, list(base), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(base)}"
            raise ConfigError(f"unknown config key {where!r}{hint}")
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            _merge(base[key], value, where + ".")
        else:
            base[key] = value


def parse_override(text):
    """'train.epochs=5' -> {'train': {'epochs': 5}}; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, _, raw = text.partition("=")
    value = yaml.safe_load(raw) if raw.strip() else None
    nested = value
    for part in reversed(key.strip().split(".")):
        nested = {part: nested}
    return nested


def _apply(config, update):
    """Merge `update` into `config`; choosing another model (or an encoder) drops the default model's options."""
    model = update.get("model")
    if isinstance(model, dict) and model.get("name") not in (None, config["model"].get("name")):
        config["model"] = {}
    elif isinstance(model, dict) and model.get("encoder") and config["model"] == DEFAULTS["model"]:
        config["model"] = {"name": config["model"]["name"]}
    _merge(config, update)


def load_config(path=None, overrides=()):
    """Defaults, updated by a YAML file, updated by override dicts, in that order."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = pathlib.Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({err})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections")
        _apply(config, loaded)
    for override in overrides:
        _apply(config, override)
    if not config["name"]:
        config["name"] = f"{pathlib.Path(config['data']['path']).stem}-{config['model']['name']}"
    return config


def model_options(config):
    """Builder keyword arguments of the model section (everything but its name)."""
    return {k: v for k, v in config["model"].items() if k != "name"}


def dump_config(config, path):
    pathlib.Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
