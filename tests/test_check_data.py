import cv2
import numpy as np
import pandas as pd

from app.check_data import main
from data.synthetic import write_shapes_dataset


def test_clean_dataset_summary_and_class_pixels(tmp_path, capsys):
    root = write_shapes_dataset(tmp_path / "data", count=6, size=(32, 48), num_classes=3)
    out = tmp_path / "out"
    assert main(["--data", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "index masks, 3 classes" in printed and "32x48 (6)" in printed and "no problems found" in printed
    counts = pd.read_csv(out / "class_pixels.csv")
    masks = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted((root / "masks").iterdir())]
    expected = np.bincount(np.concatenate([m.ravel() for m in masks]), minlength=3)
    assert counts.groupby("class")["pixels"].sum().tolist() == expected.tolist()
    assert (out / "class_shares.png").stat().st_size > 1000
    assert len(pd.read_csv(out / "files.csv")) == 6


def test_broken_dataset_lists_every_problem_and_exits_1(tmp_path, capsys):
    root = write_shapes_dataset(tmp_path, count=6, num_classes=3)
    (root / "images" / "sample_000.png").write_bytes(b"not a png")
    cv2.imwrite(str(root / "masks" / "sample_001.png"), np.zeros((10, 10), np.uint8))
    (root / "masks" / "sample_002.png").unlink()
    assert main(["--data", str(root), "--set", "data.mask=index", "--set", "data.num_classes=3"]) == 1
    err = capsys.readouterr().err
    assert f"error: {root / 'images' / 'sample_002.png'}: image has no mask" in err
    (root / "images" / "sample_002.png").unlink()
    assert main(["--data", str(root), "--set", "data.mask=index", "--set", "data.num_classes=3"]) == 1
    err = capsys.readouterr().err
    assert f"error: {root / 'images' / 'sample_000.png'}: unreadable or corrupt image" in err
    assert f"error: {root / 'masks' / 'sample_001.png'}: mask is 10x10" in err
    assert "2 problem(s) found" in err


def test_usage_errors_exit_2(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "missing")]) == 1
    assert f"error: {tmp_path / 'missing'}: dataset path does not exist" in capsys.readouterr().err
    root = write_shapes_dataset(tmp_path / "data", count=4)
    assert main(["--data", str(root), "--set", "data.colour=3"]) == 2
    assert "unknown config key 'data.colour'" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["--data", str(root), "--out", str(blocker)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {blocker}: cannot create output folder")
