"""Convolutions, pooling and batch norm: gradients (gradcheck on random geometries), forward
against direct nested-loop references written here, the fast paths against the textbook code,
inference forwards that leave no trace for a later backward, the inference/training split of
BatchNorm, error messages, dtypes, and a small CNN that learns."""
import copy
import math

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import tinynn as tn
import tinynn.conv
from tinynn.conv import AvgPool2D, Conv2D, MaxPool2D, col2im, im2col, output_size
from tinynn.norm import BatchNorm

GRAD_TOL = 1e-6
SEEDS = st.integers(0, 2**32 - 1)
FAST = settings(max_examples=25, deadline=None)
PADDINGS = st.one_of(st.sampled_from(["valid", "same"]), st.integers(0, 2),
                     st.tuples(st.integers(0, 2), st.integers(0, 2)))
SIZES = st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))
STEPS = st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2)))


def data_rng(seed):
    """Test data from a stream other than gradcheck's upstream gradient (default_rng(0)): drawn
    from the same stream, x and the upstream can coincide and BatchNorm's input gradient cancels
    to ~0, which makes the relative error meaningless."""
    return np.random.default_rng((seed, 1))


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# ---------------------------------------------------------------- loop references
def padding_amounts(padding, size, kernel, stride, dilation):
    """(before, after) zeros along one axis, following the documented rules (Keras' 'same')."""
    if padding == "valid":
        return 0, 0
    if padding == "same":
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
        return total // 2, total - total // 2
    return padding, padding


def conv_reference(x, w, b, stride, padding, dilation):
    """Y[n, y, x, f] = b[f] + Σ_{i,j,c} X̃[n, y·s + i·d, x·s + j·d, c] W[i, j, c, f], one
    Python-float multiply-add at a time."""
    (sh, sw), (dh, dw) = pair(stride), pair(dilation)
    kh, kw, channels, filters = w.shape
    pads = [padding_amounts(p, size, k, s, d) for p, size, k, s, d in
            zip(pair(padding) if not isinstance(padding, str) else (padding, padding),
                x.shape[1:3], (kh, kw), (sh, sw), (dh, dw))]
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    ho = (xp.shape[1] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[2] - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((len(x), ho, wo, filters))
    for n in range(len(x)):
        for r in range(ho):
            for c in range(wo):
                for f in range(filters):
                    terms = [xp[n, r * sh + i * dh, c * sw + j * dw, ch] * w[i, j, ch, f]
                             for i in range(kh) for j in range(kw) for ch in range(channels)]
                    y[n, r, c, f] = math.fsum(terms) + (b[f] if b is not None else 0.0)
    return y


def pool_reference(x, pool_size, stride, reduce):
    (ph, pw), (sh, sw) = pair(pool_size), pair(stride or pool_size)
    ho, wo = (x.shape[1] - ph) // sh + 1, (x.shape[2] - pw) // sw + 1
    y = np.zeros((len(x), ho, wo, x.shape[3]))
    for n in range(len(x)):
        for r in range(ho):
            for c in range(wo):
                for ch in range(x.shape[3]):
                    y[n, r, c, ch] = reduce(x[n, r * sh:r * sh + ph, c * sw:c * sw + pw, ch])
    return y


def random_conv(seed, filters, kernel, stride=1, padding="valid", dilation=1, batch=2, height=5,
                width=5, channels=1):
    """A float64 Conv2D with random weights and bias, and an input it accepts (or None)."""
    gen = data_rng(seed)
    layer = Conv2D(filters, kernel, stride=stride, padding=padding, dilation=dilation)
    x = gen.standard_normal((batch, height, width, channels))
    try:
        layer.forward(x)
    except tn.ShapeError:
        return layer, None  # this geometry does not fit: input smaller than the kernel
    layer.params["b"][...] = gen.standard_normal(filters)
    return layer, x


# ---------------------------------------------------------------- Conv2D
@FAST
@given(seed=SEEDS, filters=st.integers(1, 3), kernel=SIZES, stride=STEPS, padding=PADDINGS,
       dilation=STEPS, batch=st.integers(1, 2), height=st.integers(3, 7), width=st.integers(3, 7),
       channels=st.integers(1, 3), fast=st.booleans())
def test_conv2d_gradcheck(seed, filters, kernel, stride, padding, dilation, batch, height, width,
                          channels, fast):
    layer, x = random_conv(seed, filters, kernel, stride, padding, dilation, batch, height, width,
                           channels)
    assume(x is not None)
    layer.fast = fast  # the textbook code (fast=False) and the fast path
    errors = tn.gradcheck(layer, x)
    assert set(errors) == {"input", "w", "b"}
    assert max(errors.values()) < GRAD_TOL, errors


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, filters=st.integers(1, 3), kernel=SIZES, stride=STEPS, padding=PADDINGS,
       dilation=STEPS, height=st.integers(3, 6), width=st.integers(3, 6), channels=st.integers(1, 3))
def test_conv2d_forward_matches_loop_reference(seed, filters, kernel, stride, padding, dilation,
                                               height, width, channels):
    layer, x = random_conv(seed, filters, kernel, stride, padding, dilation, 2, height, width,
                           channels)
    assume(x is not None)
    expected = conv_reference(x, layer.params["w"], layer.params["b"], stride, padding, dilation)
    np.testing.assert_allclose(layer.forward(x, training=False), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "textbook"])
