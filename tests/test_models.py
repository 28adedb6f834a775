import keras
import numpy as np
import pytest

from app.info import main as info_main
from models.flops import count_flops, count_macs
from models.registry import MODELS, get_model, required_divisor

pytestmark = pytest.mark.multibackend

SIZE = 32
NUM_CLASSES = 3
TINY = {
    "unet": {"depth": 2, "base_filters": 4, "dropout": 0.1, "upsampling": "bilinear"},
    "fcn8s": {"base_filters": 2, "fc_filters": 8},
    "fcn16s": {"base_filters": 2, "fc_filters": 8},
    "fcn32s": {"base_filters": 2, "fc_filters": 8},
    "segnet": {"depth": 3, "base_filters": 4},
    "deeplabv3plus": {"base_filters": 4, "filters": 8, "low_level_filters": 4},
    "ternausnet": {"base_filters": 4},
    "baseline": {"num_layers": 2, "filters": 4},
    "fpn": {"encoder": "mobilenetv3_small", "pyramid_filters": 8, "segmentation_filters": 4},
    "segformer": {"encoder": "mobilenetv3_small", "embed_dim": 8},
}


def images(channels, size=SIZE, batch=2):
    return np.random.default_rng(0).random((batch, size, size, channels)).astype("float32")


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def test_every_registered_model_has_tiny_options():
    assert set(TINY) == set(MODELS)


ENCODER_MODELS = {"fpn", "segformer"}
"""Their encoder is also trained under every decoder in tests/test_encoders.py: RGB runs slow here."""


@pytest.mark.parametrize("name, channels", [
    pytest.param(name, channels, marks=[pytest.mark.slow] if channels == 3 and name in ENCODER_MODELS else [])
    for name in sorted(MODELS) for channels in (1, 3)])
def test_forward_train_save_reload(name, channels, tmp_path):
    input_shape = (None, None, channels) if channels == 1 else (SIZE, SIZE, channels)
    model = get_model(name, input_shape, NUM_CLASSES, **TINY[name])
    x = images(channels)
    logits = predict(model, x)
    assert logits.shape == (2, SIZE, SIZE, NUM_CLASSES) and logits.dtype == np.float32
    assert model.input.name == "image"

    # One step: tracing a tf.function costs more than it saves, while eager JAX is slower than jit.
    eager = keras.backend.backend() == "tensorflow"
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(optimizer="adam", loss=loss, run_eagerly=eager)
    labels = np.random.default_rng(1).integers(0, NUM_CLASSES, (2, SIZE, SIZE))
    assert np.isfinite(model.train_on_batch(x, labels))

    path = tmp_path / f"{name}.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(predict(reloaded, x), predict(model, x), atol=1e-6)


@pytest.mark.parametrize("name", ["unet", "segnet", "deeplabv3plus", "fcn8s"])
def test_mixed_precision_keeps_float32_logits_and_softmax_gives_probabilities(name):
    keras.mixed_precision.set_dtype_policy("mixed_float16")
    try:
        model = get_model(name, (SIZE, SIZE, 3), NUM_CLASSES, activation="softmax", **TINY[name])
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    probabilities = predict(model, images(3))
    assert probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"baseline"}))
def test_bad_size_names_nearest_valid_sizes(name):
    divisor = required_divisor(name, **TINY[name])
    size = 2 * divisor + 2
    with pytest.raises(ValueError, match=f"divisible by {divisor}: got {size}x{size}; nearest valid sizes are "
                                         f"{2 * divisor} and {3 * divisor}"):
        get_model(name, (size, size, 3), NUM_CLASSES, **TINY[name])


def test_unet_error_message():
    with pytest.raises(ValueError, match="unet with depth 4 needs height and width divisible by 16: got 250x250; "
                                         "nearest valid sizes are 240 and 256"):
        get_model("unet", (250, 250, 3), 2, depth=4)


