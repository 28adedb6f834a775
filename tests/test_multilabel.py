"""Multi-label masks: per-class folders and multi-channel files, the targets the pipeline yields, sigmoid losses
against NumPy references, per-class metrics, and a tiny run through training, predict, evaluate and export."""
import json
import pathlib

import cv2
import numpy as np
import pytest
import tifffile

from data.discovery import DatasetError, discover
from data.masks import IGNORE_INDEX, ReadError
from data.multilabel import MultilabelEncoding
from data.pipeline import build_dataset
from data.scan import mask_encoding, scan

SIZE = (64, 80)
VOID = 128


def _truth(index):
    """(H, W, 2) expected multi-hot masks of sample `index`: a disc and a box that overlap; box row 0 is void."""
    disc, box = np.zeros(SIZE, np.uint8), np.zeros(SIZE, np.uint8)
    cv2.circle(disc, (24 + 4 * index, 30), 14, 1, -1)
    box[20:50, 30 + 2 * index:70] = 1
    box[0, :] = IGNORE_INDEX
    return np.stack([box, disc], axis=-1)


def _image(truth):
    """BGR uint8 image for cv2.imwrite: red where the disc (class 1) is, green where the box (class 0) is."""
    image = np.full((*truth.shape[:2], 3), 30, np.uint8)
    image[..., 2][truth[..., 1] == 1] = 220
    image[..., 1][truth[..., 0] == 1] = 200
    return image


def write_class_folders(root, count=8):
    """images/<stem>.png and masks/{box,disc}/<stem>.png (0/255, void VOID in box row 0)."""
    for folder in ("images", "masks/box", "masks/disc"):
        (root / folder).mkdir(parents=True)
    for i in range(count):
        truth = _truth(i)
        cv2.imwrite(str(root / "images" / f"s{i}.png"), _image(truth))
        for c, name in enumerate(("box", "disc")):
            plane = np.where(truth[..., c] == IGNORE_INDEX, VOID, truth[..., c] * 255).astype(np.uint8)
            cv2.imwrite(str(root / "masks" / name / f"s{i}.png"), plane)
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return write_class_folders(tmp_path_factory.mktemp("ml") / "data")


def test_class_folders_are_detected_with_folder_names_as_classes(folders):
    frame = discover(folders, val_fraction=0.25, seed=0)
    encoding = mask_encoding({"mask": "auto", "void": VOID}, frame)
    assert encoding.kind == "multilabel" and encoding.class_names == ("box", "disc") and encoding.folders
    result = scan(frame, encoding, 3, list(encoding.class_names))
    assert result.problems == []
    table = result.class_table("train")
    expected = sum((_truth(int(pathlib.Path(p).stem[1:])) == 1).sum((0, 1))
                   for p in frame.loc[frame["split"] == "train", "image"])
    assert table["pixels"].tolist() == expected.tolist()


def test_class_names_choose_and_order_the_folders(folders):
    frame = discover(folders, val_fraction=0.0)
    encoding = mask_encoding({"mask": "multilabel", "class_names": ["disc"], "void": VOID}, frame)
    np.testing.assert_array_equal(encoding.read(frame["mask"].iloc[0]), _truth(0)[..., 1:])
    with pytest.raises(ReadError, match=r"data.class_names: no class folder car .*class folders: box, disc"):
        mask_encoding({"mask": "multilabel", "class_names": ["car"]}, frame)


def test_pipeline_yields_exact_multi_hot_targets_with_void_and_padding(folders):
    frame = discover(folders, val_fraction=0.0).iloc[:2]
    encoding = mask_encoding({"mask": "auto", "void": VOID}, frame)
    (images, masks), = [tuple(np.asarray(t) for t in b) for b in
                        build_dataset(frame, encoding, training=False, batch_size=2, divisor=32)]
    assert masks.dtype == np.float32 and masks.shape == (2, 64, 96, 2)
    for i in range(2):
        np.testing.assert_array_equal(masks[i, :, :80], _truth(i))
    assert (masks[:, :, 80:] == IGNORE_INDEX).all()
    overlap = (masks[0, ..., 0] == 1) & (masks[0, ..., 1] == 1)
    assert overlap[30, 31] and overlap.sum() > 100
    assert (masks[0, 0, :80, 0] == IGNORE_INDEX).all() and set(np.unique(masks[0, 0, :80, 1])) == {0}


