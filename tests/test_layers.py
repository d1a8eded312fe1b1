"""Layers: gradients (gradcheck on random shapes), forward against independent formulas,
numerical stability at ±1e4, and the dtype contract (float32 in → float32 out)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinynn as tn
from conftest_helpers import (GRAD_TOL, arrays, assert_forward_matches, away_from_zero, elementwise,
                              forward_matches, gelu_exact, gelu_tanh, max_grad_error)

SEEDS = st.integers(0, 2**32 - 1)
BATCH = st.integers(1, 4)
WIDTH = st.integers(1, 5)
FAST = settings(max_examples=12, deadline=None)


def leaky(alpha):
    return elementwise(lambda v: v if v > 0 else alpha * v)


# name -> (factory, is the activation kinked at 0?, independent reference formula)
ELEMENTWISE = {
    "ReLU": (tn.ReLU, True, elementwise(lambda v: v if v > 0 else 0.0)),
    "LeakyReLU": (lambda: tn.LeakyReLU(0.1), True, leaky(0.1)),
    "Sigmoid": (tn.Sigmoid, False, elementwise(lambda v: 1.0 / (1.0 + math.exp(-v)))),
    "Tanh": (tn.Tanh, False, elementwise(lambda v: math.expm1(2 * v) / (math.expm1(2 * v) + 2))),
    "GELU": (tn.GELU, False, elementwise(gelu_tanh)),
    "Softplus": (tn.Softplus, False, elementwise(lambda v: math.log1p(math.exp(v)))),
}


def dense_reference(layer):
    """y[n, u] = Σᵢ x[n, i] w[i, u] + b[u], summed with Python floats."""
    w = layer.params["w"]
    b = layer.params.get("b", np.zeros(w.shape[1]))

    def reference(x):
        return np.array([[math.fsum(x[n, i] * w[i, u] for i in range(w.shape[0])) + b[u]
                          for u in range(w.shape[1])] for n in range(x.shape[0])])
    return reference


# ------------------------------------------------------------------ gradient checks
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@FAST
@given(batch=BATCH, width=WIDTH, units=WIDTH, seed=SEEDS)
def test_dense_gradcheck(bias, batch, width, units, seed):
    tn.seed(seed)
    layer = tn.Dense(units, bias=bias)
    errors = tn.gradcheck(layer, arrays(seed, (batch, width)))
    assert set(errors) == ({"input", "w", "b"} if bias else {"input", "w"})
    assert max(errors.values()) < GRAD_TOL, errors


@pytest.mark.parametrize("name", list(ELEMENTWISE))
@FAST
@given(batch=BATCH, width=WIDTH, seed=SEEDS)
def test_activation_gradcheck(name, batch, width, seed):
    factory, kinked, _ = ELEMENTWISE[name]
    # Within ±4: much further out a saturated sigmoid/tanh has a derivative (< 1e-4) that
    # central differences cannot resolve against float64 rounding when it is the only element.
    x = np.random.default_rng(seed).uniform(-4, 4, (batch, width))
    if kinked:
        x = away_from_zero(x)
    assert max_grad_error(factory(), x) < GRAD_TOL


@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=3, max_size=4), seed=SEEDS)
def test_flatten_gradcheck_on_3d_and_4d_input(shape, seed):
    layer = tn.Flatten()
    x = arrays(seed, tuple(shape))
    assert layer.forward(x).shape == (shape[0], int(np.prod(shape[1:])))
    assert max_grad_error(layer, x) < GRAD_TOL


@FAST
@given(batch=BATCH, width=WIDTH, p=st.floats(0.0, 0.9), seed=SEEDS)
def test_dropout_gradcheck_in_training_mode(batch, width, p, seed):
    tn.seed(seed)
    assert max_grad_error(tn.Dropout(p), arrays(seed, (batch, width))) < GRAD_TOL


class DropoutWithABrokenBackward(tn.Dropout):
    def backward(self, grad):
        raise RuntimeError("broken backward")


@pytest.mark.parametrize("layer_class", [tn.Dropout, DropoutWithABrokenBackward])
def test_gradcheck_leaves_tinynns_generator_as_it_found_it_even_when_the_layer_raises(layer_class):
    """gradcheck replays tinynn's generator at every forward of a random layer; afterwards the
    generator must be where it was before, also when backward raises half-way (B13)."""
    tn.seed(0)
    before = tn.random.rng().bit_generator.state
    x = arrays(1, (4, 6))
    if layer_class is DropoutWithABrokenBackward:
        with pytest.raises(RuntimeError, match="broken backward"):
            tn.gradcheck(layer_class(0.5), x)
    else:
        tn.gradcheck(layer_class(0.5), x)
    assert tn.random.rng().bit_generator.state == before


# ------------------------------------------------------------------ forward vs formulas
@pytest.mark.parametrize("name", list(ELEMENTWISE))
@FAST
@given(batch=BATCH, width=WIDTH, seed=SEEDS)
def test_activation_forward_matches_formula(name, batch, width, seed):
    factory, _, reference = ELEMENTWISE[name]
    assert_forward_matches(factory(), reference, arrays(seed, (batch, width), scale=4.0))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@FAST
@given(batch=BATCH, width=WIDTH, units=WIDTH, seed=SEEDS)
def test_dense_forward_matches_formula(bias, batch, width, units, seed):
    tn.seed(seed)
    layer = tn.Dense(units, bias=bias)
    x = arrays(seed, (batch, width))
    layer.forward(x)  # build
    if bias:
        layer.params["b"][...] = arrays(seed + 1, (units,))  # zeros would hide a missing "+ b"
    assert_forward_matches(layer, dense_reference(layer), x)


def test_gelu_is_close_to_exact_x_phi_x():
    x = np.linspace(-6, 6, 1201)
    np.testing.assert_allclose(tn.GELU().forward(x), elementwise(gelu_exact)(x), atol=1e-3)


class WrongConstantGELU(tn.GELU):
    """A plausible student mistake: 0.05 instead of 0.044715. The derivative uses the same
    constant, so it is consistent with this (wrong) forward and gradcheck cannot notice."""
    A = 0.05


def test_forward_check_catches_a_wrong_formula_that_gradcheck_accepts():
    x = arrays(7, (4, 5), scale=2.0)
    assert max_grad_error(WrongConstantGELU(), x) < GRAD_TOL  # consistent derivative: passes
    assert forward_matches(tn.GELU(), elementwise(gelu_tanh), x)
    assert not forward_matches(WrongConstantGELU(), elementwise(gelu_tanh), x)
    with pytest.raises(AssertionError, match="reference formula"):
        assert_forward_matches(WrongConstantGELU(), elementwise(gelu_tanh), x)


@FAST
@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), seed=SEEDS)
def test_flatten_forward_and_backward_shapes(shape, seed):
    x = arrays(seed, tuple(shape))
    layer = tn.Flatten()
    y = layer.forward(x)
    np.testing.assert_array_equal(y, np.stack([sample.ravel() for sample in x]))
    np.testing.assert_array_equal(layer.backward(y), x)


def test_dropout_is_inverted_and_off_at_inference():
    tn.seed(3)
    p, x = 0.3, np.ones((200, 100))
    layer = tn.Dropout(p)
    y = layer.forward(x, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1.0 / (1.0 - p))       # survivors scaled by 1/(1-p)
    assert abs(1.0 - kept.mean() - p) < 0.01                    # about p of the units dropped
    assert abs(y.mean() - 1.0) < 0.02                           # expectation unchanged
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)  # same mask backward
    assert layer.forward(x, training=False) is x                # identity at inference
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)  # ...and leaves the mask
    assert tn.Dropout(0.0).forward(x, training=True) is x


def test_dropout_draws_from_the_seeded_generator():
    x = arrays(0, (10, 10))
    tn.seed(5)
    first = tn.Dropout(0.5).forward(x)
    tn.seed(5)
    np.testing.assert_array_equal(tn.Dropout(0.5).forward(x), first)
    assert not np.array_equal(tn.Dropout(0.5).forward(x), first)


# ------------------------------------------------------------------ shapes across random stacks
@settings(max_examples=15, deadline=None)
@given(batch=BATCH, width=WIDTH, units=st.lists(WIDTH, min_size=1, max_size=4), seed=SEEDS)
def test_random_stacks_keep_shapes_through_forward_and_backward(batch, width, units, seed):
    tn.seed(seed)
    layers = []
    for u in units:
        layers += [tn.Dense(u), tn.Tanh()]
    net = tn.Net(layers)
    x = arrays(seed, (batch, width)).astype(np.float32)
    y = net.forward(x, training=True)
    assert y.shape == (batch, units[-1]) and y.dtype == np.float32
    grad_x = net.backward(np.ones_like(y))
    assert grad_x.shape == x.shape and grad_x.dtype == np.float32
    assert all(g.shape == p.shape for g, p in zip(net.grads, net.params))


# ------------------------------------------------------------------ numerical stability
HUGE = [-1e4, -1e3, -50.0, 0.0, 50.0, 1e3, 1e4]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("factory", [tn.Sigmoid, tn.Softplus, tn.Tanh, tn.GELU, tn.ReLU,
                                     lambda: tn.LeakyReLU(0.1)],
                         ids=["Sigmoid", "Softplus", "Tanh", "GELU", "ReLU", "LeakyReLU"])
def test_activations_stay_finite_at_huge_inputs(factory, dtype):
    x = np.array([HUGE], dtype=dtype)
    layer = factory()
    with np.errstate(over="raise", invalid="raise", divide="raise"):  # no overflow, no NaN
        y = layer.forward(x)
        grad = layer.backward(np.ones_like(x))
    assert np.isfinite(y).all() and np.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_softplus_exact_limits(dtype):
    x = np.array([[-1e4, 0.0, 1e4]], dtype=dtype)
    np.testing.assert_array_equal(tn.Sigmoid().forward(x), np.array([[0.0, 0.5, 1.0]], dtype))
    softplus = tn.Softplus().forward(x)
    assert softplus[0, 0] == 0.0 and softplus[0, 2] == dtype(1e4)
    assert softplus[0, 1] == pytest.approx(math.log(2.0), rel=1e-6)


# ------------------------------------------------------------------ dtype contract
ALL_LAYERS = {
    "Dense": lambda: tn.Dense(3), "Dense_no_bias": lambda: tn.Dense(3, bias=False),
    "ReLU": tn.ReLU, "LeakyReLU": tn.LeakyReLU, "Sigmoid": tn.Sigmoid, "Tanh": tn.Tanh,
    "GELU": tn.GELU, "Softplus": tn.Softplus, "Flatten": tn.Flatten,
    "Dropout": lambda: tn.Dropout(0.5),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(ALL_LAYERS))
def test_layers_never_change_dtype(name, dtype):
    tn.seed(0)
    layer = ALL_LAYERS[name]()
    x = arrays(0, (4, 5)).astype(dtype)
    for training in (True, False):
        y = layer.forward(x, training=training)
        assert y.dtype == dtype
        assert layer.backward(np.ones_like(y)).dtype == dtype
    assert all(p.dtype == dtype for p in layer.params.values())
    assert all(g.dtype == dtype for g in layer.grads.values())


def test_dense_is_lazy_and_takes_the_first_inputs_dtype():
    layer = tn.Dense(7)
    assert layer.params == {}
    layer.forward(np.zeros((2, 5), np.float64))
    assert layer.params["w"].shape == (5, 7) and layer.params["b"].shape == (7,)
    assert layer.params["w"].dtype == layer.params["b"].dtype == np.float64
    eager = tn.Dense(7, in_features=5)
    assert eager.params["w"].shape == (5, 7) and eager.params["w"].dtype == np.float32


def test_dense_gradients_are_summed_over_the_batch():
    tn.seed(1)
    layer = tn.Dense(2)
    x = arrays(1, (3, 4))
    layer.forward(x)
    g = arrays(2, (3, 2))
    grad_x = layer.backward(g)
    np.testing.assert_allclose(layer.grads["w"], sum(np.outer(x[n], g[n]) for n in range(3)))
    np.testing.assert_allclose(layer.grads["b"], g.sum(axis=0))
    np.testing.assert_allclose(grad_x, g @ layer.params["w"].T)


@pytest.mark.parametrize("name", ["zeros", "normal", "xavier_uniform", "xavier_normal",
                                  "glorot_uniform", "glorot_normal", "he_uniform", "he_normal"])
def test_initializers_have_the_documented_scale(name):
    tn.seed(0)
    fan_in, fan_out = 400, 200
    w = tn.initializers.get(name)((fan_in, fan_out), np.float64)
    expected_std = {"zeros": 0.0, "normal": 0.01,
                    "xavier_uniform": math.sqrt(2 / (fan_in + fan_out)),
                    "xavier_normal": math.sqrt(2 / (fan_in + fan_out)),
                    "he_uniform": math.sqrt(2 / fan_in), "he_normal": math.sqrt(2 / fan_in)}
    std = expected_std[name.replace("glorot", "xavier")]
    assert w.shape == (fan_in, fan_out) and w.dtype == np.float64
    assert w.std() == pytest.approx(std, rel=0.02, abs=1e-12)
    assert abs(w.mean()) < 0.01 * max(std, 1e-3)


# ------------------------------------------------------------------ inference leaves no trace
@pytest.mark.parametrize("name", list(ALL_LAYERS))
def test_inference_between_forward_and_backward_changes_nothing(name):
    """forward(A, training=True), forward(B, training=False), backward: exactly the gradients
    of forward(A) then backward, for every layer (the inference forward keeps nothing)."""
    gen = np.random.default_rng(0)
    a, b, g = (gen.standard_normal((4, 5)).astype(np.float32) for _ in range(3))
    results = []
    for interleave in (False, True):
        tn.seed(0)
        layer = ALL_LAYERS[name]()
        g_out = g[:, :3] if name.startswith("Dense") else g
        layer.forward(a, training=True)
        if interleave:
            layer.forward(b, training=False)
        results.append((layer.backward(g_out), {k: v.copy() for k, v in layer.grads.items()}))
    (dx, grads), (dx_again, grads_again) = results
    np.testing.assert_array_equal(dx_again, dx)
    assert grads.keys() == grads_again.keys()
    for k in grads:
        np.testing.assert_array_equal(grads_again[k], grads[k])


@pytest.mark.parametrize("name", list(ALL_LAYERS))
def test_backward_without_a_training_forward_says_so(name):
    layer = ALL_LAYERS[name]()
    x = np.ones((2, 5), np.float32)
    width = 3 if name.startswith("Dense") else 5
    with pytest.raises(tn.CallOrderError, match=r"forward\(x, training=True\)"):
        layer.backward(np.ones((2, width), np.float32))
    layer.forward(x, training=False)
    with pytest.raises(tn.CallOrderError, match="training=True"):
        layer.backward(np.ones((2, width), np.float32))


# ------------------------------------------------------------------ the dtype rule
def test_a_layer_dtype_is_fixed_when_its_parameters_are_created():
    eager = tn.Dense(4, in_features=3)
    assert eager.params["w"].dtype == np.float32
    eager64 = tn.Dense(4, in_features=3, dtype=np.float64)
    assert eager64.params["w"].dtype == eager64.params["b"].dtype == np.float64
    assert eager64.forward(np.ones((2, 3))).dtype == np.float64
    lazy = tn.Dense(4)
    assert lazy.forward(np.ones((2, 3))).dtype == np.float64  # from the first input
    for layer, wrong, expected in ((eager, np.float64, "float32"), (eager64, np.float32, "float64"),
                                   (lazy, np.float32, "float64")):
        with pytest.raises(tn.ShapeError) as info:
            layer.forward(np.ones((2, 3), wrong))
        message = str(info.value)
        assert "Dense(units=4" in message and expected in message and np.dtype(wrong).name in message
    with pytest.raises(tn.ConfigError, match="dtype"):
        tn.Dense(4, in_features=3, dtype=np.int32)


def test_layers_module_documents_the_dtype_rule():
    doc = tn.layers.__doc__ + tn.Layer.__doc__
    assert "never casts" in doc and "dtype=" in doc and "training=True" in tn.Layer.__doc__


# ------------------------------------------------------------------ one accurate sigmoid
def test_sigmoid_is_accurate_in_float32_far_into_the_tails():
    x = np.linspace(-30, 30, 601).astype(np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        values = {"Sigmoid": tn.Sigmoid().forward(x[None])[0],
                  "sigmoid": tn.functional.sigmoid(x)}
    reference = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    for name, value in values.items():
        assert value.dtype == np.float32, name
        np.testing.assert_allclose(value, reference, rtol=1e-6, atol=0, err_msg=name)
        assert value[100] == pytest.approx(2.0611536e-9, rel=1e-5), name  # σ(−20)
    softplus = tn.Softplus()
    softplus.forward(x[None])
    np.testing.assert_allclose(softplus.backward(np.ones((1, 601), np.float32))[0], reference,
                               rtol=1e-6, atol=0)


def test_sigmoid_never_overflows():
    import warnings
    x = np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="warn", invalid="warn", divide="warn"):  # underflow to 0 is fine
            y = tn.functional.sigmoid(x)
    np.testing.assert_array_equal(y, [0.0, np.float32(math.exp(-100.0)), 0.5, 1.0, 1.0])
