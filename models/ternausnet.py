"""TernausNet (Iglovikov & Shvets, 2018, "TernausNet: U-Net with VGG11 Encoder Pre-Trained on ImageNet")."""
import keras

from models.blocks import check_input_size, segmentation_output

VGG11_BLOCKS = (1, 1, 2, 2, 2)


def ternausnet_divisor():
    """Height and width of a TernausNet input must be multiples of 32 (five 2x poolings)."""
    return 32


def build_ternausnet(input_shape, num_classes, base_filters=64, activation=None):
    """Build TernausNet-11: a U-Net whose encoder is VGG11 and whose decoder upsamples with 3x3 transposed convs.

    Encoder convolutions are named like keras.applications VGG ("block3_conv2", ...) so pretrained
    VGG weights can be loaded by name through `get_model(..., weights_path=...)`.

    Args:
        input_shape: tuple. (height, width, channels); height and width may be None.
        num_classes: int. Number of output channels (logits).
        base_filters: int. Filters of the first VGG11 block (64 in the paper); the decoder uses
            multiples of base_filters // 2. Defaults to 64.
        activation: str. Output activation, e.g. "softmax"; None returns logits. Defaults to None.

    Example:
    >>> build_ternausnet((64, 64, 3), num_classes=2, base_filters=4).output_shape
    (None, 64, 64, 2)
    """
    check_input_size(input_shape, ternausnet_divisor(), "ternausnet")
    decoder_filters = max(base_filters // 2, 1)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    skips = []
    for block, convs in enumerate(VGG11_BLOCKS, start=1):
        filters = base_filters * 2 ** min(block - 1, 3)
        for index in range(1, convs + 1):
            x = _conv_relu(x, filters, f"block{block}_conv{index}")
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)

    x = _decoder_block(x, 16 * decoder_filters, 8 * decoder_filters, "center")
    for level, (middle, out) in zip((5, 4, 3, 2), ((16, 8), (16, 4), (8, 2), (4, 1))):
        x = keras.layers.Concatenate(name=f"dec{level}_concat")([x, skips[level - 1]])
        x = _decoder_block(x, middle * decoder_filters, out * decoder_filters, f"dec{level}")
    x = keras.layers.Concatenate(name="dec1_concat")([x, skips[0]])
    x = _conv_relu(x, decoder_filters, "dec1_conv")
    logits = keras.layers.Conv2D(num_classes, 1, dtype="float32", name="logits")(x)
    return keras.Model(inputs, segmentation_output(logits, activation), name="ternausnet")


def _conv_relu(x, filters, name):
    return keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=name)(x)


def _decoder_block(x, middle_filters, out_filters, name):
    x = _conv_relu(x, middle_filters, f"{name}_conv")
    return keras.layers.Conv2DTranspose(
        out_filters, 3, strides=2, padding="same", activation="relu", name=f"{name}_upconv"
    )(x)