@pytest.mark.parametrize("channels", [1, 2])
def test_conv2d_gradients_and_forward_of_both_paths_and_layouts(fast, channels):
    """One input channel has its own layout in the fast path: check it and the general one."""
    for geometry in [dict(padding="same"), dict(stride=2, dilation=(1, 2), padding=1)]:
        layer, x = random_conv(11, 3, 3, batch=3, height=6, width=7, channels=channels, **geometry)
        layer.fast = fast
        assert max(tn.gradcheck(layer, x).values()) < GRAD_TOL
        expected = conv_reference(x, layer.params["w"], layer.params["b"], geometry.get("stride", 1),
                                  geometry["padding"], geometry.get("dilation", 1))
        np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-12)


def test_conv2d_without_bias_has_only_w():
    layer = Conv2D(2, 3, bias=False)
    x = np.random.default_rng(0).standard_normal((2, 5, 5, 3))
    y = layer.forward(x)
    assert set(layer.params) == {"w"}
    np.testing.assert_allclose(y, conv_reference(x, layer.params["w"], None, 1, "valid", 1),
                               atol=1e-12)
    assert max(tn.gradcheck(layer, x).values()) < GRAD_TOL


@pytest.mark.parametrize("size,stride,expected", [(28, 1, 28), (28, 2, 14), (7, 2, 4), (5, 3, 2)])
def test_same_padding_gives_ceil_of_size_over_stride(size, stride, expected):
    layer = Conv2D(4, 3, stride=stride, padding="same")
    y = layer.forward(np.zeros((1, size, size, 2), np.float32))
    assert y.shape == (1, expected, expected, 4)


def test_conv2d_is_lazy_and_uses_hwio_weights_with_he_scale():
    tn.seed(0)
    layer = Conv2D(64, (3, 5))
    assert layer.params == {}
    layer.forward(np.zeros((2, 8, 8, 40), np.float32))
    assert layer.params["w"].shape == (3, 5, 40, 64) and layer.params["b"].shape == (64,)
    fan_in = 3 * 5 * 40
    assert np.std(layer.params["w"]) == pytest.approx(math.sqrt(2 / fan_in), rel=0.05)
    eager = Conv2D(8, 3, in_channels=2)
    assert eager.params["w"].shape == (3, 3, 2, 8) and eager.params["w"].dtype == np.float32


def test_conv2d_parameter_gradients_are_summed_over_the_batch():
    gen = np.random.default_rng(1)
    layer = Conv2D(2, 2)
    x = gen.standard_normal((1, 4, 4, 1))
    layer.forward(x)
    g = gen.standard_normal((1, 3, 3, 2))
    layer.forward(np.concatenate([x, x]))
    layer.backward(np.concatenate([g, g]))
    double = {k: v.copy() for k, v in layer.grads.items()}
    layer.forward(x)
    layer.backward(g)
    for name in ("w", "b"):
        np.testing.assert_allclose(double[name], 2 * layer.grads[name], rtol=1e-12)


def test_conv2d_leaves_its_input_and_parameters_alone():
    gen = np.random.default_rng(2)
    layer = Conv2D(3, 3, padding="same")
    x = gen.standard_normal((2, 5, 5, 2))
    x_copy = x.copy()
    y = layer.forward(x)
    w = layer.params["w"].copy()
    layer.backward(gen.standard_normal(y.shape))
    assert np.array_equal(x, x_copy) and np.array_equal(layer.params["w"], w)


def test_conv2d_outputs_do_not_alias_between_steps():
    """Buffers are reused inside the layer; what it returns must never change afterwards."""
    gen = np.random.default_rng(3)
    layer = Conv2D(3, 3, padding="same")
    x1, x2 = gen.standard_normal((2, 2, 6, 6, 1))
    y1 = layer.forward(x1)
    y1_copy = y1.copy()
    dx1 = layer.backward(np.ones_like(y1))
    dx1_copy = dx1.copy()
    layer.forward(x2)
    layer.backward(gen.standard_normal(y1.shape))
    assert np.array_equal(y1, y1_copy) and np.array_equal(dx1, dx1_copy)


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "textbook"])
@pytest.mark.parametrize("make", [lambda: Conv2D(2, 3), lambda: MaxPool2D(2), lambda: AvgPool2D(2),
                                  lambda: BatchNorm()], ids=["Conv2D", "MaxPool2D", "AvgPool2D",
                                                             "BatchNorm"])
def test_backward_needs_a_training_forward(make, fast):
    """A backward without a training forward before it is a tinynn error naming the layer, not
    an AttributeError; an inference forward does not count."""
    layer = make()
    layer.fast = fast
    with pytest.raises(tn.CallOrderError, match=type(layer).__name__ + r".*training=True"):
        layer.backward(np.ones((1, 2, 2, 2)))
    x = np.random.default_rng(13).standard_normal((1, 4, 4, 1))
    y = layer.forward(x, training=False)
    with pytest.raises(tn.CallOrderError, match=type(layer).__name__ + r".*training=True"):
        layer.backward(np.ones_like(y))
    layer.forward(x)
    assert layer.backward(np.ones_like(y)).shape == x.shape


