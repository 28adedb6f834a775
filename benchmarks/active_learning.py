"""Active learning on the embedded nuclei set: does labelling the images `app.predict --rank` puts first beat
labelling images at random?

    nice -n 10 python -m benchmarks.active_learning          # the README's numbers (~36 min on 2 shared CPU cores)
    python -m benchmarks.active_learning --quick             # tiny U-Net, 1 seed, 2 rounds: checks the script works

Per seed, data/nuclei's 64 images are split (seeded) into 16 validation images and a pool of 48 "unlabelled"
ones; `--start` pool images are labelled at random. Each round adds `--step` images to each arm: `ranked` takes
the pool images its last model scores highest (`app.inference.ranking`: entropy plus flip disagreement, per class),
`random` takes a seeded random draw. Every model trains from scratch with the same FIXED number of steps
(not a time budget: the numbers do not depend on the machine's load)
and the same seed: each epoch lists the labelled images repeated up to the same number of rows (by default the
least common multiple of the labelled counts, so every image appears equally often), and every model trains
`--epochs` epochs of rows / 8 batches. Its score is the validation mIoU of its best epoch (metrics.json). Both
arms share the first model. Writes benchmarks/results/active_learning.json/.csv and docs/images/active_learning.png.
"""
import argparse
import json
import math
import pathlib
import sys
import tempfile

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
NUCLEI = REPO / "data" / "nuclei"
RESULTS = REPO / "benchmarks" / "results"
PLOT = REPO / "docs" / "images" / "active_learning.png"
VAL_IMAGES = 16
ARMS = ("ranked", "random")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.active_learning", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--start", type=int, default=6, help="images labelled at random before the first round")
    parser.add_argument("--step", type=int, default=6, help="images each arm labels per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--epoch-rows", type=int,
                        help="training rows per epoch (default: least common multiple of the labelled counts)")
    parser.add_argument("--image-size", type=int, nargs=2, default=[128, 128], metavar=("H", "W"))
    parser.add_argument("--base-filters", type=int, default=16)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--runs-dir", default="runs/active_learning")
    parser.add_argument("--out", default=str(RESULTS / "active_learning"), help="JSON/CSV path without suffix")
    parser.add_argument("--plot", default=str(PLOT))
    parser.add_argument("--quick", action="store_true", help="tiny U-Net, 64x64, 1 seed, 2 rounds of 2 epochs")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.epochs = args.seeds[:1], 2, 2
        args.image_size, args.base_filters, args.depth = [64, 64], 4, 2
    if args.start + args.rounds * args.step > len(images()) - VAL_IMAGES:
        parser.error(f"--start + --rounds x --step exceeds the pool of {len(images()) - VAL_IMAGES} images")
    args.epoch_rows = args.epoch_rows or math.lcm(*(args.start + r * args.step for r in range(args.rounds + 1)))
    return args


def images():
    return sorted((NUCLEI / "images").glob("*.png"))


def write_index(folder, labelled, val, rows):
    """A CSV dataset (image, mask, instances, split): the labelled pool images repeated to `rows` training rows
    (each epoch then has the same batches whatever the labelled count), and the validation images."""
    import pandas as pd

    train = [labelled[i % len(labelled)] for i in range(rows)]
    rows = [{"image": str(path), "mask": str(NUCLEI / "masks" / path.name),
             "instances": str(NUCLEI / "instances" / path.name), "split": split}
            for split, paths in (("train", train), ("val", val)) for path in paths]
    path = folder / f"labelled-{len(labelled)}.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def train_round(args, index, name, seed):
    from app.config.loading import load_config
    from app.training.loop import train

    config = load_config(REPO / "configs" / "nuclei.yaml", [
        {"name": name, "seed": seed, "data": {"path": str(index), "image_size": list(args.image_size)},
         "model": {"base_filters": args.base_filters, "depth": args.depth},
         "train": {"epochs": args.epochs, "early_stopping_patience": None, "verbose": "epoch"}}])
    run_dir = train(config, runs_dir=args.runs_dir, fresh=True, log=lambda line: print(f"[{name}] {line}", flush=True))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return run_dir, metrics["miou"], list(metrics["per_class"].values())[-1].get("iou")


