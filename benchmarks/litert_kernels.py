"""Which LiteRT / XNNPACK kernels run a .tflite file on an AVX2-only CPU, and how many instructions each costs.

    python benchmarks/litert_kernels.py runs/<id>/export/model_fp32.tflite runs/<id>/export/model_int8.tflite

XNNPACK picks its kernels from the CPU's CPUID at run time and honours no instruction-set cap
(`ONEDNN_MAX_CPU_ISA` is oneDNN's, which LiteRT does not use). Valgrind presents its own CPU to the program
(on an x86-64 host with AVX2: a Haswell core, AVX2 and FMA3 without AVX-512), so under valgrind XNNPACK runs
exactly the kernels it runs on an AVX2-only CPU, whatever CPU this is. Callgrind counts the instructions of each
function: one interpreter invoke costs the difference between a run with `--invokes` + 1 invokes and a run with 1,
which leaves out loading, weight packing and the first call. Counts are instructions, not seconds (an int8
multiply-add instruction and a float one need not take the same time), but they are exact and repeatable on a
busy machine. Prints the top kernels per file and writes benchmarks/results/litert_kernels.json (`--json`).

    python benchmarks/litert_kernels.py --time model_fp32.tflite model_int8.tflite

times the files instead (median ms per invoke, one thread), each in a fresh process with the CPU's own kernels
and with XNNPACK's AVX2 kernels forced, and names the GEMM kernels each run chose. Forcing works without
valgrind: before its first use, the arch flags of XNNPACK's hardware config (a static struct of the wheel's
`libpywrap_litert_common.so`, found through its symbol table with `nm`) are cut to SSE..AVX2+FMA3. The bit
layout is ai-edge-litert 2.3.0's; a run whose kernels are not AVX2 ones stops with an error instead of timing
the wrong code.
"""
import argparse
import json
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
INVOKE = """import sys, numpy as np
from ai_edge_litert.interpreter import Interpreter
interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
interpreter.allocate_tensors()
image = interpreter.get_input_details()[0]
interpreter.set_tensor(image["index"], np.zeros(image["shape"], image["dtype"]))
for _ in range(int(sys.argv[2])):
    interpreter.invoke()
"""
LINE = re.compile(r"^\s*([\d,]+) (?:\(\s*[\d.]+%\)\s+)?\S*?:(.+?)(?: \[.*\])?$")


def self_costs(callgrind_file):
    """{function: instructions executed in its own code} from a callgrind output file."""
    listing = subprocess.run(["callgrind_annotate", "--threshold=100", str(callgrind_file)], capture_output=True,
                             text=True, check=True).stdout
    costs = {}
    for line in listing.splitlines():
        match = LINE.match(line)
        if match:
            costs[match.group(2)] = costs.get(match.group(2), 0) + int(match.group(1).replace(",", ""))
    return costs


def kernel_costs(path, invokes, work_dir):
    """{function: instructions per invoke}, largest first, of one .tflite file on one thread under valgrind."""
    script = work_dir / "invoke.py"
    script.write_text(INVOKE)
    totals = []
    for count in (1, invokes + 1):
        out = work_dir / f"callgrind.{count}"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(script),
                        str(path), str(count)], capture_output=True, text=True, check=True)
        totals.append(self_costs(out))
    per_invoke = {name: (cost - totals[0].get(name, 0)) / invokes for name, cost in totals[1].items()}
    return dict(sorted(((k, v) for k, v in per_invoke.items() if v > 0), key=lambda item: -item[1]))


AVX2_ARCH_FLAGS = 0xFF
"""XNNPACK arch flags of an AVX2 + FMA3 CPU in ai-edge-litert 2.3.0 (bit 8 is avx256skx, bit 9 avx512f)."""
GEMM_CONFIGS = ("f32_igemm_config", "f32_gemm_config", "qs8_qc8w_gemm_config")


def _xnnpack_library():
    """(load address, {symbol: offset}, {function offset: name}) of the wheel's XNNPACK, loaded in this process."""
    import ai_edge_litert
    import ai_edge_litert.interpreter  # noqa: F401  (loads the library)

    library = (pathlib.Path(ai_edge_litert.__file__).parent / "libpywrap_litert_common.so").resolve()
    symbols, functions = {}, {}
    for line in subprocess.run(["nm", str(library)], capture_output=True, text=True, check=True).stdout.splitlines():
        fields = line.split()
        if len(fields) == 3:
            symbols[fields[2]] = int(fields[0], 16)
            if fields[1] in "tT":
                functions[int(fields[0], 16)] = fields[2]
    with open("/proc/self/maps") as maps:
        base = next(int(f[0].split("-")[0], 16) for f in map(str.split, maps)
                    if len(f) >= 6 and f[5] == str(library) and int(f[2], 16) == 0)
    return base, symbols, functions


