"""Receptive-field arithmetic (Dumoulin & Visin, 2016; Araujo et al., 2019, "Computing Receptive Fields of CNNs").

Each tensor carries (receptive field r, jump j, start): r is the RF size in input pixels, j the
distance in input pixels between adjacent units (the output stride), and start the input coordinate
of the first unit's RF centre (pixel centres at 0.5, 1.5, ...). A layer with kernel k, stride s,
dilation d (effective kernel k' = d (k - 1) + 1) and left padding p maps them to
r + (k' - 1) j, j s, start + ((k' - 1) / 2 - p) j. A transposed convolution divides the jump by s
and adds (ceil(k' / s) - 1) j, the most input units one output reads. Branches merge by keeping
the input with the largest receptive field (on the finest input's grid). A layer with `attends_globally`
(self-attention) lets every output read the whole input, keeping the grid. The arithmetic follows the height
axis (square kernels).
"""
import math

import keras
import numpy as np
import pandas as pd

from models.layers import BedOfNailsUnpooling2D, MaxPoolingWithArgmax2D, MaxUnpooling2D, ResizeLike

COLUMNS = ["layer", "type", "kernel", "stride", "dilation", "output_size", "jump", "receptive_field", "start"]


class _Field:
    def __init__(self, size, jump, start):
        self.size, self.jump, self.start = size, jump, start


def iter_nodes(model):
    """Yield `(layer, node)` for every call in the graph, in topological order, descending into nested models."""
    for node in _call_nodes(model):
        if isinstance(node.operation, keras.Model):
            yield from iter_nodes(node.operation)
        else:
            yield node.operation, node


def _call_nodes(model):
    graph = model._functional if isinstance(model, keras.Sequential) else model  # a built Sequential's graph
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        yield from (node for node in graph._nodes_by_depth[depth] if not node.is_input)


def receptive_field_table(model):
    """Return one row per layer call with its kernel, stride, dilation, output size, jump, RF size and start.

    For upsampling layers (transposed convolutions, UpSampling2D, unpooling) `stride` is the upsampling
    factor, which divides the jump.

    Args:
        model: keras.Model. A functional model (nested functional models are expanded).

    Example:
    >>> from models.registry import get_model
    >>> table = receptive_field_table(get_model("baseline", (32, 32, 1), 2, num_layers=2, filters=4))
    >>> int(table["receptive_field"].iloc[-1])
    5
    """
    rows = []
    _propagate(model, [_Field(1, 1, 0.5) for _ in model.inputs], rows)
    return pd.DataFrame(rows, columns=COLUMNS)


def theoretical_receptive_field(model):
    """Return the receptive-field size (pixels) of the model's first output, or math.inf when unbounded.

    It is unbounded when a global pooling sees an input of unknown size.
    """
    size = _propagate(model, [_Field(1, 1, 0.5) for _ in model.inputs], [])[0].size
    return size if math.isinf(size) else int(math.ceil(size))


def empirical_receptive_field(model, input_shape=None):
    """Measure the receptive field of the centre output pixel with impulse responses, on any backend.

    A copy of the model gets all kernels set to positive constants, biases and shifts to zero and batch
    norm to identity, so no activation can cancel a signal. Impulses are fed at every pixel of the
    input row and column through that pixel; the RF size is the widest span of impulse positions that
    change it (clipped by the image borders). Models that offset their input (e.g. a Rescaling with
    offset) are not supported.

    Args:
        model: keras.Model. The model to probe (it is not modified).
        input_shape: tuple. (height, width, channels) to probe at. Defaults to the model's input shape.
    """
    shape = tuple(input_shape or model.input_shape[1:])
    probe = keras.models.clone_model(model, input_tensors=keras.Input(shape=shape))
    for variable in probe.weights:
        variable.assign(_probe_value(variable))
    height, width, channels = shape
    out_height, out_width = probe.output_shape[1:3]
    out_y, out_x = out_height // 2, out_width // 2
    center_y, center_x = int((out_y + 0.5) * height / out_height), int((out_x + 0.5) * width / out_width)
    impulses = np.zeros((height + width, height, width, channels), dtype="float32")
    impulses[np.arange(height), np.arange(height), center_x] = 1.0
    impulses[height + np.arange(width), center_y, np.arange(width)] = 1.0
    baseline = keras.ops.convert_to_numpy(probe(np.zeros((1, *shape), dtype="float32"), training=False))
    outputs = keras.ops.convert_to_numpy(probe(impulses, training=False))
    changed = np.any(outputs[:, out_y, out_x] != baseline[:, out_y, out_x], axis=-1)
    spans = [np.flatnonzero(part) for part in (changed[:height], changed[height:])]
    return max(int(span[-1] - span[0] + 1) if span.size else 0 for span in spans)


