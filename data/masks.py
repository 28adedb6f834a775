"""Read images and decode masks (class-index, binary or RGB palette) into class-index maps."""
import dataclasses
import pathlib

import cv2
import numpy as np
import pandas as pd

IGNORE_INDEX = 255
"""Value of void/ignored pixels in decoded masks (so at most 255 classes); losses and metrics ignore it."""

MASK_KINDS = ("index", "binary", "rgb")


class ReadError(ValueError):
    """A file that cannot be read or decoded; the message names the file."""


def read_palette(csv_path):
    """Read a palette CSV with columns name,r,g,b (optionally index) into a DataFrame ordered by class index."""
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
    if list(table["index"]) != list(range(len(table))):
        raise ReadError(f"{path}: palette indices must be 0..{len(table) - 1} without gaps")
    if table.duplicated(["r", "g", "b"]).any():
        raise ReadError(f"{path}: two palette rows share a colour")
    return table[["index", "name", "r", "g", "b"]]


def _to_unit_float(image):
    """Scale any integer or float image to float32 in [0, 1] by its dtype's range."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / np.iinfo(image.dtype).max
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def read_raw_image(path):
    """Read an image file unchanged as HxWxC (RGB order, alpha dropped, grey as one channel)."""
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ReadError(f"{path}: unreadable or corrupt image")
    if image.ndim == 2:
        return image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB) if image.shape[2] == 3 else image


def to_channels(image, channels, path="image"):
    """Convert a raw HxWxC image to float32 HxWx`channels` in [0, 1] (grey <-> RGB as needed)."""
    if image.shape[2] == 1 and channels == 3:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 3 and channels == 1:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    elif image.shape[2] != channels:
        raise ReadError(f"{path}: image has {image.shape[2]} channels, the model takes {channels}")
    return _to_unit_float(image)


def read_image(path, channels=3):
    """Read an image file as float32 HxWx`channels` in [0, 1], RGB order."""
    return to_channels(read_raw_image(path), channels, path)


def read_raw_mask(path):
    """Read a mask file unchanged (2-D for single-channel files, HxWx3 RGB for colour files)."""
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise ReadError(f"{path}: unreadable or corrupt mask")
    if mask.ndim == 3:
        mask = mask[..., :3]
        if (mask[..., 0] == mask[..., 1]).all() and (mask[..., 1] == mask[..., 2]).all():
            mask = mask[..., 0]
        else:
            mask = cv2.cvtColor(mask, cv2.COLOR_BGR2RGB)
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
            e.g. 0/255 or near-binary JPEG masks) or "rgb" (colour looked up in `palette`).
        num_classes: number of classes the model predicts (void excluded).
        void: file value (index masks) or palette index (rgb masks) of void pixels, which are ignored.
        threshold: binary masks: values above it are foreground (class 1).
        invert: binary masks: swap foreground and background (e.g. ISBI, where 0 = membrane).
        palette: rgb masks: DataFrame from `read_palette`.
    """

    kind: str
    num_classes: int
    void: int | None = None
    threshold: int = 127
    invert: bool = False
    palette: pd.DataFrame | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self):
        if self.kind not in MASK_KINDS:
            raise ValueError(f"unknown mask kind {self.kind!r}; choose one of {', '.join(MASK_KINDS)}")
        if self.kind == "rgb" and self.palette is None:
            raise ValueError("rgb masks need a palette CSV (data.palette)")
        if not 1 <= self.num_classes < IGNORE_INDEX:
            raise ValueError(f"num_classes must be 1..{IGNORE_INDEX - 1}, got {self.num_classes}")

    def decode(self, raw, path="mask"):
        """Raw mask -> uint8 class-index map with void as IGNORE_INDEX.

        Raises:
            ReadError: naming `path` for values outside the classes (and not void) or unknown colours.
        """
        if self.kind == "binary":
            grey = raw if raw.ndim == 2 else cv2.cvtColor(raw, cv2.COLOR_RGB2GRAY)
            return ((grey > self.threshold) != self.invert).astype(np.uint8)
        if self.kind == "rgb":
            return self._decode_rgb(raw, path)
        if raw.ndim != 2:
            raise ReadError(f"{path}: colour mask but data.mask is 'index' (use 'rgb' with a palette)")
        labels = raw.astype(np.int64)
        valid = labels < self.num_classes
        if self.void is not None:
            valid |= labels == self.void
        if not valid.all():
            bad = np.unique(labels[~valid])
            raise ReadError(
                f"{path}: mask values {_short(bad)} outside classes 0..{self.num_classes - 1}"
                + (f" and void {self.void}" if self.void is not None else "")
            )
        out = labels.astype(np.uint8)
        if self.void is not None:
            out[labels == self.void] = IGNORE_INDEX
        return out

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
