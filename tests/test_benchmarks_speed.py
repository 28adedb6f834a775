"""benchmarks/speed.py --quick runs end to end (with or without torch) and writes the JSON it documents.

Each run starts 2 worker processes (TensorFlow, and torch when installed): ~20 s on 2 cores.
"""
import importlib.util
import json
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "speed.py"
RATE_KEYS = {"median", "min", "max", "runs"}


def run(tmp_path, *args):
    out = tmp_path / "speed.json"
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out), *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads(out.read_text()), result.stdout


@pytest.mark.slow
def test_quick_compare_writes_rates_ratios_and_model_check(tmp_path):
    data, stdout = run(tmp_path, "--arms", "ours,torch")
    assert {"machine", "sizes", "model", "compare"} <= set(data)
    compare = data["compare"]
    assert compare["machine"]["cpu_features"] == data["machine"]["cpu_features"] and "env" in compare["machine"]
    ours = compare["arms"]["ours"]
    assert {"train_images_per_s", "infer_images_per_s", "params", "gflops_per_image", "train_settings"} <= set(ours)
    assert RATE_KEYS <= set(ours["train_images_per_s"]) and len(ours["train_images_per_s"]["runs"]) == 2
    assert ours["train_images_per_s"]["median"] > 0 and ours["infer_images_per_s"]["median"] > 0
    if importlib.util.find_spec("torch") is None:
        assert "torch" in compare["skipped"] and "torch is not installed" in stdout
        assert compare["ratios"] == {}
    else:
        assert compare["models_match"]["same"]
        ratio = compare["ratios"]["ours/torch"]
        assert RATE_KEYS <= set(ratio["train"]) and set(ratio["goal_met"]) == {"train", "infer"}


@pytest.mark.slow  # ~17 s; the compare test above (~19 s) already runs the script in the default suite
def test_quick_lever_records_both_sides_and_their_ratio(tmp_path):
    data, _ = run(tmp_path, "--lever", "fused_bn")
    entry = data["levers"]["fused_bn"]
    assert {"description", "ratio", "with", "without"} <= set(entry)
    assert entry["with"]["gflops_per_image"] == entry["without"]["gflops_per_image"]
    assert RATE_KEYS <= set(entry["ratio"]["train"]) and RATE_KEYS <= set(entry["ratio"]["infer"])


@pytest.mark.slow  # ~20 s
def test_quick_lever_on_another_architecture_is_stored_under_its_own_key(tmp_path):
    data, _ = run(tmp_path, "--lever", "conv_grad", "--model", "fcn8s,base_filters=4,dropout=0.0", "--pairs", "1")
    entry = data["levers"]["conv_grad@name=fcn8s,base_filters=4,dropout=0.0"]
    assert entry["with"]["model"] == {**entry["without"]["model"], "name": "fcn8s"}
    assert entry["with"]["model"]["base_filters"] == 4 and entry["with"]["conv_weight_gradients"]
    assert not entry["without"]["conv_weight_gradients"] and "model" not in data


def test_model_option_is_checked_before_any_worker_starts(tmp_path, capsys):
    from benchmarks.speed import main, parse_model

    assert parse_model("fpn,encoder=resnet50,filters=64") == {"name": "fpn", "encoder": "resnet50", "filters": 64}
    for argv, message in ((["--model", "fpn"], "--model needs --lever"),
                          (["--lever", "widths", "--model", "fpn"], "takes no --model"),
                          (["--lever", "xla", "--model", "fpn,encoder"], "is not name[,key=value...]")):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--out", str(tmp_path / "x.json")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_unknown_lever_is_refused_with_the_valid_names(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--lever", "warp", "--out",
                             str(tmp_path / "x.json")], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "unknown lever(s) ['warp']; valid levers: fused_bn," in result.stderr


def test_every_result_records_the_cpu_its_flags_and_the_isa_cap(monkeypatch):
    from app.runtime.devices import cpu_flags
    from benchmarks.speed import CPU_FEATURES, installed_version, machine

    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    info = machine()
    assert info["cpu_features"] == [f for f in CPU_FEATURES if f in cpu_flags(cap="ALL")]
    assert info["isa_cap"] == "AVX2" and info["precision_auto"] == "float32"
    assert not any(f.startswith(("avx512", "amx")) for f in info["cpu_features_usable"])
    assert {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}.items() <= info["env"].items()
    assert info["tensorflow"] == installed_version("tensorflow", "tensorflow-cpu") is not None
    assert installed_version("no-such-distribution", "keras") == info["keras"]
