"""Losses against hand-computed values, NumPy references, Keras built-ins, gradients and saving."""
import keras
import numpy as np
import pytest
from keras import ops

from models import losses as L
from models.metrics import segmentation_metrics

pytestmark = pytest.mark.multibackend

LN = np.log


def value_and_grad(fn, x):
    """(value, gradient) of a scalar function of a float32 array, on the current Keras backend."""
    x = np.asarray(x, np.float32)
    if keras.backend.backend() == "jax":
        import jax

        value, grad = jax.value_and_grad(fn)(x)
        return float(value), np.asarray(grad)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        variable = tf.Variable(x)
        with tf.GradientTape() as tape:
            value = fn(variable)
        return float(value), tape.gradient(value, variable).numpy()
    pytest.skip(f"no gradient helper for backend {keras.backend.backend()}")


def softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def ref_pixel_loss(labels, logits, sw=None, cw=None, ls=0.0, gamma=0.0, alpha=None, ignore=-1):
    p, num, den = softmax(logits.astype(np.float64)), 0.0, 0.0
    c = p.shape[-1]
    for idx in zip(*np.nonzero((labels != ignore) & (labels >= 0) & (labels < c))):
        y = labels[idx]
        target = np.full(c, ls / c)
        target[y] += 1 - ls
        a = np.ones(c) * (1.0 if alpha is None else np.asarray(alpha))
        loss = -np.sum(target * a * (1 - p[idx]) ** gamma * np.log(p[idx]))
        wc = 1.0 if cw is None else cw[y]
        num += wc * (1.0 if sw is None else sw[idx]) * loss
        den += wc
    return num / den if den else 0.0


def ref_overlap_loss(labels, logits, sw=None, cw=None, squared=False, average="macro", smooth=1.0,
                     include_background=True, tversky=None, ignore=-1):
    p = softmax(logits.astype(np.float64))
    c = p.shape[-1]
    valid = (labels != ignore) & (labels >= 0) & (labels < c)
    y, q = np.eye(c)[labels[valid]], p[valid]
    w = (np.ones(len(q)) if sw is None else sw[valid])[:, None]
    tp, ps, ts = (w * q * y).sum(0), (w * (q**2 if squared else q)).sum(0), (w * y).sum(0)
    cw = np.ones(c) if cw is None else np.asarray(cw, float)
    classes = list(range(0 if include_background else 1, c))

    def score(tp, ps, ts):
        if tversky:
            return (tp + smooth) / (tp + tversky[0] * (ps - tp) + tversky[1] * (ts - tp) + smooth)
        return (2 * tp + smooth) / (ps + ts + smooth)

    if average == "micro":
        return 1 - score(*(np.sum(cw[classes] * v[classes]) for v in (tp, ps, ts)))
    present = [k for k in classes if ts[k] > 0]
    return sum(cw[k] * (1 - score(tp[k], ps[k], ts[k])) for k in present) / sum(cw[k] for k in present)


def ref_lovasz(labels, logits, per_image=False, ignore=-1):
    """Berman et al.'s reference algorithm: filter void pixels, loop over present classes."""
    p = softmax(logits.astype(np.float64))
    valid = labels != ignore

    def flat(probs, lab):
        losses = []
        for k in range(probs.shape[-1]):
            fg = (lab == k).astype(float)
            if fg.sum() == 0:
                continue
            errors = np.abs(fg - probs[:, k])
            order = np.argsort(-errors, kind="stable")
            fg_sorted = fg[order]
            gts = fg_sorted.sum()
            jaccard = 1 - (gts - np.cumsum(fg_sorted)) / (gts + np.cumsum(1 - fg_sorted))
            jaccard[1:] = jaccard[1:] - jaccard[:-1]
            losses.append(errors[order] @ jaccard)
        return np.mean(losses) if losses else 0.0

    if per_image:
        return np.mean([flat(p[i][valid[i]], labels[i][valid[i]]) for i in range(len(labels))])
    return flat(p[valid], labels[valid])


def random_batch(seed, shape=(2, 6, 7), num_classes=4, void=0.2, absent=None):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, shape)
    if absent is not None:
        labels[labels == absent] = (absent + 1) % num_classes
    labels[rng.random(shape) < void] = -1
    logits = rng.normal(0, 2, shape + (num_classes,)).astype(np.float32)
    weights = rng.uniform(0.5, 3.0, shape).astype(np.float32)
    return labels, logits, weights


