"""Smoke runs of the dataset recipes in configs/: a few images per split, a tiny model, one epoch.

They need ../shared/datasets and skip with a message when it is absent.
"""
import json

import pytest
from conftest import REPO, shared_dataset

from app.config.loading import load_config, parse_override
from app.training.loop import train
from data.discovery import discover

RECIPES = {"camvid.yaml": "camvid", "isbi2012.yaml": "isbi2012", "dsb2018.yaml": "dsb2018"}
TINY = ["model.base_filters=4", "model.depth=2", "train.epochs=1", "train.batch_size=2", "train.verbose=epoch"]


@pytest.mark.slow
@pytest.mark.dataset
@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_recipe_smoke(tmp_path, monkeypatch, recipe):
    shared_dataset(RECIPES[recipe])
    monkeypatch.chdir(REPO)
    config = load_config(REPO / "configs" / recipe)
    data = config.data
    frame = discover(data.path, data.layout, data.images_dir, data.masks_dir, data.instances_dir, data.val_fraction,
                     config.seed)
    subset = frame.groupby("split").head(4)
    for column in ("image", "mask", "instances"):
        subset[column] = subset[column].map(lambda path: path and str((REPO / path).resolve()))
    subset.to_csv(tmp_path / "subset.csv", index=False)
    overrides = TINY + [f"data.path={tmp_path / 'subset.csv'}", "data.layout=csv"]
    config = load_config(REPO / "configs" / recipe, [parse_override(o) for o in overrides])
    run_dir = train(config, runs_dir=tmp_path / "runs")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["split"] == "val"
    assert len(metrics["per_class"]) == (config.data.num_classes or 2)
    assert 0.0 <= metrics["miou"] <= 1.0
