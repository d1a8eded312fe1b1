"""tinynn.functional's softmax family and matmul_rows, and tinynn.random.fork."""
import numpy as np

import tinynn as tn
from tinynn import functional as F
from tinynn import random as tn_random


def test_softmax_and_log_softmax_agree_with_the_definition_and_survive_huge_logits():
    z = np.random.default_rng(0).standard_normal((4, 3, 5))
    for axis in (-1, 0, 1):
        expected = np.exp(z) / np.exp(z).sum(axis=axis, keepdims=True)
        np.testing.assert_allclose(F.softmax(z, axis=axis), expected, rtol=1e-12)
        np.testing.assert_allclose(F.log_softmax(z, axis=axis), np.log(expected), rtol=1e-12)
    huge = np.array([[1e4, 0.0, -1e4]])
    assert np.all(np.isfinite(F.log_softmax(huge))) and F.softmax(huge)[0, 0] == 1.0


def test_matmul_rows_is_x_at_w_for_any_leading_shape_and_any_memory_layout():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((7, 3))
    for shape in [(5, 7), (3, 4, 7), (2, 3, 4, 7), (0, 4, 7)]:
        x = rng.standard_normal(shape)
        y = F.matmul_rows(x, w)
        assert y.shape == shape[:-1] + (3,)
        np.testing.assert_allclose(y, x @ w, rtol=1e-12, atol=1e-12)
    strided = rng.standard_normal((4, 7, 3)).transpose(0, 2, 1)    # (4, 3, 7), not contiguous
    np.testing.assert_allclose(F.matmul_rows(strided, w), strided @ w, rtol=1e-12)
    np.testing.assert_allclose(F.matmul_rows(x, w.T.copy().T), x @ w, rtol=1e-12)


def test_fork_gives_the_block_its_own_stream_and_the_caller_its_own_back():
    tn.seed(3)
    expected = tn_random.rng().random(4)
    tn.seed(3)
    with tn_random.fork(7) as gen:
        inside = gen.random(2)
    with tn_random.fork() as gen:
        continued = gen.random(4)
    np.testing.assert_array_equal(tn_random.rng().random(4), expected)
    np.testing.assert_array_equal(continued, expected)
    np.testing.assert_array_equal(inside, np.random.default_rng(7).random(2))


def test_fork_restores_the_generator_when_the_block_raises():
    tn.seed(0)
    before = tn_random.rng()
    try:
        with tn_random.fork(1):
            raise RuntimeError
    except RuntimeError:
        pass
    assert tn_random.rng() is before
