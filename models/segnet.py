"""SegNet (Badrinarayanan et al., 2017, "SegNet: A Deep Convolutional Encoder-Decoder Architecture")."""
import keras

from models.blocks import check_input_size, conv_bn_relu, segmentation_output
from models.layers import MaxPoolingWithArgmax2D, MaxUnpooling2D


def segnet_divisor(depth=5):
    """Height and width of a SegNet input must be multiples of 2**depth."""
    return 2**depth


def build_segnet(input_shape, num_classes, depth=5, base_filters=64, batch_norm=True, activation=None):
    """Build a SegNet whose decoder max-unpools with the encoder's pooling indices.

    The encoder is VGG16-like (2, 2, 3, 3, 3 convolutions per level, filters doubling up to
    8 * base_filters); the decoder mirrors it, its last convolution per level reducing the channels
    to those of the next level.

    Args:
        input_shape: tuple. (height, width, channels); height and width may be None.
        num_classes: int. Number of output channels (logits).
        depth: int. Number of pooling levels. Defaults to 5 (as in the paper).
        base_filters: int. Filters of the first level. Defaults to 64.
        batch_norm: bool. Batch normalisation after each convolution. Defaults to True.
        activation: str. Output activation, e.g. "softmax"; None returns logits. Defaults to None.

    Example:
    >>> build_segnet((32, 32, 1), num_classes=3, depth=2, base_filters=4).output_shape
    (None, 32, 32, 3)
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1: got {depth}")
    check_input_size(input_shape, segnet_divisor(depth), f"segnet with depth {depth}")
    widths = [base_filters * 2 ** min(level, 3) for level in range(depth)]
    convs = [2 if level < 2 else 3 for level in range(depth)]

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    switches = []
    for level in range(depth):
        for index in range(convs[level]):
            x = conv_bn_relu(x, widths[level], batch_norm=batch_norm, name=f"enc{level}_{index}")
        x, indices = MaxPoolingWithArgmax2D(2, name=f"enc{level}_pool")(x)
        switches.append(indices)

    for level in reversed(range(depth)):
        x = MaxUnpooling2D(2, name=f"dec{level}_unpool")([x, switches[level]])
        for index in range(convs[level]):
            last = index == convs[level] - 1
            filters = widths[max(level - 1, 0)] if last else widths[level]
            x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"dec{level}_{index}")

    logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)
    return keras.Model(inputs, segmentation_output(logits, activation), name="segnet")
