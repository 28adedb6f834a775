"""Run folders: a new one per run, finding an unfinished one to resume (and what it had done), saving its
class palette, and stopping cleanly on a signal."""
import contextlib
import datetime
import gc
import json
import pathlib
import shutil
import signal
import traceback

import pandas as pd

from app.config.errors import ConfigError
from app.config.loading import load_run_config
from app.runtime import interrupt
from app.runtime.outputs import atomic_path


def write_class_palette(path, names, colours):
    """index,name,r,g,b CSV of the class colours that the masks define (read back by predict and evaluate)."""
    table = pd.DataFrame({"index": range(len(names)), "name": names, "r": colours[:, 0], "g": colours[:, 1],
                          "b": colours[:, 2]})
    with atomic_path(path) as temp:
        table.to_csv(temp, index=False)


def resume_state(run_dir, monitor, truncate=True):
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
    candidates = sorted(pathlib.Path(runs_dir).glob(f"{config.name}-*"), reverse=True)
    for run_dir in candidates:
        saved = run_dir / "config.yaml"
        if (run_dir / "backup").is_dir() and not (run_dir / "metrics.json").exists() and saved.exists():
            try:
                earlier = load_run_config(saved)
            except ConfigError:  # not a config this version reads: not the same run
                continue
            if comparable(earlier) == comparable(config):
                return run_dir
    return None


def new_run_dir(runs_dir, name):
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = pathlib.Path(runs_dir) / f"{name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=False)
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
        batch = mid_epoch_batch(run_dir)
        message = f"{where}; run the same command to resume" + (
            f" (from the mid-epoch backup after batch {batch})" if batch else "")
    else:
        if created:
            shutil.rmtree(run_dir, ignore_errors=True)
        message = f"{where}, before anything was saved (no run folder kept); run the same command to start"
    raise interrupt.Stopped(signum, message)


def mid_epoch_batch(resume_dir):
    """The batch count of a mid-epoch backup in `resume_dir`, else 0."""
    meta = None if resume_dir is None else resume_dir / "backup" / "training_metadata.json"
    return json.loads(meta.read_text()).get("batch", 0) if meta is not None and meta.exists() else 0


def comparable(config):
    """The config as resume compares it (plain data): with a time budget, the epochs (their learning-rate warm-up
    and their steps) were derived from it, so they do not count."""
    config = json.loads(json.dumps(config.to_dict()))
    if config["train"]["time_budget"] is not None:
        for key in ("epochs", "warmup_epochs", "steps_per_epoch"):
            config["train"].pop(key, None)
    return config
