"""Pretrained encoders under our decoders: divisor rule, train/save/reload, weights exactly as Keras ships them,
keras-hub presets, the offline message, freezing, the encoder learning-rate scale and transfer from a run."""
import time

import h5py
import keras
import numpy as np
import pytest

from models import encoders
from models.deeplabv3plus import _mobilenetv2_dilation, _resnet50_dilation
from models.encoders import (APPLICATIONS_URL, ENCODERS, EncoderWeightsError, dilation_changes, encoder_layers,
                             imagenet_weights_path, load_encoder_from)
from models.finetune import check_finetune_options, finetune_callbacks
from models.registry import get_model, required_divisor

SMALL = "mobilenetv3_small"
TINY_DECODERS = {
    "unet": {"decoder_filters": (8, 8, 4, 4, 4)},
    "fpn": {"pyramid_filters": 8, "segmentation_filters": 4},
    "deeplabv3plus": {"filters": 8, "low_level_filters": 4},
    "segformer": {"embed_dim": 8},
}
NUM_CLASSES = 3


def images(size=(64, 96), batch=2, channels=3, seed=0):
    return np.random.default_rng(seed).random((batch, *size, channels)).astype("float32")


def labels(size=(64, 96), batch=2):
    return np.random.default_rng(1).integers(0, NUM_CLASSES, (batch, *size))


def predict(model, x):
    return keras.ops.convert_to_numpy(model(x, training=False))


def encoder_weights(model):
    return [w.numpy().copy() for layer in encoder_layers(model) for w in layer.weights]


def decoder_weights(model):
    inside = {id(w) for layer in encoder_layers(model) for w in layer.weights}
    return [w.numpy().copy() for w in model.weights if id(w) not in inside]


def check_decoder(decoder, encoder, tmp_path):
    with pytest.raises(ValueError, match=r"divisible by (16|32): got 65x97"):
        get_model(decoder, (65, 97, 3), NUM_CLASSES, encoder=encoder, **TINY_DECODERS[decoder])
    model = get_model(decoder, (64, 96, 3), NUM_CLASSES, encoder=encoder, **TINY_DECODERS[decoder])
    x = images()
    assert predict(model, x).shape == (2, 64, 96, NUM_CLASSES)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  run_eagerly=keras.backend.backend() == "tensorflow")
    assert np.isfinite(model.train_on_batch(x, labels()))
    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(predict(reloaded, x), predict(model, x), atol=1e-5)


