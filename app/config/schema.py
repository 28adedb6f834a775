"""The run configuration, declared once: every key's type, default, allowed values and one-line meaning.

`Config` is a pydantic model of five sections (`config.data`, `config.augment`, `config.model`, `config.loss`,
`config.train`) plus `name` and `seed`; functions take the section they read (`prepare_data(config, ...)` reads
`config.data`, the optimizer `config.train`). A new key is one field here: its type and bounds are the check, its
`description` the line in docs/configuration.md (`python -m app.config.schema` writes that table).

The `model` and `loss` sections are open: keys beyond those declared pass to the model builder or the loss,
whose registries check them (with the list of valid names). Messages name the key, the value and what is
allowed (`problems`): `train.epochs: 'one' is not a positive integer`, `train.epochs: 0 must be >= 1`.
"""
import html
import sys
import types
import typing
from typing import Annotated, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from app.config.errors import ConfigError
from app.config.types import (ClassNames, Count, Duration, FileSuffix, MaskValue, Normalization, Number, PaletteFile,
                              Probability, Range, RunName, Size, Text, allowed, bounds)
from data.augment import DEFAULT_AUGMENT


class Section(BaseModel):
    """A config section: attribute access, values checked on assignment, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    def options(self):
        """The section as a plain dict (what `data/` and the registries take)."""
        return self.model_dump()


class OpenSection(Section):
    """A section whose undeclared keys pass through to a registry (model builder options, loss options)."""

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    def extras(self):
        """The undeclared keys and their values."""
        return dict(self.__pydantic_extra__ or {})


class Data(Section):
    path: Text = Field("data/nuclei", description="dataset folder or CSV file")
    layout: Text = Field("auto", description="auto (detected) or a data.layouts name: paired, segnet, csv, voc, "
                                             "cityscapes, ade, coco, labelme")
    images_dir: Text | None = Field(None, description="image folder name; null: images/, imgs/, JPEGImages/, ... "
                                                      "found automatically")
    masks_dir: Text | None = Field(None, description="mask folder name; null: masks/, labels/, annotations/, gt/, ... "
                                                     "found automatically")
    instances_dir: Text = Field("instances", description="folder of instance masks beside the masks, if any")
    mask_suffix: FileSuffix | None = Field(
        None, description="masks named <stem><suffix> (e.g. _mask); null: _mask, _seg, _label, _gt, ... tried")
    image_suffix: FileSuffix | None = Field(
        None, description="images named <stem><suffix> (e.g. _sat); null: tried as for mask_suffix")
    reduce_zero_label: StrictBool | None = Field(None, description="mask value 0 = 'other' -> void, k -> class k-1; "
                                                                   "null: true for the ade layout only")
    train_list: Text | None = Field(None, description="voc: file of training ids; null: "
                                                      "ImageSets/Segmentation/train.txt")
    val_list: Text | None = Field(None, description="voc: file of validation ids")
    test_list: Text | None = Field(None, description="voc: file of test ids")
    import_dir: Text | None = Field(None, description="coco/labelme: where masks are rendered; null: "
                                                      "<runs dir>/imported")
    mask: Text = Field("auto", description="mask encoding: auto, index, binary, rgb or multilabel")
    num_classes: Count | None = Field(None, description="classes; null: from the masks and label files")
    class_names: ClassNames | None = Field(
        None, description="class names in index order; null: from label files, the palette or class_<i>")
    palette: PaletteFile | None = Field(
        None, description="CSV of class colours (name,r,g,b) for RGB masks")
    void: MaskValue | None = Field(None, description="mask value (or colour) that no loss or score "
                                                                    "counts")
    threshold: Annotated[Number, Field(ge=0)] | None = Field(None, description="binary masks: values above it are "
                                                                               "foreground; null: detected")
    invert: StrictBool = Field(False, description="binary masks: swap foreground and background")
    channels: Literal["auto"] | Count = Field("auto", description="model input channels; auto: 3 for grey/RGB "
                                                                  "files, else the files' band count")
    normalization: Normalization = Field(
        "auto", description="input scaling: unit (dtype range) or percentile (dataset statistics); auto decides by "
                            "the image files; a run stores the statistics it used")
    val_fraction: Annotated[Number, Field(ge=0, lt=1)] = Field(
        0.25, description="share of train/ held out for validation when the dataset has no val/ split")
    image_size: Size = Field([256, 256], description="training crop [H, W]")
    resize: Size | None = Field(None, description="[H, W] every image is resized to before cropping; null: "
                                                  "native size")
    cache: Literal["auto"] | StrictBool = Field("auto", description="keep decoded images in memory; auto: when they "
                                                                    "fit in 2 GB")
    one_hot: StrictBool = Field(False, description="one-hot targets in the pipeline (sparse otherwise)")
    missing_class_masks: Literal["error", "empty"] = Field(
        "error", description="multilabel: a class folder without an image's mask is an error, or an empty mask")


class Augment(Section):
    hflip: Probability = Field(DEFAULT_AUGMENT["hflip"], description="probability of a left-right flip")
    vflip: Probability = Field(DEFAULT_AUGMENT["vflip"], description="probability of an up-down flip")
    rotate90: Probability = Field(DEFAULT_AUGMENT["rotate90"], description="probability of a quarter turn (before "
                                                                           "the crop)")
    scale: Range | None = Field(
        DEFAULT_AUGMENT["scale"], description="[low, high] zoom range of the affine transform")
    rotate: Annotated[Number, Field(ge=0, le=180)] | None = Field(
        DEFAULT_AUGMENT["rotate"], description="largest rotation of the affine transform, degrees")
    affine_p: Probability = Field(DEFAULT_AUGMENT["affine_p"], description="probability of the affine transform")
    brightness_contrast: Probability = Field(DEFAULT_AUGMENT["brightness_contrast"],
                                             description="brightness and contrast jitter amount")
    color_jitter: Probability = Field(DEFAULT_AUGMENT["color_jitter"], description="hue and saturation jitter amount")
    noise: Probability = Field(DEFAULT_AUGMENT["noise"], description="Gaussian noise amount")
    elastic: Probability = Field(DEFAULT_AUGMENT["elastic"], description="probability of the U-Net paper's elastic "
                                                                         "deformation")


DEFAULT_MODEL = {"name": "unet", "depth": 4, "base_filters": 16, "batch_norm": True, "dropout": 0.0,
                 "upsampling": "transpose"}
"""The default model section; choosing another model (or an encoder) drops the U-Net options."""


class Model(OpenSection):
    name: Text = Field("unet", description="architecture (models.registry): unet, fcn8s, segnet, deeplabv3plus, "
                                           "ternausnet, ...; further keys are its builder's options (depth, "
                                           "base_filters, encoder, ...)")

    def builder_options(self):
        """Builder keyword arguments: every key but the name."""
        return self.extras()


class Loss(OpenSection):
    name: Text = Field("dice_ce", description="loss (models.losses): ce, dice, dice_ce, focal, tversky, lovasz; "
                                              "further keys are its options")
    class_weights: Text = Field("none", description="class weights from pixel frequencies: none, median, inverse, "
                                                    "enet")
    border_weights: dict | None = Field(None, description="U-Net border weight map options (w0, sigma); null: none")

    def loss_options(self):
        """Keyword arguments of the loss: every undeclared key."""
        return self.extras()


class Train(Section):
    batch_size: Count = Field(8, description="global batch (split over the replicas)")
    epochs: Count = Field(40, description="epochs (a time budget sets them)")
    steps_per_epoch: Count | None = Field(None, description="steps per epoch; null: one pass over the training images")
    optimizer: Literal["adamw", "adam", "sgd"] = Field("adamw", description="optimizer")
    learning_rate: Annotated[Number, Field(gt=0)] = Field(3e-3, description="peak learning rate")
    weight_decay: Annotated[Number, Field(ge=0)] = Field(1e-4, description="AdamW weight decay")
    schedule: Literal["cosine", "constant"] = Field("cosine", description="learning-rate schedule (cosine decays to "
                                                                          "1% of the peak)")
    warmup_epochs: Annotated[Number, Field(ge=0)] = Field(1, description="linear learning-rate warm-up, epochs")
    early_stopping_patience: Annotated[StrictInt, Field(ge=0)] | None = Field(
        15, description="epochs without improvement before stopping; null: no early stopping")
    monitor: Text = Field("val_miou", description="score that picks the best model")
    precision: Literal["float32", "mixed_float16", "mixed_bfloat16", "auto"] = Field(
        "auto", description="auto: mixed_bfloat16 on GPUs of compute capability 8.0+ and CPUs with AMX/AVX512-BF16, "
                            "mixed_float16 on 7.x GPUs, else float32")
    time_budget: Duration | None = Field(
        None, description="wall-clock budget (90s, 30m, 1h): epochs fitted from a timed warm-up")
    jit_compile: Literal["auto"] | StrictBool = Field("auto", description="XLA compilation of the train step")
    steps_per_execution: Count = Field(1, description="train steps per call into the compiled function")
    verbose: Literal["auto", "epoch"] = Field("auto", description="training output: auto (a progress bar on a "
                                                                  "terminal, one line per epoch otherwise) or epoch")
    checkpoint_every_minutes: Annotated[Number, Field(gt=0)] | None = Field(
        30, description="minutes between mid-epoch backups; null: at epoch ends only")
    freeze_encoder_epochs: Annotated[StrictInt, Field(ge=0)] = Field(
        0, description="epochs a pretrained encoder stays frozen")
    encoder_lr_scale: Annotated[Number, Field(ge=0, le=1)] = Field(
        1.0, description="learning-rate factor of a pretrained encoder")


class Config(BaseModel):
    """A run's configuration (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: RunName | None = Field(
        None, description="run name (folder prefix); null: <dataset>-<model>")
    seed: Annotated[StrictInt, Field(ge=0)] = Field(42, description="random seed of splits, shuffling and weights")
    data: Data = Field(default_factory=Data)
    augment: Augment = Field(default_factory=Augment)
    model: Model = Field(default_factory=lambda: Model(**DEFAULT_MODEL))
    loss: Loss = Field(default_factory=Loss)
    train: Train = Field(default_factory=Train)

    def to_dict(self):
        """Plain data for config.yaml and comparisons (sections in declaration order)."""
        return self.model_dump()

    def replace(self, **sections):
        """A copy with keys of `sections` (`data={"channels": 3}`) set and checked; this config is unchanged."""
        changed = self.model_copy(deep=True)
        for section, values in sections.items():
            for key, value in values.items():
                setattr(getattr(changed, section), key, value)
        return changed


