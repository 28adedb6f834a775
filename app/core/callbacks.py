"""Crash-safe training callbacks: atomic checkpoints and backups, a NaN/Inf loss guard, the learning rate in logs.

Every file is written to a temporary name in its final folder and moved into place with `os.replace`, so a
crash (SIGKILL, power loss after the OS flushed) or a full disk never leaves a half-written checkpoint under
the final name. An OSError while writing is raised again naming the final path.
"""
import json
import pathlib

import keras
import numpy as np

from app.core.outputs import atomic_path


class AtomicModelCheckpoint(keras.callbacks.ModelCheckpoint):
    """`keras.callbacks.ModelCheckpoint` that writes through a temporary file, so the previous file survives."""

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if self._should_save_model(epoch, batch, logs, filepath):
            with atomic_path(filepath) as temp:
                save = self.model.save_weights if self.save_weights_only else self.model.save
                save(temp, overwrite=True)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` with a crash-safe commit at each epoch end.

    Weights (model and optimizer, so the step count and LR schedule continue) go to `epoch-N.weights.h5`; then
    `training_metadata.json`, which names that file, is replaced: it is the commit point. A kill at any moment
    leaves a consistent earlier state. Put this callback last, so an epoch counts as done only after the other
    callbacks (checkpoint, CSV log) have finished with it. The backup is kept after training: delete it once the
    run's outputs are final.

    Args:
        backup_dir: str. Folder of the backups written by this process.
        restore_dir: str or None. Folder to restore from (another process's backups, read only).
            Defaults to `backup_dir`.
    """

    def __init__(self, backup_dir, restore_dir=None):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=False)
        self.restore_dir = pathlib.Path(restore_dir or backup_dir)

    def _load_model(self):
        metadata = self.restore_dir / "training_metadata.json"
        if not metadata.exists():
            return
        state = json.loads(metadata.read_text())
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(self.restore_dir / state["weights"])
        self.model._initial_epoch = state["epoch"]

    def _save_model(self):
        folder = pathlib.Path(self.backup_dir)
        folder.mkdir(parents=True, exist_ok=True)
        weights = folder / f"epoch-{self._current_epoch}.weights.h5"
        with atomic_path(weights) as temp:
            self.model.save_weights(temp, overwrite=True)
        with atomic_path(folder / "training_metadata.json") as temp:
            temp.write_text(json.dumps({"epoch": self._current_epoch, "weights": weights.name}))
        for old in folder.glob("epoch-*.weights.h5"):
            if old != weights:
                old.unlink()


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
