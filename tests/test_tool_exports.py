"""Datasets laid out as labelling tools export them (CVAT, labelme2voc, Hasty, Roboflow, ADE20K, a plain class
list), written as real files: the detection line, class count, names, colours and splits read from the export."""
import json
import os
import re
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from app.config.loading import load_config
from app.dataset.checking import check_dataset
from data.colormaps import voc_colormap
from data.layouts import detection_line, load_dataset
from data.layouts.base import DatasetError
from data.layouts.label_files import LabelFileError, read_label_file
from tests.train_helpers import REPO

RNG = np.random.default_rng(0)
SIZE = (32, 48)
CVAT_COLOURS = {"background": (0, 0, 0), "road": (250, 50, 83), "car": (51, 221, 255), "tree": (61, 245, 61)}


def photo(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), RNG.integers(0, 255, (*SIZE, 3), dtype=np.uint8))


def stripes(values, size=SIZE):
    """Labels of vertical stripes, one per value (in order)."""
    labels = np.zeros(size, np.int64)
    width = size[1] // len(values)
    for i, value in enumerate(values):
        labels[:, i * width:] = value
    return labels


def save_rgb(path, labels, colours):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(colours, np.uint8)[labels]).save(path)


def save_index(path, labels, palette=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), mode="P" if palette is not None else "L")
    if palette is not None:
        image.putpalette(np.asarray(palette, np.uint8).ravel().tolist())
    image.save(path)


def check(path, **data):
    config = load_config(None, [{"data": {"path": str(path), **data}}])
    found = check_dataset(config)
    assert found.problems == [], found.problems
    return found, detection_line(found.source, found.encoding)


def write_cvat(root, labelmap=None, count=6):
    """CVAT "Segmentation mask 1.1" with images: labelmap.txt, ImageSets/Segmentation/default.txt, RGB
    SegmentationClass/ and SegmentationObject/ PNGs, JPEGImages/."""
    names = list(CVAT_COLOURS)
    text = labelmap or "# label:color_rgb:parts:actions\n" + "".join(
        f"{name}:{','.join(map(str, colour))}::\n" for name, colour in CVAT_COLOURS.items())
    root.mkdir(parents=True)
    (root / "labelmap.txt").write_text(text)
    ids = [f"frame_{i:06d}" for i in range(count)]
    for i, image_id in enumerate(ids):
        photo(root / "JPEGImages" / f"{image_id}.jpg")
        labels = stripes([0, 1 + i % 3, 1 + (i + 1) % 3])
        save_rgb(root / "SegmentationClass" / f"{image_id}.png", labels, [CVAT_COLOURS[n] for n in names])
        save_rgb(root / "SegmentationObject" / f"{image_id}.png", stripes([0, 1, 2]), voc_colormap()[:3])
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("\n".join(ids) + "\n")
    return root


def test_cvat_segmentation_mask_export_reads_labelmap_names_and_colours(tmp_path):
    root = write_cvat(tmp_path / "task_7-segmentation mask 1.1")
    found, line = check(root)
    assert line == (
        "detected: layout voc (JPEGImages/ + SegmentationClass/); splits: ImageSets/Segmentation default.txt; no "
        "split given: val 25% seeded 42 (train 4, val 2); masks: rgb masks, 4 classes (colours of 4 classes from "
        "labelmap.txt (CVAT))")
    assert found.encoding.class_names == ("background", "road", "car", "tree")
    assert found.encoding.colours.tolist() == [list(c) for c in CVAT_COLOURS.values()]
    first = found.source.frame.sort_values("mask")["mask"].iloc[0]
    assert found.encoding.read(first).tolist() == stripes([0, 1, 2]).tolist()


def test_cvat_labelmap_without_background_gets_it_first_and_subset_lists_give_splits(tmp_path):
    text = "# label:color_rgb:parts:actions\nroad:250,50,83::\ncar:51,221,255::\ntree:61,245,61::\n"
    root = write_cvat(tmp_path / "cvat", labelmap=text)
    lists = root / "ImageSets" / "Segmentation"
    (lists / "default.txt").unlink()
    (lists / "Train.txt").write_text("frame_000000\nframe_000001\nframe_000002\nframe_000003\n")
    (lists / "Validation.txt").write_text("frame_000004\nframe_000005\n")
    found, line = check(root)
    assert "splits: ImageSets/Segmentation Train.txt + Validation.txt (train 4, val 2)" in line
    assert found.encoding.class_names == ("background", "road", "car", "tree")