def one_hot(labels, num_classes):
    """One-hot float32 with all-zero rows for labels outside 0..C-1."""
    inside = (labels >= 0) & (labels < num_classes)
    return np.where(inside[..., None], np.eye(num_classes, dtype=np.float32)[np.where(inside, labels, 0)], 0.0)


def value(loss, labels, logits, weights=None):
    return float(ops.convert_to_numpy(loss(labels, logits, sample_weight=weights)))


# Hand-computed: probabilities p(A) = [.5, .25, .25] label 0, p(B) = [.2, .6, .2] label 1, C void (-1).
HAND_PROBS = np.array([[[[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.3, 0.3, 0.4]]]], np.float32)
HAND_LABELS = np.array([[[0, 1, -1]]])
HAND_MAP = np.array([[[3.0, 1.0, 100.0]]], np.float32)


@pytest.mark.parametrize("class_weights, weight_map, expected", [
    (None, None, (LN(2) + LN(1 / 0.6)) / 2),
    ([2.0, 1.0, 1.0], None, (2 * LN(2) + LN(1 / 0.6)) / 3),
    (None, HAND_MAP, (3 * LN(2) + LN(1 / 0.6)) / 2),
    ([2.0, 1.0, 1.0], HAND_MAP, (6 * LN(2) + LN(1 / 0.6)) / 3),
])
def test_cross_entropy_by_hand(class_weights, weight_map, expected):
    loss = L.SegmentationCrossEntropy(from_logits=False, ignore_class=-1, class_weights=class_weights)
    assert value(loss, HAND_LABELS, HAND_PROBS, weight_map) == pytest.approx(expected, rel=1e-5)


def test_weight_map_through_keras_evaluate():
    """compile/evaluate hands the (B, H, W) map to the loss unchanged: no division by sum(w) or H*W."""
    model = keras.Sequential([keras.Input((1, 3, 3)), keras.layers.Identity()])
    model.compile(loss=L.SegmentationCrossEntropy(from_logits=False, ignore_class=-1))
    result = model.evaluate(HAND_PROBS, HAND_LABELS, sample_weight=HAND_MAP, batch_size=1, verbose=0)
    assert result == pytest.approx((3 * LN(2) + LN(1 / 0.6)) / 2, rel=1e-5)


def test_focal_and_lovasz_by_hand():
    probs = np.array([[[[0.2, 0.8], [0.7, 0.3]]]], np.float32)
    labels = np.array([[[1, 0]]])
    focal = (0.2**2 * LN(1 / 0.8) + 0.3**2 * LN(1 / 0.7)) / 2
    assert value(L.FocalLoss(gamma=2.0, from_logits=False), labels, probs) == pytest.approx(focal, rel=1e-5)
    # class 0: errors (b .3 fg, a .2 bg) -> grad [1, 0] -> .3; class 1: errors (b .3 bg, a .2 fg) -> [.5, .5] -> .25
    assert value(L.LovaszSoftmax(from_logits=False), labels, probs) == pytest.approx(0.275, rel=1e-5)


def test_dice_is_f1_on_hard_predictions():
    truth = np.array([[[1, 1, 0, 0, 1]]])
    pred = np.eye(2, dtype=np.float32)[[[[1, 0, 1, 0, 1]]]]  # TP = 2, FP = 1, FN = 1
    loss = L.SoftDiceLoss(from_logits=False, smooth=0.0, include_background=False)
    assert value(loss, truth, pred) == pytest.approx(1 - 2 * 2 / (2 * 2 + 1 + 1), abs=1e-5)
    tversky = L.TverskyLoss(from_logits=False, smooth=0.0, include_background=False)
    assert value(tversky, truth, pred) == pytest.approx(1 - 4 / 6, abs=1e-5)
    # macro over both classes: class 0 has TP = 1, FP = 1, FN = 1
    both = L.SoftDiceLoss(from_logits=False, smooth=0.0)
    assert value(both, truth, pred) == pytest.approx(1 - (4 / 6 + 2 / 4) / 2, abs=1e-5)


def test_dice_skips_classes_without_true_pixels():
    labels, logits, _ = random_batch(1, absent=2)
    loss = value(L.SoftDiceLoss(ignore_class=-1), labels, logits)
    without = value(L.SoftDiceLoss(ignore_class=-1, class_weights=[1.0, 1.0, 0.0, 1.0]), labels, logits)
    assert loss == pytest.approx(without, rel=1e-6)


