"""`python -m app.info --devices`: GPUs the system has against those the backend sees, clashing TensorFlow wheels,
and the warning for mixed_bfloat16 on a CPU without bfloat16 arithmetic."""
import os
import pathlib
import subprocess
import sys

import pytest

from app.info import main
from app.runtime.devices import (bfloat16_cost_warning, device_warnings, gpu_details, resolve_precision,
                                 system_nvidia_gpus, tensorflow_wheels)

H100 = "NVIDIA H100 80GB HBM3"
REPO = pathlib.Path(__file__).parents[1]


def fake_driver(root, *models):
    """A /proc/driver/nvidia/gpus folder as the NVIDIA driver lays it out, one GPU per model."""
    for index, model in enumerate(models):
        folder = root / f"0000:{index + 1:02x}:00.0"
        folder.mkdir(parents=True)
        (folder / "information").write_text(f"Model: \t\t {model}\nIRQ:   \t\t 42\nGPU UUID: \t GPU-{index}\n"
                                            "Bus Location: \t 0000:01:00.0\n")
    return root


def shell_script(path, body):
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_system_gpus_come_from_the_driver_folder(tmp_path):
    proc = fake_driver(tmp_path / "gpus", H100, "NVIDIA L4")
    assert system_nvidia_gpus(proc, nvidia_smi=None) == [H100, "NVIDIA L4"]


def test_system_gpus_come_from_nvidia_smi_without_the_driver_folder(tmp_path):
    smi = shell_script(tmp_path / "nvidia-smi", f"[ \"$1\" = -L ] || exit 1\n"
                       f"printf 'GPU 0: {H100} (UUID: GPU-1a2b)\\nGPU 1: Tesla T4 (UUID: GPU-3c4d)\\n'")
    assert system_nvidia_gpus(tmp_path / "missing", nvidia_smi=smi) == [H100, "Tesla T4"]
    failing = shell_script(tmp_path / "failing-smi", "echo 'NVIDIA-SMI has failed' >&2; exit 9")
    assert system_nvidia_gpus(tmp_path / "missing", nvidia_smi=failing) == []
    assert system_nvidia_gpus(tmp_path / "missing", nvidia_smi=str(tmp_path / "absent")) == []
    assert system_nvidia_gpus(tmp_path / "missing", nvidia_smi=None) == []


def test_a_gpu_the_backend_does_not_see_is_a_warning():
    h100 = [{"name": H100, "compute_capability": (9, 0)}]
    (warning,) = device_warnings("tensorflow", [], [H100], ["tensorflow-cpu 2.21.0"])
    assert warning.startswith("warning: the system has 1 NVIDIA GPU(s) (NVIDIA H100 80GB HBM3) but tensorflow")
    assert 'pip install -e ".[gpu]"' in warning
    (warning,) = device_warnings("jax", [], [H100, H100], [])
    assert "2 NVIDIA GPU(s)" in warning and "jax sees none" in warning and "jax[cuda12]" in warning
    assert device_warnings("tensorflow", h100, [H100], ["tensorflow 2.21.0"]) == []
    assert device_warnings("tensorflow", [], [], ["tensorflow-cpu 2.21.0"]) == []


def test_two_tensorflow_wheels_side_by_side_are_a_warning():
    (warning,) = device_warnings("tensorflow", [], [], ["tensorflow 2.21.0", "tensorflow-cpu 2.21.0"])
    assert "tensorflow 2.21.0 and tensorflow-cpu 2.21.0 are installed side by side" in warning
    assert len(tensorflow_wheels()) == 1  # this environment itself is sound


@pytest.mark.parametrize("flags", [{"avx2", "fma"}, {"avx512f", "avx512_vnni"}, set()])
def test_mixed_bfloat16_without_bfloat16_arithmetic_warns_before_training(flags):
    warning = bfloat16_cost_warning("mixed_bfloat16", ["cpu:0"], flags)
    assert warning.startswith("warning: train.precision: mixed_bfloat16 on a CPU without bfloat16 arithmetic")
    assert "10x slower" in warning and "train.precision: auto" in warning


def test_no_bfloat16_warning_where_bfloat16_is_native_or_not_asked_for():
    assert bfloat16_cost_warning("mixed_bfloat16", ["cpu:0"], {"avx2", "avx512_bf16"}) is None
    assert bfloat16_cost_warning("mixed_bfloat16", ["cpu:0"], {"amx_bf16", "amx_tile"}) is None
    assert bfloat16_cost_warning("mixed_bfloat16", ["cpu:0", "gpu:0"], {"avx2"}) is None
    for name in ("float32", "auto", "mixed_float16"):
        assert bfloat16_cost_warning(name, ["cpu:0"], {"avx2"}) is None


def test_devices_report_runs_and_names_the_auto_precision():
    result = subprocess.run([sys.executable, "-m", "app.info", "--devices"], capture_output=True, text=True,
                            timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if not line.startswith("warning"))
    assert set(lines) == {"backend", "devices", "GPUs", "CPU", "precision"}
    assert lines["precision"] == f"{resolve_precision('auto')} (train.precision: auto)"
    assert lines["backend"].startswith(os.environ.get("KERAS_BACKEND", "tensorflow"))
    unseen = bool(system_nvidia_gpus()) and not gpu_details()
    assert ("warning: the system has" in result.stdout) == unseen
    assert "Traceback" not in result.stderr


def test_info_needs_a_model_or_devices(capsys):
    with pytest.raises(SystemExit) as stopped:
        main([])
    assert stopped.value.code == 2
    assert "one of --model or --devices is required" in capsys.readouterr().err
