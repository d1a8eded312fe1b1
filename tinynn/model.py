"""Model: the training pipeline. net + loss + optimizer, and the loop that ties them together.

One training step is the whole story of deep learning:
    pred = net.forward(x, training=True)  # predict (and remember what backward needs)
    value, grad = loss(pred, y)           # how wrong, and in which direction
    net.backward(grad)                    # gradients of every parameter (chain rule)
    optimizer.step(net.params, net.grads) # move the parameters a little downhill

The dtype rule: a model computes in one dtype, ``model.dtype``, and converts the data to it once,
on the way in (layers never cast). It is the dtype of the net's parameters once they exist;
before that, the dtype a layer declares (``Dense(8, dtype=np.float64)``, built on the first
forward); else ``Model(..., dtype=)``, float32 by default. ``model.load(path)`` gives the model
the dtype the file was saved in: its parameters, state and predictions (see tinynn.saving).
"""
import math
import warnings

import numpy as np

from . import saving
from .batches import BatchIterator
from .data import holdout_last
from .checks import check_batch, check_float_dtype, check_ids, check_int, check_targets
from .errors import ConfigError, DivergenceWarning
from .interrupt import HoldCtrlC
from .losses import SigmoidCrossEntropy, SoftmaxCrossEntropy
from .metrics import accuracy
from .net import call_backward, layer_dtype, leaf_layers
from .norm import BatchNorm
from .progress import progress_bar


