"""Crash-safe training callbacks: atomic checkpoints and backups (mid-epoch too), clean stops on SIGINT/SIGTERM,
a NaN/Inf loss guard, the learning rate in logs, a progress bar that names splits and leaves per-class scores out.

Every file is written to a temporary name in its final folder and moved into place with `os.replace`, so a
crash (SIGKILL, power loss after the OS flushed) or a full disk never leaves a half-written checkpoint under
the final name. An OSError while writing is raised again naming the final path.
"""
import json
import pathlib
import re
import time

import keras
import numpy as np

from app.runtime import interrupt
from app.runtime.outputs import atomic_path

STOP_BACKUP_AFTER_SECONDS = 60
"""A stop mid-epoch writes a backup when the last one is older than this (or than the checkpoint interval):
a shorter stretch is cheaper to train again than to resume mid-epoch, which sees its batches twice."""


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that writes through a temporary file, so the previous file survives;
    epochs without the monitored score (not validated: `fit(validation_freq=...)`) keep the file as it is."""

    def _save_model(self, epoch, batch, logs):
        if self.save_best_only and (logs or {}).get(self.monitor) is None:
            return
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            with atomic_path(filepath) as temp:
                save = self.model.save_weights if self.save_weights_only else self.model.save
                save(temp, overwrite=True)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` with a crash-safe commit at each epoch end, and within long epochs.

    Weights (model and optimizer, so the step count and LR schedule continue) go to `epoch-N.weights.h5`; then
    `training_metadata.json`, which names that file, is replaced: it is the commit point. A kill at any moment
    leaves a consistent earlier state. Put this callback last, so an epoch counts as done only after the other
    callbacks (checkpoint, CSV log) have finished with it. The backup is kept after training: delete it once the
    run's outputs are final.

    With `every_minutes`, a long epoch also commits `epoch-N-batch-B.weights.h5` every that many minutes (and
    `save_mid_epoch` writes one on demand, when a signal stops training). As in Keras 3.15 with an integer
    `save_freq`, which records the batch but restores only the epoch, resuming from it restarts epoch N + 1 from
    its first batch with the saved weights and optimizer state: the training of the stopped epoch is kept, its
    first B batches are seen twice.

    Args:
        backup_dir: str. Folder of the backups written by this process.
        restore_dir: str or None. Folder to restore from (another process's backups, read only).
            Defaults to `backup_dir`.
        every_minutes: float or None. Mid-epoch backup interval; None for epoch ends only.
    """

    def __init__(self, backup_dir, restore_dir=None, every_minutes=None):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.restore_dir = pathlib.Path(restore_dir or backup_dir)
        self.every_seconds = None if every_minutes is None else 60 * every_minutes
        self._epoch = 0
        self._last_save = time.monotonic()

    def _load_model(self):
        metadata = self.restore_dir / "training_metadata.json"
        if not metadata.exists():
            return
        state = json.loads(metadata.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.restore_dir / state["weights"])
        self.model._initial_epoch = state["epoch"]

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._last_save = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.every_seconds is not None and time.monotonic() - self._last_save >= self.every_seconds:
            self._save_model(batch)

    def save_mid_epoch(self, batch):
        """Commit the weights after `batch` (0-based) of the running epoch if the last backup is old enough
        (STOP_BACKUP_AFTER_SECONDS, or the interval if shorter); returns whether it did. Never without an
        interval: `every_minutes=None` means epoch ends only."""
        if self.every_seconds is None:
            return False
        if time.monotonic() - self._last_save < min(STOP_BACKUP_AFTER_SECONDS, self.every_seconds):
            return False
        self._save_model(batch)
        return True

    def _save_model(self, batch=None):
        """Commit the finished epochs (`batch` None) or the running epoch after `batch` (0-based)."""
        folder = pathlib.Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        done = self._current_epoch if batch is None else self._epoch
        name = f"epoch-{done}" + ("" if batch is None else f"-batch-{batch + 1}")
        weights = folder / f"{name}.weights.h5"
        with atomic_path(weights) as temp:
            self.model.save_weights(temp, overwrite=True)
        state = {"epoch": done, "weights": weights.name, **({} if batch is None else {"batch": batch + 1})}
        with atomic_path(folder / "training_metadata.json") as temp:
            temp.write_text(json.dumps(state))
        for old in folder.glob("epoch-*.weights.h5"):
            if old != weights:
                old.unlink()
        self._last_save = time.monotonic()


