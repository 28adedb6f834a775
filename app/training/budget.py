"""Wall-clock time budgets (`train.time_budget`, `--time-budget 30m`): epochs fitted from a timed warm-up.

Before training, a warm-up fits the model for two short epochs of WARMUP_STEPS steps on the real pipeline and
evaluates the first VAL_WARMUP_BATCHES validation batches twice. The second epoch gives the time per training
step; the second evaluation, scaled by the padded pixels of the whole validation split to those of the batches
timed, the time per validation pass; the first of each pair's excess is the one-off cost (graph tracing, XLA
compilation). On TensorFlow the warmed-up model is then reset (weights, optimizer state) and trained, so that
cost is paid once: its cosine schedule reads its length from a variable set after the warm-up. On other backends
the warm-up model is thrown away and the real first epoch pays the one-off cost again.

`train.epochs` and `train.steps_per_epoch` are set so that the whole run (all epochs with their validation and
checkpoints, the one-off cost and the final evaluation) trains the most steps within SAFETY of the budget left
(`Estimate.fit_within`): whole passes over the data, or, where the remainder after the last whole pass would be
lost or one pass does not fit at all, epochs of fewer steps that go on where the previous one stopped (Keras's
`steps_per_epoch`); the cosine schedule reaches its floor at the last epoch instead of being cut off.

The run folder's budget.json keeps the budget, the estimate, the epochs and the elapsed time; a resumed run keeps
its epochs and reports the budget left. At each epoch end a guard compares the epochs measured so far with the
estimate: where the remaining epochs no longer fit (a machine slower than at the warm-up, a data pipeline that
the short warm-up hid), it shortens the run and, on TensorFlow, the cosine schedule with it, so the learning rate
still reaches its floor at the new last epoch; on other backends it stops when the next epoch would overrun.
"""
import dataclasses
import json
import math
import tempfile
import time

import keras

from app.config.durations import format_duration, parse_duration
from app.config.errors import ConfigError
from app.config.loading import load_run_config
from app.runtime.outputs import atomic_path
from app.training.distribute import distribute_dataset
from app.training.model import build_model, compile_model, compute_class_weights
from app.training.optimizer import pass_steps, schedule_steps

WARMUP_STEPS = 3
VAL_WARMUP_BATCHES = 3
"""Validation batches the warm-up times (a full pass of large images would cost minutes of the budget)."""
SAFETY = 0.93
"""Fraction of the remaining budget that the estimate may fill (the rest absorbs timing noise)."""
MAX_WARMUP_SHARE = 0.1
"""Learning-rate warm-up takes at most this share of the epochs a budget allows."""
MAX_SAVE_SHARE = 0.1
"""Epochs train long enough that their checkpoint and backup take at most this share of them: on a small
dataset an epoch is several passes (the training stream repeats), not a save after every step or two."""
VAL_SHARE = 0.15
"""Share of the budget that validation during training may take; the final evaluation is counted apart."""
MIN_VAL_IMAGES = 8
"""Fewest validation images an epoch's validation uses; below that, fewer epochs are validated."""
FINAL_OVERHEAD_S = 3.0
"""Seconds for loading the best model and plotting the curves after the last epoch."""


@dataclasses.dataclass
class Estimate:
    """Seconds per training step, per validation pass, per epoch-end checkpoint and backup, to start an epoch's
    training pipeline (shuffle buffer, first batch), the one-off first-epoch cost, and after the last epoch."""

    step_s: float
    val_s: float
    save_s: float
    start_s: float
    first_epoch_extra_s: float
    final_s: float
    steps_per_epoch: int

    @property
    def epoch_s(self):
        return self.steps_per_epoch * self.step_s + self.val_s + self.save_s + self.start_s

    def fit_within(self, seconds):
        """(epochs, steps per epoch) that train the most steps in a run of `seconds`: whole passes over the data,
        or one epoch more of fewer steps where that trains more (the time a last whole pass does not fit pays for
        the extra validation), or a single shorter epoch where one pass does not fit; at least one step."""
        overhead = self.val_s + self.save_s + self.start_s
        available = seconds - self.first_epoch_extra_s - self.final_s
        whole = math.floor(available / self.epoch_s)
        best = (1, 1)
        for epochs in sorted({max(whole, 1), max(whole + 1, 1)}):
            steps = min(self.steps_per_epoch, math.floor((available / epochs - overhead) / self.step_s))
            if epochs * steps > best[0] * best[1]:
                best = (epochs, steps)
        return best

    def run_s(self, epochs):
        return self.first_epoch_extra_s + epochs * self.epoch_s + self.final_s


