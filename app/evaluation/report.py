"""Evaluation report of a trained run on one split: scores, confusion matrix, best/worst overlays, HTML page.

Every image is predicted at its own size, exactly as `app.predict` does (resized to `data.resize` and back
when the run has one), and scored against its full-size mask; void pixels count nowhere.
"""
import base64
import html
import json
import math
import pathlib

import numpy as np
import pandas as pd
from tqdm import tqdm

from app.evaluation.plots import plot_confusion_matrix, plot_overlay_panel
from app.evaluation.scores import (confusion_matrix, hd95_per_class, mean_over_images, multilabel_scores_table,
                                   per_class_dict, per_image_scores, scores_table)
from app.inference.multilabel import DEFAULT_THRESHOLD, probabilities
from app.inference.palette import display_image
from app.inference.predictor import load_predictor, predict_labels
from app.runtime.outputs import dataset_folders, output_dir, prepare_output_folder, write_text
from data.layouts import DatasetError, dataset_source
from data.masks import read_image
from data.multilabel import MULTILABEL
from data.scan import mask_encoding
from models.multilabel_metrics import multilabel_counts, multilabel_scores


def from_run_config(err, run_dir, path):
    """`err` with its first line saying that the dataset path came from the run's config.yaml."""
    lines = str(err).splitlines() or [type(err).__name__]
    lines[0] += f" (data.path {path} comes from {run_dir / 'config.yaml'}; give --data to use another folder)"
    return DatasetError(lines)


def split_rows(config, split, num_classes, runs_dir=None):
    """(rows of `split`, MaskEncoding) of the config's dataset, split as training split it (COCO/LabelMe
    annotations converted under `runs_dir`, as training did)."""
    data = config.data.options()
    source = dataset_source(data, config.seed, runs_dir)
    frame = source.frame
    encoding = mask_encoding({**data, "num_classes": data["num_classes"] or num_classes}, frame, facts=source)
    if encoding.num_classes != num_classes:
        raise ValueError(f"{data['path']}: the masks have {encoding.num_classes} classes "
                         f"({encoding.kind} masks) but the model predicts {num_classes}")
    rows = frame[frame["split"] == split]
    if rows.empty:
        found = ", ".join(f"{s} ({n})" for s, n in frame["split"].value_counts().items())
        raise ValueError(f"{data['path']}: no images in split {split!r}; found {found}")
    return rows, encoding


def predict_pair(predictor, row, encoding, options=None):
    """(image, true labels, predicted labels) of one dataset row; `options` go to `predict_labels`."""
    image = predictor.read_image(row.image)
    truth = encoding.read(row.mask)
    if truth.shape != image.shape[:2]:
        raise ValueError(f"{row.mask}: mask is {truth.shape[1]}x{truth.shape[0]} but its image {row.image} "
                         f"is {image.shape[1]}x{image.shape[0]} (WxH)")
    return image, truth, predict_labels(predictor, image, **(options or {}))


def evaluate_rows(predictor, rows, encoding, options=None, hd95=False):
    """Summed confusion matrix and a per-image DataFrame: image, mask, miou, pixel_accuracy, mean_dice, then
    dice_<class> and iou_<class> (`app.evaluation.scores.per_image_scores`) and, with `hd95`, hd95_<class>."""
    total = np.zeros((predictor.num_classes,) * 2, np.int64)
    per_image = []
    for row in tqdm(list(rows.itertuples(index=False)), unit="image", disable=None):
        _, truth, prediction = predict_pair(predictor, row, encoding, options)
        matrix = confusion_matrix(truth, prediction, predictor.num_classes)
        total += matrix
        scores = {"image": row.image, "mask": row.mask, **per_image_scores(matrix, predictor.class_names)}
        if hd95:
            distances = hd95_per_class(truth, prediction, predictor.num_classes)
            scores.update({f"hd95_{name}": value for name, value in zip(predictor.class_names, distances)})
        per_image.append(scores)
    return total, pd.DataFrame(per_image)


