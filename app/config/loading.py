"""Run configuration: defaults, YAML files (safe_load only) and command-line overrides."""
import copy
import difflib
import pathlib

import yaml

from app.config.errors import ConfigError
from app.config.schema import Invalid, validate
from data.augment import DEFAULT_AUGMENT

DEFAULTS = {
    "name": None,
    "seed": 42,
    "data": {
        "path": "data/nuclei",
        "layout": "auto",  # auto or a data.layouts name: paired, segnet, csv, voc, cityscapes, ade, coco, labelme
        "images_dir": None,  # image folder name; None: images/, imgs/, JPEGImages/, ... found automatically
        "masks_dir": None,  # mask folder name; None: masks/, labels/, annotations/, gt/, ... found automatically
        "instances_dir": "instances",
        "mask_suffix": None,  # masks named <stem><suffix> (e.g. _mask); None: _mask, _seg, _label, _gt, ... tried
        "image_suffix": None,  # images named <stem><suffix> (e.g. _sat); None: tried as for mask_suffix
        "reduce_zero_label": None,  # mask value 0 = "other" -> void, k -> class k-1; None: true for ade only
        "train_list": None,  # voc: split list files (ids per line); None: ImageSets/Segmentation/<split>.txt
        "val_list": None,
        "test_list": None,
        "import_dir": None,  # coco/labelme --data: where masks are rendered; None: <runs dir>/imported
        "mask": "auto",
        "num_classes": None,
        "class_names": None,
        "palette": None,
        "void": None,
        "threshold": None,
        "invert": False,
        "channels": "auto",  # model input channels; auto: 3 for grey/RGB files, else the files' band count
        "normalization": "auto",
        "val_fraction": 0.25,
        "image_size": [256, 256],
        "resize": None,
        "cache": "auto",
        "one_hot": False,
        "missing_class_masks": "error",
    },
    "augment": dict(DEFAULT_AUGMENT),
    "model": {"name": "unet", "depth": 4, "base_filters": 16, "batch_norm": True, "dropout": 0.0,
              "upsampling": "transpose"},
    "loss": {"name": "dice_ce", "class_weights": "none", "border_weights": None},
    "train": {
        "batch_size": 8,
        "epochs": 40,
        "steps_per_epoch": None,
        "optimizer": "adamw",
        "learning_rate": 3e-3,
        "weight_decay": 1e-4,
        "schedule": "cosine",
        "warmup_epochs": 1,
        "early_stopping_patience": 15,
        "monitor": "val_miou",
        "precision": "auto",
        "time_budget": None,
        "jit_compile": "auto",
        "steps_per_execution": 1,
        "verbose": "auto",
        "checkpoint_every_minutes": 30,
        "freeze_encoder_epochs": 0,
        "encoder_lr_scale": 1.0,
    },
}
OPEN_SECTIONS = ("model", "loss")
"""Sections whose extra keys pass through to the model builder or the loss."""
# Each key's type and range: app/config/schema.py RULES (add the rule of a new key there).




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


def _apply(config, update):
    """Merge `update` into `config`; choosing another model (or an encoder) drops the default model's options."""
    model = update.get("model")
    if isinstance(model, dict) and model.get("name") not in (None, config["model"].get("name")):
        config["model"] = {}
    elif isinstance(model, dict) and model.get("encoder") and config["model"] == DEFAULTS["model"]:
        config["model"] = {"name": config["model"]["name"]}
    _merge(config, update)


def load_config(path=None, overrides=()):
    """Defaults, updated by a YAML file, updated by override dicts, in that order; every key checked.

    Raises:
        ConfigError: an unknown key, bad YAML, or values that break `app.config.schema.RULES` (one line each).
    """
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = pathlib.Path(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except OSError as err:
            raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: a config must be a mapping of sections")
        _apply(config, loaded)
    for override in overrides:
        _apply(config, override)
    try:
        validate(config, DEFAULTS)
    except Invalid as err:
        raise ConfigError(str(err)) from None
    if not config["name"]:
        config["name"] = f"{pathlib.Path(config['data']['path']).stem}-{config['model']['name']}"
    return absolute_data_paths(config)


DATA_PATH_KEYS = ("path", "palette", "import_dir")
"""data.* keys holding paths relative to the working folder (split lists are relative to the dataset)."""


def absolute_data_paths(config):
    """Make the data.* paths that exist absolute, so that a run's config.yaml still finds them from another
    folder; a path that does not exist stays as typed (messages show it so)."""
    for key in DATA_PATH_KEYS:
        value = config["data"].get(key)
        if isinstance(value, str) and value and not pathlib.Path(value).is_absolute() and pathlib.Path(value).exists():
            config["data"][key] = str(pathlib.Path(value).absolute())
    return config


def model_options(config):
    """Builder keyword arguments of the model section (everything but its name)."""
    return {k: v for k, v in config["model"].items() if k != "name"}


def dump_config(config, path):
    pathlib.Path(path).write_text(yaml.safe_dump(config, sort_keys=False))
