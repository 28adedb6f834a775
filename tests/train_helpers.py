"""Shared pieces of the training tests: tiny runs of `python -m app.train` on the embedded nuclei data."""
import pathlib
import subprocess
import sys

import pandas as pd

REPO = pathlib.Path(__file__).resolve().parents[1]
TINY = ["--set", "model.base_filters=4", "--set", "model.depth=2", "--set", "data.image_size=[64,64]",
        "--set", "train.batch_size=8", "--set", "train.verbose=epoch"]
REPLICA_INVARIANT = TINY + ["--loss", "ce", "--set", "model.batch_norm=false", "--set", "augment.scale=null",
                            "--set", "augment.rotate=0"]
"""TINY, minus what legitimately differs between 1 and N replicas: batch-norm statistics and the Dice term are
per replica, and rotation voids pixels unevenly (each replica's loss is a mean over its own valid pixels)."""


def train_command(*args):
    return [sys.executable, "-m", "app.train", *args]


def run(command, timeout=300, **kwargs):
    """Run a command in the repository; return the CompletedProcess (text output captured)."""
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, **kwargs)


def only_run_dir(runs):
    (run_dir,) = pathlib.Path(runs).iterdir()
    return run_dir


def history(runs):
    return pd.read_csv(only_run_dir(runs) / "history.csv")
