"""Tests for tinynn.data: the toy 2-D datasets; and that importing tinynn touches no network."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynn.data as data
from tinynn.errors import ConfigError
from tinynn.random import rng, seed


# --------------------------------------------------------------------------- toy datasets

TOYS = [data.spirals, data.moons, data.circles]


def _n_classes(make, **kwargs):
    return kwargs.get("n_classes", 3) if make is data.spirals else 2


@pytest.mark.parametrize("make", TOYS)
def test_toy_defaults(make):
    x, y = make(seed=0)
    n = {data.spirals: 300, data.moons: 200, data.circles: 200}[make]
    assert x.shape == (n, 2) and x.dtype == np.float32
    assert y.shape == (n,) and y.dtype == np.int64
    k = _n_classes(make)
    assert np.bincount(y).tolist() == [n // k] * k
    assert np.any(np.diff(y) < 0), "classes should be shuffled, not in blocks"
    assert np.all(np.isfinite(x))


@settings(max_examples=40, deadline=None)
@given(make=st.sampled_from(TOYS), n=st.integers(7, 400), k=st.integers(2, 7),
       noise=st.floats(0, 2), seed_=st.integers(0, 2**32))
def test_toy_sizes_balanced(make, n, k, noise, seed_):
    kwargs = {"n_classes": k} if make is data.spirals else {}
    x, y = make(n_samples=n, noise=noise, seed=seed_, **kwargs)
    counts = np.bincount(y, minlength=_n_classes(make, **kwargs))
    assert x.shape == (n, 2) and y.shape == (n,) and counts.sum() == n
    assert counts.max() - counts.min() <= 1


@pytest.mark.parametrize("make", TOYS)
def test_toy_seeds(make):
    a, b, c = make(seed=1), make(seed=1), make(seed=2)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    state = rng().bit_generator.state
    make(seed=3)
    assert rng().bit_generator.state == state, "an int seed must not use the global generator"
    seed(7)
    d = make()
    seed(7)
    assert np.array_equal(d[0], make()[0])


def test_toy_shapes_without_noise():
    x, y = data.circles(n_samples=100, noise=0, factor=0.3, seed=0)
    radius = np.hypot(x[:, 0], x[:, 1])
    assert np.allclose(radius[y == 0], 1) and np.allclose(radius[y == 1], 0.3)
    x, y = data.moons(n_samples=100, noise=0, seed=0)
    assert np.allclose(np.hypot(*x[y == 0].T), 1) and np.all(x[y == 0, 1] >= -1e-6)
    assert np.allclose(np.hypot(x[y == 1, 0] - 1, x[y == 1, 1] - 0.5), 1)
    x, y = data.spirals(n_samples=90, noise=0, seed=0)
    assert np.all(np.hypot(*x.T) <= 1 + 1e-6)


@pytest.mark.parametrize("make, kwargs", [
    (data.spirals, {"n_samples": 2}),  # fewer points than the 3 classes
    (data.spirals, {"n_classes": 1}),
    (data.spirals, {"n_samples": 2.5}),
    (data.moons, {"n_samples": 1}),
    (data.moons, {"n_samples": True}),
    (data.moons, {"noise": -0.1}),
    (data.moons, {"noise": float("nan")}),
    (data.circles, {"noise": "lots"}),
    (data.circles, {"factor": 1.0}),
    (data.circles, {"factor": 0}),
    (data.circles, {"seed": -1}),
    (data.spirals, {"seed": 1.5}),
])
def test_toy_bad_arguments(make, kwargs):
    with pytest.raises(ConfigError):
        make(**kwargs)


def test_importing_tinynn_touches_no_network(tmp_path):
    """Issue 8: no network access at import time, even with a URL mirror configured and no
    cache: a fresh interpreter whose sockets refuse to connect imports every core module."""
    code = "\n".join([
        "import socket",
        "attempts = []",
        "def refuse(*args, **kwargs):",
        "    attempts.append(args)",
        "    raise OSError('network access at import time')",
        "socket.socket.connect = socket.getaddrinfo = socket.create_connection = refuse",
        "import tinynn, tinynn.data, tinynn.datasets, tinynn.conv, tinynn.gradcheck, tinynn.course.exercises, tinynn.course.classroom",
        "assert not attempts, attempts",
        "print('imported without network')",
    ])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TINYNN_")}
    env.update(TINYNN_DATA_MIRROR="http://mirror.invalid/mnist/", TINYNN_DATA_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "imported without network"
