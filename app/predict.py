"""Predict masks: `python -m app.predict --run runs/<id> INPUT... --out DIR [options]`.

INPUT: image files or folders of images. For each image, DIR/<stem>.png is a class-index mask of the
image's size; --colour adds DIR/colour/<stem>.png and --overlay DIR/overlay/<stem>.png; DIR/palette.csv
lists class names and colours. A multi-label run (config.yaml `data.mask: multilabel`) writes one binary
mask (0/255) per class instead, DIR/<class>/<stem>.png (the per-class folder layout training reads), where
the class probability is above --threshold (default 0.5); colour masks and overlays show the mean colour of
the classes present. Large images are tiled automatically (sliding window, blended logits);
--tile forces tiling. --model predicts with another .keras or .tflite file (the run still gives the config).

Labelling loop (multi-class runs; docs/labelling.md): --as cvat|labelme|coco writes the predictions as annotations
to correct in a labelling tool instead of the index masks: cvat: CVAT "Segmentation mask 1.1" (labelmap.txt,
ImageSets/Segmentation/default.txt, SegmentationClass/<stem>.png in the run's colours); labelme: DIR/<stem>.json,
one polygon per connected region and class, simplified to --polygon-tolerance pixels, holes as later background
polygons, and DIR/labels.txt; coco: DIR/annotations.json, one annotation per region and class as RLE (exact) or, with
--coco-polygons, polygons. --rank scores every image by the model's uncertainty (entropy and flip disagreement,
per class) and writes DIR/ranking.csv (all images, most useful to label first) and DIR/ranking.html (the top
--rank-top with overlays, thumbnails in DIR/ranking/). --min-region N gives regions under N pixels the class
around them (multi-class runs, every output).

DIR must lie outside the inputs' folders and the run's dataset; existing masks are replaced only with --overwrite.
Unreadable images are skipped and listed at the end (exit code 1).
"""
import argparse
import pathlib
import sys

import numpy as np

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
    parser.add_argument("--as", dest="annotations", choices=["cvat", "labelme", "coco"],
                        help="write annotations for this labelling tool instead of index masks")
    parser.add_argument("--polygon-tolerance", type=float, default=1.0, metavar="PIXELS",
                        help="--as labelme / --coco-polygons: polygon simplification (default 1.0; 0 keeps every "
                             "corner of the pixel outline)")
    parser.add_argument("--coco-polygons", action="store_true", help="--as coco: polygons instead of RLE masks")
    parser.add_argument("--min-region", type=int, default=0, metavar="PIXELS",
                        help="regions smaller than this take the class around them (default 0: kept)")
    parser.add_argument("--rank", action="store_true",
                        help="also write ranking.csv and ranking.html: which images to label next")
    parser.add_argument("--rank-top", type=int, default=48, metavar="N", help="images on ranking.html (default 48)")
    add_verbose_option(parser)
    args = parser.parse_args(argv)
    if args.run is None and args.model is None:
        parser.error("give --run, --model or both")
    if args.polygon_tolerance < 0:
        parser.error(f"--polygon-tolerance must be >= 0 pixels, got {args.polygon_tolerance}")
    if args.coco_polygons and args.annotations != "coco":
        parser.error("--coco-polygons goes with --as coco")
    if args.min_region < 0:
        parser.error(f"--min-region must be >= 0 pixels, got {args.min_region}")
    if args.rank_top < 1:
        parser.error(f"--rank-top must be at least 1, got {args.rank_top}")
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


def labelling_outputs(args, predictor, out):
    """The --as writer and the --rank collector (None where not asked for)."""
    from app.inference.annotation_writers import annotation_writer
    from app.inference.ranking import Ranking

    if predictor.multilabel and (args.annotations or args.rank or args.min_region):
        raise ValueError(f"{predictor.path}: --as, --rank and --min-region take multi-class runs; this one is "
                         "multi-label (data.mask: multilabel)")
    writer = annotation_writer(args.annotations, out, predictor.class_names, predictor.colours,
                               args.polygon_tolerance, "polygon" if args.coco_polygons else "rle") \
        if args.annotations else None
    ranking = Ranking(out, predictor.class_names, predictor.colours, args.rank_top) if args.rank else None
    return writer, ranking


