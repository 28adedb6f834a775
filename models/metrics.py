"""Segmentation metrics in two stages: a confusion matrix (rows = truth, columns = prediction), then scores.

`confusion_scores` (NumPy, for reports) and `confusion_scores_ops` (keras.ops, inside `ConfusionMatrixMetric`)
share one implementation. Each metric object returns one scalar, because Keras 3 `compile()` logs a metric
under its own name only (`iou_road`, `val_iou_road`); `segmentation_metrics` builds the usual set.
"""
import re
import weakref

import keras
import numpy as np
from keras import ops

from models.losses import is_one_hot, pixel_weights

SCORES = ("miou", "pixel_accuracy", "mean_class_accuracy", "fwiou", "mean_dice", "iou", "dice")


def _divide(num, den, xp):
    """num / den, NaN where den == 0 (without a division warning)."""
    return xp.where(den > 0, num / xp.where(den > 0, den, 1.0), np.nan)


def _nanmean(x, xp):
    defined = xp.logical_not(xp.isnan(x))
    return _divide(xp.sum(xp.where(defined, x, 0.0)), xp.sum(xp.where(defined, 1.0, 0.0)), xp)


def _scores(cm, xp):
    tp = xp.diagonal(cm)
    true = xp.sum(cm, axis=1)
    pred = xp.sum(cm, axis=0)
    total = xp.sum(true)
    iou = _divide(tp, true + pred - tp, xp)
    dice = _divide(2.0 * tp, true + pred, xp)
    recall = _divide(tp, true, xp)
    share = _divide(true, total, xp)
    return {
        "iou": iou,
        "dice": dice,
        "precision": _divide(tp, pred, xp),
        "recall": recall,
        "pixel_share": share,
        "miou": _nanmean(iou, xp),
        "mean_dice": _nanmean(dice, xp),
        "pixel_accuracy": _divide(xp.sum(tp), total, xp),
        "mean_class_accuracy": _nanmean(recall, xp),
        "fwiou": _divide(xp.sum(xp.where(true > 0, true * iou, 0.0)), total, xp),
    }


def confusion_scores(cm):
    """Scores of a (C, C) confusion matrix (rows = truth, columns = prediction), NumPy.

    Per class (arrays of C): iou = TP / (TP + FP + FN), dice = 2TP / (2TP + FP + FN) (= F1),
    precision = TP / (TP + FP), recall = TP / (TP + FN), pixel_share = (TP + FN) / N.
    A per-class value is NaN where it is 0/0: iou and dice for classes absent from both truth and
    prediction, precision for never-predicted classes, recall for classes absent from the truth.
    Scalars (Long et al. 2015, FCN): miou and mean_dice = means over the defined classes (absent classes are
    excluded, as in `keras.metrics.MeanIoU`), pixel_accuracy = sum TP / N, mean_class_accuracy = mean recall
    over classes present in the truth, fwiou = sum_c pixel_share_c iou_c. NaN for an empty matrix.
    """
    scores = _scores(np.asarray(cm, dtype=np.float64), np)
    return {k: v if np.ndim(v) else float(v) for k, v in scores.items()}


def confusion_scores_ops(cm):
    """`confusion_scores` in `keras.ops` (float32 tensors), for use inside metrics."""
    return _scores(ops.cast(cm, "float32"), ops)


