"""Export: every format from a tiny trained run, reloaded and compared with Keras; tolerances; bad input."""
import json
import pathlib

import keras
import numpy as np
import pytest
import tensorflow as tf

from app import export, train
from app.exporting.exporters import (FORMATS, ExportError, ParityError, convert_tflite, export_run, float32_model,
                                     litert_compatible, tflite_archive)
from app.inference.litert import LiteRTModel
from data.masks import read_image
from models.registry import MODELS, get_model

REPO = pathlib.Path(__file__).resolve().parents[1]
SIZE = (64, 64)
IMAGES = np.stack([np.round(read_image(path)[96:96 + SIZE[0], 96:96 + SIZE[1]] * 255).astype(np.uint8)
                   for path in sorted((REPO / "data" / "nuclei" / "images").glob("*.png"))[:3]])
"""Centre crops of three nuclei images, uint8."""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    assert train.main(["--epochs", "1", "--runs-dir", str(runs), "--set", "model.base_filters=4", "--set",
                       "model.depth=2", "--set", f"data.image_size=[{SIZE[0]},{SIZE[1]}]"]) == 0
    (run,) = runs.iterdir()
    return run


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    # A 1-epoch, 7k-parameter model is too crude for the 1-point int8 tolerance to be a stable test;
    # test_broken_calibration_trips_the_tolerance checks that tolerance.
    table = export_run(run_dir, FORMATS, out, calibration_images=16, tolerances={"tflite-int8": 5.0}, latency_runs=2)
    return out, table, float32_model(keras.saving.load_model(run_dir / "model.keras"))  # what export writes


def keras_probabilities(model, images_uint8):
    return tf.nn.softmax(model.predict_on_batch(images_uint8.astype(np.float32) / 255)).numpy()


def test_export_writes_every_format_and_the_parity_report(exported):
    out, table, _ = exported
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["savedmodel", "model_fp32.tflite", "model_fp16.tflite", "model_int8.tflite", "parity.csv", "parity.json"])
    assert list(table["format"]) == ["keras", *FORMATS]
    assert table["passed"].all()
    report = json.loads((out / "parity.json").read_text())
    assert report["size"] == list(SIZE) and report["split"] == "val"
    assert [row["format"] for row in report["formats"]] == list(table["format"])
    sizes = table.set_index("format")["size_mb"]
    assert sizes["tflite-int8"] < sizes["tflite-fp16"] < sizes["tflite-fp32"]


def test_savedmodel_takes_uint8_images_of_any_size(exported):
    out, _, model = exported
    serve = tf.saved_model.load(str(out / "savedmodel")).signatures["serving_default"]
    for images in (IMAGES, IMAGES[:, :50, :40]):
        result = serve(images=tf.constant(images))
        expected = keras_probabilities(model, np.pad(images, ((0, 0), (0, -images.shape[1] % 4),
                                                               (0, -images.shape[2] % 4), (0, 0))))
        expected = expected[:, : images.shape[1], : images.shape[2]]
        assert result["mask"].dtype == tf.uint8 and result["mask"].shape == images.shape[:3]
        np.testing.assert_allclose(result["probabilities"].numpy(), expected, atol=1e-4)
        assert (result["mask"].numpy() == expected.argmax(-1)).mean() > 0.99


@pytest.mark.parametrize("fmt, max_diff, min_agreement", [
    ("tflite-fp32", 1e-4, 0.99), ("tflite-fp16", 1e-2, 0.99), ("tflite-int8", 0.25, 0.9)])
def test_tflite_matches_keras(exported, fmt, max_diff, min_agreement):
    out, table, model = exported
    litert = LiteRTModel(out / f"model_{fmt.split('-')[1]}.tflite", num_threads=1)
    assert litert.input_size == SIZE and litert.channels == 3
    probabilities = litert.predict_on_batch(IMAGES.astype(np.float32) / 255)
    expected = keras_probabilities(model, IMAGES)
    assert probabilities.shape == expected.shape and probabilities.dtype == np.float32
    assert np.abs(probabilities - expected).max() < max_diff
    assert (probabilities.argmax(-1) == expected.argmax(-1)).mean() > min_agreement
    row = table.set_index("format").loc[fmt]
    assert row["agreement_pct"] > 100 * min_agreement and row["max_prob_diff"] < max_diff


