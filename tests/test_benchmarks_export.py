"""The per-op report of benchmarks/export.py on tiny U-Nets exported to fp32 and int8 here."""
import json
import re
import shutil

import numpy as np
import pytest

from app.exporting.exporters import convert_tflite, litert_compatible, tflite_archive
from benchmarks.export import main, op_report, op_summary
from models.registry import get_model

SIZE = (32, 32)


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory):
    """{(upsampling, format): path} of a depth-2, 4-filter U-Net with 3 classes."""
    out = tmp_path_factory.mktemp("ops")
    calibration = np.random.default_rng(0).random((4, *SIZE, 3)).astype(np.float32)
    files = {}
    for upsampling, formats in (("transpose", ("tflite-fp32", "tflite-int8")), ("bilinear", ("tflite-int8",))):
        model = get_model("unet", (None, None, 3), 3, depth=2, base_filters=4, upsampling=upsampling)
        tflite_archive(litert_compatible(model), SIZE).write_out(str(out / upsampling), verbose=False)
        for fmt in formats:
            files[upsampling, fmt] = out / f"{upsampling}-{fmt}.tflite"
            files[upsampling, fmt].write_bytes(convert_tflite(out / upsampling, fmt, model, calibration))
    return files


def counts(report, **where):
    rows = report
    for column, value in where.items():
        rows = rows[rows[column] == value]
    return rows["op"].value_counts().to_dict()


def test_int8_unet_runs_every_op_quantised_and_all_but_the_ends_in_xnnpack(tflite_files):
    report = op_report(tflite_files["transpose", "tflite-int8"])
    assert counts(report) == {"CONV_2D": 11, "TRANSPOSE_CONV": 2, "CONCATENATION": 2, "MAX_POOL_2D": 2,
                              "QUANTIZE": 2, "SOFTMAX": 1}
    assert counts(report, runs="convert") == {"QUANTIZE": 2}
    assert list(report[report["runs"] == "convert"]["activations"]) == ["uint8->int8", "int8->uint8"]
    assert counts(report, runs="float") == {}
    assert counts(report, xnnpack=False) == {"QUANTIZE": 2, "SOFTMAX": 1}
    weighted = report[report["op"].isin(["CONV_2D", "TRANSPOSE_CONV"])]
    assert weighted["weights"].str.fullmatch(r"int8 per-channel \(\d+\)").all()
    assert report.loc[report["op"] == "CONV_2D", "weights"].iloc[-1] == "int8 per-channel (3)"  # the logits
    concat = report[report["op"] == "CONCATENATION"]
    assert (concat["activations"] == "int8,int8->int8").all() and not concat["requantises"].any()


def test_float_unet_runs_every_op_in_float_and_in_xnnpack(tflite_files):
    report = op_report(tflite_files["transpose", "tflite-fp32"])
    assert set(report["runs"]) == {"float"} and report["xnnpack"].all()
    assert "QUANTIZE" not in set(report["op"]) and (report["op"] == "SOFTMAX").sum() == 1


def test_bilinear_unet_leaves_its_gathers_to_the_builtin_kernels(tflite_files):
    report = op_report(tflite_files["bilinear", "tflite-int8"])
    assert counts(report, xnnpack=False) == {"GATHER": 8, "QUANTIZE": 2, "SOFTMAX": 1}
    assert counts(report, runs="float") == {}
    summary = op_summary(report).set_index(["op", "runs", "xnnpack"])["count"]
    assert summary["GATHER", "quantised", False] == 8 and summary["CONV_2D", "quantised", True] == 13


def test_ops_cli_prints_the_tables_and_writes_json(tflite_files, tmp_path, capsys):
    path = tflite_files["transpose", "tflite-int8"]
    assert main(["--ops", str(path), "--ops-json", str(tmp_path / "ops.json")]) == 0
    printed = capsys.readouterr().out
    assert f"{path}:" in printed and "TRANSPOSE_CONV" in printed and "requantises" in printed
    (written,) = json.loads((tmp_path / "ops.json").read_text())
    assert written["path"] == str(path) and len(written["ops"]) == 20
    assert {row["op"]: row["count"] for row in written["summary"] if row["runs"] == "convert"} == {"QUANTIZE": 2}


@pytest.mark.slow  # two valgrind runs per file: ~40 s
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_valgrind_shows_the_avx2_kernels_int8_and_float_convolutions_run(tflite_files, tmp_path):
    from benchmarks.litert_kernels import main as kernels

    out = tmp_path / "kernels.json"
    files = [tflite_files["transpose", fmt] for fmt in ("tflite-fp32", "tflite-int8")]
    assert kernels([*map(str, files), "--invokes", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    fp32, int8 = (report[str(path)]["functions"] for path in files)
    assert any(re.fullmatch(r"xnn_f32_igemm_minmax_ukernel_\w+__fma3\w*", name) for name in fp32)
    assert any(re.fullmatch(r"xnn_qs8_qc8w_igemm_minmax_fp32_ukernel_\w+__avx2", name) for name in int8)
    assert not any("avx512" in name for name in [*fp32, *int8])
    assert report[str(files[1])]["instructions_per_invoke"] > 0


@pytest.mark.skipif(shutil.which("nm") is None, reason="binutils' nm is not installed")
def test_time_mode_forces_xnnpacks_avx2_kernels_in_process(tflite_files, tmp_path, capsys):
    from benchmarks.litert_kernels import main as kernels

    out = tmp_path / "time.json"
    files = [tflite_files["transpose", fmt] for fmt in ("tflite-fp32", "tflite-int8")]
    assert kernels([*map(str, files), "--time", "--invokes", "3", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    avx2 = results["avx2"]["gemm_kernels"]
    assert any(re.fullmatch(r"f32_igemm_minmax_ukernel_\w+__fma3\w*", name) for name in avx2)
    assert any(re.fullmatch(r"qs8_qc8w_igemm_minmax_fp32_ukernel_\w+__avx2", name) for name in avx2)
    assert not any("avx512" in name or "avx256" in name for name in avx2)
    for isa in ("native", "avx2"):
        assert all(ms > 0 for ms in results[isa]["median_ms"].values()) and len(results[isa]["median_ms"]) == 2
    assert "avx2 kernels: transpose-tflite-fp32.tflite" in capsys.readouterr().out
