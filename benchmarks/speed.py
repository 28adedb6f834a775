"""Training and inference images/s of our U-Net against the same U-Net in PyTorch, and of each speed lever, on CPU.

    python benchmarks/speed.py                      # ours (project defaults, and bf16) against the PyTorch peer
    python benchmarks/speed.py --lever bf16         # our U-Net without / with one lever, side by side
    python benchmarks/speed.py --lever all          # every lever in turn (see LEVERS)
    python benchmarks/speed.py --lever conv_grad --model fpn,encoder=resnet50   # a lever on another architecture
    python benchmarks/speed.py --quick              # 64x64, tiny widths, short blocks: checks that the script works
    ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 python benchmarks/speed.py   # as on an AVX2-only CPU

Model (issue 10): U-Net, depth 4, 32 base filters, batch norm, 2x2 transposed-convolution upsampling, 256x256x3
input, 12 classes, batch 4 (7.8 M parameters). Ours is built and compiled by `app.training.model.build_model` and
`compile_model` from the default config of `python -m app.train`, so it trains exactly as the CLI does:
`train.precision`, `train.jit_compile`, AdamW with warm-up and cosine decay, the dice_ce loss with
ignore_class=255 and the confusion-matrix metrics; only the architecture options and the batch come from the
issue. Inference is `predict_on_batch`, as `app.inference.predictor` does. The peer is the identical architecture in
PyTorch eager (AdamW, 0.5 cross-entropy + 0.5 soft Dice, a confusion matrix per step; `inference_mode` for
inference), in the default NCHW layout (`torch`) and in channels_last (`torch_cl`); it is skipped with a message
when torch is absent. Parameter counts and FLOPs of both are compared before timing.

Every arm runs in its own worker process (the Keras backend and the oneDNN and thread settings are fixed per
process), set up and warmed up first (tracing, compilation, oneDNN kernel creation: excluded). Then the arms are
timed in turn, A B A B ..., `--pairs` rounds: each block runs whole steps for at least `--block-seconds`;
images/s = images / seconds of the block. A ratio is taken within each round (so a neighbour's load on this
shared machine hits both sides of it) and the median and range over rounds are printed. Results go to
benchmarks/results/speed.json (speed-quick.json with --quick; `--out`); a lever run updates its entry in that file.
Every comparison and lever records its machine: CPU model, flags, the oneDNN ISA cap and the speed environment.
"""
import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"
GOAL = 1.2
"""Issue 10: our training and inference images/s at least 1.2x the PyTorch peer's."""

FULL = dict(size=256, batch=4, num_classes=12, depth=4, base_filters=32, block_seconds=6.0, min_steps=1, warmup=2,
            pairs=3)
QUICK = dict(size=64, batch=2, num_classes=12, depth=2, base_filters=4, block_seconds=0.3, min_steps=1, warmup=1,
             pairs=2)

ARMS = {
    "ours": ({"side": "keras"}, "our U-Net, project defaults (what `python -m app.train` compiles)"),
    "ours_fp32": ({"side": "keras", "precision": "float32"},
                  "our U-Net, project defaults with train.precision=float32 (what auto gives a CPU without bfloat16)"),
    "ours_bf16": ({"side": "keras", "precision": "mixed_bfloat16"},
                  "our U-Net, project defaults with train.precision=mixed_bfloat16"),
    "torch": ({"side": "torch"}, "PyTorch eager peer, float32, NCHW (the default layout)"),
    "torch_cl": ({"side": "torch", "channels_last": True}, "PyTorch eager peer, float32, channels_last"),
    "torch_bf16": ({"side": "torch", "channels_last": True, "precision": "mixed_bfloat16"},
                   "PyTorch eager peer, channels_last, torch.autocast(bfloat16) (reference, not in the default arms)"),
}
DEFAULT_ARMS = ("ours", "ours_bf16", "torch", "torch_cl")