def test_cvat_ids_of_images_uploaded_in_folders(tmp_path):
    root = write_cvat(tmp_path / "cvat", count=4)
    for folder in ("JPEGImages", "SegmentationClass"):
        (root / folder / "site_a").mkdir()
        for path in sorted((root / folder).glob("frame_00000[01].*")):
            path.rename(root / folder / "site_a" / path.name)
    ids = ["site_a/frame_000000", "site_a/frame_000001", "frame_000002", "frame_000003"]
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("\n".join(ids) + "\n")
    photo(root / "JPEGImages" / "frame_000009.jpg")  # listed, never annotated: CVAT writes no mask
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("\n".join(ids + ["frame_000009"]) + "\n")
    found, line = check(root, val_fraction=0.5)
    assert sorted(found.source.frame["image"].str.removeprefix(f"{root}/JPEGImages/")) == [
        "frame_000002.jpg", "frame_000003.jpg", "site_a/frame_000000.jpg", "site_a/frame_000001.jpg"]
    assert "(train 2, val 2; 1 listed ids without masks left out)" in line


def test_a_cvat_export_without_images_says_where_they_go(tmp_path):
    root = write_cvat(tmp_path / "cvat", count=2)
    shutil.rmtree(root / "JPEGImages")
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    assert err.value.problems == [f"{root}: masks (SegmentationClass/) but no JPEGImages/ folder: an export without "
                                  "its images (CVAT: tick 'Save images' when exporting); put the images in "
                                  "JPEGImages/, named as the masks"]
    for mask in (root / "SegmentationClass").iterdir():
        photo(root / "images" / f"{mask.stem}.jpg")
    found, line = check(root)  # images/ beside SegmentationClass/: the paired layout, classes still from labelmap.txt
    assert line.startswith("detected: layout paired (images/ + SegmentationClass/)") and "labelmap.txt (CVAT)" in line


def test_a_broken_labelmap_is_one_line_naming_it(tmp_path):
    root = write_cvat(tmp_path / "cvat", labelmap="# label:color_rgb:parts:actions\nroad:250,50::\n")
    with pytest.raises(DatasetError) as err:
        load_dataset(root)
    assert err.value.problems == [f"{root}/labelmap.txt:2: colour '250,50' is not r,g,b (0..255 each); fix the file "
                                  f"or remove it"]


def test_labelmap_colours_missing_from_the_masks_are_one_line(tmp_path):
    root = write_cvat(tmp_path / "cvat", labelmap="background:0,0,0::\nroad:250,50,83::\ncar:51,221,255::\n")
    config = load_config(None, [{"data": {"path": str(root)}}])
    problems = check_dataset(config).problems
    assert len(problems) == 1 and "1 mask colour(s) not in the 3 classes from labelmap.txt (CVAT): (61,245,61)" \
        in problems[0], problems


def write_voc_colour_map_set(root, top, lists=True, palette_png=False):
    """A user-made VOC-format set: JPEGImages/, SegmentationClass/ drawn in the VOC colour map (classes
    0..top, RGB or palette PNG), train.txt with every id and val.txt with half of them."""
    ids = [f"img_{i:03d}" for i in range(4)]
    for i, image_id in enumerate(ids):
        labels = stripes([*range(i, top + 1, 4), top, 255], (32, 128))
        mask = root / "SegmentationClass" / f"{image_id}.png"
        if palette_png:
            save_index(mask, labels, voc_colormap())
        else:
            save_rgb(mask, labels, voc_colormap())
        (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), RNG.integers(0, 255, (32, 128, 3), np.uint8))
    if lists:
        (root / "ImageSets" / "Segmentation").mkdir(parents=True)
        (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids))
        (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[:2]))
    return root


def test_voc_colour_map_beyond_21_classes_counts_what_the_masks_use(tmp_path):
    found, line = check(write_voc_colour_map_set(tmp_path / "voc59", top=58))
    assert found.encoding.num_classes == 59 and found.encoding.kind == "rgb"
    assert line.endswith("masks: rgb masks, 59 classes, void 255 (RGB colours of the VOC colour map: indexes 0..58, "
                         "(224,224,192) void; 59 classes: PASCAL VOC's 21 and 38 more)")
    assert "2 ids in both lists used for validation only" in line
    assert found.encoding.class_names[:2] == ("background", "aeroplane")
    assert found.encoding.class_names[20:23] == ("tvmonitor", "class_21", "class_22")