def test_im2col_and_col2im_are_adjoint():
    """<im2col(x), c> = <x, col2im(c)> for every x, c: col2im is im2col's transpose, which is
    exactly why it is the backward of im2col."""
    gen = np.random.default_rng(4)
    for kernel, stride, dilation in [(3, 1, 1), ((2, 3), (2, 1), 1), (2, 2, (2, 1)), (3, 2, 2)]:
        x = gen.standard_normal((2, 7, 8, 3))
        cols = im2col(x, kernel, stride, dilation)
        c = gen.standard_normal(cols.shape)
        back = col2im(c, x.shape, kernel, stride, dilation)
        assert back.shape == x.shape
        assert np.sum(cols * c) == pytest.approx(np.sum(x * back), rel=1e-12)


def test_im2col_rows_are_receptive_fields():
    x = np.arange(2 * 4 * 5 * 2, dtype=np.float64).reshape(2, 4, 5, 2)
    cols = im2col(x, 3, stride=1)
    assert cols.shape == (2 * 2 * 3, 3 * 3 * 2)
    row = 1 * 6 + 1 * 3 + 2  # sample 1, output row 1, output column 2
    assert np.array_equal(cols[row], x[1, 1:4, 2:5, :].ravel())
    assert output_size(28, 3, 2, 2) == 12


# ---------------------------------------------------------------- pooling
POOLS = {"max": (MaxPool2D, np.max), "avg": (AvgPool2D, np.mean)}


@FAST
@given(seed=SEEDS, kind=st.sampled_from(sorted(POOLS)), pool=SIZES, stride=st.none() | STEPS,
       batch=st.integers(1, 2), height=st.integers(3, 7), width=st.integers(3, 7),
       channels=st.integers(1, 3), fast=st.booleans())
def test_pool_gradcheck_and_forward(seed, kind, pool, stride, batch, height, width, channels, fast):
    layer_class, reduce = POOLS[kind]
    layer = layer_class(pool, stride)
    layer.fast = fast  # AvgPool2D has no fast path: the attribute changes nothing there
    x = data_rng(seed).standard_normal((batch, height, width, channels))
    expected = pool_reference(x, pool, stride, reduce)
    np.testing.assert_allclose(layer.forward(x, training=False), expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(layer.forward(x), expected, rtol=1e-12, atol=1e-15)
    assert tn.gradcheck(layer, x)["input"] < GRAD_TOL


def test_maxpool_sends_the_gradient_to_the_first_maximum_on_ties():
    x = np.zeros((1, 4, 4, 2))
    x[0, 1, 1, 0] = 5.0  # one clear winner in the top-left window of channel 0
    layer = MaxPool2D(2)
    layer.forward(x)
    dx = layer.backward(np.ones((1, 2, 2, 2)))
    assert dx[0, 1, 1, 0] == 1 and dx[0, :2, :2, 0].sum() == 1
    # All-equal windows: exactly one element (the first) of each window gets the gradient.
    assert np.array_equal(dx[0, ::2, ::2, 1], np.ones((2, 2))) and dx[..., 1].sum() == 4


def test_pool_drops_rows_and_columns_that_do_not_fill_a_window():
    x = np.random.default_rng(5).standard_normal((1, 5, 7, 1))
    for layer in (MaxPool2D(2), AvgPool2D(2)):
        y = layer.forward(x)
        assert y.shape == (1, 2, 3, 1)
        dx = layer.backward(np.ones_like(y))
        assert np.all(dx[:, 4] == 0) and np.all(dx[:, :, 6] == 0)


# ---------------------------------------------------------------- BatchNorm
@FAST
@given(seed=SEEDS, shape=st.sampled_from([(4, 3), (7, 1), (2, 3, 4, 2), (3, 2, 2, 3)]))
def test_batchnorm_gradcheck_in_training_mode(seed, shape):
    gen = data_rng(seed)
    layer = BatchNorm()
    x = gen.standard_normal(shape) * 2 + 1
    layer.forward(x)
    layer.params["gamma"][...] = gen.standard_normal(shape[-1])
    layer.params["beta"][...] = gen.standard_normal(shape[-1])
    errors = tn.gradcheck(layer, x)
    assert set(errors) == {"input", "gamma", "beta"}
    assert max(errors.values()) < GRAD_TOL, errors


def test_batchnorm_normalises_each_channel_over_batch_and_positions():
    gen = np.random.default_rng(7)
    x = gen.standard_normal((6, 3, 3, 4)) * [1, 2, 3, 4] + [0, -1, 5, 10]
    y = BatchNorm(eps=1e-12).forward(x)
    np.testing.assert_allclose(y.mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 1, 2)), 1, rtol=1e-9)


