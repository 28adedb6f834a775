"""Time budgets: duration parsing, the epoch estimate, and a real budgeted run on the embedded nuclei data."""
import dataclasses
import json
import math
import time
import types

import keras
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
import yaml
from train_helpers import TINY, only_run_dir

from app.config.durations import format_duration, parse_duration
from app.config.errors import ConfigError
from app.train import main
from app.training.budget import VAL_SHARE, Estimate, Validation, fit_validation, time_validation
from app.training.runs import comparable


@pytest.mark.parametrize("text, seconds", [("90s", 90), ("30m", 1800), ("1h", 3600), ("1h30m", 5400),
                                           ("1.5h", 5400), (45, 45), ("45", 45), (" 2m ", 120)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "-5m", "0", "1h30", "m"])
def test_bad_durations_name_the_key(text):
    with pytest.raises(ConfigError, match="train.time_budget"):
        parse_duration(text)


def test_format_duration():
    assert [format_duration(s) for s in (45, 90, 3600, 5400, 0)] == ["45s", "1m30s", "1h", "1h30m", "0s"]


def test_estimate_fits_whole_epochs_and_the_final_evaluation():
    estimate = Estimate(step_s=0.5, val_s=1.0, save_s=0.5, start_s=0.5, first_epoch_extra_s=10.0, final_s=5.0,
                        steps_per_epoch=8)
    assert estimate.epoch_s == 6.0
    assert estimate.fit_within(100.0) == (14, 8)  # 10 + 14 * 6 + 5 = 99; 15 epochs of 7 steps would train fewer
    assert estimate.run_s(14) <= 100.0 < estimate.run_s(15)
    assert estimate.fit_within(1.0) == (1, 1)


@pytest.mark.parametrize("seconds, expected", [
    (754.0, (3, 45)),  # 2 whole passes (92 steps) would leave 226 s unused: 3 epochs of 45 steps train 135
    (1000.0, (4, 46)),  # 4 whole passes fit; 5 epochs of 35 steps would train fewer
    (400.0, (1, 18)),  # not one pass: one epoch of 18 of the 46 steps, then validation and the final evaluation
])
def test_epochs_of_fewer_steps_use_what_whole_passes_leave(seconds, expected):
    estimate = Estimate(step_s=4.18, val_s=36.1, save_s=0.9, start_s=0.1, first_epoch_extra_s=26.0, final_s=43.0,
                        steps_per_epoch=46)
    if seconds == 400.0:  # a slow validation pass over large images, as on DSB2018
        estimate = dataclasses.replace(estimate, val_s=142.6, final_s=153.0)
    epochs, steps = estimate.fit_within(seconds)
    assert (epochs, steps) == expected
    assert dataclasses.replace(estimate, steps_per_epoch=steps).run_s(epochs) <= seconds
    assert dataclasses.replace(estimate, steps_per_epoch=steps + 1).run_s(epochs) > seconds or steps == 46


def test_epochs_of_fewer_steps_end_the_schedule_at_its_floor(tmp_path):
    # the embedded nuclei set (48 training images) is 6 batches of 8: epochs of 2 batches go on where the last
    # one stopped, and the cosine schedule counts 2 steps per epoch
    assert main(["--runs-dir", str(tmp_path), "--epochs", "3", "--set", "train.steps_per_epoch=2",
                 "--set", "train.warmup_epochs=0", "--set", "train.jit_compile=false", *TINY]) == 0
    run = only_run_dir(tmp_path)
    history = pd.read_csv(run / "history.csv")
    peak = yaml.safe_load((run / "config.yaml").read_text())["train"]["learning_rate"]
    assert len(history) == 3
    assert history["learning_rate"].iloc[-1] == pytest.approx(0.01 * peak, rel=1e-3)
    assert history["learning_rate"].iloc[0] == pytest.approx(peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi / 3))),
                                                             rel=1e-3)  # after 2 of 6 steps


def test_resume_ignores_epochs_derived_from_a_budget():
    from app.config.loading import load_config

    def config(epochs, budget):
        return comparable(load_config(overrides=[{"train": {"epochs": epochs, "time_budget": budget}, "seed": 1}]))

    assert config(7, "1m") == config(40, "1m")
    assert config(7, "1m") != config(7, "2m")
    assert config(7, None) != config(8, None)


