"""Registry of dataset layouts: `get_layout(name)`, `detect_layout(path)` and `load_dataset(path, ...)`.

Each layout is one file (as mmsegmentation keeps one per dataset) with `detect(root) -> reason or None` and
`load(root, options, problems) -> DatasetSource`; the registry adds the split rules (`base.finish_splits`) and
turns collected problems into one DatasetError.
"""
import collections
import pathlib

from data.layouts import ade, annotations, cityscapes, csv_index, paired, segnet, voc
from data.layouts.base import DatasetError, DatasetSource, LayoutOptions, finish_splits
from data.layouts.label_files import apply_label_file

Layout = collections.namedtuple("Layout", ["detect", "load", "description"])

LAYOUTS = {
    "paired": Layout(paired.detect, paired.load, "images/ + masks/ (or labels/, gt/, ...), masks named <stem>[_mask]"),
    "segnet": Layout(segnet.detect, segnet.load, "train/ + trainannot/ (or train_labels/), val/, test/"),
    "csv": Layout(csv_index.detect, csv_index.load, "a CSV file with columns image, mask[, split]"),
    "voc": Layout(voc.detect, voc.load, "JPEGImages/ + SegmentationClass/, ImageSets/Segmentation/*.txt"),
    "cityscapes": Layout(cityscapes.detect, cityscapes.load, "leftImg8bit/ + gtFine/ *_gtFine_labelIds.png"),
    "ade": Layout(ade.detect, ade.load, "images/training|validation + annotations/training|validation"),
    "coco": Layout(annotations.detect_coco, annotations.load_coco, "a COCO instances JSON file"),
    "labelme": Layout(annotations.detect_labelme, annotations.load_labelme, "a folder of LabelMe JSON files"),
}
DETECTION_ORDER = ("csv", "coco", "voc", "cityscapes", "ade", "segnet", "paired", "labelme")
"""Most specific first; paired comes before labelme so image folders with LabelMe files beside them stay paired."""


def get_layout(name):
    try:
        return LAYOUTS[name.lower()]
    except (KeyError, AttributeError):
        raise KeyError(f"unknown layout {name!r}; valid names are: auto, {', '.join(LAYOUTS)}") from None


def detect_layout(root):
    """(layout name, reason) of the first layout in DETECTION_ORDER that recognises `root`; paired otherwise."""
    for name in DETECTION_ORDER:
        reason = LAYOUTS[name].detect(root)
        if reason:
            return name, reason
    return "paired", "no other layout matched"


def load_dataset(path, layout="auto", options=None):
    """The DatasetSource of the dataset at `path`, every row with a train, val or test split.

    Raises:
        DatasetError: every problem found (missing folders, unmatched or duplicate files, bad list rows).
    """
    options = options or LayoutOptions()
    root = pathlib.Path(path)
    if not root.exists():
        raise DatasetError([f"{root}: dataset path does not exist; check --data / data.path"])
    if layout != "auto" and layout not in LAYOUTS:
        raise DatasetError([f"{root}: unknown layout {layout!r}; set data.layout to auto or one of "
                            f"{', '.join(LAYOUTS)}"])
    name = detect_layout(root)[0] if layout == "auto" else layout
    if name not in ("paired", "csv") and not LAYOUTS[name].detect(root):
        found, reason = detect_layout(root)
        raise DatasetError([f"{root}: not a {name} dataset (expected {LAYOUTS[name].description}); it looks like "
                            f"layout {found} ({reason}): set data.layout to auto or {found}"])
    problems = []
    source = LAYOUTS[name].load(root, options, problems)
    apply_label_file(root, source, problems)
    if not problems and (source is None or source.frame.empty):
        problems.append(f"{root}: no image/mask pairs found (layout {name}); the layouts are described in "
                        f"docs/datasets.md, or set data.layout")
    if problems:
        raise DatasetError(problems)
    if options.reduce_zero_label and source.label_map is None:
        source.label_map, source.void = ade.reduce_zero_label_map(), 255
    source.frame, carved = finish_splits(source.frame, options.val_fraction, options.seed)
    source.split_source = "; ".join(part for part in (source.split_source, carved) if part)
    return source


def options_from_config(data, seed, runs_dir=None):
    """LayoutOptions from a config's data section; COCO/LabelMe caches go under `runs_dir`/imported."""
    import_dir = data.get("import_dir") or (pathlib.Path(runs_dir) / "imported" if runs_dir else None)
    keys = ("images_dir", "masks_dir", "instances_dir", "mask_suffix", "image_suffix", "reduce_zero_label",
            "train_list", "val_list", "test_list")
    return LayoutOptions(**{key: data.get(key) for key in keys if key in data}, import_dir=import_dir,
                         val_fraction=data.get("val_fraction", 0.2), seed=seed)


def dataset_source(data, seed=0, runs_dir=None):
    """The DatasetSource of a config's data section as a mapping (path, layout and the layout keys)."""
    return load_dataset(data["path"], data.get("layout", "auto"), options_from_config(data, seed, runs_dir))


def detection_line(source, encoding):
    """One line saying what was detected and why: layout, split source and counts, and the mask encoding
    (`encoding.describe()`: kind, classes, void and why)."""
    counts = source.frame["split"].value_counts()
    split_counts = ", ".join(f"{split} {int(counts[split])}" for split in ("train", "val", "test") if split in counts)
    split_text = "; ".join([split_counts, *source.split_notes])
    return (f"detected: layout {source.layout} ({source.reason}); "
            f"splits: {source.split_source or 'as listed'} ({split_text}); masks: {encoding.describe()}")


__all__ = ["DatasetError", "DatasetSource", "LAYOUTS", "LayoutOptions", "dataset_source", "detect_layout",
           "detection_line", "get_layout", "load_dataset", "options_from_config"]
