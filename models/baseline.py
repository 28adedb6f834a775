"""Naive full-resolution baseline: a stack of same-padded convolutions without any downsampling.

The fully convolutional starting point of Long et al. (2015) before pooling is added: the receptive field
grows only linearly with depth, which is what the encoder-decoder models improve on.
"""
import keras

from models.blocks import check_input_size, conv_bn_relu, segmentation_output


def baseline_divisor():
    """The baseline never downsamples, so any height and width work."""
    return 1


def build_baseline(input_shape, num_classes, num_layers=6, filters=32, kernel_size=3, batch_norm=True, activation=None):
    """Build a full-resolution conv stack; the receptive field is 1 + num_layers * (kernel_size - 1).

    Args:
        input_shape: tuple. (height, width, channels); height and width may be None.
        num_classes: int. Number of output channels (logits).
        num_layers: int. Number of conv-BN-ReLU layers before the 1x1 classifier. Defaults to 6.
        filters: int. Channels of every hidden layer. Defaults to 32.
        kernel_size: int. Square kernel size. Defaults to 3.
        batch_norm: bool. Batch normalisation after each convolution. Defaults to True.
        activation: str. Output activation, e.g. "softmax"; None returns logits. Defaults to None.

    Example:
    >>> build_baseline((None, None, 1), num_classes=2, num_layers=2, filters=4).output_shape
    (None, None, None, 2)
    """
    check_input_size(input_shape, baseline_divisor(), "baseline")
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index in range(num_layers):
        x = conv_bn_relu(x, filters, kernel_size, batch_norm=batch_norm, name=f"layer{index}")
    logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)
    return keras.Model(inputs, segmentation_output(logits, activation), name="baseline")