CASES = [
    ("ce", dict(), dict()),
    ("ce", dict(class_weights=[1.0, 2.0, 0.5, 3.0], label_smoothing=0.1), dict(cw=[1.0, 2.0, 0.5, 3.0], ls=0.1)),
    ("focal", dict(gamma=2.0), dict(gamma=2.0)),
    ("focal", dict(gamma=1.5, alpha=[0.25, 0.5, 1.0, 2.0], class_weights=[1.0, 2.0, 0.5, 3.0]),
     dict(gamma=1.5, alpha=np.array([0.25, 0.5, 1.0, 2.0]), cw=[1.0, 2.0, 0.5, 3.0])),
    ("dice", dict(), dict()),
    ("dice", dict(squared=True, smooth=0.0, include_background=False), dict(squared=True, smooth=0.0,
                                                                            include_background=False)),
    ("dice", dict(average="micro", class_weights=[1.0, 2.0, 0.5, 3.0]), dict(average="micro",
                                                                           cw=[1.0, 2.0, 0.5, 3.0])),
    ("dice", dict(class_weights=[1.0, 2.0, 0.5, 3.0], smooth=0.5), dict(cw=[1.0, 2.0, 0.5, 3.0], smooth=0.5)),
    ("tversky", dict(alpha=0.3, beta=0.7), dict(tversky=(0.3, 0.7))),
    ("tversky", dict(alpha=0.7, beta=0.3, average="micro"), dict(tversky=(0.7, 0.3), average="micro")),
    ("lovasz", dict(), dict()),
    ("lovasz", dict(per_image=True), dict(per_image=True)),
]


def reference(name, labels, logits, weights, options):
    if name in ("ce", "focal"):
        return ref_pixel_loss(labels, logits, weights, **options)
    if name == "lovasz":
        return ref_lovasz(labels, logits, **options)
    return ref_overlap_loss(labels, logits, weights, **options)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name, options, ref_options", CASES)
def test_matches_numpy_reference(name, options, ref_options, seed):
    labels, logits, weights = random_batch(seed)
    weights = None if name == "lovasz" else weights
    loss = L.get_loss(name, num_classes=4, ignore_class=-1, **options)
    expected = reference(name, labels, logits, weights, ref_options)
    assert value(loss, labels, logits, weights) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert value(loss, labels[..., None], logits, weights) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert value(loss, one_hot(labels, 4), logits, weights) == pytest.approx(expected, rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("ignore_class", [-1, 11, 0])
def test_any_ignore_value(ignore_class):
    """Void as -1, as CamVid's raw 11 (out of range) or an in-range class; sparse and one-hot agree."""
    labels, logits, weights = random_batch(3)
    labels = np.where(labels == -1, ignore_class, labels)
    for name in L.LOSSES:
        loss = L.get_loss(name, ignore_class=ignore_class)
        expected = value(loss, np.where(labels == ignore_class, -1, labels), logits, weights)
        assert value(loss, labels, logits, weights) == pytest.approx(expected, rel=1e-5, abs=1e-7)
        assert value(loss, one_hot(labels, 4), logits, weights) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_agrees_with_keras_builtins():
    labels, logits, _ = random_batch(4)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=-1)
    assert value(L.SegmentationCrossEntropy(ignore_class=-1), labels, logits) == pytest.approx(
        float(ce(labels, logits)), rel=1e-5)
    full = np.where(labels < 0, 0, labels)
    focal = keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0, from_logits=True)
    assert value(L.FocalLoss(alpha=0.25), full, logits) == pytest.approx(
        float(focal(one_hot(full, 4), logits)), rel=1e-5)
    probs = softmax(logits).astype(np.float32)
    dice = keras.losses.Dice()
    assert value(L.SoftDiceLoss(from_logits=False, average="micro", smooth=0.0), full, probs) == pytest.approx(
        float(dice(one_hot(full, 4), probs)), rel=1e-4)
    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    binary = full % 2
    assert value(L.SegmentationCrossEntropy(), binary, logits[..., :1]) == pytest.approx(
        float(bce(binary[..., None].astype(np.float32), logits[..., :1])), rel=1e-5)


@pytest.mark.parametrize("per_image", [False, True])
def test_lovasz_uses_sample_weight_as_mask_only(per_image):
    labels, logits, weights = random_batch(10)
    weights[:, :2] = 0.0
    loss = L.LovaszSoftmax(per_image=per_image, ignore_class=-1)
    expected = ref_lovasz(np.where(weights > 0, labels, -1), logits, per_image=per_image)
    assert value(loss, labels, logits, weights) == pytest.approx(expected, rel=1e-5)


