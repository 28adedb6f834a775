"""Export a trained run for deployment: `python -m app.export --run runs/<id> --format tflite-int8 ...`.

Formats: savedmodel (TF Serving: uint8 images in, `mask` and `probabilities` out), tflite-fp32, tflite-fp16 and
tflite-int8 (LiteRT, fixed input size). Writes the files and a parity report (parity.csv, parity.json: mIoU,
agreement with Keras, size and latency per format) to --out, and exits with code 1 when a format's mIoU drops
more than its tolerance below the Keras model's (2 for bad input).
"""
import argparse
import sys

from app.cli import add_verbose_option, fail_cleanly

FORMATS = ("savedmodel", "tflite-fp32", "tflite-fp16", "tflite-int8")
"""Same as app.exporting.exporters.FORMATS, repeated so that --help does not import TensorFlow."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m app.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="run folder (with config.yaml and model.keras)")
    parser.add_argument("--format", nargs="+", choices=FORMATS, default=[], metavar="FORMAT",
                        help=f"formats to export: {', '.join(FORMATS)}")
    parser.add_argument("--all", action="store_true", help="export every format")
    parser.add_argument("--out", help="output folder (default: <run>/export)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace files already in --out (the default folder is always rewritten)")
    parser.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                        help="input size of the .tflite files and parity tiles (default: the trained data.image_size)")
    parser.add_argument("--calibration-images", type=int, default=100, metavar="N",
                        help="training samples that calibrate int8 quantisation (default: 100)")
    parser.add_argument("--tolerance-int8", type=float, default=1.0, metavar="POINTS",
                        help="largest mIoU drop of tflite-int8, in points (default: 1.0)")
    parser.add_argument("--tolerance-float", type=float, default=0.1, metavar="POINTS",
                        help="largest mIoU drop of savedmodel, tflite-fp32 and tflite-fp16 (default: 0.1)")
    add_verbose_option(parser)
    args = parser.parse_args(argv)
    if not args.all and not args.format:
        parser.error("choose formats with --format, or --all")
    return args


@fail_cleanly
def main(argv=None):
    args = parse_args(argv)
    from app.exporting.exporters import ParityError, export_run

    tolerances = {fmt: args.tolerance_int8 if fmt == "tflite-int8" else args.tolerance_float for fmt in FORMATS}
    try:
        export_run(args.run, FORMATS if args.all else args.format, args.out, args.size, args.calibration_images,
                   tolerances, overwrite=args.overwrite or None)
    except ParityError as err:
        for line in str(err).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
