"""Prediction with a trained model: resize, pad or tile an image, blend tile logits, optional flip TTA.

Any image size works: images are padded (bottom/right, zeros, as in evaluation) to a multiple of the
model's divisor and the logits are cropped back. Images above `AUTO_TILE_PIXELS` (or any image, with
`tile=`) go through a sliding window whose overlapping tile logits are blended with Gaussian or linear-ramp
weights, so the model only ever sees tile-sized inputs.
"""
import dataclasses
import json
import math
import pathlib
import re
import zipfile

import cv2
import numpy as np

from app.config.loading import load_run_config
from app.inference.litert import LiteRTModel
from app.inference.palette import class_colours, default_palette
from data.images import read_image
from data.multilabel import MULTILABEL
from data.normalization import from_config

AUTO_TILE_PIXELS = 1024 * 1024
"""Padded images with more pixels than this are tiled automatically."""
DEFAULT_TILE = 512
DEFAULT_DIVISOR = 32
"""Divisor for a model file given without a run folder (covers every registered architecture's default)."""
TILE_BATCH = 4
BLENDS = ("gaussian", "linear")


@dataclasses.dataclass
class Predictor:
    """A loaded model and what prediction needs to know about it.

    model: anything with `predict_on_batch(float images) -> (B, H, W, C) scores` (Keras or LiteRT).
    resize: (H, W) the model was trained at (`data.resize`), or None. input_size: (H, W) of a model with a
    fixed input size (tiles are exactly that size), or None. divisor: input sides must be multiples of it.
    """

    model: object
    path: pathlib.Path
    channels: int
    num_classes: int
    divisor: int
    class_names: list
    colours: np.ndarray
    config: object = None
    """The run's `app.config.schema.Config` (None: a model file without a run folder)."""
    resize: tuple | None = None
    input_size: tuple | None = None
    tta_flips: tuple = ((2,), (1,))
    """Array axes of the flips that test-time augmentation averages (2: left-right, 1: up-down)."""
    multilabel: bool = False
    """One sigmoid per class (config.yaml `data.mask: multilabel`): see `app.inference.multilabel.predict_masks`."""
    normalization: object = None
    """`data.normalization.Normalization` the run trained with (None: values / dtype range)."""

    def read_image(self, path):
        """An image file as this model's input, read and normalised exactly as training read it."""
        return read_image(path, self.channels, self.normalization)


def _read_config(run_dir):
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir}: run folder not found")
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise ValueError(f"{run_dir}: not a run folder (no config.yaml)")
    return load_run_config(path)


def _load_error(path, err):
    """One line saying why Keras could not load `path` (its messages run to pages of config dumps)."""
    text = str(err)
    named = re.search(r"Could not locate (function|class) '([^']+)'", text)
    if named:
        return (f"{path}: the model calls the Python {named[1]} {named[2]!r}, which is not part of segkit; model "
                "files are loaded in Keras safe mode and never run code of their own: build the model from "
                f"registered layers (models.registry) or register that {named[1]} with "
                "@keras.saving.register_keras_serializable")
    if "safe_mode" in text or "lambda" in text.lower() and "unsafe" in text.lower():
        return (f"{path}: the model holds a Python lambda, which Keras safe mode refuses to run; model files "
                "never run code of their own: rebuild the model without Lambda layers")
    last = text.split("Exception encountered:")[-1].strip().splitlines()
    return f"{path}: cannot load the model ({(last[0] if last else type(err).__name__)[:300]})"


def check_segmentation_model(model, path):
    """Raise ValueError unless `model` maps (B, H, W, C) images to (B, H, W, classes) scores of the same H x W."""
    inputs, outputs = model.input_shape, model.output_shape
    found = f"input {tuple(inputs) if isinstance(inputs, tuple) else inputs}, output {outputs}"
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"{path}: not a segmentation model: {len(model.inputs)} input(s) and "
                         f"{len(model.outputs)} output(s) ({found}); segkit needs one image in, one score map out")
    if len(inputs) != 4 or len(outputs) != 4:
        raise ValueError(f"{path}: not a segmentation model: {found}; segkit needs (batch, H, W, channels) in and "
                         "(batch, H, W, classes) out, e.g. a classification model gives (batch, classes)")
    probe = tuple(s if s is not None else 2 * DEFAULT_DIVISOR for s in inputs[1:3])
    try:
        probed = model.compute_output_shape((1, *probe, inputs[3]))
    except Exception:  # noqa: BLE001  (a model that cannot infer shapes symbolically: keep its static shapes)
        probed = (1, *(o if o is not None else p for o, p in zip(outputs[1:3], probe)), outputs[3])
    if tuple(probed[1:3]) != probe:
        raise ValueError(f"{path}: not a segmentation model: a {probe[0]}x{probe[1]} input gives a "
                         f"{probed[1]}x{probed[2]} output ({found}); segkit needs scores at the input's size")


