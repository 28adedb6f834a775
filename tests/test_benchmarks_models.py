"""benchmarks/models.py: re-measuring a few rows keeps the others of the same settings."""
import json

from benchmarks.models import earlier_results

SETTINGS = {"size": 256, "num_classes": 12, "batch": 4, "steps": 5, "quick": False}


def test_earlier_rows_of_other_models_are_kept_only_with_the_same_settings(tmp_path):
    path = tmp_path / "models.json"
    rows = [{"model": "unet+mit_b0", "backend": "tensorflow", "train_img_s": 2.0},
            {"model": "unet+vgg16", "backend": "tensorflow", "train_img_s": 0.5},
            {"model": "unet+mit_b0", "backend": "jax", "train_img_s": 1.0}]
    path.write_text(json.dumps({"settings": SETTINGS, "results": rows}))
    new = [{"model": "unet+mit_b0", "backend": "tensorflow", "train_img_s": 3.0}]
    assert earlier_results(path, SETTINGS, new) == rows[1:]
    assert earlier_results(path, {**SETTINGS, "size": 512}, new) == []
    assert earlier_results(tmp_path / "absent.json", SETTINGS, new) == []
