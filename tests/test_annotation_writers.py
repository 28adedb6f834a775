"""Predictions as CVAT / LabelMe / COCO annotations read back to the same masks; the uncertainty ranking."""
import json
import pathlib
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app.config.loading import load_config
from app.dataset.checking import check_dataset
from app.dataset.importing import import_annotations
from app.inference.annotation_writers import (CVAT_HEADER, LABELME_VERSION, annotation_writer, merge_small_regions,
                                              polygons)
from app.inference.palette import default_palette
from app.inference.predictor import load_predictor, predict_labels
from app.inference.ranking import ranking_table, uncertainty
from app.predict import main
from app.runtime.outputs import output_dir
from data.masks import read_image

NAMES = ["background", "Zellkern", "Straße", "细胞"]
COLOURS = default_palette(len(NAMES))


def scene():
    """A 4-class mask: a ring with an empty hole, a ring holding an island of another class and one of its own
    class, regions on every border, a thin diagonal line, and the non-ASCII class names above."""
    labels = np.zeros((70, 90), np.uint8)
    labels[5:35, 5:45] = 1
    labels[10:25, 10:25] = 0                      # empty hole
    labels[12:20, 30:40] = 2                      # island of another class inside class 1
    labels[40:70, 60:90] = 2                      # bottom-right corner
    labels[50:60, 70:80] = 0                      # hole in a border region
    labels[0:8, 55:75] = 3                        # top border
    labels[45:68, 5:35] = 3
    labels[50:62, 10:28] = 0
    labels[54:58, 15:20] = 3                      # same class inside its own hole
    cv2.line(labels, (48, 40), (58, 30), 1, 2)    # thin diagonal
    labels[30:45, 0:3] = 2                        # left border strip
    return labels


@pytest.fixture
def images(tmp_path):
    """Two image files (the scene and an empty prediction) beside the output folder, as a user has them."""
    folder = tmp_path / "images"
    folder.mkdir()
    paths = [folder / "scene.png", folder / "leer.jpg"]
    for path in paths:
        cv2.imwrite(str(path), np.full((70, 90, 3), 128, np.uint8))
    return dict(zip(paths, [scene(), np.zeros((70, 90), np.uint8)]))


def write(fmt, out, images, **options):
    writer = annotation_writer(fmt, out, NAMES, COLOURS, **options)
    for path, labels in images.items():
        writer.add(path, labels)
    return writer.close()


def imported(kind, source, out, classes=NAMES):
    """Masks read back by segkit's importer (the same code `--data` uses for LabelMe and COCO)."""
    warnings = []
    import_annotations(kind, source, out, classes=classes, warn=warnings.append)
    return {path.stem: cv2.imread(str(path), cv2.IMREAD_UNCHANGED) for path in (out / "masks").glob("*.png")}


def near_boundaries(original, found, tolerance):
    """True when every pixel where `found` differs from `original` lies within tolerance + 1 pixels of a class
    boundary of `original`."""
    dilated = cv2.dilate(original, np.ones((3, 3), np.uint8))
    eroded = cv2.erode(original, np.ones((3, 3), np.uint8))
    boundary = (dilated != original) | (eroded != original)
    distance = cv2.distanceTransform((~boundary).astype(np.uint8), cv2.DIST_L2, 5)
    differ = original != found
    return not differ.any() or distance[differ].max() <= tolerance + 1


def test_cvat_segmentation_mask_layout_reads_back_exactly(images, tmp_path):
    out = tmp_path / "cvat"
    write("cvat", out, images)
    lines = (out / "labelmap.txt").read_text(encoding="utf-8").splitlines()
    assert lines[0] == CVAT_HEADER
    assert lines[1:] == [f"{name}:{r},{g},{b}::" for name, (r, g, b) in zip(NAMES, COLOURS)]
    assert (out / "ImageSets" / "Segmentation" / "default.txt").read_text().split() == ["scene", "leer"]
    for path in images:  # what CVAT exports with the images, read as `--data` reads it
        shutil.copy(path, output_dir(out / "JPEGImages"))
    found = check_dataset(load_config(None, [{"data": {"path": str(out)}}]))
    assert found.problems == [] and found.encoding.class_names == tuple(NAMES)
    for path, labels in images.items():
        rgb = cv2.imread(str(out / "SegmentationClass" / f"{path.stem}.png"))
        assert rgb.shape == labels.shape + (3,)
        np.testing.assert_array_equal(found.encoding.read(str(out / "SegmentationClass" / f"{path.stem}.png")),
                                      labels)


