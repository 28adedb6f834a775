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