def test_voc_palette_pngs_of_16_classes_train_16(tmp_path):
    found, line = check(write_voc_colour_map_set(tmp_path / "voc16", top=15, palette_png=True))
    assert found.encoding.num_classes == 16
    assert line.endswith("classes 0..15 of PASCAL VOC's 21 (no mask uses a higher one))")
    assert found.encoding.class_names[-1] == "person"


def write_labelme2voc(root):
    """labelme2voc.py output: class_names.txt (no __ignore__ line), JPEGImages/, SegmentationClass/*.npy,
    SegmentationClassPNG/ palette PNGs (255 = __ignore__), SegmentationClassVisualization/*.jpg."""
    root.mkdir(parents=True)
    (root / "class_names.txt").write_text("_background_\nperson\nbottle\nchair")
    for i in range(5):
        photo(root / "JPEGImages" / f"2011_00000{i}.jpg")
        labels = stripes([0, 1 + i % 3, 255, 3])
        save_index(root / "SegmentationClassPNG" / f"2011_00000{i}.png", labels, voc_colormap())
        (root / "SegmentationClass").mkdir(exist_ok=True)
        (root / "SegmentationClass" / f"2011_00000{i}.npy").write_bytes(b"\x93NUMPY not to be loaded")
        photo(root / "SegmentationClassVisualization" / f"2011_00000{i}.jpg")
    return root


def test_labelme2voc_output_uses_the_png_folder_and_class_names(tmp_path):
    found, line = check(write_labelme2voc(tmp_path / "data_dataset_voc"))
    assert line.startswith("detected: layout voc (JPEGImages/ + SegmentationClassPNG/); splits: no split given")
    assert line.endswith("masks: index masks, 4 classes, void 255 (palette PNG: indexes 0..3, 255 void (the layout); "
                         "4 classes from class_names.txt (labelme2voc))")
    assert found.encoding.class_names == ("background", "person", "bottle", "chair")


def test_hasty_label_classes_json_beside_the_masks(tmp_path):
    for i in range(4):
        photo(tmp_path / "images" / f"img{i}.jpg")
        save_index(tmp_path / "masks" / f"img{i}.png", stripes([0, 1, 2 + i % 2]))
    classes = [{"png_index": 1, "class_name": "crack", "color": "#4df3ceff", "class_type": "object"},
               {"png_index": 2, "class_name": "rust", "color": "#4c4ffcff", "class_type": "object"},
               {"png_index": 3, "class_name": "dent", "color": "#ff0000ff", "class_type": "object"}]
    (tmp_path / "masks" / "label_classes.json").write_text(json.dumps(classes))
    found, line = check(tmp_path)
    assert line.endswith("masks: index masks, 4 classes (values 0..3: index masks; 4 classes from "
                         "masks/label_classes.json (Hasty))")
    assert found.encoding.class_names == ("background", "crack", "rust", "dent")
    assert found.encoding.colours[1].tolist() == [0x4d, 0xf3, 0xce]


def test_roboflow_semantic_masks_with_classes_csv_in_each_split(tmp_path):
    for split, count in (("train", 4), ("valid", 2), ("test", 1)):
        for i in range(count):
            photo(tmp_path / split / f"p{i}_jpg.rf.{split}{i}.jpg")
            save_index(tmp_path / split / f"p{i}_jpg.rf.{split}{i}_mask.png", stripes([0, 1, 2]))
        (tmp_path / split / "_classes.csv").write_text("Pixel Value, Class\n0, background\n1, leaf\n2, spot\n")
    found, line = check(tmp_path)
    assert "splits: train/ + valid/ + test/ folders (train 4, val 2, test 1)" in line
    assert line.endswith("3 classes from train/_classes.csv (Roboflow))")
    assert found.encoding.class_names == ("background", "leaf", "spot")


def test_roboflow_splits_that_disagree_on_the_classes_are_refused(tmp_path):
    for split in ("train", "valid"):
        photo(tmp_path / split / "a.jpg")
        save_index(tmp_path / split / "a_mask.png", stripes([0, 1]))
    (tmp_path / "train" / "_classes.csv").write_text("Pixel Value, Class\n0, background\n1, leaf\n")
    (tmp_path / "valid" / "_classes.csv").write_text("Pixel Value, Class\n0, background\n1, stem\n")
    with pytest.raises(DatasetError, match=r"valid/_classes.csv: lists other classes than .*train/_classes.csv"):
        load_dataset(tmp_path)


