"""Segmentation losses written with `keras.ops` only: pure functions first, then Loss classes.

Shared conventions:
- `y_pred`: logits (B, H, W, C), or probabilities with `from_logits=False`; any float dtype, computed in
  float32. A single channel is a binary output read as the two classes [1 - p, p] (sigmoid).
- `y_true`: sparse labels (B, H, W) or (B, H, W, 1) in 0..C-1, or one-hot (B, H, W, C) (rank 4, last dim C,
  C > 1). Void pixels: the `ignore_class` value or any out-of-range label (sparse), an all-zero row (one-hot).
  Void pixels contribute nothing to a loss, neither to its numerator nor to its denominator.
- `sample_weight`: per-pixel map (B, H, W) (e.g. `data.weight_maps.unet_border_weights`).
- `class_weights`: C non-negative numbers, one per class.

One module for all losses, though it runs past 400 lines: they share these conventions and the helpers below,
and the parity tests against smp and PyTorch read them side by side.
"""
import keras
import numpy as np
from keras import ops

EPSILON = 1e-7


def is_one_hot(y_true, channels):
    """Whether `y_true` is one-hot for a `channels`-channel prediction: rank 4, last dim C, C > 1."""
    return len(y_true.shape) == 4 and y_true.shape[-1] == channels and channels > 1


def pixel_weights(sample_weight, shape):
    """Broadcasts a scalar, (B,), (B, H, W) or (B, H, W, 1) weight to the pixel `shape` (B, H, W), float32."""
    w = ops.cast(sample_weight, "float32")
    while len(w.shape) > len(shape):
        w = ops.squeeze(w, axis=-1)
    while 0 < len(w.shape) < len(shape):
        w = ops.expand_dims(w, axis=-1)
    return ops.broadcast_to(w, shape)


def one_hot_targets(y_true, channels, ignore_class=None):
    """One-hot float32 targets (B, H, W, max(C, 2)) with all-zero rows on void pixels, and the valid mask.

    An `ignore_class` inside 0..C-1 also voids one-hot rows of that class.
    """
    num_classes = max(channels, 2)
    if is_one_hot(y_true, channels):
        onehot = ops.cast(y_true, "float32")
        if ignore_class is not None and 0 <= ignore_class < num_classes:
            onehot = onehot * (1.0 - ops.one_hot(ignore_class, num_classes))
    else:
        labels = ops.cast(y_true, "int32")
        if len(labels.shape) == 4:
            labels = ops.squeeze(labels, axis=-1)
        if ignore_class is not None:
            labels = ops.where(labels == ignore_class, -1, labels)
        onehot = ops.one_hot(labels, num_classes, dtype="float32")
    valid = ops.cast(ops.sum(onehot, axis=-1) > 0, "float32")
    return onehot, valid


def log_probabilities(y_pred, from_logits=True):
    """Log class probabilities (B, H, W, max(C, 2)) float32; one channel z becomes [0, z] (logits) or [1-p, p]."""
    y_pred = ops.cast(y_pred, "float32")
    if y_pred.shape[-1] == 1:
        other = ops.zeros_like(y_pred) if from_logits else 1.0 - y_pred
        y_pred = ops.concatenate([other, y_pred], axis=-1)
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    return ops.log(ops.clip(y_pred, EPSILON, 1.0))


def _class_vector(values, num_classes, what="class_weights"):
    if values is None:
        return None
    vector = ops.convert_to_tensor(values, "float32")
    if tuple(vector.shape) not in ((), (num_classes,)):
        raise ValueError(f"{what} needs {num_classes} values (one per class), got shape {tuple(vector.shape)}")
    return vector


def _check_average(average):
    if average not in ("macro", "micro"):
        raise ValueError(f"average must be 'macro' or 'micro', got {average!r}")
    return average


def _safe_divide(a, b):
    """a / b with 0 where b == 0, and finite gradients there."""
    return a / ops.where(b == 0, 1.0, b)


def _prepare(y_true, y_pred, sample_weight, from_logits, ignore_class):
    """(onehot, valid, log_probs, pixel weight) shared by all losses."""
    log_probs = log_probabilities(y_pred, from_logits)
    onehot, valid = one_hot_targets(y_true, y_pred.shape[-1], ignore_class)
    weight = valid if sample_weight is None else valid * pixel_weights(sample_weight, ops.shape(valid))
    return onehot, valid, log_probs, weight


