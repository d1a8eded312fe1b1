"""Notebook 06's checks name the mistakes: the confusion matrix and precision/recall."""
import numpy as np
import pytest

from tinynn.course.exercises import check_confusion_matrix, check_precision_recall


def good_matrix(logits, labels, n):
    counts = np.zeros((n, n), dtype=int)
    for t, p in zip(labels, logits.argmax(axis=1)):
        counts[t, p] += 1
    return counts


def once(logits, labels, n):
    counts = np.zeros((n, n), dtype=int)
    counts[labels, logits.argmax(axis=1)] += 1
    return counts


def sized_from_data(logits, labels, n):
    return good_matrix(logits, labels, int(max(labels.max(), logits.argmax(axis=1).max())) + 1)


@pytest.mark.parametrize("buggy, keyword", [
    (once, "at most once"),
    (lambda l, y, n: good_matrix(l, y, n).T, "transposed"),
    (sized_from_data, "even if a class never occurs"),
    (lambda l, y, n: good_matrix(l, y, n).astype(float), "counts are integers"),
    (lambda l, y, n: good_matrix(l, y, n) / max(len(y), 1), "fractions of all samples"),
])
def test_confusion_matrix_mistakes_are_named(capsys, buggy, keyword):
    assert check_confusion_matrix(buggy) is False
    assert keyword in capsys.readouterr().out


def good_pr(counts):
    c = np.asarray(counts, dtype=float)
    d, cols, rows = c.diagonal(), c.sum(axis=0), c.sum(axis=1)
    return (np.where(cols > 0, d / np.maximum(cols, 1), 0.0),
            np.where(rows > 0, d / np.maximum(rows, 1), 0.0))


def nan_pr(counts):
    c = np.asarray(counts, dtype=float)
    return c.diagonal() / c.sum(axis=0), c.diagonal() / c.sum(axis=1)


@pytest.mark.parametrize("buggy, keyword", [
    (lambda c: good_pr(c)[::-1], "swapped"),
    (nan_pr, "NaN"),
    (lambda c: tuple(100 * a for a in good_pr(c)), "percent"),
    (lambda c: (good_pr(c)[1], good_pr(c)[1]), "both the recall"),
    (lambda c: good_pr(c)[0], "two arrays"),
])
def test_precision_recall_mistakes_are_named(capsys, buggy, keyword):
    assert check_precision_recall(buggy) is False
    assert keyword in capsys.readouterr().out


def test_correct_versions_pass(capsys):
    assert check_confusion_matrix(good_matrix) and check_precision_recall(good_pr)
