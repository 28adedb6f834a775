"""End to end: the training CLI in a real subprocess, on generated data and on the embedded dataset."""
import json
import pathlib
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from data.synthetic import write_shapes_dataset

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--set", "model.base_filters=4", "--set", "model.depth=2", "--image-size", "32", "32",
        "--batch-size", "4", "--set", "train.verbose=epoch"]


def run_train(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "app.train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def train_here(capsys, *args):
    """app.train's main in this process (no interpreter start-up): (exit code, stderr)."""
    from app.train import main

    code = main([*args])
    return code, capsys.readouterr().err


def test_fit_prints_a_bar_on_a_terminal_and_one_line_per_epoch_elsewhere():
    import io

    from app.training.loop import fit_verbosity

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert fit_verbosity("auto", Terminal()) == 1
    assert fit_verbosity("auto", io.StringIO()) == 2
    assert fit_verbosity("epoch", Terminal()) == 2


def test_two_epochs_write_a_complete_run_folder_and_one_log_line_each(tmp_path):
    data = write_shapes_dataset(tmp_path / "shapes", count=8, size=(48, 48), num_classes=3)
    runs = tmp_path / "runs"
    quiet = TINY[:-2]  # train.verbose: auto, with stdout a pipe as in a CI log
    done = run_train("--data", data.name, "--mask", "index", "--epochs", "2", "--runs-dir", "runs",
                     "--name", "shapes", *quiet, cwd=tmp_path)  # the dataset's plan, its path relative
    assert done.returncode == 0, done.stderr[-3000:]
    epoch_lines = [line for line in done.stdout.splitlines() if "train_loss:" in line]
    assert len(epoch_lines) == 2, done.stdout  # one line per epoch: no progress bar redrawn into the file
    assert not any(c in done.stdout for c in "\b\r\x1b") and "iou_class" not in done.stdout.split("best model")[0]
    (run_dir,) = runs.iterdir()
    assert run_dir.name.startswith("shapes-")
    for name in ("config.yaml", "model.keras", "history.csv", "curves.png", "metrics.json"):
        assert (run_dir / name).stat().st_size > 0, name
    assert list((run_dir / "logs").rglob("events.out.tfevents*"))
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["data"]["path"] == str(data)  # absolute
    history = pd.read_csv(run_dir / "history.csv")
    assert history["epoch"].tolist() == [0, 1]
    for column in ("loss", "val_loss", "miou", "val_miou", "val_iou_class_0", "val_iou_class_2"):
        assert column in history.columns
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0 and metrics["split"] == "val"
    assert set(metrics["per_class"]) == {"class_0", "class_1", "class_2"}
    matrix = metrics["confusion_matrix"]
    assert sum(map(sum, matrix)) == 2 * 48 * 48


@pytest.mark.parametrize("breakage, expected", [
    ("corrupt", "sample_001.png: unreadable or corrupt image"),
    ("value", "sample_002.png: mask values 9 outside classes 0..2"),
    ("orphan", "sample_003.png: image has no mask"),
])
def test_bad_data_gives_one_line_per_problem_and_no_traceback(tmp_path, capsys, breakage, expected):
    data = write_shapes_dataset(tmp_path / "shapes", count=6, size=(32, 32), num_classes=3)
    if breakage == "corrupt":
        (data / "images" / "sample_001.png").write_bytes(b"\x89PNG broken")
    elif breakage == "value":
        (data / "masks" / "sample_002.png").write_bytes((data / "masks" / "sample_002.png").read_bytes())
        import cv2
        import numpy as np
        cv2.imwrite(str(data / "masks" / "sample_002.png"), np.full((32, 32), 9, np.uint8))
    else:
        (data / "masks" / "sample_003.png").unlink()
    code, err = train_here(capsys, "--data", str(data), "--mask", "index", "--num-classes", "3", "--epochs", "1",
                           "--runs-dir", str(tmp_path / "runs"), *TINY)
    assert code == 2 and expected in err and err.startswith("error: ")
    assert not (tmp_path / "runs").exists()


def test_bad_config_values_are_one_line_errors(tmp_path, capsys):
    done = run_train("--set", "train.epoch=3", "--runs-dir", str(tmp_path))  # a real process: no traceback
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.splitlines() == ["error: unknown config key 'train.epoch' (did you mean 'epochs'?)"]
    code, err = train_here(capsys, "--image-size", "250", "250", "--runs-dir", str(tmp_path))
    assert code == 2 and "must be a multiple of 16 for unet; nearest valid sizes: 240, 256" in err
    code, err = train_here(capsys, "--data", str(tmp_path / "missing"), "--runs-dir", str(tmp_path))
    assert code == 2 and "missing: dataset path does not exist" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("model_flags", [
    ["--model", "deeplabv3plus", "--set", "model.base_filters=4", "--set", "model.filters=8",
     "--set", "model.low_level_filters=4"],
    ["--set", "model.upsampling=bilinear", "--set", "model.base_filters=4", "--set", "model.depth=2"],
])
def test_resize_based_models_train_and_validate_on_other_sizes(tmp_path, model_flags):
    data = write_shapes_dataset(tmp_path / "shapes", count=6, size=(40, 56), num_classes=3)
    done = run_train("--data", str(data), "--mask", "index", "--epochs", "1", "--runs-dir", str(tmp_path / "runs"),
                     "--image-size", "32", "32", "--batch-size", "3", "--set", "train.verbose=epoch", *model_flags)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["confusion_matrix"]
