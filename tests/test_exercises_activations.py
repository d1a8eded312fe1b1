"""Notebook 02's GELU exercise: the check accepts the derived backward and names each slip of
the derivation (tinynn/course/exercises/n02_activations.py)."""
import math

import numpy as np
import pytest

import tinynn as tn
from tinynn.course.exercises import check_layer
from tinynn.course.grading import grade

C, A = math.sqrt(2 / math.pi), 0.044715


def gelu_with(derivative):
    class MyGELU(tn.Layer):
        def forward(self, x, training=True):
            self.x, self.t = x, np.tanh(C * (x + A * x * x * x))
            return 0.5 * x * (1 + self.t)

        def backward(self, grad):
            return grad * derivative(self.x, self.t)
    return MyGELU


def right(x, t):
    return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + 3 * A * x * x)


def test_the_derived_backward_passes_the_check_and_the_hidden_test(capsys):
    assert check_layer(gelu_with(right), tn.GELU) is True
    assert "✔" in capsys.readouterr().out
    MyGELU = gelu_with(right)                      # grade finds the candidate by its name
    grade("gelu", MyGELU)


def exact(x, t):
    erf = np.vectorize(math.erf)
    return 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)


@pytest.mark.parametrize("derivative, words", [
    (lambda x, t: 0.5 * (1 + t), ["product rule", "keeps only ½(1 + tanh u)"]),
    (lambda x, t: 0.5 * x * (1 - t * t) * C * (1 + 3 * A * x * x),
     ["product rule", "add ½(1 + tanh u)"]),
    (lambda x, t: 0.5 * (1 + t) + 0.5 * x * (1 - t * t), ["chain rule", "du/dx"]),
    (lambda x, t: 0.5 * (1 + t) + 0.5 * x * (1 - t) * C * (1 + 3 * A * x * x), ["1 − tanh u"]),
    (lambda x, t: 0.5 * (1 + t) + 0.5 * x * t * (1 - t) * C * (1 + 3 * A * x * x), ["σ(1 − σ)"]),
    (lambda x, t: 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * C * (1 + A * x * x), ["without the 3"]),
    (lambda x, t: 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (1 + 3 * A * x * x), ["√(2/π)"]),
    (exact, ["exact GELU", "tanh approximation"]),
], ids=["first-factor-only", "second-factor-only", "no-du-dx", "one-minus-tanh",
        "sigmoid-rule", "no-3", "no-constant", "exact-gelu"])
def test_each_slip_of_the_derivation_is_named(capsys, derivative, words):
    assert check_layer(gelu_with(derivative), tn.GELU) is False
    out = capsys.readouterr().out
    assert out.startswith("✘") and all(w in out for w in words), out


def test_an_unnamed_wrong_backward_still_fails_plainly(capsys):
    assert check_layer(gelu_with(lambda x, t: 0.3 + 0 * x), tn.GELU) is False
    out = capsys.readouterr().out
    assert "input gradient" in out and "product rule" not in out, out