def test_augmentation_moves_every_channel_with_nearest_interpolation(folders):
    frame = discover(folders, val_fraction=0.0)
    encoding = mask_encoding({"mask": "auto", "void": VOID}, frame)
    dataset = build_dataset(frame, encoding, training=True, batch_size=8, crop_size=(48, 48), seed=3,
                            augment_options={"rotate": 30.0, "affine_p": 1.0, "vflip": 0.5,
                                                             "brightness_contrast": 0.0})
    images, masks = (np.asarray(t) for t in next(iter(dataset)))
    assert set(np.unique(masks)) <= {0.0, 1.0, float(IGNORE_INDEX)}
    disc, box = masks[..., 1] == 1, masks[..., 0] == 1
    assert disc.any() and box.any()
    # The image follows the masks: red where the disc is, green where the box is (away from edges).
    eroded = np.stack([cv2.erode(d.astype(np.uint8), np.ones((5, 5))) for d in disc]).astype(bool)
    assert images[..., 0][eroded].min() > 0.6
    eroded = np.stack([cv2.erode(b.astype(np.uint8), np.ones((5, 5))) for b in box]).astype(bool)
    assert images[..., 1][eroded].min() > 0.6


def test_missing_class_mask_is_reported(tmp_path):
    root = write_class_folders(tmp_path / "d", count=2)
    (root / "masks" / "disc" / "s1.png").unlink()
    with pytest.raises(DatasetError, match=r"s1.png: image has no mask in class folder .*disc"):
        discover(root)


@pytest.mark.parametrize("layout", ["YXS", "CYX"])
def test_multi_channel_tiff_masks(tmp_path, layout):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    planes = np.zeros((*SIZE, 3), np.uint8)
    planes[10:30, 10:40, 0] = 1
    planes[20:40, 30:60, 1] = 1
    planes[5, 5, 2] = 255  # void in class 2 only (data.void: 255 with 0/1 masks)
    planes[50:60, 5:15, 2] = 1
    cv2.imwrite(str(tmp_path / "images" / "a.png"), _image(planes[..., :2]))
    stored = planes if layout == "YXS" else np.moveaxis(planes, -1, 0)
    tifffile.imwrite(tmp_path / "masks" / "a.tif", stored, photometric="minisblack",
                     planarconfig="contig" if layout == "YXS" else None)
    frame = discover(tmp_path, val_fraction=0.0)
    encoding = mask_encoding({"mask": "multilabel", "void": 255, "class_names": ["a", "b", "c"]}, frame)
    assert encoding == MultilabelEncoding(3, ("a", "b", "c"), folders=False, void=255)
    (_, masks), = [tuple(np.asarray(t) for t in b) for b in build_dataset(frame, encoding, training=False,
                                                                           batch_size=1)]
    expected = planes.copy()
    expected[5, 5, 2] = IGNORE_INDEX
    np.testing.assert_array_equal(masks[0], expected)
    assert masks[0, 25, 35].tolist() == [1, 1, 0]
    with pytest.raises(ReadError, match=r"a.tif: mask has 3 channel\(s\); data.num_classes"):
        mask_encoding({"mask": "multilabel", "num_classes": 4}, frame)