def _pixel_loss(y_true, y_pred, sample_weight, from_logits, ignore_class, class_weights, label_smoothing, gamma,
                alpha):
    """sum_x w_map(x) w_cls(y_x) l(x) / sum_x w_cls(y_x) over valid pixels x, l = focal/cross-entropy term."""
    onehot, valid, log_probs, weight = _prepare(y_true, y_pred, sample_weight, from_logits, ignore_class)
    num_classes = onehot.shape[-1]
    target = onehot
    if label_smoothing:
        target = onehot * (1.0 - label_smoothing) + (label_smoothing / num_classes) * valid[..., None]
    terms = target * log_probs
    if gamma:
        terms = terms * ops.power(ops.maximum(1.0 - ops.exp(log_probs), EPSILON), gamma)
    alpha = _class_vector(alpha, num_classes, "alpha")
    if alpha is not None:
        terms = terms * alpha
    loss = -ops.sum(terms, axis=-1)
    cw = _class_vector(class_weights, num_classes)
    w_cls = valid if cw is None else ops.sum(onehot * cw, axis=-1)
    return _safe_divide(ops.sum(w_cls * weight * loss), ops.sum(w_cls))


def cross_entropy(y_true, y_pred, sample_weight=None, from_logits=True, ignore_class=None, class_weights=None,
                  label_smoothing=0.0):
    """Pixel-wise categorical cross-entropy, one scalar for the batch.

    CE = sum_x w_map(x) w_c(x) ce(x) / sum_x w_c(x) over valid pixels, ce(x) = -log p_{y(x)}(x).
    - class weights w_c: weighted mean as in PyTorch `CrossEntropyLoss(weight=...)` (w_c = 1: plain mean).
    - weight map w_map (`sample_weight`): multiplies the energy of U-Net (Ronneberger et al. 2015,
      E = sum_x w(x) log p), normalised by the valid pixel count only, not by sum(w_map): a border weight of 10
      makes that pixel count 10 times as much, and the loss scale follows the map.
    Label smoothing spreads `label_smoothing` uniformly over the C classes on valid pixels.
    """
    return _pixel_loss(y_true, y_pred, sample_weight, from_logits, ignore_class, class_weights, label_smoothing,
                       0.0, None)


def focal_loss(y_true, y_pred, sample_weight=None, gamma=2.0, alpha=None, from_logits=True, ignore_class=None,
               class_weights=None):
    """Focal loss (Lin et al. 2017): -alpha_c (1 - p_c)^gamma log p_c, reduced as `cross_entropy`.

    `alpha` is a scalar or one factor per class that multiplies the loss (it is not normalised, as in
    `keras.losses.CategoricalFocalCrossentropy`); `class_weights` are normalised as in `cross_entropy`.
    """
    return _pixel_loss(y_true, y_pred, sample_weight, from_logits, ignore_class, class_weights, 0.0, gamma, alpha)


def _overlap_loss(y_true, y_pred, sample_weight, from_logits, ignore_class, class_weights, include_background,
                  average, smooth, score_fn, squared=False):
    """Batch soft counts per class, a score per class (or pooled), 1 - score averaged over classes."""
    onehot, _, log_probs, weight = _prepare(y_true, y_pred, sample_weight, from_logits, ignore_class)
    probs = ops.exp(log_probs)
    num_classes = onehot.shape[-1]
    w = weight[..., None]
    axes = (0, 1, 2)
    tp = ops.sum(w * probs * onehot, axis=axes)
    pred_sum = ops.sum(w * (ops.square(probs) if squared else probs), axis=axes)
    true_sum = ops.sum(w * onehot, axis=axes)
    keep = ops.ones((num_classes,), "float32")
    if not include_background:
        keep = keep * (1.0 - ops.one_hot(0, num_classes))
    if ignore_class is not None and 0 <= ignore_class < num_classes:
        keep = keep * (1.0 - ops.one_hot(ignore_class, num_classes))
    cw = _class_vector(class_weights, num_classes)
    if cw is not None:
        keep = keep * cw
    return _reduce_overlap(tp, pred_sum, true_sum, keep, average, smooth, score_fn)