LEVERS = {
    "fused_bn": ("Keras BatchNormalization (separate ops) -> FusedBatchNormalization (models/blocks.py, default)",
                 {"fused_bn": False}, {"fused_bn": True}),
    "fused_bn_bf16": ("as fused_bn, both sides under train.precision=mixed_bfloat16",
                      {"fused_bn": False, "precision": "mixed_bfloat16"},
                      {"fused_bn": True, "precision": "mixed_bfloat16"}),
    "xla": ("jit_compile=False (what 'auto' resolves to on a CPU-only TF) -> jit_compile=True (XLA)",
            {"jit_compile": False}, {"jit_compile": True}),
    "bf16": ("train.precision float32 -> mixed_bfloat16 (AVX512-BF16 / AMX through oneDNN)",
             {"precision": "float32"}, {"precision": "mixed_bfloat16"}),
    "onednn": ("TF_ENABLE_ONEDNN_OPTS=0 (Eigen kernels) -> 1 (oneDNN, TensorFlow's default on x86)",
               {"env": {"TF_ENABLE_ONEDNN_OPTS": "0"}}, {"env": {"TF_ENABLE_ONEDNN_OPTS": "1"}}),
    "threads": ("TF thread pools by default (0: TF picks) -> intra_op = cores, inter_op = 1 (tf.config.threading)",
                {}, {"intra": os.cpu_count(), "inter": 1}),
    "widths": ("base_filters - 2 (widths not multiples of 16 floats = one AVX-512 register) -> base_filters",
               {"width_delta": -2}, {}),
    "conv_grad": ("Conv2D weight gradients by TensorFlow's NHWC kernel -> as matmuls (app/training/conv_gradients.py; "
                  "`auto` turns it on where oneDNN has AVX2 but not AVX-512), both sides in float32 (it acts there)",
                  {"conv_grad": False, "precision": "float32"}, {"conv_grad": True, "precision": "float32"}),
    "jax": ("TensorFlow backend -> JAX backend (KERAS_BACKEND=jax, XLA: jit_compile 'auto' is True there)",
            {}, {"backend": "jax"}),
    "pipeline": ("tf.data batches, then the training steps, in series -> model.fit on the prefetched pipeline "
                 "(input overlapped with compute; data/nuclei with the default augmentation, 2 classes)",
                 {"input": "serial"}, {"input": "overlap"}),
}
WORKER_DEFAULTS = {"side": "keras", "backend": "tensorflow", "precision": None, "jit_compile": None,
                   "fused_bn": True, "intra": None, "inter": None, "width_delta": 0, "input": "memory",
                   "channels_last": False, "conv_grad": None, "env": {}, "model": None}


# ----------------------------------------------------------------------------------------------- worker side


def _synthetic_batch(size, batch, num_classes, channels_first=False):
    """Fixed images in [0, 1] and labels 0..C-1 with a 2-pixel void (255) border, as NumPy arrays."""
    import numpy as np

    rng = np.random.default_rng(0)
    images = rng.random((batch, size, size, 3), dtype=np.float32)
    labels = rng.integers(0, num_classes, (batch, size, size)).astype(np.int32)
    labels[:, :2], labels[:, -2:], labels[:, :, :2], labels[:, :, -2:] = 255, 255, 255, 255
    if channels_first:
        images = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return images, labels


def _keras_config(spec):
    from app.config.loading import load_config
    from app.train import DEFAULT_CONFIG

    model = spec["model"] or {"name": "unet", "depth": spec["depth"],
                              "base_filters": spec["base_filters"] + spec["width_delta"], "batch_norm": True,
                              "upsampling": "transpose"}
    train = {"batch_size": spec["batch"]}
    if spec["precision"] is not None:
        train["precision"] = spec["precision"]
    if spec["jit_compile"] is not None:
        train["jit_compile"] = spec["jit_compile"]
    overrides = [{"model": model}, {"train": train}]
    if spec["input"] != "memory":
        overrides.append({"data": {"image_size": [spec["size"], spec["size"]]}})
    return load_config(DEFAULT_CONFIG, overrides)


