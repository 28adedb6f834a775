"""Crash safety: resume after SIGKILL, atomic checkpoints on a full disk, NaN losses, resumable early stopping."""
import errno
import json
import math
import os
import signal
import subprocess
import time
import types

import keras
import pandas as pd
import pytest
from train_helpers import REPO, TINY, history, only_run_dir, run, train_command

from app.config.loading import load_config
from app.train import main
from app.training.callbacks import NonFiniteLossError, ResumableEarlyStopping, StopOnNonFiniteLoss
from app.training.loop import fit_callbacks
from app.training.runs import resume_state


def _wait_for_epochs(path, epochs, process, timeout=240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if path.exists() and len(path.read_text().splitlines()) > epochs:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} never reached {epochs} epochs (exit code {process.poll()})")


@pytest.mark.slow
def test_sigkill_mid_run_resumes_at_the_last_epoch_boundary(tmp_path):
    command = train_command("--epochs", "4", "--runs-dir", str(tmp_path), *TINY)
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        history_path = None
        deadline = time.monotonic() + 120
        while history_path is None and time.monotonic() < deadline:
            history_path = next(tmp_path.glob("*/history.csv"), None)
            time.sleep(0.05)
        _wait_for_epochs(history_path, 2, process)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    run_dir = only_run_dir(tmp_path)
    assert not (run_dir / "metrics.json").exists()
    done = json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"]
    assert done >= 1, "lost more than one epoch"

    again = run(command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming unfinished run {run_dir} after epoch {done}/4" in again.stdout
    assert only_run_dir(tmp_path) == run_dir
    log = history(tmp_path)
    assert log["epoch"].tolist() == [0, 1, 2, 3]
    # Cosine schedule after a one-epoch warm-up: restarting the optimizer's step count would repeat the peak.
    assert log["learning_rate"].is_monotonic_decreasing and log["learning_rate"].is_unique
    assert (run_dir / "metrics.json").exists() and not (run_dir / "backup").exists()
    assert not list(run_dir.glob(".*")), "temporary files left behind"


def test_full_disk_stops_with_one_line_and_keeps_the_previous_best(tmp_path, monkeypatch, capsys):
    real_save = keras.Model.save
    saved = []

    def save_until_disk_full(model, filepath, *args, **kwargs):
        saved.append(filepath)
        if len(saved) == 1:
            return real_save(model, filepath, *args, **kwargs)
        filepath.write_bytes(b"half a zip")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(keras.Model, "save", save_until_disk_full)
    # Training mIoU rises steadily from epoch 1 to 2 here, so the second epoch saves a new best.
    code = main(["--epochs", "3", "--runs-dir", str(tmp_path), "--set", "train.monitor=miou", *TINY])
    run_dir = only_run_dir(tmp_path)
    assert code == 2
    assert capsys.readouterr().err == f"error: {run_dir / 'model.keras'}: No space left on device\n"
    assert len(saved) == 2 and saved[1].parent == run_dir and saved[1].name.startswith(".")
    assert not list(run_dir.glob(".*")), "temporary files left behind"
    assert keras.saving.load_model(run_dir / "model.keras").count_params() > 0
    assert pd.read_csv(run_dir / "history.csv")["epoch"].tolist() == [0]
    assert json.loads((run_dir / "backup" / "training_metadata.json").read_text())["epoch"] == 1


@pytest.mark.slow
def test_nan_loss_stops_naming_epoch_batch_and_causes(tmp_path, capsys):
    code = main(["--epochs", "2", "--lr", "1e12", "--runs-dir", str(tmp_path), *TINY])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("error: loss is nan at epoch 1, batch ") or err.startswith("error: loss is inf at epoch 1")
    assert "learning rate 1e+12 too high" in err and "mask values outside the classes" in err
    run_dir = only_run_dir(tmp_path)
    assert not (run_dir / "model.keras").exists() and not (run_dir / "backup").exists()


def test_nan_guard_message_with_a_checkpoint_and_float16(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"best")
    guard = StopOnNonFiniteLoss(tmp_path / "model.keras", learning_rate=0.01)
    guard.set_model(types.SimpleNamespace(dtype_policy=keras.DTypePolicy("mixed_float16")))
    guard.on_epoch_begin(4)
    guard.on_train_batch_end(0, {"loss": 0.5})
    with pytest.raises(NonFiniteLossError, match=r"loss is inf at epoch 5, batch 3; training stopped \(.*model.keras "
                                                 r"keeps the best finished epoch\).*try --lr 0.001.*mixed_bfloat16"):
        guard.on_train_batch_end(2, {"loss": math.inf})


def test_resume_state_drops_rows_the_backup_does_not_cover(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 2, "weights": "epoch-2.weights.h5"}')
    pd.DataFrame({"epoch": [0, 1, 2], "val_miou": [0.3, 0.5, 0.4], "loss": [3, 2, 1]}).to_csv(
        tmp_path / "history.csv", index=False)
    done, kept = resume_state(tmp_path, "val_miou")
    assert done == 2 and kept == {"epoch": [0, 1], "val_miou": [0.3, 0.5]}
    assert pd.read_csv(tmp_path / "history.csv")["epoch"].tolist() == [0, 1]


def test_early_stopping_patience_continues_from_the_history():
    stopper = ResumableEarlyStopping({"epoch": [0, 1, 2], "val_miou": [0.5, 0.4, 0.45]}, monitor="val_miou",
                                     mode="max", patience=3)
    model = types.SimpleNamespace(stop_training=False)
    stopper.set_model(model)
    stopper.on_train_begin()
    assert (stopper.best, stopper.best_epoch, stopper.wait) == (0.5, 0, 2)
    stopper.on_epoch_end(3, {"val_miou": 0.3})
    assert model.stop_training and stopper.stopped_epoch == 3


def test_null_patience_leaves_early_stopping_out(tmp_path):
    train = load_config().train
    with_patience = fit_callbacks(train, "val_miou", tmp_path)
    stoppers = [c for c in with_patience if isinstance(c, keras.callbacks.EarlyStopping)]
    assert len(stoppers) == 1 and stoppers[0].patience == train.early_stopping_patience == 15
    without = fit_callbacks(train.model_copy(update={"early_stopping_patience": None}), "val_miou", tmp_path)
    assert not [c for c in without if isinstance(c, keras.callbacks.EarlyStopping)]
    assert [type(c) for c in without] == [type(c) for c in with_patience if c is not stoppers[0]]
