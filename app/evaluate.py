"""Evaluate a trained run: `python -m app.evaluate --run runs/<id> [--data PATH] [--split val] [--out DIR]`.

Writes a report folder (default `<run>/report-<split>/`): per_class.csv (IoU, Dice, precision, recall, pixel
share), per_image.csv, confusion_matrix.csv and .png (row-normalised), overlays/ of the N worst and best
images by per-image mIoU, summary.json (mIoU, pixel accuracy, mean class accuracy, frequency-weighted IoU)
and report.html, one self-contained page. The split is the one training used (same seed and fraction).
Images are predicted as `app.predict` does, with the same --tile/--overlap/--blend/--tta options.
"""
import argparse
import sys

from app.cli import add_prediction_options, add_verbose_option, fail_cleanly, prediction_options


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m app.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder (config.yaml + model.keras)")
    parser.add_argument("--data", help="dataset folder or CSV (default: the run's data.path)")
    parser.add_argument("--split", default="val", choices=["train", "val", "test"])
    parser.add_argument("--out", help="report folder (default: <run>/report-<split>)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace report files that already exist in --out (the default folder is always rewritten)")
    parser.add_argument("--overlays", type=int, default=4, metavar="N",
                        help="panels of the N worst and N best images (default 4, 0 for none)")
    add_prediction_options(parser)
    add_verbose_option(parser)
    args = parser.parse_args(argv)
    args.options = prediction_options(parser, args)
    return args


@fail_cleanly
def main(argv=None):
    args = parse_args(argv)
    from app.core.report import write_report

    write_report(args.run, data=args.data, split=args.split, out=args.out, overlays=max(args.overlays, 0),
                 options=args.options, overwrite=args.overwrite or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
