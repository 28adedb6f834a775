"""Confusion-matrix scores and metrics against hand values, NumPy references, Keras IoU metrics and fit()."""
import keras
import numpy as np
import pytest
from keras import ops

from models.metrics import (ConfusionMatrixMetric, confusion_scores, confusion_scores_ops, metric_name,
                            segmentation_metrics)

pytestmark = pytest.mark.multibackend

NAN = np.nan

# rows = truth, columns = prediction; class 3 absent from truth and prediction, class 2 only predicted
HAND_CM = np.array([[3, 1, 0, 0],
                    [2, 4, 1, 0],
                    [0, 0, 0, 0],
                    [0, 0, 0, 0]])
HAND_SCORES = {
    "iou": [3 / 6, 4 / 8, 0.0, NAN],
    "dice": [6 / 9, 8 / 12, 0.0, NAN],
    "precision": [3 / 5, 4 / 5, 0.0, NAN],
    "recall": [3 / 4, 4 / 7, NAN, NAN],
    "pixel_share": [4 / 11, 7 / 11, 0.0, 0.0],
    "miou": (0.5 + 0.5 + 0.0) / 3,
    "mean_dice": (2 / 3 + 2 / 3 + 0.0) / 3,
    "pixel_accuracy": 7 / 11,
    "mean_class_accuracy": (3 / 4 + 4 / 7) / 2,
    "fwiou": 4 / 11 * 0.5 + 7 / 11 * 0.5,
}


@pytest.mark.parametrize("key", list(HAND_SCORES))
def test_confusion_scores_by_hand(key):
    expected = HAND_SCORES[key]
    np.testing.assert_allclose(confusion_scores(HAND_CM)[key], expected, rtol=1e-12)
    np.testing.assert_allclose(ops.convert_to_numpy(confusion_scores_ops(HAND_CM)[key]), expected, rtol=1e-6)


def test_empty_matrix_gives_nan_without_warnings():
    with np.errstate(all="raise"):
        scores = confusion_scores(np.zeros((3, 3)))
    assert all(np.isnan(scores[k]).all() for k in scores if k != "pixel_share")


def ref_scores(cm):
    """Per-class loops, written independently of models.metrics."""
    cm = np.asarray(cm, float)
    c, total = len(cm), cm.sum()
    out = {k: np.full(c, NAN) for k in ("iou", "dice", "precision", "recall")}
    for k in range(c):
        tp, fp, fn = cm[k, k], cm[:, k].sum() - cm[k, k], cm[k, :].sum() - cm[k, k]
        if tp + fp + fn:
            out["iou"][k], out["dice"][k] = tp / (tp + fp + fn), 2 * tp / (2 * tp + fp + fn)
        if tp + fp:
            out["precision"][k] = tp / (tp + fp)
        if tp + fn:
            out["recall"][k] = tp / (tp + fn)
    defined = ~np.isnan(out["iou"])
    out["miou"] = out["iou"][defined].mean()
    out["mean_dice"] = out["dice"][defined].mean()
    out["pixel_accuracy"] = np.trace(cm) / total
    out["mean_class_accuracy"] = np.nanmean(out["recall"])
    freq = cm.sum(1) / total
    out["fwiou"] = (freq[freq > 0] * out["iou"][freq > 0]).sum()
    return out


def labels_and_logits(seed, shape=(2, 5, 6), num_classes=4, void=0.2, absent=3):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, shape)
    logits = rng.normal(size=shape + (num_classes,)).astype(np.float32)
    if absent is not None:
        labels[labels == absent] = 0
        logits[..., absent] -= 100.0
    labels[rng.random(shape) < void] = -1
    return labels, logits


def ref_confusion(labels, logits, num_classes, weights=None):
    valid = (labels >= 0) & (labels < num_classes)
    pred = logits.argmax(-1)
    return np.bincount(labels[valid] * num_classes + pred[valid], minlength=num_classes**2,
                       weights=None if weights is None else weights[valid]).reshape(num_classes, num_classes)