class KerasArm:
    """Our U-Net, built and compiled as `app.training.loop` does."""

    def __init__(self, spec):
        import types

        if spec["backend"] == "tensorflow":
            import tensorflow as tf

            if spec["intra"] is not None:
                tf.config.threading.set_intra_op_parallelism_threads(spec["intra"])
            if spec["inter"] is not None:
                tf.config.threading.set_inter_op_parallelism_threads(spec["inter"])
        import keras
        import numpy as np
        import pandas as pd

        import models.blocks
        from app.training import loop as trainer
        from models.flops import count_flops
        from models.registry import get_model

        if not spec["fused_bn"]:
            models.blocks.FusedBatchNormalization = keras.layers.BatchNormalization
        keras.utils.set_random_seed(0)
        self.spec, self.config = spec, _keras_config(spec)
        self.batch = spec["batch"]
        if spec["input"] == "memory":
            num_classes = spec["num_classes"]
            prepared = types.SimpleNamespace(frame=pd.DataFrame({"split": ["train"] * 48}),
                                             class_names=[f"class_{c}" for c in range(num_classes)],
                                             encoding=types.SimpleNamespace(num_classes=num_classes))
            self.images, self.labels = _synthetic_batch(spec["size"], self.batch, num_classes)
        else:
            prepared = trainer.prepare_data(self.config)
            num_classes = prepared.encoding.num_classes
            self.dataset = prepared.train.repeat()
            self.images, self.labels = (np.asarray(t) for t in next(iter(prepared.train)))
        self.model = trainer.compile_model(trainer.build_model(self.config, num_classes), self.config, prepared)
        conv_grad = None
        if spec["backend"] == "tensorflow":
            from app.training.conv_gradients import conv_weight_gradients

            conv_weight_gradients(spec["conv_grad"])
            conv_grad = conv_weight_gradients()
        options = self.config.model.builder_options()
        fixed = get_model(self.config.model.name, (spec["size"], spec["size"], 3), num_classes, **options)
        trainable = sum(int(np.prod(w.shape)) for w in self.model.trainable_weights)
        self.info = {"params": int(self.model.count_params()), "trainable_params": trainable,
                     "gflops_per_image": count_flops(fixed) / 1e9, "backend": keras.backend.backend(),
                     "train_settings": {k: getattr(self.config.train, k) for k in
                                        ("precision", "jit_compile", "optimizer", "learning_rate", "weight_decay",
                                         "schedule", "steps_per_execution")},
                     "jit_compile_resolved": self.model.jit_compile, "loss": self.config.loss.name,
                     "num_classes": num_classes, "model": {"name": self.config.model.name, **options},
                     "conv_weight_gradients": conv_grad}
        del fixed

    def train(self, steps):
        if self.spec["input"] == "overlap":
            self.model.fit(self.dataset, steps_per_epoch=steps, epochs=1, verbose=0)
            return
        if self.spec["input"] == "serial":
            for images, labels in list(self.dataset.take(steps)):
                self.model.train_on_batch(images, labels)
            return
        for _ in range(steps):
            self.model.train_on_batch(self.images, self.labels)

    def infer(self, steps):
        for _ in range(steps):
            self.model.predict_on_batch(self.images)