def load_model_file(path):
    """A checked segmentation model from a .keras (safe mode) or .tflite file; ValueError in one line."""
    if path.suffix == ".tflite":
        try:
            return LiteRTModel(str(path))
        except (ValueError, RuntimeError) as err:
            raise ValueError(f"{path}: not a TFLite model file ({str(err).splitlines()[0][:200]})") from None
    if path.suffix != ".keras":
        raise ValueError(f"{path}: model file must be .keras or .tflite")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a Keras model file (a .keras file is a zip archive; this one is not)")
    import keras

    import models.registry  # noqa: F401  (registers the custom layers)

    try:
        model = keras.saving.load_model(path, compile=False)
    except (ValueError, TypeError, KeyError, OSError, AttributeError, zipfile.BadZipFile) as err:
        raise ValueError(_load_error(path, err)) from None
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path}: not a Keras model file (it holds a {type(model).__name__})")
    check_segmentation_model(model, path)
    return model


def _class_names(run_dir, config, num_classes):
    """Class names of a run: the keys of metrics.json's per-class scores, else the config, else defaults."""
    metrics = pathlib.Path(run_dir) / "metrics.json" if run_dir else None
    if metrics and metrics.is_file():
        names = list(json.loads(metrics.read_text()).get("per_class", {}))
        if len(names) == num_classes:
            return names
    names = config.data.class_names if config is not None else None
    if names and len(names) == num_classes:
        return [str(n) for n in names]
    return ["background", "foreground"] if num_classes == 2 else [f"class_{i}" for i in range(num_classes)]


def load_predictor(run_dir=None, model_path=None):
    """Load a run's model (`model.keras`, or `model_path`: a .keras or .tflite file) into a `Predictor`.

    Without a run folder, the model file's folder or the one above it (`<run>/export/`) is taken as the run
    when it holds a config.yaml; otherwise class names are defaults and the divisor is `DEFAULT_DIVISOR`.
    """
    if run_dir is None and model_path is None:
        raise ValueError("give a run folder or a model file")
    if run_dir is None:
        parents = pathlib.Path(model_path).resolve().parents
        run_dir = next((d for d in list(parents)[:2] if (d / "config.yaml").is_file()), None)
    config = _read_config(run_dir) if run_dir is not None else None
    path = pathlib.Path(model_path) if model_path is not None else pathlib.Path(run_dir) / "model.keras"
    if not path.is_file():
        raise ValueError(f"{path}: model file not found" + ("" if model_path else " (has the run finished an epoch?)"))
    model = load_model_file(path)
    input_size = getattr(model, "input_size", None)
    if hasattr(model, "output_shape"):
        channels, num_classes = int(model.input_shape[-1]), int(model.output_shape[-1])
    else:
        channels = int(model.channels)
        probe = np.zeros((1, *(input_size or (DEFAULT_DIVISOR, DEFAULT_DIVISOR)), channels), np.float32)
        scores = np.asarray(model.predict_on_batch(probe))
        if scores.shape[1:3] != probe.shape[1:3]:
            raise ValueError(f"{path}: not a segmentation model: a {probe.shape[1]}x{probe.shape[2]} input gives "
                             f"output shape {scores.shape}; segkit needs scores at the input's size")
        num_classes = int(scores.shape[-1])
    divisor = DEFAULT_DIVISOR
    if config is not None:
        from models.registry import required_divisor

        divisor = required_divisor(config.model.name, **config.model.builder_options())
    resize = config.data.resize if config is not None else None
    multilabel = config is not None and config.data.mask == MULTILABEL
    normalization = from_config(config.data.normalization if config is not None else "unit", channels)
    if normalization is None:
        raise ValueError(f"{run_dir}/config.yaml: data.normalization has no statistics (the run did not finish "
                         f"its data scan); train again or set it to {{method: percentile, low: [...], high: [...]}}")
    colours = default_palette(num_classes + 1)[1:] if multilabel else class_colours(config, num_classes, run_dir)
    return Predictor(model=model, path=path, channels=channels, num_classes=num_classes, divisor=divisor,
                     class_names=_class_names(run_dir, config, num_classes), colours=colours, config=config,
                     normalization=normalization, resize=tuple(resize) if resize else None,
                     input_size=tuple(input_size) if input_size else None, tta_flips=tta_flips(config),
                     multilabel=multilabel)


