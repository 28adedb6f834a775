"""Training runs: the fit loop of a run from its config, its Keras callbacks and its final scores."""
import json
import pathlib
import shutil
import sys
import tempfile
import time

import keras
import pandas as pd

from app.config.errors import ConfigError
from app.config.loading import absolute_data_paths, dump_config
from app.dataset.prepared import prepare_data
from app.evaluation.plots import plot_curves
from app.evaluation.scores import confusion_matrix_on, per_class_dict, scores_table
from app.runtime import interrupt
from app.runtime.devices import bfloat16_cost_warning
from app.runtime.outputs import atomic_path
from app.training import multilabel
from app.training.budget import fit_to_budget
from app.training.budget_guard import BudgetGuard
from app.training.callbacks import (AtomicBackupAndRestore, AtomicModelCheckpoint, LearningRateLogger,
                                    ResumableEarlyStopping, SplitProgbarLogger, StopOnNonFiniteLoss, StopOnSignal,
                                    TimeLedger)
from app.training.conv_gradients import conv_weight_gradients
from app.training.distribute import distribute_dataset, replicas
from app.training.model import build_model, compile_model, compute_class_weights
from app.training.optimizer import epoch_steps
from app.training.runs import (find_resumable_run, mid_epoch_batch, new_run_dir, resume_state, stopped_cleanly,
                               write_class_palette)
from data.layouts import detection_line
from data.multilabel import MULTILABEL, is_multilabel
from models.encoders import check_encoder_weights
from models.finetune import check_finetune_options, finetune_callbacks


def train(config, runs_dir="runs", fresh=False, distribute="none", log=print, started=None, scanned=None):
    """Train from a resolved config; returns the run folder (None on a non-chief worker).

    The run folder holds config.yaml, model.keras (best by `train.monitor`), history.csv, curves.png,
    class_weights.csv (when used), logs/ (TensorBoard) and metrics.json (validation scores of the best
    model). Running the same config again resumes an unfinished run from its last finished epoch: weights,
    optimizer state (so the LR schedule), best score, early-stopping patience and history.csv continue.
    `distribute` ("none", "mirrored" or "multiworker", see `app.training.distribute`) splits each global batch of
    `train.batch_size` over the replicas; only the chief process writes the run folder. `train.time_budget`
    sets the epochs (see `app.training.budget`), counting from `started` (a `time.monotonic()`; default: now).
    `scanned`: the plan's scan of the data (`scan_dataset`), reused instead of reading every file again.
    """
    check_finetune_options(config.train.options(), config.model.options())
    check_encoder_weights(config.model.options())
    started = time.monotonic() if started is None else started
    with replicas(distribute) as setup:
        keras.utils.set_random_seed(config.seed)
        batch = config.train.batch_size
        if batch % setup.count:
            raise ConfigError(f"train.batch_size {batch} is the global batch: it must be a multiple of the "
                              f"{setup.count} replicas")
        prepared = prepare_data(config, runs_dir=runs_dir, scanned=scanned)
        log(detection_line(prepared.source, prepared.encoding))
        mask = MULTILABEL if is_multilabel(prepared.encoding) else config.data.mask
        config = absolute_data_paths(config.replace(data={"mask": mask, "channels": prepared.channels,
                                                          "normalization": prepared.normalization.to_config()}))
        for note in prepared.source.notes:
            log(f"note: {note}")
        log(f"input normalization: {prepared.normalization.describe()}")
        log(prepared.class_table.to_string(float_format=lambda v: f"{v:.4f}"))
        if setup.count > 1:
            log(f"distribute: {setup.mode}, {setup.count} replicas, {batch // setup.count} images each per step")
        resumable = None if fresh else find_resumable_run(runs_dir, config)
        if config.train.time_budget is not None:
            prepared.budget = fit_to_budget(config, prepared, setup, resumable, started, log)
        if not setup.chief:
            with tempfile.TemporaryDirectory(prefix="segkit-worker-") as scratch:
                fit_model(config, prepared, setup, pathlib.Path(scratch), resumable, log)
            return None
        run_dir = resumable or new_run_dir(runs_dir, config.name)
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