@pytest.mark.parametrize("name, options, divisor", [
    ("unet", {"depth": 3, "base_filters": 8}, 8),
    ("segnet", {}, 32),
    ("fcn16s", {}, 32),
    ("ternausnet", {}, 32),
    ("deeplabv3plus", {"output_stride": 8, "weights_path": "unused.h5"}, 8),
    ("baseline", {}, 1),
])
def test_required_divisor(name, options, divisor):
    assert required_divisor(name, **options) == divisor


def test_unknown_name_lists_valid_names():
    with pytest.raises(KeyError, match="valid names are: baseline, deeplabv3plus, fcn16s"):
        get_model("pspnet", (32, 32, 3), 2)


def test_unknown_option_is_named():
    with pytest.raises(TypeError, match="'depht'"):
        get_model("unet", (32, 32, 3), 2, depht=3)


@pytest.mark.parametrize("upsampling", ["transpose", "nearest"])
def test_unet_upsampling_modes(upsampling):
    model = get_model("unet", (None, None, 1), 2, depth=1, base_filters=2, upsampling=upsampling, batch_norm=False)
    assert predict(model, images(1, size=6)).shape == (2, 6, 6, 2)


def test_weights_path_loads_local_weights(tmp_path):
    source = get_model("baseline", (None, None, 1), 2, num_layers=1, filters=2)
    path = tmp_path / "baseline.weights.h5"
    source.save_weights(path)
    loaded = get_model("baseline", (None, None, 1), 2, num_layers=1, filters=2, weights_path=path)
    x = images(1, size=8)
    np.testing.assert_allclose(predict(loaded, x), predict(source, x))
    with pytest.raises(FileNotFoundError, match="only read from local files"):
        get_model("baseline", (8, 8, 1), 2, weights_path=tmp_path / "missing.h5")


@pytest.mark.parametrize("output_stride", [16, 8])
def test_deeplab_small_backbone_reaches_output_stride_with_dilation(output_stride):
    model = get_model("deeplabv3plus", (64, 64, 1), 2, output_stride=output_stride, **TINY["deeplabv3plus"])
    assert model.get_layer("aspp_pool").input.shape[1] == 64 // output_stride


@pytest.mark.parametrize("backbone", ["mobilenetv2", pytest.param("resnet50", marks=pytest.mark.slow)])
@pytest.mark.parametrize("output_stride", [16, 8])
def test_deeplab_applications_backbones_are_dilated(backbone, output_stride):
    model = get_model("deeplabv3plus", (64, 64, 3), 2, backbone=backbone, output_stride=output_stride,
                      filters=8, low_level_filters=4)
    assert model.get_layer("aspp_pool").input.shape[1] == 64 // output_stride
    assert model.get_layer("decoder_low_level_conv").input.shape[1] == 16
    assert predict(model, images(3, size=64, batch=1)).shape == (1, 64, 64, 2)


def test_flops_count_convolutions_transposed_convolutions_and_dense_layers():
    inputs = keras.Input((8, 8, 2))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)  # 4*4 positions * 9*2*4
    x = keras.layers.Conv2DTranspose(3, 2, strides=2)(x)  # 4*4 inputs * 4*4*3
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)  # 8*8 * 3 * 9
    x = keras.layers.Dense(5)(x)  # 8*8 * 3*5
    model = keras.Model(inputs, x)
    assert count_macs(model) == 16 * 72 + 16 * 48 + 64 * 27 + 64 * 15
    assert count_flops(model) == 2 * count_macs(model)
    with pytest.raises(ValueError, match="fixed input size"):
        count_flops(get_model("baseline", (None, None, 1), 2, **TINY["baseline"]))


def test_info_cli_prints_size_cost_stride_and_receptive_field(capsys):
    assert info_main(["--model", "unet", "--input-size", "32", "32", "1", "--option", "depth=2",
                      "--option", "base_filters=2", "--option", "upsampling=nearest"]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out and "FLOPs per image" in out
    assert "output stride    4" in out and "receptive field  50 pixels" in out
    assert info_main(["--model", "unet", "--input-size", "30", "30", "1"]) == 2
    assert "nearest valid sizes are 16 and 32" in capsys.readouterr().err