def tta_flips(config):
    """The flips a run trained with (`augment.hflip`, `augment.vflip`), as axes of a (B, H, W, C) batch.

    Test-time augmentation averages only these: a street-scene model never saw an upside-down road, and
    averaging in its up-down flip costs accuracy. Without a config: both flips.
    """
    if config is None:
        return (2,), (1,)
    return tuple(axes for flip, axes in ((config.augment.hflip, (2,)), (config.augment.vflip, (1,))) if flip)


def model_logits(model, batch, flips=()):
    """(B, H, W, C) float32 scores of a batch; with `flips` (axes tuples), the mean over no flip and each flip."""
    total = np.asarray(model.predict_on_batch(batch), np.float32)
    for axes in flips:
        total = total + np.flip(np.asarray(model.predict_on_batch(np.flip(batch, axes)), np.float32), axes)
    return total / (1 + len(flips))


def padded_logits(predict_fn, image, divisor):
    """Logits of one whole image padded (bottom/right, zeros) to multiples of `divisor`, cropped back."""
    height, width = image.shape[:2]
    pad = (-height % divisor, -width % divisor)
    padded = np.pad(image, ((0, pad[0]), (0, pad[1]), (0, 0)))
    return predict_fn(padded[None])[0, :height, :width]


def tile_weights(size, overlap=0.25, blend="gaussian"):
    """(H, W) float32 blending weights of one tile, 1 at the centre and small but positive at the edges.

    Per axis, scaled to a maximum of 1, then multiplied. gaussian: exp(-d^2 / 2 sigma^2) with sigma = side / 8
    (as nnU-Net), floored at 1e-3. linear: a ramp from 1 / (r + 1) at the edge to 1 at r = overlap * side
    pixels inside.
    """
    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, got {blend!r}")
    axes = []
    for side in size:
        position = np.arange(side, dtype=np.float64)
        if blend == "gaussian":
            weight = np.maximum(np.exp(-0.5 * ((position - (side - 1) / 2) / (side / 8)) ** 2), 1e-3)
        else:
            ramp = max(1, round(overlap * side))
            weight = np.minimum(np.minimum(position, side - 1 - position) + 1, ramp + 1) / (ramp + 1)
        axes.append(weight / weight.max())
    return np.outer(*axes).astype(np.float32)


def _starts(length, tile, stride):
    return [*range(0, length - tile, stride), length - tile]