def update(metric, *batches):
    for batch in batches:
        metric.update_state(*batch)
    return ops.convert_to_numpy(metric.confusion_matrix), float(metric.result())


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("score", ["miou", "pixel_accuracy", "mean_class_accuracy", "fwiou", "mean_dice"])
def test_metric_accumulates_and_matches_reference(score, seed):
    (l1, z1), (l2, z2) = labels_and_logits(seed), labels_and_logits(seed + 10)
    cm, result = update(ConfusionMatrixMetric(4, ignore_class=-1, score=score), (l1, z1), (l2, z2))
    expected_cm = ref_confusion(l1, z1, 4) + ref_confusion(l2, z2, 4)
    np.testing.assert_array_equal(cm, expected_cm)
    assert result == pytest.approx(ref_scores(expected_cm)[score], rel=1e-6)


def test_sparse_one_hot_and_ignore_values_agree():
    labels, logits = labels_and_logits(4, absent=None)
    expected, _ = update(ConfusionMatrixMetric(4, ignore_class=-1), (labels, logits))
    one_hot = np.where((labels >= 0)[..., None], np.eye(4)[labels], 0.0).astype(np.float32)
    for y_true, ignore_class in [(labels[..., None], -1), (one_hot, None), (np.where(labels < 0, 11, labels), 11),
                                 (np.where(labels < 0, 11, labels), None), (np.where(labels < 0, 255, labels), 255)]:
        cm, _ = update(ConfusionMatrixMetric(4, ignore_class=ignore_class), (y_true, logits))
        np.testing.assert_array_equal(cm, expected)
    cm, _ = update(ConfusionMatrixMetric(4, ignore_class=0), (labels, logits))
    np.testing.assert_array_equal(cm[0], 0)
    np.testing.assert_array_equal(cm[1:], expected[1:])


def test_sample_weight_counts_and_probabilities():
    labels, logits = labels_and_logits(5)
    weights = np.random.default_rng(5).uniform(0, 3, labels.shape).astype(np.float32)
    cm, _ = update(ConfusionMatrixMetric(4, ignore_class=-1), (labels, logits, weights))
    np.testing.assert_allclose(cm, ref_confusion(labels, logits, 4, weights), rtol=1e-5)
    probs = ops.convert_to_numpy(ops.softmax(logits))
    cm_probs, _ = update(ConfusionMatrixMetric(4, ignore_class=-1, from_logits=False), (labels, probs))
    np.testing.assert_array_equal(cm_probs, ref_confusion(labels, logits, 4))


def test_single_channel_binary_output():
    labels = np.array([[[0, 1, 1, -1]]])
    logit = np.array([[[[-2.0], [0.5], [-0.1], [3.0]]]], np.float32)
    cm, _ = update(ConfusionMatrixMetric(2, ignore_class=-1), (labels, logit))
    np.testing.assert_array_equal(cm, [[1, 0], [1, 1]])
    cm, _ = update(ConfusionMatrixMetric(2, ignore_class=-1, from_logits=False), (labels, 1 / (1 + np.exp(-logit))))
    np.testing.assert_array_equal(cm, [[1, 0], [1, 1]])


@pytest.mark.parametrize("seed", range(3))
def test_agrees_with_keras_iou_metrics(seed):
    labels, logits = labels_and_logits(seed)  # class 3 absent: excluded by both
    ours = [ConfusionMatrixMetric(4, ignore_class=-1)] + [
        ConfusionMatrixMetric(4, ignore_class=-1, score="iou", class_id=c) for c in range(3)]
    keras_metrics = [keras.metrics.MeanIoU(4, ignore_class=-1, sparse_y_pred=False)] + [
        keras.metrics.IoU(4, [c], ignore_class=-1, sparse_y_pred=False) for c in range(3)]
    for mine, theirs in zip(ours, keras_metrics):
        theirs.update_state(labels, logits)
        assert update(mine, (labels, logits))[1] == pytest.approx(float(theirs.result()), rel=1e-5)


