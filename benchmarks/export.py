"""Size, latency and validation mIoU of Keras, SavedModel and TFLite fp32 / fp16 / int8, measured in one run.

    python -m benchmarks.export --run runs/<unet-id> --run runs/<deeplab-id>
    python -m benchmarks.export --quick     # trains a tiny U-Net and DeepLabV3+ (MobileNetV2) for 1 epoch first

Prints the table and writes benchmarks/results/export[-quick].json and .csv. Targets for int8 against fp32:
at least 3.5x smaller and 2x faster per image (LiteRT, 1 thread and all threads), at most 1 point of mIoU lost.
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
QUICK_RUNS = {
    "unet": ["--set", "model.base_filters=8", "--set", "model.depth=3"],
    "deeplabv3plus-mobilenetv2": ["--model", "deeplabv3plus", "--set", "model.backbone=mobilenetv2",
                                  "--set", "model.filters=32", "--set", "model.low_level_filters=16",
                                  "--set", "data.val_fraction=0"],
}
"""Tiny models of --quick. DeepLabV3+ trains without a validation split (its ResizeLike layer fails on the
validation pipeline's free image sizes), so its mIoU is measured on the training split."""
TARGETS = {"size_ratio": 3.5, "speedup": 2.0, "miou_drop_pts": 1.0}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="trained run folder (repeatable)")
    parser.add_argument("--quick", action="store_true", help="train tiny models for 1 epoch at 64x64 and use them")
    parser.add_argument("--calibration-images", type=int, default=100)
    parser.add_argument("--latency-runs", type=int, default=30, help="timed calls per latency figure")
    args = parser.parse_args(argv)
    if not args.run and not args.quick:
        parser.error("give --run folders, or --quick")
    return args


def quick_runs(runs_dir):
    from app import train

    for name, options in QUICK_RUNS.items():
        if train.main(["--epochs", "1", "--image-size", "64", "64", "--name", f"bench-{name}", "--runs-dir",
                       str(runs_dir / name), *options]):
            raise SystemExit(f"training the quick {name} failed")
    return [next((runs_dir / name).iterdir()) for name in QUICK_RUNS]


def benchmark(run_dirs, work_dir, calibration_images, latency_runs):
    """One table over runs and formats, with size and speed ratios against each run's tflite-fp32 row."""
    import pandas as pd
    import yaml

    from app.core.export import FORMATS, ParityError, export_run

    tables = []
    for run_dir in map(pathlib.Path, run_dirs):
        model = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
        label = "-".join(filter(None, [model["name"], model.get("backbone")]))
        out = work_dir / run_dir.name
        try:
            export_run(run_dir, FORMATS, out, calibration_images=calibration_images, latency_runs=latency_runs)
        except ParityError as err:
            print(f"{label}: {err}", file=sys.stderr)
        table = pd.read_csv(out / "parity.csv")
        fp32 = table.set_index("format").loc["tflite-fp32"]
        table.insert(0, "model", label)
        table.insert(1, "split", json.loads((out / "parity.json").read_text())["split"])
        table["size_ratio"] = fp32["size_mb"] / table["size_mb"]
        table["speedup_1t"] = fp32["latency_ms_1t"] / table["latency_ms_1t"]
        table["speedup_all"] = fp32["latency_ms_all"] / table["latency_ms_all"]
        tables.append(table)
    columns = ["model", "split", "format", "size_mb", "size_ratio", "latency_ms_1t", "latency_ms_all", "speedup_1t",
               "speedup_all", "miou_pct", "miou_drop_pts", "agreement_pct"]
    return pd.concat(tables, ignore_index=True)[columns]


def target_checks(table):
    """One line per int8 row: each target met or missed."""
    lines = []
    for row in table[table["format"] == "tflite-int8"].itertuples():
        checks = {f"{row.size_ratio:.2f}x smaller": row.size_ratio >= TARGETS["size_ratio"],
                  f"{row.speedup_1t:.2f}x faster (1 thread)": row.speedup_1t >= TARGETS["speedup"],
                  f"{row.speedup_all:.2f}x faster (all threads)": row.speedup_all >= TARGETS["speedup"],
                  f"{row.miou_drop_pts:.2f} mIoU points lost": row.miou_drop_pts <= TARGETS["miou_drop_pts"]}
        lines.append(f"{row.model} int8 vs fp32: " + ", ".join(f"{k} [{'ok' if v else 'MISSED'}]"
                                                                for k, v in checks.items()))
    return lines


def main(argv=None):
    args = parse_args(argv)
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp = pathlib.Path(tmp)
        runs = quick_runs(tmp / "runs") if args.quick else args.run
        table = benchmark(runs, tmp / "export", args.calibration_images, args.latency_runs)
    text = table.to_string(index=False, float_format=lambda v: f"{v:.3g}", na_rep="-")
    checks = target_checks(table)
    print(text, *checks, sep="\n")
    stem = "export-quick" if args.quick else "export"
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / f"{stem}.csv", index=False)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "runs": [str(r) for r in runs],
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "tensorflow": tf.__version__, "calibration_images": args.calibration_images,
            "latency_runs": args.latency_runs, "targets": TARGETS, "checks": checks,
            "rows": table.to_dict("records")}
    (RESULTS / f"{stem}.json").write_text(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
