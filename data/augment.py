"""Albumentations pipelines that move image and mask together (masks always nearest-neighbour)."""
import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402

from data.masks import IGNORE_INDEX  # noqa: E402

DEFAULT_AUGMENT = {
    "hflip": 0.5,
    "vflip": 0.0,
    "rotate90": 0.0,
    "scale": [0.75, 1.25],
    "rotate": 10.0,
    "affine_p": 0.7,
    "brightness_contrast": 0.2,
    "color_jitter": 0.0,
    "noise": 0.0,
    "elastic": 0.0,
}
"""Probabilities (flips, rotate90, affine_p, elastic), ranges (scale), degrees (rotate) and jitter amounts.
`elastic` is the U-Net paper's deformation: a 3x3 grid of random displacements (up to 10 pixels), interpolated."""


def _resize(size):
    return [A.Resize(*size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_NEAREST)] if size else []


def train_transform(crop_size, resize=None, **options):
    """Random scale/rotate, quarter turns, pad, random crop to `crop_size` (H, W), flips and photometric jitter.

    Padding and the corners that rotation uncovers get image value 0 and mask value IGNORE_INDEX, so they
    count in no loss or metric. `options` are the keys of DEFAULT_AUGMENT.
    """
    unknown = set(options) - set(DEFAULT_AUGMENT)
    if unknown:
        raise ValueError(f"unknown augment option(s) {', '.join(sorted(unknown))}; known: {', '.join(DEFAULT_AUGMENT)}")
    opt = {**DEFAULT_AUGMENT, **options}
    steps = _resize(resize)
    if opt["scale"] or opt["rotate"]:
        steps.append(A.Affine(
            scale=tuple(opt["scale"] or (1.0, 1.0)), rotate=(-opt["rotate"], opt["rotate"]),
            interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
            border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX, p=opt["affine_p"],
        ))
    if opt["rotate90"]:  # before the crop: a quarter turn of a non-square crop would swap its sides
        steps.append(A.RandomRotate90(p=opt["rotate90"]))
    steps += [
        A.PadIfNeeded(*crop_size, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX),
        A.RandomCrop(*crop_size),
    ]
    if opt["elastic"]:
        steps.append(A.GridElasticDeform(num_grid_xy=(3, 3), magnitude=10, interpolation=cv2.INTER_LINEAR,
                                         mask_interpolation=cv2.INTER_NEAREST, p=opt["elastic"]))
    if opt["hflip"]:
        steps.append(A.HorizontalFlip(p=opt["hflip"]))
    if opt["vflip"]:
        steps.append(A.VerticalFlip(p=opt["vflip"]))
    if opt["brightness_contrast"]:
        limit = opt["brightness_contrast"]
        steps.append(A.RandomBrightnessContrast(limit, limit, p=0.5))
    if opt["color_jitter"]:
        amount = opt["color_jitter"]
        steps.append(A.ColorJitter(brightness=0, contrast=0, saturation=amount, hue=amount / 4, p=0.5))
    if opt["noise"]:
        steps.append(A.GaussNoise(std_range=(0.0, opt["noise"]), p=0.3))
    return A.Compose(steps)


def eval_transform(divisor=1, resize=None):
    """Optional resize, then pad bottom/right to a multiple of `divisor` (mask padding is ignored).

    No crop: evaluation sees every pixel of the (resized) image; padding is ignored by losses and metrics.
    """
    return A.Compose(_resize(resize) + [
        A.PadIfNeeded(min_height=None, min_width=None, pad_height_divisor=divisor, pad_width_divisor=divisor,
                      position="top_left", border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX),
    ])
