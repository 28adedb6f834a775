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
"""
import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

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


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("tflite", nargs="+", type=pathlib.Path, help=".tflite files")
    parser.add_argument("--invokes", type=int, default=2, help="counted invokes after the first (default 2)")
    parser.add_argument("--top", type=int, default=12, help="functions printed per file (default 12)")
    parser.add_argument("--json", type=pathlib.Path, default=RESULTS / "litert_kernels.json")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian/Ubuntu: apt-get install valgrind)")
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
