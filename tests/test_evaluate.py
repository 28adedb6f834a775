import json
import pathlib
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from app.evaluate import main as evaluate
from app.predict import main as predict
from data.synthetic import write_shapes_dataset


@pytest.fixture(scope="module")
def report(tiny_run, tmp_path_factory):
    run, _ = tiny_run
    out = tmp_path_factory.mktemp("report")
    assert evaluate(["--run", str(run), "--out", str(out), "--overlays", "1"]) == 0
    return out


def predicted_confusion(run, images, out, *options):
    """Confusion matrix (3 classes) of the masks that `app.predict` writes for the report's images."""
    assert predict(["--run", str(run), *images["image"], "--out", str(out), *options]) == 0
    matrix = np.zeros((3, 3), np.int64)
    for image, mask in zip(images["image"], images["mask"]):
        truth = cv2.imread(mask, cv2.IMREAD_UNCHANGED).astype(np.int64)
        prediction = cv2.imread(str(out / f"{pathlib.Path(image).stem}.png"), cv2.IMREAD_UNCHANGED)
        valid = truth != 255
        assert (~valid).sum() == 3 * truth.shape[1]  # the void border is ignored
        matrix += np.bincount(truth[valid] * 3 + prediction[valid], minlength=9).reshape(3, 3)
    return matrix


def test_scores_equal_a_hand_computed_confusion_of_saved_predictions(tiny_run, report, tmp_path):
    run, _ = tiny_run
    images = pd.read_csv(report / "per_image.csv")
    assert len(images) == 2  # the seeded val split of 8 images
    matrix = predicted_confusion(run, images, tmp_path)
    saved = pd.read_csv(report / "confusion_matrix.csv", index_col=0)
    assert saved.index.tolist() == saved.columns.tolist() == ["bg", "disc", "box"]
    np.testing.assert_array_equal(saved.to_numpy(), matrix)
    tp = np.diag(matrix)
    with np.errstate(invalid="ignore"):
        iou = tp / (matrix.sum(0) + matrix.sum(1) - tp)
    per_class = pd.read_csv(report / "per_class.csv", index_col="class")
    assert per_class.columns.tolist() == ["iou", "dice", "precision", "recall", "pixel_share"]
    np.testing.assert_allclose(per_class["iou"], iou)
    np.testing.assert_allclose(per_class["pixel_share"], matrix.sum(1) / matrix.sum())
    summary = json.loads((report / "summary.json").read_text())
    assert summary["miou"] == pytest.approx(np.nanmean(iou))
    assert summary["pixel_accuracy"] == pytest.approx(tp.sum() / matrix.sum())
    assert summary["images"] == 2 and summary["split"] == "val"


def test_tta_and_tiles_evaluate_what_predict_writes(tiny_run, report, tmp_path):
    run, _ = tiny_run
    options = ["--tta", "--tile", "32", "32", "--overlap", "0.5"]
    assert evaluate(["--run", str(run), "--out", str(tmp_path / "report"), "--overlays", "0", *options]) == 0
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["prediction"] == {"tile": [32, 32], "overlap": 0.5, "blend": "gaussian", "tta": True}
    images = pd.read_csv(tmp_path / "report" / "per_image.csv")
    matrix = predicted_confusion(run, images, tmp_path / "masks", *options)
    np.testing.assert_array_equal(summary["confusion_matrix"], matrix)
    plain = predicted_confusion(run, images, tmp_path / "plain")
    assert not np.array_equal(matrix, plain)  # the options changed the predictions
    with pytest.raises(SystemExit) as bad:
        evaluate(["--run", str(run), "--tile", "0", "32"])
    assert bad.value.code == 2