def test_batchnorm_running_statistics_and_inference():
    gen = np.random.default_rng(8)
    layer = BatchNorm(momentum=0.8, eps=1e-3)
    batches = [gen.standard_normal((10, 2)) * 3 + 4 for _ in range(3)]
    mean, var = np.zeros(2), np.ones(2)
    for xb in batches:
        layer.forward(xb)
        mean = 0.8 * mean + 0.2 * xb.mean(axis=0)
        var = 0.8 * var + 0.2 * xb.var(axis=0, ddof=1)  # unbiased, as PyTorch
    np.testing.assert_allclose(layer.state["running_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(layer.state["running_var"], var, rtol=1e-12)
    assert layer.running_mean is layer.state["running_mean"]  # read-only shortcuts
    assert layer.running_var is layer.state["running_var"]
    layer.params["gamma"][...] = [2.0, 0.5]
    layer.params["beta"][...] = [1.0, -1.0]
    x = gen.standard_normal((4, 2))
    expected = (x - mean) / np.sqrt(var + 1e-3) * [2.0, 0.5] + [1.0, -1.0]
    np.testing.assert_allclose(layer.forward(x, training=False), expected, rtol=1e-12)
    # Inference uses no batch statistics: one sample alone gives the same answer.
    np.testing.assert_allclose(layer.forward(x[:1], training=False), expected[:1], rtol=1e-12)
    # ... and does not move the running statistics.
    np.testing.assert_allclose(layer.state["running_mean"], mean, rtol=1e-12)
    np.testing.assert_allclose(layer.state["running_var"], var, rtol=1e-12)


def test_batchnorm_keeps_running_statistics_apart_from_parameters():
    layer = BatchNorm()
    layer.forward(np.random.default_rng(9).standard_normal((6, 3)) + 2)
    assert set(layer.params) == set(layer.grads) == {"gamma", "beta"}  # what optimizers update
    assert set(layer.state) == {"running_mean", "running_var"}
    params = {k: v.copy() for k, v in layer.params.items()}
    twin = BatchNorm()
    twin.load_params(params)  # then the running statistics, as Model.load gives them
    twin.load_state({k: v.copy() for k, v in layer.state.items()})
    x = np.random.default_rng(10).standard_normal((4, 3))
    np.testing.assert_array_equal(twin.forward(x, training=False), layer.forward(x, training=False))
    fresh = BatchNorm()
    fresh.load_params(params)
    assert np.array_equal(fresh.state["running_mean"], np.zeros(3))
    assert np.array_equal(fresh.state["running_var"], np.ones(3))


# ---------------------------------------------------------------- fast paths = textbook
def close_enough(fast, textbook):
    """Same numbers up to summation order: relative 1e-6 in float32, 1e-12 in float64."""
    assert fast.dtype == textbook.dtype and fast.shape == textbook.shape
    tol = 1e-6 if fast.dtype == np.float32 else 1e-12
    scale = max(float(np.abs(textbook).max(initial=0.0)), np.finfo(textbook.dtype).tiny)
    assert float(np.abs(fast - textbook).max(initial=0.0)) <= tol * scale


def run_both_paths(layer, x, upstream, input_grad=True):
    """{fast: (y_train, y_inference, dx, grads)} for one layer built on x, fast and textbook."""
    results = {}
    for fast in (True, False):
        twin = copy.deepcopy(layer)
        twin.fast = fast
        y = twin.forward(x)
        y_inference = twin.forward(x, training=False)
        dx = twin.backward(upstream, input_grad=input_grad)
        results[fast] = (y, y_inference, dx, {k: g.copy() for k, g in twin.grads.items()})
    return results


CONV_GEOMETRIES = [dict(padding="same"), dict(padding="valid"), dict(stride=2, padding="same"),
                   dict(stride=(2, 1), dilation=2, padding=1), dict(dilation=(1, 2)),
                   dict(kernel=(3, 5), padding=(1, 0)), dict(kernel=1), dict(kernel=1, stride=2)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=str)
def test_conv2d_fast_path_matches_the_textbook(geometry, channels, dtype):
    geometry = dict(geometry)
    gen = np.random.default_rng(14)
    layer = Conv2D(4, geometry.pop("kernel", 3), **geometry)
    x = gen.standard_normal((3, 9, 8, channels)).astype(dtype)
    layer.forward(x)  # builds
    layer.params["b"][...] = gen.standard_normal(4)
    upstream = gen.standard_normal(layer.output_shape(x.shape)).astype(dtype)
    x_copy = x.copy()
    results = run_both_paths(layer, x, upstream)
    assert np.array_equal(x, x_copy)  # a 1×1 kernel's im2col could be a view of x: never written
    for fast, textbook in zip(results[True][:3], results[False][:3]):
        close_enough(fast, textbook)  # forward (training and inference) and dL/dx
    for name in ("w", "b"):
        close_enough(results[True][3][name], results[False][3][name])
    without_input_grad = run_both_paths(layer, x, upstream, input_grad=False)
    for fast in (True, False):
        assert without_input_grad[fast][2] is None  # the first layer: no dL/d(data)
        for name in ("w", "b"):  # ... and the very same parameter gradients
            assert np.array_equal(without_input_grad[fast][3][name], results[fast][3][name])


@pytest.mark.parametrize("pool,stride,shape", [(2, None, (3, 8, 6, 2)), (2, None, (2, 7, 5, 3)),
                                               (3, 2, (2, 7, 8, 1)), ((2, 3), (1, 2), (2, 6, 7, 2))])
@pytest.mark.parametrize("ties", [False, True], ids=["random", "ties"])
def test_maxpool_fast_path_matches_the_textbook_bit_for_bit(pool, stride, shape, ties):
    gen = np.random.default_rng(15)
    x = gen.standard_normal(shape)
    if ties:
        x = np.round(x)  # many equal values in a window: the first one must win in both paths
    layer = MaxPool2D(pool, stride)
    upstream = gen.standard_normal(layer.forward(x).shape)
    fast, textbook = run_both_paths(layer, x, upstream).values()
    for a, b in zip(fast[:3], textbook[:3]):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_conv2d_refuses_a_switch_to_the_textbook_between_a_one_channel_forward_and_backward():
    layer = Conv2D(2, 3)
    y = layer.forward(np.zeros((1, 4, 4, 1)))  # the fast path's own one-channel layout
    layer.fast = False
    with pytest.raises(tn.ConfigError, match="fast"):
        layer.backward(np.ones_like(y))
    layer.forward(np.zeros((1, 4, 4, 1)))  # textbook forward, fast backward: the same layout
    layer.fast = True
    assert layer.backward(np.ones_like(y)).shape == (1, 4, 4, 1)


# ---------------------------------------------------------------- inference leaves no trace
NO_TRACE_LAYERS = {
    "Conv2D 1 channel": (lambda: Conv2D(3, 3, padding="same"), (4, 6, 6, 1)),
    "Conv2D 3 channels": (lambda: Conv2D(3, 3, padding="same"), (4, 6, 6, 3)),
    "Conv2D strided": (lambda: Conv2D(3, (3, 2), stride=2, padding=1), (4, 7, 6, 2)),
    "MaxPool2D": (lambda: MaxPool2D(2), (4, 6, 6, 2)),
    "MaxPool2D overlapping": (lambda: MaxPool2D(3, 2), (4, 7, 7, 2)),
    "AvgPool2D": (lambda: AvgPool2D(2), (4, 6, 6, 2)),
    "BatchNorm images": (lambda: BatchNorm(), (4, 3, 3, 2)),
    "BatchNorm features": (lambda: BatchNorm(), (6, 3)),
}


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "textbook"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(NO_TRACE_LAYERS))
def test_an_inference_forward_between_forward_and_backward_changes_no_gradient(name, dtype, fast):
    """Training forward on batch A, forward(training=False) on batch B of the same shape (an
    evaluation, a live plot), then backward: the gradients are bit for bit those without B. The
    inference forward must neither replace the cache nor overwrite a reused buffer."""
    make, shape = NO_TRACE_LAYERS[name]
    gen = np.random.default_rng(16)
    a, b = (gen.standard_normal(shape).astype(dtype) for _ in range(2))
    layer = make()
    layer.fast = fast
    layer.forward(a)  # builds
    for p in layer.params.values():
        p[...] = gen.standard_normal(p.shape)
    upstream = gen.standard_normal(layer.forward(a).shape).astype(dtype)
    runs = []
    for interleave in (False, True):
        twin = copy.deepcopy(layer)
        twin.forward(b)  # a first step on another batch: buffers exist and hold b
        twin.backward(upstream)
        twin.forward(a)
        if interleave:
            twin.forward(b, training=False)
        dx = twin.backward(upstream)
        runs.append((dx, {k: g.copy() for k, g in twin.grads.items()}, copy.deepcopy(twin.state)
                     if hasattr(twin, "state") else {}))
    (dx, grads, state), (dx_b, grads_b, state_b) = runs
    assert np.array_equal(dx, dx_b)
    assert grads.keys() == grads_b.keys()
    for k in grads:
        assert np.array_equal(grads[k], grads_b[k]), k
    for k in state:  # and an inference forward moves no running statistics
        assert np.array_equal(state[k], state_b[k]), k


def test_net_backward_after_an_evaluation_in_between_is_unchanged():
    """The bug 3 scenario end to end, for this module's layers: a live plot evaluates the net
    between forward and backward."""
    tn.seed(3)
    x, _ = bars(16, seed=3)
    net = tn.Net([Conv2D(4, 3, padding="same"), BatchNorm(), MaxPool2D(2),
                  Conv2D(4, 3, padding="same"), AvgPool2D(2)])
    out_shape = (8, 3, 3, 4)
    net.forward(x[8:], training=True)  # builds and fills every buffer once
    net.backward(np.ones(out_shape, np.float32))
    twin = copy.deepcopy(net)
    upstream = np.random.default_rng(17).standard_normal(out_shape).astype(np.float32)
    net.forward(x[:8], training=True)
    dx = net.backward(upstream)
    twin.forward(x[:8], training=True)
    twin.forward(x[8:], training=False)
    assert np.array_equal(twin.backward(upstream), dx)
    assert all(np.array_equal(g, h) for g, h in zip(net.grads, twin.grads))


# ---------------------------------------------------------------- BatchNorm state
def test_batchnorm_works_when_its_state_is_written_into_or_replaced():
    """Saving/loading a model and the divergence rollback restore ``layer.state`` either by
    writing into its arrays or by replacing them: BatchNorm reads the state afresh each forward."""
    gen = np.random.default_rng(18)
    batches = [gen.standard_normal((8, 3)).astype(np.float32) * 2 + 1 for _ in range(4)]
    probe = gen.standard_normal((5, 3)).astype(np.float32)

    layer = BatchNorm()
    for xb in batches[:2]:
        layer.forward(xb)
    saved = {k: v.copy() for k, v in layer.state.items()}
    expected_inference = layer.forward(probe, training=False)
    layer.forward(batches[2])
    expected_next = layer.forward(batches[3]), {k: v.copy() for k, v in layer.state.items()}

    for restore in ("write into", "replace"):
        twin = copy.deepcopy(layer)
        twin.forward(gen.standard_normal((8, 3)).astype(np.float32) * 9)  # diverged statistics
        for name, value in saved.items():
            if restore == "write into":
                twin.state[name][...] = value
            else:
                twin.state[name] = value.copy()
        assert np.array_equal(twin.forward(probe, training=False), expected_inference), restore
        twin.forward(batches[2])
        y = twin.forward(batches[3])
        assert np.array_equal(y, expected_next[0]), restore
        for name in saved:
            assert np.array_equal(twin.state[name], expected_next[1][name]), restore
            assert twin.state[name].dtype == np.float32
    assert set(layer.state) == {"running_mean", "running_var"}


def test_batchnorm_keeps_the_dtype_when_its_state_is_replaced_by_another_dtype():
    layer = BatchNorm()
    x = np.random.default_rng(19).standard_normal((6, 2)).astype(np.float32)
    layer.forward(x)
    layer.state = {name: value.astype(np.float64) for name, value in layer.state.items()}
    assert layer.forward(x, training=False).dtype == np.float32
    assert layer.forward(x).dtype == np.float32
    assert all(v.dtype == np.float32 for v in layer.state.values())


def test_batchnorm_lives_in_norm_and_is_public():
    assert tinynn.BatchNorm is BatchNorm and BatchNorm.__module__ == "tinynn.norm"


@pytest.mark.parametrize("make,shape", [(lambda: MaxPool2D(2), (2, 4, 4, 2)),
                                        (lambda: AvgPool2D(2), (2, 4, 4, 2)),
                                        (lambda: BatchNorm(), (4, 2, 2, 3))])
def test_input_grad_false_skips_the_input_gradient_and_keeps_the_parameter_gradients(make, shape):
    x = np.random.default_rng(20).standard_normal(shape)
    layer = make()
    upstream = np.random.default_rng(21).standard_normal(layer.forward(x).shape)
    layer.backward(upstream)
    grads = {k: g.copy() for k, g in layer.grads.items()}
    layer.forward(x)
    result = layer.backward(upstream, input_grad=False)
    assert result is None or result.shape == x.shape  # pools may compute it anyway
    for k in grads:
        assert np.array_equal(layer.grads[k], grads[k])


# ---------------------------------------------------------------- errors and dtypes
@pytest.mark.parametrize("layer,x,words", [
    (Conv2D(4, 3), np.zeros((2, 28, 28)), ["Conv2D", "(2, 28, 28)", "channels"]),
    (Conv2D(4, 3), np.zeros((2, 784)), ["Conv2D", "(2, 784)", "reshape"]),
    (Conv2D(4, 5), np.zeros((2, 4, 4, 1)), ["Conv2D", "(2, 4, 4, 1)", "5×5", "smaller"]),
    (Conv2D(4, 3, dilation=3), np.zeros((2, 6, 6, 1)), ["Conv2D", "7×7", "smaller"]),
    (MaxPool2D(3), np.zeros((1, 2, 5, 1)), ["MaxPool2D", "(1, 2, 5, 1)", "3×3"]),
    (AvgPool2D(2), np.zeros((4, 6)), ["AvgPool2D", "(4, 6)"]),
    (BatchNorm(), np.zeros((2, 3, 4)), ["BatchNorm", "(2, 3, 4)"]),
])
def test_bad_input_shapes_raise_shape_errors_naming_layer_and_shape(layer, x, words):
    with pytest.raises(tn.ShapeError) as info:
        layer.forward(x)
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize("layer,first,second", [
    (Conv2D(4, 3), (1, 5, 5, 3), (1, 5, 5, 2)),
    (BatchNorm(), (2, 4, 4, 3), (2, 4, 4, 5)),
    (BatchNorm(), (2, 3), (2, 4)),
])
def test_wrong_channels_after_build_raise_shape_errors(layer, first, second):
    layer.forward(np.zeros(first, np.float32) + np.arange(first[-1], dtype=np.float32))
    with pytest.raises(tn.ShapeError) as info:
        layer.forward(np.zeros(second, np.float32))
    assert type(layer).__name__ in str(info.value)
    assert str(second) in str(info.value) and str(first[-1]) in str(info.value)


def test_wrong_dtype_after_build_raises_shape_error():
    layer = Conv2D(2, 3)
    layer.forward(np.zeros((1, 4, 4, 1), np.float32))
    with pytest.raises(tn.ShapeError, match="float32"):
        layer.forward(np.zeros((1, 4, 4, 1), np.float64))


@pytest.mark.parametrize("make", [
    lambda: Conv2D(0, 3), lambda: Conv2D(2.5, 3), lambda: Conv2D(4, 0), lambda: Conv2D(4, (3,)),
    lambda: Conv2D(4, "3"), lambda: Conv2D(4, 3, stride=0), lambda: Conv2D(4, 3, padding="full"),
    lambda: Conv2D(4, 3, padding=-1), lambda: Conv2D(4, 3, dilation=(1, 0)),
    lambda: Conv2D(4, 3, init="glorious"), lambda: Conv2D(4, 3, in_channels=0),
    lambda: Conv2D(True, 3), lambda: MaxPool2D(0), lambda: MaxPool2D(2, stride=(1, 2, 3)),
    lambda: AvgPool2D(2.0), lambda: BatchNorm(momentum=1.0), lambda: BatchNorm(eps=0),
])
def test_bad_constructor_arguments_raise_config_errors(make):
    with pytest.raises(tn.ConfigError):
        make()


def test_check_pair_reads_an_int_or_a_pair_of_them():
    from tinynn.checks import check_pair
    assert check_pair(3, "k", "X") == (3, 3) and check_pair([2, 0], "p", "X", minimum=0) == (2, 0)
    with pytest.raises(tn.ConfigError, match=r"^X: k must be a positive integer or a pair of "
                                             r"them, got \(2, 0\)$"):
        check_pair((2, 0), "k", "X")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("make,shape", [
    (lambda: Conv2D(3, 3, padding="same"), (2, 6, 6, 2)), (lambda: Conv2D(2, 2, stride=2), (2, 6, 6, 1)),
    (lambda: MaxPool2D(2), (2, 6, 6, 2)), (lambda: AvgPool2D(3, 2), (2, 7, 7, 2)),
    (lambda: BatchNorm(), (2, 6, 6, 2)), (lambda: BatchNorm(), (5, 3)),
])
def test_layers_keep_the_input_dtype(make, shape, dtype):
    layer = make()
    x = np.random.default_rng(9).standard_normal(shape).astype(dtype)
    y = layer.forward(x)
    dx = layer.backward(np.ones_like(y))
    assert y.dtype == dtype and dx.dtype == dtype and dx.shape == x.shape
    assert all(p.dtype == dtype for p in layer.params.values())
    assert all(g.dtype == dtype for g in layer.grads.values())
    if isinstance(layer, BatchNorm):
        assert layer.forward(x, training=False).dtype == dtype


# ---------------------------------------------------------------- whole networks
def bars(n, size=12, seed=0):
    """A small image task: horizontal (0), vertical (1), diagonal (2) or anti-diagonal (3) bars
    at random places on a noisy background, channels-last (n, size, size, 1) float32."""
    gen = np.random.default_rng(seed)
    x = gen.random((n, size, size, 1), dtype=np.float32) * 0.3
    y = np.arange(n) % 4
    idx = np.arange(size - 4)
    for k in range(n):
        r, c = gen.integers(0, size - 4, 2)
        if y[k] == 0:
            x[k, r + 2, c:c + 5, 0] = 1.0
        elif y[k] == 1:
            x[k, r:r + 5, c + 2, 0] = 1.0
        elif y[k] == 2:
            x[k, r + idx[:5], c + idx[:5], 0] = 1.0
        else:
            x[k, r + idx[:5], c + 4 - idx[:5], 0] = 1.0
    return x, y.astype(np.int64)


def test_a_small_cnn_learns_oriented_bars():
    tn.seed(0)
    x, y = bars(400)
    net = tn.Net([Conv2D(8, 3, padding="same"), tn.ReLU(), MaxPool2D(2),
                  Conv2D(16, 3, padding="same"), tn.ReLU(), MaxPool2D(2), tn.Flatten(), tn.Dense(4)])
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-2))
    before = model.evaluate(x[300:], y[300:])
    history = model.fit(x[:300], y[:300], epochs=6, batch_size=32, seed=0)
    assert history["loss"][-1] < 0.3 * history["loss"][0]
    after = model.evaluate(x[300:], y[300:])
    assert after["loss"] < 0.3 * before["loss"] and after["accuracy"] >= 0.95