@dataclasses.dataclass
class Validation:
    """Validation during a budgeted run: a fixed sample of `images` validation images (None: all of them),
    on epoch 1, the last epoch, and every `every` epochs counted back from the last."""

    images: int | None = None
    every: int = 1

    def epochs(self, total):
        """The 1-based epochs validated in a run of `total` epochs (Keras `fit(validation_freq=...)`); epoch 1
        names the history's validation columns, the last one scores the final model."""
        return sorted({1, *range(total, 0, -self.every)})


def fit_validation(estimate, seconds, val_images, share=VAL_SHARE):
    """(epochs, steps per epoch, Validation) that train the most steps in `seconds` while validation takes at
    most `share` of them: all validation images every epoch where that fits, else a smaller fixed sample
    (MIN_VAL_IMAGES at least), else that sample on fewer epochs."""
    if not val_images or not estimate.val_s:
        return (*estimate.fit_within(seconds), Validation())
    per_image, cap = estimate.val_s / val_images, share * max(seconds, 0.0)
    validation = Validation(val_images, 1)
    for _ in range(8):
        cost = per_image * validation.images
        epochs, steps = dataclasses.replace(estimate, val_s=cost / validation.every).fit_within(seconds)
        validations = len(validation.epochs(epochs))
        if cost * validations <= cap:
            break
        fewest = min(MIN_VAL_IMAGES, val_images)
        fits = math.floor(cap / validations / per_image)
        if fits >= fewest:
            validation = Validation(min(fits, validation.images - 1), validation.every)
        else:
            every = max(validation.every + 1, math.ceil(per_image * fewest * epochs / max(cap, 1e-9)))
            validation = Validation(fewest, min(every, max(epochs, 1)))
    if validation.images == val_images:
        validation.images = None
    return epochs, steps, validation


def _adjustable_schedule(optimizer):
    """Give a CosineDecay learning rate variable warm-up and decay steps, so a train step traced now follows
    lengths set later; returns the two variables, or None (other schedules, non-TensorFlow backends). The
    schedule's saved config keeps plain numbers."""
    inner = getattr(optimizer, "inner_optimizer", optimizer)
    schedule = getattr(inner, "_learning_rate", None)
    if keras.backend.backend() != "tensorflow" or type(schedule) is not keras.optimizers.schedules.CosineDecay:
        return None
    plain = schedule.get_config
    lengths = {key: keras.Variable(float(getattr(schedule, key)), trainable=False, name=f"budget_{key}")
               for key in ("warmup_steps", "decay_steps")}
    for key, variable in lengths.items():
        setattr(schedule, key, variable)
    schedule.get_config = lambda: {**plain(), **{key: int(keras.ops.convert_to_numpy(variable))
                                                 for key, variable in lengths.items()}}
    return lengths


@dataclasses.dataclass
class Budget:
    """A run's time budget: its size, when this process started on it and the time earlier processes used."""

    seconds: float
    started: float
    elapsed_before: float = 0.0
    estimate: Estimate | None = None
    epochs: int = 0
    model: object = None
    """The warmed-up, reset model that training continues with (None: build a new one)."""
    length: dict | None = None
    """The schedule's warm-up and decay step variables (`_adjustable_schedule`); None where not adjustable."""
    train_rows: int = 0
    validation: Validation = dataclasses.field(default_factory=Validation)
    validated: list = dataclasses.field(default_factory=list)
    """The epochs that validate (`Validation.epochs`): the list `fit(validation_freq=...)` reads at each epoch
    end; the guard adds its new last epoch when it shortens the run."""
    max_epochs: int = 0
    """Epochs `fit` is given: the guard may lengthen the run up to them (`BudgetGuard`), where the schedule is
    adjustable; it stops training at `epochs`."""
    spent: dict = dataclasses.field(default_factory=dict)
    """Seconds per phase (warm-up, training, validation, saving, final evaluation), for the log and budget.json."""

    def set_epochs(self, epochs):
        self.epochs = epochs
        self.max_epochs = max(self.max_epochs, epochs)
        self.validated[:] = self.validation.epochs(epochs)

    def take_model(self):
        model, self.model = self.model, None
        return model

    def elapsed(self):
        return self.elapsed_before + time.monotonic() - self.started

    def save(self, run_dir):
        state = {"budget_s": self.seconds, "epochs": self.epochs, "elapsed_s": round(self.elapsed(), 2),
                 "estimate": None if self.estimate is None else dataclasses.asdict(self.estimate),
                 "validation": dataclasses.asdict(self.validation),
                 "spent_s": {phase: round(value, 1) for phase, value in self.spent.items()}}
        with atomic_path(run_dir / "budget.json") as temp:
            temp.write_text(json.dumps(state, indent=2))

    def set_schedule(self, train_config):
        """Fit the adjustable cosine schedule (if any) to `train_config`'s epochs."""
        if self.length is not None:
            for key, value in schedule_steps(train_config, self.train_rows).items():
                self.length[key].assign(float(value))

    def finish(self, run_dir, log=print):
        elapsed = self.elapsed()
        self.spent["other"] = max(elapsed - self.elapsed_before - sum(self.spent.values()), 0.0)
        self.save(run_dir)
        phases = ", ".join(f"{phase} {value:.0f} s ({value / elapsed:.0%})" for phase, value in self.spent.items())
        log(f"time budget: {elapsed:.0f} s of {self.seconds:.0f} s used ({elapsed / self.seconds:.0%}): {phases}")


