"""Native (C++) log lines that bypass TF_CPP_MIN_LOG_LEVEL, kept off the terminal unless --verbose.

LiteRT's interpreter prints "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." straight to file
descriptor 2 from C++ on creation, whatever TF_CPP_MIN_LOG_LEVEL says; Python's sys.stderr never sees it. So do
TensorFlow 2.21's import (absl's "WARNING: All log messages before absl::InitializeLog() ..." and "I0000 ...
port.cc] oneDNN custom operations are on ...", twice) and the TFLite converter ("fully_quantize: 0, inference_type:
6, ..."). OpenCV's own warnings are silenced by OPENCV_LOG_LEVEL (`app.cli`).
"""
import contextlib
import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

NOISE = re.compile(r"INFO: |WARNING: All log messages before absl::InitializeLog\(\)|fully_quantize: |"
                   r"Estimated count of arithmetic ops|[IW]\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] ")
"""Start of a held-back line: native INFO lines, absl's pre-init notice, absl info/warning lines (`I0000 ...
file.cc:123] `), the converter's settings and op-count lines. Errors (E/F lines) and anything else pass."""


@contextlib.contextmanager
def quiet_native_stderr():
    """Hold back the NOISE lines written to fd 2 in the block; other lines are passed on afterwards.

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
                    if not NOISE.match(line)]
            if kept:
                sys.stderr.write("".join(kept))


class _QuietImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Import `tensorflow` (first time only) inside quiet_native_stderr."""

    def __init__(self, name):
        self.name, self.spec = name, None

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name or self.spec is not None:
            return None
        sys.meta_path.remove(self)
        self.spec = importlib.util.find_spec(fullname)
        if self.spec is None:
            return None
        self.loader = self.spec.loader
        self.spec.loader = self
        return self.spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with quiet_native_stderr():
            module.__spec__.loader = self.loader
            self.loader.exec_module(module)


def quiet_tensorflow_import():
    """Hold back TensorFlow's native start-up lines when it is first imported (no-op once it is imported)."""
    if "tensorflow" not in sys.modules and not any(isinstance(f, _QuietImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietImport("tensorflow"))
