"""Pre-training scan: read every file once, report every problem with its path, count class pixels."""
import concurrent.futures
import dataclasses

import numpy as np
import pandas as pd

from data.discovery import DatasetError
from data.fingerprint import image_statistics
from data.masks import MaskEncoding, ReadError, read_palette, read_raw_image, read_raw_mask, to_channels
from data.multilabel import (MULTILABEL, empty_class_problems, is_class_folder_mask, is_multilabel,
                             multilabel_encoding, pixel_counts, read_mask)


@dataclasses.dataclass
class ScanResult:
    """What the scan found: one row per file (`files`), class pixel counts per split, and problems."""

    files: pd.DataFrame
    class_counts: pd.DataFrame
    problems: list
    image_stats: list = dataclasses.field(default_factory=list)
    """Per file (files' order): `data.fingerprint.image_statistics`, or None where the pair could not be read."""

    def class_table(self, split="train"):
        """Per-class pixels, pixels of images containing the class, and pixel share, for one split."""
        table = self.class_counts[self.class_counts["split"] == split].drop(columns="split").set_index("class")
        table["share"] = table["pixels"] / max(table["pixels"].sum(), 1)
        return table


def mask_encoding(config, frame, facts=None):
    """Build the MaskEncoding from the data config, inferring kind and class count where they are "auto"/None."""
    kind = config.get("mask", "auto")
    if kind == MULTILABEL or is_class_folder_mask(frame["mask"].iloc[0]):
        return multilabel_encoding(config, frame)
    palette = read_palette(config["palette"]) if config.get("palette") else None
    void = config.get("void")
    if kind == "auto":
        kind = "rgb" if palette is not None else _guess_kind(frame["mask"].head(8))
    num_classes = config.get("num_classes")
    if num_classes is None:
        if kind == "binary":
            num_classes = 2
        elif kind == "rgb":
            num_classes = len(palette) - (1 if void is not None and void < len(palette) else 0)
        else:
            num_classes = _max_label(frame["mask"], void) + 1
    return MaskEncoding(kind=kind, num_classes=int(num_classes), void=void,
                        threshold=config.get("threshold", 127), invert=bool(config.get("invert", False)),
                        palette=palette)


def _guess_kind(mask_paths):
    values = set()
    for path in mask_paths:
        raw = read_raw_mask(path)
        if raw.ndim == 3:
            raise ReadError(f"{path}: colour mask: set data.mask: rgb and data.palette to a name,r,g,b CSV")
        values.update(np.unique(raw).tolist())
    return "binary" if values <= {0, 255} or max(values) > 100 else "index"


def _max_label(mask_paths, void):
    def top(path):
        values = np.unique(read_raw_mask(path))
        return int(values[values != void].max()) if (values != void).any() else 0
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return max(pool.map(top, mask_paths))


def _check_row(row, encoding, channels, statistics=False):
    """Read one pair; return (file record, per-class counts or None, problems)."""
    record = {"image": row.image, "mask": row.mask, "split": row.split}
    problems = []
    try:
        raw = read_raw_image(row.image)
        record.update(height=raw.shape[0], width=raw.shape[1], channels=raw.shape[2])
        image = to_channels(raw, channels, row.image)
    except ReadError as err:
        problems.append(str(err))
        image = None
    try:
        labels = read_mask(encoding, row.mask)
    except ReadError as err:
        problems.append(str(err))
        return record, None, problems
    if image is not None and image.shape[:2] != labels.shape[:2]:
        problems.append(f"{row.mask}: mask is {labels.shape[1]}x{labels.shape[0]} but its image "
                        f"{row.image} is {image.shape[1]}x{image.shape[0]} (WxH)")
    counts = pixel_counts(labels)
    if statistics and not problems and labels.ndim == 2:
        record["stats"] = image_statistics(image, labels, encoding.num_classes)
    return record, counts, problems


def scan(frame, encoding, channels=3, class_names=None, workers=4, statistics=False):
    """Read every image and mask of `frame` and check them; see ScanResult.

    Checks: unreadable/corrupt files, channel counts the model cannot take, image/mask size mismatch, mask
    values outside the classes that are not void, unknown colours in RGB masks, and top classes that
    occur in no mask of any split (a `num_classes` that disagrees with the data). `statistics` also collects
    each pair's fingerprint statistics (`ScanResult.image_stats`).
    """
    num_classes = encoding.num_classes
    names = list(class_names) if class_names else [f"class_{i}" for i in range(num_classes)]
    if len(names) != num_classes:
        raise DatasetError([f"class_names has {len(names)} names but num_classes is {num_classes}"])
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda row: _check_row(row, encoding, channels, statistics),
                                frame.itertuples(index=False)))
    problems = [p for _, _, found in results for p in found]
    rows = []
    for split in sorted(frame["split"].unique()):
        per_image = np.array([c[:num_classes] for (rec, c, _) in results if c is not None and rec["split"] == split])
        per_image = per_image.reshape(-1, num_classes)
        totals = np.array([c.sum() for (rec, c, _) in results if c is not None and rec["split"] == split])
        for index, name in enumerate(names):
            present = per_image[:, index] > 0
            rows.append({"split": split, "class": name, "pixels": int(per_image[:, index].sum()),
                         "image_pixels": int(totals[present].sum()), "images": int(present.sum())})
    counts = pd.DataFrame(rows, columns=["split", "class", "pixels", "image_pixels", "images"])
    used = counts.groupby("class", sort=False)["pixels"].sum().to_numpy() > 0
    if not problems and is_multilabel(encoding):
        problems += empty_class_problems(counts, encoding)
    elif not problems and used.any() and encoding.kind != "rgb":
        highest = int(np.flatnonzero(used).max())
        if highest < num_classes - 1:
            problems.append(f"num_classes is {num_classes} but no mask uses a class above {highest}; "
                            f"set num_classes: {highest + 1} or check the masks")
    stats = [rec.pop("stats", None) for rec, _, _ in results]
    files = pd.DataFrame([rec for rec, _, _ in results])
    return ScanResult(files=files, class_counts=counts, problems=problems, image_stats=stats)