def write_ade(root, top=150):
    for split, count in (("training", 3), ("validation", 2)):
        for i in range(count):
            photo(root / "images" / split / f"ADE_{split}_{i}.jpg")
            labels = stripes([0, 1 + i, top], SIZE)
            save_index(root / "annotations" / split / f"ADE_{split}_{i}.png", labels)
    return root


def test_ade_masks_up_to_150_are_ade20k_150_and_object_info_names_them(tmp_path):
    root = write_ade(tmp_path / "ADEChallengeData2016")
    found, line = check(root)
    assert found.encoding.num_classes == 150 and line.endswith("ADE20K's 150 classes)")
    rows = ["Idx\tRatio\tTrain\tVal\tName"] + [f"{i}\t0.01\t10\t2\tname{i}, synonym" for i in range(1, 151)]
    (root / "objectInfo150.csv").write_text("\n".join(rows).replace("name1,", "wall,"))  # as ADEChallengeData2016
    found, line = check(root)
    assert found.encoding.num_classes == 150 and line.endswith(
        "150 classes from objectInfo150.csv (ADE20K); 146 of them in no mask: name4, name5, name6, name7, name8, ...)")
    assert found.encoding.class_names[:2] == ("wall", "name2") and found.encoding.class_names[-1] == "name150"
    (root / "objectInfo150.csv").write_text("Idx,Ratio,Train,Val,Stuff,Name\n1,0.1,1,1,1,wall\n2,0.1,1,1,0,"
                                            "building;edifice\n")  # CSAIL's comma-separated variant
    assert read_label_file(root / "objectInfo150.csv").names == ["wall", "building"]


def test_a_plain_class_list_beside_the_masks(tmp_path):
    for i in range(3):
        photo(tmp_path / "images" / f"a{i}.png")
        save_index(tmp_path / "masks" / f"a{i}.png", stripes([0, 1, 2]))
    (tmp_path / "classes.txt").write_text("sky\nwater\nland\n")
    found, line = check(tmp_path)
    assert found.encoding.class_names == ("sky", "water", "land")
    assert line.endswith("3 classes from classes.txt (class list))")
    (tmp_path / "classes.txt").write_text("sky\nwater\nland\nsnow\nice\n")
    found, line = check(tmp_path)
    assert found.encoding.num_classes == 5 and line.endswith(
        "5 classes from classes.txt (class list); 2 of them in no mask: snow, ice)")


def test_one_class_named_beside_binary_masks_is_their_foreground(tmp_path):
    for i in range(3):
        photo(tmp_path / "images" / f"a{i}.png")
        save_index(tmp_path / "masks" / f"a{i}.png", stripes([0, 255]))
    (tmp_path / "masks" / "classes.txt").write_text("crack\n")
    found, line = check(tmp_path)
    assert found.encoding.kind == "binary" and found.encoding.class_names == ("background", "crack")
    assert line.endswith("values 0/255: binary; 2 classes from masks/classes.txt (class list))")


@pytest.mark.parametrize("text, names, void", [
    ("__ignore__\n_background_\ncat\ndog\n", ["background", "cat", "dog"], 255),
    ("0 background\n1: cat\n3,dog\n", ["background", "cat", "class_2", "dog"], None),
])
def test_name_lists_as_labelme_and_numbered(tmp_path, text, names, void):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    label = read_label_file(path)
    assert label.names == names and label.void == void


@pytest.mark.parametrize("name, text", [
    ("labelmap.txt", "# label:color_rgb:parts:actions\r\nbackground:0,0,0::\r\nroad : 250, 50, 83 : :\r\n"),
    ("_classes.csv", "Pixel Value, Class\r\n0, background\r\n1, road\r\n"),
    ("label_classes.json", '[{"png_index": 1, "class_name": "road", "color": "#fa3253"}]'),
])
def test_label_files_saved_on_windows_with_a_byte_order_mark(tmp_path, name, text):
    path = tmp_path / name
    path.write_bytes("\ufeff".encode() + text.encode())
    label = read_label_file(path)
    assert label.names == ["background", "road"]
    assert label.colours is None or label.colours[1].tolist() == [250, 50, 83]


def test_label_files_that_repeat_a_value_are_refused(tmp_path):
    path = tmp_path / "_classes.csv"
    path.write_text("Pixel Value, Class\n0, background\n0, leaf\n")
    with pytest.raises(LabelFileError, match="value 0 is given twice"):
        read_label_file(path)


