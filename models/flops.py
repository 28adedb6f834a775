"""Analytic FLOP count of a built model: 2 x the multiply-accumulates of its convolution and dense layers."""
import math

import keras

from models.receptive_field import iter_nodes


def count_macs(model):
    """Return the multiply-accumulates per image of every conv, transposed-conv, depthwise, separable and dense call.

    Computed from layer configs and the static output shapes of each call; batch norm, activations,
    pooling, resizing and additions are not counted. A composite layer with a `count_macs(input_shape)` method
    (a transformer block) counts itself.

    Args:
        model: keras.Model. A model built with a fixed input height and width.

    Example:
    >>> from models.registry import get_model
    >>> count_macs(get_model("baseline", (8, 8, 1), 2, num_layers=1, filters=4))  # 8*8*(9*1*4 + 4*2)
    2816
    """
    return sum(_layer_macs(layer, node) for layer, node in iter_nodes(model))


def count_flops(model):
    """Return the FLOPs per image, counted as 2 * `count_macs(model)`."""
    return 2 * count_macs(model)


def _layer_macs(layer, node):
    weighted = (
        keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D, keras.layers.Conv1DTranspose,
        keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose, keras.layers.DepthwiseConv1D,
        keras.layers.DepthwiseConv2D, keras.layers.SeparableConv1D, keras.layers.SeparableConv2D, keras.layers.Dense,
    )
    if not isinstance(layer, weighted) and not hasattr(layer, "count_macs"):
        return 0
    in_shape, out_shape = node.input_tensors[0].shape, node.outputs[0].shape
    if None in in_shape[1:] or None in out_shape[1:]:
        raise ValueError(
            f"counting FLOPs needs a model built with a fixed input size: {layer.name} has shape {out_shape}"
        )
    if hasattr(layer, "count_macs"):
        return layer.count_macs(in_shape)
    in_channels, out_channels = in_shape[-1], out_shape[-1]
    out_positions, in_positions = math.prod(out_shape[1:-1]), math.prod(in_shape[1:-1])
    if isinstance(layer, keras.layers.Dense):
        return out_positions * in_channels * out_channels
    window = math.prod(layer.kernel_size)
    if isinstance(layer, (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)):
        return in_positions * in_channels * window * out_channels
    if isinstance(layer, (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)):
        return out_positions * out_channels * window
    if isinstance(layer, (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)):
        depthwise = in_channels * layer.depth_multiplier
        return out_positions * depthwise * (window + out_channels)
    return out_positions * in_channels // layer.groups * window * out_channels
