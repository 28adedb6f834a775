"""Describe a model: `python -m app.info --model NAME [--encoder NAME] [--input-size H W C] [--num-classes N]
[--option KEY=VALUE]`, or the machine: `python -m app.info --devices`.

Prints the parameter count, FLOPs per image (2 x the multiply-accumulates of conv and dense layers,
counted from layer configs and output shapes), the output stride (height and width must be multiples of
it) and the theoretical receptive field; `--table` adds the per-layer receptive-field table.

`--devices` prints the Keras backend, the devices and GPUs it sees, the CPU and whether it computes bfloat16,
and the precision `train.precision: auto` will train in; it warns when the system has an NVIDIA GPU that the
backend does not see, and when two TensorFlow wheels are installed side by side.
"""
import argparse
import ast
import importlib
import os
import sys

from app.cli import add_verbose_option, fail_cleanly


def parse_args(argv=None):
    from models.registry import MODELS

    parser = argparse.ArgumentParser(prog="python -m app.info", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS))
    parser.add_argument("--devices", action="store_true",
                        help="print the devices and precision training will use (may be given with --model)")
    parser.add_argument("--input-size", type=int, nargs=3, default=[256, 256, 3], metavar=("H", "W", "C"))
    parser.add_argument("--num-classes", type=int, default=2)
    parser.add_argument("--encoder", help="pretrained backbone (models.encoders.ENCODERS) under the --model decoder")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="architecture option, e.g. depth=3 or upsampling=bilinear (repeatable)")
    parser.add_argument("--table", action="store_true", help="also print the per-layer receptive-field table")
    add_verbose_option(parser)
    args = parser.parse_args(argv)
    if not args.model and not args.devices:
        parser.error("one of --model or --devices is required")
    return args


def parse_option(text):
    """Split "key=value" and read the value as a Python literal when it is one (3, 0.5, True), else a string."""
    key, separator, value = text.partition("=")
    if not separator:
        raise ValueError(f"--option must look like KEY=VALUE: got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def device_lines():
    """The `--devices` report: backend, devices, GPUs, CPU, the precision of `train.precision: auto`, warnings."""
    import keras

    from app.runtime.devices import (BF16_CPU_FLAGS, cpu_flags, cpu_model, device_warnings, gpu_details, isa_cap,
                                     resolve_precision, system_nvidia_gpus, tensorflow_wheels)

    backend = keras.backend.backend()
    module = importlib.import_module("tensorflow" if backend == "tensorflow" else backend)
    wheels = tensorflow_wheels()
    gpus = gpu_details()
    devices = keras.distribution.list_devices()
    bf16 = sorted(cpu_flags() & set(BF16_CPU_FLAGS))
    lines = [f"backend          {backend} {getattr(module, '__version__', '')}"
             + (f" ({', '.join(wheels)})" if backend == "tensorflow" and wheels else ""),
             f"devices          {', '.join(devices)}",
             "GPUs             " + ("; ".join(f"{gpu['name']} (compute capability "
                                              f"{'.'.join(map(str, gpu['compute_capability'] or ('?',)))})"
                                              for gpu in gpus) or f"none visible to {backend}"),
             f"CPU              {cpu_model() or 'unknown'}, {os.cpu_count()} logical cores, bfloat16 arithmetic: "
             f"{', '.join(bf16) or 'no'}" + (f" (oneDNN capped at {isa_cap()})" if isa_cap() else ""),
             f"precision        {resolve_precision('auto', devices, gpus=gpus)} (train.precision: auto)"]
    return lines + device_warnings(backend, gpus, system_nvidia_gpus(), wheels)


@fail_cleanly
def main(argv=None):
    args = parse_args(argv)
    if args.devices:
        print("\n".join(device_lines()))
        if not args.model:
            return 0
    from models.flops import count_flops
    from models.receptive_field import receptive_field_table, theoretical_receptive_field
    from models.registry import get_model, required_divisor

    options = dict(parse_option(text) for text in args.option)
    if args.encoder:
        options["encoder"] = args.encoder
    model = get_model(args.model, tuple(args.input_size), args.num_classes, **options)
    flops = count_flops(model)
    height, width, channels = args.input_size
    print(f"model            {args.model} {options or ''}".rstrip())
    print(f"input            {height}x{width}x{channels}, {args.num_classes} classes")
    print(f"parameters       {model.count_params():,}")
    print(f"FLOPs per image  {flops / 1e9:.3f} G ({flops // 2:,} multiply-adds x 2)")
    print(f"output stride    {required_divisor(args.model, **options)}")
    print(f"receptive field  {theoretical_receptive_field(model)} pixels (theoretical)")
    if args.table:
        print(receptive_field_table(model).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
