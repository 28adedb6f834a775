"""Images as they are: EXIF orientation, damaged files, 16-bit and multi-band TIFFs, normalisation kept by the run."""
import json
import subprocess
import sys

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
import yaml
from PIL import Image

from app.check_data import main as check_data
from app.inference.predictor import load_predictor
from data.discovery import discover
from data.images import ReadError, read_image, read_raw_image
from data.normalization import Normalization, resolve
from data.scan import mask_encoding, scan
from tests.train_helpers import REPO, TINY, only_run_dir

DISPLAYED = np.zeros((48, 32, 3), np.uint8)
DISPLAYED[:24, :, 0] = 250
DISPLAYED[24:, :16, 1] = 250
"""A portrait image as a viewer shows it: red top half, green bottom-left quarter."""


def _exif_jpeg(path, orientation=6):
    """Save DISPLAYED as a JPEG stored sideways with the EXIF orientation that turns it upright."""
    stored = np.ascontiguousarray(np.rot90(DISPLAYED, 1))
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    return stored


def test_exif_rotated_jpeg_is_read_as_shown_and_matches_its_mask(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    stored = _exif_jpeg(tmp_path / "images" / "phone.jpg")
    assert Image.open(tmp_path / "images" / "phone.jpg").size == (48, 32)
    mask = np.zeros(DISPLAYED.shape[:2], np.uint8)
    mask[:24] = 1
    mask[24:, :16] = 2
    cv2.imwrite(str(tmp_path / "masks" / "phone.png"), mask)
    image = read_image(tmp_path / "images" / "phone.jpg")
    assert image.shape == (48, 32, 3) and stored.shape == (32, 48, 3)
    for label, colour in ((1, [250, 0, 0]), (2, [0, 250, 0]), (0, [0, 0, 0])):
        inside = cv2.erode((mask == label).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0
        np.testing.assert_allclose(image[inside].mean(0) * 255, colour, atol=6)
    assert check_data(["--data", str(tmp_path), "--set", "data.val_fraction=0"]) == 0
    assert "48x32 (1)" in capsys.readouterr().out
    cv2.imwrite(str(tmp_path / "masks" / "phone.png"), np.ascontiguousarray(np.rot90(mask, 1)))
    frame = discover(tmp_path, val_fraction=0.0)
    (problem,) = scan(frame, mask_encoding({}, frame)).problems
    assert problem.startswith(f"{tmp_path / 'masks' / 'phone.png'}: mask is 48x32 but its image")
    assert "EXIF orientation are read turned, as viewers show them" in problem


def test_pillow_reads_8_bit_files_exactly_as_opencv_did(tmp_path):
    """Training results on PNG/JPEG datasets do not change: same pixels as the former cv2 reader."""
    rng = np.random.default_rng(0)
    bgr = cv2.GaussianBlur(rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), (5, 5), 1.5)
    for name in ("a.jpg", "a.png", "a.bmp"):
        cv2.imwrite(str(tmp_path / name), bgr)
        expected = cv2.cvtColor(cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(read_raw_image(tmp_path / name), expected)
    cv2.imwrite(str(tmp_path / "grey.png"), bgr[..., 0])
    np.testing.assert_array_equal(read_image(tmp_path / "grey.png", 1)[..., 0], bgr[..., 0] / np.float32(255))


def test_16_bit_colour_png_keeps_16_bits(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint16)
    rgb[..., 0], rgb[..., 2] = 40000, 1000
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])
    raw = read_raw_image(tmp_path / "c16.png")
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw[0, 0], [40000, 0, 1000])


