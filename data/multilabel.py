"""Multi-label masks: classes that may overlap, one binary mask per class.

Two ways to store them:
- per-class folders: `masks/<class>/<stem>.png`, one binary mask per class and image (the paired layout, also
  inside `train/`, `val/`, `test/`), found automatically; class names are the folder names, sorted;
- multi-channel files (`data.mask: multilabel`): a TIFF (any number of channels, read with tifffile) or an
  RGB/RGBA PNG whose channels are binary class masks (channel order R, G, B, A).

A class mask pixel is the class where its value is above `data.threshold` (127), or above 0 in 0/1 masks; a
pixel equal to `data.void` is void for that class. Decoded targets are uint8 (H, W, C) with 0, 1 and
IGNORE_INDEX (void, and padding in the pipeline); losses and metrics skip IGNORE_INDEX per pixel and class.
In a discovery frame, a per-class-folder sample's `mask` holds its class files, each followed by `os.pathsep`.
"""
import dataclasses
import os
import pathlib

import cv2
import numpy as np
import pandas as pd

from data.images import IMAGE_EXTENSIONS
from data.masks import IGNORE_INDEX, ReadError

MULTILABEL = "multilabel"
TIFF_SUFFIXES = (".tif", ".tiff")


def _image_files(folder, extensions):
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in extensions}


