"""`train.precision: auto`: the dtype policy the hardware computes fastest without hurting training.

- GPUs that compute bfloat16 natively (compute capability 8.0 and later: A100, H100, L4, RTX 30xx/40xx):
  mixed_bfloat16 (float32's range, no loss scaling).
- GPUs with float16 tensor cores but no bfloat16 (compute capability 7.x: V100, T4, RTX 20xx): mixed_float16
  (with dynamic loss scaling).
- CPUs with native bfloat16 arithmetic (AMX-BF16 or AVX512-BF16 flags; 2-3x faster there): mixed_bfloat16,
  unless `ONEDNN_MAX_CPU_ISA` keeps oneDNN below those instructions (`AVX2` makes such a CPU an AVX2 one).
- Anything else (older GPUs, GPUs of unknown capability, other CPUs): float32.
With several GPUs the weakest decides.

An explicit mixed_bfloat16 on a CPU without those flags runs about 10x slower than float32 (measured on an
AVX2-only AMD EPYC): `bfloat16_cost_warning` says so before training. `system_nvidia_gpus` and
`tensorflow_wheels` tell `python -m app.info --devices` why a GPU the machine has may be unused.
"""
import importlib.metadata
import os
import pathlib
import shutil
import subprocess

import keras

BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU features (Linux /proc/cpuinfo flags) with native bfloat16 arithmetic."""
ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
"""Environment variables that cap the instruction set oneDNN (TensorFlow's and PyTorch's CPU kernels) dispatches to."""
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16", "auto")


def isa_cap(environ=None):
    """The oneDNN instruction-set cap (`ONEDNN_MAX_CPU_ISA`, else `DNNL_MAX_CPU_ISA`) in upper case, or None."""
    environ = os.environ if environ is None else environ
    return next((environ[name].strip().upper() for name in ISA_CAP_VARIABLES if environ.get(name, "").strip()), None)


def capped_flags(flags, cap):
    """`flags` less those that oneDNN may not use under the ISA `cap` (a oneDNN name such as AVX2): no AVX-512 or
    AMX below AVX512_CORE, no AVX512-BF16 below AVX512_CORE_BF16, no AMX below the AMX names."""
    if not cap or cap in ("ALL", "DEFAULT") or "AMX" in cap:
        return set(flags)
    flags = {flag for flag in flags if not flag.startswith("amx")}
    if cap.startswith(("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10")):
        return flags
    flags.discard("avx512_bf16")
    return flags if cap.startswith("AVX512") else {flag for flag in flags if not flag.startswith("avx512")}


def cpu_flags(cpuinfo="/proc/cpuinfo", cap=None):
    """The CPU's feature flags that oneDNN may use, or an empty set where /proc/cpuinfo does not exist (macOS,
    Windows). `cap`: a oneDNN ISA cap (see `capped_flags`); defaults to `isa_cap()`, "ALL" reads every flag."""
    try:
        text = pathlib.Path(cpuinfo).read_text()
    except OSError:
        return set()
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    return capped_flags(flags, isa_cap() if cap is None else cap)


def cpu_model(cpuinfo="/proc/cpuinfo"):
    """The CPU's "model name" from /proc/cpuinfo, or None where it cannot be read."""
    try:
        lines = pathlib.Path(cpuinfo).read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), None)


def _cpu_only(devices):
    return all(device.lower().startswith("cpu") for device in devices)


def _capability(value):
    """(major, minor) from a tuple or a "8.0" string; None when unknown."""
    if isinstance(value, str):
        major, _, minor = value.partition(".")
        return (int(major), int(minor or 0)) if major.isdigit() else None
    return tuple(int(v) for v in value[:2]) if value else None


def gpu_details():
    """[{"name", "compute_capability": (major, minor) or None}] of the visible GPUs, on the current backend."""
    if keras.backend.backend() == "jax":
        import jax

        try:
            gpus = jax.devices("gpu")
        except RuntimeError:
            return []
        return [{"name": getattr(d, "device_kind", str(d)),
                 "compute_capability": _capability(getattr(d, "compute_capability", None))} for d in gpus]
    if keras.backend.backend() != "tensorflow":
        return []
    import tensorflow as tf

    details = []
    for device in tf.config.list_physical_devices("GPU"):
        info = tf.config.experimental.get_device_details(device)
        details.append({"name": info.get("device_name", device.name),
                        "compute_capability": _capability(info.get("compute_capability"))})
    return details


