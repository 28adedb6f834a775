"""Auto plan against the hand-written recipe, each trained with the same wall-clock budget.

    python -m benchmarks.autoplan --time-budget 20m                  # every dataset found
    python -m benchmarks.autoplan --time-budget 2m --datasets nuclei --out benchmarks/results/autoplan-quick

Datasets: camvid, isbi2012 and dsb2018 from ../shared/datasets (skipped when absent) and the embedded nuclei
set (data/nuclei). For each, one at a time (run nothing else beside it: the budget buys epochs by speed):
- auto: `python -m app.train --config <data-only config> --plan --time-budget B`: the recipe's data section
  (where the data is and how to read it: layout, mask encoding, palette, void, channels, validation fraction,
  so both arms validate on the same images) without its training choices, everything else from the plan;
- hand: `python -m app.train --config configs/<name>.yaml --time-budget B` (configs/nuclei.yaml for nuclei, the
  defaults where it is absent): the recipe, its epochs fitted to the same budget.
Both runs are scored on the validation split at the images' own resolution (`app.core.report.write_report`,
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

from app.core.plan import describe
from benchmarks.tables import write_runs

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
SHARED = REPO.parent / "shared" / "datasets"
DATASETS = {"camvid": SHARED / "camvid", "isbi2012": SHARED / "isbi2012", "dsb2018": SHARED / "dsb2018",
            "nuclei": REPO / "data" / "nuclei"}
TRAINING_CHOICES = ("image_size", "resize", "cache", "one_hot")
"""Keys of a recipe's data section that the auto arm leaves to the plan."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autoplan", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-budget", required=True, help="budget of each arm (90s, 20m, 1h)")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--runs-dir", default="runs/autoplan")
    parser.add_argument("--out", default=str(RESULTS / "autoplan"), help="JSON/CSV path without suffix")
    return parser.parse_args(argv)


def recipe_config(name):
    """The hand recipe's config mapping ({} where configs/<name>.yaml is absent: the defaults)."""
    path = REPO / "configs" / f"{name}.yaml"
    return yaml.safe_load(path.read_text()) if path.is_file() else {}


def data_only_config(recipe, name):
    """The recipe's data section (how to read the data) and seed, without its training choices."""
    data = {k: v for k, v in recipe.get("data", {}).items() if k not in TRAINING_CHOICES}
    data.setdefault("path", str(DATASETS[name]))
    return {"name": f"{name}-auto", "seed": recipe.get("seed", 42), "data": data}


def train_arm(arm, argv, runs_dir, log_path):
    """Run `python -m app.train` as a subprocess; returns (run folder, wall seconds)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    before = set(runs_dir.iterdir())
    start = time.monotonic()
    with open(log_path, "w") as log:
        result = subprocess.run([sys.executable, "-m", "app.train", *argv, "--runs-dir", str(runs_dir), "--fresh"],
                                cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        raise RuntimeError(f"{arm} arm failed (exit {result.returncode}); see {log_path}")
    (run,) = set(runs_dir.iterdir()) - before
    return run, seconds


def scores(run_dir):
    """Validation scores at native resolution: mIoU, and for two classes the foreground Dice (pooled and mean
    over images)."""
    from app.core.report import write_report

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
    planned = config["train"]["epochs"]
    ran = len(pd.read_csv(run_dir / "history.csv")) if (run_dir / "history.csv").is_file() else planned
    epochs = f"{ran} epochs" if ran == planned else f"{ran} of {planned} epochs"
    return f"{describe(config)}, {epochs}"


def benchmark(name, budget, runs_dir, log=print):
    recipe = recipe_config(name)
    folder = pathlib.Path(runs_dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    auto_config = folder / "auto-data.yaml"
    auto_config.write_text(yaml.safe_dump(data_only_config(recipe, name), sort_keys=False))
    # without a recipe, the hand arm is the defaults reading the data as the auto arm does
    hand_argv = ["--config", str(REPO / "configs" / f"{name}.yaml") if recipe else str(auto_config)]
    row = {"dataset": name, "budget": budget}
    for arm, argv in (("auto", ["--config", str(auto_config), "--plan"]), ("hand", hand_argv)):
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
    from app.core.budget import parse_duration

    parse_duration(args.time_budget, "--time-budget")
    rows = earlier_rows(args.out, args.datasets)
    for name in args.datasets:
        if not DATASETS[name].is_dir():
            print(f"{name}: {DATASETS[name]} is absent, skipped")
            continue
        rows.append(benchmark(name, args.time_budget, args.runs_dir))
        write_runs(args.out, rows)  # a dataset's row is kept even if a later one fails
    if not rows:
        raise SystemExit("no dataset found")
    table = pd.DataFrame(rows)
    shown = [c for c in ("dataset", "budget", "auto_miou", "hand_miou", "auto_dice", "hand_dice", "auto_image_dice",
                         "hand_image_dice", "auto_minutes", "hand_minutes") if c in table]
    print(table[shown].to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for row in rows:
        print(f"{row['dataset']} auto plan: {row['auto_plan']}\n{row['dataset']} hand recipe: {row['hand_plan']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
