"""Size, latency and validation mIoU of Keras, SavedModel and TFLite fp32 / fp16 / int8, measured in one run.

    python -m benchmarks.export --run runs/<unet-id> --run runs/<deeplab-id>
    python -m benchmarks.export --quick     # trains a tiny U-Net and DeepLabV3+ (MobileNetV2) for 1 epoch first
    python -m benchmarks.export --ops runs/<id>/export/model_int8.tflite     # the per-op report only

Prints the table and writes benchmarks/results/export[-quick].json and .csv. Targets for int8 against fp32:
at least 3.5x smaller and 2x faster per image (LiteRT, 1 thread and all threads), at most 1 point of mIoU lost.
The per-op report of each int8 model (which ops compute quantised, which in float, which convert between the
two, which LiteRT's default XNNPACK delegate takes) is printed and written to export[-quick].json too; `--ops`
prints it for any .tflite files and writes benchmarks/results/ops.json (`--ops-json`).
"""
import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
QUICK_RUNS = {
    "unet": ["--set", "model.base_filters=8", "--set", "model.depth=3"],
    "deeplabv3plus-mobilenetv2": ["--model", "deeplabv3plus", "--set", "model.backbone=mobilenetv2",
                                  "--set", "model.filters=32", "--set", "model.low_level_filters=16",
                                  "--set", "data.val_fraction=0"],
}
"""Tiny models of --quick. DeepLabV3+ trains without a validation split (its ResizeLike layer fails on the
validation pipeline's free image sizes), so its mIoU is measured on the training split."""
TARGETS = {"size_ratio": 3.5, "speedup": 2.0, "miou_drop_pts": 1.0}
QUANTISED = {"int8", "uint8", "int16"}
SCALE_KEEPING = {"CONCATENATION", "MAX_POOL_2D", "RESHAPE", "GATHER", "PAD", "TRANSPOSE", "RESIZE_BILINEAR",
                 "RESIZE_NEAREST_NEIGHBOR", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH"}
"""Ops whose int8 kernels copy values unchanged when inputs and output share one scale and zero point, and
requantise every value when they do not."""


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", default=[], help="trained run folder (repeatable)")
    parser.add_argument("--quick", action="store_true", help="train tiny models for 1 epoch at 64x64 and use them")
    parser.add_argument("--calibration-images", type=int, default=100)
    parser.add_argument("--latency-runs", type=int, default=30, help="timed calls per latency figure")
    parser.add_argument("--ops", action="append", default=[], metavar="TFLITE",
                        help="print the per-op report of this .tflite file (repeatable) instead of benchmarking")
    parser.add_argument("--ops-json", type=pathlib.Path, default=RESULTS / "ops.json",
                        help="where --ops writes its reports (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.run and not args.quick and not args.ops:
        parser.error("give --run folders, --quick, or --ops files")
    return args


def _xnnpack_ops(path, ops):
    """Indices of the ops that LiteRT's default XNNPACK delegate takes (as `app.inference.litert.LiteRTModel` runs).

    Each delegate node replaces a partition of ops; walking back from its outputs to its inputs finds them.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    producer = {tensor: op["index"] for op in ops for tensor in op["outputs"]}
    taken = set()
    for node in interpreter._get_ops_details()[len(ops):]:
        boundary = set(node["inputs"])
        pending = [tensor for tensor in node["outputs"] if tensor not in boundary]
        while pending:
            index = producer.get(pending.pop())
            if index is None or index in taken:
                continue
            taken.add(index)
            pending.extend(tensor for tensor in ops[index]["inputs"] if tensor not in boundary)
    return taken


def op_report(path):
    """One row per op of a .tflite model, in graph order.

    Columns: op; activations (types of the inputs that are not constants, then "->" and the outputs); weights
    (type of the constant inputs with two or more dimensions, "per-channel (N)" or "per-tensor"); runs
    ("quantised": integer in and out, "float", or "convert": QUANTIZE / DEQUANTIZE, or mixed types);
    xnnpack (the default XNNPACK delegate takes it; the rest run on LiteRT's built-in kernels); requantises
    (for `SCALE_KEEPING` ops: inputs and output have different scales or zero points).
    """
    import numpy as np
    import pandas as pd
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    ops = interpreter._get_ops_details()
    tensors = {detail["index"]: detail for detail in interpreter.get_tensor_details()}
    produced = {tensor for op in ops for tensor in op["outputs"]} | {d["index"] for d in
                                                                      interpreter.get_input_details()}
    xnnpack = _xnnpack_ops(path, ops)

    def dtype(index):
        return np.dtype(tensors[index]["dtype"]).name

    def quantisation(index):
        params = tensors[index]["quantization_parameters"]
        return tuple(np.round(params["scales"], 9)), tuple(params["zero_points"])

    rows = []
    for op in ops:
        inputs = [i for i in op["inputs"] if i in tensors]
        activations = [i for i in inputs if i in produced]
        weights = [i for i in inputs if i not in produced and len(tensors[i]["shape"]) >= 2]
        types = {dtype(i) for i in activations + list(op["outputs"])}
        runs = ("convert" if op["op_name"] in ("QUANTIZE", "DEQUANTIZE") or types & QUANTISED and types - QUANTISED
                else "quantised" if types & QUANTISED else "float")
        scales = [len(tensors[i]["quantization_parameters"]["scales"]) for i in weights]
        rows.append({
            "index": op["index"], "op": op["op_name"],
            "activations": f"{','.join(dtype(i) for i in activations)}->{','.join(map(dtype, op['outputs']))}",
            "weights": ",".join(f"{dtype(i)} " + (f"per-channel ({n})" if n > 1 else "per-tensor" if n else "float")
                                for i, n in zip(weights, scales)),
            "runs": runs, "xnnpack": op["index"] in xnnpack,
            "requantises": (runs == "quantised" and op["op_name"] in SCALE_KEEPING
                            and any(quantisation(i) != quantisation(op["outputs"][0]) for i in activations)),
        })
    return pd.DataFrame(rows)


def op_summary(report):
    """Ops counted by name, how they run and whether XNNPACK takes them."""
    return (report.groupby(["op", "runs", "xnnpack", "requantises"]).size().rename("count").reset_index()
            .sort_values(["runs", "op"], ignore_index=True))


def print_op_reports(paths, json_path):
    """Print each file's op table and summary; write them all to `json_path`."""
    reports = []
    for path in paths:
        report = op_report(path)
        summary = op_summary(report)
        print(f"{path}:", report.to_string(index=False), summary.to_string(index=False), sep="\n")
        reports.append({"path": str(path), "ops": report.to_dict("records"), "summary": summary.to_dict("records")})
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(reports, indent=2))
    return reports


def quick_runs(runs_dir):
    from app import train

    for name, options in QUICK_RUNS.items():
        if train.main(["--epochs", "1", "--image-size", "64", "64", "--name", f"bench-{name}", "--runs-dir",
                       str(runs_dir / name), *options]):
            raise SystemExit(f"training the quick {name} failed")
    return [next((runs_dir / name).iterdir()) for name in QUICK_RUNS]


def benchmark(run_dirs, work_dir, calibration_images, latency_runs):
    """One table over runs and formats, with size and speed ratios against each run's tflite-fp32 row, and the
    `op_report` of each run's int8 model by model label."""
    import pandas as pd
    import yaml

    from app.exporting.exporters import FORMATS, ParityError, export_run

    tables, int8_ops = [], {}
    for run_dir in map(pathlib.Path, run_dirs):
        model = yaml.safe_load((run_dir / "config.yaml").read_text())["model"]
        label = "-".join(filter(None, [model["name"], model.get("backbone")]))
        out = work_dir / run_dir.name
        try:
            export_run(run_dir, FORMATS, out, calibration_images=calibration_images, latency_runs=latency_runs)
        except ParityError as err:
            print(f"{label}: {err}", file=sys.stderr)
        if (out / "model_int8.tflite").exists():
            int8_ops[label] = op_report(out / "model_int8.tflite")
        table = pd.read_csv(out / "parity.csv")
        fp32 = table.set_index("format").loc["tflite-fp32"]
        table.insert(0, "model", label)
        table.insert(1, "split", json.loads((out / "parity.json").read_text())["split"])
        table["size_ratio"] = fp32["size_mb"] / table["size_mb"]
        table["speedup_1t"] = fp32["latency_ms_1t"] / table["latency_ms_1t"]
        table["speedup_all"] = fp32["latency_ms_all"] / table["latency_ms_all"]
        tables.append(table)
    columns = ["model", "split", "format", "size_mb", "size_ratio", "latency_ms_1t", "latency_ms_all", "speedup_1t",
               "speedup_all", "miou_pct", "miou_drop_pts", "agreement_pct"]
    return pd.concat(tables, ignore_index=True)[columns], int8_ops


def target_checks(table):
    """One line per int8 row: each target met or missed."""
    lines = []
    for row in table[table["format"] == "tflite-int8"].itertuples():
        checks = {f"{row.size_ratio:.2f}x smaller": row.size_ratio >= TARGETS["size_ratio"],
                  f"{row.speedup_1t:.2f}x faster (1 thread)": row.speedup_1t >= TARGETS["speedup"],
                  f"{row.speedup_all:.2f}x faster (all threads)": row.speedup_all >= TARGETS["speedup"],
                  f"{row.miou_drop_pts:.2f} mIoU points lost": row.miou_drop_pts <= TARGETS["miou_drop_pts"]}
        lines.append(f"{row.model} int8 vs fp32: " + ", ".join(f"{k} [{'ok' if v else 'MISSED'}]"
                                                                for k, v in checks.items()))
    return lines


def main(argv=None):
    args = parse_args(argv)
    if args.ops:
        print_op_reports(args.ops, args.ops_json)
        return 0
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        tmp = pathlib.Path(tmp)
        runs = quick_runs(tmp / "runs") if args.quick else args.run
        table, int8_ops = benchmark(runs, tmp / "export", args.calibration_images, args.latency_runs)
    text = table.to_string(index=False, float_format=lambda v: f"{v:.3g}", na_rep="-")
    checks = target_checks(table)
    print(text, *checks, sep="\n")
    for label, report in int8_ops.items():
        print(f"{label} int8 ops:", op_summary(report).to_string(index=False), sep="\n")
    stem = "export-quick" if args.quick else "export"
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / f"{stem}.csv", index=False)
    meta = {"date": datetime.datetime.now().isoformat(timespec="seconds"), "runs": [str(r) for r in runs],
            "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
            "tensorflow": tf.__version__, "calibration_images": args.calibration_images,
            "latency_runs": args.latency_runs, "targets": TARGETS, "checks": checks,
            "rows": table.to_dict("records"),
            "int8_ops": {label: {"ops": report.to_dict("records"), "summary": op_summary(report).to_dict("records")}
                         for label, report in int8_ops.items()}}
    (RESULTS / f"{stem}.json").write_text(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
