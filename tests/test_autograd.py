"""tinynn.autograd: every operation gradchecked in float64, accumulation, topological order,
agreement with the hand-written layers, and clear errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinynn as tn
from tinynn.autograd import (Tensor, add, cross_entropy, exp, log, log_softmax, matmul, mean, mul,
                             neg, pick, relu, sum as t_sum, tanh, topological_order, unbroadcast)
from tinynn.errors import ShapeError
from tinynn.gradcheck import numerical_gradient, relative_error

TOL = 1e-6


def gradcheck_op(op, *arrays, seed=0):
    """Max relative error between autograd and central differences of Σ op(*inputs) ⊙ G."""
    inputs = [Tensor(np.array(a, dtype=np.float64)) for a in arrays]
    out = op(*inputs)
    upstream = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(upstream)

    def objective():
        return float(np.sum(op(*[Tensor(t.data) for t in inputs]).data * upstream))

    return max(relative_error(t.grad, numerical_gradient(objective, t.data)) for t in inputs)


def away_from_zero(rng, shape):
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + 0.1, x - 0.1)


BROADCAST_PAIRS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 4), (3, 1)), ((4,), (2, 3, 4)),
                   ((2, 1, 4), (3, 1)), ((), (2, 3)), ((1, 1), (5, 2))]


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
@pytest.mark.parametrize("op", [add, mul, lambda a, b: a - b, lambda a, b: a * b + a],
                         ids=["add", "mul", "sub", "mul_add"])
def test_binary_ops_with_broadcasting_pass_the_gradient_check(op, shapes):
    rng = np.random.default_rng(1)
    assert gradcheck_op(op, *(rng.standard_normal(s) for s in shapes)) < TOL


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4), min_size=1, max_size=3), st.data())
def test_add_and_mul_broadcast_any_drawn_shapes(shape, data):
    # the second shape: a suffix of the first with some sizes replaced by 1
    suffix = shape[data.draw(st.integers(0, len(shape))):]
    other = [1 if data.draw(st.booleans()) else n for n in suffix]
    rng = np.random.default_rng(len(shape))
    a, b = rng.standard_normal(shape), rng.standard_normal(other)
    for op in (add, mul):
        assert gradcheck_op(op, a, b) < TOL
        assert gradcheck_op(op, b, a) < TOL


@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
def test_div_with_broadcasting_passes_the_gradient_check(shapes):
    rng = np.random.default_rng(10)
    a, b = rng.standard_normal(shapes[0]), away_from_zero(rng, shapes[1])
    assert gradcheck_op(tn.autograd.div, a, b) < TOL
    assert gradcheck_op(lambda s, t: s / t, a, b) < TOL
    assert gradcheck_op(lambda s, t: t / s, b, a) < TOL
    assert np.allclose(tn.autograd.div(Tensor(a), Tensor(b)).data, a / b)


# (input, exponent): whole, negative, fractional (positive input), an array exponent that
# broadcasts the input up, a constant exponent of 0 and 1
POWER_CASES = [((3, 4), 2), ((3, 4), 3), ((3, 4), -1), ((3, 4), 0.5), ((5,), -2.5),
               ((4,), np.array([[1.0], [2.0], [3.0]])), ((2, 3), 1), ((2, 3), 0)]


@pytest.mark.parametrize("shape, exponent", POWER_CASES, ids=str)
def test_power_with_a_constant_exponent(shape, exponent):
    x = np.abs(away_from_zero(np.random.default_rng(11), shape))
    assert gradcheck_op(lambda a: a ** exponent, x) < TOL
    assert gradcheck_op(lambda a: tn.autograd.power(a, exponent), x) < TOL
    assert np.allclose((Tensor(x) ** exponent).data, x ** exponent)
    negative = -x                                          # a whole exponent takes any sign
    if np.all(np.asarray(exponent) == np.round(exponent)):
        assert gradcheck_op(lambda a: a ** exponent, negative) < TOL


@pytest.mark.parametrize("base", [2.0, np.e, 0.5, np.array([1.5, 3.0, 0.2, 10.0])], ids=str)
def test_a_constant_base_to_a_tensor_power(base):
    x = np.random.default_rng(12).standard_normal((3, 4))
    assert gradcheck_op(lambda a: base ** a, x) < TOL
    assert np.allclose((base ** Tensor(x)).data, base ** x)
    t = Tensor(x)
    (np.e ** t).sum().backward()
    assert np.allclose(t.grad, np.exp(x))                  # d eˣ/dx = eˣ


def test_power_refuses_a_tensor_exponent_and_a_nonpositive_base():
    t = Tensor(np.ones(3))
    with pytest.raises(tn.ConfigError,
                       match=r"power.*exponent.*constant.*got a Tensor.*exp\(b \* log\(a\)\)"):
        t ** t
    with pytest.raises(tn.ConfigError, match=r"base must be positive.*got -2"):
        (-2.0) ** t
    with pytest.raises(tn.ConfigError, match=r"base must be positive.*minimum is 0"):
        np.array([1.0, 0.0, 2.0]) ** t


# A numpy array (or numpy scalar) on the LEFT of an operator: numpy must step aside so that the
# Tensor's reflected operator runs (B6: x * w gave an object array of Tensors, x @ w a numpy error).
LEFT_AND_RIGHT = {"+": (lambda c, t: c + t, lambda t, c: t + c),
                  "-": (lambda c, t: c - t, lambda t, c: t - c),
                  "*": (lambda c, t: c * t, lambda t, c: t * c),
                  "/": (lambda c, t: c / t, lambda t, c: t / c)}


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((4,), (3, 4)),
                                    ((3, 1), (1, 4)), ((), (2, 3)), ((2, 3), ())], ids=str)
@pytest.mark.parametrize("symbol", LEFT_AND_RIGHT)
def test_a_numpy_array_on_either_side_of_an_elementwise_operator(symbol, shapes):
    rng = np.random.default_rng(13)
    constant, data = away_from_zero(rng, shapes[0]), away_from_zero(rng, shapes[1])
    if shapes[0] == ():
        constant = np.float64(constant)                    # a numpy scalar, not a 0-d array
    array_left, array_right = LEFT_AND_RIGHT[symbol]
    for op, expected in [(lambda t: array_left(constant, t), array_left(constant, data)),
                         (lambda t: array_right(t, constant), array_right(data, constant))]:
        out = op(Tensor(data))
        assert type(out) is Tensor and out.shape == np.shape(expected)
        assert np.allclose(out.data, expected)
        assert gradcheck_op(op, data) < TOL


@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((1, 5), (5, 3))], ids=str)
def test_a_numpy_array_on_either_side_of_matmul(shapes):
    rng = np.random.default_rng(14)
    left, right = (rng.standard_normal(s) for s in shapes)
    out = left @ Tensor(right)
    assert type(out) is Tensor and np.allclose(out.data, left @ right)
    assert gradcheck_op(lambda w: left @ w, right) < TOL
    assert gradcheck_op(lambda x: x @ right, left) < TOL
    assert gradcheck_op(lambda x: x ** 2 @ right / 3.0, left) < TOL


def test_numpy_and_python_constants_keep_a_float32_tensor_float32():
    x = Tensor(np.full(3, 2.0, dtype=np.float32))
    for out in (x / 2, 2 / x, x ** 2, 2 ** x, np.float32(2) * x):
        assert type(out) is Tensor and out.dtype == np.float32
    (x / 2 + x ** 2 + 2 ** x).sum().backward()
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("shapes", [((3, 4), (4, 2)), ((1, 5), (5, 1)), ((6, 3), (3, 3))], ids=str)
def test_matmul(shapes):
    rng = np.random.default_rng(2)
    assert gradcheck_op(matmul, *(rng.standard_normal(s) for s in shapes)) < TOL


@pytest.mark.parametrize("op, positive", [(neg, False), (relu, False), (exp, False), (log, True),
                                          (tanh, False)],
                         ids=["neg", "relu", "exp", "log", "tanh"])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2)], ids=str)
def test_elementwise_ops(op, positive, shape):
    x = away_from_zero(np.random.default_rng(3), shape)   # away from relu's kink
    assert gradcheck_op(op, np.abs(x) if positive else x) < TOL


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("op", [t_sum, mean], ids=["sum", "mean"])
def test_reductions(op, axis, keepdims):
    x = np.random.default_rng(4).standard_normal((3, 4, 2))
    assert gradcheck_op(lambda a: op(a, axis, keepdims), x) < TOL
    assert np.allclose(op(Tensor(x), axis, keepdims).data,
                       getattr(np, op.__name__)(x, axis=axis, keepdims=keepdims))


@pytest.mark.parametrize("axis", [-1, 0])
def test_log_softmax_is_stable_and_correct(axis):
    x = np.random.default_rng(5).standard_normal((4, 5)) * 3
    assert gradcheck_op(lambda a: log_softmax(a, axis), x) < TOL
    expected = x - np.log(np.exp(x).sum(axis=axis, keepdims=True))
    assert np.allclose(log_softmax(Tensor(x), axis).data, expected)
    huge = log_softmax(Tensor(x + 1e4), axis).data            # exp(1e4) would overflow
    assert np.all(np.isfinite(huge)) and np.allclose(huge, expected)


def test_pick_puts_gradients_back_and_adds_repeated_picks():
    x = np.random.default_rng(6).standard_normal((4, 3))
    rows, cols = np.array([0, 1, 1, 3, 0]), np.array([2, 0, 0, 1, 2])   # (0,2) and (1,0) twice
    assert gradcheck_op(lambda a: pick(a, (rows, cols)), x) < TOL
    t = Tensor(x)
    t[rows, cols].sum().backward()
    expected = np.zeros((4, 3))
    expected[0, 2], expected[1, 0], expected[3, 1] = 2, 2, 1
    assert np.array_equal(t.grad, expected)
    assert gradcheck_op(lambda a: a[1:3], x) < TOL


def test_cross_entropy_gradcheck():
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 5, 6)
    assert gradcheck_op(lambda z: cross_entropy(z, labels), rng.standard_normal((6, 5))) < TOL


def test_gradients_accumulate_until_zeroed():
    rng = np.random.default_rng(8)
    w, x = Tensor(rng.standard_normal((3, 2))), Tensor(rng.standard_normal((4, 3)))

    def loss():
        return (x @ w).relu().sum()

    loss().backward()
    once = w.grad.copy()
    loss().backward()
    assert np.allclose(w.grad, 2 * once)
    graph = loss()
    graph.backward()
    graph.backward()                      # twice on the same graph: leaves get 2 more, not more
    assert np.allclose(w.grad, 4 * once)
    w.zero_grad()
    assert not w.grad.any()
    tn.autograd.zero_grad([w, x])
    loss().backward()
    assert np.allclose(w.grad, once)


def test_shared_subexpression_runs_once_and_collects_both_paths():
    """y = h + x + h with h = x·x computed once: dy/dx = 4x + 1. x is used three times (twice
    inside h), h twice; each node is visited once and its backward runs once."""
    x = Tensor(np.array([1.5, -2.0, 3.0]))
    h = x * x
    y = h + x + h
    order = topological_order(y)
    assert len(order) == len({id(node) for node in order}) == 4   # x, h, h + x, y: once each
    position = {id(node): i for i, node in enumerate(order)}
    for node in order:
        assert all(position[id(p)] < position[id(node)] for p in node.parents)
    assert order[-1] is y and order[0] is x
    y.sum().backward()
    assert np.allclose(x.grad, 4 * x.data + 1)
    z = Tensor(np.array(2.0))
    (z + z).backward()                                  # the same tensor as both parents
    assert z.grad == 2.0


def test_topological_order_handles_a_deep_chain_without_recursion():
    x = Tensor(np.array(1.0))
    y = x
    for _ in range(5000):
        y = y * 1.0
    y.backward()
    assert x.grad == 1.0 and len(topological_order(y)) == 10001   # x, and 5000 (const, product)


def test_unbroadcast():
    grad = np.ones((2, 3, 4))
    assert unbroadcast(grad, (4,)).tolist() == [6.0] * 4
    assert unbroadcast(grad, (3, 1)).shape == (3, 1) and np.all(unbroadcast(grad, (3, 1)) == 8)
    assert unbroadcast(grad, ()).shape == () and unbroadcast(grad, ()) == 24
    assert unbroadcast(grad, (2, 3, 4)) is grad


def test_dense_relu_softmax_cross_entropy_equals_the_hand_written_backward():
    rng = np.random.default_rng(9)
    x, labels = rng.standard_normal((8, 5)), rng.integers(0, 3, 8)
    tn.seed(0)
    net = tn.Net([tn.Dense(7), tn.ReLU(), tn.Dense(3)])
    loss_fn = tn.SoftmaxCrossEntropy()
    value, grad = loss_fn(net.forward(x, training=True), labels)
    grad_x = net.backward(grad)

    (w1, b1), (w2, b2) = [[Tensor(p.copy()) for p in layer.params.values()]
                          for layer in (net.layers[0], net.layers[2])]
    xt = Tensor(x)
    loss = cross_entropy((xt @ w1 + b1).relu() @ w2 + b2, labels)
    loss.backward()
    assert abs(loss.data - value) < 1e-12
    for tensor, expected in zip([w1, b1, w2, b2, xt], [*net.grads, grad_x]):
        assert tensor.grad.dtype == np.float64
        assert relative_error(tensor.grad, expected) < 1e-12


def test_float32_stays_float32_with_python_numbers():
    x = Tensor(np.ones(3, dtype=np.float32))
    y = (x * 2 + 1 - 0.5).mean()
    y.backward()
    assert y.dtype == np.float32 and x.grad.dtype == np.float32
    assert Tensor([1, 2]).dtype == np.float64                   # ints become float64


def test_clear_errors():
    y = Tensor(np.ones((4, 3)))
    with pytest.raises(ShapeError, match=r"shape \(4, 3\).*scalar"):
        (y * 2).backward()
    with pytest.raises(ShapeError, match=r"\(2,\).*\(4, 3\)"):
        (y * 2).backward(np.ones(2))
    with pytest.raises(ShapeError, match=r"\(4, 3\) @ \(4, 3\)"):
        y @ y
    with pytest.raises(ShapeError, match="labels"):
        cross_entropy(y, [0, 1])
    (y * 2).backward(np.ones((4, 3)))                            # a non-scalar with its gradient
    assert np.all(y.grad == 2)
    assert repr(y * 2) == "Tensor(shape=(4, 3), dtype=float64, op='*')"


# ------------------------------------------------------------------ transpose and where (notebook 14)
@pytest.mark.parametrize("shape, axes", [((3, 4), None), ((2, 3, 4), None), ((2, 3, 4), (0, 2, 1)),
                                         ((2, 3, 4, 5), (2, 0, 3, 1))], ids=str)
def test_transpose_passes_the_gradient_check(shape, axes):
    x = np.random.default_rng(20).standard_normal(shape)
    assert gradcheck_op(lambda a: tn.autograd.transpose(a, axes), x) < TOL
    assert np.array_equal(tn.autograd.transpose(Tensor(x), axes).data, np.transpose(x, axes))
    if axes is None:
        assert np.array_equal(Tensor(x).T.data, x.T)
    else:
        assert np.array_equal(Tensor(x).transpose(*axes).data, np.transpose(x, axes))


def test_transpose_refuses_axes_that_are_no_permutation():
    with pytest.raises(ShapeError, match="permutation"):
        tn.autograd.transpose(Tensor(np.ones((2, 3))), (0, 0))


@pytest.mark.parametrize("shapes", [((3, 4), (3, 4), (3, 4)), ((3, 4), (3, 4), ()),
                                    ((4, 4), (2, 4, 4), (4,))], ids=str)
def test_where_passes_the_gradient_check_and_routes_each_gradient_to_its_source(shapes):
    rng = np.random.default_rng(21)
    condition = rng.random(shapes[0]) < 0.5
    a, b = rng.standard_normal(shapes[1]), rng.standard_normal(shapes[2])
    assert gradcheck_op(lambda s, t: tn.autograd.where(condition, s, t), a, b) < TOL
    ta, tb = Tensor(a), Tensor(b)
    out = tn.autograd.where(condition, ta, tb)
    assert np.array_equal(out.data, np.where(condition, a, b))
    out.backward(np.ones(out.shape))
    assert np.array_equal(ta.grad, unbroadcast(np.broadcast_to(condition, out.shape) * 1.0, a.shape))


def test_causal_attention_in_autograd_matches_the_layer():
    """Single-head causal attention written with autograd operations (transpose, where, exp, sum,
    division) gives MultiHeadAttention's gradients with identity projections."""
    rng = np.random.default_rng(22)
    x, upstream = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    mask = np.tril(np.ones((5, 5), dtype=bool))
    q, k, v = Tensor(x), Tensor(x), Tensor(x)
    scores = tn.autograd.where(mask, (q @ k.T) * (1 / np.sqrt(4)), -np.inf)
    e = (scores - scores.data.max(axis=-1, keepdims=True)).exp()
    out = (e / e.sum(axis=-1, keepdims=True)) @ v
    out.backward(upstream)
    layer = tn.MultiHeadAttention(1, dtype=np.float64)
    layer.forward(x[None])
    eye, zero = np.eye(4), np.zeros(4)
    layer.load_params({"wq": eye, "wk": eye, "wv": eye, "wo": eye, "bq": zero, "bv": zero, "bo": zero})
    assert np.allclose(layer.forward(x[None])[0], out.data)
    dx = layer.backward(upstream[None])[0]
    assert np.allclose(dx, q.grad + k.grad + v.grad)
