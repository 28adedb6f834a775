"""FCN-32s, FCN-16s and FCN-8s.

Long, Shelhamer & Darrell, 2015, "Fully Convolutional Networks for Semantic Segmentation".
"""
import keras

from models.blocks import check_input_size, segmentation_output
from models.layers import BilinearUpsampling

VGG16_BLOCKS = (2, 2, 3, 3, 3)


def fcn_divisor():
    """Height and width of an FCN input must be multiples of 32 (five 2x poolings)."""
    return 32


def build_fcn(
    input_shape, num_classes, output_stride=8, base_filters=64, fc_filters=None, dropout=0.5, activation=None
):
    """Build FCN-32s, FCN-16s or FCN-8s on a VGG16-style encoder.

    The encoder's convolutions are named like keras.applications.VGG16 ("block1_conv1", ...), so VGG16
    weights can be loaded by name. The dense layers become convolutions: fc6 (7x7) and fc7 (1x1).
    Class scores at strides 32, 16 and 8 are fused by summation after 2x transposed-conv upsampling,
    and a final transposed convolution upsamples to the input size; all upsampling kernels start bilinear.

    Args:
        input_shape: tuple. (height, width, channels); height and width may be None.
        num_classes: int. Number of output channels (logits).
        output_stride: int. Stride of the finest fused scores: 32, 16 or 8. Defaults to 8.
        base_filters: int. Filters of the first VGG block (64 in VGG16). Defaults to 64.
        fc_filters: int. Filters of fc6 and fc7. Defaults to 64 * base_filters (4096 for VGG16).
        dropout: float. Dropout after fc6 and fc7. Defaults to 0.5.
        activation: str. Output activation, e.g. "softmax"; None returns logits. Defaults to None.

    Example:
    >>> build_fcn((64, 64, 3), num_classes=2, output_stride=16, base_filters=4).output_shape
    (None, 64, 64, 2)
    """
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride must be 8, 16 or 32: got {output_stride}")
    name = f"fcn{output_stride}s"
    check_input_size(input_shape, fcn_divisor(), name)
    fc_filters = fc_filters or 64 * base_filters

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    pools = {}
    for block, convs in enumerate(VGG16_BLOCKS, start=1):
        filters = base_filters * 2 ** min(block - 1, 3)
        for index in range(1, convs + 1):
            x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"block{block}_conv{index}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        pools[2**block] = x

    x = keras.layers.Conv2D(fc_filters, 7, padding="same", activation="relu", name="fc6")(x)
    x = keras.layers.Dropout(dropout, name="drop6")(x)
    x = keras.layers.Conv2D(fc_filters, 1, activation="relu", name="fc7")(x)
    x = keras.layers.Dropout(dropout, name="drop7")(x)
    scores = keras.layers.Conv2D(num_classes, 1, name="score_fr")(x)

    stride = 32
    while stride > output_stride:
        stride //= 2
        scores = _upsample(scores, num_classes, 2, name=f"upscore_to{stride}")
        score_pool = keras.layers.Conv2D(num_classes, 1, kernel_initializer="zeros", name=f"score_pool{stride}")
        skip = score_pool(pools[stride])
        scores = keras.layers.Add(name=f"fuse_pool{stride}")([scores, skip])

    logits = _upsample(scores, num_classes, stride, name="logits", dtype="float32")
    return keras.Model(inputs, segmentation_output(logits, activation), name=name)


def build_fcn32s(input_shape, num_classes, base_filters=64, fc_filters=None, dropout=0.5, activation=None):
    """FCN-32s: `build_fcn` with output_stride=32 (no skip fusion)."""
    return build_fcn(input_shape, num_classes, 32, base_filters, fc_filters, dropout, activation)


def build_fcn16s(input_shape, num_classes, base_filters=64, fc_filters=None, dropout=0.5, activation=None):
    """FCN-16s: `build_fcn` with output_stride=16 (fuses pool4 scores)."""
    return build_fcn(input_shape, num_classes, 16, base_filters, fc_filters, dropout, activation)


def build_fcn8s(input_shape, num_classes, base_filters=64, fc_filters=None, dropout=0.5, activation=None):
    """FCN-8s: `build_fcn` with output_stride=8 (fuses pool4 and pool3 scores)."""
    return build_fcn(input_shape, num_classes, 8, base_filters, fc_filters, dropout, activation)


def _upsample(x, num_classes, factor, name, dtype=None):
    return keras.layers.Conv2DTranspose(
        num_classes, 2 * factor, strides=factor, padding="same", use_bias=False,
        kernel_initializer=BilinearUpsampling(), dtype=dtype, name=name,
    )(x)
