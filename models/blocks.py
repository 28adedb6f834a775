"""Shared building blocks: conv-BN-ReLU (with a fused batch norm), segmentation head, input-size check and local
weight loading."""
import os

import keras
from keras import ops


BN_MOMENTUM = 0.9
"""Batch-norm moving-average momentum (PyTorch's default). Keras's 0.99 needs hundreds of steps to forget its
initial statistics, which small segmentation datasets (a few steps per epoch) never reach: validation then runs
on stale statistics."""


@keras.saving.register_keras_serializable(package="segkit")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Batch normalisation (Ioffe & Szegedy, 2015) that runs as one fused kernel on the TensorFlow backend.

    Same arguments, variables and saved weights as `keras.layers.BatchNormalization`, and the same outputs, moving
    statistics and gradients to float32 rounding. Keras 3 writes batch norm as separate ops (a cast, the moments,
    the normalisation and, in training, their gradients: about ten passes over the feature map); on TensorFlow
    this layer calls the fused kernel (`FusedBatchNormV3`, oneDNN on x86) forward and backward, which Grappler
    also fuses with the following ReLU (`_MklNativeFusedBatchNormEx` in a training profile). The 7.8 M-parameter
    U-Net on 2 CPU cores: training 1.2x and inference 1.1x the images/s in float32, 1.7-1.8x both
    under mixed_bfloat16 (`benchmarks/speed.py --lever fused_bn`).
    Other backends, rank other than 4, a channel axis other than the last, float64, masks, renorm,
    `synchronized=True` and epsilon below 1.001e-5 (the kernel's minimum) take the Keras code path.

    Example:
    >>> layer = FusedBatchNormalization(momentum=0.9)
    >>> tuple(layer(keras.ops.ones((2, 4, 4, 3)), training=True).shape)
    (2, 4, 4, 3)
    """

    def call(self, inputs, training=None, mask=None):
        if not self._fusable(inputs, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf  # the one deliberate TensorFlow call in models/: its fused kernel (see above)

        x = tf.convert_to_tensor(inputs)
        ones = tf.ones(self.moving_mean.shape, "float32")
        scale = tf.cast(self.gamma, "float32") if self.scale else ones
        offset = tf.cast(self.beta, "float32") if self.center else tf.zeros_like(ones)
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, epsilon=self.epsilon, data_format="NHWC", is_training=True)
            # The kernel returns the unbiased (n / (n - 1)) batch variance; Keras averages the biased one.
            count = tf.cast(tf.reduce_prod(tf.shape(x)[:-1]), "float32")
            variance = variance * tf.maximum(count - 1.0, 1.0) / tf.maximum(count, 1.0)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, scale, offset, mean=tf.cast(self.moving_mean, "float32"),
                variance=tf.cast(self.moving_variance, "float32"), epsilon=self.epsilon, data_format="NHWC",
                is_training=False)
        return ops.cast(outputs, self.compute_dtype)

    def _fusable(self, inputs, mask):
        return (keras.backend.backend() == "tensorflow" and mask is None and len(inputs.shape) == 4
                and self.axis in (-1, 3) and not self.renorm and not self.synchronized and self.epsilon >= 1.001e-5
                and keras.backend.standardize_dtype(inputs.dtype) in ("float32", "bfloat16", "float16")
                and self.moving_mean.dtype == "float32")


def rebuilt_layer(layer, changes=None):
    """`layer` rebuilt from its config updated with `changes`, as a `FusedBatchNormalization` where it is Keras's
    own batch norm: the `clone_function` that gives keras.applications backbones the fused kernel (a U-Net on
    ResNet50 trains 1.1-1.2x faster, docs/speed.md)."""
    cls = FusedBatchNormalization if type(layer) is keras.layers.BatchNormalization else layer.__class__
    return cls.from_config({**layer.get_config(), **(changes or {})})


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
        x = FusedBatchNormalization(momentum=BN_MOMENTUM, name=layer_name("bn"))(x)
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
