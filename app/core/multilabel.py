"""Multi-label runs (`data.mask: multilabel`): loss and metrics, scores, prediction masks and the evaluation report.

A multi-label model has one sigmoid output per class (classes may overlap); everything here thresholds the
class probabilities (default 0.5) instead of taking an argmax. The run folder's config.yaml says
`data.mask: multilabel`, which is how prediction, evaluation and export recognise such a run.
"""
import copy
import json
import pathlib

import numpy as np
import pandas as pd
from tqdm import tqdm

from data.multilabel import MULTILABEL
from models.losses import get_multilabel_loss
from models.multilabel_metrics import PER_CLASS_SCORES, multilabel_counts, multilabel_metrics, multilabel_scores

SUMMARY_KEYS = ("miou", "mean_dice", "mean_precision", "mean_recall")
DEFAULT_THRESHOLD = 0.5


def is_multilabel_run(config):
    """Whether a run config (config.yaml) is multi-label."""
    return ((config or {}).get("data") or {}).get("mask") == MULTILABEL


def loss_and_metrics(config, class_names, class_weights=None):
    """(loss, metrics) of a multi-label run: the config's loss name in its multi-label form (ce -> binary
    cross-entropy, dice_ce -> Dice + BCE, dice, focal, tversky) and per-class IoU/Dice/precision/recall."""
    options = {k: v for k, v in config["loss"].items() if k not in ("name", "class_weights", "border_weights")}
    loss = get_multilabel_loss(config["loss"]["name"], num_classes=len(class_names),
                               class_weights=None if class_weights is None else list(map(float, class_weights)),
                               **options)
    return loss, multilabel_metrics(len(class_names), class_names, DEFAULT_THRESHOLD)


def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float32)))


def scores_table(counts, class_names, positives=None, pixels=None):
    """(per-class DataFrame indexed by class name, summary dict) from (C, 3) [TP, FP, FN] counts.

    Columns iou, dice, precision, recall, and pixel_share (true pixels of the class / valid pixels) when
    `positives` (C,) and `pixels` (C,) are given.
    """
    scores = multilabel_scores(counts)
    table = pd.DataFrame({column: scores[column] for column in PER_CLASS_SCORES}, index=list(class_names))
    if positives is not None:
        table["pixel_share"] = np.asarray(positives) / np.maximum(np.asarray(pixels), 1)
    table.index.name = "class"
    for column, name in enumerate(("tp", "fp", "fn")):
        table[name] = np.asarray(counts)[:, column]
    return table, {key: float(scores[key]) for key in SUMMARY_KEYS}


def _per_class(table):
    return {name: {k: (None if isinstance(v, float) and np.isnan(v) else float(v)) for k, v in row.items()}
            for name, row in table.to_dict("index").items()}


def final_metrics(model, prepared, threshold=DEFAULT_THRESHOLD):
    """Scores of `model` on the validation split (training split when there is none), as a JSON-able dict."""
    dataset, split = prepared.evaluation()
    num_classes = prepared.encoding.num_classes
    counts = np.zeros((num_classes, 3), np.int64)
    positives, pixels = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    for batch in dataset.as_numpy_iterator():
        probabilities = sigmoid(model.predict_on_batch(batch[0]))
        counts += multilabel_counts(batch[1], probabilities, threshold)
        positives += (batch[1] == 1).reshape(-1, num_classes).sum(0)
        pixels += ((batch[1] == 0) | (batch[1] == 1)).reshape(-1, num_classes).sum(0)
    table, summary = scores_table(counts, prepared.class_names, positives, pixels)
    summary["split"] = split
    summary["threshold"] = threshold
    summary["per_class"] = _per_class(table)
    return summary


def probabilities(predictor, image, **options):
    """(H, W, C) float32 class probabilities of an image (`app.core.inference.predict_image` options).

    Keras models give logits (sigmoid applied here); exported LiteRT models already end in a sigmoid.
    """
    from app.core.inference import predict_image

    scores = predict_image(predictor, image, **options)
    return scores if not hasattr(predictor.model, "output_shape") else sigmoid(scores)


def predict_masks(predictor, image, threshold=DEFAULT_THRESHOLD, **options):
    """(H, W, C) uint8 binary masks (1 = class present): probabilities above `threshold`."""
    return (probabilities(predictor, image, **options) > threshold).astype(np.uint8)


def write_masks(out, stem, masks, class_names):
    """Write `out/<class>/<stem>.png` (0/255) for each class: the per-class folder layout training reads."""
    from app.core.outputs import output_dir, write_image

    for index, name in enumerate(class_names):
        write_image(output_dir(pathlib.Path(out) / name) / f"{stem}.png", masks[..., index] * 255)


