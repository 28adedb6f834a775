"""Output folders and files: outputs never touch inputs, and files are written atomically.

`prepare_output_folder` is the one check every writing command makes before writing anything: the output folder
must not be, contain or lie inside an input folder or a dataset folder (nor be the folder of an input file), and
existing files there are only replaced with `--overwrite`. Files go to a temporary name in the same folder, then
`os.replace`: a crash or a bad input never leaves a half-written file under the final name.
"""
import contextlib
import io
import os
import pathlib
import secrets

import cv2
import numpy as np


def _relation(out, folder):
    if out == folder:
        return "is"
    if folder in out.parents:
        return "lies inside"
    if out in folder.parents:
        return "contains"
    return None


def check_output_folder(out, inputs):
    """Raise ValueError when folder `out` is, contains or lies inside one of the input folders in `inputs`, or is
    the folder of an input file there (the only place an output could replace that file). Paths are resolved,
    so `..`, symbolic links and relative spellings cannot slip through."""
    resolved = pathlib.Path(out).expanduser().resolve()
    for item in inputs:
        item = pathlib.Path(item).expanduser()
        if item.is_dir():
            folder, what = item.resolve(), "input folder"
            relation = _relation(resolved, folder)
        else:
            folder, what = item.parent.resolve(), f"folder of the input {item}"
            relation = "is" if resolved == folder else None
        if relation:
            raise ValueError(f"{out}: the output folder {relation} the {what} {folder}; outputs never go beside "
                             "inputs: choose another --out")


def dataset_folders(config):
    """The folders of a run's dataset that outputs must stay out of: `data.path` when it is a folder (images,
    masks and every layout's subfolders lie inside it), else nothing (a CSV lists files anywhere)."""
    path = pathlib.Path(str((config or {}).get("data", {}).get("path") or ""))
    return [path] if str(path) not in ("", ".") and path.is_dir() else []


def prepare_output_folder(out, inputs=(), files=(), overwrite=False, create=True):
    """Check and create output folder `out` before anything is written; returns it as a Path.

    Args:
        out: path. The output folder (created with its parents).
        inputs: paths. Input files and folders (dataset folders included) that `out` must stay clear of.
        files: paths. The files the command is about to write.
        overwrite: bool. Replace existing `files`; otherwise an existing one is refused.
        create: bool. Create the folder (False: only check, before slower work that may still fail).

    Raises:
        ValueError: `out` is, contains or lies inside an input, or a file exists without `overwrite`.
        OSError: the folder cannot be created.
    """
    check_output_folder(out, inputs)
    existing = [pathlib.Path(f) for f in files if pathlib.Path(f).exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0]}: already exists{more}; give --overwrite to replace, or choose another --out")
    return output_dir(out) if create else pathlib.Path(out)


def output_dir(path):
    """Create folder `path` (and parents); an OSError names the folder that cannot be made."""
    path = pathlib.Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, f"cannot create output folder ({err.strerror})", str(path)) from None
    return path


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path` (same suffixes) that replaces `path` when the block succeeds.

    The temporary file is removed when the block fails; an OSError is raised again naming `path`.
    """
    path = pathlib.Path(path)
    suffix = "".join(path.suffixes)
    temp = path.with_name(f".{path.name.removesuffix(suffix)}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield temp
        os.replace(temp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(err, OSError):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from None
        raise


def write_bytes(path, data):
    """Write `data` to `path` through a temporary file in the same folder."""
    with atomic_path(path) as temp:
        temp.write_bytes(data)
    return pathlib.Path(path)


def write_text(path, text):
    return write_bytes(path, text.encode("utf-8"))


def write_image(path, image):
    """Write a uint8 image (HxW, or HxWx3 RGB) in the format of `path`'s extension."""
    image = np.asarray(image)
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(pathlib.Path(path).suffix or ".png", image)
    if not ok:
        raise ValueError(f"{path}: cannot encode image")
    return write_bytes(path, encoded.tobytes())


def write_figure(fig, path, dpi=100):
    """Save a Matplotlib figure as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return write_bytes(path, buffer.getvalue())
