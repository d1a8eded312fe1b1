"""The learning-rate range test (Leslie Smith, 2015): find a good learning rate in one short run.

    result = tn.lr_range_test(model, x_train, y_train)
    print(result)                      # suggested learning rate 3.2e-03: ...
    model.optimizer.lr = result.suggestion

Train for a few hundred steps while the rate grows exponentially from tiny to huge, and watch the
loss. Too small a rate barely moves it; then it falls fast; then the steps overshoot and it climbs
and explodes. A good rate sits a little before the lowest loss. Like ``overfit_batch`` it is a
training tool that must not change the model it studies: the test trains the model itself, then
puts back every array it changed (parameters, BatchNorm's running statistics, the optimizer's
moments and step count), so the next training step is the one it would have been without it.
"""
import dataclasses
import math

import numpy as np

from .batches import BatchIterator
from .errors import ConfigError
from .progress import progress_bar


class MovingAverage:
    """An exponential moving average with bias correction, as Adam's m̂: after each value v,
    a ← βa + (1 − β)v from a = 0, and the average is a / (1 − βⁿ) after n values. Without the
    correction (``bias_correction=False``: the plain a) the first averages are pulled towards
    the 0 it started from (the first is only (1 − β)·v); with it the first average is v itself."""

    def __init__(self, beta, bias_correction=True):
        self.beta, self.bias_correction = beta, bias_correction
        self.total, self.count = 0.0, 0

    def add(self, value):
        """Take in one more value; return the average so far."""
        self.count += 1
        self.total = self.beta * self.total + (1 - self.beta) * value
        if not self.bias_correction:
            return self.total
        return self.total / (1 - self.beta ** self.count)


def ema(values, beta, bias_correction=True):
    """The ``MovingAverage`` after each of ``values``, as a float64 array (the smoothed curve
    the range test and the learning-rate lab draw): ``ema([2, 4], 0.5)`` is ``[2, 3.33]``."""
    average = MovingAverage(beta, bias_correction)
    return np.array([average.add(float(value)) for value in values], dtype=np.float64)


@dataclasses.dataclass
class RangeTestResult:
    """What ``lr_range_test`` measured: the learning rate and smoothed loss at every step."""
    lrs: np.ndarray
    losses: np.ndarray
    suggestion: float
    min_loss_lr: float
    steepest_lr: float
    stopped: str

    def __str__(self):
        return (f"suggested learning rate {self.suggestion:.1e}: a tenth of {self.min_loss_lr:.1e}, "
                f"where the smoothed loss was lowest (steepest descent at {self.steepest_lr:.1e}; "
                f"{len(self.lrs)} steps, ended because {self.stopped})")


def lr_range_test(model, x, y, start_lr=1e-6, end_lr=10.0, num_steps=200, batch_size=64, seed=0,
                  smoothing=0.98, diverge_factor=4.0, on_step=None, progress=False):
    """Leslie Smith's learning-rate range test (2015): train for ``num_steps`` steps while the
    learning rate grows exponentially from ``start_lr`` to ``end_lr``, and watch the loss.

    Step i uses the rate start_lr · (end_lr / start_lr)^(i / (num_steps − 1)), on the next
    batch (shuffled from ``seed``, epoch after epoch), starting from fresh optimizer state. One
    batch's loss is noisy, so the test follows its moving average (β = ``smoothing``, bias
    corrected: ``MovingAverage``) and stops once that exceeds ``diverge_factor`` times its
    minimum, or at a non-finite loss. Suggested rate: a tenth of the rate at the lowest loss (at
    the minimum the rate is already too large for stable training).

    The model is left as it was found: its ``net.state_dict()`` (parameters and layer state,
    such as BatchNorm's running statistics) and its optimizer (``snapshot()``: step count,
    moments, rate and schedule) are restored afterwards, even when the test raises.

    ``on_step(step, lr, smoothed_loss)`` is called after every step; setting
    ``model.stop_training = True`` ends the test early. ``progress=True`` shows a tqdm bar.
    """
    _check_sweep(start_lr, end_lr, num_steps)
    optimizer = model.optimizer
    x = np.asarray(x, dtype=model.dtype)
    model.net.forward(x[:1], training=False)  # builds lazy layers, so there is something to restore
    rates = start_lr * (end_lr / start_lr) ** (np.arange(num_steps) / (num_steps - 1))
    batches = _endless(BatchIterator(x, y, batch_size, shuffle=True, seed=seed))
    lrs, losses, best, average = [], [], math.inf, MovingAverage(smoothing)
    stopped = "it reached the largest learning rate"
    saved_net, saved_optimizer = model.net.state_dict(), optimizer.snapshot()
    steps = progress_bar(rates, "range test", unit="step", enabled=progress)
    try:
        optimizer.reset()          # the test's own moments, from zero
        optimizer.schedule = None  # the test sets the rate itself
        model.stop_training = False
        with np.errstate(all="ignore"):
            for i, lr in enumerate(steps):
                optimizer.lr = float(lr)
                loss = model.train_step(*next(batches))
                if not math.isfinite(loss):
                    stopped = f"the loss became non-finite at {lr:.1e}"
                    break
                smoothed = average.add(loss)
                lrs.append(float(lr))
                losses.append(smoothed)
                best = min(best, smoothed)
                if on_step is not None:
                    on_step(i + 1, float(lr), smoothed)
                if smoothed > diverge_factor * best:
                    stopped = f"the loss exploded at {lr:.1e}"
                    break
                if model.stop_training:
                    stopped = "it was stopped"
                    break
    finally:
        model.net.load_state_dict(saved_net)    # parameters and BatchNorm's statistics
        optimizer.restore(saved_optimizer)      # step count, moments, rate and schedule
        model.stop_training = False
        steps.close()
    return _range_result(np.array(lrs), np.array(losses), stopped)


def _check_sweep(start_lr, end_lr, num_steps):
    if not 0 < start_lr < end_lr or num_steps < 2:
        raise ConfigError(f"lr_range_test: need 0 < start_lr < end_lr and num_steps >= 2, got "
                          f"{start_lr!r}, {end_lr!r}, {num_steps!r}")


def _endless(batches):
    while True:
        yield from batches


def _range_result(lrs, losses, stopped):
    if len(losses) == 0:
        raise ConfigError(f"lr_range_test: no step had a finite loss ({stopped}); lower start_lr")
    lowest = int(np.argmin(losses))
    skip = len(losses) // 10  # the first steps' average is still mostly noise
    if lowest - skip >= 2:
        slope = np.gradient(losses[skip:lowest + 1], np.log(lrs[skip:lowest + 1]))
        steepest = float(lrs[skip + int(np.argmin(slope))])
    else:
        steepest = float(lrs[lowest])
    return RangeTestResult(lrs, losses, suggestion=float(lrs[lowest]) / 10,
                           min_loss_lr=float(lrs[lowest]), steepest_lr=steepest, stopped=stopped)
