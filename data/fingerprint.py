"""Dataset fingerprint: the statistics a training plan is derived from (after nnU-Net's fingerprint extraction).

`image_statistics` runs inside the scan (`data.scan.scan(..., statistics=True)`), on the image and label map it
already holds, so the fingerprint costs no second read of the dataset. `build_fingerprint` aggregates the
per-image statistics: image sizes, channels and per-channel intensity, class pixel shares, object sizes per class
(connected components: area, bounding-box extent and thickness) and where each class sits in the frame.
"""
import dataclasses

import cv2
import numpy as np

PERCENTILES = (5, 10, 50, 90, 95)
SPECK_SHARE = 0.001
"""Components of a class smaller than this share of the class's largest component in the same mask are specks
(JPEG-compression noise, stray labelling clicks), not objects."""
MIN_OBJECT_PIXELS = 3
"""Components of fewer pixels are specks too, unless nothing larger is in the mask."""


def image_statistics(image, labels, num_classes):
    """Per-image statistics for the fingerprint (plain Python and small NumPy arrays).

    Args:
        image: (H, W, C) float image in [0, 1] (or None when it could not be read).
        labels: (H, W) uint8 class indices; values >= num_classes (void) are skipped.
        num_classes: int.

    Returns a dict: `channel_sum`, `channel_sq_sum` (per channel, over all pixels), `class_row_sum` and
    `class_col_sum` (per class: sum of the normalised row / column positions, 0 = top / left, 1 = bottom / right,
    of its pixels) and `objects` (per class: arrays `area`, `extent` = longer bounding-box side and `thickness` =
    twice the largest distance from a pixel to the component's border, i.e. the widest inscribed disc), specks
    left out (`without_specks`).
    """
    height, width = labels.shape
    stats = {}
    if image is not None:
        flat = image.reshape(-1, image.shape[-1])
        stats["channel_sum"] = flat.sum(0, dtype=np.float64)
        stats["channel_sq_sum"] = np.einsum("ij,ij->j", flat, flat, dtype=np.float64)
    rows = (np.arange(height) + 0.5) / height
    cols = (np.arange(width) + 0.5) / width
    row_sum, col_sum, objects = np.zeros(num_classes), np.zeros(num_classes), {}
    for cls in np.unique(labels):
        if cls >= num_classes:
            continue
        binary = (labels == cls).astype(np.uint8)
        row_sum[cls] = binary.sum(1) @ rows
        col_sum[cls] = binary.sum(0) @ cols
        objects[int(cls)] = without_specks(components(binary))
    stats.update(class_row_sum=row_sum, class_col_sum=col_sum, objects=objects)
    return stats


def components(binary):
    """Connected components (8-connectivity) of a uint8 mask: dict of arrays area, extent, thickness (pixels)."""
    count, component_map, table, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    area = table[1:, cv2.CC_STAT_AREA].astype(np.int64)
    extent = np.maximum(table[1:, cv2.CC_STAT_WIDTH], table[1:, cv2.CC_STAT_HEIGHT]).astype(np.int64)
    distance = cv2.distanceTransform(np.pad(binary, 1), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    inside = component_map > 0
    labels, values = component_map[inside], distance[inside]
    order = np.argsort(labels, kind="stable")
    labels, values = labels[order], values[order]
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]]) if labels.size else np.zeros(0, int)
    thickness = np.maximum.reduceat(values, starts) if labels.size else np.zeros(0)
    return {"area": area, "extent": extent, "thickness": 2.0 * thickness.astype(np.float64)}


def without_specks(found):
    """The components of `components` that are objects: at least MIN_OBJECT_PIXELS (or the largest component's
    size, where all are smaller) and SPECK_SHARE of the largest component."""
    if not found["area"].size:
        return found
    largest = int(found["area"].max())
    keep = (found["area"] >= min(MIN_OBJECT_PIXELS, largest)) & (found["area"] >= SPECK_SHARE * largest)
    return {key: values[keep] for key, values in found.items()}


def _summary(values):
    values = np.asarray(values, np.float64)
    if values.size == 0:
        return None
    return {"min": float(values.min()), **{f"p{q}": float(np.percentile(values, q)) for q in PERCENTILES},
            "max": float(values.max())}


@dataclasses.dataclass
class ObjectStats:
    """Connected components of one class over the training images (pixels at the files' own resolution)."""

    count: int
    area: dict
    extent: dict
    thickness: dict


