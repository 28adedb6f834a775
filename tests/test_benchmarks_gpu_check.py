"""benchmarks/gpu_check.py: which backends it trains on, and a whole --quick check on this CPU, with and
without TensorFlow (the lent GPU machines have JAX only)."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from benchmarks.gpu_check import NO_TENSORFLOW, probe_devices, training_backends

REPO = pathlib.Path(__file__).resolve().parents[1]
HIDE_TENSORFLOW = '''import importlib.abc, sys


class HideTensorFlow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, HideTensorFlow())
'''


def test_trains_on_each_backend_that_sees_a_gpu_and_never_without_tensorflow():
    assert training_backends({"tensorflow": ["/physical_device:GPU:0"], "jax": ["cuda:0"]}) == ["tensorflow", "jax"]
    assert training_backends({"tensorflow": [], "jax": ["cuda:0"]}) == ["jax"]
    assert training_backends({"tensorflow": [], "jax": []}) == ["tensorflow"]
    assert training_backends({"tensorflow": [], "jax": None}) == ["tensorflow"]
    assert training_backends({"tensorflow": None, "jax": ["cuda:0"]}) == []


def test_probe_lists_no_gpu_on_this_cpu_machine():
    devices = probe_devices()
    assert devices["tensorflow"] == [] and devices["jax"] == []


def run_check(tmp_path, env=None):
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--quick", "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600, env=env)
    return done, json.loads((out / "check.json").read_text()), out


@pytest.mark.slow  # 1 epoch of app.train at 64x64 and gpu_train --quick on JAX: ~90 s
def test_quick_check_trains_the_default_model_and_runs_gpu_train(tmp_path):
    done, check, out = run_check(tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    train, gpu_train = check["steps"]
    assert (train["step"], train["backend"], train["exit_code"]) == ("train", "tensorflow", 0)
    assert 0 < train["result"]["miou"] <= 1 and (out / "train-tensorflow.log").is_file()
    assert gpu_train["exit_code"] == 0 and len(gpu_train["result"]) >= 2
    assert all(speed > 0 for speed in gpu_train["result"].values())
    assert json.loads((out / "devices.json").read_text())["jax"] == []


@pytest.mark.slow  # gpu_train --quick on JAX: ~60 s
def test_without_tensorflow_the_check_says_why_it_skips_training_and_runs_gpu_train(tmp_path):
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(HIDE_TENSORFLOW)
    done, check, _ = run_check(tmp_path, {**os.environ, "PYTHONPATH": str(hide)})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert check["devices"]["tensorflow"] is None and check["devices"]["jax"] == []
    train, gpu_train = check["steps"]
    assert train["result"] == NO_TENSORFLOW and "exit_code" not in train and NO_TENSORFLOW in done.stdout
    assert gpu_train["exit_code"] == 0 and all(speed > 0 for speed in gpu_train["result"].values())