def test_validation_is_timed_on_a_few_batches_and_scaled_by_pixels():
    read = []
    sizes = [8, 8] + [16] * 20 + [32]  # square sides of one-image batches

    def load(index):
        read.append(int(index))
        side = sizes[int(index)]
        return np.zeros((1, side, side, 1), np.float32), np.zeros((1, side, side, 1), np.float32)

    val = tf.data.Dataset.range(len(sizes)).map(
        lambda i: tf.numpy_function(load, [i], [tf.float32, tf.float32])).map(
        lambda x, y: (tf.ensure_shape(x, [1, None, None, 1]), tf.ensure_shape(y, [1, None, None, 1])))
    model = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 3, padding="same")])
    model.compile(loss="mse")
    pixels = [side * side for side in sizes]
    prepared = types.SimpleNamespace(val=val, val_batch_pixels=pixels)
    extra, seconds = time_validation(model, prepared, types.SimpleNamespace(count=1), batches=2)
    assert read.count(0) == read.count(1) == 2  # the first two batches, twice (tf.data reads a few ahead)
    assert max(read) < len(sizes) - 1
    assert seconds > 0 and extra >= 0
    assert time_validation(model, types.SimpleNamespace(val=None), None) == (0.0, 0.0)


@pytest.mark.slow
def test_budgeted_run_ends_within_the_budget_at_the_schedule_floor(tmp_path):
    budget = 90
    start = time.monotonic()
    # --data without --config: the dataset's plan, with the tiny-model flags winning over it
    assert main(["--data", "data/nuclei", "--time-budget", f"{budget}s", "--runs-dir", str(tmp_path),
                 "--set", "train.jit_compile=false", *TINY]) == 0
    elapsed = time.monotonic() - start
    run = only_run_dir(tmp_path)
    config = yaml.safe_load((run / "config.yaml").read_text())
    state = json.loads((run / "budget.json").read_text())
    history = pd.read_csv(run / "history.csv")
    assert elapsed <= budget * 1.1 + 5, f"run took {elapsed:.0f} s for a {budget} s budget"
    assert config["model"]["base_filters"] == 4 and config["data"]["image_size"] == [64, 64]  # flags won
    assert config["train"]["early_stopping_patience"] is None and config["train"]["time_budget"] == f"{budget}s"
    # the guard may shorten the run, or lengthen it up to twice the planned epochs
    assert 2 <= len(history) == state["epochs"] <= 2 * config["train"]["epochs"] + 1
    peak = config["train"]["learning_rate"]
    assert history["learning_rate"].iloc[-1] == pytest.approx(0.01 * peak, rel=1e-3)  # CosineDecay alpha 0.01
    assert history["learning_rate"].iloc[0] > 0.5 * peak
    assert state["elapsed_s"] <= budget * 1.1


def test_resume_keeps_the_epochs_and_counts_the_time_already_used(tmp_path):
    import types

    from app.config.loading import dump_config, load_config
    from app.training.budget import fit_to_budget
    from app.training.runs import find_resumable_run

    config = load_config(overrides=[{"train": {"time_budget": "10m"}}])
    saved = load_config(overrides=[{"train": {"time_budget": "10m", "epochs": 17, "warmup_epochs": 0.5,
                                              "steps_per_epoch": 5}}])
    run = tmp_path / f"{config.name}-20260101-000000"
    (run / "backup").mkdir(parents=True)
    dump_config(saved, run / "config.yaml")
    (run / "budget.json").write_text(json.dumps({"budget_s": 600, "epochs": 17, "elapsed_s": 250.0,
                                                "estimate": None}))
    assert find_resumable_run(tmp_path, config) == run  # epochs differ: they came from the budget
    assert find_resumable_run(tmp_path, load_config(overrides=[{"train": {"time_budget": "20m"}}])) is None
    lines = []
    budget = fit_to_budget(config, None, types.SimpleNamespace(mode="none"), run, time.monotonic(), lines.append)
    assert config.train.epochs == budget.epochs == 17 and config.train.warmup_epochs == 0.5
    assert config.train.steps_per_epoch == 5
    assert 250 <= budget.elapsed() < 260
    assert "resumed run used 250 s" in lines[0] and "epochs stay 17" in lines[0]
    with pytest.raises(ConfigError, match="multiworker"):
        fit_to_budget(config, None, types.SimpleNamespace(mode="multiworker"), None, time.monotonic())


PEAK = 0.01


def guarded_fit(run_dir, planned, seconds, sleep_s, max_epochs=0):
    """Fit a tiny model for `planned` epochs (up to `max_epochs`) under a BudgetGuard of `seconds`, each epoch
    end taking `sleep_s` more than the zero-cost estimate; returns (budget, learning rate per epoch, log lines)."""
    from app.config.schema import Train
    from app.training.budget import Budget, _adjustable_schedule
    from app.training.budget_guard import BudgetGuard

    rows, batch = 8, 4
    optimizer = keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(PEAK, planned * rows // batch,
                                                                            alpha=0.01))
    length = _adjustable_schedule(optimizer)
    if length is None:
        pytest.skip("the schedule is adjustable on the TensorFlow backend only")
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer, "mse")
    estimate = Estimate(step_s=0.0, val_s=0.0, save_s=0.0, start_s=0.0, first_epoch_extra_s=0.0, final_s=0.0,
                        steps_per_epoch=rows // batch)
    budget = Budget(seconds, time.monotonic(), estimate=estimate, length=length, train_rows=rows)
    budget.set_epochs(planned)
    budget.max_epochs = max_epochs
    train_config = Train(epochs=planned, batch_size=batch, warmup_epochs=0)
    lines, rates = [], []
    pace = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: time.sleep(sleep_s))
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: rates.append(float(optimizer.learning_rate)))
    x, y = np.ones((rows, 2), "float32"), np.ones((rows, 1), "float32")
    model.fit(x, y, batch_size=batch, epochs=max(planned, max_epochs), verbose=0,
              callbacks=[pace, BudgetGuard(budget, run_dir, train_config, lines.append), record])
    return budget, rates, lines