@dataclasses.dataclass
class Fingerprint:
    """What a plan needs to know about a dataset; sizes are in pixels of the files as stored.

    `height`/`width` are distributions (min, p5, p10, p50, p90, p95, max); `class_share` is the pixel share of each
    class in the training split; `class_row`/`class_col` the mean normalised row/column of each class's pixels
    (0.5 = centred); `objects` maps class names to ObjectStats (None for a class without training pixels).
    """

    class_names: list
    images_per_split: dict
    height: dict
    width: dict
    channels: int
    file_channels: dict
    intensity_mean: list
    intensity_std: list
    class_share: dict
    class_images: dict
    class_row: dict
    class_col: dict
    objects: dict
    total_pixels: int
    mask_kind: str = "index"

    @property
    def train_images(self):
        return int(self.images_per_split.get("train", 0))

    @property
    def median_size(self):
        return (int(round(self.height["p50"])), int(round(self.width["p50"])))

    def to_dict(self):
        """Plain, YAML-safe nesting of built-in types."""
        return _plain(dataclasses.asdict(self))


def _plain(value):
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float):
        return round(value, 6)
    return value


def build_fingerprint(files, image_stats, class_table, class_names, channels, mask_kind="index"):
    """Aggregate the scan's per-image statistics into a Fingerprint.

    Args:
        files: the scan's files DataFrame (image, mask, split, height, width, channels).
        image_stats: per-row dicts of `image_statistics` (None where a file could not be read), in files' order.
        class_table: the scan's `class_table("train")` (pixels, image_pixels, images, share per class).
        class_names: names of the classes, in index order.
        channels: channels the model takes.
    """
    train = (files["split"] == "train").to_numpy()
    sized = files.dropna(subset=["height", "width"])
    num_classes = len(class_names)
    channel_sum = channel_sq = None
    pixels = 0
    row_sum, col_sum = np.zeros(num_classes), np.zeros(num_classes)
    found = {c: {"area": [], "extent": [], "thickness": []} for c in range(num_classes)}
    for is_train, stats, height, width in zip(train, image_stats, files.get("height"), files.get("width")):
        if not stats:
            continue
        if "channel_sum" in stats:
            channel_sum = stats["channel_sum"] if channel_sum is None else channel_sum + stats["channel_sum"]
            channel_sq = stats["channel_sq_sum"] if channel_sq is None else channel_sq + stats["channel_sq_sum"]
            pixels += int(height) * int(width)
        if not is_train:
            continue
        row_sum += stats["class_row_sum"]
        col_sum += stats["class_col_sum"]
        for cls, objects in stats["objects"].items():
            for key in found[cls]:
                found[cls][key].append(objects[key])
    mean = channel_sum / max(pixels, 1) if channel_sum is not None else np.zeros(channels)
    std = np.sqrt(np.maximum(channel_sq / max(pixels, 1) - mean**2, 0)) if channel_sq is not None else mean
    class_pixels = class_table["pixels"].to_numpy(np.float64)
    objects = {}
    for cls, name in enumerate(class_names):
        arrays = {key: np.concatenate(parts) if parts else np.zeros(0) for key, parts in found[cls].items()}
        objects[name] = (ObjectStats(int(arrays["area"].size), _summary(arrays["area"]), _summary(arrays["extent"]),
                                     _summary(arrays["thickness"])) if arrays["area"].size else None)
    return Fingerprint(
        class_names=list(class_names),
        images_per_split={str(k): int(v) for k, v in files["split"].value_counts().sort_index().items()},
        height=_summary(sized["height"]), width=_summary(sized["width"]), channels=int(channels),
        file_channels={int(k): int(v) for k, v in sized["channels"].value_counts().sort_index().items()},
        intensity_mean=[float(v) for v in mean], intensity_std=[float(v) for v in std],
        class_share={name: float(v) for name, v in zip(class_names, class_table["share"])},
        class_images={name: int(v) for name, v in zip(class_names, class_table["images"])},
        class_row={name: (float(row_sum[i] / class_pixels[i]) if class_pixels[i] else None)
                   for i, name in enumerate(class_names)},
        class_col={name: (float(col_sum[i] / class_pixels[i]) if class_pixels[i] else None)
                   for i, name in enumerate(class_names)},
        objects=objects, total_pixels=int((sized["height"] * sized["width"]).sum()), mask_kind=mask_kind)