def _reduce_overlap(tp, pred_sum, true_sum, keep, average, smooth, score_fn):
    """1 - score of per-class soft counts: pooled over classes (micro), or the `keep`-weighted mean over the
    classes with true pixels (macro)."""
    if _check_average(average) == "micro":
        tp, pred_sum, true_sum = (ops.sum(keep * v) for v in (tp, pred_sum, true_sum))
        return 1.0 - score_fn(tp, pred_sum, true_sum, smooth)
    class_weight = keep * ops.cast(true_sum > 0, "float32")
    loss = 1.0 - score_fn(tp, pred_sum, true_sum, smooth)
    return _safe_divide(ops.sum(class_weight * loss), ops.sum(class_weight))


def _dice_score(tp, pred_sum, true_sum, smooth):
    return _safe_divide(2.0 * tp + smooth, pred_sum + true_sum + smooth)


def soft_dice_loss(y_true, y_pred, sample_weight=None, from_logits=True, ignore_class=None, squared=False,
                   average="macro", smooth=1.0, class_weights=None, include_background=True):
    """1 - soft Dice over the whole batch (batch Dice): Dice_c = (2 TP_c + s) / (P_c + T_c + s).

    TP_c = sum_x w(x) p_c(x) y_c(x), P_c = sum_x w(x) p_c(x) (p_c(x)^2 if `squared`, Milletari et al. 2016,
    V-Net), T_c = sum_x w(x) y_c(x), summed over all valid pixels of all images; w(x) = `sample_weight`.
    - macro: class-weighted mean of 1 - Dice_c over the classes with at least one true pixel in the batch
      (a class with no true pixels contributes no Dice loss, as in segmentation_models.pytorch, which then
      divides by C; we divide by the number of present classes, so the loss stays in [0, 1]).
    - micro: the counts are pooled (class-weighted sums) over the classes, then one Dice.
    `include_background=False` drops class 0; an `ignore_class` inside 0..C-1 is dropped too.
    With hard predictions and smooth=0, Dice = 2TP / (2TP + FP + FN) = F1.
    """
    return _overlap_loss(y_true, y_pred, sample_weight, from_logits, ignore_class, class_weights,
                         include_background, average, smooth, _dice_score, squared)


def tversky_loss(y_true, y_pred, sample_weight=None, alpha=0.5, beta=0.5, from_logits=True, ignore_class=None,
                 average="macro", smooth=1.0, class_weights=None, include_background=True):
    """1 - Tversky index (Salehi et al. 2017): TI_c = (TP + s) / (TP + alpha FP + beta FN + s), batch sums.

    FP_c = P_c - TP_c, FN_c = T_c - TP_c with the soft counts of `soft_dice_loss`, and the same macro/micro
    rules. alpha = beta = 0.5 is the Dice loss when smooth = 0 (with smooth > 0 it equals Dice with 2 s).
    """
    def score(tp, pred_sum, true_sum, s):
        return _safe_divide(tp + s, tp + alpha * (pred_sum - tp) + beta * (true_sum - tp) + s)

    return _overlap_loss(y_true, y_pred, sample_weight, from_logits, ignore_class, class_weights,
                         include_background, average, smooth, score)


