"""Class colours (a run's palette CSV or a default palette), colour masks and overlays."""
import pathlib

import numpy as np

from data.masks import read_palette

BASE_COLOURS = [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
                (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128),
                (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0),
                (255, 215, 180), (0, 0, 128), (128, 128, 128)]
"""Class 0 black, then Trubetskoy's 20 distinct colours; further classes get seeded random colours."""


def default_palette(num_classes):
    """(num_classes, 3) uint8 RGB colours."""
    extra = np.random.default_rng(0).integers(0, 256, size=(max(num_classes - len(BASE_COLOURS), 0), 3))
    return np.concatenate([np.array(BASE_COLOURS, np.uint8), extra.astype(np.uint8)])[:num_classes]


def class_colours(config, num_classes, run_dir=None):
    """Colours of classes 0..num_classes-1: the run's palette.csv (colours the masks defined: palette PNG, VOC
    colour map), else the config's `data.palette` CSV (void row skipped) when it exists, else `default_palette`."""
    data = (config or {}).get("data", {})
    path = data.get("palette")
    colours = default_palette(num_classes)
    if run_dir is not None and (pathlib.Path(run_dir) / "palette.csv").is_file():
        path, data = pathlib.Path(run_dir) / "palette.csv", {}
    if path and pathlib.Path(path).is_file():
        table = read_palette(path)
        table = table[table["index"] != data.get("void")][["r", "g", "b"]].to_numpy()[:num_classes]
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
