"""Auto plan against the hand-written recipe, each trained with the same wall-clock budget.

    python -m benchmarks.autoplan --time-budget 20m                  # every dataset found
    python -m benchmarks.autoplan --time-budget 2m --datasets nuclei --out benchmarks/results/autoplan-quick

Datasets: camvid, isbi2012 and dsb2018 from ../shared/datasets (skipped when absent), the embedded nuclei
set (data/nuclei), and two generated sets that no planning rule was written for (`data.synthetic`, written under
<runs-dir>/generated): `frames` (200 wide 264x310 JPEG frames with one large object each and JPEG masks, no
up/down, like colonoscopy) and `multiband` (120 8-band 16-bit TIFFs of 192x256, 5 classes of small objects).
For each, one at a time (run nothing else beside it: the budget buys epochs by speed):
- auto: `python -m app.train --config <data-only config> --plan --time-budget B`: the recipe's data section
  (where the data is and how to read it: layout, mask encoding, palette, void, channels, validation fraction,
  so both arms validate on the same images) without its training choices, everything else from the plan;
- hand: `python -m app.train --config configs/<name>.yaml --time-budget B` (configs/nuclei.yaml for nuclei):
  the recipe, its epochs fitted to the same budget; datasets without a recipe have no hand arm;
- plain: `python -m benchmarks.plain_unet` (a 60-line U-Net script: whole images at 256x256, Dice + CE, AdamW,
  cosine) on the same data-only config and budget.
Both runs are scored on the validation split at the images' own resolution (`app.evaluation.report.write_report`,
no TTA). The table (dataset, budget, plan summary, scores of both arms, wall time) goes to stdout and
<out>.json / <out>.csv (default benchmarks/results/autoplan).
"""
import argparse
import json
import pathlib
import subprocess
import sys
import time

import pandas as pd
import yaml

from app.planning.plan import describe
from benchmarks.tables import write_runs
from data.synthetic import DatasetShape, write_dataset

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared" / "datasets"
DATASETS = {"camvid": SHARED / "camvid", "isbi2012": SHARED / "isbi2012", "dsb2018": SHARED / "dsb2018",
            "nuclei": REPO / "data" / "nuclei", "frames": None, "multiband": None}
GENERATED = {"frames": DatasetShape(sizes=((264, 310),), count=200, objects="frame", masks="jpeg", image_format="jpg"),
             "multiband": DatasetShape(sizes=((192, 256),), count=120, channels=8, bits=16, classes=5,
                                       objects="small")}
"""Datasets written by `data.synthetic.write_dataset` (seed 0) when first benchmarked."""
ARMS = ("auto", "plain", "hand")
TRAINING_CHOICES = ("image_size", "resize", "cache", "one_hot")
"""Keys of a recipe's data section that the auto arm leaves to the plan."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autoplan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-budget", required=True, help="budget of each arm (90s, 20m, 1h)")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--arms", nargs="*", default=list(ARMS), choices=list(ARMS),
                        help="arms to train (default: all; hand only where a recipe exists)")
    parser.add_argument("--runs-dir", default="runs/autoplan")
    parser.add_argument("--out", default=str(RESULTS / "autoplan"), help="JSON/CSV path without suffix")
    return parser.parse_args(argv)


def recipe_config(name):
    """The hand recipe's config mapping ({} where configs/<name>.yaml is absent: the defaults)."""
    path = REPO / "configs" / f"{name}.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def dataset_path(name, runs_dir):
    """Where dataset `name` is (generated sets are written under `runs_dir` the first time)."""
    if name not in GENERATED:
        return DATASETS[name]
    path = pathlib.Path(runs_dir) / "generated" / name
    if not path.is_dir():
        write_dataset(path, GENERATED[name], seed=0)
    return path


def data_only_config(recipe, name, path):
    """The recipe's data section (how to read the data) and seed, without its training choices."""
    data = {k: v for k, v in recipe.get("data", {}).items() if k not in TRAINING_CHOICES}
    data.setdefault("path", str(path))
    return {"name": f"{name}-auto", "seed": recipe.get("seed", 42), "data": data}


