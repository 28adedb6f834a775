"""Multi-label runs (`data.mask: multilabel`): loss and metrics, scores, prediction masks and the evaluation report.

A multi-label model has one sigmoid output per class (classes may overlap); everything here thresholds the
class probabilities (default 0.5) instead of taking an argmax. The run folder's config.yaml says
`data.mask: multilabel`, which is how prediction, evaluation and export recognise such a run.
"""
import pathlib

import numpy as np

from app.inference.predictor import predict_image
from app.runtime.outputs import output_dir, write_image

DEFAULT_THRESHOLD = 0.5




def sigmoid(logits):
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, np.float32)))






def probabilities(predictor, image, **options):
    """(H, W, C) float32 class probabilities of an image (`app.inference.predictor.predict_image` options).

    Keras models give logits (sigmoid applied here); exported LiteRT models already end in a sigmoid.
    """
    scores = predict_image(predictor, image, **options)
    return scores if not hasattr(predictor.model, "output_shape") else sigmoid(scores)


def predict_masks(predictor, image, threshold=DEFAULT_THRESHOLD, **options):
    """(H, W, C) uint8 binary masks (1 = class present): probabilities above `threshold`."""
    return (probabilities(predictor, image, **options) > threshold).astype(np.uint8)


def write_masks(out, stem, masks, class_names):
    """Write `out/<class>/<stem>.png` (0/255) for each class: the per-class folder layout training reads."""
    for index, name in enumerate(class_names):
        write_image(output_dir(pathlib.Path(out) / name) / f"{stem}.png", masks[..., index] * 255)


def colourise(masks, colours):
    """(H, W, C) binary masks -> (H, W, 3) uint8 RGB: the mean colour of the classes present, black where none."""
    masks = np.asarray(masks, np.float32)
    present = masks.sum(-1, keepdims=True)
    mean = masks @ np.asarray(colours, np.float32) / np.maximum(present, 1)
    return mean.round().astype(np.uint8)


def overlay(image, masks, colours, alpha=0.5):
    """Blend `colourise` over a uint8 RGB image where any class is present."""
    coloured = colourise(masks, colours).astype(np.float32)
    blended = np.where(np.asarray(masks).any(-1, keepdims=True), (1 - alpha) * image + alpha * coloured, image)
    return blended.round().astype(np.uint8)




