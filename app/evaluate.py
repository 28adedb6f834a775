"""Evaluate a trained run: `python -m app.evaluate --run runs/<id> [--data PATH] [--split val] [--out DIR]`.

Writes a report folder (default `<run>/report-<split>/`): per_class.csv (IoU, Dice, precision, recall, pixel
share), per_image.csv (per image: mIoU, pixel accuracy, mean Dice, Dice and IoU per class; --hd95 adds the
95th-percentile Hausdorff distance per class in pixels), confusion_matrix.csv and .png (row-normalised), overlays/ of the N worst and best
images by per-image mIoU, summary.json (pooled mIoU, pixel accuracy, mean class accuracy, frequency-weighted IoU;
`per_image`: the means over images, mDice and per-class Dice/IoU, the usual figures for polyp and nuclei sets)
and report.html, one self-contained page. The split is the one training used (same seed and fraction).
Images are predicted as `app.predict` does, with the same --tile/--overlap/--blend/--tta options.
Multi-label runs (data.mask: multilabel) get per-class IoU, Dice, precision and recall at --threshold (0.5),
with per_class.csv, per_image.csv, summary.json and report.html.
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
    parser.add_argument("--hd95", action="store_true",
                        help="95th-percentile Hausdorff distance per class (pixels; both masks empty: left out, "
                             "one empty: the image diagonal)")
    add_prediction_options(parser)
    add_verbose_option(parser)
    args = parser.parse_args(argv)
    args.options = prediction_options(parser, args)
    return args


@fail_cleanly
def main(argv=None):
    args = parse_args(argv)
    from app.evaluation.report import write_report

    write_report(args.run, data=args.data, split=args.split, out=args.out, overlays=max(args.overlays, 0),
                 options=args.options, threshold=args.threshold, hd95=args.hd95,
                 overwrite=args.overwrite or None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
