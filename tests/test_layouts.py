"""Dataset layouts built as real files in tmp_path: what is detected, the splits, the facts and the line."""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from app.config.loading import load_config
from app.dataset.checking import check_dataset, summary_text
from data.discovery import DatasetError, discover
from data.layouts import LAYOUTS, LayoutOptions, detection_line, get_layout, load_dataset
from data.layouts.base import label_lookup
from data.layouts.cityscapes import CITYSCAPES_CLASSES
from data.layouts.voc import VOC_CLASSES, voc_colormap
from data.masks import MaskEncoding
from tests.train_helpers import REPO, TINY

RNG = np.random.default_rng(0)


def write_rgb(path, size=(64, 64)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def write_labels(path, labels, palette=None):
    """A single-channel PNG of `labels`; with `palette` (Nx3) a "P" mode PNG as VOC's SegmentationClass."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(labels, np.uint8), mode="P" if palette is not None else "L")
    if palette is not None:
        image.putpalette(np.asarray(palette, np.uint8).ravel().tolist())
    image.save(path)
    return path


def voc_labels(index):
    """64x64 labels: background, a box of class 15 (person) or 20 (tvmonitor), a void 255 border."""
    labels = np.zeros((64, 64), np.uint8)
    labels[16:40, 16:40] = 15 if index % 2 else 20
    labels[0:2] = 255
    return labels


def write_voc(root, masks="SegmentationClass", count=8, palette=True):
    """VOC folder: ids 0..count-1 with masks, train.txt 0..5, val.txt 5..7 (id 5 in both), test.txt with an id
    without a mask, and a JPEG that no list names."""
    ids = [f"2007_{i:06d}" for i in range(count)]
    for i, image_id in enumerate(ids):
        write_rgb(root / "JPEGImages" / f"{image_id}.jpg")
        write_labels(root / masks / f"{image_id}.png", voc_labels(i), voc_colormap() if palette else None)
    write_rgb(root / "JPEGImages" / "2008_000001.jpg")
    write_rgb(root / "JPEGImages" / "2009_000001.jpg")
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("\n".join(ids[:6]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids[5:]) + "\n")
    (lists / "test.txt").write_text("2009_000001\n")
    return root


def test_registry_lists_valid_names():
    assert {"paired", "segnet", "csv", "voc", "cityscapes", "ade", "coco", "labelme"} <= set(LAYOUTS)
    assert get_layout("VOC") is LAYOUTS["voc"]
    with pytest.raises(KeyError, match="valid names are: auto, paired, segnet, csv, voc"):
        get_layout("pascal")


def test_voc_palette_pngs_lists_and_an_id_in_both_lists(tmp_path):
    root = write_voc(tmp_path / "VOC2012")
    source = load_dataset(tmp_path)
    assert source.layout == "voc"
    assert source.reason == "VOC2012/JPEGImages/ + VOC2012/SegmentationClass/"
    assert source.split_source == "ImageSets/Segmentation train.txt + val.txt + test.txt"
    assert source.frame["split"].value_counts().to_dict() == {"train": 5, "val": 3}
    both = source.frame[source.frame["image"].str.endswith("2007_000005.jpg")]
    assert both["split"].tolist() == ["val"]
    assert source.split_notes == ["1 ids in both lists used for validation only", "1 test ids without masks left out"]
    assert source.class_names == list(VOC_CLASSES) and len(VOC_CLASSES) == 21 and source.void == 255
    assert source.palette is None and source.standard == ("PASCAL VOC", 21) and source.class_source is None
    assert voc_colormap()[255].tolist() == [224, 224, 192] and voc_colormap()[1].tolist() == [128, 0, 0]
    mask = Image.open(source.frame["mask"].iloc[0])
    assert mask.mode == "P" and np.array(mask)[20, 20] == 20 and np.array(mask)[0, 0] == 255
    assert mask.getpalette()[15 * 3:15 * 3 + 3] == [192, 128, 128]
    encoding = MaskEncoding(kind="index", num_classes=21, void=255, reason="palette PNG")
    assert detection_line(source, encoding) == (
        "detected: layout voc (VOC2012/JPEGImages/ + VOC2012/SegmentationClass/); splits: ImageSets/Segmentation "
        "train.txt + val.txt + test.txt (train 5, val 3; 1 ids in both lists used for validation only; 1 test "
        "ids without masks left out); masks: index masks, 21 classes, void 255 (palette PNG)")


def test_voc_trainval_only_carves_val_and_missing_list_is_named(tmp_path):
    root = write_voc(tmp_path, masks="SegmentationClassRaw", palette=False)
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train.txt").rename(lists / "trainval.txt")
    (lists / "val.txt").unlink()
    source = load_dataset(root, options=LayoutOptions(val_fraction=0.5, seed=1))
    assert source.reason == "JPEGImages/ + SegmentationClassRaw/"
    assert source.split_source == "ImageSets/Segmentation trainval.txt + test.txt; val carved from train: 50% seeded 1"
    assert source.frame["split"].value_counts().to_dict() == {"train": 3, "val": 3}
    with pytest.raises(DatasetError, match=r"nope.txt: split list not found; set data.train_list"):
        load_dataset(root, options=LayoutOptions(train_list="nope.txt"))
    (lists / "trainval.txt").write_text("2007_000000\nmissing_id\n")
    with pytest.raises(DatasetError, match=r"trainval.txt: id missing_id has no image .*missing_id.jpg"):
        load_dataset(root)


def write_cityscapes(root):
    labels = np.zeros((32, 64), np.uint8)
    labels[:, 16:32], labels[:, 32:48], labels[:, 48:] = 7, 26, 33
    for split, city, count in (("train", "aachen", 2), ("val", "frankfurt", 1), ("test", "berlin", 1)):
        for i in range(count):
            stem = f"{city}_{i:06d}_000019"
            write_rgb(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", (32, 64))
            write_labels(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", labels)
            write_labels(root / "gtFine" / split / city / f"{stem}_gtFine_color.png", labels)
    return root


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    source = load_dataset(write_cityscapes(tmp_path))
    assert (source.layout, source.reason) == ("cityscapes", "leftImg8bit/ + gtFine/ *_gtFine_labelIds.png")
    assert source.split_source == "train/ + val/ + test/ folders"
    assert source.frame["split"].value_counts().to_dict() == {"train": 2, "val": 1, "test": 1}
    assert source.class_names == list(CITYSCAPES_CLASSES) and len(source.class_names) == 19
    assert source.palette.loc[0, ["r", "g", "b"]].tolist() == [128, 64, 128]
    assert source.void == 255 and source.label_map[7] == 0 and source.label_map[26] == 13
    raw = np.array(Image.open(source.frame["mask"].iloc[0]))
    decoded = label_lookup(source.label_map)[raw]
    assert decoded[5, [0, 20, 40, 60]].tolist() == [255, 0, 13, 18]


def test_ade_reduces_zero_label_unless_told_not_to(tmp_path):
    labels = np.array([[0, 1, 5, 150]] * 4, np.uint8).repeat(16, axis=1)
    for split, stem in (("training", "ADE_train_00000001"), ("training", "ADE_train_00000002"),
                        ("validation", "ADE_val_00000001")):
        write_rgb(tmp_path / "images" / split / f"{stem}.jpg", (4, 64))
        write_labels(tmp_path / "annotations" / split / f"{stem}.png", labels)
    source = load_dataset(tmp_path)
    assert source.layout == "ade"
    assert source.split_source == "images/training/ + images/validation/ folders"
    assert source.frame["split"].value_counts().to_dict() == {"train": 2, "val": 1}
    raw = np.array(Image.open(source.frame["mask"].iloc[0]))
    assert label_lookup(source.label_map)[raw][0, [0, 16, 32, 48]].tolist() == [255, 0, 4, 149]
    assert source.void == 255
    kept = load_dataset(tmp_path, options=LayoutOptions(reduce_zero_label=False))
    assert kept.label_map is None and kept.void is None


def test_paired_finds_labels_folder_and_mask_suffix(tmp_path):
    for i in range(4):
        write_rgb(tmp_path / "images" / f"img{i}.jpg")
        write_labels(tmp_path / "labels" / f"img{i}_mask.png", np.zeros((64, 64)))
    source = load_dataset(tmp_path, options=LayoutOptions(val_fraction=0.25, seed=0))
    assert (source.layout, source.reason) == ("paired", "images/ + labels/ (mask suffix _mask)")
    assert source.split_source == "no split given: val 25% seeded 0"
    assert source.frame["split"].value_counts().to_dict() == {"train": 3, "val": 1}


@pytest.mark.parametrize("suffix", ["_seg", "_label", "_gt", "_labels", "_annotation"])
def test_train_test_without_val_carves_val_from_train_only(tmp_path, suffix):
    for split, count in (("train", 10), ("test", 3)):
        for i in range(count):
            write_rgb(tmp_path / split / "images" / f"{split}{i}.png")
            write_labels(tmp_path / split / "gt" / f"{split}{i}{suffix}.png", np.zeros((64, 64)))
    source = load_dataset(tmp_path, options=LayoutOptions(val_fraction=0.2, seed=42))
    assert source.reason == f"train/ test/ each with images/ + gt/ (mask suffix {suffix})"
    assert source.split_source == "train/ + test/ folders; val carved from train: 20% seeded 42"
    frame = source.frame
    assert frame["split"].value_counts().to_dict() == {"train": 8, "val": 2, "test": 3}
    assert frame[frame["image"].str.contains("/test/")]["split"].eq("test").all()
    again = load_dataset(tmp_path, options=LayoutOptions(val_fraction=0.2, seed=42)).frame
    assert again["split"].tolist() == frame["split"].tolist()


def test_images_and_masks_in_one_folder_with_valid_split(tmp_path):
    for split, count in (("train", 3), ("valid", 2)):
        for i in range(count):
            write_rgb(tmp_path / split / f"{i}_sat.jpg")
            write_labels(tmp_path / split / f"{i}_mask.png", np.zeros((64, 64)))
    source = load_dataset(tmp_path)
    assert source.reason == "train/ valid/ each with images and masks in one folder (image suffix _sat, mask suffix _mask)"
    assert source.frame["split"].value_counts().to_dict() == {"train": 3, "val": 2}
    assert source.frame["mask"].str.endswith("_mask.png").all() and source.frame["image"].str.endswith(".jpg").all()


def test_hidden_files_skipped_and_duplicate_stems_named(tmp_path):
    for i in range(3):
        write_rgb(tmp_path / "images" / f"a{i}.png")
        write_labels(tmp_path / "masks" / f"a{i}.png", np.zeros((64, 64)))
    for junk in ("images/._a0.png", "masks/._a0.png", "images/.DS_Store", "masks/Thumbs.db", "images/.hidden.png"):
        (tmp_path / junk).write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    source = load_dataset(tmp_path)
    assert len(source.frame) == 3
    assert any("hidden/system file(s) skipped" in note for note in source.notes)
    write_rgb(tmp_path / "images" / "a1.jpg")
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    assert any(re.search(r"images/a1\.(jpg|png): 2 files share the name 'a1' \(a1\.jpg, a1\.png\)", line)
               for line in err.value.problems), err.value.problems
    assert len(err.value.problems) == 1, err.value.problems  # no second, false "mask has no image" line
    write_labels(tmp_path / "masks" / "a1.tif", np.zeros((64, 64)))
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    assert len(err.value.problems) == 2 and not any("has no" in line for line in err.value.problems)


def test_image_without_mask_hints_at_the_fix(tmp_path):
    for i in range(3):
        write_rgb(tmp_path / "images" / f"s{i}.png")
    for i in range(2):
        write_labels(tmp_path / "masks" / f"s{i}_mask.png", np.zeros((64, 64)))
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path)
    assert err.value.problems == [
        f"{tmp_path}/images/s2.png: image has no mask in {tmp_path}/masks; looked for masks/s2_mask.png; add the "
        "mask, remove the image, or set data.mask_suffix / data.masks_dir to how the masks are named"]
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path, options=LayoutOptions(mask_suffix="_label"))
    assert "masks named <stem>_mask.* exist: set data.mask_suffix=_mask" in err.value.problems[0]
    with pytest.raises(DatasetError, match=r"/nope: folder not found; set data.masks_dir .*folders here: images/, masks/"):
        load_dataset(tmp_path, options=LayoutOptions(masks_dir="nope"))


def write_coco(root):
    images, annotations = [], []
    for i in range(3):
        write_rgb(root / "images" / f"photo{i}.jpg", (40, 60))
        images.append({"id": i + 1, "file_name": f"photo{i}.jpg", "height": 40, "width": 60})
        annotations.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2,
                            "segmentation": [[10, 10, 30, 10, 30, 30, 10, 30]], "area": 400, "iscrowd": 0})
    record = {"images": images, "annotations": annotations,
              "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    (root / "annotations").mkdir()
    path = root / "annotations" / "instances.json"
    path.write_text(json.dumps(record))
    return path


def test_coco_json_as_data_is_converted_once_into_a_cache(tmp_path):
    coco = write_coco(tmp_path / "shop")
    options = LayoutOptions(import_dir=str(tmp_path / "runs" / "imported"), val_fraction=0.34)
    source = load_dataset(coco, options=options)
    assert source.layout == "coco" and source.class_names == ["background", "cat", "dog"] and source.void == 255
    assert source.frame["image"].str.startswith(str(tmp_path / "shop" / "images")).all()
    assert source.frame["mask"].str.startswith(str(tmp_path / "runs" / "imported")).all()
    assert sorted(p.name for p in (tmp_path / "shop").iterdir()) == ["annotations", "images"]
    mask = np.array(Image.open(source.frame["mask"].iloc[1]))
    assert mask[20, 20] == 2 and mask[0, 0] == 0
    assert "annotations converted to" in source.notes[-1]
    again = load_dataset(coco, options=options)
    assert any("converted earlier reused" in note for note in again.notes)
    os.utime(coco, ns=(coco.stat().st_atime_ns, coco.stat().st_mtime_ns + 10**9))
    assert "annotations converted to" in load_dataset(coco, options=options).notes[-1]


def test_labelme_folder_as_data(tmp_path):
    for i in range(2):
        write_rgb(tmp_path / "lm" / f"shot{i}.png", (40, 60))
        shape = {"label": "leaf", "shape_type": "rectangle", "points": [[5, 5], [20, 20]]}
        record = {"version": "5.0.1", "shapes": [shape], "imagePath": f"shot{i}.png", "imageHeight": 40,
                  "imageWidth": 60}
        (tmp_path / "lm" / f"shot{i}.json").write_text(json.dumps(record))
    source = load_dataset(tmp_path / "lm", options=LayoutOptions(import_dir=str(tmp_path / "cache")))
    assert source.layout == "labelme" and source.class_names == ["background", "leaf"]
    assert len(source.frame) == 2 and source.frame["image"].str.endswith(".png").all()
    (tmp_path / "lm" / "labels.txt").write_text("__ignore__\n_background_\nstem\nleaf\n")  # labelme --labels
    record["shapes"].append({"label": "__ignore__", "shape_type": "rectangle", "points": [[30, 5], [40, 10]]})
    (tmp_path / "lm" / "shot1.json").write_text(json.dumps(record))
    source = load_dataset(tmp_path / "lm", options=LayoutOptions(import_dir=str(tmp_path / "cache")))
    assert source.class_names == ["background", "stem", "leaf"] and "class order from" in source.notes[-2]
    mask = np.array(Image.open(source.frame["mask"].iloc[1]))
    assert mask[10, 10] == 2 and mask[7, 35] == 255 and mask[30, 50] == 0


def test_discover_keeps_its_signature(tmp_path):
    write_voc(tmp_path, masks="SegmentationClassRaw", palette=False)
    frame = discover(tmp_path, "auto", None, None, "instances", 0.2, 0)
    assert list(frame.columns) == ["image", "mask", "instances", "split"]
    with pytest.raises(DatasetError, match="unknown layout 'pascal'; set data.layout to auto or one of paired"):
        discover(tmp_path, "pascal")


def test_check_data_prints_the_detection_line(tmp_path):
    for split, count in (("train", 5), ("test", 2)):
        for i in range(count):
            write_rgb(tmp_path / split / "images" / f"{split}{i}.png")
            labels = np.zeros((64, 64), np.uint8)
            labels[10:30, 10:30] = 1 + i % 2
            write_labels(tmp_path / split / "masks" / f"{split}{i}.png", labels)
    config = load_config(None, [{"data": {"path": str(tmp_path), "mask": "index", "val_fraction": 0.2}}])
    check = check_dataset(config)
    assert check.problems == []
    assert summary_text(check, config).splitlines()[0].startswith(
        "detected: layout paired (train/ test/ each with images/ + masks/); splits: train/ + test/ folders; val "
        "carved from train: 20% seeded 42 (train 4, val 1, test 2); masks: index masks, 3 classes (")
    assert detection_line(check.source, check.encoding) == summary_text(check, config).splitlines()[0]


@pytest.mark.slow
def test_train_one_epoch_on_a_voc_set_logs_the_detection_line(tmp_path):
    data = write_voc(tmp_path / "voc", masks="SegmentationClassRaw", palette=False)
    command = [sys.executable, "-m", "app.train", "--data", str(data), "--epochs", "1", "--runs-dir",
               str(tmp_path / "runs"), "--mask", "index", "--num-classes", "21", "--set", "data.void=255", *TINY]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^detected: layout voc \(JPEGImages/ \+ SegmentationClassRaw/\); splits: ImageSets/Segmentation "
                     r"train\.txt \+ val\.txt \+ test\.txt \(train 5, val 3; 1 ids in both lists used for validation "
                     r"only; 1 test ids without masks left out\); masks: index masks, 21 classes, void 255\b.*$",
                     result.stdout, re.MULTILINE), result.stdout[:3000]
    (run,) = (tmp_path / "runs").iterdir()
    assert json.loads((run / "metrics.json").read_text())["split"] == "val"


def test_a_forced_layout_that_does_not_fit_names_the_detected_one(tmp_path):
    write_cityscapes(tmp_path)
    with pytest.raises(DatasetError) as err:
        load_dataset(tmp_path, "voc")
    assert err.value.problems == [
        f"{tmp_path}: not a voc dataset (expected JPEGImages/ + SegmentationClass/, ImageSets/Segmentation/*.txt); "
        "it looks like layout cityscapes (leftImg8bit/ + gtFine/): set data.layout to auto or cityscapes"]


def test_a_test_folder_without_masks_is_left_out_with_a_note(tmp_path):
    for i in range(4):
        write_rgb(tmp_path / "train" / "image" / f"{i}.png")
        write_labels(tmp_path / "train" / "label" / f"{i}.png", np.zeros((64, 64)))
        write_rgb(tmp_path / "test" / f"{i}.png")
    source = load_dataset(tmp_path, options=LayoutOptions(val_fraction=0.25))
    assert source.reason == "train/ each with image/ + label/"
    assert source.frame["split"].value_counts().to_dict() == {"train": 3, "val": 1}
    assert source.notes == [f"{tmp_path / 'test'}: no masks found, the test split is left out"]


def test_check_data_on_a_coco_file(tmp_path):
    coco = write_coco(tmp_path / "shop")
    command = [sys.executable, "-m", "app.check_data", "--data", str(coco), "--set",
               f"data.import_dir={tmp_path / 'cache'}", "--set", "data.val_fraction=0.34"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith(f"detected: layout coco (instances.json, converted to {tmp_path / 'cache'}/instances-")
    assert re.search(r"\); splits: no split given: val 34% seeded 42 \(train 2, val 1\); masks: index masks, 3 classes, "
                     r"void 255\b.*$", first), first


def test_predict_skips_hidden_files_in_a_folder(tmp_path):
    from app.predict import image_files

    write_rgb(tmp_path / "a.png")
    (tmp_path / "._a.png").write_bytes(b"\x00\x05\x16\x07")
    (tmp_path / ".DS_Store").write_bytes(b"\x00")
    assert image_files([tmp_path]) == [tmp_path / "a.png"]


def test_segnet_class_dict_names_classes_and_its_void_row(tmp_path):
    for split in ("train", "val"):
        for i in range(3):
            write_rgb(tmp_path / split / f"{split}{i}.png")
            labels = np.full((64, 64), 3, np.uint8)  # the Void row of class_dict.csv
            labels[10:40, 10:40] = i % 3
            write_labels(tmp_path / f"{split}annot" / f"{split}{i}.png", labels)
    (tmp_path / "class_dict.csv").write_text("name,r,g,b\nSky,128,128,128\nRoad,128,64,128\nCar,64,0,128\n"
                                             "Void,0,0,0\n")
    config = load_config(None, [{"data": {"path": str(tmp_path)}}])
    check = check_dataset(config)
    assert check.problems == []
    assert (check.encoding.kind, check.encoding.num_classes, check.encoding.void) == ("index", 3, 3)
    assert check.scan.class_table("train").index.tolist() == ["Sky", "Road", "Car"]
    assert f"class names and colours from {tmp_path / 'class_dict.csv'}; row 3 (Void) is void" in check.source.notes
