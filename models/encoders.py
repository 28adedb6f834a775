"""Pretrained encoders: a registry of backbones giving feature pyramids (strides 2-32) with their own preprocessing.

`build_encoder(name, image, weights, output_stride)` appends an encoder to a functional graph: the image (float32
in [0, 1], 1 or 3 channels) goes through the family's keras.applications preprocessing, written as layers, then
through a nested `keras.Model` named "encoder" whose outputs are the last feature maps at strides 2, 4, 8, 16 and
32 (those the backbone has). Weights come as keras.applications ships them ("imagenet": the same file, from
Keras's cache `$KERAS_HOME/models/` or downloaded like Keras when the machine is online), from a local `.h5` /
`.weights.h5` file or a keras-hub preset. Every load is reported: tensors loaded, and which were skipped and why.
MiT (SegFormer's encoder) is our own (`models.mit`, any input size), loading keras-hub MiT presets by name.
The registry, the weight loading and its report stay in one module (past 400 lines): every family goes through
the same load-and-report path, and splitting them would put the registry's entries apart from their loader.
"""
import dataclasses
import functools
import os
import pathlib
import socket
import threading

import h5py
import keras
import numpy as np
from keras import ops

from models.blocks import rebuilt_layer
from models.mit import HUB_CONFIG, HUB_WEIGHTS, MIT_VARIANTS, build_mit, load_hub_preset

try:  # optional; imported here so that saved models with a keras-hub encoder reload (its layers get registered)
    import keras_hub as _keras_hub
except ImportError:
    _keras_hub = None

APPLICATIONS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
ENCODER_LAYER = "encoder"
IMAGENET_MEAN = {"caffe": (103.939, 116.779, 123.68), "torch": (0.485, 0.456, 0.406)}
IMAGENET_STD = (0.229, 0.224, 0.225)
ONLINE_PROBE_SECONDS = 3.0


class EncoderWeightsError(ValueError):
    """Encoder weights that cannot be found or read; the one-line message says what to do."""


@keras.saving.register_keras_serializable(package="segkit")
class ImagenetPreprocessing(keras.layers.Layer):
    """keras.applications' `preprocess_input` for images in [0, 1], as a layer (so export needs nothing extra).

    Modes as in `keras.applications.imagenet_utils`: "caffe" (RGB to BGR, minus the ImageNet channel means, at
    [0, 255] scale: ResNet, VGG), "tf" (to [-1, 1]: MobileNetV2), "torch" (minus mean, divided by the standard
    deviation: MiT / SegFormer) and "scale" (to [0, 255], for families whose model holds its own preprocessing:
    EfficientNetV2, MobileNetV3, ConvNeXt).

    Example:
    >>> layer = ImagenetPreprocessing("tf")
    >>> keras.ops.convert_to_numpy(layer(np.ones((1, 1, 1, 3), "float32")))[0, 0, 0].tolist()
    [1.0, 1.0, 1.0]
    """

    MODES = ("caffe", "tf", "torch", "scale")

    def __init__(self, mode, **kwargs):
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}: got {mode!r}")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) * 255.0 - ops.convert_to_tensor(IMAGENET_MEAN["caffe"], self.compute_dtype)
        if self.mode == "tf":
            return x * 2.0 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(IMAGENET_MEAN["torch"], self.compute_dtype)
            return (x - mean) / ops.convert_to_tensor(IMAGENET_STD, self.compute_dtype)
        return x * 255.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@dataclasses.dataclass(frozen=True)
class EncoderSpec:
    """One registered backbone: how to build it, its preprocessing and its ImageNet weight file."""

    build: object
    """Callable (input_shape) -> keras.Model without weights."""
    preprocessing: str
    """`ImagenetPreprocessing` mode applied before the backbone."""
    weights_file: str = None
    """File name keras.applications downloads for `weights="imagenet", include_top=False`."""
    weights_subdir: str = None
    """Folder of that file under `APPLICATIONS_URL`."""
    file_hash: str = None
    """Hash keras.applications checks after downloading (None where Keras checks none)."""
    hub_preset: bool = False
    """Weights come from a keras-hub preset (folder or handle), loaded by name into our own layers (MiT)."""

    @property
    def weights_url(self):
        return f"{APPLICATIONS_URL}{self.weights_subdir}/{self.weights_file}" if self.weights_file else None