def lovasz_softmax(y_true, y_pred, sample_weight=None, from_logits=True, ignore_class=None, per_image=False,
                   class_weights=None):
    """Lovasz-Softmax loss (Berman et al. 2018), classes='present', a convex surrogate of 1 - IoU.

    For each class c with true pixels: errors e = |y_c - p_c| sorted in decreasing order, loss_c = <e, grad J>
    with J the Jaccard loss along the sorted prefix. Class-weighted mean over present classes; with
    `per_image` the mean over images of the per-image loss (an image without valid pixels counts 0), as in
    the reference code. `sample_weight` only masks: pixels with weight 0 are left out, other values unused.
    Void pixels are sorted last with zero error, which leaves the loss of the valid pixels unchanged.
    """
    onehot, _, log_probs, weight = _prepare(y_true, y_pred, sample_weight, from_logits, ignore_class)
    num_classes = onehot.shape[-1]
    valid = ops.cast(weight > 0, "float32")
    groups = ops.shape(onehot)[0] if per_image else 1
    fg = ops.transpose(ops.reshape(onehot * valid[..., None], (groups, -1, num_classes)), (0, 2, 1))
    probs = ops.transpose(ops.reshape(ops.exp(log_probs), (groups, -1, num_classes)), (0, 2, 1))
    valid = ops.reshape(valid, (groups, 1, -1))
    errors = ops.abs(fg - probs) * valid
    order = ops.argsort(-ops.where(valid > 0, errors, -1.0), axis=-1)
    errors = ops.take_along_axis(errors, order, axis=-1)
    fg = ops.take_along_axis(fg, order, axis=-1)
    true_sum = ops.sum(fg, axis=-1, keepdims=True)
    jaccard = 1.0 - (true_sum - ops.cumsum(fg, axis=-1)) / (true_sum + ops.cumsum(1.0 - fg, axis=-1))
    grad = ops.concatenate([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], axis=-1)
    losses = ops.sum(errors * grad, axis=-1)
    class_weight = ops.cast(true_sum[..., 0] > 0, "float32")
    cw = _class_vector(class_weights, num_classes)
    if cw is not None:
        class_weight = class_weight * cw
    return ops.mean(_safe_divide(ops.sum(class_weight * losses, axis=-1), ops.sum(class_weight, axis=-1)))


def _plain(values):
    """None, a float, or a list of floats (JSON-serialisable class vectors)."""
    if values is None or np.ndim(values) == 0:
        return None if values is None else float(values)
    return [float(v) for v in np.ravel(values)]


class SegmentationLoss(keras.losses.Loss):
    """Base class: wraps `fn(y_true, y_pred, sample_weight, **options) -> scalar` and its options.

    The function reduces the batch itself (weight maps and void pixels need their own normalisation); Keras
    only sees a (1,) value, which its reduction leaves unchanged except for the tf.distribute loss scaling.
    """

    def __init__(self, fn, name=None, **options):
        super().__init__(name=name, reduction="sum_over_batch_size")
        self.fn = fn
        self.options = {k: _plain(v) if k in ("class_weights", "alpha") else v for k, v in options.items()}

    def __call__(self, y_true, y_pred, sample_weight=None):
        targets = (y_true,) if sample_weight is None else (y_true, sample_weight)
        return super().__call__(targets, y_pred)

    def call(self, y_true, y_pred):
        y_true, sample_weight = (*y_true, None)[:2]
        return ops.reshape(self.fn(y_true, y_pred, sample_weight, **self.options), (1,))

    def get_config(self):
        return {"name": self.name, **self.options}


@keras.saving.register_keras_serializable(package="segkit")
class SegmentationCrossEntropy(SegmentationLoss):
    """Pixel-wise cross-entropy with void pixels, class weights and weight maps; see `cross_entropy`.

    Args:
        from_logits: bool. Whether `y_pred` holds logits. Defaults to `True`.
        ignore_class: int or None. Label value of void pixels. Defaults to `None`.
        class_weights: list of C floats or None. Weighted mean sum(w_c ce) / sum(w_c). Defaults to `None`.
        label_smoothing: float. Defaults to `0.0`.

    Example:
    >>> loss = SegmentationCrossEntropy(ignore_class=-1)
    >>> float(loss(np.array([[[0, -1]]]), np.zeros((1, 1, 2, 3))))  # one valid pixel: log(3)
    1.0986...
    """

    def __init__(self, from_logits=True, ignore_class=None, class_weights=None, label_smoothing=0.0,
                 name="segmentation_cross_entropy"):
        super().__init__(cross_entropy, name=name, from_logits=from_logits, ignore_class=ignore_class,
                         class_weights=class_weights, label_smoothing=label_smoothing)


