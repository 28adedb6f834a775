"""Mask encodings as users have them, written as real files: what is detected, why, and the exact class indexes."""
import types

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from app.check_data import main as check_data
from data.colormaps import voc_colormap
from data.discovery import discover
from data.masks import IGNORE_INDEX, MaskEncoding, ReadError, read_palette
from data.pipeline import build_dataset
from data.scan import mask_encoding

SIZE = (24, 32)


def _dataset(root, masks, suffix=".png", write=None):
    """images/ + masks/ with one grey image per mask; `write(path, mask)` writes a mask (default: cv2)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i, mask in enumerate(masks):
        cv2.imwrite(str(root / "images" / f"s{i}.png"), np.full(mask.shape[:2], 60 + i, np.uint8))
        path = root / "masks" / f"s{i}{suffix}"
        (write or (lambda p, m: cv2.imwrite(str(p), m)))(path, mask)
    return root


def _encoding(root, facts=None, **data):
    return mask_encoding(data, discover(root, val_fraction=0.0), facts)


def _blocks(values, size=SIZE, dtype=np.uint8):
    """A mask of vertical stripes, one per value."""
    mask = np.zeros(size, dtype)
    for i, value in enumerate(values):
        mask[:, i * size[1] // len(values):(i + 1) * size[1] // len(values)] = value
    return mask


def _pipeline_masks(root, encoding):
    frame = discover(root, val_fraction=0.0)
    dataset = build_dataset(frame, encoding, training=False, batch_size=len(frame))
    return next(iter(dataset))[1].numpy()


def test_index_masks_with_void_255_are_not_binary(tmp_path, capsys):
    masks = [_blocks([0, 1, 2, 255]), _blocks([0, 3, 15, 255])]
    root = _dataset(tmp_path, masks)
    assert check_data(["--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "index masks, 16 classes, void 255 (values 0..3, 15 and 255: index masks, 255 void (inferred))" in out
    encoding = _encoding(root)
    labels = _pipeline_masks(root, encoding)
    np.testing.assert_array_equal(labels[1, 0, [0, 8, 16, 24]], [0, 3, 15, IGNORE_INDEX])
    np.testing.assert_array_equal(labels[0, 5, [0, 8, 16, 24]], [0, 1, 2, IGNORE_INDEX])


def _write_palette_png(path, mask, palette):
    image = Image.fromarray(mask, mode="P")
    image.putpalette(palette.ravel().tolist())
    image.save(path)


def test_palette_png_decodes_to_its_indexes_and_colours(tmp_path, capsys):
    voc = voc_colormap()
    masks = [_blocks([0, 1, 15, 255]), _blocks([0, 2, 20, 255])]
    root = _dataset(tmp_path, masks, write=lambda p, m: _write_palette_png(p, m, voc))
    assert Image.open(root / "masks" / "s0.png").mode == "P"
    assert check_data(["--data", str(root)]) == 0
    assert "index masks, 21 classes, void 255 (palette PNG: indexes 0..2, 15, 20, 255 void)" in capsys.readouterr().out
    encoding = _encoding(root)
    np.testing.assert_array_equal(encoding.read(root / "masks" / "s0.png")[3, [0, 8, 16, 24]],
                                  [0, 1, 15, IGNORE_INDEX])
    np.testing.assert_array_equal(_pipeline_masks(root, encoding)[1, 0, [0, 8, 16, 24]], [0, 2, 20, IGNORE_INDEX])
    np.testing.assert_array_equal(encoding.colours, voc[:21])


def test_palette_pngs_whose_palettes_disagree_are_refused(tmp_path):
    voc = voc_colormap()
    other = voc.copy()
    other[[1, 2]] = other[[2, 1]]
    root = _dataset(tmp_path, [_blocks([0, 1, 2]), _blocks([0, 1, 2])])
    _write_palette_png(root / "masks" / "s0.png", _blocks([0, 1, 2]), voc)
    _write_palette_png(root / "masks" / "s1.png", _blocks([0, 1, 2]), other)
    with pytest.raises(ReadError, match=r"s1.png: palette PNG whose index 1 is \(0, 128, 0\) .* --mask rgb"):
        _encoding(root)


def test_rgb_masks_in_the_voc_colour_map_need_no_palette(tmp_path, capsys):
    voc = voc_colormap()
    colour = voc[_blocks([0, 1, 2, 255])]
    background = np.zeros((*SIZE, 3), np.uint8)
    root = _dataset(tmp_path, [colour, background],
                    write=lambda p, m: Image.fromarray(m).save(p))
    assert check_data(["--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert ("rgb masks, 3 classes, void 255 (RGB colours of the VOC colour map: indexes 0..2, (224,224,192) void)"
            in out)
    encoding = _encoding(root)
    labels = _pipeline_masks(root, encoding)
    np.testing.assert_array_equal(labels[0, 0, [0, 8, 16, 24]], [0, 1, 2, IGNORE_INDEX])
    assert (labels[1] == 0).all()
    np.testing.assert_array_equal(encoding.colours, voc[:3])


def test_rgb_colours_outside_any_map_are_refused_with_the_flag(tmp_path, capsys):
    root = _dataset(tmp_path, [np.array([(255, 0, 0), (0, 0, 255)], np.uint8)[_blocks([0, 1])]],
                    write=lambda p, m: Image.fromarray(m).save(p))
    assert check_data(["--data", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"error: {root / 'masks' / 's0.png'}: RGB colour mask with 2 colour(s) outside the VOC colour map" in err
    assert "(0,0,255), (255,0,0)" in err and "--mask rgb --set data.palette=PALETTE.csv" in err


def test_palette_csv_may_give_255_as_void(tmp_path):
    colours = np.array([(10, 10, 10), (200, 0, 0), (0, 200, 0), (255, 255, 255)], np.uint8)
    palette_csv = tmp_path / "palette.csv"
    pd.DataFrame({"index": [0, 1, 2, 255], "name": ["bg", "a", "b", "void"], "r": colours[:, 0],
                  "g": colours[:, 1], "b": colours[:, 2]}).to_csv(palette_csv, index=False)
    assert read_palette(palette_csv)["index"].tolist() == [0, 1, 2, 255]
    root = _dataset(tmp_path / "d", [colours[_blocks([0, 1, 2, 3])]], write=lambda p, m: Image.fromarray(m).save(p))
    encoding = _encoding(root, palette=str(palette_csv))
    assert (encoding.kind, encoding.num_classes, encoding.void) == ("rgb", 3, 255)
    assert encoding.reason == "colours of data.palette, row 255: void"
    np.testing.assert_array_equal(encoding.read(root / "masks" / "s0.png")[0, [0, 8, 16, 24]], [0, 1, 2, 255])
    np.testing.assert_array_equal(encoding.colours, colours[:3])


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_masks_with_class_values(tmp_path, suffix):
    def write(path, mask):
        tifffile.imwrite(path, mask) if suffix == ".tif" else cv2.imwrite(str(path), mask)

    root = _dataset(tmp_path, [_blocks([0, 1, 2, 3], dtype=np.uint16), _blocks([0, 4, 65535], dtype=np.uint16)],
                    suffix=suffix, write=write)
    encoding = _encoding(root)
    assert (encoding.kind, encoding.num_classes, encoding.void) == ("index", 5, 65535)
    labels = _pipeline_masks(root, encoding)
    np.testing.assert_array_equal(labels[0, 0, [0, 8, 16, 24]], [0, 1, 2, 3])
    np.testing.assert_array_equal(labels[1, 0, [0, 12, 28]], [0, 4, IGNORE_INDEX])


def test_0_1_masks_are_binary_and_one_class_is_refused(tmp_path, capsys):
    masks = [_blocks([0, 1]), _blocks([1, 0])]
    root = _dataset(tmp_path / "data", masks)
    assert check_data(["--data", str(root), "--mask", "binary", "--out", str(tmp_path / "out")]) == 0
    assert "binary masks, 2 classes (data.mask: binary; values 0/1: binary, threshold 0)" in capsys.readouterr().out
    pixels = pd.read_csv(tmp_path / "out" / "class_pixels.csv").groupby("class")["pixels"].sum()
    assert pixels["foreground"] == pixels["background"] == 2 * SIZE[0] * SIZE[1] // 2
    assert _encoding(root).reason == "values 0/1: binary, threshold 0"
    np.testing.assert_array_equal(_pipeline_masks(root, _encoding(root))[0, 0, [0, 31]], [0, 1])
    assert check_data(["--data", str(root), "--set", "data.num_classes=1"]) == 1
    assert "data.num_classes: 1 class cannot be trained" in capsys.readouterr().err
    assert check_data(["--data", str(root), "--mask", "binary", "--set", "data.threshold=127"]) == 1
    assert "no mask has a foreground pixel above data.threshold 127" in capsys.readouterr().err


def test_jpeg_compressed_binary_masks(tmp_path):
    rng = np.random.default_rng(0)
    truths = []
    for _ in range(3):
        truth = np.zeros((64, 64), np.uint8)
        cv2.circle(truth, (int(rng.integers(20, 44)), int(rng.integers(20, 44))), 15, 255, -1)
        truths.append(truth)
    root = _dataset(tmp_path, truths, suffix=".jpg", write=lambda p, m: Image.fromarray(m).save(p, quality=70))
    stored = np.asarray(Image.open(root / "masks" / "s0.jpg"))
    assert len(np.unique(stored)) > 2
    encoding = _encoding(root)
    assert encoding.kind == "binary" and encoding.threshold == 127
    assert encoding.reason.startswith("JPEG masks with ") and "near 0 or 255: binary, threshold 127" in encoding.reason
    decoded = encoding.read(root / "masks" / "s0.jpg")
    assert (decoded == (truths[0] > 0)).mean() > 0.99


@pytest.mark.parametrize("values, flag", [([0, 128, 255], "--mask index"), ([0, 5], "--mask binary"),
                                          ([0, 40, 80, 120], "--mask index")])
def test_ambiguous_values_stop_with_the_flag(tmp_path, values, flag):
    root = _dataset(tmp_path, [_blocks(values)])
    with pytest.raises(ReadError) as err:
        _encoding(root)
    assert str(err.value).startswith(f"{root / 'masks' / 's0.png'}: mask values") and flag in str(err.value)
    assert _encoding(root, mask="index").kind == "index"


def test_label_map_from_a_layout(tmp_path):
    label_map = {0: 255, 1: 255, 7: 0, 8: 1, 26: 2}
    root = _dataset(tmp_path, [_blocks([0, 7, 8, 26]), _blocks([1, 26])])
    facts = types.SimpleNamespace(class_names=["road", "sidewalk", "car"], palette=None, void=None,
                                  label_map=label_map)
    encoding = _encoding(root, facts)
    assert (encoding.kind, encoding.num_classes, encoding.void) == ("index", 3, 255)
    assert "label map" in encoding.reason and encoding.class_names == ("road", "sidewalk", "car")
    labels = _pipeline_masks(root, encoding)
    np.testing.assert_array_equal(labels[0, 0, [0, 8, 16, 24]], [IGNORE_INDEX, 0, 1, 2])
    np.testing.assert_array_equal(labels[1, 0, [0, 31]], [IGNORE_INDEX, 2])
    hand = MaskEncoding("index", 3, label_map=label_map)
    with pytest.raises(ReadError, match=r"m.png: mask values 9 are not in the label map"):
        hand.decode(np.array([[7, 9]], np.uint8), "m.png")
    cv2.imwrite(str(root / "masks" / "s1.png"), _blocks([1, 30]))
    with pytest.raises(ReadError, match=r"s1.png: mask values 30 are not in the layout's label map"):
        _encoding(root, facts)


def test_layout_facts_give_void_names_and_colours(tmp_path):
    root = _dataset(tmp_path, [_blocks([0, 1, 2, 250])])
    colours = pd.DataFrame({"index": [0, 1, 2], "name": ["a", "b", "c"], "r": [1, 2, 3], "g": [4, 5, 6],
                            "b": [7, 8, 9]})
    facts = types.SimpleNamespace(class_names=["a", "b", "c"], palette=colours, void=250, label_map=None)
    encoding = _encoding(root, facts)
    assert (encoding.kind, encoding.num_classes, encoding.void) == ("index", 3, 250)
    np.testing.assert_array_equal(encoding.colours, [[1, 4, 7], [2, 5, 8], [3, 6, 9]])
    assert _encoding(root, facts, void=None, num_classes=4, mask="index").num_classes == 4


def test_forced_index_on_0_255_masks_says_binary(tmp_path):
    root = _dataset(tmp_path, [_blocks([0, 255])])
    with pytest.raises(ReadError, match=r"s0.png: mask values 0 and 255 are binary masks.*--mask binary"):
        _encoding(root, mask="index")


def test_run_palette_gives_the_class_colours_to_predict(tmp_path):
    from app.inference.palette import class_colours
    from app.training.runs import write_class_palette

    colours = voc_colormap()[:3]
    write_class_palette(tmp_path / "palette.csv", ["bg", "a", "b"], colours)
    np.testing.assert_array_equal(class_colours(None, 3, tmp_path), colours)
    assert not np.array_equal(class_colours(None, 3), colours)


def test_a_stray_top_value_in_one_mask_is_reported_with_the_flag(tmp_path):
    masks = [_blocks([0, 1, 2]) for _ in range(4)]
    masks[2][3, 4:7] = 7
    root = _dataset(tmp_path, masks)
    with pytest.raises(ReadError) as err:
        _encoding(root)
    assert str(err.value) == (
        f"{root / 'masks' / 's2.png'}: mask value 7 in only 3 pixel(s) of 1 mask(s) (s2.png), far above the other "
        "classes 0..2: a stray value? it would add 5 class(es) that hold nothing else. Fix those masks, give --set "
        "data.num_classes=8 to train them as classes, or --set data.void=7 to ignore those pixels")
    assert _encoding(root, num_classes=8).num_classes == 8
    assert _encoding(root, void=7).num_classes == 3


def test_a_rare_class_next_to_the_others_is_not_a_stray(tmp_path):
    masks = [_blocks([0, 1, 2]) for _ in range(4)]
    masks[2][3, 4:7] = 3
    assert _encoding(_dataset(tmp_path, masks)).num_classes == 4


@pytest.mark.parametrize("levels", [(0, 128, 255), (0, 85, 170, 255)])
def test_jpeg_masks_of_a_few_grey_levels_snap_to_them(tmp_path, levels):
    truths = []
    for i in range(3):
        labels = np.zeros((64, 64), np.uint8)
        for k in range(1, len(levels)):
            cv2.circle(labels, (20 + 8 * k, 24 + 4 * i), 22 - 5 * k, k, -1)
        truths.append(labels)
    root = _dataset(tmp_path, [np.array(levels, np.uint8)[t] for t in truths], suffix=".jpg",
                    write=lambda p, m: Image.fromarray(m).save(p, quality=75))
    assert len(np.unique(np.asarray(Image.open(root / "masks" / "s0.jpg")))) > len(levels)
    encoding = _encoding(root)
    assert (encoding.kind, encoding.num_classes) == ("index", len(levels))
    assert np.abs(np.subtract(encoding.levels, levels)).max() <= 4
    shown = ", ".join(map(str, encoding.levels))
    assert encoding.reason.startswith(f"JPEG masks of {len(levels)} grey levels {shown} (")
    assert "compression noise snapped to the nearest level" in encoding.reason
    assert (encoding.read(root / "masks" / "s0.jpg") == truths[0]).mean() > 0.99
    assert (_pipeline_masks(root, encoding)[1] == truths[1]).mean() > 0.99


def test_a_stray_voc_colour_is_reported_with_its_index(tmp_path):
    colours = voc_colormap()
    masks = [colours[_blocks([0, 1, 2])] for _ in range(3)]
    masks[1][2, 3:5] = colours[9]
    root = _dataset(tmp_path, [cv2.cvtColor(m, cv2.COLOR_RGB2BGR) for m in masks])
    with pytest.raises(ReadError, match=r"s1\.png: colour \(192,0,0\) \(VOC index 9\) in only 2 pixel\(s\) of 1 "
                                        r"mask\(s\) \(s1\.png\), far above the other classes 0\.\.2"):
        _encoding(root)
    assert _encoding(root, num_classes=10).num_classes == 10
