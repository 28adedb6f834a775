"""Synthetic shapes datasets written to disk as real image/mask files, for tests and demos."""
import dataclasses
import pathlib

import cv2
import numpy as np
import pandas as pd

PALETTE = [(0, 0, 0), (220, 20, 60), (0, 128, 255), (255, 200, 0), (60, 180, 75), (145, 30, 180)]


def shapes_sample(rng, size=(64, 64), num_classes=3):
    """One RGB image and its class-index mask: a noisy background with random discs and boxes of classes 1..C-1."""
    height, width = size
    mask = np.zeros(size, np.uint8)
    for _ in range(int(rng.integers(2, 5))):
        label = int(rng.integers(1, num_classes))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        extent = int(rng.integers(max(3, min(size) // 10), max(4, min(size) // 4)))
        if rng.random() < 0.5:
            cv2.circle(mask, centre, extent, label, -1)
        else:
            cv2.rectangle(mask, centre, (centre[0] + extent, centre[1] + extent), label, -1)
    colours = rng.integers(40, 255, size=(num_classes, 3))
    colours[0] = 20
    image = colours[mask].astype(np.float32) + rng.normal(0, 12, size=(height, width, 3))
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_shapes_dataset(root, count=8, size=(64, 64), num_classes=3, mask_kind="index", layout="paired",
                         void_value=None, seed=0, extension=".png"):
    """Write `count` image/mask pairs under `root` and return its path.

    mask_kind: "index" (pixel = class), "binary" (0/255, needs num_classes=2) or "rgb" (colours from PALETTE,
    with `root/palette.csv`). layout: "paired" (images/, masks/), "segnet" (train/, trainannot/, val/,
    valannot/: last quarter is val) or "csv" (files in one folder plus `root/index.csv`). With `void_value`,
    a 3-pixel border of each index mask is set to that value.
    """
    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        image, mask = shapes_sample(rng, size, num_classes)
        split = "val" if i >= count - max(1, count // 4) else "train"
        if void_value is not None:
            mask[:3, :] = void_value
        if mask_kind == "binary":
            encoded = (mask > 0).astype(np.uint8) * 255
        elif mask_kind == "rgb":
            encoded = cv2.cvtColor(np.array(PALETTE, np.uint8)[mask], cv2.COLOR_RGB2BGR)
        else:
            encoded = mask
        image_dir, mask_dir = {
            "paired": ("images", "masks"),
            "segnet": (split, f"{split}annot"),
            "csv": ("files", "files"),
        }[layout]
        stem = f"sample_{i:03d}"
        image_path = root / image_dir / f"{stem}{extension}"
        mask_path = root / mask_dir / (f"{stem}.png" if layout != "csv" else f"{stem}_mask.png")
        image_path.parent.mkdir(parents=True, exist_ok=True)
        mask_path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(image_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(mask_path), encoded)
        rows.append({"image": str(image_path.relative_to(root)), "mask": str(mask_path.relative_to(root)),
                     "split": split})
    if layout == "csv":
        pd.DataFrame(rows).to_csv(root / "index.csv", index=False)
    if mask_kind == "rgb":
        pd.DataFrame([{"name": f"class_{i}", "r": r, "g": g, "b": b}
                      for i, (r, g, b) in enumerate(PALETTE[:num_classes])]).to_csv(root / "palette.csv", index=False)
    return root


@dataclasses.dataclass(frozen=True)
class DatasetShape:
    """What a generated dataset looks like: the shapes users bring (`write_dataset`).

    sizes: (H, W) of the images, cycled (several: mixed sizes); channels: 1, 3, 4 or 8 (4 and 8 as TIFF);
    bits: 8 or 16; classes: 2 to 255; objects: "specks" (2-6 px across), "small", "medium" or "frame" (one object
    filling much of the image); masks: "binary" (0/255), "index", "palette" (palette PNG) or "jpeg" (grey levels
    spread over 0..255, JPEG-compressed); upright: classes sit in horizontal bands (sky over road), else anywhere;
    val_folder: train/ and val/ folders, else one images/ + masks/ pair (a validation split is carved);
    image_format: "png", "jpg" or "tif".
    """

    sizes: tuple = ((96, 128),)
    count: int = 12
    channels: int = 3
    bits: int = 8
    classes: int = 2
    objects: str = "medium"
    masks: str = "index"
    upright: bool = False
    val_folder: bool = False
    image_format: str = "png"


def shaped_sample(rng, size, shape):
    """One (image, class-index mask) of `shape` at `size`: objects of classes 1.., each class its own intensity
    and texture, so that the classes can be learnt."""
    height, width = size
    mask = np.zeros(size, np.uint8)
    classes = shape.classes
    if shape.upright:
        bands = np.linspace(0, height, classes + 1).astype(int)
        for label in range(classes):
            mask[bands[label]:bands[label + 1]] = label
        mask = np.roll(mask, int(rng.integers(-height // 10, height // 10 + 1)), axis=0)
    else:
        side = min(size)
        radius = {"specks": (1, 3), "small": (max(2, side // 40), max(3, side // 16)),
                  "medium": (max(3, side // 10), max(4, side // 4)), "frame": (side // 3, side // 2)}[shape.objects]
        count = {"specks": 25, "small": 12, "medium": 4, "frame": 1}[shape.objects]
        labels = rng.permutation(np.arange(1, classes))[:max(count, 1)] if classes > count else \
            rng.integers(1, classes, count)
        for label in np.resize(labels, count):
            centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            axes = tuple(int(a) for a in rng.integers(radius[0], radius[1] + 1, 2))
            cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, int(label), -1)
    levels = rng.permutation(classes) / max(classes - 1, 1)
    image = levels[mask][..., None] * 0.6 + 0.2 + rng.normal(0, 0.05, (height, width, shape.channels))
    image[..., 0] += 0.1 * np.sin(np.arange(width) / 3.0)[None] * (mask % 2)  # a texture on odd classes
    top = 255 if shape.bits == 8 else 65535
    image = np.clip(image, 0, 1) * (top if shape.bits == 8 else 4000)  # 16-bit: a camera's 12-bit range
    return image.astype(np.uint8 if shape.bits == 8 else np.uint16), mask


def _write_image(path, image, shape):
    import tifffile

    if shape.image_format == "tif" or shape.channels not in (1, 3):
        tifffile.imwrite(path.with_suffix(".tif"), image, photometric="minisblack" if shape.channels != 3 else "rgb",
                         planarconfig="contig")
        return
    pixels = image[..., 0] if shape.channels == 1 else cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(path.with_suffix("." + shape.image_format)), pixels)


def _write_mask(path, mask, shape):
    from PIL import Image

    if shape.masks == "binary":
        cv2.imwrite(str(path.with_suffix(".png")), (mask > 0).astype(np.uint8) * 255)
    elif shape.masks == "palette":
        image = Image.fromarray(mask, mode="P")
        colours = np.random.default_rng(7).integers(0, 256, (256, 3)).astype(np.uint8)
        colours[0] = 0
        image.putpalette(colours.flatten().tolist())
        image.save(path.with_suffix(".png"))
    elif shape.masks == "jpeg":
        levels = np.linspace(0, 255, shape.classes).round().astype(np.uint8)
        cv2.imwrite(str(path.with_suffix(".jpg")), levels[mask], [cv2.IMWRITE_JPEG_QUALITY, 90])
    else:
        cv2.imwrite(str(path.with_suffix(".png")), mask)


def write_dataset(root, shape, seed=0):
    """Write a dataset of `shape` (a DatasetShape) under `root` as real files; returns `root`.

    A quarter of the images (at least one) go to validation: into val/ with `val_folder`, else the layout's
    seeded split carves them. Every class occurs in the training masks.
    """
    root = pathlib.Path(root)
    rng = np.random.default_rng(seed)
    for index in range(shape.count):
        size = shape.sizes[index % len(shape.sizes)]
        image, mask = shaped_sample(rng, size, shape)
        block = max(2, min(size) // 16)  # every class in some mask, even with more classes than images
        stamped = [c for c in range(1, shape.classes) if (c - 1) % shape.count == index % shape.count]
        for position, label in enumerate(stamped):
            row, left = divmod(position * block, size[1] - size[1] % block)
            mask[row * block: (row + 1) * block, left: left + block] = label
        split = "val" if shape.val_folder and index >= shape.count - max(1, shape.count // 4) else "train"
        base = root / split if shape.val_folder else root
        stem = f"case_{index:03d}"
        for folder in ("images", "masks"):
            (base / folder).mkdir(parents=True, exist_ok=True)
        _write_image(base / "images" / stem, image, shape)
        _write_mask(base / "masks" / stem, mask, shape)
    return root