def gpu_memory_bytes():
    """Total memory of the smallest visible NVIDIA GPU (nvidia-smi), or None where it cannot be read."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    sizes = {}
    for line in out.strip().splitlines():
        index, _, mib = line.partition(",")
        if mib.strip().isdigit():
            sizes[index.strip()] = int(mib) * 1024**2
    if visible is not None:
        sizes = {k: v for k, v in sizes.items() if k in visible.split(",")}
    return min(sizes.values()) if sizes else None


def system_nvidia_gpus(proc_dir="/proc/driver/nvidia/gpus", nvidia_smi="nvidia-smi"):
    """Names of the NVIDIA GPUs the operating system sees, whatever TensorFlow or JAX see.

    Read from the driver's `proc_dir` (one folder per GPU, with an `information` file), else from
    `nvidia_smi -L` (a command on PATH or a path; None: do not run it); empty where neither is there.
    """
    folders = sorted(pathlib.Path(proc_dir).glob("*/information")) if pathlib.Path(proc_dir).is_dir() else []
    if folders:
        names = []
        for information in folders:
            fields = dict(line.split(":", 1) for line in information.read_text().splitlines() if ":" in line)
            names.append(fields.get("Model", information.parent.name).strip())
        return names
    nvidia_smi = nvidia_smi and shutil.which(nvidia_smi)
    if not nvidia_smi:
        return []
    try:
        out = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.split(":", 1)[1].split("(UUID")[0].strip() for line in out.splitlines() if line.startswith("GPU ")]


def tensorflow_wheels():
    """The installed TensorFlow distributions ("tensorflow", "tensorflow-cpu"): more than one is a broken install."""
    installed = []
    for name in ("tensorflow", "tensorflow-cpu"):
        try:
            installed.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return installed


def device_warnings(backend, backend_gpus, system_gpus, wheels):
    """Warning lines for a GPU the system has but `backend` does not see, and for clashing TensorFlow wheels.

    Args:
        backend: the Keras backend name.
        backend_gpus: `gpu_details()` of that backend.
        system_gpus: `system_nvidia_gpus()`.
        wheels: `tensorflow_wheels()`.
    """
    warnings = []
    if system_gpus and not backend_gpus:
        install = ('pip install -e ".[gpu]" in a fresh virtual environment (TensorFlow\'s CUDA wheels)'
                   if backend == "tensorflow" else 'pip install "jax[cuda12]"')
        warnings.append(f"warning: the system has {len(system_gpus)} NVIDIA GPU(s) ({', '.join(system_gpus)}) "
                        f"but {backend} sees none, so training runs on the CPU: {install}")
    if len(wheels) > 1:
        warnings.append(f"warning: {' and '.join(wheels)} are installed side by side and overwrite each other's "
                        'files: make a fresh virtual environment with one of pip install -e ".[dev]" (CPU) or '
                        '".[gpu]"')
    return warnings


def bfloat16_cost_warning(name, devices=None, flags=None):
    """A warning line when `train.precision` asks for mixed_bfloat16 on CPUs without bfloat16 arithmetic, else None.

    Args as for `resolve_precision`; a machine with any GPU gets no warning.
    """
    if name != "mixed_bfloat16":
        return None
    devices = keras.distribution.list_devices() if devices is None else devices
    flags = cpu_flags() if flags is None else flags
    if not _cpu_only(devices) or flags & set(BF16_CPU_FLAGS):
        return None
    return ("warning: train.precision: mixed_bfloat16 on a CPU without bfloat16 arithmetic (no "
            f"{' or '.join(BF16_CPU_FLAGS)} flag) trains about 10x slower than float32; set train.precision: auto "
            "(float32 here) unless the bfloat16 numerics are the point")


def conv_weight_gradients_wanted(devices=None, flags=None, environ=None):
    """Whether training should compute Conv2D weight gradients by `app.training.conv_gradients`: on TensorFlow
    with oneDNN, CPUs only, where oneDNN may use AVX2 but not AVX-512 (1.32x training there, docs/speed.md).

    Args as for `resolve_precision`; `environ` defaults to `os.environ` (TF_ENABLE_ONEDNN_OPTS=0 turns it off).
    """
    environ = os.environ if environ is None else environ
    devices = keras.distribution.list_devices() if devices is None else devices
    flags = cpu_flags() if flags is None else flags
    return (keras.backend.backend() == "tensorflow" and environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
            and _cpu_only(devices) and "avx2" in flags and "avx512f" not in flags)


def resolve_precision(name, devices=None, flags=None, gpus=None):
    """The dtype policy for `train.precision` (see the module docstring for `auto`); other names pass through.

    Args:
        name: a value of PRECISIONS.
        devices: Keras device names ("cpu:0", "gpu:0"); defaults to `keras.distribution.list_devices()`.
        flags: CPU feature flags; defaults to `cpu_flags()`.
        gpus: `gpu_details()`-style descriptions; defaults to the visible GPUs when `devices` names any.
    """
    if name != "auto":
        return name
    devices = keras.distribution.list_devices() if devices is None else devices
    flags = cpu_flags() if flags is None else flags
    if _cpu_only(devices) and not gpus:
        return "mixed_bfloat16" if flags & set(BF16_CPU_FLAGS) else "float32"
    gpus = gpu_details() if gpus is None else gpus
    capabilities = [gpu.get("compute_capability") for gpu in gpus]
    if not capabilities or None in capabilities:
        return "float32"
    weakest = min(capabilities)
    if weakest >= (8, 0):
        return "mixed_bfloat16"
    return "mixed_float16" if weakest >= (7, 0) else "float32"
