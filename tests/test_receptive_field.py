import math

import keras
import pytest

from models.receptive_field import empirical_receptive_field, receptive_field_table, theoretical_receptive_field
from models.registry import get_model

pytestmark = pytest.mark.multibackend


def stack(input_shape, *layers):
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def test_two_stride_two_convolutions_with_explicit_padding():
    model = stack(
        (5, 5, 1),
        keras.layers.ZeroPadding2D(1), keras.layers.Conv2D(1, 3, strides=2),
        keras.layers.ZeroPadding2D(1), keras.layers.Conv2D(1, 3, strides=2),
    )
    convs = receptive_field_table(model).query("type == 'Conv2D'")
    assert convs["output_size"].tolist() == [3, 2]
    assert convs["receptive_field"].tolist() == [3, 7]
    assert convs["jump"].tolist() == [2, 4]
    assert convs["start"].tolist() == [0.5, 0.5]


def test_same_padding_matches_explicit_padding():
    model = stack((5, 5, 1), keras.layers.Conv2D(1, 3, strides=2, padding="same"),
                  keras.layers.Conv2D(1, 3, strides=2, padding="same"))
    table = receptive_field_table(model)
    columns = ["output_size", "receptive_field", "jump", "start"]
    assert table[columns].values.tolist() == [[3, 3, 2, 0.5], [2, 7, 4, 0.5]]


def test_dilation_grows_the_receptive_field_exponentially():
    model = stack((32, 32, 1), *[keras.layers.Conv2D(1, 3, dilation_rate=rate, padding="same") for rate in (1, 2, 4)])
    assert receptive_field_table(model)["receptive_field"].tolist() == [3, 7, 15]
    assert theoretical_receptive_field(model) == 15


def test_transposed_convolution_divides_the_jump():
    model = stack((16, 16, 1), keras.layers.Conv2D(1, 3, strides=2, padding="same"),
                  keras.layers.Conv2DTranspose(1, 2, strides=2), keras.layers.Conv2D(1, 3, padding="same"))
    table = receptive_field_table(model)
    assert table["jump"].tolist() == [2, 1, 1]
    assert table["receptive_field"].tolist() == [3, 3, 5]


def test_branches_keep_the_largest_receptive_field():
    inputs = keras.Input((16, 16, 1))
    wide = keras.layers.Conv2D(1, 5, padding="same")(inputs)
    narrow = keras.layers.Conv2D(1, 1)(inputs)
    model = keras.Model(inputs, keras.layers.Add()([narrow, wide]))
    assert theoretical_receptive_field(model) == 5


def test_global_pooling_sees_the_whole_image():
    inputs = keras.Input((None, None, 1))
    pooled = keras.layers.GlobalAveragePooling2D(keepdims=True)(inputs)
    assert math.isinf(theoretical_receptive_field(keras.Model(inputs, pooled)))
    fixed = keras.Input((8, 8, 1))
    assert theoretical_receptive_field(keras.Model(fixed, keras.layers.GlobalMaxPooling2D()(fixed))) == 8


def test_empirical_equals_theoretical_on_a_strided_dilated_stack():
    model = stack(
        (32, 32, 2),
        keras.layers.Conv2D(3, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(3, 3, strides=2, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.Conv2D(3, 3, dilation_rate=2, padding="same", activation="relu"),
    )
    assert theoretical_receptive_field(model) == 3 + 2 + 4 * 2
    assert empirical_receptive_field(model) == theoretical_receptive_field(model)


@pytest.mark.parametrize("name, options", [("baseline", {"num_layers": 3, "filters": 2}),
                                           ("unet", {"depth": 2, "base_filters": 2})])
def test_empirical_equals_theoretical_on_registry_models(name, options):
    model = get_model(name, (None, None, 1), 2, **options)
    assert empirical_receptive_field(model, (64, 64, 1)) == theoretical_receptive_field(model)


def test_nested_models_are_expanded():
    inner = get_model("baseline", (16, 16, 1), 2, num_layers=2, filters=2)
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, inner(keras.layers.Conv2D(1, 3, padding="same")(inputs)))
    assert receptive_field_table(model)["layer"].iloc[-1] == "logits"
    assert theoretical_receptive_field(model) == empirical_receptive_field(model) == 7


def test_nested_sequential_blocks_are_expanded():
    """ConvNeXt (keras.applications) nests Sequential blocks: FLOPs and receptive field descend into them."""
    from models.flops import count_macs

    block = keras.Sequential([keras.layers.Conv2D(4, 3, strides=2, padding="same"), keras.layers.Conv2D(2, 1)])
    inputs = keras.Input((16, 16, 1))
    model = keras.Model(inputs, block(keras.layers.Conv2D(3, 3, padding="same")(inputs)))
    assert count_macs(model) == 16 * 16 * 9 * 3 + 8 * 8 * (9 * 3 * 4 + 4 * 2)
    assert theoretical_receptive_field(model) == empirical_receptive_field(model) == 5
