"""Callbacks: code that runs inside ``Model.fit`` at fixed moments (Keras' callbacks)."""
import math

import numpy as np

from .checks import check_int, check_number
from .errors import ConfigError


class Callback:
    """Hooks into ``Model.fit``. Override what you need; set ``model.stop_training = True``
    from any hook to end training after the current step (and, to say why, put the reason in
    ``model.history["stopped"]``; otherwise fit records "stopped by a callback in epoch N")."""

    def on_train_begin(self, model): pass
    def on_epoch_begin(self, model, epoch): pass
    def on_batch_end(self, model, step, logs): pass
    def on_epoch_end(self, model, epoch, logs): pass
    def on_train_end(self, model, history): pass


class AverageWeights(Callback):
    """Keep an exponential moving average of the parameters while ``fit`` runs, and put it
    into the net when training ends (an EMA of the weights, as Keras' ``use_ema`` and
    PyTorch's ``AveragedModel`` with an EMA function; Polyak–Ruppert averaging proper is the
    uniform average of all steps). It costs one extra copy of the parameters.

    Late in training the steps bounce around a minimum; the average of the last few hundred
    positions sits nearer its centre than any single one. Each step the average moves
    ``1 − decay`` of the way towards the current parameters, so it remembers about
    ``1 / (1 − decay)`` steps (200 for 0.995). MNIST MLP, 5 epochs, 8 seeds: 97.75% → 98.11%
    mean test accuracy. The per-epoch numbers fit reports are the raw parameters'; evaluate
    after fit for the averaged ones. After a divergence the average is not used."""

    def __init__(self, decay=0.995):
        self.decay = check_number(decay, "decay", "AverageWeights", "(0, 1)",
                                  hint="a decay between 0 and 1 such as 0.995 averages over "
                                       "about 200 steps")
        self.average = self._scratch = None

    def on_train_begin(self, model):
        self.average = [p.copy() for p in model.net.params]
        self._scratch = [np.empty_like(p) for p in model.net.params]

    def on_batch_end(self, model, step, logs):
        for average, param, scratch in zip(self.average, model.net.params, self._scratch):
            np.subtract(param, average, out=scratch)   # average += (1 − decay)(θ − average)
            scratch *= 1.0 - self.decay
            average += scratch

    def on_train_end(self, model, history):
        diverged = (history["stopped"] or "").startswith("diverged")
        if self.average is None or diverged:
            return
        for param, average in zip(model.net.params, self.average):
            param[...] = average


class EarlyStopping(Callback):
    """Stop training when a monitored number has stopped improving, and (by default) put the
    net back as it was at its best epoch (Keras' ``EarlyStopping``).

    After every epoch it reads ``logs[monitor]`` (``"val_loss"`` needs ``validation=`` or
    ``validation_split=`` in ``fit``). An epoch improves when the value beats the best so far
    by more than ``min_delta``: lower for a loss, higher for an accuracy (``mode="auto"``
    decides from the name; or say ``"min"`` / ``"max"``). After ``patience`` epochs in a row
    without improvement it sets ``model.stop_training`` and ``history["stopped"]`` says so.

    ``restore_best_weights=True``: when ``fit`` ends (stopped early or not) the net gets back
    its parameters *and* layer state (BatchNorm's statistics) from the end of the best epoch,
    bit for bit, via ``net.state_dict()`` / ``load_state_dict()``. Afterwards ``best``,
    ``best_epoch`` (0-based) and ``stopped_epoch`` (None if it never stopped) tell the story."""

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, mode="auto",
                 restore_best_weights=True):
        self.monitor = monitor
        self.patience = check_int(patience, "patience", "EarlyStopping")
        self.min_delta = check_number(min_delta, "min_delta", "EarlyStopping", "[0, inf)")
        if mode == "auto":
            mode = "max" if "acc" in monitor else "min"
        if mode not in ("min", "max"):
            raise ConfigError(f"EarlyStopping: mode must be 'auto', 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.restore_best_weights = restore_best_weights
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_epoch = self.stopped_epoch = self.best_state = None
        self.wait = 0

    def on_train_begin(self, model):
        self._reset()

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_epoch_end(self, model, epoch, logs):
        if self.monitor not in logs:
            hint = (" (validation numbers need fit(..., validation=(x_val, y_val)) or "
                    "validation_split=)" if self.monitor.startswith("val_") else "")
            raise ConfigError(f"EarlyStopping: monitor {self.monitor!r} is not among the "
                              f"numbers fit reports each epoch: {sorted(logs)}{hint}")
        value = float(logs[self.monitor])
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_state = model.net.state_dict()  # a copy of every array
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            model.stop_training = True
            best = ("no epoch was finite" if self.best_epoch is None
                    else f"best in epoch {self.best_epoch + 1}")
            model.history["stopped"] = (
                f"stopped early: {self.monitor} did not improve for {self.patience} epochs "
                f"({best}, stopped after epoch {epoch + 1})")

    def on_train_end(self, model, history):
        if self.restore_best_weights and self.best_state is not None:
            model.net.load_state_dict(self.best_state)