def test_report_files(report):
    overlays = sorted(p.name for p in (report / "overlays").iterdir())
    assert len(overlays) == 2 and overlays[0].startswith("best_01_") and overlays[1].startswith("worst_01_")
    assert cv2.imread(str(report / "overlays" / overlays[0])).shape[1] > 1000
    page = (report / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4  # confusion matrix, curves, 2 overlays
    assert "<th>disc</th>" in page and "mean_class_accuracy" in page
    assert not list(report.glob(".*"))


def test_bad_inputs_exit_2(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    assert evaluate(["--run", str(run), "--split", "test", "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err == f"error: {data}: no images in split 'test'; found train (6), val (2)\n"
    five = write_shapes_dataset(tmp_path / "five", count=4, num_classes=5, seed=1)
    assert evaluate(["--run", str(run), "--data", str(five), "--out", str(tmp_path / "b")]) == 2
    assert "outside classes 0..2 and void 255" in capsys.readouterr().err
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(run / "config.yaml", bare)
    assert evaluate(["--run", str(bare)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bare / 'model.keras'}: model file not found")
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    for image in (broken / "images").iterdir():
        image.write_bytes(b"broken")
    assert evaluate(["--run", str(run), "--data", str(broken), "--out", str(tmp_path / "c")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {broken / 'images'}")
    assert not (tmp_path / "c").exists()  # a command that fails leaves no output folder


def test_per_image_dice_and_iou_by_hand():
    from app.evaluation.scores import confusion_matrix, per_image_scores

    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 255, 255]])
    prediction = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [2, 0, 1, 1]])
    row = per_image_scores(confusion_matrix(truth, prediction, 3), ["bg", "a", "b"])
    # bg: TP 3, FP 2 (a->bg, b->bg), FN 1 (bg->a); a: TP 3, FP 1, FN 1; b: TP 1, FP 0, FN 1 (void ignored)
    assert row["dice_bg"] == pytest.approx(6 / 9) and row["iou_bg"] == pytest.approx(3 / 6)
    assert row["dice_a"] == pytest.approx(6 / 8) and row["iou_a"] == pytest.approx(3 / 5)
    assert row["dice_b"] == pytest.approx(2 / 3) and row["iou_b"] == pytest.approx(1 / 2)
    assert row["mean_dice"] == pytest.approx((6 / 9 + 6 / 8 + 2 / 3) / 3)
    empty = per_image_scores(confusion_matrix(np.zeros((2, 2), int), np.zeros((2, 2), int), 2), ["bg", "fg"])
    assert empty["dice_bg"] == 1.0 and np.isnan(empty["dice_fg"]) and empty["mean_dice"] == 1.0


def test_hd95_by_hand_and_its_empty_mask_conventions():
    from app.evaluation.scores import hd95, hd95_per_class

    truth = np.zeros((30, 30), bool)
    truth[10:20, 10:20] = True
    grown = np.zeros((30, 30), bool)
    grown[8:22, 8:22] = True
    assert hd95(truth, truth) == 0.0
    # 88 surface distances: edges 2 px apart, except the grown square's corners: 8 at sqrt(5), 4 at sqrt(8)
    assert hd95(truth, grown) == pytest.approx(np.sqrt(5))
    dot = np.zeros((30, 30), bool)
    dot[15, 27] = True
    far = truth | dot  # one stray pixel 8 px right of the square: under 5% of the surface, ignored by the 95th pct
    assert hd95(truth, far) == pytest.approx(0.0)
    assert np.isnan(hd95(np.zeros((30, 30), bool), np.zeros((30, 30), bool)))
    assert hd95(truth, np.zeros((30, 30), bool)) == pytest.approx(np.hypot(30, 30))
    labels = np.where(truth, 1, 0).astype(np.uint8)
    labels[0] = 255  # void row: predictions there do not count
    prediction = labels.copy()
    prediction[0] = 1
    assert hd95_per_class(labels, prediction, 2)[1] == 0.0


def test_report_has_per_image_means(report):
    images = pd.read_csv(report / "per_image.csv")
    assert {"mean_dice", "dice_bg", "dice_disc", "dice_box", "iou_disc"} <= set(images.columns)
    summary = json.loads((report / "summary.json").read_text())
    means = summary["per_image"]
    assert means["images"] == len(images)
    assert means["mdice"] == pytest.approx(images["mean_dice"].mean())
    assert means["dice"]["disc"] == pytest.approx(images["dice_disc"].dropna().mean())
    assert means["iou"]["box"] == pytest.approx(images["iou_box"].dropna().mean())
    assert "hd95" not in means


def test_hd95_option(tiny_run, tmp_path):
    run, _ = tiny_run
    assert evaluate(["--run", str(run), "--out", str(tmp_path), "--overlays", "0", "--hd95"]) == 0
    images = pd.read_csv(tmp_path / "per_image.csv")
    assert {"hd95_bg", "hd95_disc", "hd95_box"} <= set(images.columns)
    values = images[["hd95_bg", "hd95_disc", "hd95_box"]].to_numpy()
    assert (values[np.isfinite(values)] >= 0).all() and np.isfinite(values).any()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["per_image"]["hd95"]["disc"] == pytest.approx(images["hd95_disc"].dropna().mean())