def torch_unet(depth, base_filters, num_classes, channels=3):
    """The U-Net of `models.unet.build_unet` (batch norm, transposed-conv upsampling) as a torch.nn.Module."""
    import torch
    from torch import nn

    def conv_bn_relu(cin, cout):
        # Keras BatchNormalization(momentum=0.9, epsilon=1e-3) == torch momentum 0.1, eps 1e-3.
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout, eps=1e-3, momentum=0.1),
                nn.ReLU(inplace=True)]

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, cin = nn.ModuleList(), channels
            for level in range(depth):
                filters = base_filters * 2**level
                self.encoder.append(nn.Sequential(*conv_bn_relu(cin, filters), *conv_bn_relu(filters, filters)))
                cin = filters
            filters = base_filters * 2**depth
            self.bottleneck = nn.Sequential(*conv_bn_relu(cin, filters), *conv_bn_relu(filters, filters))
            self.up, self.decoder, cin = nn.ModuleList(), nn.ModuleList(), filters
            for level in reversed(range(depth)):
                filters = base_filters * 2**level
                self.up.append(nn.ConvTranspose2d(cin, filters, 2, stride=2))
                self.decoder.append(nn.Sequential(*conv_bn_relu(2 * filters, filters),
                                                  *conv_bn_relu(filters, filters)))
                cin = filters
            self.logits = nn.Conv2d(cin, num_classes, 1)

        def forward(self, x):
            skips = []
            for block in self.encoder:
                x = block(x)
                skips.append(x)
                x = torch.nn.functional.max_pool2d(x, 2)
            x = self.bottleneck(x)
            for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
                x = block(torch.cat([skip, up(x)], dim=1))
            return self.logits(x)

    return UNet()


def torch_macs(model, size, channels=3):
    """Multiply-accumulates per image of the conv and transposed-conv calls, counted as `models.flops` does."""
    import torch

    total = []

    def hook(module, inputs, output):
        window = math.prod(module.kernel_size) * module.in_channels // module.groups
        if isinstance(module, torch.nn.ConvTranspose2d):
            total.append(inputs[0][0].numel() * window * module.out_channels // module.in_channels)
        else:
            total.append(output[0].numel() * window)

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, channels, size, size))
    for handle in handles:
        handle.remove()
    model.train()
    return sum(total)


class TorchArm:
    """The peer: the same U-Net in PyTorch eager, trained with AdamW on 0.5 CE + 0.5 soft Dice."""

    def __init__(self, spec):
        import torch

        torch.manual_seed(0)
        self.torch, self.batch, self.num_classes = torch, spec["batch"], spec["num_classes"]
        self.model = torch_unet(spec["depth"], spec["base_filters"] + spec["width_delta"], spec["num_classes"])
        macs = torch_macs(self.model, spec["size"])
        images, labels = _synthetic_batch(spec["size"], self.batch, spec["num_classes"], channels_first=True)
        self.images, self.labels = torch.from_numpy(images), torch.from_numpy(labels).long()
        if spec["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.images = self.images.contiguous(memory_format=torch.channels_last)
        self.autocast = spec["precision"] == "mixed_bfloat16"
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=3e-3, weight_decay=1e-4)
        self.confusion = torch.zeros(self.num_classes**2, dtype=torch.long)
        trainable = sum(p.numel() for p in self.model.parameters())
        buffers = sum(b.numel() for name, b in self.model.named_buffers() if "running" in name)
        self.info = {"params": trainable + buffers, "trainable_params": trainable,
                     "gflops_per_image": 2 * macs / 1e9, "backend": f"torch {torch.__version__}",
                     "threads": torch.get_num_threads(), "channels_last": spec["channels_last"],
                     "autocast_bfloat16": spec["precision"] == "mixed_bfloat16"}

    def _loss(self, logits, labels):
        functional = self.torch.nn.functional
        valid = labels != 255
        ce = functional.cross_entropy(logits, labels, ignore_index=255)
        probs = logits.softmax(1)
        weight = valid[:, None].float()
        onehot = functional.one_hot(self.torch.where(valid, labels, 0), self.num_classes).permute(0, 3, 1, 2) * weight
        tp, pred, true = ((probs * onehot).sum((0, 2, 3)), (probs * weight).sum((0, 2, 3)), onehot.sum((0, 2, 3)))
        present = (true > 0).float()
        dice = (2 * tp + 1) / (pred + true + 1)
        return 0.5 * ce + 0.5 * ((1 - dice) * present).sum() / present.sum().clamp_min(1)

    def train(self, steps):
        for _ in range(steps):
            self.optimizer.zero_grad(set_to_none=True)
            with self.torch.autocast("cpu", dtype=self.torch.bfloat16, enabled=self.autocast):
                logits = self.model(self.images)
            loss = self._loss(logits.float(), self.labels)
            loss.backward()
            self.optimizer.step()
            with self.torch.no_grad():
                valid = self.labels != 255
                index = self.labels[valid] * self.num_classes + logits.argmax(1)[valid]
                self.confusion += self.torch.bincount(index, minlength=self.num_classes**2)
            float(loss)

    def infer(self, steps):
        self.model.eval()
        with self.torch.inference_mode(), self.torch.autocast("cpu", dtype=self.torch.bfloat16,
                                                                enabled=self.autocast):
            for _ in range(steps):
                self.model(self.images)
        self.model.train()


