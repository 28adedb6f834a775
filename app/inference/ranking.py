"""Which unlabelled images to label next: score each image by the model's uncertainty, most useful first.

Per pixel, from the softmax of the plain view and of each flip the run trained with (its test-time views):
- entropy: the entropy of the views' mean probabilities, divided by log(classes) (0 sure .. 1 uniform);
- disagreement: the mutual information between the views and the prediction (the mean probabilities' entropy
  minus the views' mean entropy, same scale): high where the flipped views contradict each other.
An image's score averages entropy + disagreement per predicted class (pixels weighted by the class's mean
probability), then over the classes the image shows: a small region of a rare class counts as much as the
background around it, so images where rare classes are uncertain rise to the top.
"""
import html
import math
import os
import pathlib

import cv2
import numpy as np
import pandas as pd

from app.inference.predictor import predict_image
from app.runtime.outputs import output_dir, write_image, write_text

DEFAULT_TOP = 48
"""Images on the contact sheet (ranking.html); ranking.csv lists them all."""
THUMBNAIL_SIDE = 256
MIN_CLASS_PIXELS = 16
"""A class counts in an image's score when its mean probability sums to at least this many pixels."""


def softmax(logits):
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


def view_logits(predictor, image, **options):
    """Logits (V, H, W, C) of the plain view and of each flip in `predictor.tta_flips`, each flipped back.

    An exported .tflite model ends in a softmax: its probabilities are returned as log-probabilities, logits
    whose softmax gives them back.
    """
    plain = {**options, "tta": False}
    views = [predict_image(predictor, image, **plain)]
    for axes in predictor.tta_flips:
        image_axes = tuple(axis - 1 for axis in axes)  # batch axes (B, H, W, C) -> image axes (H, W, C)
        views.append(np.flip(predict_image(predictor, np.flip(image, image_axes), **plain), image_axes))
    views = np.stack(views)
    return np.log(np.clip(views, 1e-12, None)) if predictor.path.suffix == ".tflite" else views


def _entropy(probs):
    return -(probs * np.log(np.clip(probs, 1e-12, None))).sum(-1)


def uncertainty(logits, labels=None):
    """Scores of one image from its view logits (V, H, W, C): a dict with score, entropy, disagreement and
    shares ((C,) fraction of pixels of each class in `labels`, default: the views' mean prediction)."""
    probs = softmax(np.asarray(logits, np.float64))
    mean = probs.mean(0)
    classes = mean.shape[-1]
    scale = math.log(classes) if classes > 1 else 1.0
    entropy = _entropy(mean) / scale
    disagreement = np.clip(entropy - _entropy(probs).mean(0) / scale, 0, None)
    pixel = entropy + disagreement
    mass = mean.reshape(-1, classes).sum(0)
    shown = mass >= min(MIN_CLASS_PIXELS, pixel.size)
    per_class = (mean * pixel[..., None]).reshape(-1, classes).sum(0)[shown] / mass[shown]
    labels = mean.argmax(-1) if labels is None else np.asarray(labels)
    return {"score": float(per_class.mean()), "entropy": float(entropy.mean()),
            "disagreement": float(disagreement.mean()),
            "shares": np.bincount(labels.ravel(), minlength=classes) / labels.size}


def ranking_table(rows, class_names):
    """DataFrame of `rows` (dicts with image, score, entropy, disagreement, shares) sorted most useful first:
    rank, image, score, entropy, disagreement, share_<class> (fraction of pixels predicted as it)."""
    table = pd.DataFrame([{key: row[key] for key in ("image", "score", "entropy", "disagreement")} for row in rows],
                         columns=["image", "score", "entropy", "disagreement"])
    for index, name in enumerate(class_names):
        table[f"share_{name}"] = [float(row["shares"][index]) for row in rows]
    table = table.sort_values(["score", "image"], ascending=[False, True], kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table


def contact_sheet(table, thumbnails, class_names, colours, folder):
    """HTML page of the ranked images with their overlay thumbnails (`thumbnails`: image -> path), best first."""
    legend = " ".join(f'<span class="swatch" style="background:rgb{tuple(int(c) for c in colour)}"></span>'
                      f"{html.escape(name)}" for name, colour in zip(class_names, colours))
    cards = []
    for row in table.to_dict("records"):
        if row["image"] not in thumbnails:
            continue
        source = pathlib.Path(os.path.relpath(thumbnails[row["image"]], folder)).as_posix()
        shares = ", ".join(f"{html.escape(name)} {row[f'share_{name}']:.1%}" for name in class_names)
        cards.append(f'<figure><img src="{html.escape(source)}" loading="lazy"><figcaption><b>#{row["rank"]}</b> '
                     f"{html.escape(pathlib.Path(row['image']).name)}<br>score {row['score']:.3f} (entropy "
                     f"{row['entropy']:.3f}, flip disagreement {row['disagreement']:.3f})<br>{shares}"
                     "</figcaption></figure>")
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Images to label next</title><style>"
            "body{font-family:sans-serif;margin:1em}figure{display:inline-block;width:260px;margin:6px;"
            "vertical-align:top}img{max-width:256px;max-height:256px;border:1px solid #999}"
            "figcaption{font-size:12px}.swatch{display:inline-block;width:12px;height:12px;margin:0 3px 0 10px;"
            "border:1px solid #666}</style></head><body>\n"
            "<h1>Images to label next</h1><p>Most useful first: the model is least sure of these (entropy plus "
            "disagreement between flipped views, averaged per predicted class); all images in ranking.csv."
            f"</p><p>{legend}</p>\n" + "\n".join(cards) + "\n</body></html>\n")


class Ranking:
    """Collects each image's scores and (for the best `top`) a thumbnail overlay; `close` writes
    `out/ranking.csv`, `out/ranking.html` and the thumbnails in `out/ranking/`."""

    def __init__(self, out, class_names, colours, top=DEFAULT_TOP):
        if top < 1:
            raise ValueError(f"--rank-top must be at least 1, got {top}")
        self.out, self.class_names, self.colours, self.top = pathlib.Path(out), list(class_names), colours, top
        self.rows, self.thumbnails = [], {}

    def targets(self, stems):
        return [self.out / "ranking.csv", self.out / "ranking.html",
                *(self.out / "ranking" / f"{stem}.jpg" for stem in stems)]

    def add(self, image_path, scores, overlay_image):
        """Record one image's `uncertainty` scores; keep its overlay while it is among the best `top`."""
        self.rows.append({"image": str(image_path), **scores})
        height, width = overlay_image.shape[:2]
        factor = min(1.0, THUMBNAIL_SIDE / max(height, width))
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        self.thumbnails[str(image_path)] = (scores["score"], cv2.resize(overlay_image, size,
                                                                        interpolation=cv2.INTER_AREA))
        if len(self.thumbnails) > self.top:
            del self.thumbnails[min(self.thumbnails, key=lambda key: (self.thumbnails[key][0], key))]

    def close(self):
        """Write the files; returns the ranking table."""
        table = ranking_table(self.rows, self.class_names)
        folder = output_dir(self.out / "ranking")
        paths = {}
        for image, (_, thumbnail) in self.thumbnails.items():
            paths[image] = write_image(folder / f"{pathlib.Path(image).stem}.jpg", thumbnail)
        write_text(self.out / "ranking.csv", table.to_csv(index=False))
        write_text(self.out / "ranking.html", contact_sheet(table.head(self.top), paths, self.class_names,
                                                            self.colours, self.out))
        return table
