"""Helpers shared by the core test files (imported as ``from conftest_helpers import ...``).

The forward-formula helpers compare a tinynn layer or loss with a reference written independently
in the tests (element by element with Python's ``math``), so a wrong constant in tinynn cannot hide
behind a derivative that is consistent with it: gradcheck would pass, these would not.
"""
import contextlib
import math
import os

import numpy as np
import pytest

import tinynn as tn

GRAD_TOL = 1e-6  # issue 2: max relative error of gradcheck in float64


def arrays(seed, *shapes, scale=1.0):
    """Standard-normal float64 arrays of the given shapes, drawn from ``seed`` (not tinynn's rng)."""
    gen = np.random.default_rng(seed)
    out = [gen.standard_normal(shape) * scale for shape in shapes]
    return out[0] if len(out) == 1 else out


def away_from_zero(x, margin=1e-2):
    """Shift every element at least ``margin`` away from 0 (for kinks such as ReLU's)."""
    return np.where(x >= 0, x + margin, x - margin)


def elementwise(f):
    """A numpy-array version of the scalar Python function ``f`` (one math call per element)."""
    def apply(x):
        return np.array([f(float(v)) for v in np.ravel(x)], dtype=np.float64).reshape(np.shape(x))
    return apply


def assert_forward_matches(layer, reference, x, rtol=1e-10, atol=1e-12):
    """Raise AssertionError unless ``layer.forward(x)`` equals ``reference(x)`` to tolerance."""
    actual = layer.forward(x, training=False)
    expected = reference(x)
    if actual.shape != expected.shape:
        raise AssertionError(f"{layer!r}: shape {actual.shape}, expected {expected.shape}")
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol,
                               err_msg=f"{layer!r} forward differs from the reference formula")


def forward_matches(layer, reference, x, **tolerances):
    """True when ``assert_forward_matches`` passes (for tests that expect a mismatch)."""
    try:
        assert_forward_matches(layer, reference, x, **tolerances)
    except AssertionError:
        return False
    return True


def max_grad_error(layer_or_loss, x, target=None):
    """The largest relative error over every entry gradcheck reports."""
    return max(tn.gradcheck(layer_or_loss, x, target).values())


def gelu_tanh(v):
    """GELU, tanh approximation (Hendrycks & Gimpel): ½v(1 + tanh(√(2/π)(v + 0.044715v³)))."""
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v ** 3)))


def gelu_exact(v):
    """GELU as defined: v·Φ(v) with Φ the standard normal CDF, ½(1 + erf(v/√2))."""
    return v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))


def small_classifier(hidden=8, classes=3, dropout=None, optimizer=None):
    """An unbuilt Net(Dense, ReLU, [Dropout], Dense) in a Model with softmax cross-entropy."""
    layers = [tn.Dense(hidden), tn.ReLU()]
    if dropout is not None:
        layers.append(tn.Dropout(dropout))
    layers.append(tn.Dense(classes))
    return tn.Model(tn.Net(layers), tn.SoftmaxCrossEntropy(), optimizer or tn.Adam(lr=1e-2))


def toy_data(n=60, features=4, classes=3, seed=0):
    """A small separable classification set: float32 x (n, features), int64 labels."""
    gen = np.random.default_rng(seed)
    centres = gen.standard_normal((classes, features)) * 3
    y = np.arange(n) % classes
    x = (centres[y] + gen.standard_normal((n, features))).astype(np.float32)
    return x, y.astype(np.int64)


def params_equal(a, b):
    """Two state_dict() dicts hold the same names and bitwise-equal arrays."""
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def offline_mnist(monkeypatch):
    """MNIST from the cache or the local mirror (never the network); skips the test where
    neither exists. The root conftest.py points TINYNN_DATA_MIRROR at ../shared/data."""
    import tinynn.datasets
    monkeypatch.setattr(tinynn.datasets, "MIRRORS", ())
    monkeypatch.setattr(tinynn.datasets, "NAMES_MIRRORS", ())
    try:
        return tinynn.datasets.load_mnist(progress=False)
    except tn.DataError as err:
        pytest.skip(f"MNIST is not available offline here (no cache, no local mirror): {err}")


def import_torch():
    """PyTorch, the independent reference of tests/test_torch_reference.py, or skip the test
    when it is not installed (torch is never a tinynn dependency). With TINYNN_REQUIRE_TORCH=1
    (CI sets it) a missing torch fails the test instead: there a skipped cross-check means a
    broken set-up, not an optional extra."""
    try:
        import torch
    except ImportError as err:
        if os.environ.get("TINYNN_REQUIRE_TORCH") == "1":
            pytest.fail(f"TINYNN_REQUIRE_TORCH=1 but torch cannot be imported ({err}); install "
                        "it (CPU build) or unset the variable to skip the cross-check")
        pytest.skip("torch is not installed: no cross-check")
    return torch


def one_blas_thread():
    """Limit BLAS to one thread if threadpoolctl is there. These matmuls are small: on a busy
    2-core CI box a multi-threaded OpenBLAS spins and costs ~10× the CPU time for no speed-up."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


class StudentDense(tn.Layer):
    """A student's Dense: the contract as notebook 01 teaches it, backward(self, grad) only."""

    def __init__(self, units):
        super().__init__()
        self.units = units

    def forward(self, x, training=True):
        if "w" not in self.params:
            self.params = {"w": tn.initializers.xavier_uniform((x.shape[1], self.units), x.dtype),
                           "b": np.zeros(self.units, x.dtype)}
            self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.x = x
        return x @ self.params["w"] + self.params["b"]

    def backward(self, grad):
        self.grads["w"] = self.x.T @ grad
        self.grads["b"] = grad.sum(axis=0)
        return grad @ self.params["w"].T
