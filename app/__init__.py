"""segkit's application: each command is a thin CLI at `app/<command>.py` (`python -m app.train`, `segkit train`);
its logic lives in the stage folders, which notebooks and benchmarks import.

Stage folders, lowest first; a folder may import the folders before it (and `data/`, `models/`), never one
after it, and no command module (`tests/test_import_graph.py` checks this):

    runtime     output folders and atomic writes, signals, native log filtering, devices and precision
    config      the typed configuration: every key's type, default, range and meaning; loading and overrides
    inference   a trained model as a predictor: loading, padding and tiling, LiteRT runner, label-tool writers
    evaluation  scores, confusion matrices, reports, plots
    dataset     a configured dataset read as training reads it: scan, prepared pipelines, checks, imports
    planning    the fingerprint-based plan
    training    model building, optimizer, the fit loop, time budget, callbacks, distribution, run folders
    exporting   SavedModel and TFLite exporters with their parity gate
"""
import os
import pathlib
import sys

_ROOT = pathlib.Path(__file__).resolve().parents[1]


def _drop_working_folder_from_path():
    """Take the working folder off sys.path unless it is this checkout.

    `python -m app.X` puts the working folder first on sys.path, so a user's own `models.py` or `data.py` there
    would shadow our `models` and `data` packages ("'models' is not a package"). Nothing of ours imports user
    code by module name, so the commands do not need that entry.
    """
    try:
        cwd = pathlib.Path.cwd().resolve()
    except OSError:  # the working folder was deleted
        cwd = None
    if cwd == _ROOT:
        return
    for entry in list(sys.path):
        if entry in ("", ".") or (cwd is not None and os.path.isdir(entry) and pathlib.Path(entry).resolve() == cwd):
            sys.path.remove(entry)


_drop_working_folder_from_path()
