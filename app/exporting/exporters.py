"""Export a trained run to SavedModel (TF Serving) and LiteRT .tflite (fp32, fp16, int8), with a parity report.

Every exported graph ends in a softmax (a sigmoid per class for multi-label runs, `data.mask: multilabel`), so
it returns probabilities. The SavedModel takes uint8 images of any
size (padded to the model's divisor inside the graph); the .tflite files take one float image in [0, 1] (fp32,
fp16) or one quantised uint8 image (int8) of a fixed size. `LiteRTModel` runs a .tflite file like a Keras model.
"""
import functools
import json
import os
import pathlib
import re
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from app.config.errors import ConfigError
from app.config.loading import load_run_config
from app.exporting.parity import format_table, parity_data, parity_table, validation_tiles
from app.inference.predictor import load_model_file
from app.runtime.native_logs import quiet_native_stderr
from app.runtime.outputs import dataset_folders, output_dir, prepare_output_folder
from data.multilabel import MULTILABEL
from models.layers import MaxPoolingWithArgmax2D, _to_windows
from models.registry import required_divisor

FORMATS = ("savedmodel", "tflite-fp32", "tflite-fp16", "tflite-int8")
FILENAMES = {"savedmodel": "savedmodel", "tflite-fp32": "model_fp32.tflite", "tflite-fp16": "model_fp16.tflite",
             "tflite-int8": "model_int8.tflite"}
DEFAULT_TOLERANCES = {"savedmodel": 0.1, "tflite-fp32": 0.1, "tflite-fp16": 0.1, "tflite-int8": 1.0}
"""Largest mIoU drop (points, i.e. percent of mIoU) each format may show against the Keras model."""


class ExportError(ValueError):
    """A model, run folder or layer that cannot be exported; the message says which and why."""


class ParityError(ExportError):
    """An exported format whose mIoU dropped more than its tolerance below the Keras model's."""






def load_run(run_dir):
    """(config, model) of a run folder; a missing or unreadable file raises ExportError naming it."""
    run_dir = pathlib.Path(run_dir)
    if not run_dir.is_dir():
        raise ExportError(f"{run_dir}: no such run folder")
    for name in ("config.yaml", "model.keras"):
        if not (run_dir / name).is_file():
            raise ExportError(f"{run_dir}: no {name} in this run folder (did training finish?)")
    try:
        config = load_run_config(run_dir / "config.yaml")
    except ConfigError as err:
        raise ExportError(str(err)) from None
    try:
        model = load_model_file(run_dir / "model.keras")
    except ValueError as err:
        raise ExportError(str(err)) from None
    return config, model


def serving_archive(model, divisor, size=None, multilabel=False):
    """ExportArchive whose `serving_default` maps uint8 images (B, H, W, C) to `mask` and `probabilities`.

    Height and width are free unless the model or `size` fixes them: images are padded bottom/right to a
    multiple of `divisor` inside the graph and the outputs cropped back. `multilabel`: sigmoid probabilities
    and a (B, H, W, classes) uint8 `mask` of 0/1 (probability above 0.5) instead of the argmax.
    """
    height, width = size or model.input_shape[1:3]
    mask_dtype = tf.uint8 if model.output_shape[-1] <= 256 else tf.int32
    activation = tf.nn.sigmoid if multilabel else tf.nn.softmax

    def serve(images):
        x = tf.cast(images, tf.float32) / 255.0
        if height is None or width is None:
            shape = tf.shape(x)[1:3]
            pad = -shape % divisor
            x = tf.pad(x, [[0, 0], [0, pad[0]], [0, pad[1]], [0, 0]])
            probabilities = activation(model(x, training=False)[:, : shape[0], : shape[1]])
        else:
            probabilities = activation(model(x, training=False))
        if multilabel:
            return {"mask": tf.cast(probabilities > 0.5, tf.uint8), "probabilities": probabilities}
        return {"mask": tf.cast(tf.argmax(probabilities, -1), mask_dtype), "probabilities": probabilities}

    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", serve, input_signature=[
        tf.TensorSpec((None, height, width, model.input_shape[-1]), tf.uint8, name="images")])
    return archive


def export_savedmodel(model, path, divisor, size, log=print, multilabel=False):
    """Write the `serving_archive` to `path` atomically; fixed to `size` when a layer cannot take free sizes."""
    try:
        _atomic_dir(path, functools.partial(serving_archive(model, divisor, multilabel=multilabel).write_out,
                                            verbose=False))
    except (TypeError, ValueError) as err:
        log(f"savedmodel: {str(err).splitlines()[0]} The layer cannot take free image sizes, so the serving "
            f"signature takes {size[0]}x{size[1]} images.")
        _atomic_dir(path, functools.partial(serving_archive(model, divisor, size, multilabel).write_out,
                                            verbose=False))


