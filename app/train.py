"""Train a segmentation model: `python -m app.train [--config configs/X.yaml] [flags]`.

With no argument it trains the default U-Net on the embedded nuclei dataset (data/nuclei) in a few minutes.
`--data D` without `--config` trains the plan that `python -m app.plan --data D` prints (rules on the dataset's
fingerprint, docs/planning.md); `--plan` fills what a config leaves unset from that plan. `--time-budget 30m`
fits the epochs to a wall-clock budget.
Flags override config keys; `--set section.key=value` overrides any key. Running the same command again
after a crash resumes the unfinished run from its last finished epoch. `--distribute mirrored` trains on every
local GPU, `--distribute multiworker` on the cluster that TF_CONFIG describes (docs/training.md).
"""
import argparse
import pathlib
import sys
import time

from app.cli import add_verbose_option, fail_cleanly
from data.layouts import LAYOUTS

LAYOUT_CHOICES = ["auto", *LAYOUTS]
MASK_CHOICES = ["auto", "index", "binary", "rgb", "multilabel"]

DEFAULT_CONFIG = pathlib.Path(__file__).resolve().parents[1] / "configs" / "nuclei.yaml"
FLAGS = {
    "data": ("data", "path"),
    "layout": ("data", "layout"),
    "mask": ("data", "mask"),
    "num_classes": ("data", "num_classes"),
    "image_size": ("data", "image_size"),
    "batch_size": ("train", "batch_size"),
    "epochs": ("train", "epochs"),
    "lr": ("train", "learning_rate"),
    "precision": ("train", "precision"),
    "time_budget": ("train", "time_budget"),
    "model": ("model", "name"),
    "loss": ("loss", "name"),
    "seed": ("seed",),
    "name": ("name",),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m app.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config (default: configs/nuclei.yaml, the embedded nuclei dataset, "
                                          "unless --data names another dataset)")
    parser.add_argument("--data", help="dataset folder or CSV file")
    parser.add_argument("--layout", choices=LAYOUT_CHOICES,
                        help="dataset layout (default auto: detected and printed, see docs/datasets.md)")
    parser.add_argument("--mask", choices=MASK_CHOICES, help="mask encoding")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="training crop size")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--lr", type=float, help="peak learning rate")
    parser.add_argument("--precision", choices=["float32", "mixed_float16", "mixed_bfloat16", "auto"],
                        help="mixed precision keeps float32 weights and logits (float16 adds loss scaling); "
                             "auto (default): mixed_bfloat16 on GPUs of compute capability 8.0+ and CPUs with "
                             "AMX/AVX512-BF16, mixed_float16 on 7.x GPUs, else float32")
    parser.add_argument("--time-budget", metavar="DURATION",
                        help="wall-clock budget (90s, 30m, 1h): epochs are set from a timed warm-up so the whole "
                             "cosine schedule and validation end within it")
    parser.add_argument("--plan", action="store_true",
                        help="fill the keys that --config and the flags leave unset from the dataset's plan "
                             "(default when --data is given without --config)")
    parser.add_argument("--distribute", choices=["none", "mirrored", "multiworker"], default="none",
                        help="data-parallel training; --batch-size is the global batch (default: none)")
    parser.add_argument("--model", help="architecture name (unet, fcn8s, deeplabv3plus, ...)")
    parser.add_argument("--loss", help="loss name (ce, dice, dice_ce, focal, tversky, lovasz)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--name", help="run name (folder prefix under --runs-dir)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set augment.vflip=0.5 (repeatable)")
    parser.add_argument("--runs-dir", default="runs", help="where run folders go (default: runs)")
    parser.add_argument("--fresh", action="store_true", help="start a new run even if an unfinished one exists")
    add_verbose_option(parser)
    return parser.parse_args(argv)


def overrides_from(args):
    from app.config.loading import parse_override

    overrides = []
    for flag, keys in FLAGS.items():
        value = getattr(args, flag)
        if value is not None:
            nested = value
            for key in reversed(keys):
                nested = {key: nested}
            overrides.append(nested)
    if args.model and not args.name:
        overrides.append({"name": None})
    return overrides + [parse_override(text) for text in args.set]


@fail_cleanly
def main(argv=None):
    started = time.monotonic()
    args = parse_args(argv)
    from app.config.loading import load_config
    from app.training.loop import train

    config_path = args.config or (None if args.data else DEFAULT_CONFIG)
    if args.plan or (args.data and not args.config):
        from app.planning.plan import describe, planned_config

        config, plan, _, scanned = planned_config(config_path, overrides_from(args), runs_dir=args.runs_dir)
        changed = plan.set_elsewhere(config)
        print(f"plan: {describe(config)} ({'flags and config set ' + ', '.join(changed) if changed else 'as planned'}"
              f"; python -m app.plan --data {args.data or config.data.path} explains each choice)")
    else:
        config, scanned = load_config(config_path, overrides_from(args)), None
    train(config, runs_dir=args.runs_dir, fresh=args.fresh, distribute=args.distribute, started=started,
          scanned=scanned)
    return 0


if __name__ == "__main__":
    sys.exit(main())