class _EpochTimer(keras.callbacks.Callback):
    """Seconds of each epoch."""

    def __init__(self):
        super().__init__()
        self.seconds, self._mark = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._mark = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._mark)


def time_validation(model, prepared, setup, batches=VAL_WARMUP_BATCHES):
    """(one-off seconds, seconds per validation pass): evaluate the first `batches` validation batches twice,
    the first call traced, and scale the second by the split's padded pixels to theirs; (0, 0) without
    validation data."""

    if prepared.val is None:
        return 0.0, 0.0
    pixels = prepared.val_batch_pixels
    subset = prepared.val if pixels is None else prepared.val.take(batches)
    scale = 1.0 if pixels is None else sum(pixels) / sum(pixels[:batches])
    seconds = []
    for _ in range(2):
        mark = time.perf_counter()
        model.evaluate(distribute_dataset(subset, setup), verbose=0)
        seconds.append(time.perf_counter() - mark)
    return max(seconds[0] - seconds[1], 0.0), seconds[1] * scale


def time_warmup(config, prepared, setup, steps=WARMUP_STEPS):
    """Time two short epochs of the model on the real pipeline; returns (Estimate, model, length).

    The model comes back reset to its initial weights and optimizer state, with a schedule whose length is the
    variable `length` (TensorFlow); model and length are None where the model cannot be reused.
    """

    with setup.scope():
        model = compile_model(build_model(config, prepared.encoding.num_classes), config, prepared,
                              compute_class_weights(config, prepared.class_table))
        length = _adjustable_schedule(model.optimizer)
        model.optimizer.build(model.trainable_variables)
    weights = model.get_weights()
    optimizer_state = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
    train_rows = prepared.images("train")
    steps_per_epoch = pass_steps(train_rows, config.train.batch_size)
    timer = _EpochTimer()
    # the training stream itself (the same dataset object, so training reuses the traced step)
    warm = max(1, min(steps, steps_per_epoch // 2))
    model.fit(distribute_dataset(prepared.train, setup), epochs=2, steps_per_epoch=warm, callbacks=[timer],
              verbose=0, shuffle=False)
    val_extra, val_s = time_validation(model, prepared, setup)
    with tempfile.TemporaryDirectory(prefix="segkit-budget-") as scratch:  # what the epoch-end callbacks write
        mark = time.perf_counter()
        model.save(f"{scratch}/model.keras")
        model.save_weights(f"{scratch}/backup.weights.h5")
        saving = time.perf_counter() - mark
    mark = time.perf_counter()
    iterator = iter(prepared.train)  # each epoch starts a new iterator: shuffle buffer, first batch
    next(iterator)
    start = time.perf_counter() - mark
    del iterator
    step_s = timer.seconds[1] / warm
    # the training stream is one iterator for the whole run: its start (shuffle buffer, first batch) is paid once
    extra = max(timer.seconds[0] - timer.seconds[1], 0.0) + val_extra + start
    # the final evaluation predicts the validation split (training split when none) once, tracing again
    final = (val_s + val_extra if prepared.val is not None else steps_per_epoch * step_s / 2) + FINAL_OVERHEAD_S
    if length is None:
        return Estimate(step_s, val_s, saving, 0.0, extra, final, steps_per_epoch), None, None
    model.set_weights(weights)
    for variable, value in zip(model.optimizer.variables, optimizer_state):
        variable.assign(value)
    # the traced steps are reused (every batch is full: no new shape to trace)
    return Estimate(step_s, val_s, saving, 0.0, start, final, steps_per_epoch), model, length


def fit_to_budget(config, prepared, setup, resume_dir, started, log=print):
    """Set `config.train.epochs` from the time budget (or from the resumed run); returns the Budget."""
    seconds = parse_duration(config.train.time_budget)
    if setup.mode == "multiworker":
        raise ConfigError("train.time_budget works within one process: set train.epochs for multiworker training")
    if resume_dir is not None:
        saved = load_run_config(resume_dir / "config.yaml").train
        state_path = resume_dir / "budget.json"
        state = json.loads(state_path.read_text()) if state_path.exists() else {}
        config.train.warmup_epochs = saved.warmup_epochs
        config.train.steps_per_epoch = saved.steps_per_epoch
        config.train.epochs = state.get("epochs", saved.epochs)  # the guard may have shortened it
        budget = Budget(seconds, started, float(state.get("elapsed_s", 0.0)),
                        Estimate(**state["estimate"]) if state.get("estimate") else None,
                        validation=Validation(**state.get("validation", {})))
        budget.set_epochs(config.train.epochs)
        log(f"time budget {format_duration(seconds)}: resumed run used {budget.elapsed_before:.0f} s, "
            f"{max(seconds - budget.elapsed(), 0):.0f} s left; epochs stay {budget.epochs}")
        return budget
    warmup_start = time.monotonic()
    estimate, model, length = time_warmup(config, prepared, setup)  # no reseeding: TF would trace again
    train_rows = prepared.images("train")
    budget = Budget(seconds, started, estimate=estimate, model=model, length=length, train_rows=train_rows)
    budget.spent["warm-up"] = time.monotonic() - warmup_start
    left = SAFETY * seconds - budget.elapsed()
    val_images = 0 if prepared.val is None else prepared.images("val")
    whole = estimate.steps_per_epoch
    longest = max(whole, math.ceil(estimate.save_s / (MAX_SAVE_SHARE * max(estimate.step_s, 1e-6))))
    epochs, steps, budget.validation = fit_validation(dataclasses.replace(estimate, steps_per_epoch=longest), left,
                                                      val_images)
    config.train.steps_per_epoch = steps if steps != whole else None
    sample = (budget.validation.images or val_images) / max(val_images, 1)
    budget.estimate = dataclasses.replace(estimate, steps_per_epoch=steps,
                                          val_s=estimate.val_s * sample / budget.validation.every)
    budget.set_epochs(epochs)
    config.train.epochs = epochs
    if length is not None:
        budget.max_epochs = 2 * epochs + 1
    if config.train.warmup_epochs > MAX_WARMUP_SHARE * epochs:
        config.train.warmup_epochs = round(MAX_WARMUP_SHARE * epochs, 2)
        log(f"time budget: train.warmup_epochs {config.train.warmup_epochs} (a tenth of the epochs)")
    budget.set_schedule(config.train)
    shorter = (f" of {steps} steps (train.steps_per_epoch; a pass is {whole}: each epoch goes on where the last "
               "one stopped)" if steps != whole else "")
    log(f"time budget {format_duration(seconds)}: warm-up {budget.spent['warm-up']:.0f} s; a pass takes "
        f"~{estimate.epoch_s:.1f} s ({whole} steps x {estimate.step_s:.2f} s + validation {estimate.val_s:.1f} s + "
        f"saving {estimate.save_s:.1f} s), first-epoch extra {estimate.first_epoch_extra_s:.0f} s, final "
        f"evaluation {estimate.final_s:.0f} s -> train.epochs {epochs}{shorter}, expected end at "
        f"{budget.elapsed() + budget.estimate.run_s(epochs):.0f} s")
    if budget.validation != Validation():
        sampled = (f"a fixed sample of {budget.validation.images} of the {val_images} validation images"
                   if budget.validation.images else f"all {val_images} validation images")
        log(f"time budget: validation during training uses {sampled} on epochs "
            f"{_ranges(budget.validated)}, to stay within {VAL_SHARE:.0%} of the budget; the final evaluation "
            "scores the kept model on all of them")
    if budget.estimate.run_s(epochs) > left:
        log(f"warning: {max(left, 0):.0f} s of the budget are left after the warm-up, but one training step with "
            f"the validation and the final evaluation takes ~{budget.estimate.run_s(1):.0f} s: the run will overrun")
    return budget


def _ranges(epochs):
    """[1, 4, 8, 12] -> '1, 4, 8, 12'; long lists are shortened: '1, 3, 5, ..., 19'."""
    shown = list(map(str, epochs))
    return ", ".join(shown if len(shown) <= 8 else shown[:3] + ["...", shown[-1]])