def test_rgba_png_channels_are_classes_in_rgba_order(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[:4, :, 0] = 255  # R: class 0
    rgba[:, :4, 1] = 255  # G: class 1
    rgba[2:6, 2:6, 3] = 255  # A: class 3
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    frame = discover(tmp_path, val_fraction=0.0)
    encoding = mask_encoding({"mask": "multilabel"}, frame)
    assert encoding.num_classes == 4
    np.testing.assert_array_equal(encoding.read(frame["mask"].iloc[0]), rgba // 255)


# Losses and metrics (keras.ops; CI runs these on JAX too) against NumPy references written from the formulas
# of segmentation_models.pytorch's multilabel DiceLoss, SoftBCEWithLogitsLoss and FocalLoss.

def _random_batch(seed, void=0.0, absent=None):
    rng = np.random.default_rng(seed)
    y = (rng.random((2, 6, 7, 3)) < 0.4).astype(np.float32)
    if absent is not None:
        y[..., absent] = 0
    y[rng.random(y.shape) < void] = IGNORE_INDEX
    z = rng.normal(0, 2, y.shape).astype(np.float32)
    return y, z


def _sigmoid(z):
    return 1 / (1 + np.exp(-z.astype(np.float64)))


def _bce(y, z):
    p = _sigmoid(z)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def smp_dice(y, z, smooth=0.0, eps=1e-7):
    """smp DiceLoss(mode="multilabel", ignore_index=IGNORE_INDEX): per-class batch Dice, absent classes 0, mean."""
    mask = y != IGNORE_INDEX
    p, t = _sigmoid(z) * mask, y * mask
    inter, card = (p * t).sum((0, 1, 2)), (p + t).sum((0, 1, 2))
    score = (2 * inter + smooth) / np.maximum(card + smooth, eps)
    return ((1 - score) * (t.sum((0, 1, 2)) > 0)).mean()


def smp_bce(y, z):
    """smp SoftBCEWithLogitsLoss(ignore_index=IGNORE_INDEX): masked element losses, mean over all elements."""
    mask = y != IGNORE_INDEX
    return (_bce(np.where(mask, y, 0), z) * mask).mean()


def smp_focal(y, z, gamma=2.0, alpha=None):
    """smp FocalLoss(mode="multilabel", ignore_index=IGNORE_INDEX): void elements dropped, mean focal term."""
    keep = y != IGNORE_INDEX
    y, z = y[keep], z[keep]
    bce = _bce(y, z)
    loss = (1 - np.exp(-bce)) ** gamma * bce
    if alpha is not None:
        loss = loss * (alpha * y + (1 - alpha) * (1 - y))
    return loss.mean()


@pytest.mark.multibackend
def test_losses_match_smp_multilabel_without_void():
    from models.losses import multilabel_bce, multilabel_dice_loss, multilabel_focal_loss

    y, z = _random_batch(0)
    assert float(multilabel_dice_loss(y, z, smooth=0.0)) == pytest.approx(smp_dice(y, z), rel=1e-5)
    assert float(multilabel_dice_loss(y, z, smooth=1.0)) == pytest.approx(smp_dice(y, z, smooth=1.0), rel=1e-5)
    assert float(multilabel_bce(y, z)) == pytest.approx(smp_bce(y, z), rel=1e-5)
    assert float(multilabel_focal_loss(y, z)) == pytest.approx(smp_focal(y, z), rel=1e-5)
    assert float(multilabel_focal_loss(y, z, alpha=0.25)) == pytest.approx(smp_focal(y, z, alpha=0.25), rel=1e-5)


@pytest.mark.multibackend
def test_void_elements_count_nowhere():
    from models.losses import multilabel_bce, multilabel_dice_bce, multilabel_dice_loss, multilabel_focal_loss

    y, z = _random_batch(1, void=0.3)
    valid = (y != IGNORE_INDEX).mean()
    assert 0.6 < valid < 0.8
    assert float(multilabel_dice_loss(y, z, smooth=0.0)) == pytest.approx(smp_dice(y, z), rel=1e-5)
    # smp divides the BCE by every element, void included; we divide by the valid ones.
    assert float(multilabel_bce(y, z)) == pytest.approx(smp_bce(y, z) / valid, rel=1e-5)
    assert float(multilabel_focal_loss(y, z, gamma=1.5)) == pytest.approx(smp_focal(y, z, 1.5), rel=1e-5)
    # Changing the logits of void elements changes nothing.
    z_other = np.where(y == IGNORE_INDEX, 50.0, z).astype(np.float32)
    for fn in (multilabel_bce, multilabel_dice_loss, multilabel_focal_loss, multilabel_dice_bce):
        assert float(fn(y, z_other)) == pytest.approx(float(fn(y, z)), rel=1e-6)
    combined = 0.3 * smp_bce(y, z) / valid + 0.7 * smp_dice(y, z, smooth=1.0)
    assert float(multilabel_dice_bce(y, z, dice_weight=0.7)) == pytest.approx(combined, rel=1e-5)


@pytest.mark.multibackend
def test_dice_averages_over_present_classes_weights_and_probabilities():
    from models.losses import multilabel_dice_loss

    y, z = _random_batch(2, void=0.1, absent=1)
    # smp counts the absent class as 0 and divides by all 3 classes; we average over the 2 present ones.
    assert float(multilabel_dice_loss(y, z, smooth=0.0)) == pytest.approx(smp_dice(y, z) * 3 / 2, rel=1e-5)
    weights = np.array([2.0, 5.0, 1.0])
    mask = y != IGNORE_INDEX
    p, t = _sigmoid(z) * mask, np.where(mask, y, 0)
    dice = (2 * (p * t).sum((0, 1, 2)) + 1) / (p.sum((0, 1, 2)) + t.sum((0, 1, 2)) + 1)
    expected = (2 * (1 - dice[0]) + 1 * (1 - dice[2])) / 3
    assert float(multilabel_dice_loss(y, z, class_weights=weights)) == pytest.approx(expected, rel=1e-5)
    probabilities = _sigmoid(z).astype(np.float32)
    assert float(multilabel_dice_loss(y, probabilities, from_logits=False)) == pytest.approx(
        float(multilabel_dice_loss(y, z)), rel=1e-4)


@pytest.mark.multibackend
def test_pixel_weights_and_class_weights_of_bce():
    from models.losses import multilabel_bce

    y, z = _random_batch(3, void=0.2)
    rng = np.random.default_rng(4)
    pixel = rng.uniform(0.5, 3.0, y.shape[:3]).astype(np.float32)
    classes = np.array([1.0, 0.5, 2.0])
    valid = y != IGNORE_INDEX
    terms = _bce(np.where(valid, y, 0), z) * valid
    expected = (terms * pixel[..., None] * classes).sum() / (valid * classes).sum()
    assert float(multilabel_bce(y, z, sample_weight=pixel, class_weights=classes)) == pytest.approx(expected, rel=1e-5)
    smoothed = _bce(np.where(valid, y * 0.8 + (1 - y) * 0.2, 0), z) * valid
    assert float(multilabel_bce(y, z, label_smoothing=0.2)) == pytest.approx(smoothed.sum() / valid.sum(), rel=1e-5)


@pytest.mark.multibackend
def test_losses_by_name_serialise_and_train_a_model():
    import keras

    from models.losses import MULTILABEL_LOSSES, get_multilabel_loss

    y, z = _random_batch(5, void=0.1)
    for name in MULTILABEL_LOSSES:
        loss = get_multilabel_loss(name, num_classes=3)
        clone = type(loss).from_config(loss.get_config())
        assert float(clone(y, z)) == pytest.approx(float(loss(y, z)), rel=1e-6)
    with pytest.raises(KeyError, match="loss 'lovasz' has no multi-label form; valid names: ce, bce"):
        get_multilabel_loss("lovasz")
    inputs = keras.Input((6, 7, 2))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inputs))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=get_multilabel_loss("dice_ce"))
    x = np.random.default_rng(6).random((2, 6, 7, 2)).astype(np.float32)
    first = model.evaluate(x, y, verbose=0)
    model.fit(x, y, epochs=20, verbose=0)
    assert np.isfinite(first) and model.evaluate(x, y, verbose=0) < first