def _truncated_dataset(root, suffix):
    """Three image/mask pairs; the second image cut in half. Returns (root, broken image path)."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        image = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (3, 3), 1)
        cv2.imwrite(str(root / "images" / f"s{i}{suffix}"), image)
        cv2.imwrite(str(root / "masks" / f"s{i}.png"), (np.arange(64)[None, :] // 32).repeat(64, 0).astype(np.uint8))
    broken = root / "images" / f"s1{suffix}"
    data = broken.read_bytes()
    broken.write_bytes(data[: len(data) // 2])
    return root, broken


def test_truncated_jpeg_is_reported_by_check_data_with_its_path(tmp_path):
    root, broken = _truncated_dataset(tmp_path / "data", ".jpg")
    done = subprocess.run([sys.executable, "-m", "app.check_data", "--data", str(root)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"error: {broken}: damaged image: image file is truncated" in done.stderr
    assert "1 problem(s) found" in done.stderr


def test_truncated_png_is_refused_by_the_training_scan(tmp_path):
    root, broken = _truncated_dataset(tmp_path / "data", ".png")
    with pytest.raises(ReadError, match="damaged image: image file is truncated"):
        read_image(broken)
    frame = discover(root, val_fraction=0.0)
    result = scan(frame, mask_encoding({}, frame))
    assert result.problems == [f"{broken}: damaged image: image file is truncated; re-save or remove the file"]


def _band_image(rng, bands, size=(64, 64)):
    """Float-valued bands at very different scales (as remote-sensing bands are), stored as uint16."""
    scales = np.array([300, 1200, 4000, 9000, 20000][:bands], np.float64)
    values = rng.random((*size, bands)) * scales
    return values.astype(np.uint16)


def _write_tiff_dataset(root, count, bands, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(count):
        image = _band_image(rng, bands)
        mask = np.zeros(image.shape[:2], np.uint8)
        mask[16 + i % 8:48, 8:40] = 1
        image[mask == 1] //= 3
        if bands == 1:
            tifffile.imwrite(root / "images" / f"s{i}.tif", image[..., 0])
        else:
            tifffile.imwrite(root / "images" / f"s{i}.tif", np.moveaxis(image, -1, 0), photometric="minisblack")
        cv2.imwrite(str(root / "masks" / f"s{i}.png"), mask)
    return root


def test_multiband_tiff_layouts_read_channels_last(tmp_path):
    image = _band_image(np.random.default_rng(0), 5)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(image, -1, 0), photometric="minisblack")
    tifffile.imwrite(tmp_path / "contig.tif", image, photometric="minisblack", planarconfig="contig")
    tifffile.imwrite(tmp_path / "default.tif", image)
    tifffile.imwrite(tmp_path / "lzw.tif", image, photometric="minisblack", planarconfig="contig", compression="lzw")
    for name in ("planar", "contig", "default", "lzw"):
        np.testing.assert_array_equal(read_raw_image(tmp_path / f"{name}.tif"), image)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((80, 70, 90), np.uint8))
    with pytest.raises(ReadError, match=r"stack.tif: TIFF image of shape \(80, 70, 90\).*not a z-stack"):
        read_raw_image(tmp_path / "stack.tif")
    with pytest.raises(ReadError, match=r"planar.tif: image has 5 channels, the model takes 3"):
        read_image(tmp_path / "planar.tif", 3)


def test_16_bit_tiff_is_normalised_by_percentiles(tmp_path, capsys):
    root = _write_tiff_dataset(tmp_path / "d", count=4, bands=1)
    raw = read_raw_image(root / "images" / "s0.tif")
    assert raw.dtype == np.uint16 and raw.shape == (64, 64, 1) and raw.max() < 300
    frame = discover(root, val_fraction=0.0)
    result = scan(frame, mask_encoding({}, frame), channels=1)
    norm = resolve("auto", 1, result.files["dtype"].tolist(), result.files["channels"].tolist(),
                   result.pixel_sample)
    pixels = np.concatenate([read_raw_image(p).reshape(-1) for p in frame["image"]])
    low, high = np.percentile(pixels, [0.5, 99.5])
    assert norm.method == "percentile" and norm.low[0] == pytest.approx(low, rel=0.05, abs=2)
    assert norm.high[0] == pytest.approx(high, rel=0.02)
    image = read_image(root / "images" / "s0.tif", 1, norm)
    assert image.min() == 0.0 and image.max() == 1.0 and 0.2 < image.mean() < 0.8
    assert resolve("auto", 3, ["uint8"], [3], None) == Normalization()
    assert check_data(["--data", str(root), "--set", "data.channels=1"]) == 0
    assert "input normalization: percentile 0.5-99.5 per channel" in capsys.readouterr().out


@pytest.mark.slow
def test_five_band_tiff_trains_one_epoch_and_predicts(tmp_path):
    root = _write_tiff_dataset(tmp_path / "bands", count=8, bands=5)
    runs, out = tmp_path / "runs", tmp_path / "pred"
    command = [sys.executable, "-m", "app.train", "--data", str(root), "--epochs", "1", "--runs-dir", str(runs),
               *TINY, "--set", "data.channels=5", "--set", "train.batch_size=4"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "input normalization: percentile 0.5-99.5 per channel" in done.stdout
    run = only_run_dir(runs)
    saved = yaml.safe_load((run / "config.yaml").read_text())["data"]["normalization"]
    assert saved["method"] == "percentile" and len(saved["low"]) == len(saved["high"]) == 5
    assert saved["high"][4] > 10 * saved["high"][0]
    predictor = load_predictor(run)
    assert predictor.channels == 5 and predictor.normalization.high == tuple(saved["high"])
    done = subprocess.run([sys.executable, "-m", "app.predict", "--run", str(run), str(root / "images"),
                           "--out", str(out), "--overlay"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = cv2.imread(str(out / "s0.png"), cv2.IMREAD_UNCHANGED)
    assert predicted.shape == (64, 64) and set(np.unique(predicted)) <= {0, 1}
    assert cv2.imread(str(out / "overlay" / "s0.png")).shape == (64, 64, 3)
    assert json.loads((run / "metrics.json").read_text())["split"] == "val"
    assert len(pd.read_csv(out / "palette.csv")) == 2


def test_percentiles_refuse_mixed_bit_depths(tmp_path):
    from app.dataset.prepared import resolve_normalization
    from data.discovery import DatasetError

    root = _write_tiff_dataset(tmp_path / "d", count=2, bands=1)
    cv2.imwrite(str(root / "images" / "s1.png"), np.zeros((64, 64), np.uint8))
    (root / "images" / "s1.tif").unlink()
    frame = discover(root, val_fraction=0.0)
    result = scan(frame, mask_encoding({}, frame), channels=1)
    with pytest.raises(DatasetError, match=r"s1.png: uint8 image, but .*s0.tif is uint16: .*data.normalization=unit"):
        resolve_normalization("auto", 1, result)
    unit = resolve_normalization("unit", 1, result)
    assert unit == Normalization()


def test_input_channels_follow_the_image_files(tmp_path):
    """data.channels auto: grey and RGB files give 3; multi-band TIFFs their band count."""
    import tifffile

    from data.images import input_channels

    grey, rgb = tmp_path / "grey.png", tmp_path / "rgb.png"
    cv2.imwrite(str(grey), np.zeros((8, 8), np.uint8))
    cv2.imwrite(str(rgb), np.zeros((8, 8, 3), np.uint8))
    assert input_channels([grey, rgb])[0] == 3
    bands = [tmp_path / f"b{i}.tif" for i in range(3)]
    for path in bands:
        tifffile.imwrite(path, np.zeros((8, 8, 8), np.uint16), photometric="minisblack", planarconfig="contig")
    channels, reason = input_channels(bands)
    assert channels == 8 and "8-band" in reason
