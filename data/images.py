"""The one reader of image files (training, evaluation, check_data and predict): files as a viewer shows them.

- PNG, JPEG, BMP and other Pillow formats: EXIF orientation applied (the view labelling tools and photo viewers
  show), damaged or truncated files refused with their path; 16-bit grey PNGs stay 16-bit, and 16-bit colour
  PNGs (which Pillow reduces to 8 bits) are decoded by OpenCV.
- TIFF: `tifffile`, any dtype and any number of bands (microscopy, remote sensing), channels last.
- Palette ("P" mode) files: expanded to RGB for images; masks may keep the indexes (`read_array(keep_palette=True)`).
"""
import pathlib
import warnings

import cv2
import numpy as np
import tifffile
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
"""File suffixes that dataset layouts list as images."""

TIFF_SUFFIXES = (".tif", ".tiff")
MAX_CHANNELS = 64
"""More bands than this on the last or first axis is taken as a stack (z or time), which is refused."""
ORIENTATION_TAG = 0x0112
Image.MAX_IMAGE_PIXELS = 2**29
"""Pillow refuses images over twice this (2**30 pixels, OpenCV's own limit): aerial mosaics fit, bombs do not."""


class ReadError(ValueError):
    """A file that cannot be read or decoded; the message names the file."""


def _damaged(path, what, err):
    detail = str(err) or type(err).__name__
    if "truncated" in detail:
        return ReadError(f"{path}: damaged {what}: {detail}; re-save or remove the file")
    if isinstance(err, UnidentifiedImageError):
        return ReadError(f"{path}: unreadable or corrupt {what}")
    return ReadError(f"{path}: unreadable or corrupt {what} ({detail})")


def _png_is_16bit_colour(path):
    with open(path, "rb") as file:
        header = file.read(26)
    return len(header) == 26 and header[24] == 16 and header[25] in (2, 6)


def _channels_last(array, axes, path, what):
    """An HxW or HxWxC array from a TIFF series of any axis order (length-1 axes dropped).

    Samples (S) or channels (C) move last; an axis of unknown meaning (pages written by a tool that did not say)
    is taken as the bands when it is the first or last axis and the shorter of the two.
    """
    keep = [i for i, size in enumerate(array.shape) if size > 1 or axes[i] in "YX"]
    array = array.reshape([array.shape[i] for i in keep])
    axes = "".join(axes[i] for i in keep)
    if array.ndim == 2:
        return array
    if array.ndim == 3 and "Y" in axes and "X" in axes and axes.index("Y") < axes.index("X"):
        band = next(i for i, a in enumerate(axes) if a not in "YX")
        if axes[band] in "SC" and array.shape[band] <= MAX_CHANNELS:
            return np.moveaxis(array, band, -1)
    if array.ndim == 3 and min(array.shape[0], array.shape[2]) <= MAX_CHANNELS:
        return array if array.shape[2] <= array.shape[0] else np.moveaxis(array, 0, -1)
    raise ReadError(f"{path}: TIFF {what} of shape {array.shape} (axes {axes}): need one plane with up to "
                    f"{MAX_CHANNELS} bands, not a z-stack or time series; save one image per file")


def _read_tiff(path, what):
    try:
        with tifffile.TiffFile(path) as tiff:
            series = tiff.series[0]
            array = series.asarray()
            axes = series.axes
    except (OSError, ValueError, KeyError, IndexError, tifffile.TiffFileError) as err:
        raise _damaged(path, what, err) from None
    return _channels_last(array, axes, path, what)


def _pillow_array(image, keep_palette):
    """(array, palette) of a loaded Pillow image; palette is (256, 3) uint8 for kept "P" indexes."""
    mode = image.mode
    if mode in ("P", "PA") and keep_palette:
        palette = np.zeros((256, 3), np.uint8)
        colours = np.frombuffer(bytes(image.getpalette("RGB") or b""), np.uint8).reshape(-1, 3)[:256]
        palette[: len(colours)] = colours
        indexes = np.asarray(image.getchannel(0) if mode == "PA" else image)
        return indexes, palette
    if mode == "1":
        image = image.convert("L")
    elif mode == "LA":
        image = image.getchannel(0)
    elif mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16), None
    elif mode not in ("L", "I", "F", "RGB", "RGBA"):
        image = image.convert("RGB")
    array = np.asarray(image)
    return (array[..., :3] if array.ndim == 3 else array), None