class Model:
    """A net, a loss and an optimizer, and the loop that trains them: ``train_step``, ``fit``,
    ``predict``, ``evaluate``, ``save`` and ``load``.

    ``model.dtype`` is what the model computes in and converts the data to: the dtype of the
    net's parameters once they exist; before that, the first dtype a layer declares
    (``Dense(8, dtype=np.float64)``); else ``dtype`` given here (float32 by default, for
    speed; float64 for gradient checks). ``load`` gives the model the dtype of the file."""

    def __init__(self, net, loss, optimizer, dtype=np.float32):
        for what, value, method in (("net", net, "forward"), ("loss", loss, "__call__"),
                                    ("optimizer", optimizer, "step")):
            if isinstance(value, type) or not hasattr(value, method):
                raise ConfigError(f"Model: {what} must be an instance with .{method}, got {value!r}; "
                                  "hint: Model(net, loss, optimizer), e.g. tn.Adam() with ()")
        self.net, self.loss, self.optimizer = net, loss, optimizer
        self.default_dtype = check_float_dtype(dtype, "Model")
        self.stop_training = False
        self.history = None

    @property
    def dtype(self):
        """The dtype the model computes in (see the class docstring)."""
        dtypes = [d for d in map(layer_dtype, getattr(self.net, "layers", ())) if d is not None]
        return dtypes[0] if dtypes else self.default_dtype

    @property
    def is_classifier(self):
        return isinstance(self.loss, (SoftmaxCrossEntropy, SigmoidCrossEntropy))

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

    def predict(self, x, batch_size=1024):
        """Network outputs (logits for classifiers) for every sample, in batches, in the
        model's dtype."""
        check_int(batch_size, "batch_size", "Model.predict")
        x = self._as_input(x, "x")
        return np.concatenate([self.net.forward(x[i:i + batch_size], training=False)
                               for i in range(0, len(x), batch_size)])

    def evaluate(self, x, y, batch_size=1024):
        """{'loss': mean loss, 'accuracy': fraction correct (classifiers only)}."""
        check_int(batch_size, "batch_size", "Model.evaluate")
        pred = self.predict(x, batch_size)
        value, _ = self.loss(pred, self._as_target(y, len(pred)))
        return {"loss": value, **({"accuracy": accuracy(pred, y)} if self.is_classifier else {})}

    def fit(self, x, y, epochs=1, batch_size=32, validation=None, shuffle=True, seed=None,
            callbacks=(), progress=False, validation_split=None, augment=None, drop_last=False):
        """Train for ``epochs`` passes over (x, y). Returns the history: per-epoch 'loss' (and
        'accuracy', 'val_loss', 'val_accuracy'), every batch's loss in 'step_loss', and 'stopped'
        (None, or why training ended early: divergence, a callback, or an interrupt).

        Validation data (never trained on) is either ``validation=(x_val, y_val)`` or
        ``validation_split=f``: the LAST fraction f of (x, y), held out before any shuffling
        (Keras' rule, so put the data in random order first, or use ``tn.split`` for a shuffled,
        stratified split). ``augment``: a function ``x_batch -> x_batch`` applied to every
        training batch, never to validation data (e.g. ``lambda xb: tn.data.shift_images(xb,
        2)``); the reported training loss and accuracy are then those of augmented batches.
        ``drop_last=True`` skips each epoch's final, smaller batch. A net with BatchNorm cannot
        train on a batch of one sample, so fit refuses data that would leave one over unless
        ``drop_last`` is set.

        A NaN/inf loss stops training with a DivergenceWarning and rolls the net (parameters
        and layer state) back to the start of the latest epoch whose first step still had a
        finite loss, and resets the optimizer, so a lower learning rate can carry on from there.
        Ctrl-C (or a dashboard's Stop) ends training cleanly, keeping the history up to that
        point; a Ctrl-C in the middle of a step waits for the step to finish."""
        x, y, validation = self._check_fit_args(x, y, epochs, batch_size, validation,
                                                validation_split, augment, drop_last)
        batches = BatchIterator(x, y, batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last)
        self._augment = augment
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
        bar = progress_bar(batches, f"epoch {epoch + 1}/{epochs}", unit="batch", enabled=progress)
        for xb, yb in bar:
            if self._augment is not None:
                xb = self._augmented(xb)
            self._ctrl_c.busy = True  # a Ctrl-C waits for the step and its record (see fit)
            value, pred = self._train_batch(xb, yb)
            self.history["step_loss"].append(value)
            self._ctrl_c.release()
            if not math.isfinite(value):
                # Back to the start of this epoch if it began well, else of the last one that
                # did; with none (the very first step failed) to the net as fit found it.
                return self._diverged(epoch, (epoch, snapshot) if seen
                                      else self._last_good or (None, snapshot))
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
        bar.set_postfix({k: f"{v:.4f}" for k, v in logs.items()})
        bar.close()
        for cb in callbacks:
            cb.on_epoch_end(self, epoch, logs)

    def _augmented(self, xb):
        out = self._augment(xb)
        if not isinstance(out, np.ndarray) or out.shape != xb.shape or out.dtype != xb.dtype:
            raise ConfigError(f"Model.fit: augment must return an array shaped and typed like its "
                              f"input {xb.shape} {xb.dtype}, got {getattr(out, 'shape', out)!r} "
                              f"{getattr(out, 'dtype', '')}")
        return out

    def _diverged(self, epoch, rollback):
        """Stop, and restore ``rollback`` = (epoch, net.state_dict() at its start). Parameters
        that are merely finite can still be so large that the loss overflows at once, so only
        an epoch whose first step went well counts. Epoch None: the very first step failed; it
        changed no parameter, but its forward may have moved layer state (BatchNorm's)."""
        good_epoch, arrays = rollback
        self.net.load_state_dict(arrays)
        where = ("keeps its parameters (the very first step failed)" if good_epoch is None else
                 f"is back at its parameters from the start of epoch {good_epoch + 1}")
        self.optimizer.reset()  # its momenta belong to the run that blew up
        self.history["stopped"] = (f"diverged: loss became non-finite at step "
                                   f"{len(self.history['step_loss'])} (epoch {epoch + 1})")
        self.stop_training = True
        warnings.warn(f"Training {self.history['stopped']}; the model {where}. "
                      f"Try a lower learning rate (now {self.optimizer.lr:g}).",
                      DivergenceWarning, stacklevel=4)

    def _as_input(self, x, what):
        if getattr(self.net, "takes_ids", False):  # token ids stay integers (Embedding)
            return check_ids(x, what, "Model")
        return check_batch(x, what, "Model", self.dtype)  # the one place data is cast

    def _as_target(self, y, n):
        return check_targets(y, n, "Model")

    def _check_fit_args(self, x, y, epochs, batch_size, validation, validation_split=None,
                        augment=None, drop_last=False):
        """Check everything before a single parameter changes (validation data too, so a
        mistake there fails now rather than after an epoch of training)."""
        check_int(epochs, "epochs", "Model.fit", minimum=0)
        check_int(batch_size, "batch_size", "Model.fit")
        if validation is not None and (not isinstance(validation, (tuple, list)) or len(validation) != 2):
            raise ConfigError("Model.fit: validation must be a pair (x_val, y_val)")
        if augment is not None and not callable(augment):
            raise ConfigError(f"Model.fit: augment must be a function x_batch -> x_batch, got "
                              f"{augment!r}")
        if validation_split is not None:
            if validation is not None:
                raise ConfigError("Model.fit: give validation=(x_val, y_val) or "
                                  "validation_split=, not both")
            (x, y), validation = holdout_last(x, y, validation_split)
        x, y = self._checked_pair(x, y, "x")
        if len(x) % batch_size == 1 and not drop_last \
                and any(isinstance(layer, BatchNorm) for _, layer in leaf_layers(self.net)):
            raise ConfigError(f"Model.fit: {len(x)} samples in batches of {batch_size} leave a "
                              "last batch of one sample, and BatchNorm cannot train on one; "
                              "hint: pass drop_last=True, or another batch_size")
        if validation is not None:
            validation = self._checked_pair(*validation, "validation x")
        return x, y, validation

    def _checked_pair(self, x, y, what):
        x, y = self._as_input(x, what), self._as_target(y, len(x))
        out = self.net.forward(x[:1], training=False)  # builds lazy layers, checks every shape
        self.loss(np.zeros((len(y),) + out.shape[1:], dtype=out.dtype), y)  # checks all targets
        return x, y

    def save(self, path):
        """Parameters, layer state and architecture to ``path`` (.npz); see tinynn.saving."""
        return saving.save(self, path)

    def load(self, path):
        """Load a file written by ``save`` (any format version), and reset the optimizer. The
        model takes the file's dtype (its parameters, state and predictions); see
        tinynn.saving."""
        return saving.load(self, path)

    def __repr__(self):
        return f"Model({self.net!r},\n  loss={self.loss!r}, optimizer={self.optimizer!r})"
