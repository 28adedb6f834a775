"""Custom layers written with `keras.ops` only, so they run on every backend and reload in safe mode."""
import keras
import numpy as np
from keras import ops


def _to_windows(x, pool_size):
    """(batch, H, W, C) -> (batch, H / p, W / p, C, p * p), one row-major window per last axis."""
    height, width, channels = ops.shape(x)[1:]
    x = ops.reshape(x, (-1, height // pool_size, pool_size, width // pool_size, pool_size, channels))
    x = ops.transpose(x, (0, 1, 3, 5, 2, 4))
    return ops.reshape(x, (-1, height // pool_size, width // pool_size, channels, pool_size * pool_size))


def _from_windows(windows, pool_size):
    """Inverse of `_to_windows`: (batch, h, w, C, p * p) -> (batch, h * p, w * p, C)."""
    height, width, channels = ops.shape(windows)[1:4]
    x = ops.reshape(windows, (-1, height, width, channels, pool_size, pool_size))
    x = ops.transpose(x, (0, 1, 4, 2, 5, 3))
    return ops.reshape(x, (-1, height * pool_size, width * pool_size, channels))


def _scaled_shape(shape, scale):
    """Apply `scale` to the known height and width of a (batch, H, W, C) shape."""
    batch, height, width, channels = shape
    return (batch, *(None if size is None else scale(size) for size in (height, width)), channels)


@keras.saving.register_keras_serializable(package="segkit")
class MaxPoolingWithArgmax2D(keras.layers.Layer):
    """Non-overlapping max pooling that also returns the argmax "switches" (Badrinarayanan et al., 2017, SegNet).

    Returns `(pooled, indices)`: `indices` (int32, same shape as `pooled`) is the row-major position
    of the maximum inside each `pool_size` x `pool_size` window, as `MaxUnpooling2D` expects.
    Height and width must be multiples of `pool_size`.

    Args:
        pool_size: int. Window size and stride. Defaults to 2.

    Example:
    >>> pooled, indices = MaxPoolingWithArgmax2D()(np.arange(16.0).reshape(1, 4, 4, 1))
    >>> ops.convert_to_numpy(indices)[0, :, :, 0].tolist()
    [[3, 3], [3, 3]]
    """

    def __init__(self, pool_size=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size

    def call(self, inputs):
        windows = _to_windows(inputs, self.pool_size)
        return ops.max(windows, axis=-1), ops.cast(ops.argmax(windows, axis=-1), "int32")

    def compute_output_shape(self, input_shape):
        shape = _scaled_shape(input_shape, lambda size: size // self.pool_size)
        return shape, shape

    def compute_output_spec(self, inputs):
        shape = self.compute_output_shape(inputs.shape)[0]
        return keras.KerasTensor(shape, dtype=self.compute_dtype), keras.KerasTensor(shape, dtype="int32")

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package="segkit")
class MaxUnpooling2D(keras.layers.Layer):
    """Place each value at its recorded argmax position in a `pool_size` window, zeros elsewhere (SegNet).

    Called on `[values, indices]` where `indices` comes from `MaxPoolingWithArgmax2D`.

    Args:
        pool_size: int. Window size of the matching pooling layer. Defaults to 2.

    Example:
    >>> pooled, indices = MaxPoolingWithArgmax2D()(np.arange(16.0).reshape(1, 4, 4, 1))
    >>> tuple(MaxUnpooling2D()([pooled, indices]).shape)
    (1, 4, 4, 1)
    """

    def __init__(self, pool_size=2, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size

    def call(self, inputs):
        values, indices = inputs
        mask = ops.one_hot(indices, self.pool_size**2, dtype=values.dtype)
        return _from_windows(mask * ops.expand_dims(values, -1), self.pool_size)

    def compute_output_shape(self, input_shape):
        return _scaled_shape(input_shape[0], lambda size: size * self.pool_size)

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package="segkit")
class BedOfNailsUnpooling2D(keras.layers.Layer):
    """Unpool by placing each value at the top-left corner of a `size` x `size` block of zeros.

    Args:
        size: int. Upsampling factor. Defaults to 2.

    Example:
    >>> ops.convert_to_numpy(BedOfNailsUnpooling2D()(np.ones((1, 1, 2, 1))))[0, :, :, 0].tolist()
    [[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """

    def __init__(self, size=2, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def call(self, inputs):
        windows = ops.pad(ops.expand_dims(inputs, -1), [(0, 0)] * 4 + [(0, self.size**2 - 1)])
        return _from_windows(windows, self.size)

    def compute_output_shape(self, input_shape):
        return _scaled_shape(input_shape, lambda size: size * self.size)

    def get_config(self):
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="segkit")
class ResizeLike(keras.layers.Layer):
    """Resize the first input to the height and width of the second (e.g. DeepLab's image-pooling branch).

    Works with unknown spatial sizes, unlike a `Resizing` layer built from static shapes. A 1x1 input (image
    pooling) is broadcast.

    Args:
        interpolation: str. "bilinear" or "nearest". Defaults to "bilinear".

    Example:
    >>> tuple(ResizeLike()([np.ones((1, 1, 1, 3)), np.zeros((1, 5, 7, 8))]).shape)
    (1, 5, 7, 3)
    """

    def __init__(self, interpolation="bilinear", **kwargs):
        super().__init__(**kwargs)
        self.interpolation = interpolation

    def call(self, inputs):
        x, reference = inputs
        if tuple(x.shape[1:3]) == (1, 1):
            return x * ops.ones_like(reference[..., :1], dtype=x.dtype)
        size = ops.shape(reference)
        return self._resize_axis(self._resize_axis(x, size[1], 1), size[2], 2)

    def _resize_axis(self, x, out_len, axis):
        """Half-pixel resize along one axis by gathering (as `ops.image.resize`, but with no Python test
        of the sizes, so it traces with unknown sizes under XLA and converts to TFLite)."""
        in_len = ops.shape(x)[axis]
        scale = ops.cast(in_len, "float32") / ops.cast(out_len, "float32")
        centres = (ops.arange(out_len, dtype="float32") + 0.5) * scale
        last = ops.cast(in_len - 1, "float32")
        if self.interpolation == "nearest":
            return ops.take(x, ops.cast(ops.minimum(ops.floor(centres), last), "int32"), axis=axis)
        coords = ops.clip(centres - 0.5, 0.0, last)
        low = ops.floor(coords)
        high = ops.minimum(low + 1.0, last)
        weight = ops.cast(ops.reshape(coords - low, (-1, 1, 1) if axis == 1 else (-1, 1)), x.dtype)
        below = ops.take(x, ops.cast(low, "int32"), axis=axis)
        above = ops.take(x, ops.cast(high, "int32"), axis=axis)
        return below + (above - below) * weight

    def compute_output_shape(self, input_shape):
        (batch, _, _, channels), reference = input_shape
        return (batch, reference[1], reference[2], channels)

    def get_config(self):
        return {**super().get_config(), "interpolation": self.interpolation}


@keras.saving.register_keras_serializable(package="segkit")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initialise a `Conv2DTranspose` kernel as channel-wise bilinear interpolation (Long et al., 2015, FCN).

    Example:
    >>> layer = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same", kernel_initializer=BilinearUpsampling())
    """

    def __call__(self, shape, dtype=None):
        size, _, out_channels, in_channels = shape
        factor = (size + 1) // 2
        center = factor - 1 if size % 2 else factor - 0.5
        profile = 1 - np.abs(np.arange(size) - center) / factor
        kernel = np.zeros(shape, dtype="float32")
        for channel in range(min(out_channels, in_channels)):
            kernel[:, :, channel, channel] = np.outer(profile, profile)
        return ops.convert_to_tensor(kernel, dtype=dtype)

    def get_config(self):
        return {}
