"""U-Net (Ronneberger et al., 2015, "U-Net: Convolutional Networks for Biomedical Image Segmentation")."""
import keras

from models.blocks import check_input_size, conv_bn_relu, segmentation_output
from models.layers import ResizeLike

UPSAMPLING_MODES = ("transpose", "bilinear", "nearest")


def unet_divisor(depth=4):
    """Height and width of a U-Net input must be multiples of 2**depth."""
    return 2**depth


def build_unet(
    input_shape,
    num_classes,
    depth=4,
    base_filters=64,
    batch_norm=True,
    dropout=0.0,
    upsampling="transpose",
    activation=None,
):
    """Build a U-Net with same-padded convolutions, so the output has the input's size.

    Args:
        input_shape: tuple. (height, width, channels); height and width may be None.
        num_classes: int. Number of output channels (logits).
        depth: int. Number of 2x downsamplings. Defaults to 4 (as in the paper).
        base_filters: int. Filters of the first level, doubled at each level. Defaults to 64.
        batch_norm: bool. Batch normalisation after each convolution. Defaults to True.
        dropout: float. Dropout rate at the end of the contracting path. Defaults to 0.0.
        upsampling: str. "transpose" (2x2 up-convolution), or "bilinear" / "nearest" resizing
            followed by a 3x3 convolution. Defaults to "transpose".
        activation: str. Output activation, e.g. "softmax"; None returns logits. Defaults to None.

    Example:
    >>> model = build_unet((64, 64, 3), num_classes=2, depth=2, base_filters=4)
    >>> model.output_shape
    (None, 64, 64, 2)
    """
    if upsampling not in UPSAMPLING_MODES:
        raise ValueError(f"upsampling must be one of {UPSAMPLING_MODES}: got {upsampling!r}")
    if depth < 1:
        raise ValueError(f"depth must be at least 1: got {depth}")
    check_input_size(input_shape, unet_divisor(depth), f"unet with depth {depth}")

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for level in range(depth):
        filters = base_filters * 2**level
        x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"enc{level}_a")
        x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"enc{level}_b")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)

    filters = base_filters * 2**depth
    x = conv_bn_relu(x, filters, batch_norm=batch_norm, name="bottleneck_a")
    x = conv_bn_relu(x, filters, batch_norm=batch_norm, name="bottleneck_b")
    if dropout:
        x = keras.layers.Dropout(dropout, name="bottleneck_dropout")(x)

    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        if upsampling == "transpose":
            x = keras.layers.Conv2DTranspose(filters, 2, strides=2, name=f"dec{level}_upconv")(x)
        else:
            if upsampling == "nearest":
                x = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"dec{level}_upsample")(x)
            else:
                x = ResizeLike("bilinear", name=f"dec{level}_upsample")([x, skips[level]])
            x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"dec{level}_upconv")
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([skips[level], x])
        x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"dec{level}_a")
        x = conv_bn_relu(x, filters, batch_norm=batch_norm, name=f"dec{level}_b")

    logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)
    return keras.Model(inputs, segmentation_output(logits, activation), name="unet")