def _applications(constructor, **kwargs):
    def build(input_shape):
        return getattr(keras.applications, constructor)(include_top=False, weights=None, input_shape=input_shape,
                                                        **kwargs)
    return build


def _efficientnetv2(variant, file_hash):
    constructor = "EfficientNetV2" + variant.upper().lstrip("-")
    return EncoderSpec(_applications(constructor), "scale", f"efficientnetv2-{variant.lstrip('-')}_notop.h5",
                       "efficientnet_v2", file_hash)


def _mix_transformer(variant):
    return EncoderSpec(functools.partial(build_mit, *MIT_VARIANTS[variant], name=variant), "torch",
                       hub_preset=True)


ENCODERS = {
    "resnet50": EncoderSpec(_applications("ResNet50"), "caffe", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
                            "resnet", "4d473c1dd8becc155b73f8504c6f6626"),
    "resnet101": EncoderSpec(_applications("ResNet101"), "caffe",
                             "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5", "resnet",
                             "88cf7a10940856eca736dc7b7e228a21"),
    "vgg16": EncoderSpec(_applications("VGG16"), "caffe", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
                         "vgg16", "6d6bbae143d832006294945121d1f1fc"),
    "mobilenetv2": EncoderSpec(_applications("MobileNetV2"), "tf",
                               "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5", "mobilenet_v2"),
    "mobilenetv3_small": EncoderSpec(_applications("MobileNetV3Small"), "scale",
                                     "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5", "mobilenet_v3",
                                     "d3e8ec802a04aa4fc771ee12a9a9b836"),
    "mobilenetv3_large": EncoderSpec(_applications("MobileNetV3Large"), "scale",
                                     "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5", "mobilenet_v3",
                                     "07fb09a5933dd0c8eaafa16978110389"),
    "efficientnetv2_b0": _efficientnetv2("b0", "893217f2bb855e2983157299931e43ff"),
    "efficientnetv2_b1": _efficientnetv2("b1", "0e80663031ca32d657f9caa404b6ec37"),
    "efficientnetv2_b2": _efficientnetv2("b2", "1dfe2e7a5d45b6632553a8961ea609eb"),
    "efficientnetv2_b3": _efficientnetv2("b3", "f6abf7b5849ac99a89b50dd3fd532856"),
    "efficientnetv2_s": _efficientnetv2("-s", "af0682fb74e8c54910f2d4393339c070"),
    "convnext_tiny": EncoderSpec(_applications("ConvNeXtTiny"), "scale", "convnext_tiny_notop.h5", "convnext",
                                 "d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1"),
    **{variant: _mix_transformer(variant) for variant in MIT_VARIANTS},
}
"""Registered encoders. MiT (SegFormer's encoder, `models.mit`) takes its weights from a keras-hub MiT preset
(`encoder_weights: <preset folder>`, or a Kaggle handle / preset name where keras-hub is installed and the machine
is online). `hub:<preset>` names any other keras-hub backbone with pyramid outputs."""
HUB_EXAMPLE = "kaggle://keras/mit/keras/{name}_ade20k_512"
HUB_PREFIX = "hub:"


def encoder_spec(name):
    """The `EncoderSpec` of a registered name (`hub:<preset>` gives a keras-hub spec)."""
    if isinstance(name, str) and name.startswith(HUB_PREFIX):
        return EncoderSpec(None, "scale")
    try:
        return ENCODERS[name]
    except (KeyError, TypeError):
        raise KeyError(f"unknown encoder {name!r}; valid names are: {', '.join(ENCODERS)} or hub:<keras-hub preset>"
                       ) from None


def keras_hub():
    """The keras_hub module, or a one-line error saying how to install it."""
    if _keras_hub is None:
        raise ImportError("keras-hub encoders need keras-hub: pip install --no-deps keras-hub==0.32.0 "
                          "regex tokenizers (see docs/encoders.md)")
    return _keras_hub


@dataclasses.dataclass
class Encoder:
    """An encoder applied to an image: feature maps by stride, and what was loaded."""

    features: dict
    """{stride: KerasTensor}, strides ascending."""
    report: str