def sliding_window_logits(predict_fn, image, tile, overlap=0.25, blend="gaussian", divisor=1, fixed=False,
                          batch_size=TILE_BATCH):
    """Blended logits (H, W, C) of an image predicted tile by tile.

    Args:
        predict_fn: callable. (B, th, tw, channels) float32 -> (B, th, tw, C) scores.
        image: float32 array. (H, W, channels).
        tile: (th, tw). Tile size, a multiple of `divisor` unless `fixed`.
        overlap: float. Fraction of a tile shared with its neighbour, in [0, 1). Defaults to 0.25.
        blend: str. "gaussian" or "linear", see `tile_weights`. Defaults to "gaussian".
        divisor: int. Tile starts and the padded image are multiples of it. Defaults to 1.
        fixed: bool. The model takes exactly `tile`-sized inputs; otherwise a tile larger than the (padded)
            image shrinks to it and an image that fits one tile is predicted whole, exactly as
            `padded_logits`. Defaults to False.
        batch_size: int. Tiles per model call. Defaults to TILE_BATCH.
    """
    tile = tuple(int(t) for t in tile)
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if not fixed and any(t % divisor for t in tile):
        nearest = ", ".join(str(max(divisor, divisor * round(t / divisor))) for t in tile)
        raise ValueError(f"tile size {list(tile)} must be a multiple of {divisor} for this model; try {nearest}")
    height, width = image.shape[:2]
    if not fixed:
        padded = (height + -height % divisor, width + -width % divisor)
        tile = tuple(min(t, p) for t, p in zip(tile, padded))
        if tile == padded:
            return padded_logits(predict_fn, image, divisor)
    step = 1 if fixed else divisor
    strides = [max(step, int(t * (1 - overlap)) // step * step) for t in tile]
    size = [max(s + -s % step, t) for s, t in zip((height, width), tile)]
    image = np.pad(image, ((0, size[0] - height), (0, size[1] - width), (0, 0)))
    weights = tile_weights(tile, overlap, blend)
    windows = [(y, x) for y in _starts(size[0], tile[0], strides[0]) for x in _starts(size[1], tile[1], strides[1])]
    total, weight_sum = None, np.zeros(size, np.float32)
    for first in range(0, len(windows), batch_size):
        chunk = windows[first:first + batch_size]
        scores = predict_fn(np.stack([image[y:y + tile[0], x:x + tile[1]] for y, x in chunk]))
        if total is None:
            total = np.zeros((*size, scores.shape[-1]), np.float32)
        for (y, x), score in zip(chunk, scores):
            total[y:y + tile[0], x:x + tile[1]] += score * weights[..., None]
            weight_sum[y:y + tile[0], x:x + tile[1]] += weights
    return (total / weight_sum[..., None])[:height, :width]


def _resize(array, size, interpolation):
    """Resize an (H, W, C) array to `size` (H, W), four channels at a time (OpenCV's channel limit)."""
    parts = [cv2.resize(array[..., c:c + 4], (size[1], size[0]), interpolation=interpolation)
             for c in range(0, array.shape[2], 4)]
    return np.concatenate([p.reshape(*size, -1) for p in parts], axis=2)


def predict_image(predictor, image, tile=None, overlap=0.25, blend="gaussian", tta=False):
    """(H, W, C) float32 logits (scores for LiteRT models) of a float32 (H, W, channels) image in [0, 1].

    With `data.resize` in the run's config the image is resized to it (INTER_AREA, as in training) and the
    logits are resized back bilinearly. `tile=(th, tw)` (in pixels of the resized image, if the run resizes)
    forces the sliding window; without it, padded images above AUTO_TILE_PIXELS are tiled at DEFAULT_TILE.
    Fixed-size (LiteRT) models are always tiled at their input size.
    """
    if image.ndim != 3 or image.shape[2] != predictor.channels:
        raise ValueError(f"image has shape {image.shape}, the model takes (H, W, {predictor.channels})")
    height, width = image.shape[:2]
    work = image
    if predictor.resize and tuple(predictor.resize) != (height, width):
        work = _resize(image, predictor.resize, cv2.INTER_AREA)

    def predict_fn(batch):
        return model_logits(predictor.model, batch, predictor.tta_flips if tta else ())

    divisor = predictor.divisor
    padded_pixels = math.prod(s + -s % divisor for s in work.shape[:2])
    if predictor.input_size is not None:
        logits = sliding_window_logits(predict_fn, work, predictor.input_size, overlap, blend, fixed=True)
    elif tile is not None or padded_pixels > AUTO_TILE_PIXELS:
        tile = tile or (DEFAULT_TILE + -DEFAULT_TILE % divisor,) * 2
        logits = sliding_window_logits(predict_fn, work, tile, overlap, blend, divisor)
    else:
        logits = padded_logits(predict_fn, work, divisor)
    if work.shape[:2] != (height, width):
        logits = _resize(logits, (height, width), cv2.INTER_LINEAR)
    return logits


def predict_labels(predictor, image, **options):
    """(H, W) uint8 class indices: argmax of `predict_image` (multi-class runs only)."""
    if predictor.multilabel:
        raise ValueError(f"{predictor.path}: a multi-label model has no class-index mask; use "
                         "app.inference.multilabel.predict_masks")
    return predict_image(predictor, image, **options).argmax(-1).astype(np.uint8)