def test_the_command_line_cnn_maps_mnist_images_to_ten_scores():
    from tinynn.models import build_cnn
    tn.seed(0)
    net = build_cnn()
    x = np.random.default_rng(12).random((3, 28, 28, 1), dtype=np.float32)
    assert net.forward(x, training=False).shape == (3, 10)
    y = net.forward(x, training=True)
    assert y.shape == (3, 10) and y.dtype == np.float32
    assert net.backward(np.ones_like(y)).shape == x.shape


def test_a_cnn_with_batchnorm_trains_and_round_trips_through_save_and_load(tmp_path):
    tn.seed(1)
    x, y = bars(200, seed=1)
    net = tn.Net([Conv2D(6, (3, 3), padding=1), BatchNorm(), tn.ReLU(), MaxPool2D(2),
                  Conv2D(6, (3, 2), stride=(1, 2), padding="same"), tn.ReLU(), tn.Flatten(),
                  tn.Dense(16), BatchNorm(), tn.ReLU(), tn.Dense(4)])
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=3e-3))
    history = model.fit(x, y, epochs=4, batch_size=25, seed=0)
    assert history["loss"][-1] < history["loss"][0]
    path = model.save(tmp_path / "cnn.npz")
    tn.seed(2)
    twin = tn.Net([Conv2D(6, 3, padding=1), BatchNorm(), tn.ReLU(), MaxPool2D(2),
                   Conv2D(6, (3, 2), stride=(1, 2), padding="same"), tn.ReLU(), tn.Flatten(),
                   tn.Dense(16), BatchNorm(), tn.ReLU(), tn.Dense(4)])
    loaded = tn.Model(twin, tn.SoftmaxCrossEntropy(), tn.Adam()).load(path)
    for a, b in zip(loaded.net.params, model.net.params):
        assert np.array_equal(a, b)
    assert loaded.predict(x[:3]).shape == (3, 4)  # inference works right after loading


