"""Callbacks: code that runs inside ``Model.fit`` at fixed moments (Keras' callbacks)."""
import numpy as np

from .checks import check_number


class Callback:
    """Hooks into ``Model.fit``. Override what you need; set ``model.stop_training = True``
    from any hook to end training after the current step."""

    def on_train_begin(self, model): pass
    def on_epoch_begin(self, model, epoch): pass
    def on_batch_end(self, model, step, logs): pass
    def on_epoch_end(self, model, epoch, logs): pass
    def on_train_end(self, model, history): pass


class AverageWeights(Callback):
    """Keep an exponential moving average of the parameters while ``fit`` runs, and put it
    into the net when training ends (Polyak averaging; Keras' ``use_ema``, PyTorch's
    ``AveragedModel``).

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
