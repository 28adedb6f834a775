"""Results of the dataset recipes (configs/camvid.yaml, isbi2012.yaml, dsb2018.yaml) from their trained runs.

    python -m benchmarks.recipes runs/camvid-unet-<ts> runs/isbi2012-unet-<ts> runs/dsb2018-unet-<ts>
    python -m benchmarks.recipes            # the newest run of each recipe in runs/

For each run: the validation split evaluated at the images' own resolution as `python -m app.evaluate` does,
without and with flip TTA (mIoU, pixel accuracy and error, foreground Dice/IoU of two-class tasks, per-class
IoU); the fit's wall time and training images/s from the run's TensorBoard event times (validation included);
epochs, precision and parameters. Prints a table and writes benchmarks/results/recipes.json and .csv; each
evaluation's report folder goes to <run>/report-val[-tta]/.
"""
import argparse
import pathlib
import sys

from benchmarks.tables import write_runs

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
RECIPES = ("camvid-unet", "isbi2012-unet", "dsb2018-unet")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.recipes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="run folders (default: the newest run of each recipe in runs/)")
    parser.add_argument("--runs-dir", default="runs")
    parser.add_argument("--out", default=str(RESULTS / "recipes"), help="JSON/CSV path without suffix")
    return parser.parse_args(argv)


def newest_runs(runs_dir):
    found = []
    for name in RECIPES:
        candidates = sorted(pathlib.Path(runs_dir).glob(f"{name}-*/metrics.json"))
        if candidates:
            found.append(candidates[-1].parent)
    return found


def fit_time(run_dir):
    """(seconds, epochs) from the first to the last epoch summary in the run's TensorBoard training events."""
    import tensorflow as tf

    times, steps = [], set()
    for events in sorted((run_dir / "logs" / "train").glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            times.append(event.wall_time)
            if event.summary.value:
                steps.add(event.step)
    if not times:
        raise ValueError(f"{run_dir / 'logs' / 'train'}: no TensorBoard events to time the fit")
    return max(times) - min(times), len(steps)


def train_images(config):
    from data.discovery import discover

    data = config.data
    frame = discover(data.path, data.layout, data.images_dir, data.masks_dir, data.instances_dir, data.val_fraction,
                     config.seed)
    return int((frame["split"] == "train").sum()), int((frame["split"] == "val").sum())


def scores(summary, names):
    row = {"miou": summary["miou"], "pixel_accuracy": summary["pixel_accuracy"],
           "pixel_error": 1.0 - summary["pixel_accuracy"]}
    if len(names) == 2:
        foreground = summary["per_class"][names[1]]
        row.update(foreground_dice=foreground["dice"], foreground_iou=foreground["iou"])
    row.update({f"iou_{name}": summary["per_class"][name]["iou"] for name in names})
    return row


def recipe_row(run_dir):
    from app.config.loading import load_run_config
    from app.evaluation.report import write_report
    from app.inference.predictor import load_predictor

    config = load_run_config(run_dir / "config.yaml")
    seconds, epochs = fit_time(run_dir)
    train_count, val_count = train_images(config)
    model = load_predictor(run_dir).model
    row = {"run": str(run_dir), "recipe": config.name, "model": config.model.name,
           "parameters": model.count_params(),
           "precision": next(layer.dtype_policy.name for layer in model.layers if layer.weights),
           "crop": config.data.image_size, "resize": config.data.resize, "epochs": epochs,
           "train_images": train_count, "val_images": val_count, "fit_minutes": seconds / 60,
           "train_images_per_s": train_count * epochs / seconds}
    for suffix, options in (("", {}), ("_tta", {"tta": True})):
        _, summary = write_report(run_dir, out=run_dir / f"report-val{suffix.replace('_', '-')}", overlays=2,
                                  options=options, log=lambda *_: None)
        names = list(summary["per_class"])
        row.update({f"{key}{suffix}": value for key, value in scores(summary, names).items()})
    return row


def main(argv=None):
    args = parse_args(argv)
    import pandas as pd

    runs = [pathlib.Path(r) for r in args.runs] or newest_runs(args.runs_dir)
    if not runs:
        raise SystemExit(f"no finished recipe runs in {args.runs_dir} (train one: python -m app.train --config "
                         f"configs/camvid.yaml)")
    rows = [recipe_row(run) for run in runs]
    table = pd.DataFrame(rows)
    shown = ["recipe", "epochs", "fit_minutes", "train_images_per_s", "miou", "miou_tta", "pixel_error",
             "pixel_error_tta", "foreground_dice", "foreground_dice_tta"]
    print(table[[c for c in shown if c in table]].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    write_runs(args.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
