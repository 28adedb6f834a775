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
    with pytest.raises(ReadError, match=r"masks: per-class mask folders hold multi-label masks; set data.mask: "
                                         r"multilabel \(or auto\), not binary"):
        mask_encoding({"mask": "binary"}, frame)


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


def test_one_class_folder_is_multilabel_too(tmp_path):
    root = write_class_folders(tmp_path / "d", count=2)
    for file in (root / "masks" / "box").iterdir():
        file.unlink()
    (root / "masks" / "box").rmdir()
    frame = discover(root, val_fraction=0.0)
    encoding = mask_encoding({"mask": "auto"}, frame)
    assert encoding.kind == "multilabel" and encoding.class_names == ("disc",)
    np.testing.assert_array_equal(encoding.read(frame["mask"].iloc[1]), _truth(1)[..., 1:])


def test_missing_class_mask_is_reported_or_read_as_absent(tmp_path):
    root = write_class_folders(tmp_path / "d", count=3)
    (root / "masks" / "disc" / "s1.png").unlink()
    (root / "masks" / "box" / "extra.png").write_bytes((root / "masks" / "box" / "s0.png").read_bytes())
    with pytest.raises(DatasetError, match=r"extra.png: mask has no image in .*images"):
        discover(root)
    (root / "masks" / "box" / "extra.png").unlink()
    frame = discover(root, val_fraction=0.0)
    encoding = mask_encoding({"mask": "auto", "void": VOID}, frame)
    assert scan(frame, encoding, 3).problems == [
        f"{root / 'masks' / 'disc' / 's1.png'}: no mask in class folder disc (an absent class needs an all-zero "
        "mask, or set data.missing_class_masks: empty)"]
    encoding = mask_encoding({"mask": "auto", "void": VOID, "missing_class_masks": "empty"}, frame)
    expected = _truth(1)
    expected[..., 1] = 0
    np.testing.assert_array_equal(encoding.read(frame["mask"].iloc[1]), expected)


def test_class_masks_named_with_a_folder_suffix(tmp_path):
    """IDRiD style: images/IDRiD_01.jpg, masks/MA/IDRiD_01_MA.tif (colour TIFF), masks/HE/IDRiD_01_HE.tif."""
    (tmp_path / "images").mkdir()
    for name in ("MA", "HE"):
        (tmp_path / "masks" / name).mkdir(parents=True)
    truth = _truth(0)
    for i in (1, 2):
        cv2.imwrite(str(tmp_path / "images" / f"IDRiD_0{i}.jpg"), _image(truth))
        for c, name in ((0, "MA"), (1, "HE")):
            red = np.zeros((*SIZE, 3), np.uint8)
            red[..., 0] = (truth[..., c] == 1) * 255
            tifffile.imwrite(tmp_path / "masks" / name / f"IDRiD_0{i}_{name}.tif", red, photometric="rgb")
    frame = discover(tmp_path, val_fraction=0.0)
    encoding = mask_encoding({"mask": "auto"}, frame)
    assert encoding.class_names == ("HE", "MA")
    np.testing.assert_array_equal(encoding.read(frame["mask"].iloc[1]), np.where(truth == 1, 1, 0)[..., ::-1])


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


# End to end: check_data, a tiny 1-epoch run, predict, evaluate and a TFLite export.

@pytest.fixture(scope="module")
def ml_run(folders, tmp_path_factory):
    from app.train import main

    runs = tmp_path_factory.mktemp("ml_runs")
    overrides = [f"data.void={VOID}", "data.image_size=[64,64]", "model.base_filters=4", "model.depth=2",
                 "train.batch_size=4", "train.verbose=epoch"]
    argv = ["--data", str(folders), "--epochs", "1", "--runs-dir", str(runs), "--name", "ml"]
    assert main(argv + [arg for item in overrides for arg in ("--set", item)]) == 0
    (run,) = runs.iterdir()
    return run


def test_check_data_says_multilabel(folders, capsys):
    from app.check_data import main

    assert main(["--data", str(folders), "--set", f"data.void={VOID}"]) == 0
    out = capsys.readouterr().out
    assert "masks: multilabel masks, 2 classes, void 128 (one binary mask per class folder)" in out and "no problems found" in out


def test_training_writes_a_multilabel_run(ml_run):
    import pandas as pd
    import yaml

    assert yaml.safe_load((ml_run / "config.yaml").read_text())["data"]["mask"] == "multilabel"
    metrics = json.loads((ml_run / "metrics.json").read_text())
    assert list(metrics["per_class"]) == ["box", "disc"] and metrics["split"] == "val"
    ious = [metrics["per_class"][name]["iou"] for name in ("box", "disc")]
    assert metrics["miou"] == pytest.approx(np.mean(ious))
    history = pd.read_csv(ml_run / "history.csv")
    assert {"val_miou", "val_iou_box", "val_dice_disc", "val_precision_box", "val_recall_disc"} <= set(history)
    assert history["val_miou"].iloc[-1] == pytest.approx(metrics["miou"], abs=1e-5)


