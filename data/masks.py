"""Decode masks (class-index, binary or RGB palette) into class-index maps."""
import dataclasses
import pathlib

import cv2
import numpy as np
import pandas as pd

from data.images import ReadError, read_array, read_image, read_raw_image, to_channels  # noqa: F401 (re-exported)

IGNORE_INDEX = 255
"""Value of void/ignored pixels in decoded masks (so at most 255 classes); losses and metrics ignore it."""

MASK_KINDS = ("index", "binary", "rgb")


def read_palette(csv_path):
    """Read a palette CSV with columns name,r,g,b (optionally index) into a DataFrame ordered by class index.

    Indexes are 0..N-1 without gaps, plus optionally a row with index 255 (IGNORE_INDEX): the void colour.
    """
    path = pathlib.Path(csv_path)
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ReadError(f"{path}: cannot read palette CSV ({err})") from None
    table.columns = [c.strip().lower() for c in table.columns]
    missing = {"name", "r", "g", "b"} - set(table.columns)
    if missing:
        raise ReadError(f"{path}: palette needs columns name,r,g,b; missing {', '.join(sorted(missing))}")
    if "index" not in table.columns:
        table["index"] = range(len(table))
    table = table.sort_values("index").reset_index(drop=True)
    classes = [i for i in table["index"] if i != IGNORE_INDEX]
    if classes != list(range(len(classes))):
        raise ReadError(f"{path}: palette indices must be 0..{len(classes) - 1} without gaps (and 255 for void)")
    if table.duplicated(["r", "g", "b"]).any():
        raise ReadError(f"{path}: two palette rows share a colour")
    return table[["index", "name", "r", "g", "b"]]


def read_raw_mask(path, colour=False):
    """Read a mask file as stored: 2-D for single-channel files (8 or 16 bits) and for the indexes of palette
    ("P" mode) PNGs, HxWx3 RGB for colour files (palette files too with `colour`); grey RGB files become 2-D."""
    mask, _ = read_array(path, "mask", keep_palette=not colour)
    return mask_array(mask)


def mask_array(mask):
    """A mask as decoding takes it: one channel squeezed, colour channels beyond RGB dropped, grey RGB -> 2-D."""
    if mask.ndim == 3 and mask.shape[2] == 1:
        return mask[..., 0]
    if mask.ndim == 3:
        mask = mask[..., :3]
        if (mask[..., 0] == mask[..., 1]).all() and (mask[..., 1] == mask[..., 2]).all():
            mask = mask[..., 0]
    return mask


def read_instances(path):
    """Read a 16-bit (or 8-bit) instance map: 0 = background, 1..N one id per object."""
    instances = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if instances is None or instances.ndim != 2:
        raise ReadError(f"{path}: unreadable instance map (need a single-channel image)")
    return instances.astype(np.int32)


