"""Predict masks: `python -m app.predict --run runs/<id> INPUT... --out DIR [options]`.

INPUT: image files or folders of images. For each image, DIR/<stem>.png is a class-index mask of the
image's size; --colour adds DIR/colour/<stem>.png and --overlay DIR/overlay/<stem>.png; DIR/palette.csv
lists class names and colours. A multi-label run (config.yaml `data.mask: multilabel`) writes one binary
mask (0/255) per class instead, DIR/<class>/<stem>.png (the per-class folder layout training reads), where
the class probability is above --threshold (default 0.5); colour masks and overlays show the mean colour of
the classes present. Large images are tiled automatically (sliding window, blended logits);
--tile forces tiling. --model predicts with another .keras or .tflite file (the run still gives the config).
DIR must lie outside the inputs' folders and the run's dataset; existing masks are replaced only with --overwrite.
Unreadable images are skipped and listed at the end (exit code 1).
"""
import argparse
import pathlib
import sys

from app.cli import add_prediction_options, add_verbose_option, fail_cleanly, prediction_options


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m app.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    parser.add_argument("--run", help="run folder (config.yaml + model.keras)")
    parser.add_argument("--model", help="model file (.keras or .tflite); default: <run>/model.keras")
    parser.add_argument("--out", required=True, help="output folder")
    add_prediction_options(parser)
    parser.add_argument("--colour", "--color", action="store_true", help="also write colour masks")
    parser.add_argument("--overlay", action="store_true", help="also write overlays on the image")
    parser.add_argument("--overwrite", action="store_true", help="replace masks that already exist in --out")
    add_verbose_option(parser)
    args = parser.parse_args(argv)
    if args.run is None and args.model is None:
        parser.error("give --run, --model or both")
    args.options = prediction_options(parser, args)
    return args


def image_files(inputs):
    """Image paths from files and folders (sorted, not recursive, hidden/system files skipped); stems must be
    unique."""
    from data.discovery import IMAGE_EXTENSIONS
    from data.layouts.base import is_hidden

    files = []
    for item in map(pathlib.Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not is_hidden(p))
            if not found:
                raise ValueError(f"{item}: no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise ValueError(f"{item}: no such file or folder")
    seen = {}
    for file in files:
        if file.stem in seen:
            raise ValueError(f"{file}: same stem as {seen[file.stem]}; their masks would overwrite each other")
        seen[file.stem] = file
    return files


@fail_cleanly
def main(argv=None):
    args = parse_args(argv)
    import pandas as pd
    from tqdm import tqdm

    from app.core import multilabel
    from app.core.inference import load_predictor, predict_labels
    from app.core.outputs import dataset_folders, prepare_output_folder, write_image, write_text
    from app.core.palette import colourise, display_image, overlay

    files = image_files(args.inputs)
    predictor = load_predictor(args.run, args.model)
    if args.threshold is not None and not predictor.multilabel:
        raise ValueError(f"{predictor.path}: --threshold applies to multi-label runs only (data.mask: multilabel)")
    threshold = args.threshold or multilabel.DEFAULT_THRESHOLD
    clash = [kind for kind in ("colour", "overlay") if getattr(args, kind) and kind in predictor.class_names]
    if predictor.multilabel and clash:
        raise ValueError(f"{args.out}: class {clash[0]!r} has the name of the --{clash[0]} folder; "
                         f"leave out --{clash[0]}")
    out = pathlib.Path(args.out)
    kinds = [kind for kind in ("colour", "overlay") if getattr(args, kind)]
    mask_folders = [out / name for name in predictor.class_names] if predictor.multilabel else [out]
    targets = [out / "palette.csv"] + [folder / f"{file.stem}.png"
                                       for folder in mask_folders + [out / k for k in kinds] for file in files]
    prepare_output_folder(out, [*args.inputs, *dataset_folders(predictor.config)], targets, args.overwrite)
    folders = {kind: prepare_output_folder(out / kind) for kind in kinds}
    palette = pd.DataFrame(predictor.colours, columns=["r", "g", "b"])
    palette.insert(0, "name", predictor.class_names)
    write_text(out / "palette.csv", palette.to_csv(index=False))
    failed = []
    for file in tqdm(files, unit="image", disable=None):
        try:
            image = predictor.read_image(file)
            if predictor.multilabel:
                masks = multilabel.predict_masks(predictor, image, threshold, **args.options)
            else:
                labels = predict_labels(predictor, image, **args.options)
        except ValueError as err:
            failed.append(str(err) if str(file) in str(err) else f"{file}: {err}")
            continue
        if predictor.multilabel:
            multilabel.write_masks(out, file.stem, masks, predictor.class_names)
            if "colour" in folders:
                write_image(folders["colour"] / f"{file.stem}.png", multilabel.colourise(masks, predictor.colours))
            if "overlay" in folders:
                write_image(folders["overlay"] / f"{file.stem}.png",
                            multilabel.overlay(display_image(image), masks, predictor.colours))
            continue
        write_image(out / f"{file.stem}.png", labels)
        if "colour" in folders:
            write_image(folders["colour"] / f"{file.stem}.png", colourise(labels, predictor.colours))
        if "overlay" in folders:
            write_image(folders["overlay"] / f"{file.stem}.png",
                        overlay(display_image(image), labels, predictor.colours))
    print(f"{len(files) - len(failed)} mask(s) written to {out}")
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(files)} image(s) skipped (no mask written)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
