"""Check a dataset before training: `python -m app.check_data --data PATH [--config cfg.yaml] [--out DIR]`.

Reads every image and mask exactly as training does and prints counts per split, image sizes, channels and
class pixel shares; --out also writes class_shares.png, class_pixels.csv and files.csv. Every problem is
printed on stderr as `error: <path>: <problem>`.

Exit codes: 0 no problems, 1 the dataset has problems, 2 the check could not run (bad config, output folder).
"""
import argparse
import sys

from app.cli import add_verbose_option, fail_cleanly


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m app.check_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", help="dataset folder or CSV file (overrides data.path)")
    parser.add_argument("--layout", help="dataset layout: auto (default, detected and printed) or a name of "
                                         "data.layouts (paired, segnet, csv, voc, cityscapes, ade, coco, labelme)")
    parser.add_argument("--config", help="YAML config (default: built-in defaults, mask encoding auto-detected)")
    parser.add_argument("--mask", choices=["auto", "index", "binary", "rgb", "multilabel"],
                        help="mask encoding (data.mask)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override any config key, e.g. --set data.mask=index (repeatable)")
    parser.add_argument("--out", help="folder for the class share chart and CSV tables (outside the dataset)")
    parser.add_argument("--overwrite", action="store_true", help="replace those files if --out already has them")
    add_verbose_option(parser)
    return parser.parse_args(argv)


@fail_cleanly
def main(argv=None):
    args = parse_args(argv)
    from app.config.loading import load_config, parse_override
    from app.dataset.checking import check_dataset, check_report_folder, summary_text, write_check_outputs

    overrides = ([{"data": {"path": args.data}}] if args.data is not None else []) + (
        [{"data": {"layout": args.layout}}] if args.layout is not None else []) + (
        [{"data": {"mask": args.mask}}] if args.mask else []) + [parse_override(text) for text in args.set]
    config = load_config(args.config, overrides)
    if args.out:
        check_report_folder(config, args.out, args.overwrite)
    check = check_dataset(config)
    if check.scan is not None:
        print(summary_text(check, config))
        if args.out:
            print(f"tables and chart: {write_check_outputs(check, args.out)}")
    for problem in check.problems:
        print(f"error: {problem}", file=sys.stderr)
    if check.problems:
        print(f"{len(check.problems)} problem(s) found", file=sys.stderr)
        return 1
    print("no problems found")
    return 0


if __name__ == "__main__":
    sys.exit(main())