@fail_cleanly
def main(argv=None):
    args = parse_args(argv)
    import pandas as pd
    from tqdm import tqdm

    from app.inference import multilabel
    from app.inference.annotation_writers import merge_small_regions
    from app.inference.palette import colourise, display_image, overlay
    from app.inference.predictor import load_predictor, predict_labels
    from app.inference.ranking import uncertainty, view_logits
    from app.runtime.outputs import dataset_folders, prepare_output_folder, write_image, write_text

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
    writer, ranking = labelling_outputs(args, predictor, out)
    stems = [file.stem for file in files]
    kinds = [kind for kind in ("colour", "overlay") if getattr(args, kind)]
    mask_folders = [out / name for name in predictor.class_names] if predictor.multilabel else [out]
    targets = writer.targets(stems) if writer else \
        [out / "palette.csv"] + [folder / f"{stem}.png" for folder in mask_folders for stem in stems]
    targets += [out / kind / f"{stem}.png" for kind in kinds for stem in stems]
    targets += ranking.targets(stems) if ranking else []
    prepare_output_folder(out, [*args.inputs, *dataset_folders(predictor.config)], targets, args.overwrite)
    folders = {kind: prepare_output_folder(out / kind) for kind in kinds}
    if writer is None:
        palette = pd.DataFrame(predictor.colours, columns=["r", "g", "b"])
        palette.insert(0, "name", predictor.class_names)
        write_text(out / "palette.csv", palette.to_csv(index=False))
    failed = []
    for file in tqdm(files, unit="image", disable=None):
        try:
            image = predictor.read_image(file)
            if predictor.multilabel:
                masks = multilabel.predict_masks(predictor, image, threshold, **args.options)
            elif ranking:
                views = view_logits(predictor, image, **args.options)
                labels = (views.mean(0) if args.tta else views[0]).argmax(-1).astype(np.uint8)
            else:
                labels = predict_labels(predictor, image, **args.options)
        except ValueError as err:
            failed.append(str(err) if str(file) in str(err) else f"{file}: {err}")
            continue
        if args.min_region:
            labels = merge_small_regions(labels, args.min_region)
        if predictor.multilabel:
            multilabel.write_masks(out, file.stem, masks, predictor.class_names)
            if "colour" in folders:
                write_image(folders["colour"] / f"{file.stem}.png", multilabel.colourise(masks, predictor.colours))
            if "overlay" in folders:
                write_image(folders["overlay"] / f"{file.stem}.png",
                            multilabel.overlay(display_image(image), masks, predictor.colours))
            continue
        if writer:
            writer.add(file, labels)
        else:
            write_image(out / f"{file.stem}.png", labels)
        if "colour" in folders:
            write_image(folders["colour"] / f"{file.stem}.png", colourise(labels, predictor.colours))
        if "overlay" in folders or ranking:
            overlaid = overlay(display_image(image), labels, predictor.colours)
        if "overlay" in folders:
            write_image(folders["overlay"] / f"{file.stem}.png", overlaid)
        if ranking:
            ranking.add(file, uncertainty(views, labels), overlaid)
    done = len(files) - len(failed)
    if writer:
        print(f"{args.annotations} annotations written to {out}: {writer.close().describe()}")
    else:
        print(f"{done} mask(s) written to {out}")
    if ranking:
        table = ranking.close()
        if len(table):
            first = pathlib.Path(table["image"][0]).name
            print(f"ranking of {len(table)} image(s) (label first: {first}, score {table['score'][0]:.3f}) written to "
                  f"{out / 'ranking.csv'} and {out / 'ranking.html'}")
    for line in failed:
        print(f"error: {line}", file=sys.stderr)
    if failed:
        if not done:
            from app.runtime.outputs import discard_new_folders

            discard_new_folders()  # a command that wrote nothing leaves no output folder behind
        print(f"{len(failed)} of {len(files)} image(s) skipped (no mask written)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
