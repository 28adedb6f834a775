"""Clean stops: SIGINT (Ctrl-C) and SIGTERM (Slurm preemption, Kubernetes eviction) end a command with one line.

`stop_on_signals` turns both signals into a `Stopped` exception for the whole command (SIGTERM would otherwise
kill the process without any clean-up). Inside `deferred()` (training) the first signal is only recorded:
the training loop polls `pending()` after each batch and stops at a point where everything on disk is
consistent. A second signal stops at once.
"""
import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_pending = None
_deferring = False


class Stopped(BaseException):
    """The command was stopped by a signal; `exit_code` is 128 + the signal number (130 SIGINT, 143 SIGTERM).

    A BaseException, like KeyboardInterrupt, so that `except Exception` in library code cannot swallow it.
    """

    def __init__(self, signum, message=None):
        self.signum = signum
        self.exit_code = 128 + signum
        self.where = message
        super().__init__(message or f"stopped by {signal.Signals(signum).name}; "
                                    "files already written are complete, none is half-written")


def pending():
    """The signal number received while deferring, or None."""
    return _pending


def _handler(signum, frame):
    global _pending
    if _deferring and _pending is None:
        _pending = signum
        return
    raise Stopped(signum)


@contextlib.contextmanager
def stop_on_signals():
    """SIGINT and SIGTERM raise `Stopped` in the main thread while the block runs (no-op in other threads)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred():
    """Record the first SIGINT/SIGTERM instead of raising (poll `pending()`); raise `Stopped` at the end if unpolled.

    Outside `stop_on_signals` (a library caller), the previous handlers are restored afterwards too.
    """
    global _pending, _deferring
    with stop_on_signals():
        _pending, _deferring = None, True
        try:
            yield
        finally:
            signum, _pending, _deferring = _pending, None, False
        if signum is not None:
            raise Stopped(signum)