def test_cvat_background_is_black_and_class_colours_distinct(tmp_path):
    writer = annotation_writer("cvat", tmp_path, ["bg", "a"], [(0, 0, 0), (9, 9, 9)])
    writer.close()
    assert (tmp_path / "labelmap.txt").read_text().splitlines()[1:] == ["background:0,0,0::", "a:9,9,9::"]
    with pytest.raises(ValueError, match="holds ':'"):
        annotation_writer("cvat", tmp_path, ["background", "a:b"], COLOURS)
    with pytest.raises(ValueError, match="share the colour"):
        annotation_writer("cvat", tmp_path, ["background", "a", "b"], [(0, 0, 0), (1, 2, 3), (1, 2, 3)])
    with pytest.raises(ValueError, match="'b' is black"):
        annotation_writer("cvat", tmp_path, ["background", "a", "b"], [(0, 0, 0), (1, 2, 3), (0, 0, 0)])
    with pytest.raises(ValueError, match="--as must be one of cvat, labelme, coco"):
        annotation_writer("voc", tmp_path, NAMES, COLOURS)


def test_coco_rle_reads_back_exactly(images, tmp_path):
    out = tmp_path / "coco"
    tally = write("coco", out, images)
    record = json.loads((out / "annotations.json").read_text(encoding="utf-8"))
    assert [(c["id"], c["name"]) for c in record["categories"]] == list(enumerate(NAMES, start=1))
    assert [(i["file_name"], i["height"], i["width"]) for i in record["images"]] == [("scene.png", 70, 90),
                                                                                     ("leer.jpg", 70, 90)]
    regions = sum(cv2.connectedComponents((scene() == c).astype(np.uint8))[0] - 1 for c in (1, 2, 3))
    assert len(record["annotations"]) == tally.shapes == regions
    assert all(a["image_id"] == 1 and a["category_id"] > 1 for a in record["annotations"])
    masks = imported("coco", out / "annotations.json", tmp_path / "back")
    for path, labels in images.items():
        np.testing.assert_array_equal(masks[path.stem], labels)


@pytest.mark.parametrize("tolerance", [0.0, 1.5])
def test_coco_polygons_read_back_within_the_tolerance(images, tmp_path, tolerance):
    out = tmp_path / "coco"
    tally = write("coco", out, images, tolerance=tolerance, coco_segmentation="polygon")
    assert tally.holes == 3 and tally.specks == 0
    masks = imported("coco", out / "annotations.json", tmp_path / "back")
    for path, labels in images.items():
        if tolerance == 0:
            np.testing.assert_array_equal(masks[path.stem], labels)
        assert near_boundaries(labels, masks[path.stem], tolerance)
    assert (masks["scene"] != scene()).mean() < (0.02 if tolerance else 1e-9)


@pytest.mark.parametrize("tolerance", [0.0, 2.0])
def test_labelme_reads_back_within_the_tolerance(images, tmp_path, tolerance):
    out = tmp_path / "labelme"
    tally = write("labelme", out, images, tolerance=tolerance)
    record = json.loads((out / "scene.json").read_text(encoding="utf-8"))
    assert record["version"] == LABELME_VERSION and record["flags"] == {} and record["imageData"] is None
    assert (record["imageHeight"], record["imageWidth"]) == (70, 90)
    assert record["imagePath"] == "../images/scene.png" and (out / record["imagePath"]).resolve().is_file()
    assert set(record["shapes"][0]) == {"label", "points", "group_id", "description", "shape_type", "flags", "mask"}
    assert {shape["label"] for shape in record["shapes"]} == set(NAMES)
    holes = [shape for shape in record["shapes"] if shape["description"] == "hole"]
    assert len(holes) == tally.holes == 3 and {shape["label"] for shape in holes} == {"background"}
    assert json.loads((out / "leer.json").read_text())["shapes"] == []
    assert (out / "labels.txt").read_text(encoding="utf-8").splitlines() == NAMES
    masks = imported("labelme", out, tmp_path / "back")
    for path, labels in images.items():
        if tolerance == 0:
            np.testing.assert_array_equal(masks[path.stem], labels)
        assert near_boundaries(labels, masks[path.stem], tolerance)
    for path in images:  # as docs/labelling.md says: the images beside the JSON files, then `--data`
        shutil.copy(path, out)
    found = check_dataset(load_config(None, [{"data": {"path": str(out), "import_dir": str(tmp_path / "cache")}}]))
    assert found.problems == [] and found.encoding.class_names == tuple(NAMES)


def test_polygons_paint_enclosing_regions_first_and_count_specks():
    labels = np.zeros((20, 20), np.uint8)
    labels[2:18, 2:18] = 1
    labels[5:15, 5:15] = 0
    labels[8:12, 8:12] = 2
    labels[0, 19] = 2                              # a one-pixel speck in the corner
    found, specks = polygons(labels, 0)
    assert [(p.label, p.hole) for p in found] == [(1, False), (0, True), (2, False)] and specks == 1
    assert polygons(np.zeros((5, 5), np.uint8))[0] == []