@keras.saving.register_keras_serializable(package="segkit")
class SoftDiceLoss(SegmentationLoss):
    """1 - soft Dice over the batch, macro (present classes) or micro; see `soft_dice_loss`.

    Args:
        from_logits: bool. Defaults to `True`.
        ignore_class: int or None. Label value of void pixels. Defaults to `None`.
        squared: bool. Squared probabilities in the denominator (V-Net). Defaults to `False`.
        average: "macro" or "micro". Defaults to `"macro"`.
        smooth: float. Added to numerator and denominator. Defaults to `1.0`.
        class_weights: list of C floats or None. Weights of the macro mean. Defaults to `None`.
        include_background: bool. Whether class 0 counts. Defaults to `True`.
    """

    def __init__(self, from_logits=True, ignore_class=None, squared=False, average="macro", smooth=1.0,
                 class_weights=None, include_background=True, name="soft_dice_loss"):
        _check_average(average)
        super().__init__(soft_dice_loss, name=name, from_logits=from_logits, ignore_class=ignore_class,
                         squared=squared, average=average, smooth=smooth, class_weights=class_weights,
                         include_background=include_background)


@keras.saving.register_keras_serializable(package="segkit")
class TverskyLoss(SegmentationLoss):
    """1 - Tversky index; alpha weighs false positives, beta false negatives; see `tversky_loss`.

    Args:
        alpha: float. Defaults to `0.5`.
        beta: float. Defaults to `0.5`.
        other arguments: as `SoftDiceLoss`.
    """

    def __init__(self, alpha=0.5, beta=0.5, from_logits=True, ignore_class=None, average="macro", smooth=1.0,
                 class_weights=None, include_background=True, name="tversky_loss"):
        _check_average(average)
        super().__init__(tversky_loss, name=name, alpha=alpha, beta=beta, from_logits=from_logits,
                         ignore_class=ignore_class, average=average, smooth=smooth, class_weights=class_weights,
                         include_background=include_background)


@keras.saving.register_keras_serializable(package="segkit")
class FocalLoss(SegmentationLoss):
    """Focal loss (Lin et al. 2017) with void pixels, class weights and weight maps; see `focal_loss`.

    Args:
        gamma: float. Focusing parameter. Defaults to `2.0`.
        alpha: float, list of C floats or None. Loss factor (per class). Defaults to `None`.
        from_logits, ignore_class, class_weights: as `SegmentationCrossEntropy`.
    """

    def __init__(self, gamma=2.0, alpha=None, from_logits=True, ignore_class=None, class_weights=None,
                 name="focal_loss"):
        super().__init__(focal_loss, name=name, gamma=gamma, alpha=alpha, from_logits=from_logits,
                         ignore_class=ignore_class, class_weights=class_weights)


@keras.saving.register_keras_serializable(package="segkit")
class LovaszSoftmax(SegmentationLoss):
    """Lovasz-Softmax loss (Berman et al. 2018); see `lovasz_softmax`.

    Args:
        per_image: bool. Mean of per-image losses instead of one loss over the batch. Defaults to `False`.
        from_logits, ignore_class, class_weights: as `SegmentationCrossEntropy`.
    """

    def __init__(self, per_image=False, from_logits=True, ignore_class=None, class_weights=None,
                 name="lovasz_softmax"):
        super().__init__(lovasz_softmax, name=name, per_image=per_image, from_logits=from_logits,
                         ignore_class=ignore_class, class_weights=class_weights)


def dice_cross_entropy(y_true, y_pred, sample_weight=None, dice_weight=0.5, ce_weight=None, from_logits=True,
                       ignore_class=None, class_weights=None, label_smoothing=0.0, squared=False,
                       average="macro", smooth=1.0, include_background=True):
    """ce_weight * `cross_entropy` + dice_weight * `soft_dice_loss`; ce_weight defaults to 1 - dice_weight."""
    ce_weight = 1.0 - dice_weight if ce_weight is None else ce_weight
    common = dict(sample_weight=sample_weight, from_logits=from_logits, ignore_class=ignore_class,
                  class_weights=class_weights)
    return (ce_weight * cross_entropy(y_true, y_pred, label_smoothing=label_smoothing, **common)
            + dice_weight * soft_dice_loss(y_true, y_pred, squared=squared, average=average, smooth=smooth,
                                           include_background=include_background, **common))


