"""The export parity gate: mIoU and latency of each exported file against the Keras model on validation tiles."""
import os
import pathlib
import time

import numpy as np
import pandas as pd
import tensorflow as tf

from app.dataset.prepared import prepare_data
from app.evaluation.scores import confusion_matrix, scores_table, sparse_labels
from app.inference.litert import LiteRTModel
from data.masks import IGNORE_INDEX
from models.multilabel_metrics import multilabel_counts, multilabel_scores


def parity_data(config, size, calibration_images):
    """(dataset, split name, calibration images, class names, num_classes) for an export size.

    The validation split (training split when there is none) comes from the evaluation pipeline at the
    training scale; calibration images are augmented crops of `size` from the training pipeline, rounded to
    1/255 steps as uint8 camera frames would be.
    """
    config = config.replace(data={"image_size": list(size)}, loss={"border_weights": None})
    prepared = prepare_data(config)
    samples = prepared.train.unbatch().repeat().take(calibration_images)
    calibration = np.array([np.round(image * 255) / 255 for image, *_ in samples.as_numpy_iterator()], np.float32)
    dataset, split = prepared.evaluation()
    return dataset, split, calibration, prepared.class_names, prepared.encoding.num_classes


def validation_tiles(dataset, size, batch_size, multilabel=False):
    """(images, labels) chunks of `size` tiles cut from a batched (image, mask[, w]) dataset.

    Images are padded with zeros and labels with IGNORE_INDEX to a multiple of `size`; images are rounded to
    1/255 steps (uint8 frames); tiles of padding only are dropped. Labels are class indices (B, h, w), or the
    multi-hot masks (B, h, w, C) when `multilabel`.
    """
    height, width = size
    for batch in dataset:
        images, labels = np.round(batch[0].numpy() * 255) / 255, batch[1].numpy()
        labels = labels if multilabel else sparse_labels(labels)
        classes = labels.shape[3:]
        pad = ((0, 0), (0, -images.shape[1] % height), (0, -images.shape[2] % width))
        images = np.pad(images, pad + ((0, 0),))
        labels = np.pad(labels, pad + ((0, 0),) * len(classes), constant_values=IGNORE_INDEX)
        rows, cols = images.shape[1] // height, images.shape[2] // width
        images = images.reshape(-1, rows, height, cols, width, images.shape[-1]).transpose(0, 1, 3, 2, 4, 5)
        labels = labels.reshape(-1, rows, height, cols, width, *classes)
        labels = labels.transpose(0, 1, 3, 2, 4, *range(5, labels.ndim)).reshape(-1, height, width, *classes)
        images = images.reshape(-1, height, width, images.shape[-1])
        keep = (labels != IGNORE_INDEX).reshape(len(labels), -1).any(1)
        images, labels = images[keep].astype(np.float32), labels[keep]
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size], labels[start:start + batch_size]


def _softmax(logits):
    exp = np.exp(logits - logits.max(-1, keepdims=True))
    return exp / exp.sum(-1, keepdims=True)


def _sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-logits))


def predictors(model, paths, num_threads, multilabel=False):
    """{format: {threads: probabilities(float images)}} for Keras and each exported file.

    LiteRT files run with 1 thread and with `num_threads`; Keras and the SavedModel run on TensorFlow with its
    default threads, listed under `num_threads`.
    """
    activation = _sigmoid if multilabel else _softmax
    result = {"keras": {num_threads: lambda images: activation(np.asarray(model.predict_on_batch(images)))}}
    for fmt, path in paths.items():
        if fmt == "savedmodel":
            serve = tf.saved_model.load(str(path)).signatures["serving_default"]
            result[fmt] = {num_threads: lambda images, serve=serve: serve(
                images=tf.constant(np.round(images * 255).astype(np.uint8)))["probabilities"].numpy()}
        else:
            result[fmt] = {threads: LiteRTModel(path, threads).predict_on_batch for threads in sorted({1, num_threads})}
    return result


def latency_ms(predict, image, runs):
    """Median milliseconds of `predict` on one image (batch of 1), after two warm-up calls."""
    batch = image[None]
    for _ in range(2):
        predict(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predict(batch)
        times.append(time.perf_counter() - start)
    return 1000 * float(np.median(times))


def _file_size(path):
    path = pathlib.Path(path)
    files = [path] if path.is_file() else [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files) / 1e6


def parity_table(model, model_path, paths, tiles, class_names, num_classes, tolerances, latency_runs=20,
                 num_threads=None, multilabel=False):
    """One row per format (Keras first): size, mIoU on `tiles` and its drop, agreement with Keras, latency.

    Latency is per image at batch 1: LiteRT with 1 thread and with `num_threads` (default: all cores);
    Keras and the SavedModel run on TensorFlow with its default threads (reported under all threads).
    `multilabel`: mIoU is the mean per-class IoU of probabilities above 0.5, and agreement counts the
    (pixel, class) decisions that match Keras.
    """
    num_threads = num_threads or os.cpu_count()
    run = predictors(model, paths, num_threads, multilabel)
    one = {fmt: by_threads[num_threads] for fmt, by_threads in run.items()}
    shape = (num_classes, 3) if multilabel else (num_classes, num_classes)
    matrices = {fmt: np.zeros(shape, np.int64) for fmt in one}
    agree, pixels, max_diff = dict.fromkeys(one, 0), 0, dict.fromkeys(one, 0.0)
    first_image = None
    for images, labels in tiles:
        first_image = images[0] if first_image is None else first_image
        reference = one["keras"](images)
        valid = labels != IGNORE_INDEX
        pixels += int(valid.sum())
        for fmt, predict in one.items():
            probabilities = reference if fmt == "keras" else predict(images)
            if multilabel:
                matrices[fmt] += multilabel_counts(labels, probabilities)
                agree[fmt] += int(((probabilities > 0.5) == (reference > 0.5))[valid].sum())
            else:
                classes = probabilities.argmax(-1)
                matrices[fmt] += confusion_matrix(labels, classes, num_classes)
                agree[fmt] += int((classes == reference.argmax(-1))[valid].sum())
            max_diff[fmt] = max(max_diff[fmt], float(np.abs(probabilities - reference).max()))
    rows = []
    for fmt in one:
        scores = multilabel_scores(matrices[fmt]) if multilabel else scores_table(matrices[fmt], class_names)[1]
        miou = 100 * scores["miou"]
        latency = {threads: latency_ms(predict, first_image, latency_runs) for threads, predict in run[fmt].items()}
        rows.append({"format": fmt, "file": pathlib.Path(paths.get(fmt, model_path)).name,
                     "size_mb": _file_size(paths.get(fmt, model_path)), "miou_pct": miou,
                     "agreement_pct": 100 * agree[fmt] / max(pixels, 1), "max_prob_diff": max_diff[fmt],
                     "latency_ms_1t": latency.get(1, np.nan), "latency_ms_all": latency[num_threads],
                     "tolerance_pts": tolerances.get(fmt, np.nan)})
    table = pd.DataFrame(rows)
    table.insert(4, "miou_drop_pts", table["miou_pct"].iloc[0] - table["miou_pct"])
    table["passed"] = ~(table["miou_drop_pts"] > table["tolerance_pts"])
    return table


def format_table(table):
    """The parity table as fixed-width text."""
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-")