class LiteRTMaxPoolingWithArgmax2D(MaxPoolingWithArgmax2D):
    """`MaxPoolingWithArgmax2D` with `tf.argmax`, which maps to LiteRT's ARG_MAX.

    `keras.ops.argmax` adds a negative-zero fix with a BitwiseAnd op that LiteRT has no kernel for.
    """

    def call(self, inputs):
        windows = _to_windows(inputs, self.pool_size)
        return ops.max(windows, axis=-1), tf.argmax(windows, axis=-1, output_type=tf.int32)


LITERT_REPLACEMENTS = {MaxPoolingWithArgmax2D: LiteRTMaxPoolingWithArgmax2D}
"""Layers swapped for LiteRT-convertible equivalents (same config, no weights) before conversion."""


def litert_compatible(model):
    """`model`, or a clone sharing its layers and weights where LITERT_REPLACEMENTS swaps some of them."""
    if not any(type(layer) in LITERT_REPLACEMENTS for layer in model.layers):
        return model

    def swap(layer):
        replacement = LITERT_REPLACEMENTS.get(type(layer))
        return replacement.from_config(layer.get_config()) if replacement else layer

    return keras.models.clone_model(model, clone_function=swap)


def _float32_policies(config):
    """A serialized Keras object with every mixed-precision dtype policy replaced by float32."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and str(config.get("config", {}).get("name", "")).startswith(
                "mixed_"):
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


def float32_model(model, log=print):
    """`model`, or a float32 twin with its weights where it computes in mixed precision: LiteRT converts float
    graphs only, so every exported file and the parity table's Keras reference are that float32 network."""
    if model.dtype_policy.compute_dtype == "float32" and all(
            layer.dtype_policy.compute_dtype == "float32" for layer in model.layers):
        return model
    log(f"export: the model computes in {model.dtype_policy.name}; exporting its float32 twin (same weights)")
    twin = keras.saving.deserialize_keras_object(_float32_policies(keras.saving.serialize_keras_object(model)),
                                                 safe_mode=True)
    twin.set_weights(model.get_weights())
    return twin


def tflite_archive(model, size, multilabel=False):
    """ExportArchive whose `serving_default` maps one float image (1, H, W, C) in [0, 1] to `probabilities`
    (softmax, or a sigmoid per class when `multilabel`)."""
    activation = tf.nn.sigmoid if multilabel else tf.nn.softmax
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default",
                         lambda image: {"probabilities": activation(model(image, training=False))},
                         input_signature=[tf.TensorSpec((1, *size, model.input_shape[-1]), tf.float32, name="image")])
    return archive


def convert_tflite(saved_model_dir, fmt, model, calibration=None):
    """Bytes of a .tflite file from a `tflite_archive` SavedModel, with LiteRT builtin ops only.

    fp16 stores float16 weights; int8 is full-integer post-training quantisation calibrated on
    `calibration` (float images (N, H, W, C) in [0, 1]), with uint8 input and output.

    Raises:
        ExportError: names the layer(s) whose op has no LiteRT kernel (or no int8 kernel), and why.
    """
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if fmt == "tflite-fp16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif fmt == "tflite-int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([image[None].astype(np.float32)] for image in calibration)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.uint8
    try:
        with quiet_native_stderr():
            return converter.convert()
    except Exception as err:  # ConverterError, or a RuntimeError/ValueError from the quantiser
        raise ExportError(f"{fmt}: {_conversion_failure(err, model)}") from None


def _conversion_failure(err, model):
    """One line per failing op: the Keras layer it comes from, the TF op and the converter's reason."""
    names = {layer.name: type(layer).__name__ for layer in model.layers}
    lines = []
    for error in getattr(err, "errors", None) or []:
        calls = [call.name for call in error.location.call] or [error.location.name]
        scopes = [part for call in calls for part in call.split("@")[0].split("/")]
        layer = next((re.sub(r"_\d+$", "", s) for s in scopes if re.sub(r"_\d+$", "", s) in names), None)
        where = f"layer {layer!r} ({names[layer]})" if layer else "an op outside any layer"
        reason = error.error_message.splitlines()[0] if error.error_message else str(error.error_code)
        line = f"cannot convert {where}: {error.operator.name or 'op'}: {reason}"
        if line not in lines:
            lines.append(line)
    return "\n".join(lines) or f"conversion failed: {str(err).strip().splitlines()[0]}"


def _atomic_bytes(path, data):
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_dir(path, write):
    """Call `write(tmp_dir)` on a fresh folder beside `path`, then swap it in place of `path`."""
    tmp, old = path.with_name(f".{path.name}.tmp"), path.with_name(f".{path.name}.old")
    for leftover in (tmp, old):
        shutil.rmtree(leftover, ignore_errors=True)
    try:
        write(str(tmp))
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


















