"""Output folders and files: outputs never touch inputs, and files are written atomically.

`prepare_output_folder` is the one check every writing command makes before writing anything: the output folder
must not be, contain or lie inside an input folder or a dataset folder (nor be the folder of an input file), and
existing files there are only replaced with `--overwrite`. Files go to a temporary name in the same folder, then
`os.replace`: a crash or a bad input never leaves a half-written file under the final name. Folders a command
creates are remembered (`created_folders`) so that a command that fails leaves none behind (`discard_new_folders`,
called by `app.cli.fail_cleanly`).
"""
import contextlib
import io
import os
import pathlib
import secrets
import shutil

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


def check_mask_folder(out, inputs):
    """Raise ValueError when existing folder `out` holds masks paired with the input images: image files named
    `<input stem><mask suffix>` where the suffix is one predictions never carry (`_mask`, `_label`, ...) or the
    folder has a dataset's mask-folder name (masks/, labels/, SegmentationClass/, ...). --overwrite does not
    lift this: ground truth is never replaced."""
    from data.layouts.base import IMAGE_EXTENSIONS, MASK_SUFFIXES
    from data.layouts.paired import MASK_DIR_NAMES
    from data.layouts.voc import MASK_DIRS

    out = pathlib.Path(out)
    if not out.is_dir():
        return
    images = {}
    for item in map(pathlib.Path, inputs):
        for file in (sorted(item.iterdir()) if item.is_dir() else [item]):
            if file.suffix.lower() in IMAGE_EXTENSIONS:
                images.setdefault(file.stem, file)
    mask_folder = out.name.lower() in {name.lower() for name in (*MASK_DIR_NAMES, *MASK_DIRS)}
    for file in sorted(out.iterdir()):
        if not file.is_file() or file.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        for suffix in MASK_SUFFIXES:
            stem = file.stem.removesuffix(suffix) if suffix else file.stem
            if (suffix or mask_folder) and file.stem.endswith(suffix) and stem in images:
                raise ValueError(f"{out}: holds the masks of the input images ({file.name} for {images[stem].name}); "
                                 f"outputs never go into a dataset's mask folder, --overwrite included: choose "
                                 f"another --out")


DATASET_LAYOUTS = ("voc", "cityscapes", "ade", "segnet", "paired")
"""Layouts whose folders `check_dataset_folder` recognises as datasets."""


def check_dataset_folder(out):
    """Raise ValueError when existing folder `out` is a dataset (a layout of DATASET_LAYOUTS recognises it) or a
    dataset's image or mask folder (masks/ of a folder with images/ + masks/, ...)."""
    from data.layouts import LAYOUTS
    from data.layouts.paired import IMAGE_DIR_NAMES, MASK_DIR_NAMES
    from data.layouts.voc import MASK_DIRS

    out = pathlib.Path(out)
    if not out.is_dir():
        return
    known = {name.lower() for name in (*IMAGE_DIR_NAMES, *MASK_DIR_NAMES, *MASK_DIRS)}
    candidates = [(out.resolve(), "is a dataset")]
    if out.name.lower() in known:
        candidates.append((out.resolve().parent, f"is the {out.name}/ folder of a dataset"))
    for folder, relation in candidates:
        for name in DATASET_LAYOUTS:
            reason = LAYOUTS[name].detect(folder)
            if reason:
                raise ValueError(f"{out}: the output folder {relation} ({folder}: layout {name}, {reason}); outputs "
                                 f"never go into a dataset, --overwrite included: choose another --out")


def dataset_folders(config):
    """The folders of a run's dataset that outputs must stay out of: `config.data.path` when it is a folder (images,
    masks and every layout's subfolders lie inside it), else nothing (a CSV lists files anywhere; no config)."""
    path = pathlib.Path(config.data.path if config is not None else "")
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
        ValueError: `out` is, contains or lies inside an input, holds the inputs' masks (`check_mask_folder`), is
            a dataset or one of its folders (`check_dataset_folder`), or a file exists without `overwrite`.
        OSError: the folder cannot be created.
    """
    check_output_folder(out, inputs)
    check_mask_folder(out, inputs)
    check_dataset_folder(out)
    existing = [pathlib.Path(f) for f in files if pathlib.Path(f).exists()]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ValueError(f"{existing[0]}: already exists{more}; give --overwrite to replace, or choose another --out")
    return output_dir(out) if create else pathlib.Path(out)


_CREATED = []
"""The topmost folder each `output_dir` call created, in order, since the last `forget_new_folders`."""


def output_dir(path):
    """Create folder `path` (and parents); an OSError names the folder that cannot be made."""
    path = pathlib.Path(path)
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OSError(err.errno, f"cannot create output folder ({err.strerror})", str(path)) from None
    if missing:
        _CREATED.append(missing[-1].absolute())
    return path


def forget_new_folders():
    """Start a command: the folders created so far are kept whatever happens next."""
    _CREATED.clear()


def discard_new_folders():
    """Remove the folders `output_dir` created since `forget_new_folders` (with what was written in them): a
    command that fails leaves no output folder behind. Returns the folders removed."""
    removed = []
    for folder in reversed(_CREATED):
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    _CREATED.clear()
    return removed


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
