"""Transfer from your own runs: pretrain a U-Net on DSB2018 without the 64 embedded nuclei images, then fine-tune
it (`model.encoder_from`) on data/nuclei and on ISBI 2012, side by side with the same runs from scratch.

    python -m benchmarks.transfer                           # recipes' settings (hours on 2 CPU cores)
    python -m benchmarks.transfer --epochs 10 --pretrain-epochs 5 --encoder mobilenetv3_small
    python -m benchmarks.transfer --pretrain-budget 12m --time-budget 5m --base-filters 16   # wall-clock budgets
    python -m benchmarks.transfer --quick                   # tiny widths, 64x64, 1 epoch: checks the script works

The 64 images of data/nuclei are a subset of ../shared/datasets/dsb2018 (named by the first 16 hex digits of the
DSB2018 file stem): the pretraining set is DSB2018 with those 64 left out (both asserted before training).
Fine-tuning and from-scratch runs of a target share the config (epochs, schedule, augmentation: the same time
budget); only `model.encoder_from` (and the --freeze-encoder-epochs / --encoder-lr-scale keys) differ. The model
is the DSB2018 recipe's U-Net (or --encoder's U-Net) on every dataset; ISBI's grayscale first convolution is
reported as skipped when the plain U-Net is used. Writes benchmarks/results/transfer.json (scores, validation curves, wall times) and .csv.
Skips cleanly (exit 0) when ../shared/datasets is absent.
"""
import argparse
import json
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SHARED = REPO.parent / "shared" / "datasets"
RESULTS = REPO / "benchmarks" / "results"
EMBEDDED = REPO / "data" / "nuclei"
TARGETS = {"nuclei": REPO / "configs" / "nuclei.yaml", "isbi2012": REPO / "configs" / "isbi2012.yaml"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.transfer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrain-epochs", type=int, help="default: the DSB2018 recipe's")
    parser.add_argument("--epochs", type=int, help="fine-tuning and from-scratch epochs (default: each recipe's)")
    parser.add_argument("--pretrain-budget", help="pretraining time budget (train.time_budget: 90s, 10m, 1h)")
    parser.add_argument("--time-budget", help="time budget of each fine-tuning and from-scratch run")
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--encoder", help="an encoder of models.encoders (default: the recipe's plain U-Net)")
    parser.add_argument("--base-filters", type=int, help="the plain U-Net's width (default: the recipe's 32)")
    parser.add_argument("--freeze-encoder-epochs", type=int, default=0)
    parser.add_argument("--encoder-lr-scale", type=float, default=1.0)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--limit", type=int, help="pretrain on at most this many DSB2018 images")
    parser.add_argument("--runs-dir", default="runs/transfer")
    parser.add_argument("--out", default=str(RESULTS / "transfer"), help="JSON/CSV path without suffix")
    parser.add_argument("--quick", action="store_true", help="tiny U-Net, 64x64, 1 epoch, 32 pretraining images")
    parser.add_argument("--plot-only", action="store_true", help="redraw <out>.png from <out>.json, train nothing")
    return parser.parse_args(argv)


def stems(folder):
    return {path.stem for path in pathlib.Path(folder).iterdir() if path.suffix.lower() in IMAGE_SUFFIXES}


def embedded_key(stem):
    """data/nuclei names its files by the first 16 hex digits of the Kaggle id that DSB2018 uses in full."""
    return stem[:16]


def pretraining_subset(source, out, leave_out, limit=None):
    """Link DSB2018's images, masks and instances into `out`, leaving out every file whose stem is in `leave_out`
    (compared by `embedded_key`)."""
    kept = sorted(stem for stem in stems(source / "images") if embedded_key(stem) not in leave_out)[:limit]
    for sub in ("images", "masks", "instances"):
        if not (source / sub).is_dir():
            continue
        (out / sub).mkdir(parents=True)
        for path in (source / sub).iterdir():
            if path.stem in kept:
                (out / sub / path.name).symlink_to(path.resolve())
    slipped = {embedded_key(stem) for stem in stems(out / "images")} & leave_out
    assert not slipped, f"embedded images slipped into the pretraining set: {sorted(slipped)}"
    return len(kept)


def model_overrides(args):
    if args.quick:
        return {"name": "unet", "depth": 2, "base_filters": 4} if not args.encoder else {
            "name": "unet", "encoder": args.encoder, "decoder_filters": [8, 8, 4, 4, 4]}
    if args.encoder:
        return {"name": "unet", "encoder": args.encoder}
    import yaml

    model = yaml.safe_load((REPO / "configs" / "dsb2018.yaml").read_text())["model"]
    return {**model, "base_filters": args.base_filters} if args.base_filters else model


def config_for(path, args, epochs, budget=None, **updates):
    from app.config.loading import load_config

    overrides = [{"train": {"verbose": "epoch"}}, *({key: value} for key, value in updates.items())]
    model = model_overrides(args)
    if model:
        overrides.append({"model": model})
    if epochs:
        overrides.append({"train": {"epochs": epochs}})
    if budget:
        overrides.append({"train": {"time_budget": budget}})
    if args.image_size or args.quick:
        overrides.append({"data": {"image_size": list(args.image_size or (64, 64))}})
    if args.quick:
        overrides.append({"train": {"batch_size": 4}})
    return load_config(path, overrides)


def run(config, runs_dir, label):
    from app.training.loop import train

    start = time.monotonic()
    run_dir = train(config, runs_dir=runs_dir, fresh=True, log=lambda line: print(f"[{label}] {line}", flush=True))
    return run_dir, time.monotonic() - start


def summary(label, target, run_dir, seconds):
    import pandas as pd

    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = pd.read_csv(run_dir / "history.csv")
    foreground = list(metrics["per_class"].values())[-1]
    curve = history["val_miou"].tolist() if "val_miou" in history else history["miou"].tolist()
    return {"target": target, "start": label, "miou": metrics["miou"], "pixel_accuracy": metrics["pixel_accuracy"],
            "foreground_iou": foreground.get("iou"), "foreground_dice": foreground.get("dice"),
            "epochs": len(history), "seconds": round(seconds, 1), "run": str(run_dir), "val_miou_curve": curve}


def main(argv=None):
    args = parse_args(argv)
    if args.plot_only:
        plot(json.loads(pathlib.Path(args.out).with_suffix(".json").read_text())["results"], args.out)
        return 0
    if not (SHARED / "dsb2018").is_dir():
        print(f"skipped: {SHARED / 'dsb2018'} is absent (this benchmark needs the shared DSB2018 dataset)")
        return 0
    if args.quick:
        args.pretrain_epochs, args.epochs, args.limit = args.pretrain_epochs or 1, args.epochs or 1, args.limit or 32
    leave_out = stems(EMBEDDED / "images")
    missing = leave_out - {embedded_key(stem) for stem in stems(SHARED / "dsb2018" / "images")}
    assert not missing, f"embedded images not found in DSB2018 by file stem: {sorted(missing)}"
    finetune = {"freeze_encoder_epochs": args.freeze_encoder_epochs, "encoder_lr_scale": args.encoder_lr_scale}
    rows = []
    with tempfile.TemporaryDirectory(prefix="segkit-transfer-") as scratch:
        subset = pathlib.Path(scratch) / "dsb2018-without-nuclei"
        count = pretraining_subset(SHARED / "dsb2018", subset, leave_out, args.limit)
        print(f"pretraining set: {count} DSB2018 images, the {len(leave_out)} embedded ones left out")
        config = config_for(REPO / "configs" / "dsb2018.yaml", args, args.pretrain_epochs, args.pretrain_budget,
                            name="transfer-pretrain",
                            data={"path": str(subset)})
        pretrained, seconds = run(config, args.runs_dir, "pretrain")
        rows.append(summary("scratch", "dsb2018-without-nuclei", pretrained, seconds))
    for target in args.targets:
        if target == "isbi2012" and not (SHARED / "isbi2012").is_dir():
            print(f"skipped isbi2012: {SHARED / 'isbi2012'} is absent")
            continue
        for label, extra in (("scratch", {}), ("dsb2018", {"model": {"encoder_from": str(pretrained)},
                                                          "train": finetune})):
            config = config_for(TARGETS[target], args, args.epochs, args.time_budget,
                                name=f"transfer-{target}-{label}", **extra)
            run_dir, seconds = run(config, args.runs_dir, f"{target}/{label}")
            rows.append(summary(label, target, run_dir, seconds))
    write(rows, args)
    return 0


def write(rows, args):
    import pandas as pd

    frame = pd.DataFrame(rows).drop(columns=["val_miou_curve", "run"])
    print(frame.to_string(index=False, float_format=lambda value: f"{value:.4f}"))
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    settings = {key: value for key, value in vars(args).items() if key not in ("out",)}
    out.with_suffix(".json").write_text(json.dumps({"settings": settings, "results": rows}, indent=2))
    frame.to_csv(out.with_suffix(".csv"), index=False)
    plot(rows, out)
    print(f"wrote {out}.json, {out}.csv and {out}.png")


def plot(rows, out):
    """<out>.png: validation mIoU per epoch, from scratch against fine-tuned from DSB2018, one panel per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [target for target in dict.fromkeys(row["target"] for row in rows) if target in TARGETS]
    figure, axes = plt.subplots(1, len(targets), figsize=(5 * len(targets), 3.6), squeeze=False)
    for axis, target in zip(axes[0], targets):
        for row in (row for row in rows if row["target"] == target):
            start = "from scratch" if row["start"] == "scratch" else "from the DSB2018 run"
            label = f"{start}: mIoU {row['miou']:.3f}, {row['seconds'] / 60:.1f} min"
            axis.plot(range(1, len(row["val_miou_curve"]) + 1), row["val_miou_curve"], marker=".", label=label)
        axis.set(title=target, xlabel="epoch", ylabel="validation mIoU")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(pathlib.Path(out).with_suffix(".png"), dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
