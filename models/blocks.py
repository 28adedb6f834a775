"""Shared building blocks: conv-BN-ReLU, segmentation head, input-size check and local weight loading."""
import os

import keras


BN_MOMENTUM = 0.9
"""Batch-norm moving-average momentum (PyTorch's default). Keras's 0.99 needs hundreds of steps to forget its
initial statistics, which small segmentation datasets (a few steps per epoch) never reach: validation then runs
on stale statistics."""


def conv_bn_relu(x, filters, kernel_size=3, strides=1, dilation_rate=1, batch_norm=True, name=None):
    """Apply a same-padded convolution, optional batch norm, and ReLU.

    Args:
        x: KerasTensor. Input feature map.
        filters: int. Number of output channels.
        kernel_size: int. Square kernel size. Defaults to 3.
        strides: int. Convolution stride. Defaults to 1.
        dilation_rate: int. Atrous rate. Defaults to 1.
        batch_norm: bool. Whether to add batch normalisation (the conv then has no bias). Defaults to True.
        name: str. Prefix for the layer names. Defaults to None.
    """
    def layer_name(suffix):
        return f"{name}_{suffix}" if name else None

    x = keras.layers.Conv2D(
        filters, kernel_size, strides=strides, dilation_rate=dilation_rate, padding="same",
        use_bias=not batch_norm, kernel_initializer="he_normal", name=layer_name("conv"),
    )(x)
    if batch_norm:
        x = keras.layers.BatchNormalization(momentum=BN_MOMENTUM, name=layer_name("bn"))(x)
    return keras.layers.ReLU(name=layer_name("relu"))(x)


def segmentation_output(x, activation=None):
    """Optionally apply a float32 activation (e.g. "softmax") to float32 logits.

    Args:
        x: KerasTensor. Logits of shape (batch, H, W, num_classes).
        activation: str. Activation for probabilities, or None to return logits. Defaults to None.
    """
    if activation is None:
        return x
    return keras.layers.Activation(activation, dtype="float32", name="probabilities")(x)


def check_input_size(input_shape, divisor, description):
    """Raise ValueError when a fixed height or width is not a multiple of `divisor`.

    Args:
        input_shape: tuple. (height, width, channels); height and width may be None.
        divisor: int. Required divisor of height and width.
        description: str. Model description used in the message, e.g. "unet with depth 4".
    """
    if len(input_shape) != 3 or input_shape[-1] is None:
        raise ValueError(f"input_shape must be (height, width, channels) with known channels: got {input_shape}")
    height, width = input_shape[:2]
    bad = [size for size in (height, width) if size is not None and size % divisor]
    if not bad:
        return
    options = sorted({valid for size in bad for valid in _nearest_multiples(size, divisor)})
    nearest = " and ".join(filter(None, [", ".join(map(str, options[:-1])), str(options[-1])]))
    raise ValueError(
        f"{description} needs height and width divisible by {divisor}: got {height}x{width}; "
        f"nearest valid {'sizes are' if len(options) > 1 else 'size is'} {nearest}"
    )


def _nearest_multiples(size, divisor):
    lower = size // divisor * divisor
    return [valid for valid in (lower, lower + divisor) if valid > 0]


def load_pretrained(model, weights_path):
    """Load local pretrained weights into `model`, skipping layers whose shapes do not match.

    Legacy `.h5` files (e.g. keras.applications "notop" weights) are matched by layer name;
    Keras `.weights.h5` files by topology.

    Args:
        model: keras.Model. The model to load into.
        weights_path: str. Path of a local weights file; nothing is downloaded.
    """
    path = os.fspath(weights_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights_path {path!r} does not exist: pretrained weights are only read from local files"
        )
    if path.endswith(".weights.h5"):
        model.load_weights(path, skip_mismatch=True)
    elif path.endswith((".h5", ".hdf5")):
        model.load_weights(path, skip_mismatch=True, by_name=True)
    else:
        raise ValueError(f"weights_path must end with .weights.h5, .h5 or .hdf5: got {path!r}")
