"""Pretrained encoders under our decoders: divisor rule, train/save/reload, weights exactly as Keras ships them,
keras-hub presets, the offline message, freezing, the encoder learning-rate scale and transfer from a run."""
import json
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
from models.mit import MIT_VARIANTS, build_mit, hub_weight_paths
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


def check_decoder(decoder, encoder, tmp_path, **options):
    options = options or TINY_DECODERS[decoder]
    with pytest.raises(ValueError, match=r"divisible by (16|32): got 65x97"):
        get_model(decoder, (65, 97, 3), NUM_CLASSES, encoder=encoder, **options)
    model = get_model(decoder, (64, 96, 3), NUM_CLASSES, encoder=encoder, **options)
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
@pytest.mark.parametrize("decoder", [pytest.param(d, marks=[pytest.mark.slow] if d in ("fpn", "segformer") else [])
                                     for d in sorted(TINY_DECODERS)])  # test_models trains FPN/SegFormer on it too
def test_small_encoder_under_every_decoder_trains_saves_and_reloads(decoder, tmp_path):
    check_decoder(decoder, SMALL, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("encoder", sorted(set(ENCODERS) - {SMALL} - set(MIT_VARIANTS)))
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


MIT = "mit_b0"


def check_mit_decoder(decoder, tmp_path):
    options = {**TINY_DECODERS[decoder], **({"output_stride": 32} if decoder == "deeplabv3plus" else {})}
    check_decoder(decoder, MIT, tmp_path, **options)
    model = get_model(decoder, (None, None, 3), NUM_CLASSES, encoder=MIT, **options)
    assert predict(model, images(size=(96, 160))).shape == (2, 96, 160, NUM_CLASSES)  # any size, not square


@pytest.mark.multibackend
def test_tiny_mit_layers_take_any_size_train_and_reload(tmp_path):
    encoder = build_mit((1, 1, 1, 1), (8, 8, 10, 16))
    x = keras.Input((None, None, 3))
    features = [keras.layers.UpSampling2D(2 ** i)(f) if i else f for i, f in enumerate(encoder(x))]
    model = keras.Model(x, keras.layers.Conv2D(2, 1)(keras.layers.Concatenate()(features)))
    for size in ((64, 96), (96, 64)):
        strides = [tuple(f.shape[1:3]) for f in encoder(images(size=size, batch=1))]
        assert strides == [(size[0] // s, size[1] // s) for s in (4, 8, 16, 32)]
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.numpy().copy() for w in encoder.trainable_weights]
    assert np.isfinite(model.train_on_batch(images(), np.zeros((2, 16, 24), "int32")))
    assert all(changed(before, [w.numpy() for w in encoder.trainable_weights]))
    model.save(tmp_path / "model.keras")
    reloaded = keras.saving.load_model(tmp_path / "model.keras", safe_mode=True)
    np.testing.assert_allclose(predict(reloaded, images()), predict(model, images()), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", ["segformer", "unet", "fpn", "deeplabv3plus"])
def test_mit_under_the_other_decoders(decoder, tmp_path):
    check_mit_decoder(decoder, tmp_path)


def test_mit_cannot_be_dilated():
    with pytest.raises(ValueError, match="encoder 'mit_b0' .* cannot be dilated: use output_stride 32"):
        get_model("deeplabv3plus", (64, 64, 3), 2, encoder=MIT, **TINY_DECODERS["deeplabv3plus"])


def write_hub_preset(folder, model, variant=MIT, seed=5):
    """A keras-hub MiTBackbone preset (config.json + model.weights.h5) holding random tensors at the paths
    keras-hub writes; returns {path: array}."""
    depths, dims = MIT_VARIANTS[variant]
    folder.mkdir()
    config = {"class_name": "MiTBackbone", "config": {"layerwise_depths": list(depths), "hidden_dims": list(dims)}}
    (folder / "config.json").write_text(json.dumps(config))
    rng, arrays = np.random.default_rng(seed), {}
    with h5py.File(folder / "model.weights.h5", "w") as file:
        for variable, path in hub_weight_paths(model):
            arrays[path] = file[path] = rng.normal(size=variable.shape).astype("float32")
    return arrays


def test_mit_weights_load_exactly_from_a_keras_hub_preset_folder(tmp_path):
    encoder = get_model("segformer", (None, None, 3), 2, encoder=MIT, **TINY_DECODERS["segformer"]).get_layer(
        "encoder")
    pairs = hub_weight_paths(encoder)
    assert len(pairs) == len(encoder.trainable_weights) == 192
    paths = {path for _, path in pairs}
    # Paths as keras-hub 0.32's MiTBackbone.save_to_preset writes them for mit_b0 (8 blocks, 4 stages).
    assert {"layers/overlapping_patching_and_embedding/proj/vars/0", "layers/overlapping_patching_and_embedding_3/"
            "norm/vars/1", "layers/hierarchical_transformer_encoder_7/mlp/fc2/vars/1", "layers/hierarchical_"
            "transformer_encoder/attn/sr/vars/0", "layers/layer_normalization_3/vars/1"} <= paths
    assert "layers/hierarchical_transformer_encoder_7/attn/sr/vars/0" not in paths  # stage 4: no reduction
    arrays = write_hub_preset(tmp_path / "preset", encoder)
    model = get_model("segformer", (None, None, 3), 2, encoder=MIT, encoder_weights=str(tmp_path / "preset"),
                      **TINY_DECODERS["segformer"])
    for variable, path in hub_weight_paths(model.get_layer("encoder")):
        np.testing.assert_array_equal(variable.numpy(), arrays[path])
    assert model.encoder_report == (f"encoder {MIT}: loaded 192/192 weight tensors from keras-hub preset "
                                    f"{tmp_path / 'preset'} (none skipped)")


def test_mit_preset_of_another_variant_or_file_is_one_line(tmp_path):
    encoder = get_model("segformer", (None, None, 3), 2, encoder=MIT, **TINY_DECODERS["segformer"]).get_layer(
        "encoder")
    write_hub_preset(tmp_path / "preset", encoder)
    with pytest.raises(EncoderWeightsError, match=r"config.json: this preset is a MiT with blocks \[2, 2, 2, 2\] "
                       r"and channels \[32, 64, 160, 256\], not mit_b1 .*: pick the matching encoder"):
        get_model("segformer", (64, 64, 3), 2, encoder="mit_b1", encoder_weights=str(tmp_path / "preset"))
    (tmp_path / "preset" / "config.json").unlink()
    with h5py.File(tmp_path / "preset" / "model.weights.h5", "a") as file:
        del file["layers/layer_normalization_3"]
    with pytest.raises(EncoderWeightsError, match=r"not a keras-hub mit_b0 weights file \(2 of 192 tensors missing"):
        get_model("segformer", (64, 64, 3), 2, encoder=MIT, encoder_weights=str(tmp_path / "preset"))
    with pytest.raises(EncoderWeightsError, match="keras-hub preset folder not found"):
        get_model("segformer", (64, 64, 3), 2, encoder=MIT, encoder_weights=str(tmp_path / "nowhere" / "preset"))


def test_mit_preset_handle_offline_and_imagenet_are_one_line(monkeypatch):
    monkeypatch.setenv("SEGKIT_OFFLINE", "1")
    handle = "kaggle://keras/mit/keras/mit_b0_ade20k_512"
    with pytest.raises(EncoderWeightsError) as error:
        get_model("segformer", (64, 64, 3), 2, encoder=MIT, encoder_weights=handle)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"keras-hub preset {handle} is not on this machine and "
                                                       "SEGKIT_OFFLINE is set")
    assert f"from_preset('{handle}').save_to_preset('<folder>')" in message
    with pytest.raises(EncoderWeightsError, match=f"has no keras.applications ImageNet file: .*e.g. {handle}"):
        get_model("segformer", (64, 64, 3), 2, encoder=MIT, encoder_weights="imagenet")


def test_mit_matches_keras_hub_on_its_own_preset(tmp_path):
    keras_hub = pytest.importorskip("keras_hub")
    depths, dims = MIT_VARIANTS[MIT]
    backbone = keras_hub.models.MiTBackbone(
        layerwise_depths=list(depths), num_layers=4, layerwise_num_heads=[1, 2, 5, 8],
        layerwise_sr_ratios=[8, 4, 2, 1], max_drop_path_rate=0.1, layerwise_patch_sizes=[7, 3, 3, 3],
        layerwise_strides=[4, 2, 2, 2], hidden_dims=list(dims), image_shape=(64, 64, 3))
    rng = np.random.default_rng(5)
    for weight in backbone.weights:
        weight.assign(rng.normal(scale=0.2, size=weight.shape).astype("float32"))
    backbone.save_to_preset(str(tmp_path / "preset"))
    model = get_model("segformer", (None, None, 3), 2, encoder=MIT, encoder_weights=str(tmp_path / "preset"),
                      **TINY_DECODERS["segformer"])
    encoder = model.get_layer("encoder")
    with h5py.File(tmp_path / "preset" / "model.weights.h5", "r") as file:
        for variable, path in hub_weight_paths(encoder):
            np.testing.assert_array_equal(variable.numpy(), file[path][()])
    x = images(size=(64, 64))
    theirs = keras.Model(backbone.inputs, backbone.pyramid_outputs)(x)
    ours = encoder(x)
    for key, feature in zip(sorted(theirs), ours, strict=True):  # keras-hub's GELU is the tanh approximation
        np.testing.assert_allclose(keras.ops.convert_to_numpy(feature), keras.ops.convert_to_numpy(theirs[key]),
                                   atol=2e-2)


def test_mit_flops_and_receptive_field_count_the_attention(capsys):
    from models.flops import count_macs
    from models.receptive_field import theoretical_receptive_field

    model = get_model("segformer", (256, 256, 3), 2, encoder=MIT, embed_dim=8)
    block = model.get_layer("encoder").get_layer("block_0_0")  # 64x64 tokens, 32 channels, keys 8x8
    tokens, context = 64 * 64, 8 * 8
    expected = 2 * tokens * 32 * 32 + 2 * context * 32 * 32 + tokens * 32 * 32 + 2 * tokens * context * 32 + \
        2 * tokens * 32 * 128 + tokens * 128 * 9
    assert block.count_macs((None, 64, 64, 32)) == expected
    assert count_macs(model) > 8 * expected
    assert theoretical_receptive_field(model) >= 256  # one attention block sees the whole image


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
    from app.training.callbacks import AtomicBackupAndRestore

    model, callbacks = compiled(freeze_encoder_epochs=2)
    fit(model, 1, callbacks + [AtomicBackupAndRestore(tmp_path / "backup")])
    frozen = encoder_weights(model)
    resumed, callbacks = compiled(freeze_encoder_epochs=2)  # a new process: same config, fresh model
    fit(resumed, 2, callbacks + [AtomicBackupAndRestore(tmp_path / "backup")])  # restores, runs epoch 1 only
    assert resumed.optimizer.iterations.numpy() == 2 * model.optimizer.iterations.numpy()
    assert not any(changed(frozen, encoder_weights(resumed)))


@pytest.mark.slow
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
    from app.config.loading import load_config, parse_override

    config = load_config(overrides=[parse_override(f"model.encoder={SMALL}")])
    assert config.model.builder_options() == {"encoder": SMALL}
    assert config.train.freeze_encoder_epochs == 0 and config.train.encoder_lr_scale == 1.0


@pytest.mark.slow
@pytest.mark.parametrize("decoder, encoder", [("fpn", SMALL), ("segformer", "mit_b0")])
def test_int8_tflite_export_of_an_encoder_model(decoder, encoder, tmp_path):
    from app.exporting.exporters import convert_tflite, litert_compatible, tflite_archive
    from app.inference.litert import LiteRTModel

    model = get_model(decoder, (None, None, 3), 3, encoder=encoder, **TINY_DECODERS[decoder])
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