class StopOnSignal(keras.callbacks.Callback):
    """End training cleanly after the batch during which SIGINT or SIGTERM arrived.

    Works inside `app.runtime.interrupt.deferred()`, which only records the signal. After a training batch it
    asks `backup` for a mid-epoch backup (see `AtomicBackupAndRestore.save_mid_epoch`) and raises
    `interrupt.Stopped` naming the epoch and batch; after a validation batch or an epoch end (put this callback
    after the backup, so the epoch is committed first) it raises at once.
    """

    def __init__(self, backup):
        super().__init__()
        self.backup = backup
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        signum = interrupt.pending()
        if signum is not None:
            self.backup.save_mid_epoch(batch)
            raise interrupt.Stopped(signum, f"stopped at epoch {self._epoch + 1}, batch {batch + 1}")

    def on_test_batch_end(self, batch, logs=None):
        signum = interrupt.pending()
        if signum is not None:
            raise interrupt.Stopped(signum, f"stopped at epoch {self._epoch + 1}, during validation")

    def on_epoch_end(self, epoch, logs=None):
        signum = interrupt.pending()
        if signum is not None:
            raise interrupt.Stopped(signum, f"stopped after epoch {epoch + 1}")


PER_CLASS_KEY = re.compile(r"^(val_)?iou_")
"""Log keys of per-class scores (`models.metrics.segmentation_metrics`): history.csv and TensorBoard only."""


def progress_logs(logs):
    """Epoch/batch logs as the progress bar shows them: per-class scores left out, every score named after its
    split (`train_miou`, `val_miou`), the learning rate as `lr`."""
    shown = {}
    for key, value in (logs or {}).items():
        if PER_CLASS_KEY.match(key):
            continue
        name = "lr" if key == "learning_rate" else key if key.startswith("val_") else f"train_{key}"
        shown[name] = value
    return shown


class SplitProgbarLogger(keras.callbacks.ProgbarLogger):
    """Keras' progress bar on `progress_logs`: one readable line however many classes there are."""

    def _update_progbar(self, batch, logs=None):
        super()._update_progbar(batch, progress_logs(logs))

    def _finalize_progbar(self, logs):
        super()._finalize_progbar(progress_logs(logs))


class NonFiniteLossError(ValueError):
    """The training loss became NaN or Inf."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Raise `NonFiniteLossError` as soon as a batch loss is NaN or Inf.

    Unlike `keras.callbacks.TerminateOnNaN`, the epoch does not finish: no callback sees the broken weights, so
    the best checkpoint and the backup of the last finished epoch stay as they were.

    Args:
        checkpoint: str. Path of the best-model checkpoint, named in the message.
        learning_rate: float. Peak learning rate, named in the message.
    """

    def __init__(self, checkpoint, learning_rate):
        super().__init__()
        self.checkpoint = pathlib.Path(checkpoint)
        self.learning_rate = learning_rate
        self._epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or np.isfinite(float(loss)):
            return
        kept = f"{self.checkpoint} keeps the best finished epoch" if self.checkpoint.exists() else "no checkpoint yet"
        float16 = ", float16 overflow (try --precision mixed_bfloat16)" if self.model.dtype_policy.name == (
            "mixed_float16") else ""
        raise NonFiniteLossError(
            f"loss is {float(loss)} at epoch {self._epoch + 1}, batch {batch + 1}; training stopped ({kept}). "
            f"Likely causes: learning rate {self.learning_rate:g} too high (try --lr {self.learning_rate / 10:g}), "
            f"mask values outside the classes (check data.mask, data.num_classes, data.void){float16}")


class LearningRateLogger(keras.callbacks.Callback):
    """Add the optimizer's current learning rate to the epoch logs (as `learning_rate`, for history.csv)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class TimeLedger(keras.callbacks.Callback):
    """Where the seconds of `fit` went: validation, the epoch-end work (checkpoints, backups, logs) and training
    (the rest of `fit`: steps, pipeline, epoch starts). Put it after the saving callbacks, so that their epoch-end
    work is counted."""

    def __init__(self):
        super().__init__()
        self.seconds = {"training": 0.0, "validation": 0.0, "saving": 0.0}
        self._start = self._mark = self._done = 0.0

    def on_train_begin(self, logs=None):
        self._start = self._done = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self._done = time.monotonic()

    def on_test_begin(self, logs=None):
        self._mark = time.monotonic()

    def on_test_end(self, logs=None):
        self.seconds["validation"] += time.monotonic() - self._mark
        self._done = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds["saving"] += time.monotonic() - self._done

    def on_train_end(self, logs=None):
        self.seconds["training"] = (time.monotonic() - self._start - self.seconds["validation"]
                                    - self.seconds["saving"])


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
