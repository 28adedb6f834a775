"""Find image/mask pairs on disk: paired folders, SegNet/CamVid split folders, or a CSV listing."""
import pathlib

import numpy as np
import pandas as pd

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
SPLITS = ("train", "val", "test")
LAYOUTS = ("auto", "paired", "segnet", "csv")


class DatasetError(ValueError):
    """A dataset problem; `problems` holds one line per file, each naming the path."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _files_by_stem(folder):
    return {
        p.stem: p
        for p in sorted(folder.iterdir())
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    }


def _pair(image_dir, mask_dir, problems, instance_dir=None):
    """Match images and masks by file stem; unmatched files become problems."""
    if not image_dir.is_dir():
        problems.append(f"{image_dir}: image folder not found")
        return []
    if not mask_dir.is_dir():
        problems.append(f"{mask_dir}: mask folder not found")
        return []
    from data.multilabel import class_folders, pair_class_folders

    if class_folders(mask_dir):
        return pair_class_folders(image_dir, mask_dir, problems)
    images, masks = _files_by_stem(image_dir), _files_by_stem(mask_dir)
    if not images:
        problems.append(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    for stem in sorted(set(images) - set(masks)):
        problems.append(f"{images[stem]}: image has no mask in {mask_dir}")
    for stem in sorted(set(masks) - set(images)):
        problems.append(f"{masks[stem]}: mask has no image in {image_dir}")
    instances = _files_by_stem(instance_dir) if instance_dir and instance_dir.is_dir() else {}
    return [
        {"image": str(images[s]), "mask": str(masks[s]), "instances": str(instances[s]) if s in instances else None}
        for s in sorted(set(images) & set(masks))
    ]


def _detect_layout(root):
    if root.is_file() and root.suffix.lower() == ".csv":
        return "csv"
    if (root / "train").is_dir() and (root / "trainannot").is_dir():
        return "segnet"
    return "paired"


def _seeded_split(frame, val_fraction, seed):
    """Assign train/val to rows that have no split, reproducibly under `seed`."""
    todo = frame.index[frame["split"].isna()]
    if len(todo) == 0:
        return frame
    order = np.random.default_rng(seed).permutation(len(todo))
    n_val = int(round(val_fraction * len(todo))) if len(todo) > 1 else 0
    if val_fraction > 0 and len(todo) > 1:
        n_val = max(n_val, 1)
    split = np.full(len(todo), "train", dtype=object)
    split[order[:n_val]] = "val"
    frame.loc[todo, "split"] = split
    return frame


def discover(path, layout="auto", images_dir="images", masks_dir="masks", instances_dir="instances",
             val_fraction=0.2, seed=0):
    """List a dataset's samples as a DataFrame with columns image, mask, instances, split.

    Layouts: "paired" (`images/` + `masks/` matched by file stem, optionally inside `train/`, `val/`,
    `test/` subfolders), "segnet" (`train/` + `trainannot/`, `val/` + `valannot/`, `test/` + `testannot/`),
    "csv" (a CSV file with columns image, mask and optionally split and instances; relative paths are taken
    from the CSV's folder). Rows without a split get a seeded train/val split of `val_fraction`.

    Raises:
        DatasetError: listing every missing folder, unmatched file or bad CSV row.
    """
    root = pathlib.Path(path)
    if not root.exists():
        raise DatasetError([f"{root}: dataset path does not exist"])
    if layout not in LAYOUTS:
        raise DatasetError([f"{root}: unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}"])
    layout = _detect_layout(root) if layout == "auto" else layout
    problems, rows = [], []
    if layout == "csv":
        rows = _read_csv(root, problems)
    elif layout == "segnet":
        for split in SPLITS:
            if (root / split).is_dir():
                rows += [dict(r, split=split) for r in _pair(root / split, root / f"{split}annot", problems)]
    elif any((root / s / images_dir).is_dir() for s in SPLITS):
        for split in SPLITS:
            if (root / split / images_dir).is_dir():
                found = _pair(root / split / images_dir, root / split / masks_dir, problems,
                              root / split / instances_dir)
                rows += [dict(r, split=split) for r in found]
    else:
        rows = [dict(r, split=None) for r in _pair(root / images_dir, root / masks_dir, problems, root / instances_dir)]
    if not rows and not problems:
        problems.append(f"{root}: no image/mask pairs found (layout {layout})")
    if problems:
        raise DatasetError(problems)
    frame = pd.DataFrame(rows, columns=["image", "mask", "instances", "split"])
    frame["split"] = frame["split"].astype(object)
    return _seeded_split(frame, val_fraction, seed)


def _read_csv(csv_path, problems):
    try:
        table = pd.read_csv(csv_path, dtype=str)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        problems.append(f"{csv_path}: not a readable CSV ({err})")
        return []
    missing = {"image", "mask"} - set(table.columns)
    if missing:
        problems.append(f"{csv_path}: missing column(s) {', '.join(sorted(missing))}; need image,mask[,split]")
        return []
    base = csv_path.parent
    rows = []
    for line, record in enumerate(table.to_dict("records"), start=2):
        row = {}
        for key in ("image", "mask", "instances"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                row[key] = None
                continue
            file = pathlib.Path(value.strip())
            row[key] = str(file if file.is_absolute() else base / file)
            if not pathlib.Path(row[key]).is_file():
                problems.append(f"{csv_path}:{line}: {key} file not found: {row[key]}")
        if row["image"] is None or row["mask"] is None:
            problems.append(f"{csv_path}:{line}: row needs both an image and a mask path")
        split = record.get("split")
        if isinstance(split, str) and split.strip() and split.strip() not in SPLITS:
            problems.append(f"{csv_path}:{line}: unknown split {split!r}; use {', '.join(SPLITS)}")
        row["split"] = split.strip() if isinstance(split, str) and split.strip() else None
        rows.append(row)
    return rows
