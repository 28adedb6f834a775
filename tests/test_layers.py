import keras
import numpy as np
import pytest
from keras import ops

from models.layers import BedOfNailsUnpooling2D, BilinearUpsampling, MaxPoolingWithArgmax2D, MaxUnpooling2D, ResizeLike

pytestmark = pytest.mark.multibackend

TOY = np.array([[1, 2, 5, 0], [3, 4, 1, 2], [0, 9, 8, 7], [6, 1, 2, 3]], dtype="float32")[None, :, :, None]


def numpy_of(x):
    return ops.convert_to_numpy(x)


def test_max_pooling_with_argmax_on_toy_array():
    pooled, indices = MaxPoolingWithArgmax2D()(TOY)
    np.testing.assert_array_equal(numpy_of(pooled)[0, :, :, 0], [[4, 5], [9, 8]])
    np.testing.assert_array_equal(numpy_of(indices)[0, :, :, 0], [[3, 0], [1, 0]])
    assert numpy_of(indices).dtype == np.int32


def test_unpooled_values_land_at_argmax_positions():
    _, indices = MaxPoolingWithArgmax2D()(TOY)
    values = np.array([[10, 20], [30, 40]], dtype="float32")[None, :, :, None]
    unpooled = numpy_of(MaxUnpooling2D()([values, indices]))[0, :, :, 0]
    expected = np.zeros((4, 4))
    expected[1, 1], expected[0, 2], expected[2, 1], expected[2, 2] = 10, 20, 30, 40
    np.testing.assert_array_equal(unpooled, expected)


def test_unpool_of_pool_keeps_only_window_maxima():
    x = np.random.default_rng(0).random((2, 6, 8, 3)).astype("float32")
    unpooled = numpy_of(MaxUnpooling2D()(list(MaxPoolingWithArgmax2D()(x))))
    windows = x.reshape(2, 3, 2, 4, 2, 3).max(axis=(2, 4)).repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_array_equal(unpooled, np.where(x == windows, x, 0))


def test_pool_size_three():
    x = np.random.default_rng(1).random((1, 6, 6, 2)).astype("float32")
    pooled, indices = MaxPoolingWithArgmax2D(3)(x)
    np.testing.assert_allclose(numpy_of(pooled), x.reshape(1, 2, 3, 2, 3, 2).max(axis=(2, 4)))
    assert numpy_of(MaxUnpooling2D(3)([pooled, indices])).shape == x.shape


def test_bed_of_nails_places_values_top_left():
    x = np.array([[1, 2], [3, 4]], dtype="float32")[None, :, :, None]
    expected = np.array([[1, 0, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(numpy_of(BedOfNailsUnpooling2D()(x))[0, :, :, 0], expected)


def test_resize_like_broadcasts_a_pooled_vector():
    out = numpy_of(ResizeLike()([np.full((1, 1, 1, 2), 3.0, "float32"), np.zeros((1, 5, 7, 4), "float32")]))
    np.testing.assert_allclose(out, np.full((1, 5, 7, 2), 3.0))


def test_symbolic_shapes_with_unknown_sizes():
    inputs = keras.Input((None, None, 3))
    pooled, indices = MaxPoolingWithArgmax2D()(inputs)
    assert indices.dtype == "int32" and pooled.dtype == "float32"
    assert tuple(MaxUnpooling2D()([pooled, indices]).shape) == (None, None, None, 3)
    assert tuple(BedOfNailsUnpooling2D(4)(inputs).shape) == (None, None, None, 3)


@pytest.mark.parametrize(
    "layer", [MaxPoolingWithArgmax2D(3), MaxUnpooling2D(3), BedOfNailsUnpooling2D(3), ResizeLike("nearest")]
)
def test_config_round_trip(layer):
    clone = layer.__class__.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()


def test_bilinear_initializer_upsamples_constants_to_constants():
    layer = keras.layers.Conv2DTranspose(2, 4, strides=2, padding="same", use_bias=False,
                                         kernel_initializer=BilinearUpsampling())
    out = numpy_of(layer(np.ones((1, 4, 4, 2), dtype="float32")))
    np.testing.assert_allclose(out[0, 1:-1, 1:-1], 1.0, rtol=1e-6)
    config = keras.saving.serialize_keras_object(BilinearUpsampling())
    assert isinstance(keras.initializers.get(config), BilinearUpsampling)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("source, target", [((4, 6), (16, 24)), ((5, 7), (9, 3)), ((1, 1), (5, 4))])
def test_resize_like_equals_ops_image_resize(interpolation, source, target):
    x = np.random.default_rng(0).random((2, *source, 3)).astype("float32")
    reference = np.zeros((2, *target, 1), "float32")
    ours = keras.ops.convert_to_numpy(ResizeLike(interpolation)([x, reference]))
    expected = keras.ops.convert_to_numpy(keras.ops.image.resize(x, target, interpolation=interpolation))
    np.testing.assert_allclose(ours, expected, atol=1e-6)
