"""Every plan trains (issue 24): generated datasets in the shapes users bring, each run end to end as a user would
(`app.plan`, `app.train --time-budget`, `app.evaluate`, `app.predict`, `app.export`). A run must not crash, must end
within its budget (plus a minute) after using at least 85% of it, never run out of input inside an epoch, and end
its learning-rate schedule at no more than 10% of its peak.

One case runs in the default suite; the whole matrix with --run-slow."""
import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from train_helpers import REPO

from data.synthetic import DatasetShape, write_dataset

BUDGET_S = 60
CASES = {
    # the crash of issue 24: wide frames, frame-filling objects, JPEG images and JPEG masks, no up/down
    "wide-jpeg-frame-objects": DatasetShape(sizes=((150, 176),), count=16, objects="frame", masks="jpeg",
                                            image_format="jpg"),
    "tall-grey16-specks-val": DatasetShape(sizes=((200, 90),), count=12, channels=1, bits=16, classes=3,
                                           objects="specks", val_folder=True),
    "square-8band-palette-upright": DatasetShape(sizes=((96, 96),), count=10, channels=8, bits=16, classes=5,
                                                 masks="palette", upright=True),
    "mixed-sizes-rgba-tiff-binary": DatasetShape(sizes=((70, 130), (130, 70), (100, 100)), count=12, channels=4,
                                                 masks="binary", image_format="tif"),
    "sixty-classes-odd-sizes": DatasetShape(sizes=((111, 157), (93, 121)), count=12, classes=60, val_folder=True),
    "jpeg-masks-three-grey-levels": DatasetShape(sizes=((128, 96),), count=12, classes=3, masks="jpeg",
                                                 image_format="jpg"),
    "few-large-images-small-objects": DatasetShape(sizes=((600, 820),), count=4, classes=2, objects="small"),
    "upright-street-scene": DatasetShape(sizes=((90, 120),), count=16, classes=4, upright=True, masks="palette"),
}
DEFAULT_CASES = ("wide-jpeg-frame-objects",)


def command(module, *args, timeout=600):
    done = subprocess.run([sys.executable, "-m", f"app.{module}", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"app.{module} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
    return done.stdout


@pytest.mark.parametrize("name", [pytest.param(name, marks=() if name in DEFAULT_CASES else pytest.mark.slow)
                                  for name in CASES])
def test_a_generated_dataset_trains_end_to_end(name, tmp_path):
    shape = CASES[name]
    data = write_dataset(tmp_path / name, shape, seed=len(name))
    runs = tmp_path / "runs"
    planned = command("plan", "--data", data, "--time-budget", f"{BUDGET_S}s", "--out", tmp_path / "plan.yaml")
    assert "crop" in planned and (tmp_path / "plan.yaml").is_file()
    output = command("train", "--data", data, "--time-budget", f"{BUDGET_S}s", "--runs-dir", runs,
                     "--set", "train.verbose=epoch")
    assert "ran out of data" not in output
    (run,) = runs.iterdir()
    config = yaml.safe_load((run / "config.yaml").read_text())
    budget = json.loads((run / "budget.json").read_text())
    assert 0.85 * BUDGET_S <= budget["elapsed_s"] <= BUDGET_S + 60, output[-2000:]
    history = pd.read_csv(run / "history.csv")
    assert history["learning_rate"].iloc[-1] <= 0.1 * config["train"]["learning_rate"], history["learning_rate"].tolist()
    assert config["data"]["channels"] == (3 if shape.channels in (1, 3) else shape.channels)
    crop = config["data"]["image_size"]
    assert config["augment"]["rotate90"] == 0 or crop[0] == crop[1]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["miou"] <= 1.0
    assert len(metrics["per_class"]) == shape.classes

    report = tmp_path / "report"
    command("evaluate", "--run", run, "--out", report, "--overlays", "1")
    assert json.loads((report / "summary.json").read_text())
    images = next(p for p in sorted(data.rglob("images")) if p.is_dir())
    predictions = tmp_path / "predictions"
    command("predict", "--run", run, images, "--out", predictions)
    written = sorted(predictions.glob("*.png"))
    assert len(written) == len(list(images.iterdir()))
    command("export", "--run", run, "--format", "tflite-fp32", "--out", tmp_path / "export")
    assert (tmp_path / "export" / "model_fp32.tflite").stat().st_size > 0