def test_no_native_log_lines_from_tensorflow_opencv_or_the_converter(tmp_path, capfd, monkeypatch):
    from app.runtime.native_logs import quiet_native_stderr

    monkeypatch.delenv("SEGKIT_VERBOSE", raising=False)
    with quiet_native_stderr():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
                    b"I0000 00:00:1796547356.413488   11601 port.cc:153] oneDNN custom operations are on.\n"
                    b"fully_quantize: 0, inference_type: 6, input_inference_type: UINT8, output_inference_type: UINT8\n"
                    b"E0000 00:00:1796547356.4 11601 a.cc:1] a real problem\n")
    assert capfd.readouterr().err == "E0000 00:00:1796547356.4 11601 a.cc:1] a real problem\n"
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"not a png")
    save_index(tmp_path / "masks" / "a.png", stripes([0, 1, 2]))
    result = subprocess.run([sys.executable, "-m", "app.check_data", "--data", str(tmp_path)], cwd=tmp_path,
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1 and result.stderr.startswith("error: "), result.stderr
    assert not re.search(r"^(\[ WARN|I0000|WARNING: All log|.*imread_)", result.stderr, re.M), result.stderr


# Nothing lost, nothing left behind ------------------------------------------------------------------------------

def digest(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_predict_never_writes_into_the_masks_of_its_inputs(tiny_run, tmp_path, capsys):
    from app.predict import main as predict_main

    run, data = tiny_run
    other = tmp_path / "labelled"
    shutil.copytree(data, other)
    before = digest(other)
    assert predict_main(["--run", str(run), str(other / "images"), "--out", str(other / "masks"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {other / 'masks'}: holds the masks of the input images (") and \
        "--overwrite included: choose another --out" in err, err
    gt = tmp_path / "ground_truth"
    gt.mkdir()
    for mask in (other / "masks").glob("*.png"):
        shutil.copy(mask, gt / f"{mask.stem}_mask.png")
    assert predict_main(["--run", str(run), str(other / "images"), "--out", str(gt)]) == 2
    assert digest(other) == before and sorted(p.name for p in gt.iterdir()) == sorted(
        f"{p.stem}_mask.png" for p in (other / "masks").glob("*.png"))
    capsys.readouterr()
    assert predict_main(["--run", str(run), str(gt), "--out", str(other)]) == 2  # another dataset, or its folders
    assert predict_main(["--run", str(run), str(gt), "--out", str(other / "masks")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {other}: the output folder is a dataset ({other}: layout paired, images and masks "
                   "folders); outputs never go into a dataset, --overwrite included: choose another --out",
                   f"error: {other / 'masks'}: the output folder is the masks/ folder of a dataset ({other}: layout "
                   "paired, images and masks folders); outputs never go into a dataset, --overwrite included: choose "
                   "another --out"]
    assert digest(other) == before
    assert predict_main(["--run", str(run), str(other / "images"), "--out", str(tmp_path / "preds")]) == 0
    assert predict_main(["--run", str(run), str(other / "images"), "--out", str(tmp_path / "preds"),
                         "--overwrite"]) == 0


def test_failed_commands_leave_no_output_folder(tiny_run, tmp_path, capsys):
    from app.evaluate import main as evaluate_main
    from app.predict import main as predict_main

    run, data = tiny_run
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"not a png")
    assert predict_main(["--run", str(run), str(broken), "--out", str(tmp_path / "p" / "out")]) == 1
    assert not (tmp_path / "p").exists()
    other = tmp_path / "other"
    shutil.copytree(data, other)
    first = sorted((other / "masks").glob("*.png"))[0]
    first.write_bytes(first.read_bytes()[:40])
    code = evaluate_main(["--run", str(run), "--data", str(other), "--split", "train", "--out", str(tmp_path / "r")])
    assert code == 2 and not (tmp_path / "r").exists(), capsys.readouterr().err


def test_a_run_stores_absolute_data_paths_and_says_where_a_missing_one_came_from(tiny_run, tmp_path, monkeypatch,
                                                                                   capsys):
    from app.evaluate import main as evaluate_main

    (tmp_path / "good").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_config(None, [{"data": {"path": "good"}}]).data.path == str(tmp_path / "good")
    assert load_config(None, [{"data": {"path": "nowhere"}}]).data.path == "nowhere"
    run, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    saved = (copy / "config.yaml").read_text()
    (copy / "config.yaml").write_text(saved.replace(f"path: {tiny_run[1]}", "path: data/good"))
    assert evaluate_main(["--run", str(copy), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err == (f"error: data/good: dataset path does not exist; check --data / data.path (data.path data/good "
                   f"comes from {copy / 'config.yaml'}; give --data to use another folder)\n")