@pytest.mark.multibackend
@pytest.mark.parametrize("decoder", sorted(TINY_DECODERS))
def test_small_encoder_under_every_decoder_trains_saves_and_reloads(decoder, tmp_path):
    check_decoder(decoder, SMALL, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", sorted(set(ENCODERS) - {SMALL, "mit_b0", "mit_b1"}))
@pytest.mark.parametrize("decoder", sorted(TINY_DECODERS))
def test_every_encoder_under_every_decoder(decoder, encoder, tmp_path):
    if decoder == "deeplabv3plus" and encoder == "convnext_tiny":
        pytest.skip("ConvNeXt downsamples inside nested models: DeepLabV3+ takes it at output_stride 32 only")
    check_decoder(decoder, encoder, tmp_path)


def test_divisor_is_the_encoder_stride():
    assert required_divisor("unet", encoder="efficientnetv2_b0") == 32
    assert required_divisor("fpn", encoder="resnet50", encoder_weights="imagenet") == 32
    assert required_divisor("segformer") == 32
    assert required_divisor("deeplabv3plus", encoder="resnet50") == 16
    assert required_divisor("deeplabv3plus", encoder="resnet50", output_stride=8) == 8
    assert required_divisor("unet", depth=3) == 8
    with pytest.raises(KeyError, match="valid names are: resnet50, resnet101"):
        get_model("unet", (64, 64, 3), 2, encoder="resnet18")
    with pytest.raises(KeyError, match="model 'segnet' takes no encoder; decoders for model.encoder are: unet, fpn"):
        get_model("segnet", (64, 64, 3), 2, encoder=SMALL)


@pytest.mark.parametrize("build, recipe", [("ResNet50", _resnet50_dilation), ("MobileNetV2", _mobilenetv2_dilation)])
def test_generic_dilation_reproduces_the_deeplabv3plus_recipes(build, recipe):
    base = getattr(keras.applications, build)(include_top=False, weights=None, input_shape=(None, None, 3))
    for stride in (16, 8):
        assert dilation_changes(base, stride) == recipe(stride)


def write_keras_applications_file(folder, name, seed=3):
    """A random keras.applications backbone's weights in Keras's legacy .h5 format, under Keras's file name."""
    from keras.src.legacy.saving import legacy_h5_format

    base = ENCODERS[name].build((None, None, 3))
    rng = np.random.default_rng(seed)
    for weight in base.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    path = folder / "models" / ENCODERS[name].weights_file
    path.parent.mkdir(parents=True)
    with h5py.File(path, "w") as file:
        legacy_h5_format.save_weights_to_hdf5_group(file, base)
    return path


def test_imagenet_weights_come_from_keras_cache_exactly(tmp_path, monkeypatch):
    path = write_keras_applications_file(tmp_path, SMALL)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(encoders, "_online", lambda: pytest.fail("a cached file must not touch the network"))
    assert imagenet_weights_path(SMALL) == path
    # keras.applications itself reads the file (it is in Keras's format) ...
    reference = keras.applications.MobileNetV3Small(include_top=False, weights=str(path), input_shape=(64, 64, 3))
    # ... and our encoder holds exactly its tensors.
    model = get_model("unet", (64, 64, 3), 2, encoder=SMALL, encoder_weights="imagenet",
                      **TINY_DECODERS["unet"])
    encoder = model.get_layer("encoder")
    total = 0
    for ours, theirs in zip(encoder.weights, reference.weights, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
        total += 1
    assert total == len(encoder.weights) > 100
    assert model.encoder_report == f"encoder {SMALL}: loaded {total}/{total} weight tensors from {path} (none skipped)"


def test_offline_without_the_file_stops_with_one_line_fast(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = ENCODERS["resnet50"]
    start = time.monotonic()
    with pytest.raises(EncoderWeightsError) as error:
        get_model("fpn", (64, 64, 3), 2, encoder="resnet50", encoder_weights="imagenet")
    assert time.monotonic() - start < 30
    message = str(error.value)
    assert "\n" not in message
    assert spec.weights_file in message and str(tmp_path / "models") in message
    assert message.endswith(f"from {APPLICATIONS_URL}resnet/resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")


def test_weight_files_match_the_installed_keras_applications():
    from keras.src.applications import convnext, efficientnet_v2, mobilenet_v2, mobilenet_v3, resnet, vgg16

    assert ENCODERS["resnet101"].file_hash == resnet.WEIGHTS_HASHES["resnet101"][1]
    assert ENCODERS["efficientnetv2_s"].file_hash == efficientnet_v2.WEIGHTS_HASHES["-s"][1]
    assert ENCODERS["mobilenetv3_large"].file_hash == mobilenet_v3.WEIGHTS_HASHES["large_224_1.0_float"][1]
    assert ENCODERS["convnext_tiny"].file_hash == convnext.WEIGHTS_HASHES["convnext_tiny"][1]
    assert ENCODERS["vgg16"].weights_url == vgg16.WEIGHTS_PATH_NO_TOP
    assert ENCODERS["mobilenetv2"].weights_url.startswith(mobilenet_v2.BASE_WEIGHT_PATH)
    assert ENCODERS["efficientnetv2_b0"].weights_url == efficientnet_v2.BASE_WEIGHTS_PATH + "efficientnetv2-b0_notop.h5"


def test_h5_with_missing_and_mismatched_layers_is_reported(tmp_path):
    path = write_keras_applications_file(tmp_path, SMALL)
    with h5py.File(path, "a") as file:
        names = [str(n) for n in file.attrs["layer_names"]]
        dropped = [n for n in names if len(file[n].attrs["weight_names"])][-1]  # conv_1_bn: 4 tensors
        del file[dropped]
        file.attrs["layer_names"] = [n for n in names if n != dropped]
    model = get_model("unet", (64, 64, 3), 2, encoder=SMALL, encoder_weights=str(path), **TINY_DECODERS["unet"])
    total = len(model.get_layer("encoder").weights)
    assert model.encoder_report == (f"encoder {SMALL}: loaded {total - 4}/{total} weight tensors from {path}; "
                                    f"not in the file (left random): {dropped}")


def test_keras_hub_preset_loads_exactly(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    backbone = keras_hub.models.MiTBackbone(
        layerwise_depths=[1, 1, 1, 1], num_layers=4, layerwise_num_heads=[1, 1, 1, 1],
        layerwise_sr_ratios=[8, 4, 2, 1], max_drop_path_rate=0.0, layerwise_patch_sizes=[7, 3, 3, 3],
        layerwise_strides=[4, 2, 2, 2], hidden_dims=[4, 8, 8, 8], image_shape=(64, 64, 3))
    rng = np.random.default_rng(5)
    for weight in backbone.weights:
        weight.assign(rng.normal(size=weight.shape).astype("float32"))
    backbone.save_to_preset(str(tmp_path / "preset"))
    model = get_model("segformer", (64, 64, 3), 2, encoder="mit_b0", encoder_weights=str(tmp_path / "preset"),
                      **TINY_DECODERS["segformer"])
    assert predict(model, images(size=(64, 64))).shape == (2, 64, 64, 2)
    expected = backbone.weights
    for ours, theirs in zip(model.get_layer("encoder").weights, expected, strict=True):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
    assert f"loaded {len(expected)}/{len(expected)} weight tensors from keras-hub preset" in model.encoder_report


def test_gray_images_go_through_the_rgb_encoder():
    model = get_model("unet", (None, None, 1), 2, encoder=SMALL, **TINY_DECODERS["unet"])
    assert predict(model, images(channels=1)).shape == (2, 64, 96, 2)


def fit(model, epochs, callbacks=(), initial_epoch=0, x=None):
    x = images(batch=4) if x is None else x
    y = np.random.default_rng(2).integers(0, 2, x.shape[:3])
    model.fit(x, y, batch_size=2, epochs=epochs, initial_epoch=initial_epoch, callbacks=list(callbacks), verbose=0)


def compiled(learning_rate=1e-2, **train):
    """A plain tiny U-Net (its contracting path is the encoder, with batch norm): the fine-tuning mechanics are the
    same for every encoder, and tracing a MobileNet for each fit costs minutes on a loaded CPU."""
    keras.utils.set_random_seed(0)
    model = get_model("unet", (64, 96, 3), 2, depth=2, base_filters=4)
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    return model, finetune_callbacks(model, {"freeze_encoder_epochs": 0, "encoder_lr_scale": 1.0, **train})


def changed(before, after):
    return [not np.array_equal(b, a) for b, a in zip(before, after)]


def test_frozen_encoder_is_unchanged_then_trains(tmp_path):
    model, callbacks = compiled(freeze_encoder_epochs=1)
    encoder_before, decoder_before = encoder_weights(model), decoder_weights(model)
    fit(model, 1, callbacks)
    assert not any(changed(encoder_before, encoder_weights(model)))  # batch-norm statistics included
    assert any(changed(decoder_before, decoder_weights(model)))
    encoder_before = encoder_weights(model)
    fit(model, 2, callbacks, initial_epoch=1)  # epoch 1: unfrozen (a resumed run starts here the same way)
    assert sum(changed(encoder_before, encoder_weights(model))) > len(encoder_before) // 2


def test_freezing_survives_resume_from_a_backup(tmp_path):
    from app.core.callbacks import AtomicBackupAndRestore

    model, callbacks = compiled(freeze_encoder_epochs=2)
    fit(model, 1, callbacks + [AtomicBackupAndRestore(tmp_path / "backup")])
    frozen = encoder_weights(model)
    resumed, callbacks = compiled(freeze_encoder_epochs=2)  # a new process: same config, fresh model
    fit(resumed, 2, callbacks + [AtomicBackupAndRestore(tmp_path / "backup")])  # restores, runs epoch 1 only
    assert resumed.optimizer.iterations.numpy() == 2 * model.optimizer.iterations.numpy()
    assert not any(changed(frozen, encoder_weights(resumed)))


def test_encoder_learning_rate_scale_moves_the_encoder_less():
    def trainable(model):
        inside = {id(w) for layer in encoder_layers(model) for w in layer.weights}
        weights = [(id(w) in inside, w.numpy().copy()) for w in model.trainable_weights]
        return [w for enc, w in weights if enc], [w for enc, w in weights if not enc]

    moved = {}
    for scale in (1.0, 0.1):
        model, callbacks = compiled(encoder_lr_scale=scale)
        before = trainable(model)
        fit(model, 1, callbacks, x=images(batch=2))  # one Adam step: each weight moves by about the learning rate
        moved[scale] = [sum(np.abs(a - b).sum() for a, b in zip(after, start))
                        for after, start in zip(trainable(model), before)]
    np.testing.assert_allclose(moved[0.1][0], 0.1 * moved[1.0][0], rtol=0.05)
    np.testing.assert_allclose(moved[0.1][1], moved[1.0][1], rtol=0.05)


def test_finetune_options_are_checked():
    check_finetune_options({"freeze_encoder_epochs": 2, "encoder_lr_scale": 0.1}, {"name": "fpn", "encoder": SMALL})
    with pytest.raises(ValueError, match="train.freeze_encoder_epochs must be a whole number"):
        check_finetune_options({"freeze_encoder_epochs": -1}, {"name": "unet"})
    with pytest.raises(ValueError, match="need model.encoder .* model 'segnet' has no encoder"):
        check_finetune_options({"encoder_lr_scale": 0.5}, {"name": "segnet"})


def test_encoder_from_a_run_with_other_classes(tmp_path):
    source = get_model("unet", (64, 96, 3), 5, encoder=SMALL, **TINY_DECODERS["unet"])
    fit_weights = np.random.default_rng(4)
    for weight in source.weights:
        weight.assign(fit_weights.normal(size=weight.shape).astype("float32"))
    (tmp_path / "run").mkdir()
    source.save(tmp_path / "run" / "model.keras")
    model = get_model("unet", (64, 96, 3), 2, encoder=SMALL, encoder_from=str(tmp_path / "run"),
                      **TINY_DECODERS["unet"])
    for ours, theirs in zip(encoder_weights(model), encoder_weights(source)):
        np.testing.assert_array_equal(ours, theirs)
    assert model.encoder_report.endswith("(none skipped)")
    assert model.output_shape[-1] == 2


def test_plain_unet_encoder_from_a_run(tmp_path):
    source = get_model("unet", (64, 64, 3), 4, depth=2, base_filters=4)
    for weight in source.weights:
        weight.assign(np.full(weight.shape, 0.5, "float32"))
    source.save(tmp_path / "model.keras")
    model = get_model("unet", (64, 64, 3), 2, depth=2, base_filters=4, encoder_from=str(tmp_path / "model.keras"))
    assert all(np.all(w == 0.5) for w in encoder_weights(model))
    assert not np.all(model.get_layer("dec0_a_conv").kernel.numpy() == 0.5)
    with pytest.raises(EncoderWeightsError, match="no encoder layer matches"):
        load_encoder_from(get_model("unet", (64, 64, 3), 2, encoder=SMALL, **TINY_DECODERS["unet"]),
                          tmp_path / "model.keras")


def test_info_describes_an_encoder_model(capsys):
    from app.info import main

    assert main(["--model", "unet", "--encoder", SMALL, "--input-size", "64", "64", "3"]) == 0
    out = capsys.readouterr().out
    assert "output stride    32" in out and "parameters" in out and "FLOPs per image" in out
    field = int(out.split("receptive field")[1].split()[0])
    assert 64 < field < 10_000


def test_config_with_an_encoder_drops_the_plain_unet_defaults():
    from app.core.config import load_config, model_options, parse_override

    config = load_config(overrides=[parse_override(f"model.encoder={SMALL}")])
    assert model_options(config) == {"encoder": SMALL}
    assert config["train"]["freeze_encoder_epochs"] == 0 and config["train"]["encoder_lr_scale"] == 1.0


@pytest.mark.slow
def test_int8_tflite_export_of_a_small_encoder_model(tmp_path):
    from app.core.export import LiteRTModel, convert_tflite, litert_compatible, tflite_archive

    model = get_model("fpn", (None, None, 3), 3, encoder=SMALL, **TINY_DECODERS["fpn"])
    tflite_archive(litert_compatible(model), (64, 64)).write_out(str(tmp_path / "graph"), verbose=False)
    calibration = images(size=(64, 64), batch=4)
    (tmp_path / "model.tflite").write_bytes(convert_tflite(tmp_path / "graph", "tflite-int8", model, calibration))
    probabilities = LiteRTModel(tmp_path / "model.tflite").predict_on_batch(calibration)
    assert probabilities.shape == (4, 64, 64, 3)
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, atol=0.05)


def test_freezing_is_refused_on_jax(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ValueError, match="train.freeze_encoder_epochs needs the TensorFlow backend"):
        check_finetune_options({"freeze_encoder_epochs": 1}, {"name": "unet", "encoder": SMALL})


def test_training_offline_without_weights_is_one_line_and_writes_nothing(tmp_path):
    import os
    import subprocess
    import sys

    from train_helpers import REPO

    env = {**os.environ, "KERAS_HOME": str(tmp_path / "keras")}
    completed = subprocess.run(
        [sys.executable, "-m", "app.train", "--runs-dir", str(tmp_path / "runs"), "--set", "model.encoder=resnet50",
         "--set", "model.encoder_weights=imagenet"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 2
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in completed.stderr
    assert errors[0].startswith("error: ImageNet weights for encoder 'resnet50' not found and SEGKIT_OFFLINE is set")
    assert not (tmp_path / "runs").exists()