def test_litert_model_rejects_another_size(exported):
    litert = LiteRTModel(exported[0] / "model_int8.tflite")
    with pytest.raises(ValueError, match=r"takes images of shape \(batch, 64, 64, 3\)"):
        litert.predict_on_batch(np.zeros((1, 32, 32, 3), np.float32))


def test_broken_calibration_trips_the_tolerance(run_dir, tmp_path):
    with pytest.raises(ParityError, match=r"tflite-int8: mIoU .* on the val split .* > tolerance 1 "):
        export_run(run_dir, ["tflite-int8"], tmp_path, calibration=np.zeros((4, *SIZE, 3), np.float32),
                   latency_runs=1)
    assert not json.loads((tmp_path / "parity.json").read_text())["formats"][1]["passed"]


def test_cli_exits_1_when_a_format_fails_its_tolerance(run_dir, tmp_path, capsys):
    argv = ["--run", str(run_dir), "--format", "tflite-fp32", "--out", str(tmp_path), "--tolerance-float", "-1"]
    assert export.main(argv) == 1
    assert "error: tflite-fp32: mIoU" in capsys.readouterr().err


@pytest.mark.parametrize("files, argv, message", [
    (["config.yaml"], [], "no model.keras in this run folder"),
    (None, [], "no such run folder"),
    (["config.yaml", "model.keras"], ["--size", "62", "64"], "export size 62x64 must be a multiple of 4 for unet"),
])
def test_bad_input_is_one_line(run_dir, tmp_path, capsys, files, argv, message):
    run = tmp_path / "run"
    if files is not None:
        run.mkdir()
        for name in files:
            (run / name).write_bytes((run_dir / name).read_bytes())
    assert export.main(["--run", str(run), "--all", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_unconvertible_layer_is_named(tmp_path):
    class Erfinv(keras.layers.Layer):
        def call(self, x):
            return tf.math.erfinv(tf.tanh(x))

    inputs = keras.Input((*SIZE, 3))
    model = keras.Model(inputs, Erfinv(name="odd_layer")(keras.layers.Conv2D(2, 1)(inputs)))
    tflite_archive(model, SIZE).write_out(str(tmp_path), verbose=False)
    with pytest.raises(ExportError, match=r"tflite-fp32: cannot convert layer 'odd_layer' \(Erfinv\): tf.Erfinv"):
        convert_tflite(tmp_path, "tflite-fp32", model)


TINY = {"unet": dict(depth=2, base_filters=4), "fcn8s": dict(base_filters=4, fc_filters=8),
        "fcn16s": dict(base_filters=4, fc_filters=8), "fcn32s": dict(base_filters=4, fc_filters=8),
        "segnet": dict(depth=2, base_filters=4), "deeplabv3plus": dict(base_filters=4, filters=8, low_level_filters=4),
        "ternausnet": dict(base_filters=4), "baseline": dict(num_layers=2, filters=4),
        "fpn": dict(encoder="mobilenetv3_small", pyramid_filters=8, segmentation_filters=4),
        "segformer": dict(encoder="mobilenetv3_small", embed_dim=8)}
MOBILENET = dict(backbone="mobilenetv2", filters=8, low_level_filters=4)


def test_tiny_models_cover_the_registry_and_the_cli_lists_every_format():
    assert set(TINY) == set(MODELS)
    assert export.FORMATS == FORMATS


@pytest.mark.slow
@pytest.mark.parametrize("name, options, fmt", [
    *(pytest.param(name, options, "tflite-fp32", id=name) for name, options in TINY.items()),
    pytest.param("deeplabv3plus", MOBILENET, "tflite-fp32", id="deeplabv3plus-mobilenetv2"),
    pytest.param("segnet", TINY["segnet"], "tflite-int8", id="segnet-int8")])
def test_every_registry_model_converts(name, options, fmt, tmp_path):
    model = get_model(name, (None, None, 3), 3, **options)
    tflite_archive(litert_compatible(model), SIZE).write_out(str(tmp_path / "graph"), verbose=False)
    (tmp_path / "model.tflite").write_bytes(convert_tflite(tmp_path / "graph", fmt, model, IMAGES / 255))
    probabilities = LiteRTModel(tmp_path / "model.tflite").predict_on_batch(IMAGES / 255)
    assert probabilities.shape == (len(IMAGES), *SIZE, 3)
    if fmt == "tflite-fp32":
        np.testing.assert_allclose(probabilities, keras_probabilities(model, IMAGES), atol=1e-4)
