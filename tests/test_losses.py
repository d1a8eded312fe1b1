"""Losses: gradcheck on random shapes, values and gradients against independent formulas written
with Python's math in float64, stability for logits of magnitude 1e4, and the dtype contract."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinynn as tn
from conftest_helpers import GRAD_TOL, arrays, max_grad_error

SEEDS = st.integers(0, 2**32 - 1)
BATCH = st.integers(1, 5)
CLASSES = st.integers(2, 6)
FAST = settings(max_examples=15, deadline=None)


# ------------------------------------------------------------------ independent references
def mse_reference(pred, target):
    diffs = [(p - t) ** 2 for p, t in zip(np.ravel(pred), np.ravel(target))]
    return math.fsum(diffs) / len(diffs), 2.0 * (pred - target) / pred.size


def softmax_ce_reference(logits, labels):
    """Per row: log Σⱼ exp(zⱼ) − z_label via an explicit log-sum-exp with Python floats;
    gradient (softmax − onehot) / batch."""
    n, c = logits.shape
    losses, grad = [], np.zeros((n, c))
    for i in range(n):
        row = [float(v) for v in logits[i]]
        m = max(row)
        lse = m + math.log(math.fsum(math.exp(v - m) for v in row))
        losses.append(lse - row[labels[i]])
        for j in range(c):
            grad[i, j] = (math.exp(row[j] - lse) - (1.0 if j == labels[i] else 0.0)) / n
    return math.fsum(losses) / n, grad


def sigmoid_ce_reference(logits, target):
    """−[t log σ(z) + (1 − t) log(1 − σ(z))] per element, averaged; grad (σ(z) − t) / size.
    With −log σ(z) = log(1 + e⁻ᶻ) and −log(1 − σ(z)) = log(1 + eᶻ), exact in floating point."""
    z, t = np.ravel(logits), np.ravel(target)
    sig = [1.0 / (1.0 + math.exp(-v)) for v in z]
    values = [ti * math.log1p(math.exp(-v)) + (1 - ti) * math.log1p(math.exp(v))
              for v, ti in zip(z, t)]
    grad = (np.array(sig) - t).reshape(np.shape(logits)) / z.size
    return math.fsum(values) / len(values), grad


def one_hot(labels, classes):
    return np.eye(classes)[labels]


def classification_case(seed, batch, classes, scale=3.0):
    logits = arrays(seed, (batch, classes), scale=scale)
    labels = np.random.default_rng(seed + 1).integers(0, classes, batch)
    return logits, labels


# ------------------------------------------------------------------ gradient checks
@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=SEEDS)
def test_mse_gradcheck(shape, seed):
    pred, target = arrays(seed, tuple(shape), tuple(shape))
    assert max_grad_error(tn.MSE(), pred, target) < GRAD_TOL


@pytest.mark.parametrize("target_kind", ["index", "one_hot"])
@FAST
@given(batch=BATCH, classes=CLASSES, seed=SEEDS)
def test_softmax_cross_entropy_gradcheck(target_kind, batch, classes, seed):
    # Moderate logits: for one confidently right sample every gradient is ~e^-gap, and central
    # differences of a loss that small drown in rounding (a limit of the check, not the loss).
    logits, labels = classification_case(seed, batch, classes, scale=1.5)
    target = labels if target_kind == "index" else one_hot(labels, classes)
    assert max_grad_error(tn.SoftmaxCrossEntropy(), logits, target) < GRAD_TOL


@FAST
@given(batch=BATCH, outputs=st.integers(1, 4), seed=SEEDS)
def test_sigmoid_cross_entropy_gradcheck(batch, outputs, seed):
    logits = arrays(seed, (batch, outputs), scale=3.0)
    target = np.random.default_rng(seed + 1).uniform(0, 1, (batch, outputs))
    assert max_grad_error(tn.SigmoidCrossEntropy(), logits, target) < GRAD_TOL


# ------------------------------------------------------------------ forward vs formulas
@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3), seed=SEEDS)
def test_mse_matches_formula(shape, seed):
    pred, target = arrays(seed, tuple(shape), tuple(shape))
    value, grad = tn.MSE()(pred, target)
    ref_value, ref_grad = mse_reference(pred, target)
    assert isinstance(value, float)
    assert value == pytest.approx(ref_value, rel=1e-12)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12)


@pytest.mark.parametrize("target_kind", ["index", "one_hot", "float_index"])
@FAST
@given(batch=BATCH, classes=CLASSES, seed=SEEDS)
def test_softmax_cross_entropy_matches_log_sum_exp(target_kind, batch, classes, seed):
    logits, labels = classification_case(seed, batch, classes, scale=5.0)
    target = {"index": labels, "one_hot": one_hot(labels, classes),
              "float_index": labels.astype(np.float64)}[target_kind]
    value, grad = tn.SoftmaxCrossEntropy()(logits, target)
    ref_value, ref_grad = softmax_ce_reference(logits, labels)
    assert isinstance(value, float)
    assert value == pytest.approx(ref_value, rel=1e-12, abs=1e-14)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-15)


@FAST
@given(batch=BATCH, outputs=st.integers(1, 4), seed=SEEDS)
def test_sigmoid_cross_entropy_matches_formula(batch, outputs, seed):
    logits = arrays(seed, (batch, outputs), scale=4.0)
    target = np.random.default_rng(seed + 1).uniform(0, 1, (batch, outputs))
    value, grad = tn.SigmoidCrossEntropy()(logits, target)
    ref_value, ref_grad = sigmoid_ce_reference(logits, target)
    assert value == pytest.approx(ref_value, rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10, atol=1e-15)


def test_sigmoid_cross_entropy_accepts_labels_for_a_single_output():
    logits = arrays(0, (6, 1))
    labels = np.array([0, 1, 1, 0, 1, 0])
    value, grad = tn.SigmoidCrossEntropy()(logits, labels)
    ref_value, ref_grad = sigmoid_ce_reference(logits, labels[:, None].astype(float))
    assert value == pytest.approx(ref_value, rel=1e-12)
    assert grad.shape == (6, 1)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-12)


def test_plain_list_targets_are_accepted():
    logits = arrays(1, (3, 4))
    assert tn.SoftmaxCrossEntropy()(logits, [0, 3, 1])[0] == pytest.approx(
        softmax_ce_reference(logits, [0, 3, 1])[0], rel=1e-12)


# ------------------------------------------------------------------ numerical stability
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_cross_entropy_is_exact_for_logits_of_magnitude_1e4(dtype):
    logits = np.array([[1e4, 0.0, -1e4]], dtype=dtype)
    loss = tn.SoftmaxCrossEntropy()
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        for label, expected in [(0, 0.0), (1, 1e4), (2, 2e4)]:
            value, grad = loss(logits, np.array([label]))
            assert value == expected
            assert np.isfinite(grad).all() and grad.dtype == dtype
            expected_grad = np.zeros(3, dtype)
            expected_grad[0] += 1.0
            expected_grad[label] -= 1.0
            np.testing.assert_array_equal(grad[0], expected_grad)
        value, _ = loss(logits, one_hot(np.array([1]), 3).astype(dtype))
        assert value == 1e4


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_cross_entropy_is_finite_for_logits_of_magnitude_1e4(dtype):
    logits = np.array([[1e4, -1e4, 1e4, -1e4]], dtype=dtype)
    target = np.array([[1.0, 0.0, 0.0, 1.0]], dtype=dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        value, grad = tn.SigmoidCrossEntropy()(logits, target)
    assert value == pytest.approx((0 + 0 + 1e4 + 1e4) / 4)
    np.testing.assert_array_equal(grad, np.array([[0.0, 0.0, 0.25, -0.25]], dtype))
    assert grad.dtype == dtype


# ------------------------------------------------------------------ dtype contract
LOSS_CASES = {
    "MSE": (tn.MSE, lambda pred: pred * 0.5),
    "SoftmaxCrossEntropy_index": (tn.SoftmaxCrossEntropy, lambda pred: np.array([0, 2, 1, 3])),
    "SoftmaxCrossEntropy_one_hot": (tn.SoftmaxCrossEntropy,
                                    lambda pred: np.eye(4)[[0, 2, 1, 3]]),  # float64 one-hot
    "SigmoidCrossEntropy": (tn.SigmoidCrossEntropy, lambda pred: np.full(pred.shape, 0.25)),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_losses_return_a_float_and_a_grad_in_preds_dtype(name, dtype):
    factory, make_target = LOSS_CASES[name]
    pred = arrays(0, (4, 4)).astype(dtype)
    value, grad = factory()(pred, make_target(pred))
    assert type(value) is float and math.isfinite(value)
    assert grad.shape == pred.shape and grad.dtype == dtype


@pytest.mark.parametrize("name", list(LOSS_CASES))
def test_losses_do_not_modify_their_inputs(name):
    factory, make_target = LOSS_CASES[name]
    pred = arrays(0, (4, 4))
    target = make_target(pred)
    pred_copy, target_copy = pred.copy(), np.copy(target)
    factory()(pred, target)
    np.testing.assert_array_equal(pred, pred_copy)
    np.testing.assert_array_equal(target, target_copy)


def test_sigmoid_cross_entropy_gradient_is_accurate_in_float32_tails():
    """(σ(z) − t) / size with an accurate σ: the old ½(1 + tanh(z/2)) gave 0 at z = −20."""
    z = np.array([[-20.0], [-17.0]], np.float32)
    _, grad = tn.SigmoidCrossEntropy()(z, np.array([0.0, 0.0]))
    expected = np.array([1 / (1 + math.exp(20)), 1 / (1 + math.exp(17))]) / 2
    assert grad.dtype == np.float32
    np.testing.assert_allclose(grad[:, 0], expected, rtol=1e-5)
