"""Training runs: data preparation, model and loss from the config, Keras callbacks, run folder, resume."""
import contextlib
import dataclasses
import datetime
import gc
import json
import pathlib
import shutil
import signal
import tempfile
import time
import traceback
import typing

import keras
import numpy as np
import pandas as pd
import yaml

from app.core import interrupt, multilabel
from app.core.budget import BudgetGuard, comparable, epoch_steps, fit_to_budget, schedule_steps
from app.core.callbacks import (AtomicBackupAndRestore, AtomicModelCheckpoint, LearningRateLogger, SplitProgbarLogger,
                                StopOnNonFiniteLoss, StopOnSignal, TimeLedger, atomic_path)
from app.core.config import ConfigError, dump_config, model_options
from app.core.distribute import distribute_dataset, replicas
from app.core.precision import (  # noqa: F401  (cpu_flags: re-exported)
    bfloat16_cost_warning, cpu_flags, resolve_precision)
from app.core.evaluate import confusion_matrix_on, scores_table
from app.core.plots import plot_curves
from data import normalization
from data.discovery import DatasetError
from data.images import input_channels
from data.layouts import dataset_source, detection_line
from data.masks import IGNORE_INDEX
from data.multilabel import MULTILABEL, is_multilabel
from data.pipeline import build_dataset, eval_batch_pixels
from data.scan import mask_encoding, scan
from models.class_weights import class_weights_from_frequencies
from models.encoders import check_encoder_weights
from models.finetune import check_finetune_options, finetune_callbacks
from models.losses import get_loss
from models.metrics import segmentation_metrics
from models.registry import get_model, required_divisor

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


def class_names_for(config, encoding, facts=None):
    names = config["data"].get("class_names") or encoding.class_names
    if names:
        return [str(n) for n in names]
    if facts is not None and facts.class_names and len(facts.class_names) == encoding.num_classes:
        return [str(n) for n in facts.class_names]
    if encoding.palette is not None:
        palette = encoding.palette
        return [str(n) for i, n in zip(palette["index"], palette["name"]) if i != encoding.void][
            : encoding.num_classes]
    if encoding.kind == "binary" and encoding.num_classes == 2:
        return ["background", "foreground"]
    return [f"class_{i}" for i in range(encoding.num_classes)]


