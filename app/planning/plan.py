"""Training plan from a dataset fingerprint: documented rules, each giving its value and a one-line reason.

Three stages, kept apart as in nnU-Net: `fingerprint_of` (one scan of the data, `data.fingerprint`), `make_plan`
(rules below; pure functions of the fingerprint and the machine's `Resources`) and the plan written as an
editable config (`Plan.overrides`, `app.plan`). docs/planning.md states the rules and their reasons.
Explicit settings always win: `planned_config` applies the plan under the config file and the flags.
"""
import dataclasses
import json
import math
import os

from app.config.durations import format_duration, parse_duration
from app.config.loading import load_config, merged_config, read_yaml
from app.dataset.scanning import scan_dataset
from app.planning.rules import (DEPTHS, Decision, channel_counts, crop_budget, gravity_aligned, plan_augment,
                                plan_batch, plan_crop, plan_depth, plan_epochs, plan_loss, plan_resize, plan_width,
                                show_value)
from app.runtime.devices import gpu_details, gpu_memory_bytes, resolve_precision
from data.discovery import DatasetError
from data.fingerprint import build_fingerprint


@dataclasses.dataclass
class Resources:
    """The machine a plan is for: GPU descriptions (`precision.gpu_details`), bytes a batch may use, time budget."""

    gpus: list
    memory_bytes: int
    budget_s: float | None = None
    cpu_cores: int = 2

    @classmethod
    def detect(cls, budget_s=None):
        """This machine: a quarter of the free RAM on CPU, half the smallest GPU's memory (8 GB when unknown)."""
        gpus = gpu_details()
        if gpus:
            memory = (gpu_memory_bytes() or 16 * 1024**3) // 2
        else:
            memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") // 4
        return cls(gpus=gpus, memory_bytes=int(memory), budget_s=budget_s, cpu_cores=len(os.sched_getaffinity(0)))


@dataclasses.dataclass
class Plan:
    decisions: list

    def __getitem__(self, name):
        return next(d.value for d in self.decisions if d.name == name)

    def overrides(self):
        """The plan as a nested config dict (only the decisions that set a key)."""
        nested = {}
        for decision in self.decisions:
            if decision.key is None:
                continue
            *sections, last = decision.key.split(".")
            target = nested
            for section in sections:
                target = target.setdefault(section, {})
            target[last] = decision.value
        return nested

    def table(self):
        """One line per decision: `name = value  (reason)`."""
        width = max(len(d.name) for d in self.decisions)
        return "\n".join(f"{d.name:<{width}} = {show_value(d.value)}\n{'':<{width}}   {d.reason}" for d in self.decisions)

    def set_elsewhere(self, config):
        """Keys the plan sets that `config` (after flags and config files) holds another value for."""
        def plain(value):
            return json.dumps(value, default=str)

        values = config.to_dict()
        return [d.key for d in self.decisions if d.key is not None and plain(_lookup(values, d.key)) != plain(d.value)]


def _lookup(config, key):
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


def describe(config):
    """A one-line digest of what a config trains (the summary line of app.train, benchmark tables)."""
    data, model, loss = config.data, config.model, config.loss
    resize = f"resize {'x'.join(map(str, data.resize))}, " if data.resize else ""
    options = model.builder_options()
    shape = [options["encoder"]] if options.get("encoder") else [
        f"{prefix}{options[key]}" for prefix, key in (("d", "depth"), ("f", "base_filters")) if key in options]
    architecture = " ".join([model.name, *shape])
    weights = f"+{loss.class_weights}" if loss.class_weights != "none" else ""
    flips = "".join(side for side, p in (("h", config.augment.hflip), ("v", config.augment.vflip)) if p) or "none"
    return (f"{resize}crop {'x'.join(map(str, data.image_size))}, {architecture}, "
            f"batch {config.train.batch_size}, {loss.name}{weights}, flips {flips}")