@keras.saving.register_keras_serializable(package="segkit")
class DiceCrossEntropy(SegmentationLoss):
    """Weighted sum of `SegmentationCrossEntropy` and `SoftDiceLoss`; see `dice_cross_entropy`.

    Args:
        dice_weight: float. Defaults to `0.5`.
        ce_weight: float or None. Defaults to `1 - dice_weight`.
        other arguments: as `SegmentationCrossEntropy` and `SoftDiceLoss`.
    """

    def __init__(self, dice_weight=0.5, ce_weight=None, from_logits=True, ignore_class=None, class_weights=None,
                 label_smoothing=0.0, squared=False, average="macro", smooth=1.0, include_background=True,
                 name="dice_cross_entropy"):
        _check_average(average)
        super().__init__(dice_cross_entropy, name=name, dice_weight=dice_weight, ce_weight=ce_weight,
                         from_logits=from_logits, ignore_class=ignore_class, class_weights=class_weights,
                         label_smoothing=label_smoothing, squared=squared, average=average, smooth=smooth,
                         include_background=include_background)


LOSSES = {
    "ce": SegmentationCrossEntropy,
    "dice": SoftDiceLoss,
    "dice_ce": DiceCrossEntropy,
    "focal": FocalLoss,
    "tversky": TverskyLoss,
    "lovasz": LovaszSoftmax,
}


def get_loss(name, num_classes=None, ignore_class=None, class_weights=None, **options):
    """Loss instance by name (see `LOSSES`); `num_classes` checks the length of `class_weights`.

    Example:
    >>> get_loss("dice_ce", num_classes=3, ignore_class=-1, class_weights=[1, 2, 1], dice_weight=0.3)
    """
    if name not in LOSSES:
        raise KeyError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
    if class_weights is not None and num_classes is not None and len(class_weights) != num_classes:
        raise ValueError(f"class_weights has {len(class_weights)} values for {num_classes} classes")
    return LOSSES[name](ignore_class=ignore_class, class_weights=class_weights, **options)


# Multi-label losses: C independent sigmoid outputs (classes may overlap), as segmentation_models.pytorch's
# mode="multilabel". `y_true` is multi-hot (B, H, W, C): 0 or 1 per pixel and class; any other value (the
# pipeline's IGNORE_INDEX for void and padding) leaves that pixel and class out of the loss.

def multilabel_targets(y_true, sample_weight=None):
    """(targets, valid, weight) float32 (B, H, W, C): 0/1 targets (0 on void), 1 on valid elements, and the
    valid mask times the pixel weight (`sample_weight` (B, H, W), or 1)."""
    y_true = ops.cast(y_true, "float32")
    valid = ops.cast(ops.logical_or(y_true == 0.0, y_true == 1.0), "float32")
    weight = valid
    if sample_weight is not None:
        weight = weight * pixel_weights(sample_weight, ops.shape(valid)[:3])[..., None]
    return y_true * valid, valid, weight


def multilabel_logits(y_pred, from_logits=True):
    """float32 logits z of sigmoid outputs; probabilities (`from_logits=False`) become log(p / (1 - p))."""
    y_pred = ops.cast(y_pred, "float32")
    if from_logits:
        return y_pred
    p = ops.clip(y_pred, EPSILON, 1.0 - EPSILON)
    return ops.log(p) - ops.log(1.0 - p)


def _multilabel_pixel_loss(y_true, y_pred, sample_weight, from_logits, class_weights, label_smoothing, gamma,
                           alpha):
    """sum w_map w_c l / sum w_c over valid (pixel, class) elements; l = binary focal/cross-entropy term."""
    z = multilabel_logits(y_pred, from_logits)
    targets, valid, weight = multilabel_targets(y_true, sample_weight)
    soft = targets * (1.0 - label_smoothing) + (1.0 - targets) * label_smoothing
    loss = soft * ops.softplus(-z) + (1.0 - soft) * ops.softplus(z)
    if gamma:
        loss = ops.power(ops.maximum(1.0 - ops.exp(-loss), 0.0), gamma) * loss
    if alpha is not None:
        loss = loss * (alpha * targets + (1.0 - alpha) * (1.0 - targets))
    cw = _class_vector(class_weights, z.shape[-1])
    w_cls = valid if cw is None else valid * cw
    return _safe_divide(ops.sum(w_cls * weight * loss), ops.sum(w_cls))