def build_encoder(name, image, weights=None, output_stride=32):
    """Apply encoder `name` (see `ENCODERS`) to `image`; return its features by stride and the weight report.

    Args:
        name: str. A key of `ENCODERS`, or "hub:<preset>" (a keras-hub preset folder or handle).
        image: KerasTensor. (batch, H, W, 1 or 3) float32 in [0, 1].
        weights: str. None (random), "imagenet" (Keras's file, see `imagenet_weights_path`), or a path to an
            `.h5` / `.weights.h5` file or keras-hub preset folder.
        output_stride: int. 32, or 16 / 8 where the strided layers past it become dilated (DeepLabV3+).
    """
    spec = encoder_spec(name)
    channels = image.shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"encoder {name!r} takes 1- or 3-channel images: got {channels} channels")
    x = image if channels == 3 else keras.layers.Concatenate(name="gray_to_rgb")([image] * 3)
    if name.startswith(HUB_PREFIX):
        base, features, report, mode = _hub_backbone(name, weights, output_stride)
    else:
        if output_stride < 32 and spec.hub_preset:
            raise ValueError(f"encoder {name!r} (a transformer) cannot be dilated: use output_stride 32")
        base = spec.build((*image.shape[1:3], 3))
        report = load_encoder_weights(base, name, weights)
        base = _rebuilt(base, output_stride)
        features, mode = _feature_layers(name, base), spec.preprocessing
    x = ImagenetPreprocessing(mode, dtype="float32", name="preprocess")(x) if mode else x
    strides = sorted(features)
    encoder = keras.Model(base.inputs, [features[s] for s in strides], name=ENCODER_LAYER)
    outputs = encoder(x)
    return Encoder(dict(zip(strides, outputs)), report)


def encoder_divisor(name):
    """Input height and width must be multiples of the encoder's total stride."""
    encoder_spec(name)
    return 32


def _feature_layers(name, base):
    """{stride: output} of the last layer at each stride 2..32, found on a 64x64 probe of the same architecture."""
    return {stride: base.layers[index].output for stride, index in _feature_layer_indices(name).items()}