def _none_if_nan(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _write_overlays(predictor, encoding, per_image, count, folder, options=None):
    """Panels of the `count` worst and best images by per-image mIoU; returns [(kind, path, row)]."""
    folder = output_dir(folder)
    for old in [*folder.glob("worst_*.png"), *folder.glob("best_*.png")]:
        old.unlink()
    ranked = per_image.dropna(subset=["miou"]).sort_values("miou", kind="stable")
    written = []
    for kind, items in (("worst", ranked.head(count)), ("best", ranked.iloc[::-1].head(count))):
        for number, item in enumerate(items.itertuples(index=False), start=1):
            image, truth, prediction = predict_pair(predictor, item, encoding, options)
            name = pathlib.Path(item.image)
            path = folder / f"{kind}_{number:02d}_{name.stem}.png"
            plot_overlay_panel(display_image(image), truth, prediction, predictor.colours, predictor.class_names,
                               path, title=f"{kind} {number}: {name.name}, mIoU {item.miou:.3f}")
            written.append((kind, path, item))
    return written


def _img(path):
    data = base64.b64encode(pathlib.Path(path).read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(pathlib.Path(path).name)}">'


def _html(title, meta, summary, table, figures, overlays):
    def floats(value):
        return f"{value:.4f}"

    summary_table = pd.Series(summary, name="value").to_frame().to_html(float_format=floats, na_rep="n/a")
    sections = [f"<h2>{html.escape(name)}</h2>{_img(path)}" for name, path in figures]
    for kind in ("worst", "best"):
        items = [f"<figure>{_img(path)}<figcaption>{html.escape(pathlib.Path(item.image).name)}: mIoU "
                 f"{item.miou:.4f}</figcaption></figure>" for k, path, item in overlays if k == kind]
        if items:
            sections.append(f"<h2>{kind.capitalize()} images (per-image mIoU)</h2>" + "".join(items))
    meta_rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in meta.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1400px; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }}