def test_tversky_half_half_is_dice():
    labels, logits, weights = random_batch(5)
    for average in ("macro", "micro"):
        dice = value(L.SoftDiceLoss(ignore_class=-1, average=average, smooth=2.0), labels, logits, weights)
        tversky = value(L.TverskyLoss(ignore_class=-1, average=average, smooth=1.0), labels, logits, weights)
        assert tversky == pytest.approx(dice, rel=1e-5)


def test_dice_cross_entropy_is_weighted_sum():
    labels, logits, weights = random_batch(6)
    ce = value(L.SegmentationCrossEntropy(ignore_class=-1), labels, logits, weights)
    dice = value(L.SoftDiceLoss(ignore_class=-1), labels, logits, weights)
    assert value(L.DiceCrossEntropy(dice_weight=0.3, ignore_class=-1), labels, logits, weights) == pytest.approx(
        0.7 * ce + 0.3 * dice, rel=1e-5)
    assert value(L.DiceCrossEntropy(dice_weight=2.0, ce_weight=0.5, ignore_class=-1), labels, logits,
                 weights) == pytest.approx(0.5 * ce + 2.0 * dice, rel=1e-5)


def test_low_precision_logits():
    labels, logits, weights = random_batch(7)
    for name in L.LOSSES:
        loss = L.get_loss(name, ignore_class=-1)
        expected = value(loss, labels, logits, weights)
        fn = loss.fn
        half = fn(labels, ops.cast(logits, "bfloat16"), weights, **loss.options)
        assert ops.convert_to_numpy(half).dtype == np.float32
        assert float(half) == pytest.approx(expected, rel=0.03, abs=1e-3)


@pytest.mark.parametrize("name", list(L.LOSSES))
@pytest.mark.parametrize("case", ["empty_class", "all_background", "all_void"])
def test_gradients_are_finite(name, case):
    labels, logits, weights = random_batch(8, absent=3)
    if case == "all_background":
        labels[:] = 0
    if case == "all_void":
        labels[:] = -1
    loss = L.get_loss(name, ignore_class=-1)
    loss_value, grad = value_and_grad(lambda z: loss(labels, z, sample_weight=weights), logits)
    assert np.isfinite(loss_value) and np.isfinite(grad).all()
    if case == "all_void":
        assert loss_value == 0.0 and not grad.any()


def test_get_loss_errors_and_config_round_trip():
    with pytest.raises(KeyError, match="dice_ce"):
        L.get_loss("jaccard")
    with pytest.raises(ValueError, match="3 classes"):
        L.get_loss("ce", num_classes=3, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="class_weights"):
        L.SegmentationCrossEntropy(class_weights=[1.0, 2.0])(np.zeros((1, 2, 2)), np.zeros((1, 2, 2, 3)))
    with pytest.raises(ValueError, match="macro"):
        L.SoftDiceLoss(average="weighted")
    for name in L.LOSSES:
        loss = L.get_loss(name, ignore_class=255, class_weights=np.array([1.0, 2.0, 3.0]))
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
        assert type(restored) is type(loss) and restored.get_config() == loss.get_config()
        assert restored.get_config()["class_weights"] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize("name", list(L.LOSSES))
def test_saved_model_reloads_with_loss_and_metrics(name, tmp_path):
    keras.utils.set_random_seed(0)
    labels, _, weights = random_batch(9, shape=(2, 8, 8), num_classes=3)
    images = np.random.default_rng(9).normal(size=(2, 8, 8, 3)).astype(np.float32)
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    model.compile(optimizer="adam", loss=L.get_loss(name, num_classes=3, ignore_class=-1, class_weights=[1, 2, 1]),
                  metrics=segmentation_metrics(3, ["Road", "Sky", "Car"], ignore_class=-1))
    model.train_on_batch(images, labels, sample_weight=weights)
    before = model.evaluate(images, labels, sample_weight=weights, verbose=0, return_dict=True)
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras")
    after = loaded.evaluate(images, labels, sample_weight=weights, verbose=0, return_dict=True)
    assert set(before) == {"loss", "miou", "pixel_accuracy", "mean_dice", "iou_road", "iou_sky", "iou_car"}
    assert after == pytest.approx(before, rel=1e-5)
    assert loaded.loss.get_config() == model.loss.get_config()