def multilabel_bce(y_true, y_pred, sample_weight=None, from_logits=True, class_weights=None, label_smoothing=0.0):
    """Binary cross-entropy per pixel and class, mean over the valid elements.

    BCE = sum w_map(x) w_c bce_c(x) / sum w_c over valid (x, c), bce = -y log p - (1 - y) log(1 - p),
    p = sigmoid(z) (computed as softplus, stable for any logit). Label smoothing turns targets 1/0 into
    1 - s / s (smp's `smooth_factor`). Without void elements this is smp's `SoftBCEWithLogitsLoss`; with
    void, smp still divides by all elements, we divide by the valid ones.
    """
    return _multilabel_pixel_loss(y_true, y_pred, sample_weight, from_logits, class_weights, label_smoothing,
                                  0.0, None)


def multilabel_focal_loss(y_true, y_pred, sample_weight=None, gamma=2.0, alpha=None, from_logits=True,
                          class_weights=None):
    """Binary focal loss per pixel and class (Lin et al. 2017): (1 - p_t)^gamma bce, p_t = exp(-bce), times
    alpha y + (1 - alpha)(1 - y) when `alpha` is set; mean over valid elements as `multilabel_bce`, which is
    smp's `FocalLoss(mode="multilabel")` (void elements dropped)."""
    return _multilabel_pixel_loss(y_true, y_pred, sample_weight, from_logits, class_weights, 0.0, gamma, alpha)


def _multilabel_overlap(y_true, y_pred, sample_weight, from_logits, class_weights, average, smooth, score_fn,
                        squared=False):
    z = multilabel_logits(y_pred, from_logits)
    probs = ops.sigmoid(z)
    targets, _, weight = multilabel_targets(y_true, sample_weight)
    axes = (0, 1, 2)
    tp = ops.sum(weight * probs * targets, axis=axes)
    pred_sum = ops.sum(weight * (ops.square(probs) if squared else probs), axis=axes)
    true_sum = ops.sum(weight * targets, axis=axes)
    keep = _class_vector(class_weights, z.shape[-1])
    keep = ops.ones((z.shape[-1],), "float32") if keep is None else keep
    return _reduce_overlap(tp, pred_sum, true_sum, keep, average, smooth, score_fn)


def multilabel_dice_loss(y_true, y_pred, sample_weight=None, from_logits=True, squared=False, average="macro",
                         smooth=1.0, class_weights=None):
    """1 - soft Dice per class over sigmoid probabilities, batch sums: Dice_c = (2 TP_c + s) / (P_c + T_c + s).

    TP_c = sum w p_c y_c, P_c = sum w p_c, T_c = sum w y_c over the batch's valid pixels of class c (void
    elements excluded from all three). macro: class-weighted mean of 1 - Dice_c over the classes with true
    pixels in the batch; micro: one Dice of the pooled counts. smp's `DiceLoss(mode="multilabel", smooth=s)`
    is the same per class, but averages over all C classes with 0 for absent ones: equal when every class is
    present in the batch.
    """
    return _multilabel_overlap(y_true, y_pred, sample_weight, from_logits, class_weights, average, smooth,
                               _dice_score, squared)


def multilabel_tversky_loss(y_true, y_pred, sample_weight=None, alpha=0.5, beta=0.5, from_logits=True,
                            average="macro", smooth=1.0, class_weights=None):
    """1 - Tversky index per class over sigmoid probabilities; counts and averaging as `multilabel_dice_loss`."""
    def score(tp, pred_sum, true_sum, s):
        return _safe_divide(tp + s, tp + alpha * (pred_sum - tp) + beta * (true_sum - tp) + s)

    return _multilabel_overlap(y_true, y_pred, sample_weight, from_logits, class_weights, average, smooth, score)


def multilabel_dice_bce(y_true, y_pred, sample_weight=None, dice_weight=0.5, ce_weight=None, from_logits=True,
                        class_weights=None, label_smoothing=0.0, squared=False, average="macro", smooth=1.0):
    """ce_weight * `multilabel_bce` + dice_weight * `multilabel_dice_loss`; ce_weight defaults to 1 - dice_weight."""
    ce_weight = 1.0 - dice_weight if ce_weight is None else ce_weight
    common = dict(sample_weight=sample_weight, from_logits=from_logits, class_weights=class_weights)
    return (ce_weight * multilabel_bce(y_true, y_pred, label_smoothing=label_smoothing, **common)
            + dice_weight * multilabel_dice_loss(y_true, y_pred, squared=squared, average=average, smooth=smooth,
                                                 **common))