def train_arm(arm, argv, runs_dir, log_path):
    """Run `python -m app.train` (the plain arm: `benchmarks.plain_unet`) as a subprocess; returns (run folder,
    wall seconds)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    before = set(runs_dir.iterdir())
    start = time.monotonic()
    module = ["benchmarks.plain_unet"] if arm == "plain" else ["app.train", "--fresh"]
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, "-m", *module, *argv, "--runs-dir", str(runs_dir)],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise RuntimeError(f"{arm} arm failed (exit {result.returncode}); see {log_path}")
    (run,) = set(runs_dir.iterdir()) - before
    return run, seconds


def scores(run_dir):
    """Validation scores at native resolution: mIoU, and for two classes the foreground Dice (pooled and mean
    over images)."""
    from app.evaluation.report import write_report

    _, summary = write_report(run_dir, out=run_dir / "report-val", overlays=0, log=lambda *_: None)
    names = list(summary["per_class"])
    row = {"miou": summary["miou"]}
    if len(names) == 2:
        row["dice"] = summary["per_class"][names[1]]["dice"]
        row["image_dice"] = summary["per_image"]["dice"][names[1]]
    return row


def summary_of(run_dir):
    """The run's main settings and the epochs it ran (of those planned, where the budget guard shortened it)."""
    run_dir = pathlib.Path(run_dir)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    if not (run_dir / "history.csv").is_file():  # the plain script
        return "resize 256x256, whole images, unet d4 f32, batch 8, dice_ce, flips hv (plain script)"
    planned = config["train"]["epochs"]
    ran = len(pd.read_csv(run_dir / "history.csv"))
    epochs = f"{ran} epochs" + ("" if ran == planned else f" ({planned} planned; the budget guard "
                                                      f"{'shortened' if ran < planned else 'lengthened'} the run)")
    return f"{describe(config)}, {epochs}"


def benchmark(name, budget, runs_dir, arms=ARMS, log=print):
    recipe = recipe_config(name) if name not in GENERATED else {}
    folder = pathlib.Path(runs_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    auto_config = folder / "auto-data.yaml"
    auto_config.write_text(yaml.safe_dump(data_only_config(recipe, name, dataset_path(name, runs_dir)),
                                          sort_keys=False))
    commands = [("auto", ["--config", str(auto_config), "--plan"]), ("plain", ["--config", str(auto_config)])]
    if recipe or name == "nuclei":
        commands.append(("hand", ["--config", str(REPO / "configs" / f"{name}.yaml")]))
    row = {"dataset": name, "budget": budget}
    for arm, argv in [(arm, argv) for arm, argv in commands if arm in arms]:
        log(f"{name}: training the {arm} arm ({budget})")
        run, seconds = train_arm(arm, argv + ["--time-budget", budget], folder / arm, folder / f"{arm}.log")
        row.update({f"{arm}_{key}": value for key, value in scores(run).items()})
        row.update({f"{arm}_plan": summary_of(run), f"{arm}_minutes": seconds / 60, f"{arm}_run": str(run)})
    return row


def earlier_rows(out, datasets):
    """Rows of `<out>.json` for datasets not run this time, so datasets can be benchmarked one call at a time."""
    path = pathlib.Path(out).with_suffix(".json")
    if not path.is_file():
        return []
    return [row for row in json.loads(path.read_text())["runs"] if row["dataset"] not in datasets]


def main(argv=None):
    args = parse_args(argv)
    from app.config.durations import parse_duration

    parse_duration(args.time_budget, "--time-budget")
    rows = earlier_rows(args.out, args.datasets)
    for name in args.datasets:
        if name not in GENERATED and not DATASETS[name].is_dir():
            print(f"{name}: {DATASETS[name]} is absent, skipped")
            continue
        rows.append(benchmark(name, args.time_budget, args.runs_dir, args.arms))
        write_runs(args.out, rows)  # a dataset's row is kept even if a later one fails
    if not rows:
        raise SystemExit("no dataset found")
    table = pd.DataFrame(rows)
    shown = [c for c in ("dataset", "budget", "auto_miou", "plain_miou", "hand_miou", "auto_dice", "plain_dice",
                         "hand_dice", "auto_image_dice", "plain_image_dice", "hand_image_dice", "auto_minutes",
                         "plain_minutes", "hand_minutes") if c in table]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for row in rows:
        for arm in ("auto", "plain", "hand"):
            if f"{arm}_plan" in row and isinstance(row[f"{arm}_plan"], str):
                print(f"{row['dataset']} {arm}: {row[f'{arm}_plan']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