def _keras_masks(run, image_path, threshold=0.5):
    import keras

    from data.masks import read_image

    model = keras.saving.load_model(run / "model.keras", compile=False)
    logits = model.predict_on_batch(read_image(image_path)[None])[0]
    return (_sigmoid(np.asarray(logits)) > threshold).astype(np.uint8) * 255


def test_predict_writes_one_binary_mask_per_class(ml_run, folders, tmp_path):
    from app.predict import main

    out = tmp_path / "pred"
    assert main(["--run", str(ml_run), str(folders / "images" / "s0.png"), str(folders / "images" / "s1.png"),
                 "--out", str(out), "--overlay"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["box", "disc", "overlay", "palette.csv"]
    expected = _keras_masks(ml_run, folders / "images" / "s1.png")
    for c, name in enumerate(("box", "disc")):
        written = cv2.imread(str(out / name / "s1.png"), cv2.IMREAD_UNCHANGED)
        assert written.shape == SIZE and set(np.unique(written)) <= {0, 255}
        np.testing.assert_array_equal(written, expected[..., c])
    assert main(["--run", str(ml_run), str(folders / "images" / "s1.png"), "--out", str(tmp_path / "strict"),
                 "--threshold", "0.9"]) == 0
    strict = cv2.imread(str(tmp_path / "strict" / "box" / "s1.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(strict, _keras_masks(ml_run, folders / "images" / "s1.png", 0.9)[..., 0])


def test_evaluate_reports_per_class_scores(ml_run, tmp_path):
    import pandas as pd

    from app.evaluate import main

    assert main(["--run", str(ml_run), "--out", str(tmp_path / "report")]) == 0
    table = pd.read_csv(tmp_path / "report" / "per_class.csv", index_col="class")
    assert list(table.index) == ["box", "disc"]
    assert {"iou", "dice", "precision", "recall", "pixel_share", "tp", "fp", "fn"} <= set(table.columns)
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    metrics = json.loads((ml_run / "metrics.json").read_text())
    assert summary["mask"] == "multilabel" and summary["images"] == 2
    assert summary["miou"] == pytest.approx(metrics["miou"], abs=1e-6)
    assert (tmp_path / "report" / "report.html").is_file()


def test_threshold_is_refused_for_multiclass_runs(ml_run, folders, tmp_path, capsys):
    import yaml

    from app.evaluate import main as evaluate
    from app.predict import main as predict

    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_bytes((ml_run / "model.keras").read_bytes())
    config = yaml.safe_load((ml_run / "config.yaml").read_text())
    config["data"].update(mask="index", num_classes=2)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    image = str(folders / "images" / "s0.png")
    assert predict(["--run", str(run), image, "--out", str(tmp_path / "out"), "--threshold", "0.3"]) == 2
    assert "--threshold applies to multi-label runs only" in capsys.readouterr().err
    assert evaluate(["--run", str(run), "--threshold", "0.3"]) == 2
    assert "--threshold applies to multi-label runs only" in capsys.readouterr().err


def test_export_ends_in_a_sigmoid(ml_run, folders, tmp_path):
    import keras
    import tensorflow as tf

    from app.exporting.exporters import export_run, float32_model
    from app.inference.litert import LiteRTModel
    from data.masks import read_image

    table = export_run(ml_run, ["savedmodel", "tflite-fp32"], tmp_path, latency_runs=1)
    assert table["passed"].all() and (table["agreement_pct"] > 99).all()
    model = float32_model(keras.saving.load_model(ml_run / "model.keras", compile=False))  # what export writes
    crop = read_image(folders / "images" / "s0.png")[None, :, :64]
    expected = _sigmoid(np.asarray(model.predict_on_batch(crop)))
    np.testing.assert_allclose(LiteRTModel(tmp_path / "model_fp32.tflite").predict_on_batch(crop), expected,
                               atol=1e-4)
    serve = tf.saved_model.load(str(tmp_path / "savedmodel")).signatures["serving_default"]
    result = serve(images=tf.constant(np.round(crop * 255).astype(np.uint8)))
    assert result["mask"].dtype == tf.uint8 and result["mask"].shape == (1, 64, 64, 2)
    np.testing.assert_array_equal(result["mask"].numpy(), result["probabilities"].numpy() > 0.5)
    np.testing.assert_allclose(result["probabilities"].numpy(), expected, atol=1e-4)