def export_run(run_dir, formats=FORMATS, out_dir=None, size=None, calibration_images=100, tolerances=None,
               calibration=None, latency_runs=20, num_threads=None, log=print, overwrite=None):
    """Export a run folder to `formats`, write parity.csv/json beside the files and check the tolerances.

    Args:
        run_dir: str. A run folder with config.yaml and model.keras.
        formats: list. Some of FORMATS. Defaults to all.
        out_dir: str. Where the files go. Defaults to `<run_dir>/export`.
        size: tuple. (H, W) of the .tflite inputs and the validation tiles. Defaults to the trained data.image_size.
        calibration_images: int. Training samples that calibrate the int8 quantisation. Defaults to 100.
        tolerances: dict. Largest mIoU drop in points per format. Defaults to DEFAULT_TOLERANCES.
        calibration: array. Float images (N, H, W, C) to calibrate with instead of training samples.
        latency_runs: int. Timed calls per latency figure. Defaults to 20.
        num_threads: int. The "all threads" count. Defaults to the number of CPU cores.
        log: callable. Progress and table printer. Defaults to print.
        overwrite: bool. Replace files already in `out_dir`. Defaults to True for `<run_dir>/export`, the run's
            own folder, else False. `out_dir` must lie outside the dataset folder.

    Returns:
        The parity table (pandas DataFrame), Keras first.

    Raises:
        ExportError: bad run folder, size or format, or a layer that cannot be converted.
        ParityError: a format's mIoU dropped more than its tolerance (files and report are still written).
    """
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ExportError(f"unknown format(s) {unknown}; valid formats are: {', '.join(FORMATS)}")
    run_dir = pathlib.Path(run_dir)
    config, model = load_run(run_dir)
    model = float32_model(model, log)
    multilabel = config.data.mask == MULTILABEL
    divisor = required_divisor(config.model.name, **config.model.builder_options())
    size = tuple(int(s) for s in (size or config.data.image_size))
    if any(s % divisor for s in size):
        valid = "x".join(str(max(divisor, s // divisor * divisor)) for s in size)
        raise ExportError(f"export size {size[0]}x{size[1]} must be a multiple of {divisor} for "
                          f"{config.model.name} (e.g. {valid})")
    out = pathlib.Path(out_dir) if out_dir else run_dir / "export"
    paths = {fmt: out / FILENAMES[fmt] for fmt in FORMATS if fmt in formats}
    prepare_output_folder(out, dataset_folders(config), [*paths.values(), out / "parity.csv", out / "parity.json"],
                          out_dir is None if overwrite is None else overwrite, create=False)
    tolerances = {**DEFAULT_TOLERANCES, **(tolerances or {})}
    drawn = calibration_images if "tflite-int8" in formats and calibration is None else 0
    dataset, split, training_samples, class_names, num_classes = parity_data(config, size, drawn)
    calibration = training_samples if calibration is None else np.asarray(calibration, np.float32)
    output_dir(out)
    if "savedmodel" in paths:
        log(f"exporting savedmodel -> {paths['savedmodel']}")
        export_savedmodel(model, paths["savedmodel"], divisor, size, log, multilabel)
    tflite = [fmt for fmt in paths if fmt.startswith("tflite")]
    with tempfile.TemporaryDirectory(dir=out, prefix=".float-graph-") as float_graph:
        if tflite:
            tflite_archive(litert_compatible(model), size, multilabel).write_out(float_graph, verbose=False)
        for fmt in tflite:
            log(f"exporting {fmt} -> {paths[fmt]}")
            _atomic_bytes(paths[fmt], convert_tflite(float_graph, fmt, model, calibration))

    tiles = validation_tiles(dataset, size, config.train.batch_size, multilabel)
    table = parity_table(model, run_dir / "model.keras", paths, tiles, class_names, num_classes,
                         {f: tolerances[f] for f in paths}, latency_runs, num_threads, multilabel)
    report = {"run": str(run_dir), "size": list(size), "split": split, "calibration_images": len(calibration),
              "num_threads": num_threads or os.cpu_count(),
              "input_normalization": config.data.normalization,
              "formats": table.astype(object).where(table.notna(), None).to_dict("records")}
    _atomic_bytes(out / "parity.csv", table.to_csv(index=False))
    _atomic_bytes(out / "parity.json", json.dumps(report, indent=2))
    log(format_table(table))
    failed = table[~table["passed"]]
    if len(failed):
        raise ParityError("\n".join(
            f"{row.format}: mIoU {row.miou_pct:.2f} on the {split} split vs Keras {table['miou_pct'].iloc[0]:.2f}, "
            f"a drop of {row.miou_drop_pts:.2f} points > tolerance {row.tolerance_pts:g} (see {out / 'parity.csv'})"
            for row in failed.itertuples()))
    return table


