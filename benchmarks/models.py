"""Every registry model side by side: parameters, FLOPs and CPU images/s on the TensorFlow and JAX backends.

    python benchmarks/models.py [--size 256] [--num-classes 12] [--batch 4] [--steps 5] [--models unet segnet]
    python benchmarks/models.py --quick      # tiny widths at 64x64, one step: checks that the script works
    python benchmarks/models.py --models --encoders resnet50 mobilenetv3_small   # one U-Net row per encoder

The backend is fixed per process, so each backend runs in its own subprocess with KERAS_BACKEND set.
Throughput is the median over timed steps after one warm-up step (which traces/compiles); FLOPs are
2 x the conv and dense multiply-adds per image. Prints a table and writes benchmarks/results/models.json
and models.csv (models-quick.* with --quick).
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
BACKENDS = ("tensorflow", "jax")
QUICK_OPTIONS = {
    "unet": {"depth": 2, "base_filters": 4},
    "fcn8s": {"base_filters": 4, "fc_filters": 8},
    "fcn16s": {"base_filters": 4, "fc_filters": 8},
    "fcn32s": {"base_filters": 4, "fc_filters": 8},
    "segnet": {"depth": 2, "base_filters": 4},
    "deeplabv3plus": {"base_filters": 4, "filters": 8, "low_level_filters": 4},
    "ternausnet": {"base_filters": 4},
    "baseline": {"num_layers": 2, "filters": 4},
    "fpn": {"encoder": "mobilenetv3_small", "pyramid_filters": 8, "segmentation_filters": 4},
    "segformer": {"encoder": "mobilenetv3_small", "embed_dim": 8},
}
ENCODER_DECODER = "unet"
"""Decoder of the per-encoder rows (`--encoders`), labelled unet+<encoder>."""
QUICK_ENCODER_OPTIONS = {"decoder_filters": (8, 8, 4, 4, 4)}


def images_per_second(step, batch, steps):
    """Median images/s of `step()` over `steps` calls after one warm-up call."""
    import numpy as np

    step()
    durations = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        durations.append(time.perf_counter() - start)
    return batch / float(np.median(durations))


def measure(name, options, size, num_classes, batch, steps, label=None):
    """Parameters, FLOPs per image and train / inference images/s of one model on the current backend."""
    import keras
    import numpy as np

    from models.flops import count_flops
    from models.registry import get_model

    model = get_model(name, (size, size, 3), num_classes, **options)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 3), dtype="float32")
    masks = rng.integers(0, num_classes, (batch, size, size)).astype("int32")
    result = {
        "model": label or name,
        "params": model.count_params(),
        "gflops": count_flops(model) / 1e9,
        "train_img_s": images_per_second(lambda: model.train_on_batch(images, masks), batch, steps),
        "infer_img_s": images_per_second(lambda: model.predict_on_batch(images), batch, steps),
    }
    keras.backend.clear_session()
    return result


def worker(args):
    """Measure every requested model on this process's backend; print one JSON line per model."""
    import keras

    for name in args.models:
        options = QUICK_OPTIONS[name] if args.quick else {}
        try:
            result = measure(name, options, args.size, args.num_classes, args.batch, args.steps)
        except Exception as err:  # one failing model must not hide the others' numbers
            result = {"model": name, "error": f"{type(err).__name__}: {err}"}
        print(json.dumps({"backend": keras.backend.backend(), **result}), flush=True)
    for encoder in args.encoders:
        label = f"{ENCODER_DECODER}+{encoder}"
        options = {"encoder": encoder, **(QUICK_ENCODER_OPTIONS if args.quick else {})}
        try:
            result = measure(ENCODER_DECODER, options, args.size, args.num_classes, args.batch, args.steps, label)
        except Exception as err:  # one failing encoder must not hide the others' numbers
            result = {"model": label, "error": f"{type(err).__name__}: {err}"}
        print(json.dumps({"backend": keras.backend.backend(), **result}), flush=True)


def run_backend(backend, argv):
    """Run this script as a worker under `backend`; return its per-model results."""
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3"}
    completed = subprocess.run([sys.executable, __file__, "--worker", *argv], env=env, capture_output=True, text=True)
    results = [json.loads(line) for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode:
        print(f"{backend} worker failed:\n{completed.stderr[-2000:]}", file=sys.stderr)
    return results


def table(results):
    """One row per model: params and GFLOPs, then train / inference images/s per backend."""
    import pandas as pd

    frame = pd.DataFrame(results)
    metrics = [column for column in ("train_img_s", "infer_img_s", "error") if column in frame]
    wide = frame.pivot(index="model", columns="backend", values=metrics)
    backends = [backend for backend in BACKENDS if backend in set(frame["backend"])]
    wide = wide[[(metric, backend) for backend in backends for metric in metrics]]
    wide.columns = [f"{backend}_{metric}" for metric, backend in wide.columns]
    sizes = frame.dropna(subset=["params"]).drop_duplicates("model").set_index("model")[["params", "gflops"]]
    return sizes.join(wide, how="outer").reset_index()


def earlier_results(path, settings, results):
    """Rows of an earlier run with the same settings for the (model, backend) pairs this run did not measure, so
    that a few rows can be measured again without losing the others."""
    if not path.is_file():
        return []
    earlier = json.loads(path.read_text())
    if earlier.get("settings") != settings:
        return []
    measured = {(row["model"], row["backend"]) for row in results}
    return [row for row in earlier["results"] if (row["model"], row["backend"]) not in measured]


def main(argv=None):
    from models.encoders import ENCODERS
    from models.registry import MODELS

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="square input size (default 256)")
    parser.add_argument("--num-classes", type=int, default=12)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5, help="timed steps after one warm-up step")
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--encoders", nargs="*", default=list(ENCODERS), choices=list(ENCODERS),
                        help="one unet+<encoder> row each (default: every encoder; none: --encoders)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--quick", action="store_true", help="tiny widths, 64x64, batch 1, one timed step")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.batch, args.steps = 64, 1, 1
    if args.worker:
        return worker(args)

    forwarded = ["--size", str(args.size), "--num-classes", str(args.num_classes), "--batch", str(args.batch),
                 "--steps", str(args.steps), "--models", *args.models, "--encoders", *args.encoders]
    forwarded += ["--quick"] if args.quick else []
    results = [row for backend in args.backends for row in run_backend(backend, forwarded)]
    if not results:
        return 1
    stem = RESULTS / ("models-quick" if args.quick else "models")
    settings = {key: getattr(args, key) for key in ("size", "num_classes", "batch", "steps", "quick")}
    results += earlier_results(stem.with_suffix(".json"), settings, results)
    frame = table(results)
    print(f"{args.size}x{args.size}x3, {args.num_classes} classes, batch {args.batch}, CPU images/s"
          f"{' (quick: tiny widths)' if args.quick else ''}")
    print(frame.to_string(index=False, float_format=lambda value: f"{value:.3g}"))
    RESULTS.mkdir(exist_ok=True)
    stem.with_suffix(".json").write_text(json.dumps({"settings": settings, "results": results}, indent=2))
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    print(f"wrote {stem}.json and {stem}.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