def fit_model(config, prepared, setup, out_dir, resume_dir, log=print):
    """Build, compile and fit the model, writing checkpoints and logs to `out_dir`; returns the monitored key.

    `resume_dir` is the run folder to continue from (None for a new run); it is only read unless it is `out_dir`.
    """
    class_weights = compute_class_weights(config, prepared.class_table)
    if class_weights is not None:
        table = pd.DataFrame({"class": prepared.class_names, "weight": class_weights})
        table.to_csv(out_dir / "class_weights.csv", index=False)
        log(f"class weights ({config.loss.class_weights}):\n{table.to_string(index=False)}")
    warmed = prepared.budget.take_model() if prepared.budget is not None else None
    with setup.scope():
        model = warmed or compile_model(build_model(config, prepared.encoding.num_classes), config, prepared,
                                        class_weights)
    scaling = ", dynamic loss scaling" if isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) else ""
    own_gradients = keras.backend.backend() == "tensorflow" and conv_weight_gradients()  # what compile_model set
    gradients = ", conv weight gradients as matmuls (AVX2 CPU)" if own_gradients else ""
    log(f"model: {config.model.name}, {model.count_params():,} parameters, "
        f"precision {model.dtype_policy.name} (train.precision: {config.train.precision}){scaling}{gradients}")
    if warning := bfloat16_cost_warning(config.train.precision):
        log(warning)
    if getattr(model, "encoder_report", None):
        log(model.encoder_report)
    train = config.train
    monitor = train.monitor if prepared.val is not None else train.monitor.removeprefix("val_")
    initial_epoch, history = (0, {}) if resume_dir is None else resume_state(resume_dir, monitor,
                                                                                truncate=resume_dir == out_dir)
    mid_epoch = mid_epoch_batch(resume_dir)
    if initial_epoch or mid_epoch:
        log(f"resuming unfinished run {resume_dir} after epoch {initial_epoch}/{train.epochs}"
            + (f" (mid-epoch backup after batch {mid_epoch}: epoch {initial_epoch + 1} starts again from its "
               "first batch with those weights)" if mid_epoch else ""))
    checkpoint = out_dir / "model.keras"
    callbacks = finetune_callbacks(model, train.options()) + fit_callbacks(train, monitor, out_dir, resume_dir, initial_epoch,
                                                                  history)
    if prepared.budget is not None:
        callbacks.insert(0, BudgetGuard(prepared.budget, out_dir, train, log))
    budget = prepared.budget
    val = None if prepared.val is None else distribute_dataset(
        prepared.val_sample(budget.validation.images, config.seed) if budget else prepared.val, setup)
    ledger = TimeLedger()
    callbacks.insert(-1, ledger)  # after the saving callbacks, before StopOnSignal
    train_rows = prepared.images("train")
    with interrupt.deferred():
        model.fit(distribute_dataset(prepared.train, setup), validation_data=val,
                  epochs=max(train.epochs, budget.max_epochs if budget else 0),
                  steps_per_epoch=epoch_steps(train, train_rows),
                  validation_freq=budget.validated if budget and budget.validated else 1, callbacks=callbacks,
                  shuffle=False, verbose=fit_verbosity(train.verbose))
    if budget is not None:
        budget.spent.update(ledger.seconds)
    if not checkpoint.exists():
        with atomic_path(checkpoint) as temp:
            model.save(temp)
    return monitor


def fit_verbosity(setting, stream=None):
    """Keras `fit(verbose=...)` of `train.verbose`: the progress bar (1) on a terminal or in a notebook, one line
    per epoch (2) in a file, a pipe or a CI log, or with `epoch`. (Keras' own "auto" draws the bar with
    backspaces into files too.)"""
    stream = sys.stdout if stream is None else stream
    notebook = type(stream).__module__.startswith("ipykernel")  # a Jupyter cell's output
    interactive = getattr(stream, "isatty", lambda: False)() or notebook
    return 1 if setting == "auto" and interactive else 2


def fit_callbacks(train, monitor, out_dir, resume_dir=None, initial_epoch=0, history=None):
    """The Keras callbacks of a run; `history` holds the rows of the `initial_epoch` epochs already done.

    `train.early_stopping_patience: null` leaves early stopping out (the schedule runs to its last epoch).
    The progress bar shows split-named scores without the per-class ones (those go to history.csv and
    TensorBoard); SIGINT/SIGTERM stop after the current batch (`StopOnSignal`, last).
    """
    checkpoint, history = out_dir / "model.keras", history or {}
    backup = AtomicBackupAndRestore(out_dir / "backup", None if resume_dir is None else resume_dir / "backup",
                                    train.checkpoint_every_minutes)
    callbacks = [
        StopOnNonFiniteLoss(checkpoint, train.learning_rate),
        LearningRateLogger(),
        SplitProgbarLogger(),
        AtomicModelCheckpoint(str(checkpoint), monitor=monitor, mode="max", save_best_only=True,
                              initial_value_threshold=max(history.get(monitor, []), default=None)),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=initial_epoch > 0),
        keras.callbacks.TensorBoard(str(out_dir / "logs"), write_graph=False),
        backup,
    ]
    if train.early_stopping_patience is not None:
        callbacks.append(ResumableEarlyStopping(history, monitor=monitor, mode="max",
                                                patience=train.early_stopping_patience))
    return callbacks + [StopOnSignal(backup)]


def final_metrics(model, prepared):
    """Scores of `model` on the validation split (training split when there is none), as a JSON-able dict."""
    if is_multilabel(prepared.encoding):
        return multilabel.final_metrics(model, prepared)
    dataset, split = prepared.evaluation()
    matrix = confusion_matrix_on(model, dataset.as_numpy_iterator(), prepared.encoding.num_classes)
    table, summary = scores_table(matrix, prepared.class_names)
    summary["split"] = split
    summary["per_class"] = per_class_dict(table)
    summary["confusion_matrix"] = matrix.astype(int).tolist()
    return summary
