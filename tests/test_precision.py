"""Mixed precision: float32 logits, loss scaling for float16, bfloat16 training, and the global policy restored."""
import os
import pathlib
import subprocess
import sys
import types

import keras
import pandas as pd
import pytest
from train_helpers import TINY, history, only_run_dir

from app.config.loading import load_config, parse_override
from app.runtime.devices import bfloat16_cost_warning, capped_flags, cpu_flags, isa_cap, resolve_precision
from app.train import main
from app.training.model import build_model, compile_model

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_mixed_float16_gets_loss_scaling_and_float32_logits():
    config = load_config(overrides=[parse_override(f"model.{key}") for key in ("base_filters=4", "depth=2")]
                         + [{"train": {"precision": "mixed_float16"}}])
    prepared = types.SimpleNamespace(frame=pd.DataFrame({"split": ["train"] * 8}), class_names=["a", "b"],
                                     encoding=types.SimpleNamespace(num_classes=2))
    model = compile_model(build_model(config, 2), config, prepared)
    assert keras.mixed_precision.dtype_policy().name == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("enc0_a_conv").compute_dtype == "float16"
    assert model.get_layer("logits").compute_dtype == "float32" and model.output.dtype == "float32"


@pytest.mark.slow
def test_mixed_bfloat16_training_lowers_the_loss(tmp_path):
    assert main(["--epochs", "3", "--precision", "mixed_bfloat16", "--runs-dir", str(tmp_path), *TINY]) == 0
    assert keras.mixed_precision.dtype_policy().name == "float32"
    loss = history(tmp_path)["loss"]
    assert loss.is_monotonic_decreasing and loss.iloc[-1] < 0.95 * loss.iloc[0]
    model = keras.saving.load_model(only_run_dir(tmp_path) / "model.keras")
    assert not isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert model.get_layer("enc0_a_conv").compute_dtype == "bfloat16"
    assert model.get_layer("logits").compute_dtype == "float32"


def test_auto_precision_follows_the_cpu_and_the_devices(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n"
                       "processor\t: 1\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile\n")
    flags = cpu_flags(cpuinfo)
    assert {"amx_bf16", "avx512f", "sse2"} <= flags and "avx512_bf16" not in flags
    assert cpu_flags(tmp_path / "missing") == set()
    assert resolve_precision("auto", ["cpu:0"], flags) == "mixed_bfloat16"
    assert resolve_precision("auto", ["cpu:0"], {"avx512f", "avx512_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("auto", ["cpu:0"], {"avx512f", "avx2"}) == "float32"
    assert resolve_precision("auto", ["cpu:0", "gpu:0"], flags) == "float32"
    assert resolve_precision("mixed_float16", ["cpu:0"], set()) == "mixed_float16"


def test_onednn_isa_cap_hides_the_instructions_it_excludes(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    every = {"fpu", "avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile"}
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {' '.join(sorted(every))}\n")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")
    assert isa_cap() == "AVX2"
    assert cpu_flags(cpuinfo) == {"fpu", "avx2"} and cpu_flags(cpuinfo, cap="ALL") == every
    assert resolve_precision("auto", ["cpu:0"], cpu_flags(cpuinfo)) == "float32"
    assert "10x slower" in bfloat16_cost_warning("mixed_bfloat16", ["cpu:0"], cpu_flags(cpuinfo))
    assert capped_flags(every, "AVX512_CORE_VNNI") == {"fpu", "avx2", "avx512f", "avx512_vnni"}
    assert capped_flags(every, "AVX512_CORE_BF16") == every - {"amx_bf16", "amx_tile"}
    assert capped_flags(every, "AVX512_CORE_AMX") == capped_flags(every, "DEFAULT") == every
    assert capped_flags(every, None) == every
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "avx512_core")
    assert isa_cap() == "AVX512_CORE" and resolve_precision("auto", ["cpu:0"], cpu_flags(cpuinfo)) == "float32"
    monkeypatch.delenv("DNNL_MAX_CPU_ISA")
    assert isa_cap() is None and resolve_precision("auto", ["cpu:0"], cpu_flags(cpuinfo)) == "mixed_bfloat16"


def test_info_reports_float32_under_an_avx2_cap():
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "app.info", "--devices"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "precision        float32 (train.precision: auto)" in done.stdout
    assert "bfloat16 arithmetic: no (oneDNN capped at AVX2)" in done.stdout


def test_auto_precision_builds_the_resolved_policy():
    config = load_config(overrides=[parse_override(o) for o in ("model.base_filters=4", "model.depth=2",
                                                                "train.precision=auto")])
    expected = resolve_precision("auto")
    assert build_model(config, 2).get_layer("enc0_a_conv").compute_dtype == expected.removeprefix("mixed_")
    assert keras.mixed_precision.dtype_policy().name == "float32"


def test_default_precision_is_auto_and_float32_without_bfloat16_hardware():
    assert load_config().train.precision == "auto"
    assert resolve_precision("auto", ["cpu:0"], {"avx2"}, gpus=[]) == "float32"


def test_auto_precision_follows_the_gpu_compute_capability():
    def gpus(*capabilities):
        return [{"name": f"gpu{i}", "compute_capability": c} for i, c in enumerate(capabilities)]

    devices = ["cpu:0", "gpu:0"]
    assert resolve_precision("auto", devices, set(), gpus((8, 0))) == "mixed_bfloat16"   # A100
    assert resolve_precision("auto", devices, set(), gpus((9, 0))) == "mixed_bfloat16"   # H100
    assert resolve_precision("auto", devices, set(), gpus((7, 5))) == "mixed_float16"    # T4
    assert resolve_precision("auto", devices, set(), gpus((7, 0))) == "mixed_float16"    # V100
    assert resolve_precision("auto", devices, set(), gpus((6, 1))) == "float32"          # P100: no tensor cores
    assert resolve_precision("auto", devices, set(), gpus((9, 0), (7, 5))) == "mixed_float16"  # the weakest decides
    assert resolve_precision("auto", devices, set(), gpus(None)) == "float32"            # unknown capability
    assert resolve_precision("auto", devices, {"amx_bf16"}, []) == "float32"             # a GPU of unknown kind
    assert resolve_precision("float32", devices, set(), gpus((9, 0))) == "float32"


def test_gpu_descriptions_parse_capabilities():
    from app.runtime.devices import _capability, gpu_details

    assert _capability("8.6") == (8, 6) and _capability((7, 5)) == (7, 5) and _capability(None) is None
    assert all(set(gpu) == {"name", "compute_capability"} for gpu in gpu_details())
