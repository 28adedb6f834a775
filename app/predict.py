"""Predict masks: `python -m app.predict --run runs/<id> INPUT... --out DIR [options]`.

INPUT: image files or folders of images. For each image, DIR/<stem>.png is a class-index mask of the
image's size; --colour adds DIR/colour/<stem>.png and --overlay DIR/overlay/<stem>.png; DIR/palette.csv
lists class names and colours. Large images are tiled automatically (sliding window, blended logits);
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
    """Image paths from files and folders (sorted, not recursive); stems must be unique."""
    from data.discovery import IMAGE_EXTENSIONS

    files = []
    for item in map(pathlib.Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
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

    from app.core.inference import load_predictor, predict_labels
    from app.core.outputs import dataset_folders, prepare_output_folder, write_image, write_text
    from app.core.palette import colourise, display_image, overlay
    from data.masks import read_image

    files = image_files(args.inputs)
    predictor = load_predictor(args.run, args.model)
    out = pathlib.Path(args.out)
    kinds = [kind for kind in ("colour", "overlay") if getattr(args, kind)]
    targets = [out / "palette.csv"] + [folder / f"{file.stem}.png" for folder in [out] + [out / k for k in kinds]
                                       for file in files]
    prepare_output_folder(out, [*args.inputs, *dataset_folders(predictor.config)], targets, args.overwrite)
    folders = {kind: prepare_output_folder(out / kind) for kind in kinds}
    palette = pd.DataFrame(predictor.colours, columns=["r", "g", "b"])
    palette.insert(0, "name", predictor.class_names)
    write_text(out / "palette.csv", palette.to_csv(index=False))
    failed = []
    for file in tqdm(files, unit="image", disable=None):
        try:
            image = read_image(file, predictor.channels)
            labels = predict_labels(predictor, image, **args.options)
        except ValueError as err:
            failed.append(str(err) if str(file) in str(err) else f"{file}: {err}")
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
