"""Multi-label metrics: per-class binary confusion counts (TP, FP, FN) at a probability threshold, then scores.

Each class is its own binary problem (sigmoid output > threshold against its 0/1 mask); elements whose target
is neither 0 nor 1 (IGNORE_INDEX: void, padding) are not counted. `multilabel_scores` (NumPy, for reports) and
the metric objects share one implementation, as `models.metrics` does for the multi-class confusion matrix.
"""
import math

import keras
import numpy as np
from keras import ops

from models.metrics import _divide, _nanmean, metric_name

PER_CLASS_SCORES = ("iou", "dice", "precision", "recall")
SCORES = ("miou", "mean_dice", "mean_precision", "mean_recall") + PER_CLASS_SCORES


def _scores(counts, xp):
    tp, fp, fn = counts[:, 0], counts[:, 1], counts[:, 2]
    scores = {"iou": _divide(tp, tp + fp + fn, xp), "dice": _divide(2.0 * tp, 2.0 * tp + fp + fn, xp),
              "precision": _divide(tp, tp + fp, xp), "recall": _divide(tp, tp + fn, xp)}
    means = {"miou": "iou", "mean_dice": "dice", "mean_precision": "precision", "mean_recall": "recall"}
    return {**scores, **{mean: _nanmean(scores[key], xp) for mean, key in means.items()}}


def multilabel_scores(counts):
    """Scores of (C, 3) counts [TP, FP, FN] per class, NumPy.

    Per class (arrays of C): iou = TP / (TP + FP + FN), dice = 2TP / (2TP + FP + FN), precision = TP / (TP + FP),
    recall = TP / (TP + FN), NaN where 0/0 (a class absent from truth and prediction, never predicted, or absent).
    miou, mean_dice, mean_precision, mean_recall: means over the classes where the score is defined.
    """
    scores = _scores(np.asarray(counts, dtype=np.float64), np)
    return {k: v if np.ndim(v) else float(v) for k, v in scores.items()}


def multilabel_counts(y_true, probabilities, threshold=0.5):
    """(C, 3) int64 [TP, FP, FN] per class of multi-hot targets (..., C) and probabilities (..., C), NumPy."""
    y_true = np.asarray(y_true)
    num_classes = y_true.shape[-1]
    truth = y_true.reshape(-1, num_classes)
    predicted = np.asarray(probabilities).reshape(-1, num_classes) > threshold
    valid = (truth == 0) | (truth == 1)
    positive = truth == 1
    return np.stack([(predicted & positive).sum(0), (predicted & valid & ~positive).sum(0),
                     (~predicted & positive).sum(0)], axis=1).astype(np.int64)


@keras.saving.register_keras_serializable(package="segkit")
class MultilabelConfusionMetric(keras.metrics.Metric):
    """One score of per-class binary counts accumulated over batches (and summed over replicas).

    `y_true`: multi-hot (B, H, W, C); elements that are neither 0 nor 1 are not counted. `y_pred`: logits
    (or probabilities with `from_logits=False`) (B, H, W, C); a class is predicted where its probability is
    above `threshold`.

    Args:
        num_classes: int. C.
        score: str. One of `SCORES`, see `multilabel_scores`. Defaults to `"miou"`.
        class_id: int or None. The class of the per-class scores (iou, dice, precision, recall).
        threshold: float. Probability threshold. Defaults to `0.5`.
        from_logits: bool. Defaults to `True`.
        name: str or None. Defaults to `score` or `f"{score}_{class_id}"`.
    """

    def __init__(self, num_classes, score="miou", class_id=None, threshold=0.5, from_logits=True, name=None,
                 dtype=None):
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if (score in PER_CLASS_SCORES) != (class_id is not None):
            raise ValueError(f"class_id is needed by the per-class scores {PER_CLASS_SCORES} only (score={score!r})")
        if class_id is not None and not 0 <= class_id < num_classes:
            raise ValueError(f"class_id {class_id} is outside 0..{num_classes - 1}")
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}")
        super().__init__(name=name or (score if class_id is None else f"{score}_{class_id}"),
                         dtype=dtype or "float32")
        self.num_classes = num_classes
        self.score = score
        self.class_id = class_id
        self.threshold = threshold
        self.from_logits = from_logits
        self._direction = "up"
        self.counts = self.add_variable(shape=(num_classes, 3), initializer="zeros", dtype=self.dtype,
                                        aggregation="sum", name="counts")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(y_true, "float32")
        cut = math.log(self.threshold / (1 - self.threshold)) if self.from_logits else self.threshold
        predicted = ops.cast(ops.cast(y_pred, "float32") > cut, self.dtype)
        positive = ops.cast(y_true == 1.0, self.dtype)
        negative = ops.cast(y_true == 0.0, self.dtype)
        axes = tuple(range(len(y_true.shape) - 1))
        counts = ops.stack([ops.sum(predicted * positive, axis=axes), ops.sum(predicted * negative, axis=axes),
                            ops.sum((1.0 - predicted) * positive, axis=axes)], axis=1)
        self.counts.assign_add(counts)

    def result(self):
        value = _scores(ops.cast(self.counts, "float32"), ops)[self.score]
        return value if self.class_id is None else value[self.class_id]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "score": self.score,
                "class_id": self.class_id, "threshold": self.threshold, "from_logits": self.from_logits}


def multilabel_metrics(num_classes, class_names=None, threshold=0.5):
    """[miou, mean_dice, then iou_, dice_, precision_, recall_<class> per class] for `compile(metrics=...)`.

    Class names default to the class indices and are made lower-case [a-z0-9_] (see `models.metrics`).
    """
    names = [metric_name(n) for n in (range(num_classes) if class_names is None else class_names)]
    if len(names) != num_classes or len(set(names)) != num_classes or not all(names):
        raise ValueError(f"need {num_classes} distinct non-empty class names, got {class_names!r} -> {names}")
    metrics = [MultilabelConfusionMetric(num_classes, score, threshold=threshold, name=score)
               for score in ("miou", "mean_dice")]
    for score in PER_CLASS_SCORES:
        metrics += [MultilabelConfusionMetric(num_classes, score, c, threshold, name=f"{score}_{name}")
                    for c, name in enumerate(names)]
    return metrics