SECTIONS = {"data": Data, "augment": Augment, "model": Model, "loss": Loss, "train": Train}


def defaults():
    """The default configuration as plain data (what files and overrides are merged onto)."""
    return Config().to_dict()


def keys():
    """Every declared key: (dotted key, annotation, default, description)."""
    rows = []
    for name, field in Config.model_fields.items():
        if name in SECTIONS:
            for key, inner in SECTIONS[name].model_fields.items():
                default = DEFAULT_MODEL.get(key) if name == "model" else inner.get_default(call_default_factory=True)
                rows.append((f"{name}.{key}", field_type(inner), default, inner.description))
        else:
            rows.append((name, field_type(field), field.get_default(call_default_factory=True), field.description))
    return rows


def field_type(field):
    """A field's annotation with its Field() constraints attached (as Annotated metadata)."""
    return Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation


RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}


def _annotation_at(location):
    """The declared annotation of a key path ('train', 'epochs'), or None (a section, an undeclared key)."""
    fields = Config.model_fields
    for depth, part in enumerate(location):
        field = fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        if depth == len(location) - 1:
            return field_type(field)
        section = SECTIONS.get(part)
        if section is None:
            return None
        fields = section.model_fields
    return None


def problems(error, data):
    """One line per bad key of a pydantic ValidationError: `key: value is not ... / must be ...`."""
    lines = {}
    for item in error.errors():
        location = [part for part in item["loc"] if isinstance(part, str)]
        key_path = location[:2] if location and location[0] in SECTIONS else location[:1]
        if len(key_path) > 1 and location[0] in SECTIONS and not isinstance(data.get(location[0]), dict):
            key_path = key_path[:1]
        key = ".".join(key_path)
        if key in lines:
            continue
        value = data
        for part in key_path:
            value = value.get(part) if isinstance(value, dict) else None
        annotation = _annotation_at(key_path)
        if len(key_path) == 1 and key_path[0] in SECTIONS:
            lines[key] = f"{key}: {value!r} is not a section (a mapping of keys to values)"
        elif item["type"] == "value_error":
            lines[key] = f"{key}: {str(item['ctx']['error'])}"
        elif item["type"] in RANGE_ERRORS and typing.get_origin(annotation) not in (typing.Union, types.UnionType):
            lines[key] = f"{key}: {value} must be {' and '.join(bounds(annotation))}"
        elif annotation is None:
            lines[key] = f"{key}: {item['msg']}"
        else:
            lines[key] = f"{key}: {value!r} is not {allowed(annotation)}"
    return list(lines.values())


def validated(data, stored=False):
    """A Config of plain `data` (defaults filled in); ConfigError with one line per bad key. `stored`: a run's
    config.yaml, whose data files need not exist any more."""
    try:
        return Config.model_validate(data, context={"stored": stored})
    except pydantic.ValidationError as err:
        raise ConfigError("\n".join(problems(err, data))) from None


def markdown_table():
    """docs/configuration.md: one row per key with its type, default and meaning."""
    lines = ["# Configuration keys", "",
             "Generated from `app/config/schema.py` by `python -m app.config.schema > docs/configuration.md`; "
             "set a key in a YAML file (`--config`) or with `--set section.key=value`. The `model` and `loss` "
             "sections also take their builder's and loss's own options.", "",
             "| key | allowed | default | meaning |", "| --- | --- | --- | --- |"]
    for key, annotation, default, description in keys():
        shown = "null" if default is None else str(default).replace("True", "true").replace("False", "false")
        cells = [allowed(annotation), description or ""]
        allowed_text, meaning = (html.escape(cell, quote=False).replace("|", "/") for cell in cells)
        lines.append(f"| `{key}` | {allowed_text} | `{shown}` | {meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown_table())