def _probe_value(variable):
    shape = tuple(variable.shape)
    if "kernel" in variable.name:
        return np.full(shape, 1.0 / np.prod(shape[:-1]), dtype=variable.dtype)
    if variable.name in ("gamma", "moving_variance"):
        return np.ones(shape, dtype=variable.dtype)
    return np.zeros(shape, dtype=variable.dtype)


def _propagate(model, input_fields, rows):
    fields = {id(tensor): field for tensor, field in zip(model.inputs, input_fields)}
    for node in _call_nodes(model):
        inputs = [fields[id(tensor)] for tensor in node.input_tensors]
        if isinstance(node.operation, keras.Model):
            outputs = _propagate(node.operation, inputs, rows)
        else:
            field, row = _layer_field(node.operation, node, inputs)
            rows.append(row)
            outputs = [field] * len(node.outputs)
        fields.update((id(tensor), field) for tensor, field in zip(node.outputs, outputs))
    return [fields[id(tensor)] for tensor in model.outputs]


def _layer_field(layer, node, inputs):
    config = layer.get_config() if hasattr(layer, "get_config") else {}
    in_size = node.input_tensors[0].shape[1] if len(node.input_tensors[0].shape) == 4 else None
    out_shape = node.outputs[0].shape
    kernel, stride, dilation = 1, 1, 1
    # Merges keep the largest receptive field, on the grid of the finest input (a broadcast global-pooling
    # branch, e.g. squeeze-and-excitation, has no grid of its own).
    field, grid = max(inputs, key=lambda item: item.size), min(inputs, key=lambda item: item.jump)
    size, jump, start = field.size, grid.jump, grid.start

    if isinstance(layer, keras.layers.Conv2DTranspose):
        kernel, stride, dilation = config["kernel_size"][0], config["strides"][0], config["dilation_rate"][0]
        effective = dilation * (kernel - 1) + 1
        pad = max(effective - stride, 0) // 2 if config["padding"] == "same" else 0
        size += (math.ceil(effective / stride) - 1) * jump
        jump /= stride
        start += (pad - (effective - 1) / 2) * jump
    elif isinstance(layer, (keras.layers.UpSampling2D, MaxUnpooling2D, BedOfNailsUnpooling2D)):
        stride = _first(config.get("size") or config.get("pool_size"))
        if config.get("interpolation", "nearest") != "nearest":
            size += jump
        jump /= stride
        start -= (stride - 1) / 2 * jump
    elif "kernel_size" in config or "pool_size" in config or isinstance(layer, MaxPoolingWithArgmax2D):
        kernel = _first(config.get("kernel_size") or config.get("pool_size"))
        stride = _first(config.get("strides") or kernel)
        dilation = _first(config.get("dilation_rate", 1))
        effective = dilation * (kernel - 1) + 1
        pad = _same_padding(in_size, effective, stride) if config.get("padding", "valid") == "same" else 0
        size += (effective - 1) * jump
        start += ((effective - 1) / 2 - pad) * jump
        jump *= stride
    elif isinstance(layer, ResizeLike):
        first, reference = inputs
        size = first.size + (first.jump if config["interpolation"] != "nearest" else 0)
        jump, start = reference.jump, reference.start
    elif getattr(layer, "attends_globally", False):
        kernel = in_size
        size = math.inf if in_size is None else size + (in_size - 1) * jump
    elif type(layer).__name__.startswith("Global"):
        kernel = in_size
        size = math.inf if in_size is None else size + (in_size - 1) * jump
        jump = math.inf if in_size is None else jump * in_size
    elif isinstance(layer, keras.layers.ZeroPadding2D):
        start -= config["padding"][0][0] * jump
    elif isinstance(layer, keras.layers.Cropping2D):
        start += config["cropping"][0][0] * jump

    row = {
        "layer": layer.name,
        "type": type(layer).__name__,
        "kernel": kernel,
        "stride": stride,
        "dilation": dilation,
        "output_size": out_shape[1] if len(out_shape) == 4 else None,
        "jump": jump,
        "receptive_field": size,
        "start": start,
    }
    return _Field(size, jump, start), row


def _first(value):
    return value[0] if isinstance(value, (tuple, list)) else value


def _same_padding(in_size, effective, stride):
    remainder = stride if in_size is None or in_size % stride == 0 else in_size % stride
    return max(effective - remainder, 0) // 2
