"""Input normalisation: raw image values -> float32 in [0, 1], the same in training, evaluation, predict and export.

`data.normalization` in the config:
- "auto" (default): "unit" when every image is 8-bit with 1 or 3 channels (ordinary PNG/JPEG), else "percentile".
- "unit": divide by the dtype's range (8-bit /255, 16-bit /65535), as segkit always did for 8-bit images.
- "percentile": per channel, the training images' 0.5th and 99.5th percentiles map to 0 and 1 (values beyond
  are clipped): 12-bit microscopy in 16-bit files, remote-sensing reflectances, float bands.
- {method: percentile, low: [...], high: [...]}: the resolved statistics, written into a run's config.yaml by
  training so that predict, evaluate and export normalise exactly as training did.
"""
import dataclasses

import numpy as np

from data.images import to_unit_float

METHODS = ("auto", "unit", "percentile")
PERCENTILES = (0.5, 99.5)
SAMPLE_PIXELS = 1_000_000
"""Pixels per channel that the scan samples (evenly over the images) to estimate the percentiles."""


class NormalizationError(ValueError):
    """A bad `data.normalization` value; the message names the key."""


@dataclasses.dataclass(frozen=True)
class Normalization:
    """How raw values become model inputs: "unit" (dtype range) or "percentile" (per-channel `low`/`high`)."""

    method: str = "unit"
    low: tuple | None = None
    high: tuple | None = None

    def apply(self, image):
        """HxWxC raw image -> float32 HxWxC in [0, 1]."""
        if self.method == "unit":
            return to_unit_float(image)
        low, high = np.asarray(self.low, np.float32), np.asarray(self.high, np.float32)
        scaled = (image.astype(np.float32) - low) / np.maximum(high - low, np.float32(1e-12))
        return np.clip(scaled, 0.0, 1.0)

    def to_config(self):
        """The config value that gives back this normalisation."""
        if self.method == "unit":
            return "unit"
        return {"method": "percentile", "low": [float(v) for v in self.low], "high": [float(v) for v in self.high]}

    def describe(self):
        if self.method == "unit":
            return "unit (values / dtype range)"
        pairs = ", ".join(f"{lo:g}..{hi:g}" for lo, hi in zip(self.low, self.high))
        return f"percentile {PERCENTILES[0]}-{PERCENTILES[1]} per channel: {pairs} -> 0..1"


def from_config(value, channels):
    """The Normalization a config value fixes, or None where the data must decide ("auto", "percentile").

    Raises:
        NormalizationError: naming data.normalization for unknown methods or statistics of the wrong length.
    """
    if value is None or value == "unit":
        return Normalization()
    if value in ("auto", "percentile"):
        return None
    if isinstance(value, dict) and value.get("method") == "percentile":
        low, high = value.get("low"), value.get("high")
        if not (isinstance(low, list) and isinstance(high, list) and len(low) == len(high) == channels):
            raise NormalizationError(f"data.normalization: percentile statistics need low and high lists of "
                                     f"{channels} values (data.channels), got low={low!r} high={high!r}")
        return Normalization("percentile", tuple(map(float, low)), tuple(map(float, high)))
    raise NormalizationError(f"data.normalization must be one of {', '.join(METHODS)} or "
                             f"{{method: percentile, low: [...], high: [...]}}, got {value!r}")


def is_ordinary(dtypes, channel_counts):
    """True for 8-bit images with 1 or 3 channels (ordinary PNG/JPEG), which "auto" scales by /255."""
    return set(dtypes) <= {"uint8"} and set(channel_counts) <= {1, 3}


def pixel_sample(image, count, seed):
    """(count, C) float32 pixels drawn from an HxWxC image, reproducibly under `seed`."""
    flat = image.reshape(-1, image.shape[-1])
    picks = np.random.default_rng(seed).integers(0, len(flat), size=min(count, len(flat)))
    return flat[picks].astype(np.float32)


def resolve(value, channels, dtypes, channel_counts, sample):
    """The Normalization of a dataset: `value` from the config, decided by the scanned files where needed.

    Args:
        value: data.normalization.
        channels: data.channels (model input channels).
        dtypes: dtype names of the images (strings).
        channel_counts: channels of the image files.
        sample: (N, channels) float32 pixels of the training images (see `pixel_sample`), or None.
    """
    fixed = from_config(value, channels)
    if fixed is not None:
        return fixed
    if value == "auto" and is_ordinary(dtypes, channel_counts):
        return Normalization()
    if sample is None or not len(sample):
        raise NormalizationError("data.normalization: no training pixels to compute percentiles from")
    low, high = np.percentile(sample, PERCENTILES, axis=0)
    return Normalization("percentile", tuple(map(float, low)), tuple(map(float, high)))