def test_a_slower_pace_than_the_warm_up_shortens_the_run_and_its_schedule(tmp_path):
    """The warm-up promised free epochs; they take ~0.4 s (a sleep): the guard ends the run early, with the
    cosine schedule refitted so that the last epoch still ends at the learning-rate floor, within the budget."""
    planned, seconds = 12, 4.0
    budget, rates, lines = guarded_fit(tmp_path, planned, seconds, 0.4)
    assert 2 <= len(rates) == budget.epochs < planned
    assert budget.elapsed() <= seconds
    assert rates[-1] == pytest.approx(0.01 * PEAK, rel=1e-4)  # the floor, at the new last epoch
    assert json.loads((tmp_path / "budget.json").read_text())["epochs"] == budget.epochs
    assert any(f"ends after epoch {budget.epochs} instead of" in line for line in lines), lines


def test_validated_epochs_include_the_first_and_the_last():
    assert Validation().epochs(4) == [1, 2, 3, 4]
    assert Validation(8, 3).epochs(10) == [1, 4, 7, 10]
    assert Validation(8, 5).epochs(3) == [1, 3]
    assert Validation(8, 2).epochs(1) == [1]


@pytest.mark.parametrize("val_s, val_images", [(0.5, 200), (30.0, 200), (165.0, 200), (400.0, 40), (50.0, 5)])
@pytest.mark.parametrize("seconds", [100.0, 1200.0, 7200.0])
def test_validation_takes_at_most_its_share_of_the_budget(val_s, val_images, seconds):
    """A native-size validation pass of 165 s in a 20-minute budget took 53% of it; now at most VAL_SHARE,
    by a smaller fixed sample or fewer validated epochs, while the most training steps still fit."""
    estimate = Estimate(step_s=2.3, val_s=val_s, save_s=1.0, start_s=0.0, first_epoch_extra_s=10.0,
                        final_s=val_s + 5, steps_per_epoch=75)
    epochs, steps, validation = fit_validation(estimate, seconds, val_images)
    images = validation.images or val_images
    spent = val_s * images / val_images * len(validation.epochs(epochs))
    assert epochs >= 1 and 1 <= steps <= 75
    if images > min(8, val_images) or validation.every > 1:  # the sample could shrink: it did, enough
        assert spent <= VAL_SHARE * seconds + 1e-6
    assert images >= min(8, val_images)
    if val_s * epochs <= VAL_SHARE * seconds * 0.5:
        assert validation == Validation()  # cheap validation stays whole, every epoch
    training = epochs * steps * estimate.step_s
    run = training + spent + epochs * estimate.save_s + estimate.first_epoch_extra_s + estimate.final_s
    assert run <= seconds + estimate.step_s * steps or epochs * steps == 1


def test_the_guard_lengthens_a_run_that_goes_faster_than_the_warm_up(tmp_path):
    """The warm-up's epochs paid for tracing; the real ones are fast: the run and its schedule are lengthened
    (up to max_epochs) and still end at the learning-rate floor within the budget."""
    planned, seconds = 3, 3.0
    budget, rates, lines = guarded_fit(tmp_path, planned, seconds, 0.1, max_epochs=2 * planned + 1)
    assert planned < len(rates) == budget.epochs <= budget.max_epochs, lines
    assert rates[-1] == pytest.approx(0.01 * PEAK, rel=1e-4)
    assert budget.elapsed() <= seconds
    assert any("faster than the warm-up" in line for line in lines)


def test_the_time_ledger_splits_training_validation_and_saving():
    from app.training.callbacks import TimeLedger

    ledger = TimeLedger()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    saving = keras.callbacks.LambdaCallback(on_epoch_end=lambda *_: time.sleep(0.2))
    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, validation_data=(x, y), validation_freq=2, epochs=2, verbose=0, callbacks=[saving, ledger])
    assert 0.4 <= ledger.seconds["saving"] < 1.4  # the two epoch-end sleeps, and what Keras does there
    assert ledger.seconds["training"] > 0 and ledger.seconds["validation"] > 0