def test_per_class_scores_and_reset():
    labels, logits = labels_and_logits(6)
    iou3 = ConfusionMatrixMetric(4, ignore_class=-1, score="iou", class_id=3)
    dice1 = ConfusionMatrixMetric(4, ignore_class=-1, score="dice", class_id=1, name="dice_one")
    assert np.isnan(update(iou3, (labels, logits))[1])
    assert update(dice1, (labels, logits))[1] == pytest.approx(
        ref_scores(ref_confusion(labels, logits, 4))["dice"][1], rel=1e-6)
    assert dice1.name == "dice_one" and iou3.name == "iou_3"
    dice1.reset_state()
    assert not ops.convert_to_numpy(dice1.confusion_matrix).any()
    restored = ConfusionMatrixMetric.from_config(dice1.get_config())
    assert restored.get_config() == dice1.get_config()


def test_argument_errors():
    with pytest.raises(ValueError, match="score"):
        ConfusionMatrixMetric(3, score="f1")
    with pytest.raises(ValueError, match="class_id"):
        ConfusionMatrixMetric(3, score="iou")
    with pytest.raises(ValueError, match="class_id"):
        ConfusionMatrixMetric(3, score="miou", class_id=1)
    with pytest.raises(ValueError, match="outside"):
        ConfusionMatrixMetric(3, score="iou", class_id=3)
    with pytest.raises(ValueError, match="distinct"):
        segmentation_metrics(2, ["Sky", "sky"])
    with pytest.raises(ValueError, match="distinct"):
        segmentation_metrics(3, ["a", "b"])


@pytest.mark.parametrize("name, expected", [("Road", "road"), ("Road marking", "road_marking"),
                                            ("Sky/Cloud", "sky_cloud"), (" Car-2 ", "car_2"), (7, "7")])
def test_metric_name(name, expected):
    assert metric_name(name) == expected


def test_fit_logs_named_metrics():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(8, 8, 8, 3)).astype(np.float32)
    labels = rng.integers(-1, 3, (8, 8, 8))
    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 3, padding="same")(inputs))
    metrics = segmentation_metrics(3, ["Background", "Road", "Sky/Cloud"], ignore_class=-1)
    assert [m.name for m in metrics] == ["miou", "pixel_accuracy", "mean_dice", "iou_background", "iou_road",
                                         "iou_sky_cloud"]
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True,
                                                                                     ignore_class=-1),
                  metrics=metrics)
    history = model.fit(images[:6], labels[:6], validation_data=(images[6:], labels[6:]), batch_size=3, epochs=1,
                        verbose=0)
    for key in ("miou", "val_miou", "iou_road", "val_iou_road", "iou_sky_cloud", "val_iou_sky_cloud",
                "pixel_accuracy", "val_mean_dice"):
        assert key in history.history and np.isfinite(history.history[key][0])
    logits = model.predict(images[6:], verbose=0)
    expected = ref_scores(ref_confusion(labels[6:], logits, 3))
    assert history.history["val_miou"][0] == pytest.approx(expected["miou"], rel=1e-5)
    assert history.history["val_iou_road"][0] == pytest.approx(expected["iou"][1], rel=1e-5)


@pytest.mark.multibackend
def test_the_scores_share_one_confusion_matrix_and_equal_independent_ones():
    """segmentation_metrics accumulates one matrix (its cost is pixels x C^2 per batch) that every score reads;
    through fit and evaluate the scores equal those of independent metrics, and a reloaded model's own."""
    import keras

    rng = np.random.default_rng(0)
    x = rng.random((6, 16, 16, 3)).astype("float32")
    y = rng.integers(0, 4, (6, 16, 16)).astype("int32")
    y[0, :2] = 255
    shared = segmentation_metrics(4, ["a", "b", "c", "d"], ignore_class=255)
    assert sum(len(m.variables) for m in shared) == 1
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, padding="same")])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255),
                  metrics=shared)
    model.fit(x, y, batch_size=3, epochs=2, verbose=0)
    logs = model.evaluate(x, y, batch_size=3, verbose=0, return_dict=True)
    logits = model.predict(x, verbose=0)
    for score, class_id, key in [("miou", None, "miou"), ("pixel_accuracy", None, "pixel_accuracy"),
                                 ("mean_dice", None, "mean_dice"), ("iou", 2, "iou_c")]:
        alone = ConfusionMatrixMetric(4, 255, score=score, class_id=class_id)
        alone.update_state(y, logits)
        assert logs[key] == pytest.approx(float(alone.result()), abs=1e-6)
