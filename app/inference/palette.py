"""Class colours (a run's palette CSV or a default palette), colour masks and overlays."""
import pathlib

import numpy as np

from data.colormaps import default_palette
from data.masks import read_palette


def class_colours(config, num_classes, run_dir=None):
    """Colours of classes 0..num_classes-1: the run's palette.csv (colours the masks defined: palette PNG, VOC
    colour map), else the config's `data.palette` CSV (void row skipped) when it exists, else `default_palette`."""
    path, void = (config.data.palette, config.data.void) if config is not None else (None, None)
    colours = default_palette(num_classes)
    if run_dir is not None and (pathlib.Path(run_dir) / "palette.csv").is_file():
        path, void = pathlib.Path(run_dir) / "palette.csv", None
    if path and pathlib.Path(path).is_file():
        table = read_palette(path)
        table = table[table["index"] != void][["r", "g", "b"]].to_numpy()[:num_classes]
        colours[: len(table)] = table
    return colours


def colourise(labels, colours):
    """HxW class indices -> HxWx3 uint8 RGB; indices without a colour (void) become white."""
    lookup = np.full((256, 3), 255, np.uint8)
    lookup[: len(colours)] = colours
    return lookup[np.asarray(labels, np.uint8)]


def overlay(image, labels, colours, alpha=0.5):
    """Blend class colours over a uint8 RGB image; void pixels (no colour) keep the image."""
    coloured = colourise(labels, colours).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * coloured
    keep = np.asarray(labels) >= len(colours)
    blended[keep] = image[keep]
    return blended.round().astype(np.uint8)


def display_image(image):
    """Float [0, 1] HxWxC model input -> uint8 RGB for overlays (grey repeated; of more bands, the first 3)."""
    image = np.clip(np.asarray(image) * 255.0, 0, 255).round().astype(np.uint8)
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image[..., :3]
