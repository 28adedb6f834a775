"""The value types that configuration keys are declared with (`app.config.schema`), each with its check, and
`allowed`: what a type allows, in the words of error messages and of docs/configuration.md."""
import pathlib
import types
import typing
from typing import Annotated, Any, Literal

import pydantic
import pydantic_core
from pydantic import AfterValidator, BeforeValidator, Field, StrictInt, StrictStr

from app.config.durations import parse_duration
from app.config.errors import ConfigError
from data.masks import read_palette


class Allowed:
    """Annotated metadata: what a value of a custom type must be, in words (messages and the docs table)."""

    def __init__(self, text):
        self.text = text


def _not_bool(value):
    if isinstance(value, bool):  # a type error: the message says what the field allows
        raise pydantic_core.PydanticCustomError("float_type", "not a number")
    return value


def _non_blank(value):
    if not value.strip():
        raise ValueError(f"{value!r} is not a non-empty string")
    return value


def _size_pair(value):
    if not isinstance(value, (list, tuple)) or len(value) != 2 or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ValueError(f"{value!r} is not {SIZE_TEXT}")
    return [int(v) for v in value]


def _range_pair(value):
    numbers = None
    if isinstance(value, (list, tuple)) and len(value) == 2:
        try:
            numbers = [float(_not_bool(v)) for v in value]
        except (TypeError, ValueError):
            numbers = None
    if not numbers or any(not n > 0 for n in numbers) or numbers[0] > numbers[1]:
        raise ValueError(f"{value!r} is not {RANGE_TEXT}")
    return numbers


def _name_list(value):
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{value!r} is not {NAMES_TEXT}")
    return [str(v) for v in value]


def _run_name(value):
    if not isinstance(value, str) or not value.strip() or any(c in value for c in "/\\\0") or value in (".", ".."):
        raise ValueError(f"{value!r} is not {RUN_NAME_TEXT}")
    return value


def _suffix(value):
    if not isinstance(value, str) or any(c in value for c in "/\\\0"):
        raise ValueError(f"{value!r} is not {SUFFIX_TEXT}")
    return value


def _void(value):
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535:
        return value
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
        return [int(v) for v in value]
    raise ValueError(f"{value!r} is not {VOID_TEXT}")


def _palette(value, info):
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not {PALETTE_TEXT}")
    if (info.context or {}).get("stored"):  # a run's config.yaml: the file may have moved since; used if there
        return value
    if not pathlib.Path(value).is_file():
        raise ValueError(f"{value}: no such palette CSV file")
    try:
        table = read_palette(value)
    except ValueError as err:
        raise ValueError(str(err).splitlines()[0]) from None
    for column in "rgb":
        bad = [v for v in table[column].tolist() if not (isinstance(v, int) and 0 <= v <= 255)]
        if bad:
            raise ValueError(f"{value}: column {column} must hold integers 0-255, found {bad[0]!r}")
    return value


def _normalization(value):
    if value in ("auto", "unit", "percentile"):
        return value
    if isinstance(value, dict) and value.get("method") == "percentile" and {"low", "high"} <= set(value):
        return value
    raise ValueError(f"{value!r} is not {NORMALIZATION_TEXT}")


def _duration(value):
    try:
        parse_duration(value)
    except ConfigError as err:
        raise ValueError(f"{value!r} is not " + str(err).split(" must be ", 1)[-1].split("; got")[0]) from None
    return value


SIZE_TEXT = ("a pair [H, W] of positive integers (e.g. [256, 256]; multiples of the model's output stride, 32 for "
             "most)")
RANGE_TEXT = "a range [low, high] of positive numbers with low <= high"
NAMES_TEXT = "a list of class names, e.g. [background, road]"
RUN_NAME_TEXT = "a run name (a non-empty folder name without slashes)"
SUFFIX_TEXT = "a file-name suffix such as _mask"
VOID_TEXT = "a mask value 0-65535 or an [r, g, b] colour"
PALETTE_TEXT = "a path to a palette CSV file (columns name,r,g,b)"
NORMALIZATION_TEXT = "auto, unit, percentile or {method: percentile, low: [...], high: [...]}"
DURATION_TEXT = "seconds or a duration like 90s, 30m, 1h or 1h30m"


def custom(check, text, base=Any):
    """A type checked by `check` (which raises ValueError saying what is allowed), described as `text`."""
    return Annotated[base, BeforeValidator(check), Allowed(text)]


Text = Annotated[StrictStr, AfterValidator(_non_blank)]
Number = Annotated[float, BeforeValidator(_not_bool), Field(allow_inf_nan=False)]
Probability = Annotated[Number, Field(ge=0, le=1)]
Count = Annotated[StrictInt, Field(ge=1)]
Size = custom(_size_pair, SIZE_TEXT, list)
FileSuffix = custom(_suffix, SUFFIX_TEXT)
ClassNames = custom(_name_list, NAMES_TEXT, list)
PaletteFile = custom(_palette, PALETTE_TEXT)
MaskValue = custom(_void, VOID_TEXT)
Normalization = custom(_normalization, NORMALIZATION_TEXT)
Range = custom(_range_pair, RANGE_TEXT, list)
Duration = custom(_duration, DURATION_TEXT)
RunName = custom(_run_name, RUN_NAME_TEXT)


BOUNDS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
"""Constraint attributes of pydantic's numeric metadata (annotated_types.Ge, ..., Interval) and their words."""


def bounds(annotation):
    """['>= 0', '< 1'] of an annotation's numeric constraints (through nested Annotated types and Field()s)."""
    found = []
    while typing.get_origin(annotation) is Annotated:
        annotation, *metadata = typing.get_args(annotation)
        for item in metadata:
            for constraint in item.metadata if isinstance(item, pydantic.fields.FieldInfo) else [item]:
                found += [f"{word} {getattr(constraint, name)}" for name, word in BOUNDS.items()
                          if getattr(constraint, name, None) is not None]
    order = list(BOUNDS.values())
    return sorted(found, key=lambda text: order.index(text.split()[0]))


def allowed(annotation):
    """What a value of `annotation` must be, in words: 'a positive integer', 'a number >= 0 and < 1 or null'."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        text = " or ".join(allowed(option) for option in options if option is not type(None))
        return text + (" or null" if type(None) in options else "")
    metadata = []
    inner = annotation
    while typing.get_origin(inner) is Annotated:
        inner, *more = typing.get_args(inner)
        metadata += more
    described = [item.text for item in metadata if isinstance(item, Allowed)]
    if described:
        return described[0]
    if typing.get_origin(inner) is Literal:
        values = typing.get_args(inner)
        return values[0] if len(values) == 1 else "one of " + ", ".join(map(str, values))
    limits = bounds(annotation)
    if inner is bool:
        return "true or false"
    if inner is str:
        return "a non-empty string"
    if inner is int:
        return {(">= 1",): "a positive integer", (">= 0",): "an integer >= 0"}.get(tuple(limits), " ".join(
            ["an integer", " and ".join(limits)]).strip())
    if inner is float:
        return " ".join(["a number", " and ".join(limits)]).strip()
    if inner is dict:
        return "a mapping"
    return getattr(inner, "__name__", str(inner))
