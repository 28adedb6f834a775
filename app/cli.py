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
    """The checked keyword arguments of `app.core.inference.predict_labels` from parsed prediction options."""
    if not 0 <= args.overlap < 1:
        parser.error(f"--overlap must be in [0, 1), got {args.overlap}")
    if args.tile and min(args.tile) < 1:
        parser.error(f"--tile sides must be positive, got {args.tile}")
    if args.threshold is not None and not 0 < args.threshold < 1:
        parser.error(f"--threshold must be in (0, 1), got {args.threshold}")
    return dict(tile=args.tile, overlap=args.overlap, blend=args.blend, tta=args.tta)
