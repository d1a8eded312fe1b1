"""Metrics: numbers for humans (the loss is for the optimizer)."""
import numpy as np

from .errors import ShapeError


def predicted_classes(scores, threshold=0.0):
    """Class indices from network outputs: argmax over classes, or ``score > threshold`` for a
    single output (threshold 0 for logits, 0.5 for probabilities). Integer input passes through."""
    scores = np.asarray(scores)
    if scores.dtype.kind in "iu":  # already class indices
        return scores.reshape(len(scores))
    if scores.ndim == 2 and scores.shape[1] > 1:
        return scores.argmax(axis=1)
    return (scores.reshape(len(scores)) > threshold).astype(np.int64)


def as_labels(target):
    """Integer labels from class indices or one-hot rows."""
    target = np.asarray(target)
    if target.ndim == 2 and target.shape[1] > 1:
        return target.argmax(axis=1)
    return target.reshape(len(target)).astype(np.int64)


def accuracy(scores, target, threshold=0.0):
    """Fraction of samples whose predicted class equals the target class. For a sequence,
    scores (batch, time, classes) and target class indices (batch, time): the fraction of all
    positions."""
    scores, target = np.asarray(scores), np.asarray(target)
    if scores.ndim == 3 and target.shape == scores.shape[:2]:
        scores, target = scores.reshape(-1, scores.shape[2]), target.reshape(-1)
    predicted, actual = predicted_classes(scores, threshold), as_labels(target)
    if len(predicted) != len(actual):
        raise ShapeError(f"accuracy: {len(predicted)} predictions but {len(actual)} targets")
    return float(np.mean(predicted == actual))


def confusion_matrix(scores, target, n_classes=None):
    """counts[i, j] = how many samples of true class i were predicted as class j."""
    predicted, actual = predicted_classes(scores), as_labels(target)
    if n_classes is None:
        n_classes = int(max(predicted.max(), actual.max())) + 1
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (actual, predicted), 1)
    return counts


def precision_recall(counts):
    """Per-class (precision, recall) from a confusion matrix ``counts[true, predicted]``:
    precision[k] = counts[k, k] / (column k's sum: everything predicted as k), recall[k] =
    counts[k, k] / (row k's sum: every sample of class k); 0 where the sum is 0 (a class never
    predicted, or never present)."""
    counts = np.asarray(counts, dtype=np.float64)
    hits, predicted, actual = counts.diagonal(), counts.sum(axis=0), counts.sum(axis=1)
    precision = np.divide(hits, predicted, out=np.zeros_like(hits), where=predicted > 0)
    recall = np.divide(hits, actual, out=np.zeros_like(hits), where=actual > 0)
    return precision, recall
