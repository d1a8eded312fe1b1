"""Model: the training pipeline. net + loss + optimizer, and the loop that ties them together.

One training step is the whole story of deep learning:
    pred = net.forward(x, training=True)  # predict (and remember what backward needs)
    value, grad = loss(pred, y)           # how wrong, and in which direction
    net.backward(grad)                    # gradients of every parameter (chain rule)
    optimizer.step(net.params, net.grads) # move the parameters a little downhill
"""
import math
import warnings

import numpy as np

from . import saving
from .batches import BatchIterator
from .checks import check_int
from .errors import ConfigError, DataError, DivergenceWarning, ShapeError
from .interrupt import HoldCtrlC
from .losses import SigmoidCrossEntropy, SoftmaxCrossEntropy
from .metrics import accuracy
from .net import call_backward


class Model:
    def __init__(self, net, loss, optimizer, dtype=np.float32):
        for what, value, method in (("net", net, "forward"), ("loss", loss, "__call__"),
                                    ("optimizer", optimizer, "step")):
            if isinstance(value, type) or not hasattr(value, method):
                raise ConfigError(f"Model: {what} must be an instance with .{method}, got {value!r}; "
                                  "hint: Model(net, loss, optimizer), e.g. tn.Adam() with ()")
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.dtype = np.dtype(dtype)
        self.stop_training = False
        self.history = None

    @property
    def is_classifier(self):
        return isinstance(self.loss, (SoftmaxCrossEntropy, SigmoidCrossEntropy))

    # ------------------------------------------------------------------ one step
    def train_step(self, x, y):
        """Forward, loss, backward, update on one batch; returns the batch loss. A non-finite
        loss skips the update, so the parameters stay as they were."""
        x = self._as_input(x, "x")
        y = self._as_target(y, len(x))
        with HoldCtrlC() as ctrl_c:  # a Ctrl-C waits for the step: never half an update
            ctrl_c.busy = True
            value = self._train_batch(x, y)[0]
            ctrl_c.release()
        return value

    def _train_batch(self, x, y):
        # numpy's overflow warnings stay in here: a blow-up shows as a non-finite loss, which
        # fit reports as one DivergenceWarning that says what to do.
        with np.errstate(all="ignore"):
            pred = self.net.forward(x, training=True)
            value, grad = self.loss(pred, y)
            if math.isfinite(value):
                # Fast path: nobody needs dL/d(input data), so the first layer may skip it
                # (PyTorch skips it too). See Net.backward.
                call_backward(self.net.backward, grad, input_grad=False)
                self.optimizer.step(self.net.params, self.net.grads)
        return value, pred

    # ------------------------------------------------------------------ inference
    def predict(self, x, batch_size=1024):
        """Network outputs (logits for classifiers) for every sample, in batches."""
        x = self._as_input(x, "x")
        return np.concatenate([self.net.forward(x[i:i + batch_size], training=False)
                               for i in range(0, len(x), batch_size)])

    def evaluate(self, x, y, batch_size=1024):
        """{'loss': mean loss, 'accuracy': fraction correct (classifiers only)}."""
        pred = self.predict(x, batch_size)
        value, _ = self.loss(pred, self._as_target(y, len(pred)))
        return {"loss": value, **({"accuracy": accuracy(pred, y)} if self.is_classifier else {})}

    # ------------------------------------------------------------------ training
    def fit(self, x, y, epochs=1, batch_size=32, validation=None, shuffle=True, seed=None,
            callbacks=(), progress=False):
        """Train for ``epochs`` passes over (x, y). Returns the history: per-epoch 'loss' (and
        'accuracy', 'val_loss', 'val_accuracy'), every batch's loss in 'step_loss', and 'stopped'
        (None, or why training ended early: divergence, a callback, or an interrupt).

        A NaN/inf loss stops training with a DivergenceWarning and rolls the net (parameters
        and layer state) back to the start of the latest epoch whose first step still had a
        finite loss, and resets the optimizer, so a lower learning rate can carry on from there.
        Ctrl-C (or a dashboard's Stop) ends training cleanly, keeping the history up to that
        point; a Ctrl-C in the middle of a step waits for the step to finish."""
        x, y, validation = self._check_fit_args(x, y, epochs, batch_size, validation)
        batches = BatchIterator(x, y, batch_size, shuffle=shuffle, seed=seed)
        history = {"loss": [], "step_loss": [], "stopped": None,
                   **({"accuracy": []} if self.is_classifier else {})}
        self.history, self.stop_training = history, False
        self._last_good = None  # (epoch, net.state_dict() at its start): latest epoch begun well
        for cb in callbacks:
            cb.on_train_begin(self)
        try:
            with HoldCtrlC() as self._ctrl_c:
                for epoch in range(epochs):
                    self._run_epoch(epoch, epochs, batches, validation, callbacks, progress)
                    if self.stop_training:
                        history["stopped"] = (history["stopped"]
                                              or f"stopped by a callback in epoch {epoch + 1}")
                        break
        except KeyboardInterrupt:
            history["stopped"] = f"interrupted after {len(history['step_loss'])} steps"
            print(f"Training {history['stopped']}; the model keeps its last parameters.")
        for cb in callbacks:
            cb.on_train_end(self, history)
        return history

    def _run_epoch(self, epoch, epochs, batches, validation, callbacks, progress):
        for cb in callbacks:
            cb.on_epoch_begin(self, epoch)
        snapshot = self.net.state_dict()
        total_loss, correct, seen = 0.0, 0, 0
        bar = _progress_bar(batches, f"epoch {epoch + 1}/{epochs}", progress)
        for xb, yb in bar:
            self._ctrl_c.busy = True  # a Ctrl-C waits for the step and its record (see fit)
            value, pred = self._train_batch(xb, yb)
            self.history["step_loss"].append(value)
            self._ctrl_c.release()
            if not math.isfinite(value):
                return self._diverged(epoch, (epoch, snapshot) if seen else self._last_good,
                                      snapshot)
            total_loss, seen = total_loss + value * len(xb), seen + len(xb)
            if self.is_classifier:
                correct += accuracy(pred, yb) * len(xb)
            for cb in callbacks:
                cb.on_batch_end(self, len(self.history["step_loss"]), {"loss": value})
            if self.stop_training:
                break
        if seen:
            self._last_good = (epoch, snapshot)
            self._end_epoch(epoch, bar, validation, callbacks, total_loss / seen, correct / seen)

    def _end_epoch(self, epoch, bar, validation, callbacks, loss, accuracy_):
        logs = {"loss": loss, **({"accuracy": accuracy_} if self.is_classifier else {})}
        if validation is not None:
            logs.update({f"val_{k}": v for k, v in self.evaluate(*validation).items()})
        for key, value in logs.items():
            self.history.setdefault(key, []).append(value)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
            bar.close()
        for cb in callbacks:
            cb.on_epoch_end(self, epoch, logs)

    def _diverged(self, epoch, last_good, snapshot):
        """Stop, and go back to ``last_good`` = (epoch, state_dict): parameters that are merely
        finite can still be so large that the loss overflows at once, so they are not good
        enough. With none (the very first step failed) the parameters never changed, but the
        failed forward may have moved layer state (BatchNorm's statistics): restore that."""
        self.net.load_state_dict(snapshot if last_good is None else last_good[1])
        where = ("keeps its parameters (the very first step failed)" if last_good is None else
                 f"is back at its parameters from the start of epoch {last_good[0] + 1}")
        self.optimizer.reset()  # its momenta belong to the run that blew up
        self.history["stopped"] = (f"diverged: loss became non-finite at step "
                                   f"{len(self.history['step_loss'])} (epoch {epoch + 1})")
        self.stop_training = True
        warnings.warn(f"Training {self.history['stopped']}; the model {where}. "
                      f"Try a lower learning rate (now {self.optimizer.lr:g}).",
                      DivergenceWarning, stacklevel=4)

    # ------------------------------------------------------------------ checking the data
    def _as_input(self, x, what):
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise ShapeError(f"Model: {what} must be numeric, got dtype {x.dtype}")
        if x.ndim < 2 or len(x) == 0:
            raise ShapeError(f"Model: {what} must be a non-empty batch (samples, features...), "
                             f"got shape {x.shape}; hint: for one sample use x[None]")
        params = self.net.params  # the one place data is cast: to the net's dtype
        x = x.astype(params[0].dtype if params else self.dtype, copy=False)
        if not np.isfinite(x).all():
            raise DataError(f"Model: {what} contains NaN or inf values "
                            f"({np.count_nonzero(~np.isfinite(x))} of {x.size}); clean the data first")
        return x

    def _as_target(self, y, n):
        y = np.asarray(y)
        if len(y) != n:
            raise ShapeError(f"Model: x has {n} samples but y has {len(y)}")
        if y.dtype.kind == "f" and not np.isfinite(y).all():
            raise DataError("Model: targets contain NaN or inf values")
        return y

    def _check_fit_args(self, x, y, epochs, batch_size, validation):
        """Check everything before a single parameter changes: one dry forward builds lazy
        layers and checks every shape, then the loss checks all targets; validation too."""
        check_int(epochs, "epochs", "Model.fit", minimum=0)
        check_int(batch_size, "batch_size", "Model.fit")
        if validation is not None and (not isinstance(validation, (tuple, list)) or len(validation) != 2):
            raise ConfigError("Model.fit: validation must be a pair (x_val, y_val)")
        pairs = [(x, y, "x")] + ([(*validation, "validation x")] if validation is not None else [])
        checked = []
        for xs, ys, what in pairs:
            xs = self._as_input(xs, what)
            ys = self._as_target(ys, len(xs))
            out = self.net.forward(xs[:1], training=False)
            self.loss(np.zeros((len(ys),) + out.shape[1:], dtype=out.dtype), ys)
            checked.append((xs, ys))
        return checked[0][0], checked[0][1], (checked[1] if validation is not None else None)

    # ------------------------------------------------------------------ files
    def save(self, path):
        """Parameters, layer state and architecture to ``path`` (.npz); see tinynn.saving."""
        return saving.save(self, path)

    def load(self, path):
        """Load a file written by ``save`` (and reset the optimizer); see tinynn.saving."""
        return saving.load(self, path)

    def __repr__(self):
        return f"Model({self.net!r},\n  loss={self.loss!r}, optimizer={self.optimizer!r})"


def _progress_bar(batches, description, enabled):
    if not enabled:
        return batches
    from tqdm.auto import tqdm  # lazy: the core imports without tqdm
    return tqdm(batches, desc=description, leave=True, unit="batch")
