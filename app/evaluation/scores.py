"""Confusion matrices of a model over a dataset, the score tables built from them, per-image scores and HD95."""
import cv2
import numpy as np
import pandas as pd

from data.masks import IGNORE_INDEX
from models.metrics import confusion_scores
from models.multilabel_metrics import PER_CLASS_SCORES, multilabel_scores

PER_CLASS_COLUMNS = ("iou", "dice", "precision", "recall", "pixel_share")
SUMMARY_KEYS = ("miou", "mean_dice", "pixel_accuracy", "mean_class_accuracy", "fwiou")


def sparse_labels(mask):
    """Class-index labels from a sparse or one-hot batch (one-hot void rows, all zero, become IGNORE_INDEX)."""
    mask = np.asarray(mask)
    if mask.ndim == 4 and mask.shape[-1] > 1:
        return np.where(mask.sum(-1) > 0, mask.argmax(-1), IGNORE_INDEX)
    return mask.reshape(mask.shape[:3])


def confusion_matrix(labels, predictions, num_classes):
    """(C, C) counts, rows = truth, columns = prediction; labels outside 0..C-1 (void) are skipped."""
    labels, predictions = np.asarray(labels).ravel(), np.asarray(predictions).ravel()
    valid = (labels >= 0) & (labels < num_classes)
    flat = labels[valid].astype(np.int64) * num_classes + predictions[valid]
    return np.bincount(flat, minlength=num_classes**2).reshape(num_classes, num_classes)


def confusion_matrix_on(model, dataset, num_classes):
    """Sum of confusion matrices of `model`'s argmax predictions over a batched (image, mask[, w]) dataset."""
    total = np.zeros((num_classes, num_classes), np.int64)
    for batch in dataset:
        logits = np.asarray(model.predict_on_batch(batch[0]))
        total += confusion_matrix(sparse_labels(batch[1]), logits.argmax(-1), num_classes)
    return total


def scores_table(matrix, class_names):
    """(per-class DataFrame indexed by class name, dict of summary scores) from a confusion matrix."""
    scores = confusion_scores(matrix)
    table = pd.DataFrame({column: scores[column] for column in PER_CLASS_COLUMNS}, index=list(class_names))
    table.index.name = "class"
    summary = {key: float(scores[key]) for key in SUMMARY_KEYS}
    return table, summary


def per_class_dict(table):
    """{class: {score: value}} of a `scores_table` DataFrame, JSON-able (NaN becomes None)."""
    return {name: {k: (None if np.isnan(v) else float(v)) for k, v in row.items()}
            for name, row in table.to_dict("index").items()}


def per_image_scores(matrix, class_names):
    """Scores of one image's confusion matrix: miou, pixel_accuracy, mean_dice and dice_<c>, iou_<c> per class.

    A class absent from both the image's truth and its prediction has NaN Dice and IoU (0/0): it is left out of
    the image's means and of the means over images, as the pooled scores leave out absent classes.
    """
    scores = confusion_scores(matrix)
    row = {"miou": float(scores["miou"]), "pixel_accuracy": float(scores["pixel_accuracy"]),
           "mean_dice": float(scores["mean_dice"])}
    for name, dice, iou in zip(class_names, scores["dice"], scores["iou"]):
        row[f"dice_{name}"], row[f"iou_{name}"] = float(dice), float(iou)
    return row


def _surface(mask):
    """Pixels of a boolean mask with a 4-neighbour outside it (the image border counts as outside)."""
    padded = np.pad(mask.astype(np.uint8), 1)
    eroded = cv2.erode(padded, np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8))[1:-1, 1:-1]
    return mask & ~eroded.astype(bool)


def hd95(truth, prediction):
    """95th-percentile symmetric Hausdorff distance (pixels) between two boolean masks' surfaces.

    The distances from every surface pixel of each mask to the other mask's surface are pooled and their 95th
    percentile taken (as medpy's `hd95`). Conventions: both masks empty -> NaN (left out of means, like Dice);
    exactly one empty -> the image diagonal (the largest distance possible, so a missed or hallucinated class
    is penalised rather than dropped).
    """
    truth, prediction = np.asarray(truth, bool), np.asarray(prediction, bool)
    if not truth.any() and not prediction.any():
        return float("nan")
    if not truth.any() or not prediction.any():
        return float(np.hypot(*truth.shape))
    surfaces = _surface(truth), _surface(prediction)
    to_truth, to_prediction = (cv2.distanceTransform((~s).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
                               for s in surfaces)
    distances = np.concatenate([to_prediction[surfaces[0]], to_truth[surfaces[1]]])
    return float(np.percentile(distances, 95))


def hd95_per_class(truth, prediction, num_classes):
    """hd95 of each class between a label map (void: values >= num_classes, ignored) and a prediction."""
    valid = truth < num_classes
    return [hd95(truth == c, (prediction == c) & valid) for c in range(num_classes)]


def mean_over_images(per_image, class_names, hd95_scores=False):
    """Means over images of the per-image scores (NaN entries left out): mdice, miou and per-class dice, iou
    (and hd95). `mdice` is the mean over images of each image's mean Dice; for a two-class set the
    foreground's `dice` is the usual per-image figure (polyps, nuclei)."""
    def mean(column):
        values = per_image[column].dropna()
        return float(values.mean()) if len(values) else None

    result = {"images": int(len(per_image)), "mdice": mean("mean_dice"), "miou": mean("miou"),
              "dice": {name: mean(f"dice_{name}") for name in class_names},
              "iou": {name: mean(f"iou_{name}") for name in class_names}}
    if hd95_scores:
        result["hd95"] = {name: mean(f"hd95_{name}") for name in class_names}
    return result


MULTILABEL_SUMMARY_KEYS = ("miou", "mean_dice", "mean_precision", "mean_recall")


def multilabel_scores_table(counts, class_names, positives=None, pixels=None):
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
    return table, {key: float(scores[key]) for key in MULTILABEL_SUMMARY_KEYS}
