"""One call on a machine with a GPU: which backends see it, a short training of the default model, gpu_train.py.

    python benchmarks/gpu_check.py --out $OUT             # a GPU machine: under 10 minutes
    python benchmarks/gpu_check.py --out /tmp/check --quick   # CPU smoke test: 1 epoch at 64x64, gpu_train --quick

Writes into the output folder (`--out`, else $OUT):
- devices.json: `nvidia-smi -L`, and the GPUs TensorFlow and JAX each see (None where the package is missing).
- train-<backend>.log and runs/<backend>/: `python -m app.train` on the embedded data/nuclei (the default U-Net
  and config, `--epochs`), once per backend that sees a GPU (TensorFlow, JAX with KERAS_BACKEND=jax), or once on
  the CPU backend where none does. The training CLI reads data through tf.data, so it needs TensorFlow even when
  the model runs on JAX: without TensorFlow the training is skipped, and check.json says so.
- gpu_train.json and gpu_train.log: `benchmarks/gpu_train.py` (JAX only, no TensorFlow needed).
- check.json: each step's command, exit code, seconds and result (mIoU, images/s), also printed as a table.
Every step has a time limit (`--step-timeout`) so that the whole check ends in time; a step that fails or runs
out of time is recorded and the next one runs. Exit code 0 when every step that could run passed.
"""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
PROBES = {
    "tensorflow": "import tensorflow as tf; print([d.name for d in tf.config.list_physical_devices('GPU')])",
    "jax": "import jax; print([str(d) for d in jax.devices() if d.platform == 'gpu'])",
}
"""Per backend: Python that prints the list of GPUs it sees (run in a subprocess: each import is heavy)."""
NO_TENSORFLOW = ("skipped: TensorFlow is not installed, and `python -m app.train` reads its data through tf.data "
                 "(data/pipeline.py) whatever the Keras backend; gpu_train.py below runs on JAX alone")


def run_step(command, log_path, timeout, env=None):
    """Run `command` from the repository root with its output in `log_path`: (exit code or None on timeout, seconds)."""
    start = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            code = subprocess.run(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, timeout=timeout,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}).returncode
        except subprocess.TimeoutExpired:
            code = None
    return code, round(time.perf_counter() - start, 1)


def probe_devices(timeout=120):
    """{"nvidia-smi": lines or None, backend: list of GPU names, or None where the backend is not installed}."""
    found = {}
    smi = shutil.which("nvidia-smi")
    if smi:
        done = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
        found["nvidia-smi"] = done.stdout.splitlines() if done.returncode == 0 else None
    else:
        found["nvidia-smi"] = None
    for backend, code in PROBES.items():
        try:
            done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout,
                                  env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": backend})
        except subprocess.TimeoutExpired:
            found[backend] = None
            continue
        lines = done.stdout.strip().splitlines()
        found[backend] = json.loads(lines[-1].replace("'", '"')) if done.returncode == 0 and lines else None
    return found


def training_backends(devices):
    """The Keras backends to train on: those that see a GPU, else the CPU default (TensorFlow); none without
    TensorFlow (the input pipeline needs it)."""
    if devices.get("tensorflow") is None:
        return []
    return [backend for backend in PROBES if devices.get(backend)] or ["tensorflow"]


def train_result(runs_dir):
    """mIoU and run folder of the newest run under `runs_dir`, or {} where training wrote none."""
    runs = sorted(runs_dir.glob("*/metrics.json"), key=lambda path: path.stat().st_mtime)
    if not runs:
        return {}
    metrics = json.loads(runs[-1].read_text())
    return {"miou": metrics.get("miou"), "run": str(runs[-1].parent)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=os.environ.get("OUT"),
                        help="output folder (default: $OUT)")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs on data/nuclei (default 5)")
    parser.add_argument("--step-timeout", type=int, default=180, help="seconds allowed per step (default 180)")
    parser.add_argument("--quick", action="store_true", help="CPU smoke test: 1 epoch at 64x64, gpu_train --quick")
    args = parser.parse_args(argv)
    if args.out is None:
        parser.error("give --out DIR or set $OUT")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    devices = probe_devices()
    (out / "devices.json").write_text(json.dumps(devices, indent=2))
    steps = []
    backends = training_backends(devices)
    if not backends:
        steps.append({"step": "train", "backend": "jax", "result": NO_TENSORFLOW})
    for backend in backends:
        command = [sys.executable, "-m", "app.train", "--epochs", "1" if args.quick else str(args.epochs),
                   "--runs-dir", str(out / "runs" / backend), "--name", f"gpu-check-{backend}"]
        command += ["--image-size", "64", "64"] if args.quick else []
        code, seconds = run_step(command, out / f"train-{backend}.log", args.step_timeout,
                                 {"KERAS_BACKEND": backend})
        steps.append({"step": "train", "backend": backend, "command": command[1:], "exit_code": code,
                      "seconds": seconds, "result": train_result(out / "runs" / backend)})
    command = [sys.executable, "benchmarks/gpu_train.py", "--out", str(out / "gpu_train.json")]
    command += ["--quick"] if args.quick else []
    code, seconds = run_step(command, out / "gpu_train.log", args.step_timeout)
    rows = json.loads((out / "gpu_train.json").read_text())["results"] if (out / "gpu_train.json").is_file() else []
    steps.append({"step": "gpu_train", "backend": "jax", "command": command[1:], "exit_code": code,
                  "seconds": seconds, "result": {f"{row['model']} {row['framework']} ({row['device']})":
                                                 round(row["images_per_s"], 2) for row in rows}})
    (out / "check.json").write_text(json.dumps({"devices": devices, "quick": args.quick, "steps": steps}, indent=2))
    print(f"GPUs: nvidia-smi {devices['nvidia-smi']}, tensorflow {devices['tensorflow']}, jax {devices['jax']}")
    for step in steps:
        status = ("-" if "exit_code" not in step else "timed out" if step["exit_code"] is None
                  else f"exit {step['exit_code']}")
        print(f"{step['step']:<10} {step['backend']:<11} {status:<10} {step.get('seconds', '-'):>7} s  "
              f"{step['result']}")
    print(f"wrote {out / 'check.json'}")
    return int(any(step.get("exit_code", 0) != 0 for step in steps))


if __name__ == "__main__":
    sys.exit(main())