def class_folders(mask_dir):
    """Sorted class subfolders of `mask_dir` when it holds no mask files itself but subfolders of them, else []."""
    mask_dir = pathlib.Path(mask_dir)
    if not mask_dir.is_dir() or _image_files(mask_dir, IMAGE_EXTENSIONS):
        return []
    folders = [p for p in sorted(mask_dir.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    return [p for p in folders if _image_files(p, IMAGE_EXTENSIONS)]


def _class_files(folder, image_stems):
    """(matched {image stem: mask path}, unmatched mask paths, name pattern) of one class folder.

    Masks are named like their images, or like them plus one suffix common to the whole folder (IDRiD's
    `IDRiD_01_MA.tif` for `IDRiD_01.jpg`); the pattern (suffix + most common extension) names a missing mask.
    """
    masks = _image_files(folder, IMAGE_EXTENSIONS)
    extensions = pd.Series([p.suffix for p in masks.values()]).value_counts()
    extension = extensions.index[0] if len(extensions) else ".png"
    suffixes = {stem: next((stem[k:] for k in range(len(stem) - 1, 0, -1) if stem[:k] in image_stems), None)
                for stem in masks if stem not in image_stems}
    common = pd.Series(list(suffixes.values()), dtype=object).value_counts()
    suffix = common.index[0] if not set(masks) & set(image_stems) and len(common) == 1 else ""
    matched, unmatched = {}, []
    for stem, path in masks.items():
        if stem.endswith(suffix) and stem[: len(stem) - len(suffix)] in image_stems:
            matched[stem[: len(stem) - len(suffix)]] = path
        else:
            unmatched.append(path)
    return matched, unmatched, suffix + extension


def pair_class_folders(image_dir, mask_dir, problems):
    """Rows (image, mask, instances) of images matched with one mask per class folder of `mask_dir`.

    A class mask without an image is a problem. An image without a mask in a class folder gets the path the
    mask would have: reading it fails unless `data.missing_class_masks: empty` (see `MultilabelEncoding`).
    """
    images = _image_files(image_dir, IMAGE_EXTENSIONS)
    if not images:
        problems.append(f"{image_dir}: no images ({', '.join(IMAGE_EXTENSIONS)})")
    columns = []
    for folder in class_folders(mask_dir):
        matched, unmatched, pattern = _class_files(folder, set(images))
        problems += [f"{path}: mask has no image in {image_dir}" for path in unmatched]
        columns.append({stem: matched.get(stem, folder / f"{stem}{pattern}") for stem in images})
    return [{"image": str(images[s]), "mask": "".join(f"{column[s]}{os.pathsep}" for column in columns),
             "instances": None} for s in sorted(images)]


def is_class_folder_mask(cell):
    return isinstance(cell, str) and cell.endswith(os.pathsep)


def class_mask_paths(cell):
    """The class mask paths of a per-class-folder `mask` cell."""
    return [p for p in cell.split(os.pathsep) if p]


def read_plane(path):
    """One class mask file as a 2-D array (colour files: the maximum over R, G, B)."""
    path = str(path)
    if path.lower().endswith(TIFF_SUFFIXES):
        plane = _read_tiff(path)
    else:
        plane = cv2.imread(path, cv2.IMREAD_UNCHANGED)
        if plane is None:
            raise ReadError(f"{path}: unreadable or corrupt mask")
        plane = plane[..., None] if plane.ndim == 2 else plane
    return plane[..., :3].max(axis=2)


def read_channels(path):
    """A multi-channel mask file as (H, W, K): TIFF channels as stored, PNG/other files in R, G, B, A order."""
    path = str(path)
    if path.lower().endswith(TIFF_SUFFIXES):
        return _read_tiff(path)
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise ReadError(f"{path}: unreadable or corrupt mask")
    if raw.ndim == 2:
        return raw[..., None]
    return cv2.cvtColor(raw, cv2.COLOR_BGRA2RGBA if raw.shape[2] == 4 else cv2.COLOR_BGR2RGB)


def _read_tiff(path):
    """(H, W, K) array of a TIFF: the axes other than Y and X (channels, samples or pages) become K."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, data = series.axes, series.asarray()
    except (OSError, ValueError, tifffile.TiffFileError) as err:
        raise ReadError(f"{path}: unreadable TIFF mask ({err})") from None
    if "Y" not in axes or "X" not in axes:
        raise ReadError(f"{path}: TIFF has axes {axes!r}, need Y and X")
    keep = [i for i, a in enumerate(axes) if a in "YX" or data.shape[i] > 1]
    data = data.reshape([data.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if len(axes) > 3:
        raise ReadError(f"{path}: TIFF has axes {axes!r}; a multi-label mask needs Y, X and one channel axis")
    order = [axes.index("Y"), axes.index("X")] + [i for i, a in enumerate(axes) if a not in "YX"]
    data = np.transpose(data, order)
    return data if data.ndim == 3 else data[..., None]


def binarise(plane, threshold=127, void=None):
    """uint8 2-D: 1 where `plane` > threshold (> 0 if its non-void values are all 0/1), IGNORE_INDEX on void."""
    plane = np.asarray(plane)
    is_void = plane == void if void is not None else np.zeros(plane.shape, bool)
    values = plane[~is_void]
    cut = 0 if values.size == 0 or values.max() <= 1 else threshold
    out = (plane > cut).astype(np.uint8)
    out[is_void] = IGNORE_INDEX
    return out


@dataclasses.dataclass(frozen=True)
class MultilabelEncoding:
    """Multi-label masks: one binary mask per class, from per-class folders or a multi-channel file.

    Args:
        num_classes: number of classes C (model output channels, one sigmoid each).
        class_names: the C class names (per-class folders: the folder names to read, in this order).
        folders: whether masks come from per-class folders (else multi-channel files: their first C channels).
        void: file value that is void (ignored) for the class whose mask has it.
        threshold: values above it are the class (0/1 masks: above 0).
        missing_empty: per-class folders: a missing class mask file means the class is absent (all zero);
            otherwise it is an error (`data.missing_class_masks: error`, the default).
    """

    num_classes: int
    class_names: tuple
    folders: bool
    void: int | None = None
    threshold: int = 127
    missing_empty: bool = False
    kind = MULTILABEL
    palette = None
    colours = None
    invert = False

    @property
    def reason(self):
        return "one binary mask per class folder" if self.folders else "one class per channel of each mask file"

    def describe(self):
        """One line like MaskEncoding.describe: kind, class count, void and why."""
        void = f", void {self.void}" if self.void is not None else ""
        return f"multilabel masks, {self.num_classes} classes{void} ({self.reason})"

    def read(self, path):
        """uint8 (H, W, C) multi-hot mask with void as IGNORE_INDEX, from a frame's `mask` cell.

        Raises:
            ReadError: naming the file: unreadable, a class folder missing, sizes that disagree, too few channels.
        """
        if self.folders:
            files = {pathlib.Path(p).parent.name: p for p in class_mask_paths(path)}
            missing = [n for n in self.class_names if n not in files]
            if missing:
                raise ReadError(f"{class_mask_paths(path)[0]}: no class folder {', '.join(missing)} "
                                f"(found {', '.join(files)}); check data.class_names")
            planes = self._read_planes([files[name] for name in self.class_names])
            for name, plane in zip(self.class_names, planes):
                if plane.shape != planes[0].shape:
                    raise ReadError(f"{files[name]}: mask is {plane.shape[1]}x{plane.shape[0]} but "
                                    f"{files[self.class_names[0]]} is {planes[0].shape[1]}x{planes[0].shape[0]}")
        else:
            raw = read_channels(path)
            if raw.shape[2] < self.num_classes:
                raise ReadError(f"{path}: mask has {raw.shape[2]} channel(s) but there are {self.num_classes} "
                                f"classes (data.num_classes / data.class_names)")
            planes = [raw[..., c] for c in range(self.num_classes)]
        return np.stack([binarise(p, self.threshold, self.void) for p in planes], axis=-1)

    def _read_planes(self, paths):
        present = [pathlib.Path(p).is_file() for p in paths]
        if not all(present) and not (self.missing_empty and any(present)):
            missing = paths[present.index(False)]
            hint = ("no class has a mask for this image" if self.missing_empty else
                    "an absent class needs an all-zero mask, or set data.missing_class_masks: empty")
            raise ReadError(f"{missing}: no mask in class folder {pathlib.Path(missing).parent.name} ({hint})")
        planes = {p: read_plane(p) for p, ok in zip(paths, present) if ok}
        shape = next(iter(planes.values())).shape
        return [planes[p] if p in planes else np.zeros(shape, np.uint8) for p in paths]


def multilabel_encoding(config, frame):
    """MultilabelEncoding of a data config and discovery frame (class names, count and source checked); the
    frame's masks are per-class folders (any `data.mask` but auto or multilabel is refused) or, with
    `data.mask: multilabel`, multi-channel files.

    Raises:
        ReadError: class names that do not fit the class folders or the channel count, naming the key.
    """
    first = frame["mask"].iloc[0]
    names = config.get("class_names")
    num_classes = config.get("num_classes")
    folders = is_class_folder_mask(first)
    if folders and config.get("mask", "auto") not in ("auto", MULTILABEL):
        raise ReadError(f"{pathlib.Path(class_mask_paths(first)[0]).parent.parent}: per-class mask folders hold "
                        f"multi-label masks; set data.mask: multilabel (or auto), not {config['mask']}")
    if folders:
        found = [pathlib.Path(p).parent.name for p in class_mask_paths(first)]
        names = [str(n) for n in names] if names else found
        unknown = [n for n in names if n not in found]
        if unknown:
            raise ReadError(f"data.class_names: no class folder {', '.join(unknown)} beside {found[0]}; "
                            f"class folders: {', '.join(found)}")
    else:
        channels = read_channels(first).shape[2]
        count = num_classes or (len(names) if names else channels)
        names = [str(n) for n in names] if names else [f"class_{i}" for i in range(count)]
        if count > channels:
            raise ReadError(f"{first}: mask has {channels} channel(s); data.num_classes / data.class_names "
                            f"ask for {count} classes")
    if num_classes is not None and num_classes != len(names):
        raise ReadError(f"data.num_classes is {num_classes} but there are {len(names)} classes: {', '.join(names)}")
    if len(set(names)) != len(names):
        raise ReadError(f"data.class_names: names repeat: {', '.join(names)}")
    missing = config.get("missing_class_masks", "error")
    if missing not in ("error", "empty"):
        raise ReadError(f"data.missing_class_masks must be error or empty, got {missing!r}")
    return MultilabelEncoding(num_classes=len(names), class_names=tuple(names), folders=folders,
                              void=config.get("void"),
                              threshold=127 if config.get("threshold") is None else config["threshold"],
                              missing_empty=missing == "empty")


def is_multilabel(encoding):
    return getattr(encoding, "kind", None) == MULTILABEL


def pixel_counts(labels):
    """Class pixel counts of a decoded mask, as the scan tallies them: entry c = pixels of class c.

    Class-index masks: a bincount (void at IGNORE_INDEX). Multi-hot masks: the class pixels per channel, then
    one entry that makes the vector sum to the image's pixel count (negative where classes overlap).
    """
    if labels.ndim == 2:
        return np.bincount(labels.ravel(), minlength=IGNORE_INDEX + 1)
    positives = (labels == 1).sum(axis=(0, 1))
    return np.append(positives, labels.shape[0] * labels.shape[1] - positives.sum())


def empty_class_problems(class_counts, encoding):
    """One problem per class that no mask of any split marks (a wrong threshold, channel count or folder)."""
    pixels = class_counts.groupby("class", sort=False)["pixels"].sum()
    return [f"class {name!r} has no pixel in any mask (values above data.threshold {encoding.threshold}, or above "
            f"0 in 0/1 masks, mark a class); check the masks, data.threshold or data.class_names"
            for name, count in pixels.items() if count == 0]