def make_plan(fp, resources):
    """The training plan of a fingerprint on a machine (see the module docstring and docs/planning.md)."""
    side, side_reason = crop_budget(resources)
    resize, scale, resize_reason = plan_resize(fp, side)
    working = resize or list(fp.median_size)
    square = not gravity_aligned(fp)[0]
    crop, _ = plan_crop(working, side, 2 ** DEPTHS[0], square)
    for _ in range(len(DEPTHS)):  # the depth sets the divisor the crop is rounded to: settle both
        depth, depth_reason = plan_depth(crop)
        rounded, crop_reason = plan_crop(working, side, 2**depth, square)
        if rounded == crop:
            break
        crop = rounded
    base, base_reason = plan_width(resources, crop, fp.train_images)
    batch, batch_reason = plan_batch(crop, base, fp.train_images, resources)
    loss, weights, loss_reason = plan_loss(fp)
    augment = plan_augment(fp, crop)
    decisions = [
        Decision("channels", fp.channels, f"the model takes {fp.channels} input channels (data.channels; image "
                                          f"files: {channel_counts(fp)})"),
        Decision("resize", resize, resize_reason, "data.resize"),
        Decision("crop", crop, f"{side_reason}; {crop_reason}", "data.image_size"),
        Decision("model", "unet", "U-Net: strong on every kind of 2D data at any size", "model.name"),
        Decision("depth", depth, depth_reason, "model.depth"),
        Decision("base_filters", base, base_reason, "model.base_filters"),
        Decision("batch_size", batch, batch_reason, "train.batch_size"),
        Decision("loss", loss, loss_reason, "loss.name"),
        Decision("class_weights", weights, "see loss", "loss.class_weights"),
        *augment,
    ]
    flips = ["left-right"] + (["up-down"] if Plan(augment)["vflip"] else [])
    decisions.append(Decision("tta", " + ".join(flips), "test-time augmentation (--tta) averages the flips "
                                                        "training used"))
    if resources.budget_s:
        decisions.append(Decision("time_budget", format_duration(resources.budget_s),
                                  "epochs are set at the start of training from a timed warm-up so that the "
                                  "cosine schedule ends within the budget", "train.time_budget"))
    else:
        epochs, epochs_reason = plan_epochs(fp.train_images, batch)
        decisions.append(Decision("epochs", epochs, epochs_reason, "train.epochs"))
    devices = ["gpu:0"] if resources.gpus else ["cpu:0"]
    decisions += [
        Decision("early_stopping_patience", None, "no early stopping: the cosine schedule runs to its floor",
                 "train.early_stopping_patience"),
        Decision("precision", "auto", f"auto resolves to {resolve_precision('auto', devices, gpus=resources.gpus)} "
                                      "on this machine", "train.precision"),
        Decision("validation", "data layer", "a val/ split when the dataset has one, else data.val_fraction of train/"),
    ]
    return Plan(decisions)


def fingerprint_of(config, runs_dir=None):
    """(Fingerprint, ScannedDataset): the configured dataset read once, as training reads it (layout facts,
    mask encoding, class names: `app.dataset.scanning.scan_dataset`), with statistics; training can reuse the scan.

    Raises:
        DatasetError: every problem the scan found, one line per file.
    """
    scanned = scan_dataset(config, runs_dir, statistics=True)
    result = scanned.result
    if result.problems:
        raise DatasetError(result.problems)
    fingerprint = build_fingerprint(result.files, result.image_stats, result.class_table("train"), scanned.names,
                                    scanned.channels, scanned.encoding.kind)
    return fingerprint, scanned


def _stale_model_options(planned_model, updates, config):
    """Options the plan chose for its U-Net that the architecture the user chose instead (an encoder) does not take;
    options the user set stay, to be checked as usual."""
    from models.registry import accepted_options

    try:
        accepted = accepted_options(config.model.name, **config.model.builder_options())
    except KeyError:  # an unknown model or encoder: the usual checks name it
        return []
    chosen = {key for update in updates for key in (update.get("model") or {})}
    return sorted(key for key in planned_model if key not in accepted | chosen | {"name"})


def planned_config(path=None, overrides=(), resources=None, log=print, runs_dir=None):
    """(config, plan, fingerprint, scan): defaults, then the dataset's plan, then the config file, then
    `overrides`; the scan (`fingerprint_of`) can be passed on to `train` so the files are read once.

    The dataset and how to read it come from the file and the overrides; every key they set wins over the plan.
    """
    user = load_config(path, overrides)
    if resources is None:
        resources = Resources.detect(parse_duration(user.train.time_budget))
    fingerprint, scanned = fingerprint_of(user, runs_dir)
    plan = make_plan(fingerprint, resources)
    updates = [read_yaml(path) if path is not None else {}, *overrides]
    planned = plan.overrides()
    config = merged_config([planned, *updates], absolute=False)  # plan.yaml keeps the paths as typed
    if stale := _stale_model_options(planned["model"], updates, config):
        encoder = config.model.builder_options().get("encoder")
        chosen = f"{config.model.name} with encoder {encoder}" if encoder else config.model.name
        log(f"plan: {', '.join(f'model.{key}' for key in stale)} left out: {chosen} takes no such option")
        planned["model"] = {key: value for key, value in planned["model"].items() if key not in stale}
        config = merged_config([planned, *updates], absolute=False)
    if config.model.name != "unet" and not any("image_size" in u.get("data", {}) for u in updates):
        from models.registry import required_divisor

        divisor = required_divisor(config.model.name, **config.model.builder_options())
        config.data.image_size = [divisor * math.ceil(side / divisor) for side in plan["crop"]]
        log(f"plan: crop {config.data.image_size} for {config.model.name} (sides multiples of {divisor})")
    return config, plan, fingerprint, scanned