def read_array(path, what="image", keep_palette=False):
    """(array, palette) of one file as shown: HxW or HxWxC (RGB order, alpha dropped), dtype as stored.

    `palette` is the (256, 3) colour table of a palette ("P" mode) file read with `keep_palette` (the array then
    holds its indexes), else None.

    Raises:
        ReadError: naming `path` and `what` ("image", "mask") for unreadable, corrupt or truncated files.
    """
    path = pathlib.Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _read_tiff(path, what), None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.format == "PNG" and image.mode in ("RGB", "RGBA") and _png_is_16bit_colour(path):
                    image.verify()
                    return _read_16bit_colour_png(path, what), None
                image.load()
                if image.getexif().get(ORIENTATION_TAG, 1) != 1:
                    image = ImageOps.exif_transpose(image)
                return _pillow_array(image, keep_palette)
    except ReadError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise _damaged(path, what, err) from None


def _read_16bit_colour_png(path, what):
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ReadError(f"{path}: unreadable or corrupt {what}")
    return cv2.cvtColor(array[..., :3], cv2.COLOR_BGR2RGB)


def read_raw_image(path):
    """Read an image file as stored, oriented as shown: HxWxC (RGB order, alpha dropped, grey as one channel)."""
    image, _ = read_array(path, "image")
    return image[..., None] if image.ndim == 2 else image


def match_channels(image, channels, path="image"):
    """A raw HxWxC image with `channels` channels (grey <-> RGB as needed), dtype unchanged."""
    if image.shape[2] == 1 and channels == 3:
        return np.repeat(image, 3, axis=2)
    if image.shape[2] == 3 and channels == 1:
        if image.dtype not in (np.uint8, np.uint16, np.float32):
            image = image.astype(np.float32)
        return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None]
    if image.shape[2] != channels:
        raise ReadError(f"{path}: image has {image.shape[2]} channels, the model takes {channels}")
    return image


CHANNEL_PEEK = 8
"""Training images whose channel count `input_channels` reads."""


def input_channels(paths):
    """(channels, reason): what `data.channels: auto` resolves to from the first CHANNEL_PEEK image files: 3 for
    grey and RGB files (grey is repeated; pretrained encoders take RGB), else the files' band count (multi-band
    TIFF: RGB+NIR, 8-band satellite images); files that differ are reported by the scan."""
    counts = {}
    for path in list(paths)[:CHANNEL_PEEK]:
        try:
            channels = read_raw_image(path).shape[2]
        except ReadError:
            continue
        counts[channels] = counts.get(channels, 0) + 1
    if not counts or set(counts) <= {1, 3}:
        return 3, "grey or RGB image files: 3 input channels"
    channels = max(counts, key=counts.get)
    return channels, f"{channels}-band image files: {channels} input channels"


def to_unit_float(image):
    """Scale any integer or float image to float32 in [0, 1] by its dtype's range (floats are clipped)."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / np.iinfo(image.dtype).max
    return np.clip(image.astype(np.float32), 0.0, 1.0)


def to_channels(image, channels, path="image"):
    """Convert a raw HxWxC image to float32 HxWx`channels` in [0, 1] by its dtype's range."""
    return to_unit_float(match_channels(image, channels, path))


def read_image(path, channels=3, normalization=None):
    """Read an image file as the model input: float32 HxWx`channels`, RGB order.

    `normalization` (a `data.normalization.Normalization`) maps raw values to [0, 1]; None scales by the dtype's
    range (8-bit: /255).
    """
    image = match_channels(read_raw_image(path), channels, path)
    return to_unit_float(image) if normalization is None else normalization.apply(image)
