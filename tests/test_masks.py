import cv2
import numpy as np
import pandas as pd
import pytest

from data.masks import IGNORE_INDEX, MaskEncoding, ReadError, read_image, read_palette, read_raw_mask


def test_index_masks_map_void_to_ignore_and_reject_other_values():
    encoding = MaskEncoding("index", num_classes=3, void=11)
    raw = np.array([[0, 1], [2, 11]], np.uint8)
    np.testing.assert_array_equal(encoding.decode(raw), [[0, 1], [2, IGNORE_INDEX]])
    with pytest.raises(ReadError, match=r"m.png: mask values 5 outside classes 0..2 and void 11"):
        encoding.decode(np.array([[0, 5]], np.uint8), "m.png")


def test_binary_masks_threshold_and_invert():
    raw = np.array([[0, 3, 130, 255]], np.uint8)
    np.testing.assert_array_equal(MaskEncoding("binary", 2).decode(raw), [[0, 0, 1, 1]])
    np.testing.assert_array_equal(MaskEncoding("binary", 2, invert=True).decode(raw), [[1, 1, 0, 0]])


def test_rgb_masks_through_palette(tmp_path):
    palette_csv = tmp_path / "palette.csv"
    pd.DataFrame({"name": ["sky", "road", "void"], "r": [128, 128, 0], "g": [128, 64, 0],
                  "b": [128, 128, 0]}).to_csv(palette_csv, index=False)
    encoding = MaskEncoding("rgb", num_classes=2, void=2, palette=read_palette(palette_csv))
    raw = np.array([[[128, 128, 128], [128, 64, 128], [0, 0, 0]]], np.uint8)
    np.testing.assert_array_equal(encoding.decode(raw), [[0, 1, IGNORE_INDEX]])
    raw[0, 0] = (1, 2, 3)
    with pytest.raises(ReadError, match=r"1 colour\(s\) not in the palette: \(1,2,3\)"):
        encoding.decode(raw, "colour.png")


def test_palette_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("name,r,g\nsky,1,2\n")
    with pytest.raises(ReadError, match="missing b"):
        read_palette(bad)


def test_read_image_converts_channels_and_bit_depth(tmp_path):
    grey = tmp_path / "grey16.png"
    cv2.imwrite(str(grey), np.full((4, 5), 65535, np.uint16))
    image = read_image(grey, channels=3)
    assert image.shape == (4, 5, 3) and image.dtype == np.float32
    np.testing.assert_allclose(image, 1.0)
    colour = tmp_path / "colour.png"
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 2] = 255
    cv2.imwrite(str(colour), bgr)
    np.testing.assert_allclose(read_image(colour)[0, 0], [1.0, 0.0, 0.0])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"not a png")
    with pytest.raises(ReadError, match="corrupt.png: unreadable or corrupt image"):
        read_image(corrupt)
    with pytest.raises(ReadError, match="corrupt.png: unreadable or corrupt mask"):
        read_raw_mask(corrupt)
