"""Dataset checks as training sees them: discovery, mask encoding and the full scan, summarised."""
import dataclasses
import pathlib

import pandas as pd

from app.config.errors import ConfigError
from app.dataset.prepared import check_size, resolve_normalization
from app.dataset.scanning import scan_dataset
from app.evaluation.plots import plot_class_shares
from app.runtime.outputs import dataset_folders, output_dir, prepare_output_folder, write_text
from data.discovery import DatasetError
from data.layouts import detection_line
from data.masks import ReadError
from data.normalization import NormalizationError
from models.registry import required_divisor


@dataclasses.dataclass
class DataCheck:
    """What `check_dataset` found; `scan` is None when discovery or the mask encoding failed."""

    frame: pd.DataFrame | None
    encoding: object
    scan: object
    problems: list
    source: object = None
    normalization: object = None


def check_dataset(config, runs_dir=None):
    """Scan the configured dataset and collect every problem (one line each, naming the path)."""
    try:
        scanned = scan_dataset(config, runs_dir)
    except (DatasetError, ReadError) as err:
        return DataCheck(None, None, None, getattr(err, "problems", [str(err)]))
    source, encoding, result = scanned.source, scanned.encoding, scanned.result
    frame = source.frame
    problems = list(result.problems)
    norm = None
    if not (frame["split"] == "train").any():
        problems.append(f"{config.data.path}: no training images (split 'train' is empty)")
    elif not result.problems:
        try:
            norm = resolve_normalization(config.data.normalization, scanned.channels, result)
        except DatasetError as err:
            problems += err.problems
        except NormalizationError as err:
            problems.append(str(err))
    try:
        divisor = required_divisor(config.model.name, **config.model.builder_options())
        check_size(tuple(config.data.image_size), divisor, config.model.name)
    except ConfigError as err:
        problems.append(str(err))
    return DataCheck(frame, encoding, result, problems, source, norm)


def _counts(series):
    return ", ".join(f"{key}: {value}" for key, value in series.value_counts().sort_index().items())


def summary_text(check, config):
    """Counts per split, image sizes, channels and the class pixel share table, as printable text."""
    files, counts = check.scan.files, check.scan.class_counts
    encoding = check.encoding
    lines = [detection_line(check.source, encoding), *(f"note: {note}" for note in check.source.notes),
             f"images per split: {_counts(check.frame['split'])}"]
    if "height" in files:
        sizes = files.dropna(subset=["height"])
        size_names = sizes["height"].astype(int).astype(str) + "x" + sizes["width"].astype(int).astype(str)
        top = size_names.value_counts()
        lines.append(f"image sizes (HxW): {', '.join(f'{s} ({n})' for s, n in top.head(8).items())}"
                     + (f", ... {len(top) - 8} more" if len(top) > 8 else ""))
        lines.append(f"channels: {_counts(sizes['channels'].astype(int))}")
    if check.normalization is not None:
        lines.append(f"input normalization: {check.normalization.describe()}")
    lines += ["class pixel share per split:", share_table(counts).to_string(float_format=lambda v: f"{v:.4f}")]
    return "\n".join(lines)


def share_table(class_counts):
    """Per-class pixel share of each split (columns) and total pixels."""
    pixels = class_counts.pivot_table(index="class", columns="split", values="pixels", sort=False, aggfunc="sum")
    table = pixels / pixels.sum().replace(0, 1)
    table["pixels"] = pixels.sum(axis=1).astype(int)
    return table


CHECK_FILES = ("class_shares.png", "class_pixels.csv", "files.csv")


def check_report_folder(config, out, overwrite=False, create=False):
    """Refuse an --out inside the dataset or one holding these files already (unless `overwrite`)."""
    out = pathlib.Path(out)
    return prepare_output_folder(out, dataset_folders(config), [out / name for name in CHECK_FILES], overwrite,
                                 create)


def write_check_outputs(check, out):
    """class_shares.png, class_pixels.csv and files.csv (one row per image: size, channels, split)."""
    out = output_dir(out)
    plot_class_shares(check.scan.class_counts, out / "class_shares.png")
    write_text(out / "class_pixels.csv", check.scan.class_counts.to_csv(index=False))
    write_text(out / "files.csv", check.scan.files.to_csv(index=False))
    return out