@pytest.mark.multibackend
def test_metrics_match_numpy_counts_and_skip_void():
    from models.multilabel_metrics import (MultilabelConfusionMetric, multilabel_counts, multilabel_metrics,
                                           multilabel_scores)

    y, z = _random_batch(7, void=0.2)
    counts = multilabel_counts(y, _sigmoid(z))
    positive, predicted, valid = y == 1, z > 0, y != IGNORE_INDEX
    np.testing.assert_array_equal(counts[:, 0], (positive & predicted).sum((0, 1, 2)))
    np.testing.assert_array_equal(counts[:, 1], (valid & ~positive & predicted).sum((0, 1, 2)))
    np.testing.assert_array_equal(counts[:, 2], (positive & ~predicted).sum((0, 1, 2)))
    scores = multilabel_scores(counts)
    tp, fp, fn = counts.T
    np.testing.assert_allclose(scores["iou"], tp / (tp + fp + fn))
    np.testing.assert_allclose(scores["recall"], tp / (tp + fn))
    metrics = {m.name: m for m in multilabel_metrics(3, ["Road", "car", "sky"])}
    assert list(metrics)[:4] == ["miou", "mean_dice", "iou_road", "iou_car"] and "recall_sky" in metrics
    for name, metric in metrics.items():
        metric.update_state(y[:1], z[:1])
        metric.update_state(y[1:], z[1:])
    assert float(metrics["miou"].result()) == pytest.approx(scores["miou"], rel=1e-5)
    assert float(metrics["mean_dice"].result()) == pytest.approx(scores["mean_dice"], rel=1e-5)
    assert float(metrics["precision_car"].result()) == pytest.approx(scores["precision"][1], rel=1e-5)
    strict = MultilabelConfusionMetric(3, "recall", 0, threshold=0.9)
    strict.update_state(y, z)
    expected = (positive & (z > np.log(9)))[..., 0].sum() / positive[..., 0].sum()
    assert float(strict.result()) == pytest.approx(expected, rel=1e-5)