@functools.lru_cache(maxsize=None)
def _feature_layer_indices(name):
    """{stride: index in `model.layers`} (indices, as automatic layer names differ between builds)."""
    probe = ENCODERS[name].build((64, 64, 3))
    indices = {}
    for index, layer in enumerate(probe.layers):
        shape = None if isinstance(layer.output, (list, tuple)) else layer.output.shape
        if shape is None or len(shape) != 4 or shape[1] != shape[2] or 64 % shape[1]:
            continue
        if 2 <= 64 // shape[1] <= 32:
            indices[64 // shape[1]] = index
    return indices


# Weights -----------------------------------------------------------------------------------------------------------

def keras_cache_dir():
    """Keras's cache folder for downloaded weights: `$KERAS_HOME/models`, else `~/.keras/models`."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return pathlib.Path(home) / "models"


def _online(host="storage.googleapis.com", port=443, timeout=ONLINE_PROBE_SECONDS):
    """Whether `host` answers within `timeout` seconds (name lookup included, so an offline machine never hangs)."""
    result = []

    def probe():
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result)


def imagenet_weights_path(name):
    """Local path of encoder `name`'s ImageNet file: from Keras's cache, else downloaded like Keras when online
    (never with the environment variable SEGKIT_OFFLINE set, as the test suite does).

    Raises:
        EncoderWeightsError: offline and not cached; the message names the file, where to put it and its URL.
    """
    spec = encoder_spec(name)
    if not spec.weights_file:
        raise EncoderWeightsError(f"encoder {name!r} has no keras.applications ImageNet file: set "
                                  "model.encoder_weights to a keras-hub preset folder or handle (e.g. "
                                  f"{HUB_EXAMPLE.format(name=name)})")
    cache = keras_cache_dir()
    path = cache / spec.weights_file
    if path.is_file():
        return path
    offline = os.environ.get("SEGKIT_OFFLINE")
    if offline or not _online():
        why = "SEGKIT_OFFLINE is set" if offline else "the machine is offline"
        raise EncoderWeightsError(f"ImageNet weights for encoder {name!r} not found and {why}: "
                                  f"put {spec.weights_file} in {cache} (or set KERAS_HOME), from {spec.weights_url}")
    return pathlib.Path(keras.utils.get_file(spec.weights_file, spec.weights_url, cache_dir=str(cache.parent),
                                             cache_subdir="models", file_hash=spec.file_hash))


def check_encoder_weights(model_config):
    """Before a run starts: the encoder name exists and its "imagenet" file is cached (or downloaded now)."""
    encoder, weights = model_config.get("encoder"), model_config.get("encoder_weights")
    if encoder is None:
        return
    spec = encoder_spec(encoder)
    if weights == "imagenet" and not encoder.startswith(HUB_PREFIX):
        imagenet_weights_path(encoder)
    elif weights is not None and spec.hub_preset:
        hub_preset_path(weights)


def load_encoder_weights(base, name, weights):
    """Load `weights` (None, "imagenet" or a file path) into backbone `base`; return the one-line report."""
    if weights is None:
        return f"encoder {name}: random initialisation (model.encoder_weights: null)"
    if encoder_spec(name).hub_preset and weights != "imagenet":
        count = load_hub_preset(base, name, hub_preset_path(weights), EncoderWeightsError)
        return f"encoder {name}: loaded {count}/{count} weight tensors from keras-hub preset {weights} (none skipped)"
    path = imagenet_weights_path(name) if weights == "imagenet" else pathlib.Path(weights)
    if not path.is_file():
        raise EncoderWeightsError(f"{path}: encoder weights file not found (model.encoder_weights takes imagenet, "
                                  "an .h5 / .weights.h5 file or a keras-hub preset folder)")
    if path.name.endswith(".weights.h5"):
        base.load_weights(path)
        total = len(base.weights)
        return f"encoder {name}: loaded {total}/{total} weight tensors from {path} (none skipped)"
    if path.suffix not in (".h5", ".hdf5"):
        raise EncoderWeightsError(f"{path}: encoder weights must be an .h5 or .weights.h5 file")
    return _load_h5(base, name, path)


def _load_h5(model, name, path):
    """Load a keras.applications-format (legacy) .h5 file, reporting every skipped tensor.

    As Keras does, layers with weights are paired in order when the file has as many as the model (automatic
    layer names differ between builds); otherwise by layer name. A layer whose shapes differ is skipped.
    """
    layers = [layer for layer in model.layers if layer.weights]
    try:
        with h5py.File(path, "r") as file:
            group = file["model_weights"] if "model_weights" in file else file
            entries = [(layer_name, [np.asarray(group[layer_name][w])
                                     for w in _h5_names(group[layer_name].attrs["weight_names"])])
                       for layer_name in _h5_names(group.attrs.get("layer_names", []))]
    except (OSError, KeyError) as err:
        raise EncoderWeightsError(f"{path}: not a readable keras .h5 weights file ({err})") from None
    entries = [(layer_name, arrays) for layer_name, arrays in entries if arrays]
    if len(entries) == len(layers):
        pairs = list(zip(layers, entries))
    else:
        by_name = {layer.name: layer for layer in layers}
        pairs = [(by_name.get(layer_name), (layer_name, arrays)) for layer_name, arrays in entries]
    loaded, skipped, seen = 0, [], set()
    for layer, (layer_name, arrays) in pairs:
        if layer is None:
            skipped.append(f"{layer_name} ({len(arrays)} tensors: no such layer)")
            continue
        seen.add(layer.name)
        targets = layer.trainable_weights + layer.non_trainable_weights
        shapes = [tuple(t.shape) for t in targets]
        if shapes != [a.shape for a in arrays]:
            skipped.append(f"{layer_name} (shapes {[a.shape for a in arrays]} in the file, {shapes} here)")
            continue
        for target, array in zip(targets, arrays):
            target.assign(array)
        loaded += len(arrays)
    missing = [layer.name for layer in layers if layer.name not in seen]
    total = sum(len(layer.weights) for layer in layers)
    report = f"encoder {name}: loaded {loaded}/{total} weight tensors from {path}"
    if not skipped and not missing:
        return report + " (none skipped)"
    if loaded == 0:
        raise EncoderWeightsError(f"{path}: no weights of encoder {name!r} in this file (wrong file?)")
    details = [f"skipped {', '.join(skipped)}"] if skipped else []
    details += [f"not in the file (left random): {', '.join(missing)}"] if missing else []
    return report + "; " + "; ".join(details)


def _h5_names(values):
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


# keras-hub ---------------------------------------------------------------------------------------------------------

def hub_preset_path(preset):
    """Local path of a keras-hub preset (folder or `model.weights.h5`): as given, else a Kaggle handle or preset
    name downloaded to keras-hub's cache when keras-hub is installed and the machine is online.

    Raises:
        EncoderWeightsError: not found; offline, the message says how to bring the preset folder here.
    """
    path = pathlib.Path(os.fspath(preset)).expanduser()
    if path.exists():
        return path
    if "://" not in str(preset) and len(path.parts) > 1:
        raise EncoderWeightsError(f"{path}: keras-hub preset folder not found (it holds {HUB_CONFIG} and "
                                  f"{HUB_WEIGHTS})")
    offline = os.environ.get("SEGKIT_OFFLINE")
    if offline or not _online("www.kaggle.com"):
        why = "SEGKIT_OFFLINE is set" if offline else "the machine is offline"
        raise EncoderWeightsError(
            f"keras-hub preset {preset} is not on this machine and {why}: where online, run keras_hub.models."
            f"Backbone.from_preset({str(preset)!r}).save_to_preset('<folder>'), copy the folder here and set "
            "model.encoder_weights to it")
    keras_hub()
    from keras_hub.src.utils.preset_utils import get_file  # keras-hub's own download and cache

    try:
        get_file(str(preset), HUB_CONFIG)
        return pathlib.Path(get_file(str(preset), HUB_WEIGHTS))
    except (OSError, ValueError) as err:
        raise EncoderWeightsError(f"{preset}: cannot download keras-hub preset ({str(err).splitlines()[0]})"
                                  ) from None


def _hub_backbone(name, weights, output_stride):
    """keras-hub backbone with pyramid outputs: (backbone, {stride: output}, report, preprocessing mode)."""
    hub = keras_hub()
    if output_stride != 32:
        raise ValueError(f"encoder {name!r} (keras-hub) cannot be dilated: use output_stride 32")
    preset = name[len(HUB_PREFIX):] if weights in (None, "imagenet") else os.fspath(weights)
    try:
        backbone = hub.models.Backbone.from_preset(preset, load_weights=weights is not None)
    except (OSError, ValueError, FileNotFoundError) as err:
        raise EncoderWeightsError(f"{preset}: cannot load keras-hub preset ({str(err).splitlines()[0]})") from None
    total = len(backbone.weights)
    report = (f"encoder {name}: loaded {total}/{total} weight tensors from keras-hub preset {preset} (none skipped)"
              if weights is not None else f"encoder {name}: keras-hub preset {preset} architecture, random "
              "initialisation")
    pyramid = getattr(backbone, "pyramid_outputs", None)
    if not pyramid:
        raise ValueError(f"encoder {name!r}: keras-hub backbone {type(backbone).__name__} has no pyramid outputs")
    extractor = keras.Model(backbone.inputs, pyramid)
    if None in backbone.inputs[0].shape[1:3]:
        probe = {key: value.shape for key, value in extractor(np.zeros((1, 64, 64, 3), "float32")).items()}
        height = 64
    else:
        probe, height = {key: value.shape for key, value in pyramid.items()}, backbone.inputs[0].shape[1]
    features = {height // probe[key][1]: pyramid[key] for key in pyramid}
    return extractor, features, report, _hub_preprocessing(hub, preset)


def _hub_preprocessing(hub, preset):
    """MiT presets (and others without a fixed scale) are fed ImageNet-normalised images ("torch" mode)."""
    try:
        converter = hub.layers.ImageConverter.from_preset(preset)
    except (ValueError, OSError, FileNotFoundError):
        return "torch"
    return "torch" if converter.scale is not None else "scale"


# Dilation ----------------------------------------------------------------------------------------------------------

STRIDED = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.SeparableConv2D, keras.layers.MaxPooling2D,
           keras.layers.AveragePooling2D)


def dilation_changes(base, output_stride):
    """Config changes turning the strided layers past `output_stride` into dilated ones (DeepLab's atrous trick).

    Strides are followed through the graph: a layer that would take a tensor past `output_stride` gets stride 1
    and doubles the dilation rate of everything after it; convolutions with kernels above 1 there get that rate,
    and a ZeroPadding2D feeding a "valid" convolution pads it to keep the size ("same").

    Raises:
        ValueError: the backbone downsamples inside a nested model, which cannot be rewritten.
    """
    state, changes = {}, {}
    for tensor in base.inputs:
        state[id(tensor)] = (1, 1)
    for depth in sorted(base._nodes_by_depth, reverse=True):
        for node in base._nodes_by_depth[depth]:
            if node.is_input:
                continue
            layer = node.operation
            stride, rate = max((state.get(id(t), (1, 1)) for t in node.input_tensors), default=(1, 1))
            config = layer.get_config()
            layer_stride = _first(config.get("strides", 1)) if isinstance(layer, STRIDED) else 1
            if isinstance(layer, keras.Model):
                inner = [_first(sub.get_config().get("strides", 1)) for sub in layer.layers if isinstance(sub, STRIDED)]
                layer_stride = int(np.prod(inner or [1]))
                if stride * layer_stride > output_stride:
                    raise ValueError(f"{base.name} downsamples inside {layer.name}: it cannot be dilated; "
                                     "use output_stride 32")
            change = {}
            if layer_stride > 1 and stride * layer_stride > output_stride:
                change["strides"] = (1, 1)
                if isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
                    change["padding"] = "same"
                out = (stride, rate * layer_stride)
            else:
                out = (stride * layer_stride, rate)
            if "dilation_rate" in config and _first(config["kernel_size"]) > 1 and (rate > 1 or change):
                change["dilation_rate"] = (rate, rate)
            if change:
                changes[layer.name] = change
            for tensor in node.outputs:
                state[id(tensor)] = out
    for layer in base.layers:
        if isinstance(layer, keras.layers.ZeroPadding2D):
            consumer = layer._outbound_nodes[0].operation if layer._outbound_nodes else None
            if consumer is not None and consumer.name in changes and consumer.get_config().get("padding") == "valid":
                dilation = _first(changes[consumer.name].get("dilation_rate", 1))
                pad = dilation * (_first(consumer.get_config()["kernel_size"]) - 1) // 2
                changes[layer.name] = {"padding": ((pad, pad), (pad, pad))}
    return changes


def _rebuilt(base, output_stride):
    """A copy of `base` (with its weights) whose batch norms run the fused kernel (`models.blocks.rebuilt_layer`)
    and whose strides past `output_stride` are dilations."""
    changes = dilation_changes(base, output_stride) if output_stride < 32 else {}

    clone = keras.models.clone_model(base, clone_function=lambda layer: rebuilt_layer(layer, changes.get(layer.name)))
    for layer in clone.layers:
        if layer.weights:
            layer.set_weights(base.get_layer(layer.name).get_weights())
    return clone


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


# Transfer ----------------------------------------------------------------------------------------------------------

PLAIN_ENCODER_PREFIXES = {"unet": ("enc", "bottleneck")}
"""Layers forming the encoder of models without a nested encoder, by model name."""


def encoder_layers(model):
    """The layers of `model`'s encoder: its nested "encoder" model, or the contracting path of a plain U-Net."""
    try:
        return model.get_layer(ENCODER_LAYER).layers
    except ValueError:
        prefixes = PLAIN_ENCODER_PREFIXES.get(model.name)
        if prefixes is None:
            raise ValueError(f"model {model.name!r} has no encoder to transfer or freeze: use model.encoder "
                             f"or one of {', '.join(PLAIN_ENCODER_PREFIXES)}") from None
        return [layer for layer in model.layers if layer.name.startswith(prefixes)]


def load_encoder_from(model, run_dir):
    """Copy the encoder weights of a previous run's model.keras (safe mode) into `model`; return the report."""
    path = pathlib.Path(run_dir)
    path = path / "model.keras" if path.is_dir() else path
    if not path.is_file():
        raise EncoderWeightsError(f"{path}: model.encoder_from needs a run folder holding model.keras")
    source = keras.saving.load_model(path, compile=False, safe_mode=True)
    source_layers = {layer.name: layer for layer in encoder_layers(source)}
    loaded, total, skipped = 0, 0, []
    for layer in encoder_layers(model):
        if not layer.weights:
            continue
        total += len(layer.weights)
        other = source_layers.get(layer.name)
        if other is None or [w.shape for w in other.weights] != [w.shape for w in layer.weights]:
            skipped.append(f"{layer.name} ({'missing' if other is None else 'other shapes'} in {path})")
            continue
        layer.set_weights(other.get_weights())
        loaded += len(layer.weights)
    if loaded == 0:
        raise EncoderWeightsError(f"{path}: no encoder layer matches this model's encoder (another encoder?)")
    report = f"encoder: loaded {loaded}/{total} weight tensors from {path}"
    return report + ("; skipped " + ", ".join(skipped) if skipped else " (none skipped)")
