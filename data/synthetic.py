"""Synthetic shapes datasets written to disk as real image/mask files, for tests and demos."""
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