def colourise(masks, colours):
    """(H, W, C) binary masks -> (H, W, 3) uint8 RGB: the mean colour of the classes present, black where none."""
    masks = np.asarray(masks, np.float32)
    present = masks.sum(-1, keepdims=True)
    mean = masks @ np.asarray(colours, np.float32) / np.maximum(present, 1)
    return mean.round().astype(np.uint8)


def overlay(image, masks, colours, alpha=0.5):
    """Blend `colourise` over a uint8 RGB image where any class is present."""
    coloured = colourise(masks, colours).astype(np.float32)
    blended = np.where(np.asarray(masks).any(-1, keepdims=True), (1 - alpha) * image + alpha * coloured, image)
    return blended.round().astype(np.uint8)


def evaluate_rows(predictor, rows, encoding, threshold=DEFAULT_THRESHOLD, options=None):
    """(counts (C, 3), true pixels (C,), valid pixels (C,), per-image DataFrame) of a split's rows."""
    from data.masks import read_image

    num_classes = predictor.num_classes
    counts = np.zeros((num_classes, 3), np.int64)
    positives, pixels = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    per_image = []
    for row in tqdm(list(rows.itertuples(index=False)), unit="image", disable=None):
        image = read_image(row.image, predictor.channels)
        truth = encoding.read(row.mask)
        if truth.shape[:2] != image.shape[:2]:
            raise ValueError(f"{row.mask}: mask is {truth.shape[1]}x{truth.shape[0]} but its image {row.image} "
                             f"is {image.shape[1]}x{image.shape[0]} (WxH)")
        image_counts = multilabel_counts(truth, probabilities(predictor, image, **(options or {})), threshold)
        counts += image_counts
        positives += (truth == 1).reshape(-1, num_classes).sum(0)
        pixels += (truth <= 1).reshape(-1, num_classes).sum(0)
        scores = multilabel_scores(image_counts)
        per_image.append({"image": row.image, "mask": row.mask, "miou": scores["miou"],
                          "mean_dice": scores["mean_dice"]})
    return counts, positives, pixels, pd.DataFrame(per_image, columns=["image", "mask", "miou", "mean_dice"])


def write_report(predictor, run_dir, data=None, split="val", out=None, threshold=DEFAULT_THRESHOLD, options=None,
                 log=print):
    """Evaluate a multi-label run on a split; returns (folder, summary dict).

    The folder (default `<run>/report-<split>`) holds per_class.csv (iou, dice, precision, recall, pixel_share,
    tp, fp, fn), per_image.csv (miou, mean_dice), summary.json and report.html.
    """
    from app.core.outputs import output_dir, write_text
    from app.core.report import _html, _none_if_nan, split_rows

    run_dir = pathlib.Path(run_dir)
    config = copy.deepcopy(predictor.config)
    if data is not None:
        config["data"]["path"] = str(data)
    rows, encoding = split_rows(config, split, predictor.num_classes)
    out = output_dir(out if out is not None else run_dir / f"report-{split}")
    log(f"evaluating {predictor.path} on {config['data']['path']} ({split}, {len(rows)} images, multi-label, "
        f"threshold {threshold})")
    counts, positives, pixels, per_image = evaluate_rows(predictor, rows, encoding, threshold, options)
    table, summary = scores_table(counts, predictor.class_names, positives, pixels)
    log(table.to_string(float_format=lambda v: f"{v:.4f}"))
    log("  ".join(f"{key} {value:.4f}" for key, value in summary.items()))
    write_text(out / "per_class.csv", table.to_csv())
    write_text(out / "per_image.csv", per_image.to_csv(index=False))
    meta = {"run": str(run_dir), "model": str(predictor.path), "data": config["data"]["path"], "split": split,
            "images": len(rows), "mask": MULTILABEL, "threshold": threshold,
            "prediction": {k: v for k, v in (options or {}).items() if v}}
    result = {**meta, **{k: _none_if_nan(v) for k, v in summary.items()}, "per_class": _per_class(table)}
    write_text(out / "summary.json", json.dumps(result, indent=2))
    figures = [("Training curves", run_dir / "curves.png")] if (run_dir / "curves.png").is_file() else []
    write_text(out / "report.html", _html(f"Evaluation of {run_dir.name} on {split} (multi-label)", meta, summary,
                                          table, figures, []))
    log(f"report: {out / 'report.html'}")
    return out, result
