"""The time budget's epoch-end guard: shortens or lengthens a budgeted run at the pace it measures."""
import time

import keras

from app.training.budget import FINAL_OVERHEAD_S, SAFETY


class BudgetGuard(keras.callbacks.Callback):
    """Save the elapsed time at each epoch end; where the remaining epochs no longer fit the budget at the pace
    measured so far (from one epoch end to the next, everything between included; validation apart, as not every
    epoch validates), end the run earlier (with the schedule, where it is adjustable; the new last epoch
    validates), or later where the epochs go faster than the warm-up said."""

    def __init__(self, budget, run_dir, train_config, log=print):
        super().__init__()
        self.budget, self.run_dir, self.log = budget, run_dir, log
        self.train_config = train_config.model_copy()
        self._epoch_start = self._test_start = self._epoch_validation = 0.0
        self._training, self._validation = [], []

    def on_train_begin(self, logs=None):
        self.budget.save(self.run_dir)
        self._epoch_start = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_validation = 0.0

    def on_test_begin(self, logs=None):
        self._test_start = time.monotonic()

    def on_test_end(self, logs=None):
        self._epoch_validation = time.monotonic() - self._test_start
        self._validation.append(self._epoch_validation)

    def on_epoch_end(self, epoch, logs=None):
        self._training.append(time.monotonic() - self._epoch_start - self._epoch_validation)
        done, planned = epoch + 1, self.budget.epochs
        if done < planned:
            self._refit(done, planned)
        self.budget.save(self.run_dir)
        if done >= self.budget.epochs:
            self.model.stop_training = True
        self._epoch_start = time.monotonic()  # an epoch's pace runs from here: its start and the saving before it

    def _fits(self, done, most, pace, validation_s, share=1.0):
        """Epochs after `done` (at most `most`) whose training and validation fit `share` of the budget left."""
        final = self.budget.estimate.final_s if self.budget.estimate else FINAL_OVERHEAD_S
        left = share * (self.budget.seconds - self.budget.elapsed()) - final
        for more in range(most, 0, -1):
            validations = sum(1 for e in self.budget.validation.epochs(done + more) if e > done)
            if more * pace + validations * validation_s <= left:
                return more
        return 0

    def _refit(self, done, planned):
        measured = self._training[1:] or self._training  # the first may pay for tracing
        pace = sum(measured) / len(measured)
        validation_s = sum(self._validation) / len(self._validation) if self._validation else 0.0
        fits = self._fits(done, planned - done, pace, validation_s)
        if done + fits >= planned:
            if self.budget.length is not None and self.budget.max_epochs > planned:
                self._extend(done, planned, pace, validation_s)
            return
        if self.budget.length is None:  # a fixed schedule: stop only when the next epoch would overrun
            if fits == 0:
                self.budget.set_epochs(done)
                self.log(f"time budget: stopping after epoch {done}/{planned}: another epoch (~{pace:.0f} s) "
                         f"would overrun the budget (the machine is slower than at the warm-up)")
            return
        self._reschedule(done + fits)
        expected = (f", not the ~{self.budget.estimate.steps_per_epoch * self.budget.estimate.step_s:.0f} s of "
                    "the warm-up" if self.budget.estimate else "")
        self.log(f"time budget: epochs train in ~{pace:.0f} s{expected}: the run ends after epoch "
                 f"{self.budget.epochs} instead of {planned}, its learning-rate schedule with it")

    def _extend(self, done, planned, pace, validation_s):
        """Lengthen the run (and its schedule) where the epochs so far were faster than the warm-up said."""
        fits = self._fits(done, self.budget.max_epochs - done, pace, validation_s, SAFETY)
        if done + fits > planned:
            self._reschedule(done + fits)
            self.log(f"time budget: epochs train in ~{pace:.0f} s, faster than the warm-up said: the run ends "
                     f"after epoch {self.budget.epochs} instead of {planned}, its learning-rate schedule with it")

    def _reschedule(self, epochs):
        self.budget.set_epochs(epochs)
        self.train_config.epochs = epochs
        self.budget.set_schedule(self.train_config)
