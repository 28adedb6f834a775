import json
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
from pycocotools import mask as coco_mask

from app.import_annotations import main
from tests.train_helpers import REPO


def _labelme(path, shapes, image_path="img.png", size=(12, 16)):
    record = {"imagePath": image_path, "imageHeight": size[0], "imageWidth": size[1], "imageData": None,
              "shapes": [{"label": label, "points": points, "shape_type": kind} for label, kind, points in shapes]}
    path.write_text(json.dumps(record))
    return path


def _mask(path):
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_labelme_rectangle_polygon_has_exact_pixels_and_later_shape_wins(tmp_path):
    source = _labelme(tmp_path / "a.json", [
        ("cat", "polygon", [[2, 3], [7, 3], [7, 8], [2, 8]]),  # 6x6 pixels, boundary included (as labelme)
        ("dog", "rectangle", [[6, 7], [9, 10]]),  # 4x4, overlaps the cat's 2x2 corner and wins
    ])
    assert main(["--format", "labelme", str(source), "--out", str(tmp_path / "out")]) == 0
    mask = _mask(tmp_path / "out" / "masks" / "img.png")
    assert mask.shape == (12, 16) and mask.dtype == np.uint8
    assert np.bincount(mask.ravel(), minlength=3).tolist() == [12 * 16 - 36 - 16 + 4, 36 - 4, 16]
    assert (mask[7:9, 6:8] == 2).all()
    palette = pd.read_csv(tmp_path / "out" / "palette.csv")
    assert palette.columns.tolist() == ["name", "r", "g", "b"]
    assert palette["name"].tolist() == ["background", "cat", "dog"]


def test_class_map_yaml_merges_labels_and_maps_void(tmp_path):
    folder = tmp_path / "json"
    folder.mkdir()
    _labelme(folder / "a.json", [("sedan", "polygon", [[0, 0], [3, 0], [3, 3], [0, 3]]),
                                 ("blur", "rectangle", [[10, 0], [11, 1]])], image_path="a.jpg")
    _labelme(folder / "b.json", [("truck", "circle", [[8, 6], [8, 8]])], image_path="b.jpg")
    (tmp_path / "map.yaml").write_text("background: []\ncar: [sedan, truck]\nvoid: blur\n")
    assert main(["--format", "labelme", str(folder), "--out", str(tmp_path / "out"),
                 "--class-map", str(tmp_path / "map.yaml")]) == 0
    a, b = _mask(tmp_path / "out" / "masks" / "a.png"), _mask(tmp_path / "out" / "masks" / "b.png")
    assert (a == 1).sum() == 16 and (a == 255).sum() == 4
    assert set(np.unique(b)) == {0, 1} and b[6, 8] == 1
    assert pd.read_csv(tmp_path / "out" / "palette.csv")["name"].tolist() == ["background", "car"]


def test_unknown_label_is_an_error_before_writing(tmp_path, capsys):
    source = _labelme(tmp_path / "a.json", [("cat", "polygon", [[0, 0], [3, 0], [3, 3]])])
    assert main(["--format", "labelme", str(source), "--out", str(tmp_path / "out"), "--classes", "bg,dog"]) == 2
    assert "'cat' (e.g." in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def _coco(path, file_name="pics/x.png"):
    rle = coco_mask.encode(np.asfortranarray(np.pad(np.ones((2, 3), np.uint8), ((8, 0), (10, 0)))))
    record = {
        "images": [{"id": 1, "file_name": file_name, "height": 10, "width": 13},
                   {"id": 2, "file_name": "empty.png", "height": 4, "width": 4}],
        "categories": [{"id": 7, "name": "person"}, {"id": 3, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "segmentation": [[2, 3, 7, 3, 7, 8, 2, 8]], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 7, "segmentation": [[6, 7, 9, 7, 9, 9, 6, 9]], "iscrowd": 0},
            {"id": 3, "image_id": 1, "category_id": 7, "iscrowd": 1,
             "segmentation": {"counts": rle["counts"].decode("ascii"), "size": [10, 13]}},
        ],
    }
    path.write_text(json.dumps(record))
    return path