def worker(spec):
    """Set up one arm, warm it up, then answer 'train' / 'infer' / 'quit' lines on stdin with '@@ {json}' lines."""
    def say(message):
        sys.stdout.write("@@ " + json.dumps(message) + "\n")
        sys.stdout.flush()

    start = time.perf_counter()
    arm = TorchArm(spec) if spec["side"] == "torch" else KerasArm(spec)
    steps = {}
    for mode in ("train", "infer"):
        for _ in range(spec["warmup"]):
            began = time.perf_counter()
            getattr(arm, mode)(1)
            seconds = time.perf_counter() - began
        steps[mode] = max(spec["min_steps"], math.ceil(spec["block_seconds"] / seconds))
    say({"ready": True, "setup_seconds": time.perf_counter() - start, "steps_per_block": steps, **arm.info})
    for line in sys.stdin:
        mode = line.strip()
        if mode == "quit":
            break
        began = time.perf_counter()
        getattr(arm, mode)(steps[mode])
        seconds = time.perf_counter() - began
        say({"mode": mode, "steps": steps[mode], "images": steps[mode] * arm.batch, "seconds": seconds})


# ----------------------------------------------------------------------------------------- orchestrator side


class WorkerError(RuntimeError):
    """A worker process failed; the message holds the tail of its log."""


class Worker:
    """One arm in its own process, driven line by line."""

    def __init__(self, name, spec, log_dir):
        self.name, self.spec = name, spec
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": spec["backend"], **spec["env"]}
        self.log = pathlib.Path(log_dir) / f"{name}.log"
        self.process = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], cwd=REPO, env=env,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log.open("w"),
                                        text=True)

    def receive(self):
        for line in self.process.stdout:
            if line.startswith("@@ "):
                return json.loads(line[3:])
        self.process.wait()
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])
        raise WorkerError(f"{self.name} worker exited with code {self.process.returncode}:\n{tail}")

    def measure(self, mode):
        self.process.stdin.write(mode + "\n")
        self.process.stdin.flush()
        return self.receive()

    def close(self):
        if self.process.poll() is None:
            try:
                self.process.stdin.write("quit\n")
                self.process.stdin.flush()
                self.process.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()


