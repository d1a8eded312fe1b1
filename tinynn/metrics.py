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


def calibration(probabilities, target, bins=10):
    """How far a classifier's confidence can be trusted: a reliability table and its error.

    The *confidence* of a prediction is its largest class probability, max_k p_k (pass
    probabilities, softmax(logits), not logits). A classifier is *calibrated* when, among the
    predictions it makes with confidence about p, a fraction about p is right. Sort the N
    predictions into ``bins`` bins of equal width, (0, 1/B], (1/B, 2/B], …, ((B−1)/B, 1], and
    compare per bin b, holding n_b predictions:

        conf_b = their mean confidence,    acc_b = the fraction of them that is right.

    conf_b > acc_b is over-confidence, conf_b < acc_b under-confidence. The *expected
    calibration error* (Naeini et al., 2015; Guo et al., 2017) is the mean gap, each bin
    weighted by its share of the predictions:

        ECE = Σ_b (n_b / N) · |acc_b − conf_b|

    It is 0 for a calibrated classifier, and 1 − accuracy for one that is 100 % sure of every
    answer. It says nothing about accuracy itself: a classifier that guesses with confidence
    1/C is calibrated if it is right a fraction 1/C of the time.

    Returns ``{"edges": (B + 1,), "confidence": (B,), "accuracy": (B,), "count": (B,) ints,
    "ece": float}``; an empty bin has confidence and accuracy NaN and adds nothing."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] < 2:
        raise ShapeError(f"calibration: expected probabilities of shape (N, classes ≥ 2), got "
                         f"{probabilities.shape}")
    actual = as_labels(target)
    if len(actual) != len(probabilities):
        raise ShapeError(f"calibration: {len(probabilities)} predictions but {len(actual)} "
                         "targets")
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == actual
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds (edges[b], edges[b + 1]]: the right end closed, so a confidence of 1 is in
    # the last bin
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(index, confidence, minlength=bins) / count
        bin_accuracy = np.bincount(index, right.astype(np.float64), minlength=bins) / count
    gaps = np.where(count > 0, np.abs(bin_accuracy - mean_confidence), 0.0)
    ece = float(np.sum(count * gaps) / max(len(confidence), 1))
    return {"edges": edges, "confidence": mean_confidence, "accuracy": bin_accuracy,
            "count": count, "ece": ece}