@dataclasses.dataclass(frozen=True)
class MaskEncoding:
    """How mask files encode classes.

    Args:
        kind: "index" (pixel value = class, 0..num_classes-1), "binary" (foreground where value > threshold,
            e.g. 0/1, 0/255 or near-binary JPEG masks) or "rgb" (colour looked up in `palette`).
        num_classes: number of classes the model predicts (void excluded).
        void: file value (index and binary masks) or palette index (rgb masks) of void pixels, which are ignored.
        threshold: binary masks: values above it are foreground (class 1): 0 for 0/1 masks, 127 for 0/255.
        invert: binary masks: swap foreground and background (e.g. ISBI, where 0 = membrane).
        palette: rgb masks: DataFrame from `read_palette` (columns index, name, r, g, b).
        label_map: index masks: {file value: class index or 255 for void} applied first (e.g. Cityscapes
            label ids -> train ids); file values missing from it are errors.
        reason: why this encoding was chosen (printed by check_data and training).
        colours: (num_classes, 3) uint8 class colours the masks themselves define (palette PNG, colour map,
            palette CSV), or None.
        class_names: class names the dataset defines, or None.
        class_source: where a fixed class count comes from (a label file such as CVAT's labelmap.txt), or None
            where it is what the masks use; classes no mask uses are then expected, not a mistake.
        levels: index masks: grey levels that stand for classes 0..len-1 (JPEG masks of a few well-separated
            levels); each value is snapped to the nearest level. None: values are class indexes.
    """

    kind: str
    num_classes: int
    void: int | None = None
    threshold: int = 127
    invert: bool = False
    palette: pd.DataFrame | None = dataclasses.field(default=None, compare=False)
    label_map: dict | None = None
    reason: str = dataclasses.field(default="", compare=False)
    colours: np.ndarray | None = dataclasses.field(default=None, compare=False)
    class_names: tuple | None = dataclasses.field(default=None, compare=False)
    class_source: str | None = dataclasses.field(default=None, compare=False)
    levels: tuple | None = None

    def __post_init__(self):
        if self.kind not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {self.kind!r}; choose one of {', '.join(MASK_KINDS)}")
        if self.kind == "rgb" and self.palette is None:
            raise ValueError("rgb masks need a palette CSV (data.palette)")
        if not 1 <= self.num_classes < IGNORE_INDEX:
            raise ValueError(f"num_classes must be 1..{IGNORE_INDEX - 1}, got {self.num_classes}")
        if self.label_map:
            values = [int(v) for v in self.label_map if int(v) >= 0]
            lookup = np.full(max(values) + 1, -1, np.int64)
            for value, label in self.label_map.items():
                if int(value) >= 0:
                    lookup[int(value)] = int(label)
            object.__setattr__(self, "_lookup", lookup)

    def describe(self):
        """One line: kind, class count, void and why, e.g. "index masks, 21 classes, void 255 (palette PNG)"."""
        text = f"{self.kind} masks, {self.num_classes} classes"
        text += f", void {self.void}" if self.void is not None else ""
        return text + (f" ({self.reason})" if self.reason else "")

    def read(self, path):
        """Read and decode one mask file (see `decode`)."""
        return self.decode(read_raw_mask(path, colour=self.kind == "rgb"), path)

    def decode(self, raw, path="mask"):
        """Raw mask -> uint8 class-index map with void as IGNORE_INDEX.

        Raises:
            ReadError: naming `path` for values outside the classes (and not void) or unknown colours.
        """
        if self.kind == "binary":
            grey = raw if raw.ndim == 2 else cv2.cvtColor(raw, cv2.COLOR_RGB2GRAY)
            out = ((grey > self.threshold) != self.invert).astype(np.uint8)
            if self.void is not None:
                out[grey == self.void] = IGNORE_INDEX
            return out
        if self.kind == "rgb":
            return self._decode_rgb(raw, path)
        if raw.ndim != 2:
            raise ReadError(f"{path}: colour mask but data.mask is 'index' (use --mask rgb with "
                            f"--set data.palette=PALETTE.csv)")
        labels = raw.astype(np.int64)
        if self.levels:
            labels = self._snap(labels)
        if self.label_map:
            labels = self._map_labels(labels, path)
            void = IGNORE_INDEX
        else:
            void = self.void
        valid = labels < self.num_classes
        if void is not None:
            valid |= labels == void
        if not valid.all():
            bad = np.unique(labels[~valid])
            raise ReadError(
                f"{path}: mask values {_short(bad)} outside classes 0..{self.num_classes - 1}"
                + (f" and void {void}" if void is not None else "")
                + (" (after the label map)" if self.label_map else "")
            )
        out = labels.astype(np.uint8)
        if void is not None:
            out[labels == void] = IGNORE_INDEX
        return out

    def _snap(self, labels):
        """Each value -> the index of the nearest of `levels` (ties go to the lower level)."""
        levels = np.asarray(self.levels, np.int64)
        top = max(int(labels.max(initial=0)), int(levels.max())) + 1
        table = np.abs(np.arange(top)[:, None] - levels[None, :]).argmin(axis=1)
        return table[labels]

    def _map_labels(self, labels, path):
        lookup = self._lookup
        inside = (labels >= 0) & (labels < len(lookup))
        mapped = np.where(inside, lookup[np.clip(labels, 0, len(lookup) - 1)], -1)
        if (mapped < 0).any():
            raise ReadError(f"{path}: mask values {_short(np.unique(labels[mapped < 0]))} are not in the label map")
        return mapped

    def _decode_rgb(self, raw, path):
        if raw.ndim == 2:
            raw = np.repeat(raw[..., None], 3, axis=2)
        codes = (raw[..., 0].astype(np.int64) << 16) | (raw[..., 1].astype(np.int64) << 8) | raw[..., 2]
        palette = self.palette
        palette_codes = (palette["r"].to_numpy() << 16) | (palette["g"].to_numpy() << 8) | palette["b"].to_numpy()
        order = np.argsort(palette_codes)
        sorted_codes = palette_codes[order]
        position = np.clip(np.searchsorted(sorted_codes, codes), 0, len(sorted_codes) - 1)
        known = sorted_codes[position] == codes
        if not known.all():
            unknown = np.unique(codes[~known])
            colours = ", ".join(f"({c >> 16},{(c >> 8) & 255},{c & 255})" for c in unknown[:5])
            raise ReadError(f"{path}: {len(unknown)} colour(s) not in the palette: {colours}")
        labels = palette["index"].to_numpy()[order][position]
        out = labels.astype(np.uint8)
        if self.void is not None:
            out[labels == self.void] = IGNORE_INDEX
        if (labels[labels != self.void] >= self.num_classes).any():
            raise ReadError(f"{path}: palette index beyond num_classes={self.num_classes}")
        return out


def _short(values, limit=8):
    text = ", ".join(str(v) for v in values[:limit])
    return text + (f", ... ({len(values)} values)" if len(values) > limit else "")
