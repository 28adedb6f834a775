"""Import annotations: `python -m app.import_annotations --format labelme|coco INPUT --out DIR [--classes a,b]`.

Writes DIR/masks/<stem>.png (class-index masks, void 255) and DIR/palette.csv (name,r,g,b). INPUT is a
LabelMe JSON file or folder of them, or one COCO instances JSON file. Classes: --classes background,car,...
(index order, labels must match), or --class-map map.yaml (`class: [labels]`, in index order; class `void`
is ignored in training), or by default `background` plus the labels found. Where shapes overlap, the later one
in the file wins. File names inside annotation files only name masks by their basename stem.
"""
import argparse
import sys

from app.cli import add_verbose_option, fail_cleanly


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m app.import_annotations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("input", metavar="INPUT", help="LabelMe .json file or folder, or a COCO .json file")
    parser.add_argument("--format", required=True, choices=["labelme", "coco"])
    parser.add_argument("--out", required=True, help="output folder (masks/ and palette.csv)")
    parser.add_argument("--overwrite", action="store_true", help="replace masks already in --out")
    classes = parser.add_mutually_exclusive_group()
    classes.add_argument("--classes", help="comma-separated class names in index order (background first)")
    classes.add_argument("--class-map", help="YAML mapping of class name to annotation label(s)")
    add_verbose_option(parser)
    return parser.parse_args(argv)


@fail_cleanly
def main(argv=None):
    args = parse_args(argv)
    from app.dataset.importing import import_annotations

    classes = [name.strip() for name in args.classes.split(",")] if args.classes else None
    mapping, written = import_annotations(args.format, args.input, args.out, classes=classes,
                                          class_map=args.class_map,
                                          warn=lambda line: print(f"warning: {line}", file=sys.stderr),
                                          overwrite=args.overwrite)
    print(f"{len(written)} mask(s) and palette.csv ({len(mapping.names)} classes: {', '.join(mapping.names)}) "
          f"written to {args.out}")
    print(f"train on them with: --set data.mask=index --set data.void=255 --set data.num_classes={len(mapping.names)}"
          f" --set data.palette={args.out}/palette.csv (images in an images/ folder beside masks/)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
