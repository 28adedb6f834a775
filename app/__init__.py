"""Command-line entry points (`python -m app.<command>`, `segkit <command>`) and the run logic they share."""
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