def time_invokes(paths, isa, invokes):
    """{path: median ms per invoke} on one thread, and the GEMM kernels XNNPACK chose; `isa` "avx2" forces those."""
    import ctypes

    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    base, symbols, functions = _xnnpack_library()
    config = ctypes.CFUNCTYPE(ctypes.c_void_p)(base + symbols["xnn_init_hardware_config"])()
    if isa == "avx2":
        ctypes.c_uint64.from_address(config + 8).value &= AVX2_ARCH_FLAGS
    medians = {}
    for path in paths:
        interpreter = Interpreter(model_path=str(path), num_threads=1)
        interpreter.allocate_tensors()
        image = interpreter.get_input_details()[0]
        interpreter.set_tensor(image["index"], np.zeros(image["shape"], image["dtype"]))
        interpreter.invoke()
        seconds = []
        for _ in range(invokes):
            began = time.perf_counter()
            interpreter.invoke()
            seconds.append(time.perf_counter() - began)
        medians[str(path)] = 1e3 * statistics.median(seconds)
    kernels = set()
    for name in GEMM_CONFIGS:
        words = (ctypes.c_uint64 * 128).from_address(base + symbols[name])
        kernels |= {functions[w - base] for w in words if w - base in functions and "_ukernel_" in functions[w - base]}
    kernels = sorted(k.removeprefix("xnn_") for k in kernels if "packw" not in k)
    if isa == "avx2" and any("avx512" in k or "avx256" in k for k in kernels):
        raise SystemExit(f"error: XNNPACK kept wider kernels with AVX2 forced ({', '.join(kernels)}): this "
                         "ai-edge-litert build lays out its hardware flags differently; time it on an AVX2 CPU")
    return {"median_ms": medians, "gemm_kernels": kernels}


def timings(paths, invokes):
    """{isa: time_invokes(...)} for the CPU's own kernels and the AVX2 ones, each in a fresh process."""
    results = {}
    for isa in ("native", "avx2"):
        worker = subprocess.run([sys.executable, __file__, "--time-worker", isa, "--invokes", str(invokes),
                                 *map(str, paths)], capture_output=True, text=True)
        if worker.returncode:
            raise SystemExit(worker.stderr.strip().splitlines()[-1])
        results[isa] = json.loads(worker.stdout.strip().splitlines()[-1])
    return results


def print_timings(results, paths):
    for isa, result in results.items():
        times = ", ".join(f"{pathlib.Path(p).name} {result['median_ms'][str(p)]:.1f} ms" for p in paths)
        print(f"{isa} kernels: {times}")
        print(f"  GEMM kernels: {', '.join(result['gemm_kernels'])}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tflite", nargs="+", type=pathlib.Path, help=".tflite files")
    parser.add_argument("--invokes", type=int, help="counted invokes after the first (default 2; with --time 30)")
    parser.add_argument("--top", type=int, default=12, help="functions printed per file (default 12)")
    parser.add_argument("--time", action="store_true",
                        help="time the files with the CPU's own XNNPACK kernels and with the AVX2 ones forced")
    parser.add_argument("--time-worker", choices=("native", "avx2"), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=pathlib.Path, help="default benchmarks/results/litert_kernels[-time].json")
    args = parser.parse_args(argv)
    if args.time_worker:
        print(json.dumps(time_invokes(args.tflite, args.time_worker, args.invokes)))
        return 0
    if args.time:
        results = timings(args.tflite, args.invokes or 30)
        print_timings(results, args.tflite)
        json_path = args.json or RESULTS / "litert_kernels-time.json"
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2))
        print(f"wrote {json_path}")
        return 0
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)")
    args.invokes = args.invokes or 2
    args.json = args.json or RESULTS / "litert_kernels.json"
    report = {}
    with tempfile.TemporaryDirectory(prefix="litert-kernels-") as tmp:
        for path in args.tflite:
            costs = kernel_costs(path, args.invokes, pathlib.Path(tmp))
            total = sum(costs.values())
            report[str(path)] = {"instructions_per_invoke": total, "functions": costs}
            print(f"{path}: {total / 1e6:.1f} M instructions per invoke (AVX2 kernels, 1 thread)")
            for name, cost in list(costs.items())[:args.top]:
                print(f"  {cost / 1e6:9.1f} M {100 * cost / total:5.1f}%  {name[:100]}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