# ---------------------------------------------------------------- dtype=, one-value batches, NaN
def test_conv2d_takes_dtype_like_dense():
    eager = Conv2D(2, 3, in_channels=3, dtype=np.float64)
    assert eager.params["w"].dtype == eager.params["b"].dtype == np.float64
    assert Conv2D(2, 3, in_channels=3).params["w"].dtype == np.float32  # eager default
    lazy = Conv2D(2, 3, dtype=np.float64)
    with pytest.raises(tn.ShapeError, match="float64"):  # it will be float64, not x's float32
        lazy.forward(np.zeros((1, 5, 5, 1), np.float32))
    assert lazy.params == {}
    assert lazy.forward(np.zeros((1, 5, 5, 1), np.float64)).dtype == np.float64
    assert Conv2D(2, 3).forward(np.zeros((1, 5, 5, 1), np.float32)).dtype == np.float32
    for wrong in (np.int32, "int64", bool, "text"):
        with pytest.raises(tn.ConfigError, match="Conv2D: dtype must be a floating-point"):
            Conv2D(2, 3, dtype=wrong)


def test_avgpool_on_integers_is_refused_rather_than_rounded_to_zero():
    x = np.arange(16).reshape(1, 4, 4, 1)
    with pytest.raises(tn.ShapeError, match=r"AvgPool2D.*int64.*astype\(np.float32\)"):
        AvgPool2D(2).forward(x)
    np.testing.assert_array_equal(AvgPool2D(2).forward(x.astype(np.float64)).ravel(),
                                  [2.5, 4.5, 10.5, 12.5])


