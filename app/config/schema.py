"""Configuration schema: the type and range of every key, checked before anything is written.

`RULES` maps "section.key" to a rule; a rule turns a value into its checked form or raises `Invalid` with
what is allowed. A new config key gets its rule here, next to the key's default in `app.config.loading.DEFAULTS`.
Keys without a rule pass through unchecked: the open sections (model, loss) hold builder and loss options
that their registries check, and names owned by a registry (layouts, architectures, losses) are checked there,
with the list of valid names.

Example: `train.epochs: 'one' is not a positive integer`, `train.epochs: 0 must be >= 1`.
"""
import math
import numbers
import pathlib


class Invalid(ValueError):
    """A value that breaks its rule; the message says what is allowed (the key is added by `validate`)."""


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _as_number(value):
    """Numbers, and strings that read as one: YAML 1.1 reads `3e-3` (no dot) as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def optional(rule):
    """`null` or what `rule` allows."""

    def check(value):
        if value is None:
            return None
        try:
            return rule(value)
        except Invalid as err:
            raise Invalid(f"{err} or null") from None

    check.__doc__ = rule.__doc__
    return check


def integer(minimum=None, maximum=None):
    what = "a positive integer" if minimum == 1 else "an integer >= 0" if minimum == 0 else "an integer"

    def check(value):
        if not _is_int(value):
            raise Invalid(f"{value!r} is not {what}")
        if minimum is not None and value < minimum:
            raise Invalid(f"{value} must be >= {minimum}")
        if maximum is not None and value > maximum:
            raise Invalid(f"{value} must be <= {maximum}")
        return int(value)

    return check


def number(minimum=None, maximum=None, above=None, below=None):
    """A finite real number within the bounds (inclusive `minimum`/`maximum`, exclusive `above`/`below`)."""
    bounds = [f">= {minimum}" if minimum is not None else "", f"> {above}" if above is not None else "",
              f"<= {maximum}" if maximum is not None else "", f"< {below}" if below is not None else ""]
    what = "a number " + " and ".join(b for b in bounds if b) if any(bounds) else "a number"

    def check(value):
        converted = _as_number(value)
        if converted is None or not math.isfinite(converted):
            raise Invalid(f"{value!r} is not {what.strip()}")
        for bound, ok in ((minimum, lambda b: converted >= b), (above, lambda b: converted > b),
                          (maximum, lambda b: converted <= b), (below, lambda b: converted < b)):
            if bound is not None and not ok(bound):
                raise Invalid(f"{value} must be {what.removeprefix('a number ')}")
        return converted

    return check


def probability(value):
    return number(minimum=0, maximum=1)(value)


def boolean(value):
    if not isinstance(value, bool):
        raise Invalid(f"{value!r} is not true or false")
    return value


def text(value):
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{value!r} is not a non-empty string")
    return value


def choice(*allowed):
    def check(value):
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise Invalid(f"{value!r} is not one of {', '.join(map(str, allowed))}")
        return value

    return check


def either(*rules):
    """The first rule that accepts the value."""

    def check(value):
        messages = []
        for rule in rules:
            try:
                return rule(value)
            except Invalid as err:
                messages.append(str(err).split(" is not ", 1)[-1])
        raise Invalid(f"{value!r} is not {' or '.join(messages)}")

    return check


def size_pair(value):
    """[H, W] of positive integers."""
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(_is_int(v) and v > 0 for v in value):
        raise Invalid(f"{value!r} is not a pair [H, W] of positive integers (e.g. [256, 256]; multiples of the "
                      "model's output stride, 32 for most)")
    return [int(v) for v in value]


def range_pair(value):
    """[low, high] of positive numbers, low <= high."""
    numbers_ = [_as_number(v) for v in value] if isinstance(value, (list, tuple)) and len(value) == 2 else None
    if not numbers_ or any(n is None or not n > 0 for n in numbers_) or numbers_[0] > numbers_[1]:
        raise Invalid(f"{value!r} is not a range [low, high] of positive numbers with low <= high")
    return numbers_


def name_list(value):
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, (str, int)) for v in value):
        raise Invalid(f"{value!r} is not a list of class names, e.g. [background, road]")
    return [str(v) for v in value]


def run_name(value):
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "/\\\0") or value in (".", ".."):
        raise Invalid(f"{value!r} is not a run name (a non-empty folder name without slashes)")
    return value


def void_value(value):
    """A mask value (index masks) or an [r, g, b] colour (RGB masks)."""
    if _is_int(value) and 0 <= value <= 65535:
        return int(value)
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in value):
        return [int(v) for v in value]
    raise Invalid(f"{value!r} is not a mask value 0-65535 or an [r, g, b] colour")


def palette_csv(value):
    """A readable palette CSV (name,r,g,b, optionally index) with colours 0-255."""
    from data.masks import read_palette

    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"{value!r} is not a path to a palette CSV file (columns name,r,g,b)")
    if not pathlib.Path(value).is_file():
        raise Invalid(f"{value}: no such palette CSV file")
    try:
        table = read_palette(value)
    except ValueError as err:
        raise Invalid(str(err).splitlines()[0]) from None
    for column in "rgb":
        values = table[column]
        if not all(_is_int(v) and 0 <= v <= 255 for v in values.tolist()):
            bad = next(v for v in values.tolist() if not (_is_int(v) and 0 <= v <= 255))
            raise Invalid(f"{value}: column {column} must hold integers 0-255, found {bad!r}")
    return value


def suffix(value):
    """A file-name suffix such as _mask (may be empty)."""
    if not isinstance(value, str) or any(c in value for c in "/\\\0"):
        raise Invalid(f"{value!r} is not a file-name suffix such as _mask")
    return value


def normalization(value):
    """auto, unit, percentile, or the {method: percentile, low: [...], high: [...]} a run stores."""
    if value in ("auto", "unit", "percentile"):
        return value
    if isinstance(value, dict) and value.get("method") == "percentile" and {"low", "high"} <= set(value):
        return value
    raise Invalid(f"{value!r} is not auto, unit, percentile or {{method: percentile, low: [...], high: [...]}}")


def duration(value):
    """Seconds, or text such as 90s, 30m, 1h, 1h30m."""
    from app.config.durations import parse_duration

    try:
        parse_duration(value)
    except ValueError as err:
        raise Invalid(f"{value!r} is not " + str(err).split(" must be ", 1)[-1].split("; got")[0]) from None
    return value


RULES = {
    "name": optional(run_name),
    "seed": integer(minimum=0),
    "data.path": text,
    "data.layout": text,
    "data.images_dir": optional(text),
    "data.masks_dir": optional(text),
    "data.mask_suffix": optional(suffix),
    "data.image_suffix": optional(suffix),
    "data.reduce_zero_label": optional(boolean),
    "data.train_list": optional(text),
    "data.val_list": optional(text),
    "data.test_list": optional(text),
    "data.import_dir": optional(text),
    "data.instances_dir": text,
    "data.mask": text,
    "data.num_classes": optional(integer(minimum=1)),
    "data.class_names": optional(name_list),
    "data.palette": optional(palette_csv),
    "data.void": optional(void_value),
    "data.threshold": optional(number(minimum=0)),
    "data.normalization": normalization,
    "data.missing_class_masks": choice("error", "empty"),
    "data.invert": boolean,
    "data.channels": either(choice("auto"), integer(minimum=1)),
    "data.val_fraction": number(minimum=0, below=1),
    "data.image_size": size_pair,
    "data.resize": optional(size_pair),
    "data.cache": either(choice("auto"), boolean),
    "data.one_hot": boolean,
    "augment.hflip": probability,
    "augment.vflip": probability,
    "augment.rotate90": probability,
    "augment.scale": optional(range_pair),
    "augment.rotate": optional(number(minimum=0, maximum=180)),
    "augment.affine_p": probability,
    "augment.brightness_contrast": number(minimum=0, maximum=1),
    "augment.color_jitter": number(minimum=0, maximum=1),
    "augment.noise": number(minimum=0, maximum=1),
    "augment.elastic": probability,
    "model.name": text,
    "loss.name": text,
    "train.batch_size": integer(minimum=1),
    "train.epochs": integer(minimum=1),
    "train.steps_per_epoch": optional(integer(minimum=1)),
    "train.optimizer": choice("adamw", "adam", "sgd"),
    "train.learning_rate": number(above=0),
    "train.weight_decay": number(minimum=0),
    "train.schedule": choice("cosine", "constant"),
    "train.warmup_epochs": number(minimum=0),
    "train.early_stopping_patience": optional(integer(minimum=0)),
    "train.monitor": text,
    "train.precision": choice("float32", "mixed_float16", "mixed_bfloat16", "auto"),
    "train.jit_compile": either(choice("auto"), boolean),
    "train.steps_per_execution": integer(minimum=1),
    "train.verbose": choice("auto", "epoch"),
    "train.checkpoint_every_minutes": optional(number(above=0)),
    "train.time_budget": optional(duration),
    "train.freeze_encoder_epochs": integer(minimum=0),
    "train.encoder_lr_scale": number(minimum=0, maximum=1),
}
"""Rule of each key; keys of DEFAULTS without one pass unchecked (see the module docstring)."""


def validate(config, defaults):
    """Check every key of `config` that has a rule; return the config with checked values (numbers from
    strings converted). Sections of `defaults` must stay mappings.

    Raises:
        Invalid: one line per bad key, `section.key: value is not ... / must be ...`.
    """
    problems = []
    for section, default in defaults.items():
        if isinstance(default, dict) and not isinstance(config.get(section), dict):
            problems.append(f"{section}: {config.get(section)!r} is not a section (a mapping of keys to values)")
    for key, rule in RULES.items():
        *section, name = key.split(".")
        holder = config.get(section[0]) if section else config
        if not isinstance(holder, dict) or name not in holder:
            continue
        try:
            holder[name] = rule(holder[name])
        except Invalid as err:
            problems.append(f"{key}: {err}")
    if problems:
        raise Invalid("\n".join(problems))
    return config
