"""Losses: one number that says how wrong the predictions are, and its gradient.

``loss(pred, target) -> (value, grad)``: ``value`` is the mean over the batch (a Python float) and
``grad = d value / d pred`` has pred's shape and dtype. Because the value is a mean, the gradient
already carries the 1/batch factor, and layers simply sum over the batch.
"""
import numpy as np

from .errors import DataError, ShapeError
from .functional import log_softmax, sigmoid


class Loss:
    """Base class: subclasses implement ``forward(pred, target) -> (value, grad)``."""

    def __call__(self, pred, target):
        target = np.asarray(target)  # a plain list of labels is fine
        if pred.shape[0] == 0:
            raise ShapeError(f"{type(self).__name__}: empty batch (pred has shape {pred.shape})")
        if len(target) != len(pred):
            raise ShapeError(f"{type(self).__name__}: pred has {len(pred)} samples but target has "
                             f"{len(target)}")
        if target.dtype.kind == "f" and not np.isfinite(target).all():
            raise DataError(f"{type(self).__name__}: target contains NaN or inf values")
        return self.forward(pred, target)

    def forward(self, pred, target):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


def _same_shape(loss, pred, target):
    if target.shape != pred.shape:
        raise ShapeError(f"{loss}: target shape {target.shape} must equal pred shape {pred.shape}")
    return target.astype(pred.dtype, copy=False)


class MSE(Loss):
    """Mean squared error over all elements: mean((pred − target)²); grad = 2(pred − target)/size."""

    def forward(self, pred, target):
        diff = pred - _same_shape(self, pred, target)
        return float(np.mean(diff * diff)), diff * (2.0 / diff.size)


def class_indices(loss, pred, target):
    """Integer class indices from ``target``: indices pass through (range-checked), a one-hot
    matrix of pred's shape is converted with argmax."""
    n_classes = pred.shape[1]
    if target.ndim == 2 and target.shape == pred.shape:
        row_sums = target.sum(axis=1)
        if not (np.all((target == 0) | (target == 1)) and np.all(row_sums == 1)):
            raise ShapeError(f"{loss}: a 2-D target must be one-hot (one 1 per row); "
                             "otherwise pass integer class indices of shape (batch,)")
        return target.argmax(axis=1)
    if target.ndim != 1:
        raise ShapeError(f"{loss}: expected class indices of shape ({len(pred)},) or one-hot of "
                         f"shape {pred.shape}, got {target.shape}")
    if target.dtype.kind not in "iu":
        if target.dtype.kind != "f" or not np.all(target == np.round(target)):
            raise ShapeError(f"{loss}: class indices must be integers, got dtype {target.dtype}")
        target = target.astype(np.int64)
    if target.min() < 0 or target.max() >= n_classes:
        raise ShapeError(f"{loss}: labels must lie in [0, {n_classes - 1}] for {n_classes} "
                         f"outputs, got min {target.min()} and max {target.max()}")
    return target


class SoftmaxCrossEntropy(Loss):
    """Softmax followed by cross-entropy, fused, for logits of shape (batch, classes), or
    (batch, time, classes) for a sequence model that predicts a class at every position.

    Stable for any logits: log softmax(z)ᵢ = zᵢ − m − log Σⱼ exp(zⱼ − m) with m = maxⱼ zⱼ,
    so the largest exponent is e⁰ = 1 and nothing overflows (try logits of 1e4).
    The fused gradient is beautifully simple: (softmax(z) − onehot(target)) / batch.
    Targets are class indices (or one-hot rows): (batch,) for (batch, classes) logits,
    (batch, time) for a sequence. A sequence is batch·time independent predictions: the value
    is the mean over all of those positions, so the gradient divides by batch·time.
    """

    def forward(self, pred, target):
        if pred.ndim == 3:
            return self._sequence(pred, target)
        if pred.ndim != 2:
            raise ShapeError(f"{self}: expected logits of shape (batch, classes) or (batch, time, "
                             f"classes), got {pred.shape}")
        labels = class_indices(self, pred, target)
        rows = np.arange(len(pred))
        log_prob = log_softmax(pred, axis=1)
        grad = np.exp(log_prob)  # softmax(z), then minus onehot(target), in place
        grad[rows, labels] -= 1.0
        grad *= 1.0 / len(pred)
        return float(-np.mean(log_prob[rows, labels])), grad

    def _sequence(self, pred, target):
        """(batch, time, classes) logits: every position is one row of the 2-D case."""
        batch, time, classes = pred.shape
        if target.shape not in ((batch, time), pred.shape):
            raise ShapeError(f"{self}: expected targets of shape ({batch}, {time}) (class "
                             f"indices) or {pred.shape} (one-hot) for logits of shape "
                             f"{pred.shape}, got {target.shape}")
        rows = target.reshape((batch * time,) + target.shape[2:])
        value, grad = self.forward(pred.reshape(batch * time, classes), rows)
        return value, grad.reshape(pred.shape)


class SigmoidCrossEntropy(Loss):
    """Binary cross-entropy on logits z with targets t in [0, 1], averaged over all elements.

    Stable form: max(z, 0) − z·t + log(1 + e^−|z|). Gradient: (σ(z) − t) / size.
    """

    def forward(self, pred, target):
        if target.ndim == 1 and pred.ndim == 2 and pred.shape[1] == 1:
            target = target[:, None]  # labels (batch,) for a single-output net (batch, 1)
        t = _same_shape(self, pred, target)
        if np.any((t < 0) | (t > 1)):
            raise ShapeError(f"{self}: targets must lie in [0, 1], got min {t.min()} and max {t.max()}")
        value = np.maximum(pred, 0) - pred * t + np.log1p(np.exp(-np.abs(pred)))
        grad = (sigmoid(pred) - t) * (1.0 / pred.size)
        return float(np.mean(value)), grad