@pytest.mark.parametrize("shape", [(1, 4), (1, 1, 1, 3)], ids=["(N, C)", "(N, H, W, C)"])
def test_batchnorm_refuses_a_training_batch_with_one_value_per_channel(shape):
    layer = BatchNorm()
    x = np.arange(1.0, 1.0 + np.prod(shape)).reshape(shape).astype(np.float32)
    with pytest.raises(tn.ShapeError, match=r"BatchNorm\(.*more than 1 value per channel.*"
                                            r"batch size 1"):
        layer.forward(x)
    assert layer.forward(x, training=False).shape == shape  # inference on one sample is fine
    np.testing.assert_array_equal(layer.state["running_var"], np.ones(shape[-1], np.float32))
    two = np.concatenate([x, x + 1.0])
    assert layer.forward(two).shape == (2,) + shape[1:]  # two values per channel train
    one_image = np.arange(6, dtype=np.float32).reshape(1, 2, 1, 3)  # one image of 2 pixels
    assert BatchNorm().forward(one_image).shape == (1, 2, 1, 3)


@pytest.mark.parametrize("pool,stride,shape", [(2, None, (2, 4, 4, 2)), (3, 2, (2, 7, 7, 2))])
def test_maxpool_fast_and_textbook_agree_on_nan_and_send_the_gradient_to_the_first_nan(
        pool, stride, shape):
    gen = np.random.default_rng(22)
    x = gen.standard_normal(shape)
    x[0, 0, 1, 0] = np.nan                           # in the first window, not its first element
    x[0, 1, 1, 0] = np.nan                           # a second NaN in that window: the first wins
    x[1, 0:2, 0:2, 1] = np.nan                       # a window of NaN only
    layer = MaxPool2D(pool, stride)
    upstream = gen.standard_normal(layer.forward(x).shape)
    fast, textbook = run_both_paths(layer, x, upstream).values()
    for a, b in zip(fast[:3], textbook[:3]):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True)
    y, _, dx, _ = fast
    assert np.isnan(y[0, 0, 0, 0]) and np.isnan(y[1, 0, 0, 1])
    assert np.isfinite(y[0, :, :, 1]).all()  # a NaN stays in its own channel's windows
    assert dx[0, 0, 1, 0] == upstream[0, 0, 0, 0] and dx[0, 1, 1, 0] == 0.0
    assert dx[1, 0, 0, 1] == upstream[1, 0, 0, 1]  # all NaN: the first element wins
    if stride is None:  # windows tile the input: one gradient per window
        assert np.sum(dx[0, :pool, :pool, 0] != 0) == 1