@keras.saving.register_keras_serializable(package="segkit")
class ConfusionMatrixMetric(keras.metrics.Metric):
    """One score of a confusion matrix accumulated over batches (and summed over replicas).

    `y_true`: sparse (B, H, W[, 1]) or one-hot (B, H, W, C) (all-zero row = void); pixels with label
    `ignore_class` or outside 0..C-1 are not counted. `y_pred`: logits or probabilities, argmax over the last
    axis; a single channel is binary (threshold 0 for logits, 0.5 for probabilities).
    `sample_weight` (B, H, W), when given, is added as counts (like `keras.metrics.MeanIoU`). Keras passes it
    only to `compile(weighted_metrics=...)`: metrics in `compile(metrics=...)` count pixels, so a training
    weight map does not bend the reported scores.

    Args:
        num_classes: int. C (2 for a single-channel binary output).
        source: ConfusionMatrixMetric or None. A metric of the same model and batches whose confusion matrix this
            one reads instead of accumulating its own (`segmentation_metrics` shares one matrix among all its
            scores: the matrix costs pixels x C^2 per batch). Not serialized: a reloaded metric keeps its own.
        ignore_class: int or None. Label value of void pixels. Defaults to `None`.
        score: str. One of `SCORES`, see `confusion_scores`. Defaults to `"miou"`.
        class_id: int or None. The class of the per-class scores "iou" and "dice". Defaults to `None`.
        from_logits: bool. Only matters for a single-channel output. Defaults to `True`.
        name: str or None. Defaults to `score` or `f"{score}_{class_id}"`.

    Example:
    >>> metric = ConfusionMatrixMetric(3, ignore_class=-1, score="miou")
    >>> metric.update_state(np.array([[[0, 1, -1]]]), np.eye(3)[[[[0, 2, 1]]]])
    >>> float(metric.result())  # iou = [1, 0, 0]; class 2 is defined (a false positive)
    0.3333...
    >>> confusion_scores(keras.ops.convert_to_numpy(metric.confusion_matrix))["iou"]
    array([1., 0., 0.])
    """

    def __init__(self, num_classes, ignore_class=None, score="miou", class_id=None, from_logits=True, name=None,
                 dtype=None, source=None):
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if (score in ("iou", "dice")) != (class_id is not None):
            raise ValueError(f"class_id is needed by the per-class scores 'iou' and 'dice' only (score={score!r})")
        if class_id is not None and not 0 <= class_id < num_classes:
            raise ValueError(f"class_id {class_id} is outside 0..{num_classes - 1}")
        super().__init__(name=name or (score if class_id is None else f"{score}_{class_id}"),
                         dtype=dtype or "float32")
        self.num_classes = num_classes
        self.ignore_class = ignore_class
        self.score = score
        self.class_id = class_id
        self.from_logits = from_logits
        self._direction = "up"
        self._source_ref = None if source is None else weakref.ref(source)  # not tracked: no second owner
        if source is None:
            self.confusion_matrix = self.add_variable(shape=(num_classes, num_classes), initializer="zeros",
                                                      dtype=self.dtype, aggregation="sum", name="confusion_matrix")

    def reset_state(self):
        if self._source_ref is None:
            super().reset_state()

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._source_ref is not None:  # the source metric, updated with the same batch, holds the matrix
            return
        y_pred = ops.convert_to_tensor(y_pred)
        y_true = ops.convert_to_tensor(y_true)
        channels = y_pred.shape[-1]
        if channels == 1:
            pred = ops.cast(y_pred[..., 0] > (0.0 if self.from_logits else 0.5), "int32")
        else:
            pred = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
        if is_one_hot(y_true, channels):
            labels = ops.where(ops.sum(y_true, axis=-1) > 0, ops.cast(ops.argmax(y_true, axis=-1), "int32"), -1)
        else:
            labels = ops.cast(y_true, "int32")
            if len(labels.shape) == 4:
                labels = ops.squeeze(labels, axis=-1)
        valid = ops.logical_and(labels >= 0, labels < self.num_classes)
        if self.ignore_class is not None:
            valid = ops.logical_and(valid, labels != self.ignore_class)
        weight = ops.cast(valid, self.dtype)
        if sample_weight is not None:
            weight = weight * ops.cast(pixel_weights(sample_weight, ops.shape(labels)), self.dtype)
        true_1h = ops.reshape(ops.one_hot(labels, self.num_classes, dtype=self.dtype) * weight[..., None],
                              (-1, self.num_classes))
        pred_1h = ops.reshape(ops.one_hot(pred, self.num_classes, dtype=self.dtype), (-1, self.num_classes))
        self.confusion_matrix.assign_add(ops.matmul(ops.transpose(true_1h), pred_1h))

    def result(self):
        matrix = self.confusion_matrix if self._source_ref is None else self._source_ref().confusion_matrix
        value = confusion_scores_ops(matrix)[self.score]
        return value if self.class_id is None else value[self.class_id]

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "ignore_class": self.ignore_class,
                "score": self.score, "class_id": self.class_id, "from_logits": self.from_logits}


def metric_name(class_name):
    """Lower-case [a-z0-9_] version of a class name ("Road marking" -> "road_marking")."""
    return re.sub(r"[^a-z0-9]+", "_", str(class_name).lower()).strip("_")


def segmentation_metrics(num_classes, class_names=None, ignore_class=None):
    """[miou, pixel_accuracy, mean_dice, iou_<class name> for each class] for `compile(metrics=...)`, all
    reading the confusion matrix that the first one accumulates (Keras updates every metric before it reads any).

    Class names default to the class indices ("iou_0", ...) and are made lower-case [a-z0-9_].
    """
    names = [metric_name(n) for n in (range(num_classes) if class_names is None else class_names)]
    if len(names) != num_classes or len(set(names)) != num_classes or not all(names):
        raise ValueError(f"need {num_classes} distinct non-empty class names, got {class_names!r} -> {names}")
    first = ConfusionMatrixMetric(num_classes, ignore_class, score="miou", name="miou")
    return [first] + [ConfusionMatrixMetric(num_classes, ignore_class, score=score, name=score, source=first)
                      for score in ("pixel_accuracy", "mean_dice")] + [
        ConfusionMatrixMetric(num_classes, ignore_class, score="iou", class_id=c, name=f"iou_{name}", source=first)
        for c, name in enumerate(names)]
