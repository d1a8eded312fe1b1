"""Notebook 13's checks: a right answer passes, each named mistake is named (DESIGN §5)."""
import numpy as np
import pytest

import tinynn as tn
from tinynn.course.exercises.n13_language_models import (check_bigram_optimum,
                                                          check_embedding_backward)


def optimum(counts, smoothing=0):
    c = counts + smoothing
    with np.errstate(divide="ignore"):
        return np.log(c / c.sum(axis=1, keepdims=True))


def shifted(counts, smoothing=0):           # any constant per row is allowed
    with np.errstate(divide="ignore"):
        return np.log(counts + smoothing) + 3.0


def columns(counts, smoothing=0):
    c = counts + smoothing
    with np.errstate(divide="ignore"):
        return np.log(c / c.sum(axis=0, keepdims=True))


def no_log(counts, smoothing=0):
    c = counts + smoothing
    return c / c.sum(axis=1, keepdims=True)


def no_smoothing(counts, smoothing=0):
    return optimum(counts)


def backward(ids, grad, n):
    dw = np.zeros((n, grad.shape[-1]))
    np.add.at(dw, ids, grad)
    return dw


def assigned(ids, grad, n):
    dw = np.zeros((n, grad.shape[-1]))
    dw[ids.reshape(-1)] = grad.reshape(-1, grad.shape[-1])
    return dw


def averaged(ids, grad, n):
    counts = np.bincount(ids.reshape(-1), minlength=n)[:, None]
    return backward(ids, grad, n) / np.maximum(counts, 1)


def transposed(ids, grad, n):
    return backward(ids, grad, n).T


def first_only(ids, grad, n):
    return backward(ids[:1], grad[:1], n)


def todo(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("candidate", [optimum, shifted])
def test_bigram_optimum_passes(candidate, capsys):
    assert check_bigram_optimum(candidate)
    assert check_bigram_optimum(candidate, vocab=8, smoothing=(0, 2), seed=3)


@pytest.mark.parametrize("candidate, words", [
    (columns, "wrong axis"), (no_log, "take the log"), (no_smoothing, "-inf"),
    (todo, "not yet implemented")])
def test_bigram_optimum_names_mistakes(candidate, words, capsys):
    assert not check_bigram_optimum(candidate)
    assert words in capsys.readouterr().out


def test_embedding_backward_passes(capsys):
    assert check_embedding_backward(backward, tn.Embedding)
    assert check_embedding_backward(backward, tn.Embedding, batch=4, time=7, num_embeddings=9,
                                    dim=3, seed=5)


@pytest.mark.parametrize("candidate, words", [
    (assigned, "accumulate"), (averaged, "averaged"), (transposed, "transpose"),
    (first_only, "first sequence"), (todo, "not yet implemented")])
def test_embedding_backward_names_mistakes(candidate, words, capsys):
    assert not check_embedding_backward(candidate, tn.Embedding)
    assert words in capsys.readouterr().out
