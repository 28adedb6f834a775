"""Training-step throughput at 512x512: our Keras 3 models on JAX (bf16, jit) against segmentation_models_pytorch.

    python benchmarks/gpu_train.py                      # GPU: 512x512, batch 8, 20 timed steps
    python benchmarks/gpu_train.py --quick              # CPU smoke run: 64x64, batch 2, 2 steps, tiny widths

Ours: `get_model("unet")` (classic U-Net, depth 4, 64 base filters) and `get_model("deeplabv3plus",
backbone="resnet50")`, built under the mixed_bfloat16 policy with float32 logits, AdamW and cross-entropy,
`jit_compile=True`, KERAS_BACKEND=jax. Peer: `smp.Unet("resnet34")` (smp has no classic U-Net: compare the
parameter counts too) and `smp.DeepLabV3Plus("resnet50")`, no pretrained weights, AdamW and cross-entropy under
`torch.autocast(bfloat16)`, model and batch in channels_last. Each side runs in its own subprocess (the Keras
backend is fixed per process) on data already on the device; a step includes the host sync of its loss.
Images/s = batch / median step time after warm-up steps (compilation). The peer is skipped, with a message,
when torch or segmentation_models_pytorch is absent. Prints a table and writes benchmarks/results/gpu_train.json
(gpu_train-quick.json with --quick; `--out` for another file).
"""
import argparse
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
RESULTS = REPO / "benchmarks" / "results"
MODELS = ("unet", "deeplabv3plus")
OURS = {"unet": {}, "deeplabv3plus": {"backbone": "resnet50"}}
OURS_QUICK = {"unet": {"depth": 2, "base_filters": 4},
              "deeplabv3plus": {"base_filters": 4, "filters": 8, "low_level_filters": 4}}
PEER = {"unet": ("Unet", {"encoder_name": "resnet34"}),
        "deeplabv3plus": ("DeepLabV3Plus", {"encoder_name": "resnet50"})}
PEER_QUICK = {"unet": ("Unet", {"encoder_name": "resnet18", "decoder_channels": (16, 8, 8, 4, 4)}),
              "deeplabv3plus": ("DeepLabV3Plus", {"encoder_name": "resnet18", "decoder_channels": 16})}


def median_images_per_second(step, batch, steps, warmup):
    durations = []
    for index in range(warmup + steps):
        start = time.perf_counter()
        step()
        if index >= warmup:
            durations.append(time.perf_counter() - start)
    return batch / sorted(durations)[len(durations) // 2]


def keras_worker(args):
    """Our models on the current Keras backend; one JSON line per model."""
    import jax
    import keras
    import numpy as np

    from models.registry import get_model

    rng = np.random.default_rng(0)
    images = jax.device_put(rng.random((args.batch, args.size, args.size, 3), dtype="float32"))
    masks = jax.device_put(rng.integers(0, args.num_classes, (args.batch, args.size, args.size)).astype("int32"))
    for name in args.models:
        keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
        options = (OURS_QUICK if args.quick else OURS)[name]
        model = get_model(name, (args.size, args.size, 3), args.num_classes, **options)
        keras.mixed_precision.set_dtype_policy("float32")
        model.compile(optimizer=keras.optimizers.AdamW(1e-3), jit_compile=True,
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        speed = median_images_per_second(lambda: model.train_on_batch(images, masks), args.batch, args.steps,
                                         args.warmup)
        print(json.dumps({"model": name, "framework": f"keras-{keras.backend.backend()}",
                          "architecture": f"{name} {options or ''}".strip(), "params": model.count_params(),
                          "images_per_s": speed, "device": str(jax.devices()[0].device_kind)}), flush=True)
        keras.backend.clear_session()


def torch_worker(args):
    """The segmentation_models_pytorch peers, AMP bfloat16 and channels_last; one JSON line per model."""
    import segmentation_models_pytorch as smp
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(args.batch, 3, args.size, args.size, generator=generator).to(
        device, memory_format=torch.channels_last)
    masks = torch.randint(0, args.num_classes, (args.batch, args.size, args.size), generator=generator).to(device)
    for name in args.models:
        architecture, options = (PEER_QUICK if args.quick else PEER)[name]
        model = getattr(smp, architecture)(encoder_weights=None, classes=args.num_classes, **options)
        model = model.to(device, memory_format=torch.channels_last).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16):
                loss = loss_fn(model(images).float(), masks)
            loss.backward()
            optimizer.step()
            return loss.item()

        speed = median_images_per_second(step, args.batch, args.steps, args.warmup)
        print(json.dumps({"model": name, "framework": "pytorch-smp", "architecture": f"smp.{architecture} {options}",
                          "params": sum(p.numel() for p in model.parameters()), "images_per_s": speed,
                          "device": torch.cuda.get_device_name() if device == "cuda" else "cpu"}), flush=True)


def run_worker(kind, argv, env):
    """Run this script as a `kind` worker; return its JSON rows (errors are reported and give no rows)."""
    done = subprocess.run([sys.executable, __file__, "--worker", kind, *argv], env={**os.environ, **env},
                          capture_output=True, text=True)
    if done.returncode:
        print(f"{kind} worker failed:\n{done.stderr[-2000:]}", file=sys.stderr)
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512, help="square input size (default 512)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first, for compilation (default 3)")
    parser.add_argument("--num-classes", type=int, default=21)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--quick", action="store_true", help="tiny widths at 64x64, batch 2, 2 steps (CPU check)")
    parser.add_argument("--out", type=pathlib.Path,
                        help="JSON file (default benchmarks/results/gpu_train.json, gpu_train-quick.json)")
    parser.add_argument("--worker", choices=["keras", "torch"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.size, args.batch, args.steps, args.warmup = 64, 2, 2, 1
    if args.worker:
        return (keras_worker if args.worker == "keras" else torch_worker)(args)

    forwarded = ["--size", str(args.size), "--batch", str(args.batch), "--steps", str(args.steps), "--warmup",
                 str(args.warmup), "--num-classes", str(args.num_classes), "--models", *args.models]
    forwarded += ["--quick"] if args.quick else []
    rows = run_worker("keras", forwarded, {"KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"})
    missing = [name for name in ("torch", "segmentation_models_pytorch") if importlib.util.find_spec(name) is None]
    if missing:
        print(f"peer skipped: {' and '.join(missing)} not installed (pip install segmentation-models-pytorch)")
    else:
        rows += run_worker("torch", forwarded, {})
    if not rows:
        return 1
    print(f"training step, {args.size}x{args.size}x3, {args.num_classes} classes, batch {args.batch}, bf16, "
          f"median of {args.steps} steps{' (quick: tiny widths)' if args.quick else ''}")
    print(f"{'model':<14} {'framework':<13} {'device':<24} {'params':>11} {'images/s':>9}  architecture")
    for row in rows:
        print(f"{row['model']:<14} {row['framework']:<13} {row['device'][:24]:<24} {row['params']:>11,} "
              f"{row['images_per_s']:>9.2f}  {row['architecture']}")
    path = args.out or RESULTS / ("gpu_train-quick.json" if args.quick else "gpu_train.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    settings = {key: getattr(args, key) for key in ("size", "batch", "steps", "warmup", "num_classes", "quick")}
    path.write_text(json.dumps({"settings": settings, "results": rows}, indent=2))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
