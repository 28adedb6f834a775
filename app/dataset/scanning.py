"""One scan of a configured dataset (files, mask encoding, class names, input channels), shared by planning,
training and check_data."""
import json
import typing

from data.images import input_channels
from data.layouts import dataset_source
from data.scan import mask_encoding, scan


def class_names_for(config, encoding, facts=None):
    names = config.data.class_names or encoding.class_names
    if names:
        return [str(n) for n in names]
    if facts is not None and facts.class_names and len(facts.class_names) == encoding.num_classes:
        return [str(n) for n in facts.class_names]
    if encoding.palette is not None:
        palette = encoding.palette
        return [str(n) for i, n in zip(palette["index"], palette["name"]) if i != encoding.void][
            : encoding.num_classes]
    if encoding.kind == "binary" and encoding.num_classes == 2:
        return ["background", "foreground"]
    return [f"class_{i}" for i in range(encoding.num_classes)]


SCAN_FREE_KEYS = ("image_size", "resize", "cache", "one_hot", "normalization")
"""Keys of the data section that do not change what a scan reads (the plan sets some of them)."""


class ScannedDataset(typing.NamedTuple):
    """A dataset read once: its source (files, layout facts), mask encoding, class names, ScanResult, the
    settings it was read with (`scan_settings`) and the model's input channels (`data.channels` resolved)."""

    source: object
    encoding: object
    names: list
    result: object
    settings: str
    channels: int = 3
    channels_reason: str = "data.channels"


def resolve_channels(setting, frame):
    """(channels, reason) of the `data.channels` setting: its number, or for auto what the training images hold
    (`data.images.input_channels`)."""
    if setting != "auto":
        return int(setting), f"data.channels {setting}"
    rows = frame[frame["split"] == "train"] if (frame["split"] == "train").any() else frame
    return input_channels(rows["image"])


def scan_settings(config, runs_dir):
    """What a scan depends on: the data keys other than SCAN_FREE_KEYS, the seed and the runs folder."""
    data = {key: value for key, value in config.data.options().items() if key not in SCAN_FREE_KEYS}
    return json.dumps([data, config.seed, str(runs_dir)], sort_keys=True, default=str)


def scan_dataset(config, runs_dir=None, statistics=False, reuse=None):
    """The dataset read once, as training, planning and check_data read it (a ScannedDataset).

    `statistics` also collects the fingerprint statistics; `reuse` (an earlier scan, such as the plan's) is
    returned as it is when it read the data with the same settings.

    Raises:
        DatasetError: discovery problems (missing folders, unmatched files, bad CSV rows).
        ReadError: a mask encoding that cannot be inferred.
    """
    settings = scan_settings(config, runs_dir)
    if reuse is not None and reuse.settings == settings:
        return reuse
    data = config.data.options()
    source = dataset_source(data, config.seed, runs_dir)
    encoding = mask_encoding(data, source.frame, facts=source)
    names = class_names_for(config, encoding, source)
    channels, reason = resolve_channels(config.data.channels, source.frame)
    result = scan(source.frame, encoding, channels, names, statistics=statistics)
    return ScannedDataset(source, encoding, names, result, settings, channels, reason)
