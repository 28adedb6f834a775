"""A scanned dataset wrapped in the tf.data pipelines that training, its budget and export read."""
import dataclasses
import typing

import pandas as pd

from app.config.errors import ConfigError
from app.dataset.scanning import scan_dataset
from data import normalization
from data.discovery import DatasetError
from data.pipeline import build_dataset, eval_batch_pixels
from models.registry import required_divisor

CACHE_LIMIT_BYTES = 2 * 1024**3


@dataclasses.dataclass
class PreparedData:
    """Everything training needs from the data side."""

    frame: pd.DataFrame
    encoding: object
    class_names: list
    class_table: pd.DataFrame
    train: object
    val: object
    divisor: int
    source: object = None
    budget: object = None
    normalization: object = None
    val_batch_pixels: list | None = None
    """Padded pixels of each validation batch (`data.pipeline.eval_batch_pixels`), for timing a few."""
    channels: int = 3
    """The model's input channels (`data.channels`, auto resolved)."""
    evaluation_pipeline: typing.Callable | None = None
    """rows -> the evaluation pipeline (no augmentation, whole images) of those rows of `frame`."""

    def images(self, split):
        """Images in `split` ("train", "val", ...)."""
        return int((self.frame["split"] == split).sum())

    def evaluation(self):
        """(dataset, split): the validation pipeline, or the training images through the evaluation pipeline
        where there is no validation split (`train` is an endless augmented stream)."""
        if self.val is not None:
            return self.val, "val"
        return self.evaluation_pipeline(self.frame[self.frame["split"] == "train"]), "train"

    def val_sample(self, images, seed=0):
        """The evaluation pipeline of a fixed, seeded sample of `images` validation images (all: `val`)."""
        rows = self.frame[self.frame["split"] == "val"]
        if images is None or images >= len(rows):
            return self.val
        return self.evaluation_pipeline(rows.sample(n=images, random_state=seed).sort_index())


def check_size(size, divisor, model_name):
    bad = [s for s in size if s % divisor]
    if bad:
        nearest = sorted({divisor * (s // divisor) for s in bad} | {divisor * -(-s // divisor) for s in bad} - {0})
        raise ConfigError(f"data.image_size {list(size)} must be a multiple of {divisor} for {model_name}; "
                          f"nearest valid sizes: {', '.join(map(str, nearest))}")


def prepare_data(config, divisor=None, runs_dir=None, scanned=None):
    """Discover, scan and wrap the dataset in tf.data pipelines (COCO/LabelMe caches go under `runs_dir`);
    `scanned` is a scan to reuse where it read the same data settings (see `scan_dataset`).

    Raises:
        DatasetError: every problem the scan found, one line per file.
    """
    source, encoding, names, result, _, channels, _ = scan_dataset(config, runs_dir, reuse=scanned)
    data = config.data
    frame = source.frame
    if result.problems:
        raise DatasetError(result.problems)
    train_rows = frame[frame["split"] == "train"]
    if train_rows.empty:
        raise DatasetError([f"{data.path}: no training images (split 'train' is empty)"])
    norm = resolve_normalization(data.normalization, channels, result)
    divisor = divisor or required_divisor(config.model.name, **config.model.builder_options())
    size = tuple(data.image_size)
    check_size(size, divisor, config.model.name)
    cache = data.cache
    if cache == "auto":
        pixels = (result.files["height"] * result.files["width"]).sum()
        cache = pixels * (4 * channels + 1) < CACHE_LIMIT_BYTES
    batch = config.train.batch_size
    common = dict(encoding=encoding, batch_size=batch, channels=channels, resize=data.resize,
                  border_weights=config.loss.border_weights, one_hot=data.one_hot, cache=bool(cache),
                  seed=config.seed, normalization=norm)
    train = build_dataset(train_rows, training=True, crop_size=size, augment_options=config.augment.options(),
                          repeat=True, **common)

    def evaluation_pipeline(rows):
        return build_dataset(rows, training=False, divisor=divisor, **common)

    val_rows = frame[frame["split"] == "val"]
    val = evaluation_pipeline(val_rows) if len(val_rows) else None
    val_files = result.files[result.files["split"] == "val"]
    val_pixels = eval_batch_pixels(val_files[["height", "width"]].to_numpy(), batch, divisor, data.resize)
    return PreparedData(frame, encoding, names, result.class_table("train"), train, val, divisor, source=source,
                        normalization=norm, val_batch_pixels=val_pixels if val is not None else None,
                        evaluation_pipeline=evaluation_pipeline, channels=channels)


def resolve_normalization(setting, channels, result):
    """The input normalisation of a scanned dataset: the `data.normalization` setting, "auto" decided by the image
    files, for a model of `channels` input channels.

    Raises:
        DatasetError: percentile statistics over images that mix bit depths.
    """
    files = result.files.dropna(subset=["dtype"]) if "dtype" in result.files else result.files.iloc[:0]
    dtypes, counts = files.get("dtype", pd.Series(dtype=object)), files.get("channels", pd.Series(dtype=int))
    norm = normalization.resolve(setting, channels, dtypes.tolist(),
                                 counts.astype(int).tolist(), result.pixel_sample)
    if norm.method == "percentile" and dtypes.nunique() > 1 and not isinstance(setting, dict):
        first = files.groupby("dtype")["image"].first()
        raise DatasetError([f"{first.iloc[1]}: {first.index[1]} image, but {first.iloc[0]} is {first.index[0]}: "
                            f"one set of percentiles cannot normalise mixed bit depths; convert the images to one "
                            f"dtype or set --set data.normalization=unit"])
    return norm