def test_coco_polygons_and_rle_give_exact_pixels(tmp_path):
    assert main(["--format", "coco", str(_coco(tmp_path / "coco.json")), "--out", str(tmp_path / "out")]) == 0
    mask = _mask(tmp_path / "out" / "masks" / "x.png")
    names = pd.read_csv(tmp_path / "out" / "palette.csv")["name"].tolist()
    assert names == ["background", "car", "person"]  # categories by id
    car, person = names.index("car"), names.index("person")
    # pycocotools: the 5x5 car square (x 2..6, y 3..7) loses its 1x1 corner under the later 3x2 person box
    assert (mask == car).sum() == 25 - 1
    assert (mask[7:9, 6:9] == person).all() and (mask[8:10, 10:13] == person).all()
    assert (mask == person).sum() == 6 + 6
    assert (_mask(tmp_path / "out" / "masks" / "empty.png") == 0).all()


def test_malicious_file_names_stay_inside_out(tmp_path, capsys):
    out = tmp_path / "deep" / "out"
    source = _coco(tmp_path / "coco.json", file_name="../../evil.png")
    assert main(["--format", "coco", str(source), "--out", str(out)]) == 0
    assert "folder parts ignored" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["empty.png", "evil.png"]
    assert list(tmp_path.rglob("evil*")) == [out / "masks" / "evil.png"]
    _labelme(tmp_path / "b.json", [("cat", "polygon", [[0, 0], [3, 0], [3, 3]])], image_path="/tmp/..")
    assert main(["--format", "labelme", str(tmp_path / "b.json"), "--out", str(out)]) == 2  # palette.csv exists
    assert main(["--format", "labelme", str(tmp_path / "b.json"), "--out", str(out), "--overwrite"]) == 0
    assert "no usable file name; skipped" in capsys.readouterr().err


def test_bad_json_and_bad_geometry_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["--format", "coco", str(tmp_path / "bad.json"), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'bad.json'}: not valid JSON")
    _labelme(tmp_path / "far.json", [("cat", "polygon", [[0, 0], [1e12, 0], [3, 3]])])
    assert main(["--format", "labelme", str(tmp_path / "far.json"), "--out", str(tmp_path / "out")]) == 2
    assert "coordinates far outside" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_every_bad_labelme_file_is_listed_at_once_without_opencv_lines(tmp_path):
    folder = tmp_path / "json"
    folder.mkdir()
    _labelme(folder / "good.json", [("cat", "polygon", [[0, 0], [3, 0], [3, 3], [0, 3]])], image_path="good.png")
    (folder / "broken.json").write_text("{not json")
    (folder / "no_shapes.json").write_text(json.dumps({"imagePath": "x.png"}))
    _labelme(folder / "few.json", [("cat", "polygon", [[0, 0], [3, 0]])], image_path="few.png")
    (folder / "no_size.json").write_text(json.dumps({"imagePath": "missing.png", "shapes": []}))
    result = subprocess.run([sys.executable, "-m", "app.import_annotations", "--format", "labelme", str(folder),
                             "--out", str(tmp_path / "out")], cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = result.stderr.splitlines()
    assert result.returncode == 2 and len(lines) == 5, result.stderr
    assert all(line.startswith("error: ") for line in lines)
    assert [line.split(":")[1].strip().rsplit("/", 1)[-1] for line in lines[:4]] == [
        "broken.json", "few.json", "no_shapes.json", "no_size.json"]
    assert lines[4] == "error: 4 of 5 LabelMe file(s) cannot be read; fix or remove them"
    assert "missing.png cannot be read" in lines[3]
    assert not (tmp_path / "out").exists()


def test_every_bad_coco_annotation_is_listed_at_once(tmp_path, capsys):
    record = {"images": [{"id": 1, "file_name": "a.jpg", "height": 8, "width": 8},
                         {"id": 2, "file_name": "b.jpg", "height": 0, "width": 8}],
              "categories": [{"id": 1, "name": "cat"}],
              "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "segmentation": [[0, 0, 4, 0, 4, 4]]},
                              {"id": 2, "image_id": 9, "category_id": 1, "segmentation": [[0, 0, 4, 0, 4, 4]]}]}
    (tmp_path / "coco.json").write_text(json.dumps(record))
    assert main(["--format", "coco", str(tmp_path / "coco.json"), "--out", str(tmp_path / "out")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[-1] == "error: 3 problem(s) in the COCO file; fix or remove them", lines
    assert "image 2: bad image size" in lines[0] and "annotation 0: category_id" in lines[1] \
        and "annotation 1: image_id 9" in lines[2]
    assert not (tmp_path / "out").exists()
