"""Native (C++) log lines that bypass TF_CPP_MIN_LOG_LEVEL, kept off the terminal unless --verbose.

LiteRT's interpreter prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." straight to file
descriptor 2 from C++ on creation, whatever TF_CPP_MIN_LOG_LEVEL says; Python's sys.stderr never sees it.
"""
import contextlib
import os
import sys
import tempfile


@contextlib.contextmanager
def quiet_native_stderr():
    """Hold back native `INFO:` lines written to fd 2 in the block; other lines are passed on afterwards.

    Does nothing with --verbose (SEGKIT_VERBOSE=1) or where fd 2 cannot be duplicated.
    """
    if os.environ.get("SEGKIT_VERBOSE"):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(keepends=True)
                    if not line.startswith("INFO: ")]
            if kept:
                sys.stderr.write("".join(kept))
