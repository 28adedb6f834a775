"""Shared command-line behaviour: user errors become one-line messages and exit code 2, signals one line and
128 + the signal number, TensorFlow's C++ log lines stay hidden unless --verbose; `segkit <command>` dispatch.

Exit codes of every command: 0 done, 1 done with problems (the command says which), 2 bad input (nothing
written that the user had), 130 stopped by SIGINT (Ctrl-C), 143 stopped by SIGTERM.
"""
import functools
import importlib
import os
import signal
import sys

_USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
_USER_VERBOSE = bool(os.environ.get("SEGKIT_VERBOSE"))
_USER_CV_LOG_LEVEL = os.environ.get("OPENCV_LOG_LEVEL")
# Must be set before TensorFlow is imported (commands import it lazily, after this module). Level 3 hides the
# absl pre-init warning, cpu_feature_guard and CUDA registration lines, which level 2 lets through as errors.
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
# OpenCV reads this at its first log line: ERROR hides "[ WARN:0@0.2] ... imread_(...)" (we report such files).
os.environ["OPENCV_LOG_LEVEL"] = "ERROR"

USER_ERRORS = (ValueError, KeyError, TypeError, OSError)
"""Errors that bad input raises (dataset, config, files, model options); set SEGKIT_DEBUG=1 for tracebacks."""

COMMANDS = ("train", "predict", "evaluate", "export", "check-data", "import-annotations", "info")


def set_verbosity(verbose):
    """--verbose (or SEGKIT_VERBOSE=1) shows TensorFlow's C++ log lines at the user's TF_CPP_MIN_LOG_LEVEL."""
    os.environ["SEGKIT_VERBOSE"] = "1" if verbose else ""
    os.environ["OPENCV_LOG_LEVEL"] = (_USER_CV_LOG_LEVEL or "WARNING") if verbose else "ERROR"
    if not verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    elif _USER_TF_LOG_LEVEL is None:
        os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    else:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = _USER_TF_LOG_LEVEL


def add_verbose_option(parser):
    parser.add_argument("--verbose", action="store_true", help="also show TensorFlow's own log lines")


def fail_cleanly(main):
    """Run `main(argv)`: user errors print `error: ...` lines on stderr and return 2; SIGINT/SIGTERM one line
    and 130/143."""

    @functools.wraps(main)
    def wrapper(argv=None):
        from app.runtime.interrupt import Stopped, stop_on_signals

        words = sys.argv[1:] if argv is None else argv
        set_verbosity("--verbose" in words or _USER_VERBOSE)
        if not os.environ["SEGKIT_VERBOSE"]:
            from app.runtime.native_logs import quiet_tensorflow_import

            quiet_tensorflow_import()
        from app.runtime.outputs import discard_new_folders, forget_new_folders

        forget_new_folders()
        try:
            with stop_on_signals():
                return main(argv)
        except (Stopped, KeyboardInterrupt) as err:
            if os.environ.get("SEGKIT_DEBUG"):
                raise
            if sys.stdout.isatty():
                print(flush=True)  # end a progress bar's line
            stopped = err if isinstance(err, Stopped) else Stopped(signal.SIGINT)
            print(stopped, file=sys.stderr)
            return stopped.exit_code
        except ModuleNotFoundError as err:
            if err.name != "tensorflow" or os.environ.get("SEGKIT_DEBUG"):
                raise
            discard_new_folders()
            print("error: TensorFlow is not installed: install segkit with an extra, pip install -e \".[cpu]\" "
                  "(or \".[gpu]\" for NVIDIA GPUs)", file=sys.stderr)
            return 2
        except USER_ERRORS as err:
            discard_new_folders()
            if os.environ.get("SEGKIT_DEBUG"):
                raise
            message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            if isinstance(err, OSError) and err.filename:
                message = f"{err.filename}: {err.strerror}"
            for line in str(message).splitlines() or [type(err).__name__]:
                print(f"error: {line}", file=sys.stderr)
            return 2

    return wrapper


def main(argv=None):
    """`segkit <command> [options]`: the same as `python -m app.<command>` (check-data = check_data)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    usage = f"usage: segkit {{{','.join(COMMANDS)}}} [options]   (segkit <command> --help for its options)"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage + "\n\n" + __doc__.split("\n\n")[1])
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"{usage}\nsegkit: error: unknown command {argv[0]!r}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"app.{argv[0].replace('-', '_')}")
    return module.main(argv[1:])


def add_prediction_options(parser):
    """--tile, --overlap, --blend and --tta, shared by predict and evaluate."""
    parser.add_argument("--tile", type=int, nargs=2, metavar=("H", "W"), help="sliding-window tile size")
    parser.add_argument("--overlap", type=float, default=0.25, help="tile overlap fraction (default 0.25)")
    parser.add_argument("--blend", choices=["gaussian", "linear"], default="gaussian",
                        help="tile blending weights (default gaussian)")
    parser.add_argument("--tta", action="store_true",
                        help="average over the flips the run trained with (augment.hflip/vflip)")
    parser.add_argument("--threshold", type=float,
                        help="multi-label runs: a class is present where its probability is above it (default 0.5)")


def prediction_options(parser, args):
    """The checked keyword arguments of `app.inference.predictor.predict_labels` from parsed prediction options."""
    if not 0 <= args.overlap < 1:
        parser.error(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.tile and min(args.tile) < 1:
        parser.error(f"--tile sides must be positive, got {args.tile}")
    if args.threshold is not None and not 0 < args.threshold < 1:
        parser.error(f"--threshold must be in (0, 1), got {args.threshold}")
    return dict(tile=args.tile, overlap=args.overlap, blend=args.blend, tta=args.tta)


if __name__ == "__main__":
    sys.exit(main())
