"""Shared command-line behaviour: user errors become one-line messages and exit code 2."""
import functools
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

USER_ERRORS = (ValueError, KeyError, TypeError, OSError)
"""Errors that bad input raises (dataset, config, files, model options); set SEGKIT_DEBUG=1 for tracebacks."""


def fail_cleanly(main):
    """Run `main`; print user errors as `error: ...` lines on stderr and return exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get("SEGKIT_DEBUG"):
                raise
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            if isinstance(err, OSError) and err.filename:
                message = f"{err.filename}: {err.strerror}"
            for line in str(message).splitlines() or [type(err).__name__]:
                print(f"error: {line}", file=sys.stderr)
            return 2

    return wrapper