def ranked_next(run_dir, pool, count):
    """The `count` pool images the run's model is least sure of (`app.inference.ranking`)."""
    from app.inference.predictor import load_predictor
    from app.inference.ranking import uncertainty, view_logits

    predictor = load_predictor(run_dir)
    scores = {path: uncertainty(view_logits(predictor, predictor.read_image(path)))["score"] for path in pool}
    return sorted(pool, key=lambda path: (-scores[path], path.name))[:count]


def simulate(args, seed, scratch):
    rng = np.random.default_rng(seed)
    order = [images()[i] for i in rng.permutation(len(images()))]
    val, pool = order[:VAL_IMAGES], order[VAL_IMAGES:]
    first = pool[:args.start]
    folder = pathlib.Path(scratch) / f"seed{seed}"
    folder.mkdir()
    run_dir, miou, nucleus = train_round(args, write_index(folder, first, val, args.epoch_rows), f"al-s{seed}-start",
                                         seed)
    rows = [{"seed": seed, "arm": arm, "labelled": len(first), "miou": miou, "nucleus_iou": nucleus,
             "added": ""} for arm in ARMS]
    for arm in ARMS:
        labelled, last_run = list(first), run_dir
        for round_number in range(1, args.rounds + 1):
            rest = [path for path in pool if path not in labelled]
            if arm == "ranked":
                added = ranked_next(last_run, rest, args.step)
            else:
                draw = np.random.default_rng([seed, round_number]).permutation(len(rest))
                added = [rest[i] for i in draw[:args.step]]
            labelled += added
            arm_dir = folder / arm
            arm_dir.mkdir(exist_ok=True)
            last_run, miou, nucleus = train_round(args, write_index(arm_dir, labelled, val, args.epoch_rows),
                                                  f"al-s{seed}-{arm}-{len(labelled)}", seed)
            rows.append({"seed": seed, "arm": arm, "labelled": len(labelled), "miou": miou, "nucleus_iou": nucleus,
                         "added": " ".join(path.stem for path in added)})
            print(f"seed {seed} {arm}: {len(labelled)} labelled -> val mIoU {miou:.4f}", flush=True)
    return rows


def summary(rows):
    import pandas as pd

    frame = pd.DataFrame(rows)
    table = frame.pivot_table(index="labelled", columns="arm", values="miou", aggfunc="mean")
    table["ranked - random"] = table["ranked"] - table["random"]
    return table


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(rows)
    figure, axis = plt.subplots(figsize=(5.5, 3.6))
    for arm, colour in zip(ARMS, ("tab:red", "tab:blue")):
        part = frame[frame["arm"] == arm]
        for seed, runs in part.groupby("seed"):
            axis.plot(runs["labelled"], runs["miou"], color=colour, alpha=0.3, marker=".", linewidth=1)
        mean = part.groupby("labelled")["miou"].mean()
        label = "ranked by app.predict --rank" if arm == "ranked" else "random"
        axis.plot(mean.index, mean.values, color=colour, marker="o", linewidth=2, label=f"{label} (mean)")
    axis.set_xticks(sorted(frame["labelled"].unique()))
    axis.set(xlabel="labelled training images", ylabel="validation mIoU (16 images)",
             title=f"Active learning on data/nuclei ({frame['seed'].nunique()} seed(s))")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    args = parse_args(argv)
    from benchmarks.tables import write_runs

    rows = []
    with tempfile.TemporaryDirectory(prefix="segkit-al-") as scratch:
        for seed in args.seeds:
            rows += simulate(args, seed, scratch)
    table = summary(rows)
    print(table.to_string(float_format=lambda value: f"{value:.4f}"))
    settings = {key: value for key, value in vars(args).items() if key not in ("out", "plot")}
    write_runs(args.out, [{**row, **{f"setting_{k}": str(v) for k, v in settings.items()}} for row in rows])
    plot(rows, args.plot)
    print(f"plot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
