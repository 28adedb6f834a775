"""Output files written atomically: a temporary file in the same folder, then `os.replace`.

A crash or a bad input never leaves a half-written file under the final name.
"""
import contextlib
import io
import os
import pathlib
import secrets

import cv2
import numpy as np


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