def test_small_regions_take_the_class_around_them():
    labels = np.zeros((20, 30), np.uint8)
    labels[2:18, 2:18] = 1
    labels[8:10, 8:10] = 2                         # 4 pixels of class 2 inside class 1
    labels[0, 29] = 3                              # a corner speck in the background
    labels[5:15, 22:27] = 2                        # 50 pixels: kept
    merged = merge_small_regions(labels, 5)
    expected = labels.copy()
    expected[8:10, 8:10], expected[0, 29] = 1, 0
    np.testing.assert_array_equal(merged, expected)
    np.testing.assert_array_equal(merge_small_regions(labels, 0), labels)


def test_uncertainty_counts_each_shown_class_and_flip_disagreement():
    sure = np.zeros((1, 32, 32, 2), np.float32)
    sure[..., 0] = 30
    assert uncertainty(sure)["score"] < 1e-9
    rare = sure.copy()
    rare[0, :4, :5] = [0, 30]                      # a small region of a rare class ...
    rare[0, 4, :4] = [0, 0]                        # ... with 4 uncertain pixels at its edge
    common = sure.copy()
    common[0, 20, :4] = [0, 0]                     # the same 4 uncertain pixels in a background-only image
    rare_scores, common_scores = uncertainty(rare), uncertainty(common)
    assert rare_scores["entropy"] == pytest.approx(common_scores["entropy"])
    assert rare_scores["score"] > 10 * common_scores["score"] > 0
    assert rare_scores["shares"].tolist() == pytest.approx([1 - 20 / 1024, 20 / 1024])
    views = np.stack([sure[0], sure[0][..., ::-1]])   # two flipped views that contradict each other
    contradicting = uncertainty(views)
    assert contradicting["disagreement"] > 0.9 and contradicting["score"] > rare_scores["score"]
    table = ranking_table([{"image": "a", **rare_scores}, {"image": "b", **contradicting}], ["bg", "fg"])
    assert table["image"].tolist() == ["b", "a"] and table["rank"].tolist() == [1, 2]
    assert list(table.columns) == ["rank", "image", "score", "entropy", "disagreement", "share_bg", "share_fg"]


def test_cli_pre_labels_and_ranks_and_keeps_out_of_the_dataset(tiny_run, tmp_path, capsys):
    run, data = tiny_run
    out = tmp_path / "coco"
    assert main(["--run", str(run), str(data / "images"), "--out", str(out), "--as", "coco", "--rank",
                 "--rank-top", "3", "--min-region", "6"]) == 0
    assert "coco annotations written to" in capsys.readouterr().out
    predictor = load_predictor(run)
    masks = imported("coco", out / "annotations.json", tmp_path / "back", classes=None)  # as --data numbers them
    images = sorted((data / "images").iterdir())
    assert sorted(masks) == [p.stem for p in images]
    for image in images:
        predicted = predict_labels(predictor, read_image(image, 3))
        np.testing.assert_array_equal(masks[image.stem], merge_small_regions(predicted, 6))
    table = pd.read_csv(out / "ranking.csv")
    assert len(table) == len(images) and table["score"].is_monotonic_decreasing
    assert np.allclose(table[["share_bg", "share_disc", "share_box"]].sum(axis=1), 1)
    page = (out / "ranking.html").read_text(encoding="utf-8")
    assert "{legend}" not in page and page.count('class="swatch"') == len(predictor.class_names)  # the legend
    assert page.count("<figure>") == 3 and sorted(p.stem for p in (out / "ranking").iterdir()) == sorted(
        pathlib.Path(name).stem for name in table["image"][:3])
    rotated = tmp_path / "camera" / "rotated.jpg"  # stored 40 high x 56 wide, EXIF: shown turned a quarter
    rotated.parent.mkdir()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(np.full((40, 56, 3), 90, np.uint8)).save(rotated, exif=exif)
    assert main(["--run", str(run), str(rotated), "--out", str(tmp_path / "labelme"), "--as", "labelme"]) == 0
    record = json.loads((tmp_path / "labelme" / "rotated.json").read_text())
    assert (record["imageHeight"], record["imageWidth"]) == (56, 40)
    assert record["imagePath"] == "../camera/rotated.jpg"
    inside = data / "prelabels"
    assert main(["--run", str(run), str(data / "images"), "--out", str(inside), "--as", "cvat"]) == 2
    assert "the output folder lies inside the input folder" in capsys.readouterr().err and not inside.exists()
    assert main(["--run", str(run), str(data / "images"), "--out", str(out), "--as", "coco"]) == 2
    assert "annotations.json: already exists" in capsys.readouterr().err