@keras.saving.register_keras_serializable(package="segkit")
class MultilabelBCE(SegmentationLoss):
    """Binary cross-entropy per pixel and class for sigmoid outputs; see `multilabel_bce`."""

    def __init__(self, from_logits=True, class_weights=None, label_smoothing=0.0, name="multilabel_bce"):
        super().__init__(multilabel_bce, name=name, from_logits=from_logits, class_weights=class_weights,
                         label_smoothing=label_smoothing)


@keras.saving.register_keras_serializable(package="segkit")
class MultilabelDiceLoss(SegmentationLoss):
    """1 - soft Dice per class over sigmoid probabilities; see `multilabel_dice_loss`."""

    def __init__(self, from_logits=True, squared=False, average="macro", smooth=1.0, class_weights=None,
                 name="multilabel_dice_loss"):
        _check_average(average)
        super().__init__(multilabel_dice_loss, name=name, from_logits=from_logits, squared=squared,
                         average=average, smooth=smooth, class_weights=class_weights)


@keras.saving.register_keras_serializable(package="segkit")
class MultilabelFocalLoss(SegmentationLoss):
    """Binary focal loss per pixel and class; see `multilabel_focal_loss`."""

    def __init__(self, gamma=2.0, alpha=None, from_logits=True, class_weights=None, name="multilabel_focal_loss"):
        super().__init__(multilabel_focal_loss, name=name, gamma=gamma, alpha=alpha, from_logits=from_logits,
                         class_weights=class_weights)


@keras.saving.register_keras_serializable(package="segkit")
class MultilabelTverskyLoss(SegmentationLoss):
    """1 - Tversky index per class over sigmoid probabilities; see `multilabel_tversky_loss`."""

    def __init__(self, alpha=0.5, beta=0.5, from_logits=True, average="macro", smooth=1.0, class_weights=None,
                 name="multilabel_tversky_loss"):
        _check_average(average)
        super().__init__(multilabel_tversky_loss, name=name, alpha=alpha, beta=beta, from_logits=from_logits,
                         average=average, smooth=smooth, class_weights=class_weights)


@keras.saving.register_keras_serializable(package="segkit")
class MultilabelDiceBCE(SegmentationLoss):
    """Weighted sum of `MultilabelBCE` and `MultilabelDiceLoss`; see `multilabel_dice_bce`."""

    def __init__(self, dice_weight=0.5, ce_weight=None, from_logits=True, class_weights=None, label_smoothing=0.0,
                 squared=False, average="macro", smooth=1.0, name="multilabel_dice_bce"):
        _check_average(average)
        super().__init__(multilabel_dice_bce, name=name, dice_weight=dice_weight, ce_weight=ce_weight,
                         from_logits=from_logits, class_weights=class_weights, label_smoothing=label_smoothing,
                         squared=squared, average=average, smooth=smooth)


MULTILABEL_LOSSES = {
    "ce": MultilabelBCE,
    "bce": MultilabelBCE,
    "dice": MultilabelDiceLoss,
    "dice_ce": MultilabelDiceBCE,
    "dice_bce": MultilabelDiceBCE,
    "focal": MultilabelFocalLoss,
    "tversky": MultilabelTverskyLoss,
}
"""Multi-label forms by name; the multi-class names ce, dice_ce, dice, focal and tversky map to them."""


def get_multilabel_loss(name, num_classes=None, class_weights=None, **options):
    """Multi-label loss instance by name (see `MULTILABEL_LOSSES`); `num_classes` checks `class_weights`."""
    if name not in MULTILABEL_LOSSES:
        raise KeyError(f"loss {name!r} has no multi-label form; valid names: {', '.join(MULTILABEL_LOSSES)}")
    if class_weights is not None and num_classes is not None and len(class_weights) != num_classes:
        raise ValueError(f"class_weights has {len(class_weights)} values for {num_classes} classes")
    return MULTILABEL_LOSSES[name](class_weights=class_weights, **options)