def torch_available():
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def summary(values):
    """Median, min, max and every value, for a list of numbers."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def run_arms(specs, sizes, modes, log=print):
    """Set up every arm, then time them in turn (A B A B ...) for `sizes['pairs']` rounds."""
    rates = {name: {mode: [] for mode in modes} for name in specs}
    info, workers = {}, {}
    with tempfile.TemporaryDirectory(prefix="speed-") as log_dir:
        try:
            for name, spec in specs.items():
                workers[name] = Worker(name, {**WORKER_DEFAULTS, **sizes, **spec}, log_dir)
            for name, worker_ in workers.items():
                info[name] = worker_.receive()
                log(f"  {name}: ready in {info[name]['setup_seconds']:.0f} s, {info[name]['params']:,} parameters, "
                    f"{info[name]['gflops_per_image']:.2f} GFLOPs/image, "
                    f"steps per block {info[name]['steps_per_block']}")
            for round_ in range(sizes["pairs"]):
                for mode in modes:
                    for name, worker_ in workers.items():
                        result = worker_.measure(mode)
                        rates[name][mode].append(result["images"] / result["seconds"])
                log(f"  round {round_ + 1}/{sizes['pairs']}: " + "; ".join(
                    f"{name} " + " ".join(f"{mode} {rates[name][mode][-1]:.2f}" for mode in modes) for name in specs)
                    + f" images/s (load {os.getloadavg()[0]:.1f})")
        finally:
            for worker_ in workers.values():
                worker_.close()
    return info, {name: {mode: summary(values) for mode, values in by_mode.items()} for name, by_mode in rates.items()}


def ratios(rates, numerator, denominator):
    """Per-round ratio numerator / denominator for each mode (median and range), and the ratio of best blocks.

    The best block of each arm is the one least slowed by other processes (as `timeit` takes the minimum):
    on a shared machine it is the better estimate of each side's own speed.
    """
    out = {}
    for mode in rates[numerator]:
        per_round = [a / b for a, b in zip(rates[numerator][mode]["runs"], rates[denominator][mode]["runs"])]
        best = rates[numerator][mode]["max"] / rates[denominator][mode]["max"]
        out[mode] = {**summary(per_round), "best_blocks": best}
    return out


CPU_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
"""CPU flags that decide which kernels oneDNN and XNNPACK run (recorded with every result)."""
SPEED_ENV = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "TF_ENABLE_ONEDNN_OPTS",
             "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "KERAS_BACKEND")
"""Environment variables that change kernels or threads (recorded with every result when set)."""


def installed_version(*names):
    """Version of the first installed distribution of `names` (e.g. tensorflow, tensorflow-cpu), or None."""
    from importlib.metadata import PackageNotFoundError, version

    for name in names:
        try:
            return version(name)
        except PackageNotFoundError:
            pass
    return None


def machine():
    """CPU model, its flags (all, and those the oneDNN ISA cap leaves), the speed environment and versions."""
    from app.runtime.devices import cpu_flags, cpu_model, isa_cap, resolve_precision

    flags, usable = cpu_flags(cap="ALL"), cpu_flags()
    info = {"cores": os.cpu_count(), "python": platform.python_version(), "load_average_at_start": os.getloadavg()[0],
            "cpu": cpu_model(), "cpu_features": [f for f in CPU_FEATURES if f in flags],
            "isa_cap": isa_cap(), "cpu_features_usable": [f for f in CPU_FEATURES if f in usable],
            "precision_auto": resolve_precision("auto", ["cpu:0"], usable),
            "env": {name: os.environ[name] for name in SPEED_ENV if name in os.environ}}
    for package, names in {"tensorflow": ("tensorflow", "tensorflow-cpu"), "keras": ("keras",), "jax": ("jax",),
                           "torch": ("torch",)}.items():
        info[package] = installed_version(*names)
    return info


def _format_rate(s):
    return f"{s['median']:.2f} [{s['min']:.2f}-{s['max']:.2f}]"


def compare(args, sizes, log=print):
    names = [n.strip() for n in args.arms.split(",") if n.strip()]
    unknown = sorted(set(names) - set(ARMS))
    if unknown:
        raise SystemExit(f"unknown arm(s) {unknown}; valid arms: {', '.join(ARMS)}")
    skipped = {}
    if not torch_available():
        for name in names:
            if ARMS[name][0]["side"] == "torch":
                skipped[name] = ("torch is not installed: the PyTorch peer is skipped "
                                 "(.venv/bin/pip install torch==2.13.0)")
        if skipped:
            log(f"torch is not installed: skipping the PyTorch peer ({', '.join(skipped)})")
    specs = {name: ARMS[name][0] for name in names if name not in skipped}
    log(f"compare: {', '.join(specs)}; {sizes['pairs']} rounds of {sizes['block_seconds']} s blocks")
    info, rates = run_arms(specs, sizes, ("train", "infer"), log)
    ours = [n for n in specs if specs[n]["side"] == "keras"]
    peers = [n for n in specs if specs[n]["side"] == "torch"]
    result = {"arms": {n: {"description": ARMS[n][1], **info[n], "train_images_per_s": rates[n]["train"],
                           "infer_images_per_s": rates[n]["infer"]} for n in specs},
              "skipped": skipped, "goal": GOAL, "ratios": {}}
    for our in ours:
        for peer in peers:
            pair = ratios(rates, our, peer)
            pair["goal_met"] = {mode: pair[mode]["median"] >= GOAL for mode in ("train", "infer")}
            result["ratios"][f"{our}/{peer}"] = pair
    if ours and peers:
        a, b = info[ours[0]], info[peers[0]]
        result["models_match"] = {"trainable_params": [a["trainable_params"], b["trainable_params"]],
                                  "params_with_bn_statistics": [a["params"], b["params"]],
                                  "gflops_per_image": [a["gflops_per_image"], b["gflops_per_image"]],
                                  "same": a["params"] == b["params"] and abs(a["gflops_per_image"]
                                                                             - b["gflops_per_image"]) < 1e-6}
        log(f"models: ours {a['params']:,} parameters (trainable {a['trainable_params']:,}), "
            f"{a['gflops_per_image']:.3f} GFLOPs/image; peer {b['params']:,} (trainable {b['trainable_params']:,}), "
            f"{b['gflops_per_image']:.3f} GFLOPs/image: {'same' if result['models_match']['same'] else 'DIFFERENT'}")
    log("\n| arm | train images/s | inference images/s |\n| --- | --- | --- |")
    for n in specs:
        log(f"| {n} | {_format_rate(rates[n]['train'])} | {_format_rate(rates[n]['infer'])} |")
    if result["ratios"]:
        log(f"\n| ratio | train: median (per round) | train: best blocks | inference: median (per round) | "
            f"inference: best blocks | goal >= {GOAL} (medians) |\n| --- | --- | --- | --- | --- | --- |")
        for key, pair in result["ratios"].items():
            per = {m: ", ".join(f"{v:.2f}" for v in pair[m]["runs"]) for m in ("train", "infer")}
            log(f"| {key} | {pair['train']['median']:.2f} ({per['train']}) | {pair['train']['best_blocks']:.2f} | "
                f"{pair['infer']['median']:.2f} ({per['infer']}) | {pair['infer']['best_blocks']:.2f} | "
                f"train {'met' if pair['goal_met']['train'] else 'missed'}, inference "
                f"{'met' if pair['goal_met']['infer'] else 'missed'} |")
    return result


def lever(name, sizes, log=print):
    description, base, on = LEVERS[name]
    modes = ("train",) if name == "pipeline" else ("train", "infer")
    log(f"lever {name}: {description}")
    specs = {"without": {"side": "keras", **base}, "with": {"side": "keras", **on}}
    if name == "pipeline":  # overlap needs several steps per block: at least half an epoch of data/nuclei
        sizes = {**sizes, "min_steps": max(sizes["min_steps"], 24 // sizes["batch"])}
    try:
        info, rates = run_arms(specs, sizes, modes, log)
    except WorkerError as err:
        log(f"  failed: {err}")
        return {"description": description, "error": str(err)}
    pair = ratios(rates, "with", "without")
    for mode in modes:
        log(f"  {mode}: without {_format_rate(rates['without'][mode])}, with {_format_rate(rates['with'][mode])} "
            f"images/s, ratio {pair[mode]['median']:.2f} (" + ", ".join(f"{v:.2f}" for v in pair[mode]["runs"])
            + f"; best blocks {pair[mode]['best_blocks']:.2f})")
    out = {"description": description, "ratio": pair}
    for arm in specs:
        out[arm] = {"settings": {**base, **on} if arm == "with" else base, **info[arm],
                    **{f"{mode}_images_per_s": rates[arm][mode] for mode in modes}}
    if name == "widths":
        flops = {arm: info[arm]["gflops_per_image"] for arm in specs}
        out["gflops_per_s_ratio"] = {mode: pair[mode]["median"] * flops["with"] / flops["without"] for mode in modes}
        log("  per FLOP (GFLOP/s ratio): " + ", ".join(f"{m} {v:.2f}" for m, v in out["gflops_per_s_ratio"].items()))
    return out


def parse_model(text):
    """`name[,key=value...]` -> the model section of a config, each option read as `--set model.key=value` is."""
    from app.config.errors import ConfigError
    from app.config.loading import parse_override

    name, *options = text.split(",")
    model = {"name": name}
    try:
        if not name or "=" in name:
            raise ConfigError("the architecture's name comes first")
        for option in options:
            model.update(parse_override(option))
    except ConfigError as err:
        raise argparse.ArgumentTypeError(f"{text!r} is not name[,key=value...]: {err}") from None
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny model at 64x64 and short blocks (a smoke test)")
    parser.add_argument("--lever", help=f"measure one lever, or 'all': {', '.join(LEVERS)}")
    parser.add_argument("--arms", default=",".join(DEFAULT_ARMS), help=f"arms to compare: {', '.join(ARMS)}")
    parser.add_argument("--model", type=parse_model, help="with --lever: the architecture instead of the "
                        "benchmark U-Net, as name[,key=value...] of the config's model section")
    parser.add_argument("--pairs", type=int, help="timed rounds (A B A B ...), at least 3 for real numbers")
    parser.add_argument("--block-seconds", type=float, help="minimum seconds of one timed block")
    parser.add_argument("--out", help="JSON file (default benchmarks/results/speed.json, speed-quick.json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return 0
    if args.model and not args.lever:
        parser.error("--model needs --lever: the PyTorch peer exists for the benchmark U-Net only")
    sizes = dict(QUICK if args.quick else FULL, model=args.model)
    if args.pairs:
        sizes["pairs"] = args.pairs
    if args.block_seconds:
        sizes["block_seconds"] = args.block_seconds
    out = pathlib.Path(args.out) if args.out else RESULTS / ("speed-quick.json" if args.quick else "speed.json")
    data = json.loads(out.read_text()) if out.is_file() else {}
    data["machine"], data["sizes"] = machine(), sizes
    if not args.model:
        data["model"] = {"name": "unet", "input": [sizes["size"], sizes["size"], 3], "batch": sizes["batch"],
                         "num_classes": sizes["num_classes"], "depth": sizes["depth"],
                         "base_filters": sizes["base_filters"], "batch_norm": True, "upsampling": "transpose"}
    if args.lever:
        names = list(LEVERS) if args.lever == "all" else [n.strip() for n in args.lever.split(",")]
        unknown = sorted(set(names) - set(LEVERS))
        if unknown:
            parser.error(f"unknown lever(s) {unknown}; valid levers: {', '.join(LEVERS)}, all")
        if args.model and "widths" in names:
            parser.error("the widths lever changes the benchmark U-Net's base_filters; it takes no --model")
        data.setdefault("levers", {})
        for name in names:
            key = name if not args.model else f"{name}@" + ",".join(f"{k}={v}" for k, v in args.model.items())
            data["levers"][key] = {**lever(name, sizes), "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
                                   "machine": data["machine"]}
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(data, indent=2))
    else:
        data["compare"] = {**compare(args, sizes), "measured": time.strftime("%Y-%m-%d %H:%M:%S"),
                           "machine": data["machine"]}
    data["machine"]["load_average_at_end"] = os.getloadavg()[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2))
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
