"""Pre-training scan: read every file once, report every problem with its path, count class pixels."""
import concurrent.futures
import dataclasses

import numpy as np
import pandas as pd

from data import normalization
from data.discovery import DatasetError
from data.fingerprint import image_statistics
from data.images import match_channels, read_raw_image, to_unit_float
from data.mask_detection import detect_encoding
from data.masks import ReadError
from data.multilabel import (MULTILABEL, empty_class_problems, is_class_folder_mask, is_multilabel,
                             multilabel_encoding, pixel_counts)


@dataclasses.dataclass
class ScanResult:
    """What the scan found: one row per file (`files`), class pixel counts per split, and problems."""

    files: pd.DataFrame
    class_counts: pd.DataFrame
    problems: list
    image_stats: list = dataclasses.field(default_factory=list)
    """Per file (files' order): `data.fingerprint.image_statistics`, or None where the pair could not be read."""
    pixel_sample: np.ndarray | None = None
    """(N, channels) raw pixels sampled from the training images, for percentile normalisation."""

    def class_table(self, split="train"):
        """Per-class pixels, pixels of images containing the class, and pixel share, for one split."""
        table = self.class_counts[self.class_counts["split"] == split].drop(columns="split").set_index("class")
        table["share"] = table["pixels"] / max(table["pixels"].sum(), 1)
        return table


def mask_encoding(config, frame, facts=None):
    """The MaskEncoding of the dataset's masks (see `data.mask_detection.detect_encoding`).

    `facts`: optional object with class_names, palette, void and label_map that a dataset layout knows; config
    keys that are set win over them.
    """
    if config.get("mask", "auto") == MULTILABEL or is_class_folder_mask(frame["mask"].iloc[0]):
        return multilabel_encoding(config, frame)
    return detect_encoding(config, frame["mask"], facts)


def _check_row(position, row, encoding, channels, sample_pixels, statistics=False):
    """Read one pair; return (file record, per-class counts or None, problems, pixel sample or None)."""
    record = {"image": row.image, "mask": row.mask, "split": row.split}
    problems, sample = [], None
    try:
        raw = read_raw_image(row.image)
        record.update(height=raw.shape[0], width=raw.shape[1], channels=raw.shape[2], dtype=raw.dtype.name)
        image = match_channels(raw, channels, row.image)
        if row.split == "train":
            sample = normalization.pixel_sample(image, sample_pixels, position)
    except ReadError as err:
        problems.append(str(err))
        image = None
    try:
        labels = encoding.read(row.mask)
    except ReadError as err:
        problems.append(str(err))
        return record, None, problems, sample
    if image is not None and image.shape[:2] != labels.shape[:2]:
        turned = ("; images with an EXIF orientation are read turned, as viewers show them, and masks must "
                  "match that view") if image.shape[1::-1] == labels.shape else ""
        problems.append(f"{row.mask}: mask is {labels.shape[1]}x{labels.shape[0]} but its image "
                        f"{row.image} is {image.shape[1]}x{image.shape[0]} (WxH){turned}")
    counts = pixel_counts(labels)
    if statistics and not problems and labels.ndim == 2:
        record["stats"] = image_statistics(to_unit_float(image), labels, encoding.num_classes)
    return record, counts, problems, sample


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
    sample_pixels = max(64, normalization.SAMPLE_PIXELS // max(1, int((frame["split"] == "train").sum())))
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda item: _check_row(*item, encoding, channels, sample_pixels, statistics),
                                enumerate(frame.itertuples(index=False))))
    samples = [sample for *_, sample in results if sample is not None]
    results = [result[:3] for result in results]
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
    elif not problems and encoding.kind == "binary" and not used[1:].any():
        problems.append(f"{frame['mask'].iloc[0]}: no mask has a foreground pixel above data.threshold "
                        f"{encoding.threshold}; for 0/1 masks set --set data.threshold=0 (or leave it unset)")
    elif not problems and used.any() and encoding.kind != "rgb":
        highest = int(np.flatnonzero(used).max())
        if highest == 0:
            problems.append(f"{frame['mask'].iloc[0]}: only class 0 occurs in the masks: nothing to segment; "
                            f"check data.masks_dir and data.mask ({encoding.describe()})")
        elif highest < num_classes - 1 and not getattr(encoding, "class_source", None):
            problems.append(f"num_classes is {num_classes} but no mask uses a class above {highest}; "
                            f"set num_classes: {highest + 1} or check the masks")
    stats = [rec.pop("stats", None) for rec, _, _ in results]
    files = pd.DataFrame([rec for rec, _, _ in results])
    sample = np.concatenate(samples) if samples else None
    return ScanResult(files=files, class_counts=counts, problems=problems, pixel_sample=sample,
                      image_stats=stats)
