"""Registry of segmentation architectures: `get_model(name, ...)` and `required_divisor(name, ...)`."""
import inspect

from models.baseline import baseline_divisor, build_baseline
from models.blocks import load_pretrained
from models.decoders import DECODERS, build_fpn, build_segformer, encoder_model_divisor
from models.deeplabv3plus import build_deeplabv3plus, deeplabv3plus_divisor
from models.encoders import load_encoder_from
from models.fcn import build_fcn8s, build_fcn16s, build_fcn32s, fcn_divisor
from models.segnet import build_segnet, segnet_divisor
from models.ternausnet import build_ternausnet, ternausnet_divisor
from models.unet import build_unet, unet_divisor

MODELS = {
    "unet": build_unet,
    "fcn8s": build_fcn8s,
    "fcn16s": build_fcn16s,
    "fcn32s": build_fcn32s,
    "segnet": build_segnet,
    "deeplabv3plus": build_deeplabv3plus,
    "ternausnet": build_ternausnet,
    "baseline": build_baseline,
    "fpn": build_fpn,
    "segformer": build_segformer,
}
"""Model families. Those in `models.decoders.DECODERS` also take `encoder=` (a pretrained backbone)."""

_DIVISORS = {
    "unet": unet_divisor,
    "fcn8s": fcn_divisor,
    "fcn16s": fcn_divisor,
    "fcn32s": fcn_divisor,
    "segnet": segnet_divisor,
    "deeplabv3plus": deeplabv3plus_divisor,
    "ternausnet": ternausnet_divisor,
    "baseline": baseline_divisor,
    "fpn": encoder_model_divisor,
    "segformer": encoder_model_divisor,
}


def get_model(name, input_shape, num_classes, weights_path=None, **options):
    """Build a registered model that maps float32 images in [0, 1] to per-pixel logits.

    Args:
        name: str. A key of `MODELS`.
        input_shape: tuple. (height, width, channels); height and width may be None where the model allows.
        num_classes: int. Number of output channels.
        weights_path: str. Local pretrained weights, loaded by layer name (`.h5`) or topology
            (`.weights.h5`), skipping mismatched layers. Defaults to None (random initialisation).
        **options: architecture options, see the builder in `MODELS[name]`. `encoder` (see
            `models.encoders.ENCODERS`) builds a decoder of `models.decoders.DECODERS` on that backbone;
            `encoder_from` (a run folder) initialises the encoder (or a plain U-Net's contracting path) from
            that run's model.keras. The one-line weight report is `model.encoder_report`.

    Example:
    >>> model = get_model("unet", (64, 64, 3), num_classes=2, depth=2, base_filters=4)
    >>> model.output_shape
    (None, 64, 64, 2)
    """
    _drop_unset(options)
    builder = _builder(name, options)
    encoder_from = None if "encoder_from" in inspect.signature(builder).parameters else options.pop(
        "encoder_from", None)
    _check_options(name, builder, options)
    model = builder(tuple(input_shape), num_classes, **options)
    if weights_path is not None:
        load_pretrained(model, weights_path)
    if encoder_from:
        model.encoder_report = load_encoder_from(model, encoder_from)
    return model


def required_divisor(name, **options):
    """Return the integer that input height and width must be multiples of (the model's output stride).

    Prediction code pads images up to a multiple of it and crops the output back.

    Args:
        name: str. A key of `MODELS`.
        **options: the architecture options the model is (or will be) built with.
    """
    _drop_unset(options)
    builder = _builder(name, options)
    for key in ("weights_path", "encoder_weights", "encoder_from"):
        options.pop(key, None)
    _check_options(name, builder, options)
    divisor = _DIVISORS[name.lower()]
    if builder in DECODERS.values():
        divisor = encoder_model_divisor
        defaults = {key: p.default for key, p in inspect.signature(builder).parameters.items()}
        options = {"output_stride": defaults.get("output_stride", 32), "encoder": defaults["encoder"], **options}
    accepted = inspect.signature(divisor).parameters
    return divisor(**{key: value for key, value in options.items() if key in accepted})


def _drop_unset(options):
    """Remove encoder keys set to None (a config's `encoder: null` means a plain model)."""
    for key in ("encoder", "encoder_weights", "encoder_from"):
        if key in options and options[key] is None:
            del options[key]


def _builder(name, options):
    """The builder of `name`; with `options["encoder"]` set, the decoder of that name (`encoder` stays in options)."""
    if options.get("encoder") is not None:
        try:
            return DECODERS[name.lower()]
        except KeyError:
            raise KeyError(f"model {name!r} takes no encoder; decoders for model.encoder are: "
                           f"{', '.join(DECODERS)}") from None
    try:
        return MODELS[name.lower()]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; valid names are: {', '.join(sorted(MODELS))}") from None


def accepted_options(name, **options):
    """The option names `get_model(name, ...)` takes with these `options` (an `encoder` picks the decoder's)."""
    _drop_unset(options)
    return _accepted(_builder(name, options)) | {"encoder_from"}


def _accepted(builder):
    return set(inspect.signature(builder).parameters) - {"input_shape", "num_classes"}


def _check_options(name, builder, options):
    accepted = _accepted(builder)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown} for model {name!r}; valid options are: {sorted(accepted)}")
