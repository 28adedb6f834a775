import cv2
import numpy as np
import pytest

from data.discovery import discover
from data.masks import MaskEncoding
from data.scan import mask_encoding, scan
from data.synthetic import write_shapes_dataset


def _scan(root, **data_config):
    frame = discover(root, val_fraction=0.25, seed=0)
    encoding = mask_encoding(data_config, frame)
    return scan(frame, encoding, channels=3), encoding


def test_class_table_counts_pixels_by_hand(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    masks = [np.array([[0, 0], [1, 2]], np.uint8), np.array([[0, 0], [0, 1]], np.uint8)]
    for i, mask in enumerate(masks):
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), np.zeros((2, 2, 3), np.uint8))
        cv2.imwrite(str(tmp_path / "masks" / f"{i}.png"), mask)
    frame = discover(tmp_path, val_fraction=0.0)
    result = scan(frame, MaskEncoding("index", 3), class_names=["a", "b", "c"])
    table = result.class_table("train")
    assert table["pixels"].tolist() == [5, 2, 1]
    assert table["image_pixels"].tolist() == [8, 8, 4]
    assert table["images"].tolist() == [2, 2, 1]
    np.testing.assert_allclose(table["share"], [5 / 8, 2 / 8, 1 / 8])


def test_auto_encoding_detects_binary_and_index(tmp_path):
    write_shapes_dataset(tmp_path / "b", count=4, num_classes=2, mask_kind="binary")
    write_shapes_dataset(tmp_path / "i", count=4, num_classes=4, mask_kind="index", seed=5)
    assert _scan(tmp_path / "b", mask="auto")[1].kind == "binary"
    result, encoding = _scan(tmp_path / "i", mask="auto")
    assert (encoding.kind, encoding.num_classes) == ("index", 4)
    assert result.problems == []


def test_every_bad_input_is_reported_with_its_path(tmp_path):
    write_shapes_dataset(tmp_path, count=8, num_classes=3)
    (tmp_path / "images" / "sample_000.png").write_bytes(b"garbage")
    cv2.imwrite(str(tmp_path / "masks" / "sample_001.png"), np.zeros((10, 10), np.uint8))
    mask = cv2.imread(str(tmp_path / "masks" / "sample_002.png"), cv2.IMREAD_UNCHANGED)
    mask[0, 0] = 7
    cv2.imwrite(str(tmp_path / "masks" / "sample_002.png"), mask)
    result, _ = _scan(tmp_path, mask="index", num_classes=3)
    text = "\n".join(result.problems)
    assert "sample_000.png: unreadable or corrupt image" in text
    assert "sample_001.png: mask is 10x10 but its image" in text
    assert "sample_002.png: mask values 7 outside classes 0..2" in text
    assert len(result.problems) == 3


def test_num_classes_that_disagrees_with_data(tmp_path):
    write_shapes_dataset(tmp_path, count=4, num_classes=2)
    result, _ = _scan(tmp_path, mask="index", num_classes=5)
    assert result.problems == [
        "num_classes is 5 but no mask uses a class above 1; set num_classes: 2 or check the masks"]


def test_rgb_unknown_colour_is_reported(tmp_path):
    write_shapes_dataset(tmp_path, count=4, num_classes=3, mask_kind="rgb")
    mask_path = tmp_path / "masks" / "sample_003.png"
    mask = cv2.imread(str(mask_path))
    mask[5, 5] = (9, 9, 9)
    cv2.imwrite(str(mask_path), mask)
    result, encoding = _scan(tmp_path, mask="rgb", palette=str(tmp_path / "palette.csv"))
    assert encoding.num_classes == 3
    assert result.problems == [f"{mask_path}: 1 colour(s) not in the palette: (9,9,9)"]


@pytest.mark.parametrize("channels", [1, 3])
def test_channel_conversion_is_not_a_problem(tmp_path, channels):
    write_shapes_dataset(tmp_path, count=2)
    frame = discover(tmp_path, val_fraction=0.0)
    result = scan(frame, MaskEncoding("index", 3), channels=channels)
    assert result.problems == [] and result.files["channels"].tolist() == [3, 3]
