"""Notebook 00's epoch_accuracy check: the reference passes, each planted mistake is named, and
the hidden test tells a right answer from a wrong one."""
import numpy as np
import pytest

from tinynn.course.exercises import check_epoch_accuracy, registry
from tinynn.course.exercises.n00_overview import epoch_accuracy_reference


def weighted(batch_accuracies, batch_sizes):
    a, n = np.asarray(batch_accuracies), np.asarray(batch_sizes)
    return np.sum(a * n) / np.sum(n)


def test_the_reference_and_an_honest_answer_pass(capsys):
    assert check_epoch_accuracy(epoch_accuracy_reference) is True
    assert check_epoch_accuracy(weighted) is True
    assert "✔" in capsys.readouterr().out


def test_a_hand_computed_epoch():
    # 2 batches: 64 samples at 50 %, 16 at 100 %: (32 + 16) / 80 = 0.6, not (0.5 + 1) / 2
    assert epoch_accuracy_reference([0.5, 1.0], [64, 16]) == pytest.approx(0.6)


def _index_weighted(a, n, start):
    w = np.arange(start, start + len(a))
    return np.sum(a * w) / np.sum(w)


@pytest.mark.parametrize("buggy, keyword", [
    (lambda a, n: np.mean(a), "plain mean"),
    (lambda a, n: _index_weighted(a, n, 1), "by its index (1, 2"),
    (lambda a, n: _index_weighted(a, n, 0), "by its index (0, 1"),
    (lambda a, n: np.sum(a * n) / len(n), "divides by the number of batches"),
    (lambda a, n: np.sum(a * n) / (len(n) * n[0]), "as large as the first"),
    (lambda a, n: a[-1], "only the last batch"),
    (lambda a, n: np.sum(a[:-1] * n[:-1]) / np.sum(n[:-1]), "leaves out the last batch"),
    (lambda a, n: np.sum(a * n), "number of right samples"),
    (lambda a, n: 100 * weighted(a, n), "percent"),
    (lambda a, n: a * n / np.sum(n), "one number"),
])
def test_each_mistake_is_named(capsys, buggy, keyword):
    assert check_epoch_accuracy(buggy) is False
    assert keyword in capsys.readouterr().out


def test_not_implemented_and_in_place_changes(capsys):
    def todo(a, n):
        raise NotImplementedError()

    def in_place(a, n):
        a *= n
        return a.sum() / n.sum()

    assert check_epoch_accuracy(todo) is False
    assert "not yet implemented" in capsys.readouterr().out
    assert check_epoch_accuracy(in_place) is False
    assert "in place" in capsys.readouterr().out


def test_the_hidden_trials_grade_right_and_wrong(capsys):
    spec = registry()["epoch_accuracy"]
    rng = np.random.default_rng(5)
    assert all(check() for check in spec.hidden_checks([weighted], rng, seed=7))
    assert not all(check() for check in spec.hidden_checks([lambda a, n: np.mean(a)], rng, seed=7))
    assert "plain mean" in capsys.readouterr().out
