"""benchmarks/recipes.py on a tiny trained run: timing from the TensorBoard events, scores from the evaluation."""
import json
import shutil

import pandas as pd
import pytest

from benchmarks.recipes import main


@pytest.mark.slow
def test_recipe_table_of_a_run(tiny_run, tmp_path):
    run, _ = tiny_run
    copy = tmp_path / "tiny-run"
    shutil.copytree(run, copy)
    assert main([str(copy), "--out", str(tmp_path / "recipes")]) == 0
    (row,) = json.loads((tmp_path / "recipes.json").read_text())["runs"]
    assert (row["epochs"], row["train_images"], row["val_images"]) == (8, 6, 2)
    assert row["precision"] == "float32" and row["parameters"] > 0
    assert row["train_images_per_s"] == pytest.approx(6 * 8 / (row["fit_minutes"] * 60))
    for suffix, folder in (("", "report-val"), ("_tta", "report-val-tta")):
        summary = json.loads((copy / folder / "summary.json").read_text())
        assert row[f"miou{suffix}"] == pytest.approx(summary["miou"])
        assert row[f"pixel_error{suffix}"] == pytest.approx(1 - summary["pixel_accuracy"])
        assert row[f"iou_disc{suffix}"] == pytest.approx(summary["per_class"]["disc"]["iou"])
    assert json.loads((copy / "report-val-tta" / "summary.json").read_text())["prediction"] == {"tta": True}
    assert "foreground_dice" not in row  # three classes: no single foreground
    assert pd.read_csv(tmp_path / "recipes.csv")["miou"].tolist() == pytest.approx([row["miou"]])