img {{ max-width: 100%; }}
figure {{ margin: 0 0 1.5em 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<table>{meta_rows}</table>
<h2>Summary (void ignored)</h2>{summary_table}
<h2>Per class</h2>{table.to_html(float_format=floats, na_rep="n/a")}
{"".join(sections)}
</body></html>
"""


REPORT_FILES = ("per_class.csv", "per_image.csv", "confusion_matrix.csv", "confusion_matrix.png", "summary.json",
                "report.html")


def write_report(run_dir, data=None, split="val", out=None, overlays=4, options=None, threshold=None, log=print,
                 hd95=False, overwrite=None):
    """Evaluate a run on a split and write its report folder; returns (folder, summary dict).

    The default folder belongs to the run and is rewritten; files in another `out` are replaced only with
    `overwrite`. `out` must lie outside the dataset's folders.

    The folder (default `<run>/report-<split>`) holds per_class.csv, per_image.csv, confusion_matrix.csv/.png,
    overlays/ (the `overlays` worst and best images), summary.json and report.html (self-contained).
    `options` (tile, overlap, blend, tta) go to `app.inference.predictor.predict_labels`. Multi-label runs get
    `write_multilabel_report`'s report (per-class scores at `threshold`, default 0.5; no overlays).
    summary.json's `per_image` holds the means over images of per_image.csv's scores
    (`app.evaluation.scores.mean_over_images`); `hd95` adds the 95th-percentile Hausdorff distance per class
    (`app.evaluation.scores.hd95`, pixels of the full-size masks).
    """
    run_dir = pathlib.Path(run_dir)
    predictor = load_predictor(run_dir)
    if predictor.multilabel:
        return write_multilabel_report(predictor, run_dir, data, split, out, threshold or DEFAULT_THRESHOLD,
                                       options, log)
    if threshold is not None:
        raise ValueError(f"{run_dir}: --threshold applies to multi-label runs only (data.mask: multilabel)")
    config = predictor.config.model_copy(deep=True)
    if data is not None:
        config.data.path = str(data)
    try:
        rows, encoding = split_rows(config, split, predictor.num_classes, run_dir.parent)
    except DatasetError as err:
        if data is not None or pathlib.Path(config.data.path).exists():
            raise
        raise from_run_config(err, run_dir, config.data.path) from None
    overwrite = out is None if overwrite is None else overwrite
    out = pathlib.Path(out if out is not None else run_dir / f"report-{split}")
    old_overlays = [*(out / "overlays").glob("worst_*.png"), *(out / "overlays").glob("best_*.png")]
    inputs = {*dataset_folders(config), *(pathlib.Path(f).parent for f in [*rows["image"], *rows["mask"]])}
    prepare_output_folder(out, inputs, [out / name for name in REPORT_FILES] + old_overlays, overwrite)
    log(f"evaluating {predictor.path} on {config.data.path} ({split}, {len(rows)} images)")
    matrix, per_image = evaluate_rows(predictor, rows, encoding, options, hd95)
    names = predictor.class_names
    table, summary = scores_table(matrix, names)
    image_means = mean_over_images(per_image, names, hd95)
    log(table.to_string(float_format=lambda v: f"{v:.4f}"))
    log("  ".join(f"{key} {value:.4f}" for key, value in summary.items()))
    log("per-image means: " + "  ".join(
        [f"mdice {image_means['mdice']:.4f}"] + [f"dice_{n} {v:.4f}" for n, v in image_means["dice"].items()
                                               if v is not None]
        + [f"hd95_{n} {v:.2f}" for n, v in image_means.get("hd95", {}).items() if v is not None]))
    write_text(out / "per_class.csv", table.to_csv())
    write_text(out / "per_image.csv", per_image.to_csv(index=False))
    frame = pd.DataFrame(matrix, index=pd.Index(names, name="true/predicted"), columns=names)
    write_text(out / "confusion_matrix.csv", frame.to_csv())
    plot_confusion_matrix(matrix, names, out / "confusion_matrix.png")
    shown = (_write_overlays(predictor, encoding, per_image, overlays, out / "overlays", options)
             if overlays > 0 else [])
    meta = {"run": str(run_dir), "model": str(predictor.path), "data": config.data.path, "split": split,
            "images": len(rows), "prediction": {k: v for k, v in (options or {}).items() if v}}
    result = {**meta, **{k: _none_if_nan(v) for k, v in summary.items()}, "per_class": per_class_dict(table),
              "per_image": image_means, "confusion_matrix": matrix.tolist(),
              **{kind: [{"image": item.image, "miou": item.miou} for k, _, item in shown if k == kind]
                 for kind in ("worst", "best")}}
    write_text(out / "summary.json", json.dumps(result, indent=2))
    figures = [("Confusion matrix", out / "confusion_matrix.png")]
    if (run_dir / "curves.png").is_file():
        figures.append(("Training curves", run_dir / "curves.png"))
    page = _html(f"Evaluation of {run_dir.name} on {split}", meta, summary, table, figures, shown)
    write_text(out / "report.html", page)
    log(f"report: {out / 'report.html'}")
    return out, result


def multilabel_rows(predictor, rows, encoding, threshold=DEFAULT_THRESHOLD, options=None):
    """(counts (C, 3), true pixels (C,), valid pixels (C,), per-image DataFrame) of a split's rows."""
    num_classes = predictor.num_classes
    counts = np.zeros((num_classes, 3), np.int64)
    positives, pixels = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    per_image = []
    for row in tqdm(list(rows.itertuples(index=False)), unit="image", disable=None):
        image = read_image(row.image, predictor.channels)
        truth = encoding.read(row.mask)
        if truth.shape[:2] != image.shape[:2]:
            raise ValueError(f"{row.mask}: mask is {truth.shape[1]}x{truth.shape[0]} but its image {row.image} "
                             f"is {image.shape[1]}x{image.shape[0]} (WxH)")
        image_counts = multilabel_counts(truth, probabilities(predictor, image, **(options or {})), threshold)
        counts += image_counts
        positives += (truth == 1).reshape(-1, num_classes).sum(0)
        pixels += (truth <= 1).reshape(-1, num_classes).sum(0)
        scores = multilabel_scores(image_counts)
        per_image.append({"image": row.image, "mask": row.mask, "miou": scores["miou"],
                          "mean_dice": scores["mean_dice"]})
    return counts, positives, pixels, pd.DataFrame(per_image, columns=["image", "mask", "miou", "mean_dice"])


def write_multilabel_report(predictor, run_dir, data=None, split="val", out=None, threshold=DEFAULT_THRESHOLD, options=None,
                 log=print):
    """Evaluate a multi-label run on a split; returns (folder, summary dict).

    The folder (default `<run>/report-<split>`) holds per_class.csv (iou, dice, precision, recall, pixel_share,
    tp, fp, fn), per_image.csv (miou, mean_dice), summary.json and report.html.
    """

    run_dir = pathlib.Path(run_dir)
    config = predictor.config.model_copy(deep=True)
    if data is not None:
        config.data.path = str(data)
    rows, encoding = split_rows(config, split, predictor.num_classes)
    out = output_dir(out if out is not None else run_dir / f"report-{split}")
    log(f"evaluating {predictor.path} on {config.data.path} ({split}, {len(rows)} images, multi-label, "
        f"threshold {threshold})")
    counts, positives, pixels, per_image = multilabel_rows(predictor, rows, encoding, threshold, options)
    table, summary = multilabel_scores_table(counts, predictor.class_names, positives, pixels)
    log(table.to_string(float_format=lambda v: f"{v:.4f}"))
    log("  ".join(f"{key} {value:.4f}" for key, value in summary.items()))
    write_text(out / "per_class.csv", table.to_csv())
    write_text(out / "per_image.csv", per_image.to_csv(index=False))
    meta = {"run": str(run_dir), "model": str(predictor.path), "data": config.data.path, "split": split,
            "images": len(rows), "mask": MULTILABEL, "threshold": threshold,
            "prediction": {k: v for k, v in (options or {}).items() if v}}
    result = {**meta, **{k: _none_if_nan(v) for k, v in summary.items()}, "per_class": per_class_dict(table)}
    write_text(out / "summary.json", json.dumps(result, indent=2))
    figures = [("Training curves", run_dir / "curves.png")] if (run_dir / "curves.png").is_file() else []
    write_text(out / "report.html", _html(f"Evaluation of {run_dir.name} on {split} (multi-label)", meta, summary,
                                          table, figures, []))
    log(f"report: {out / 'report.html'}")
    return out, result