def check_size(size, divisor, model_name):
    bad = [s for s in size if s % divisor]
    if bad:
        nearest = sorted({divisor * (s // divisor) for s in bad} | {divisor * -(-s // divisor) for s in bad} - {0})
        raise ConfigError(f"data.image_size {list(size)} must be a multiple of {divisor} for {model_name}; "
                          f"nearest valid sizes: {', '.join(map(str, nearest))}")


SCAN_FREE_KEYS = ("image_size", "resize", "cache", "one_hot", "normalization")
"""Keys of the data section that do not change what a scan reads (the plan sets some of them)."""


class ScannedDataset(typing.NamedTuple):
    """A dataset read once: its source (files, layout facts), mask encoding, class names, ScanResult, the
    settings it was read with (`scan_settings`) and the model's input channels (`data.channels` resolved)."""

    source: object
    encoding: object
    names: list
    result: object
    settings: str
    channels: int = 3
    channels_reason: str = "data.channels"


def resolve_channels(data, frame):
    """(channels, reason) of `data.channels`: its number, or for auto what the training images hold
    (`data.images.input_channels`)."""
    if data["channels"] != "auto":
        return int(data["channels"]), f"data.channels {data['channels']}"
    rows = frame[frame["split"] == "train"] if (frame["split"] == "train").any() else frame
    return input_channels(rows["image"])


def scan_settings(config, runs_dir):
    """What a scan depends on: the data keys other than SCAN_FREE_KEYS, the seed and the runs folder."""
    data = {key: value for key, value in config["data"].items() if key not in SCAN_FREE_KEYS}
    return json.dumps([data, config["seed"], str(runs_dir)], sort_keys=True, default=str)


def scan_dataset(config, runs_dir=None, statistics=False, reuse=None):
    """The dataset read once, as training, planning and check_data read it (a ScannedDataset).

    `statistics` also collects the fingerprint statistics; `reuse` (an earlier scan, such as the plan's) is
    returned as it is when it read the data with the same settings.

    Raises:
        DatasetError: discovery problems (missing folders, unmatched files, bad CSV rows).
        ReadError: a mask encoding that cannot be inferred.
    """
    settings = scan_settings(config, runs_dir)
    if reuse is not None and reuse.settings == settings:
        return reuse
    data = config["data"]
    source = dataset_source(config, runs_dir)
    encoding = mask_encoding(data, source.frame, facts=source)
    names = class_names_for(config, encoding, source)
    channels, reason = resolve_channels(data, source.frame)
    result = scan(source.frame, encoding, channels, names, statistics=statistics)
    return ScannedDataset(source, encoding, names, result, settings, channels, reason)


def prepare_data(config, divisor=None, runs_dir=None, scanned=None):
    """Discover, scan and wrap the dataset in tf.data pipelines (COCO/LabelMe caches go under `runs_dir`);
    `scanned` is a scan to reuse where it read the same data settings (see `scan_dataset`).

    Raises:
        DatasetError: every problem the scan found, one line per file.
    """
    source, encoding, names, result, _, channels, _ = scan_dataset(config, runs_dir, reuse=scanned)
    data = {**config["data"], "channels": channels}
    frame = source.frame
    if result.problems:
        raise DatasetError(result.problems)
    train_rows = frame[frame["split"] == "train"]
    if train_rows.empty:
        raise DatasetError([f"{data['path']}: no training images (split 'train' is empty)"])
    norm = resolve_normalization(data, result)
    divisor = divisor or required_divisor(config["model"]["name"], **model_options(config))
    size = tuple(data["image_size"])
    check_size(size, divisor, config["model"]["name"])
    cache = data["cache"]
    if cache == "auto":
        pixels = (result.files["height"] * result.files["width"]).sum()
        cache = pixels * (4 * data["channels"] + 1) < CACHE_LIMIT_BYTES
    batch = config["train"]["batch_size"]
    loss = config["loss"]
    common = dict(encoding=encoding, batch_size=batch, channels=data["channels"], resize=data["resize"],
                  border_weights=loss.get("border_weights"), one_hot=data["one_hot"], cache=bool(cache),
                  seed=config["seed"], normalization=norm)
    train = build_dataset(train_rows, training=True, crop_size=size, augment_options=config["augment"], repeat=True,
                          **common)

    def evaluation_pipeline(rows):
        return build_dataset(rows, training=False, divisor=divisor, **common)

    val_rows = frame[frame["split"] == "val"]
    val = evaluation_pipeline(val_rows) if len(val_rows) else None
    val_files = result.files[result.files["split"] == "val"]
    val_pixels = eval_batch_pixels(val_files[["height", "width"]].to_numpy(), batch, divisor, data["resize"])
    return PreparedData(frame, encoding, names, result.class_table("train"), train, val, divisor, source=source,
                        normalization=norm, val_batch_pixels=val_pixels if val is not None else None,
                        evaluation_pipeline=evaluation_pipeline, channels=channels)


def resolve_normalization(data, result):
    """The input normalisation of a scanned dataset (data.normalization; "auto" decides by the image files).

    Raises:
        DatasetError: percentile statistics over images that mix bit depths.
    """
    files = result.files.dropna(subset=["dtype"]) if "dtype" in result.files else result.files.iloc[:0]
    dtypes, counts = files.get("dtype", pd.Series(dtype=object)), files.get("channels", pd.Series(dtype=int))
    norm = normalization.resolve(data.get("normalization", "auto"), data["channels"], dtypes.tolist(),
                                 counts.astype(int).tolist(), result.pixel_sample)
    if norm.method == "percentile" and dtypes.nunique() > 1 and not isinstance(data.get("normalization"), dict):
        first = files.groupby("dtype")["image"].first()
        raise DatasetError([f"{first.iloc[1]}: {first.index[1]} image, but {first.iloc[0]} is {first.index[0]}: "
                            f"one set of percentiles cannot normalise mixed bit depths; convert the images to one "
                            f"dtype or set --set data.normalization=unit"])
    return norm


def write_class_palette(path, names, colours):
    """index,name,r,g,b CSV of the class colours that the masks define (read back by predict and evaluate)."""
    table = pd.DataFrame({"index": range(len(names)), "name": names, "r": colours[:, 0], "g": colours[:, 1],
                          "b": colours[:, 2]})
    with atomic_path(path) as temp:
        table.to_csv(temp, index=False)



def build_model(config, num_classes):
    """The configured architecture (float32 logits), built under the `train.precision` dtype policy.

    The global policy is restored afterwards; the model keeps its own (and `compile` wraps the optimizer in a
    `LossScaleOptimizer` for mixed_float16).
    """
    previous = keras.mixed_precision.dtype_policy()
    keras.mixed_precision.set_dtype_policy(resolve_precision(config["train"]["precision"]))
    channels = config["data"]["channels"]  # auto is resolved from the files by `train`; without data: RGB
    try:
        return get_model(config["model"]["name"], input_shape=(None, None, 3 if channels == "auto" else channels),
                         num_classes=num_classes, **model_options(config))
    finally:
        keras.mixed_precision.set_dtype_policy(previous)


def compute_class_weights(config, class_table):
    scheme = config["loss"].get("class_weights") or "none"
    if scheme == "none":
        return None
    return class_weights_from_frequencies(class_table, scheme)


def _optimizer(train, train_rows):
    lr = train["learning_rate"]
    if train["schedule"] == "cosine":
        lengths = schedule_steps(train, train_rows)
        warmup, total = lengths["warmup_steps"], lengths["decay_steps"]
        lr = keras.optimizers.schedules.CosineDecay(lr * 0.1 if warmup else lr, total, alpha=0.01,
                                                    warmup_target=lr if warmup else None, warmup_steps=warmup)
    elif train["schedule"] != "constant":
        raise ConfigError(f"train.schedule must be cosine or constant, got {train['schedule']!r}")
    optimizers = {"adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=train["weight_decay"]),
                  "adam": lambda: keras.optimizers.Adam(lr),
                  "sgd": lambda: keras.optimizers.SGD(lr, momentum=0.9, nesterov=True)}
    if train["optimizer"] not in optimizers:
        raise ConfigError(f"train.optimizer must be one of {', '.join(optimizers)}, got {train['optimizer']!r}")
    return optimizers[train["optimizer"]]()


def compile_model(model, config, prepared, class_weights=None):
    loss_config = {k: v for k, v in config["loss"].items() if k not in ("name", "class_weights", "border_weights")}
    num_classes = prepared.encoding.num_classes
    if is_multilabel(prepared.encoding):
        loss, metrics = multilabel.loss_and_metrics(config, prepared.class_names, class_weights)
    else:
        loss = get_loss(config["loss"]["name"], num_classes=num_classes, ignore_class=IGNORE_INDEX,
                        class_weights=None if class_weights is None else list(map(float, class_weights)),
                        **loss_config)
        metrics = segmentation_metrics(num_classes, prepared.class_names, ignore_class=IGNORE_INDEX)
    train = config["train"]
    train_rows = int((prepared.frame["split"] == "train").sum())  # also a bare namespace's frame (tests, benchmarks)
    model.compile(optimizer=_optimizer(train, train_rows), loss=loss, metrics=metrics,
                  jit_compile=train["jit_compile"], steps_per_execution=train["steps_per_execution"])
    return model


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose best value and patience counter continue from an earlier history."""

    def __init__(self, history, **kwargs):
        super().__init__(**kwargs)
        self._history = history

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._set_monitor_op()
        for epoch, value in zip(self._history.get("epoch", []), self._history.get(self.monitor, [])):
            self.wait += 1
            if self._is_improvement(value, self.best):
                self.best, self.best_epoch, self.wait = value, int(epoch), 0


def _resume_state(run_dir, monitor, truncate=True):
    """Epochs done and the history rows that the backup covers (later rows are dropped from history.csv)."""
    meta = run_dir / "backup" / "training_metadata.json"
    history_path = run_dir / "history.csv"
    if not meta.exists() or not history_path.exists():
        return 0, {}
    done = json.loads(meta.read_text()).get("epoch", 0)
    try:
        history = pd.read_csv(history_path)
    except pd.errors.EmptyDataError:  # a mid-epoch backup of the first epoch: no row yet
        history = pd.DataFrame({"epoch": []})
    history = history[history["epoch"] < done]
    if truncate:
        with atomic_path(history_path) as temp:
            history.to_csv(temp, index=False)
    return done, {k: history[k].tolist() for k in history.columns if k in ("epoch", monitor)}


def find_resumable_run(runs_dir, config):
    """The newest unfinished run of the same name and identical config, if any."""
    candidates = sorted(pathlib.Path(runs_dir).glob(f"{config['name']}-*"), reverse=True)
    for run_dir in candidates:
        saved = run_dir / "config.yaml"
        if (run_dir / "backup").is_dir() and not (run_dir / "metrics.json").exists() and saved.exists():
            if comparable(yaml.safe_load(saved.read_text())) == comparable(config):
                return run_dir
    return None


def new_run_dir(runs_dir, name):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = pathlib.Path(runs_dir) / f"{name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=False)
    return run_dir


def train(config, runs_dir="runs", fresh=False, distribute="none", log=print, started=None, scanned=None):
    """Train from a resolved config; returns the run folder (None on a non-chief worker).

    The run folder holds config.yaml, model.keras (best by `train.monitor`), history.csv, curves.png,
    class_weights.csv (when used), logs/ (TensorBoard) and metrics.json (validation scores of the best
    model). Running the same config again resumes an unfinished run from its last finished epoch: weights,
    optimizer state (so the LR schedule), best score, early-stopping patience and history.csv continue.
    `distribute` ("none", "mirrored" or "multiworker", see `app.core.distribute`) splits each global batch of
    `train.batch_size` over the replicas; only the chief process writes the run folder. `train.time_budget`
    sets the epochs (see `app.core.budget`), counting from `started` (a `time.monotonic()`; default: now).
    `scanned`: the plan's scan of the data (`scan_dataset`), reused instead of reading every file again.
    """
    check_finetune_options(config["train"], config["model"])
    check_encoder_weights(config["model"])
    started = time.monotonic() if started is None else started
    with replicas(distribute) as setup:
        keras.utils.set_random_seed(config["seed"])
        batch = config["train"]["batch_size"]
        if batch % setup.count:
            raise ConfigError(f"train.batch_size {batch} is the global batch: it must be a multiple of the "
                              f"{setup.count} replicas")
        prepared = prepare_data(config, runs_dir=runs_dir, scanned=scanned)
        log(detection_line(prepared.source, prepared.encoding))
        if is_multilabel(prepared.encoding):
            config = {**config, "data": {**config["data"], "mask": MULTILABEL}}
        config = {**config, "data": {**config["data"], "normalization": prepared.normalization.to_config(),
                                     "channels": prepared.channels}}
        for note in prepared.source.notes:
            log(f"note: {note}")
        log(f"input normalization: {prepared.normalization.describe()}")
        log(prepared.class_table.to_string(float_format=lambda v: f"{v:.4f}"))
        if setup.count > 1:
            log(f"distribute: {setup.mode}, {setup.count} replicas, {batch // setup.count} images each per step")
        resumable = None if fresh else find_resumable_run(runs_dir, config)
        if config["train"].get("time_budget") is not None:
            prepared.budget = fit_to_budget(config, prepared, setup, resumable, started, log)
        if not setup.chief:
            with tempfile.TemporaryDirectory(prefix="segkit-worker-") as scratch:
                fit_model(config, prepared, setup, pathlib.Path(scratch), resumable, log)
            return None
        run_dir = resumable or new_run_dir(runs_dir, config["name"])
        with stopped_cleanly(run_dir, created=resumable is None):
            if resumable is None:
                dump_config(config, run_dir / "config.yaml")
                if prepared.encoding.colours is not None:
                    write_class_palette(run_dir / "palette.csv", prepared.class_names, prepared.encoding.colours)
            monitor = fit_model(config, prepared, setup, run_dir, run_dir, log)
    final_start = time.monotonic()
    with atomic_path(run_dir / "curves.png") as temp:
        plot_curves(pd.read_csv(run_dir / "history.csv"), temp, monitor)
    metrics = final_metrics(keras.saving.load_model(run_dir / "model.keras"), prepared)
    if prepared.budget is not None:
        prepared.budget.spent["final evaluation"] = time.monotonic() - final_start
    with atomic_path(run_dir / "metrics.json") as temp:
        temp.write_text(json.dumps(metrics, indent=2))
    shutil.rmtree(run_dir / "backup", ignore_errors=True)
    split = "validation split" if metrics["split"] == "val" else "training split (there is no validation split)"
    log(f"best model per class, {split}:\n" + pd.DataFrame(metrics["per_class"]).T.to_string(
        float_format=lambda v: f"{v:.4f}", na_rep="n/a"))
    second = ("pixel accuracy", "pixel_accuracy") if "pixel_accuracy" in metrics else ("mean Dice", "mean_dice")
    log(f"best model, {split}: mIoU {metrics['miou']:.4f}, {second[0]} {metrics[second[1]]:.4f}")
    if prepared.budget is not None:
        prepared.budget.finish(run_dir, log)
    log(f"run folder: {run_dir}")
    return run_dir


def _resumable(run_dir):
    return (run_dir / "backup" / "training_metadata.json").exists() or (run_dir / "model.keras").exists()


@contextlib.contextmanager
def stopped_cleanly(run_dir, created):
    """Turn a signal's `Stopped` into one line saying what is kept; remove a run folder `created` by this
    process that holds nothing to resume from (no backup, no model).

    The frames of the stopped `fit` are cleared: they hold a tf.data iterator that hangs the interpreter's exit.
    """
    try:
        yield
        return
    except interrupt.Stopped as stop:
        traceback.clear_frames(stop.__traceback__)
        signum, where = stop.signum, stop.where
    gc.collect()
    where = where or f"stopped by {signal.Signals(signum).name}"
    if _resumable(run_dir):
        batch = _mid_epoch_batch(run_dir)
        message = f"{where}; run the same command to resume" + (
            f" (from the mid-epoch backup after batch {batch})" if batch else "")
    else:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        message = f"{where}, before anything was saved (no run folder kept); run the same command to start"
    raise interrupt.Stopped(signum, message)


def fit_model(config, prepared, setup, out_dir, resume_dir, log=print):
    """Build, compile and fit the model, writing checkpoints and logs to `out_dir`; returns the monitored key.

    `resume_dir` is the run folder to continue from (None for a new run); it is only read unless it is `out_dir`.
    """
    class_weights = compute_class_weights(config, prepared.class_table)
    if class_weights is not None:
        table = pd.DataFrame({"class": prepared.class_names, "weight": class_weights})
        table.to_csv(out_dir / "class_weights.csv", index=False)
        log(f"class weights ({config['loss']['class_weights']}):\n{table.to_string(index=False)}")
    warmed = prepared.budget.take_model() if prepared.budget is not None else None
    with setup.scope():
        model = warmed or compile_model(build_model(config, prepared.encoding.num_classes), config, prepared,
                                        class_weights)
    scaling = ", dynamic loss scaling" if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) else ""
    log(f"model: {config['model']['name']}, {model.count_params():,} parameters, "
        f"precision {model.dtype_policy.name} (train.precision: {config['train']['precision']}){scaling}")
    if warning := bfloat16_cost_warning(config["train"]["precision"]):
        log(warning)
    if getattr(model, "encoder_report", None):
        log(model.encoder_report)
    train = config["train"]
    monitor = train["monitor"] if prepared.val is not None else train["monitor"].removeprefix("val_")
    initial_epoch, history = (0, {}) if resume_dir is None else _resume_state(resume_dir, monitor,
                                                                                truncate=resume_dir == out_dir)
    mid_epoch = _mid_epoch_batch(resume_dir)
    if initial_epoch or mid_epoch:
        log(f"resuming unfinished run {resume_dir} after epoch {initial_epoch}/{train['epochs']}"
            + (f" (mid-epoch backup after batch {mid_epoch}: epoch {initial_epoch + 1} starts again from its "
               "first batch with those weights)" if mid_epoch else ""))
    checkpoint = out_dir / "model.keras"
    callbacks = finetune_callbacks(model, train) + fit_callbacks(train, monitor, out_dir, resume_dir, initial_epoch,
                                                                  history)
    if prepared.budget is not None:
        callbacks.insert(0, BudgetGuard(prepared.budget, out_dir, config["train"], log))
    budget = prepared.budget
    val = None if prepared.val is None else distribute_dataset(
        prepared.val_sample(budget.validation.images, config["seed"]) if budget else prepared.val, setup)
    ledger = TimeLedger()
    callbacks.insert(-1, ledger)  # after the saving callbacks, before StopOnSignal
    train_rows = prepared.images("train")
    with interrupt.deferred():
        model.fit(distribute_dataset(prepared.train, setup), validation_data=val,
                  epochs=max(train["epochs"], budget.max_epochs if budget else 0),
                  steps_per_epoch=epoch_steps(train, train_rows),
                  validation_freq=budget.validated if budget and budget.validated else 1, callbacks=callbacks,
                  shuffle=False, verbose=2 if train.get("verbose") == "epoch" else "auto")
    if budget is not None:
        budget.spent.update(ledger.seconds)
    if not checkpoint.exists():
        with atomic_path(checkpoint) as temp:
            model.save(temp)
    return monitor


def _mid_epoch_batch(resume_dir):
    """The batch count of a mid-epoch backup in `resume_dir`, else 0."""
    meta = None if resume_dir is None else resume_dir / "backup" / "training_metadata.json"
    return json.loads(meta.read_text()).get("batch", 0) if meta is not None and meta.exists() else 0


def fit_callbacks(train, monitor, out_dir, resume_dir=None, initial_epoch=0, history=None):
    """The Keras callbacks of a run; `history` holds the rows of the `initial_epoch` epochs already done.

    `train.early_stopping_patience: null` leaves early stopping out (the schedule runs to its last epoch).
    The progress bar shows split-named scores without the per-class ones (those go to history.csv and
    TensorBoard); SIGINT/SIGTERM stop after the current batch (`StopOnSignal`, last).
    """
    checkpoint, history = out_dir / "model.keras", history or {}
    backup = AtomicBackupAndRestore(out_dir / "backup", None if resume_dir is None else resume_dir / "backup",
                                    train.get("checkpoint_every_minutes"))
    callbacks = [
        StopOnNonFiniteLoss(checkpoint, train["learning_rate"]),
        LearningRateLogger(),
        SplitProgbarLogger(),
        AtomicModelCheckpoint(str(checkpoint), monitor=monitor, mode="max", save_best_only=True,
                              initial_value_threshold=max(history.get(monitor, []), default=None)),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=initial_epoch > 0),
        keras.callbacks.TensorBoard(str(out_dir / "logs"), write_graph=False),
        backup,
    ]
    if train["early_stopping_patience"] is not None:
        callbacks.append(ResumableEarlyStopping(history, monitor=monitor, mode="max",
                                                patience=train["early_stopping_patience"]))
    return callbacks + [StopOnSignal(backup)]


def final_metrics(model, prepared):
    """Scores of `model` on the validation split (training split when there is none), as a JSON-able dict."""
    if is_multilabel(prepared.encoding):
        return multilabel.final_metrics(model, prepared)
    dataset, split = prepared.evaluation()
    matrix = confusion_matrix_on(model, dataset.as_numpy_iterator(), prepared.encoding.num_classes)
    table, summary = scores_table(matrix, prepared.class_names)
    summary["split"] = split
    summary["per_class"] = {name: {k: (None if np.isnan(v) else float(v)) for k, v in row.items()}
                            for name, row in table.to_dict("index").items()}
    summary["confusion_matrix"] = matrix.astype(int).tolist()
    return summary
