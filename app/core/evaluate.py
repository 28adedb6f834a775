"""Confusion matrices of a model over a dataset and the score tables built from them."""
import numpy as np
import pandas as pd

from data.masks import IGNORE_INDEX
from models.metrics import confusion_scores

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
