"""tinynn against an independent reference, PyTorch (CPU, float64), from one table of cases.

Every public layer, loss, optimizer and schedule of tinynn has at least one row in ``CASES``
(``test_every_class_has_a_case`` makes sure, so a new class without a cross-check fails):
  layers      forward, then dL/dx and dL/dθ of every parameter from the same upstream gradient,
              against torch.nn.functional + autograd on the same weights;
  losses      the value (the batch mean) and its gradient w.r.t. pred;
  optimizers  the parameters after each of a few steps on the same gradients (a quadratic bowl,
              so the gradient depends on the parameters: any slip in the state shows);
  schedules   the learning rate over 50 steps against torch.optim.lr_scheduler;
  Model       three train steps of a small CNN against the same net written with torch.

Layouts: tinynn images are NHWC with Conv2D weights (kh, kw, C, F); torch wants NCHW and
(F, C, kh, kw), so the references permute. Tolerances are relative to the largest magnitude of
the reference array: forward values, losses, learning rates and optimizer steps 1e-10,
gradients and the Model's trained parameters 1e-9, in float64 throughout.

A case that reveals a tinynn bug goes into KNOWN_BUGS (xfail, strict) with the reason.
"""
import dataclasses
import importlib
import inspect
import pkgutil
import sys
import types
from typing import Callable, Optional

import numpy as np
import pytest

import tinynn
import tinynn as tn
from conftest_helpers import away_from_zero, import_torch

SEED = 21
FORWARD_RTOL = 1e-10
BACKWARD_RTOL = 1e-9


@pytest.fixture(scope="module")
def torch():
    """PyTorch on one thread (these arrays are tiny; the CI box has two cores for everything)."""
    torch = import_torch()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield torch
    torch.set_num_threads(threads)


def assert_close(actual, expected, rtol, what):
    """``actual`` (tinynn, numpy float64) equals ``expected`` (torch) to ``rtol`` relative to the
    largest magnitude of ``expected``."""
    if hasattr(expected, "detach"):
        expected = expected.detach().numpy()
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape}, torch {expected.shape}"
    assert actual.dtype == np.float64, f"{what}: dtype {actual.dtype}, expected float64"
    scale = np.nanmax(np.abs(expected), initial=0.0)  # NaN must match NaN (assert_allclose)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale,
                               err_msg=f"{what} differs from PyTorch")


def with_fast(obj, fast):
    """``obj`` with its ``fast`` switch set (None: the class default)."""
    if fast is not None:
        obj.fast = fast
    return obj


def path_name(fast):
    return "" if fast is None else "-fast" if fast else "-textbook"


# ---------------------------------------------------------------- layers
def nchw(x):
    return x.permute(0, 3, 1, 2)


def nhwc(x):
    return x.permute(0, 2, 3, 1)


@dataclasses.dataclass
class LayerCase:
    """``reference(F, x, p, y)``: torch's output for input x, with p the layer's params and state
    as tensors (tinynn's names and layouts) and y tinynn's own output (used by Dropout only, for
    its random keep pattern)."""
    id: str
    make: Callable
    shape: tuple
    reference: Callable
    training: bool = True
    scale: float = 1.0
    data: Optional[Callable] = None  # x -> the input (e.g. away from a kink)
    fast: Optional[bool] = None

    @property
    def subject(self):
        return type(self.make())

    def check(self, torch):
        gen = np.random.default_rng(SEED)
        x = gen.standard_normal(self.shape) * self.scale
        x = x if self.data is None else self.data(x)
        layer = with_fast(self.make(), self.fast)
        layer.forward(x, training=False)  # builds the parameters lazily, changes nothing else
        randomise(layer, gen)
        y = layer.forward(x, training=self.training)
        xt = torch.tensor(x, requires_grad=True)
        pt = {name: torch.tensor(value, requires_grad=name in layer.params)
              for name, value in {**layer.params, **layer.state}.items()}
        yt = self.reference(torch.nn.functional, xt, pt, y)
        assert_close(y, yt, FORWARD_RTOL, f"{self.id}: forward")
        if not self.training:
            return
        upstream = gen.standard_normal(y.shape)
        dx = layer.backward(upstream)
        yt.backward(torch.tensor(upstream))
        assert_close(dx, xt.grad, BACKWARD_RTOL, f"{self.id}: dL/dx")
        for name in layer.params:
            assert_close(layer.grads[name], pt[name].grad, BACKWARD_RTOL, f"{self.id}: dL/d{name}")
        if layer.params:  # a net's first layer: parameter gradients only (Net, Model)
            layer.forward(x, training=True)
            assert layer.backward(upstream, input_grad=False) is None
            for name in layer.params:
                assert_close(layer.grads[name], pt[name].grad, BACKWARD_RTOL,
                             f"{self.id}: dL/d{name} with input_grad=False")


def randomise(layer, gen):
    """Random values in every parameter and state array (not the initialiser's or zeros)."""
    for name, value in {**layer.params, **layer.state}.items():
        value[...] = gen.standard_normal(value.shape)
        if name == "running_var":
            value[...] = np.abs(value) + 0.5


def activation(name, make, reference, **kwargs):
    return LayerCase(name, make, (4, 5), lambda F, x, p, y: reference(F, x), **kwargs)


def dense_reference(F, x, p, y):
    return F.linear(x, p["w"].T, p.get("b"))


def keras_same_pads(size, kernel, stride, dilation):
    """Keras/TensorFlow "same": output ceil(size / stride), the odd pixel of padding at the end."""
    total = max((-(-size // stride) - 1) * stride + dilation * (kernel - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def conv_reference(stride, padding, dilation):
    """torch's conv2d. "same" with stride 1 is torch's own padding="same"; with stride > 1 torch
    has none, so the input is zero-padded by the Keras rule above, then convolved unpadded."""
    def reference(F, x, p, y):
        x, w = nchw(x), p["w"].permute(3, 2, 0, 1)
        torch_padding = padding
        if padding == "same" and stride != 1:
            (kh, kw), (sh, sw), (dh, dw) = (w.shape[2:], pair(stride), pair(dilation))
            top, bottom = keras_same_pads(x.shape[2], kh, sh, dh)
            left, right = keras_same_pads(x.shape[3], kw, sw, dw)
            x, torch_padding = F.pad(x, (left, right, top, bottom)), 0
        elif padding == "valid":
            torch_padding = 0
        return nhwc(F.conv2d(x, w, p.get("b"), stride=stride, padding=torch_padding,
                             dilation=dilation))
    return reference


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def conv_cases():
    """(id, Conv2D arguments, input shape NHWC) × {fast, textbook}; 1 and 3 input channels (the
    fast path has its own one-channel layout), odd and even sizes, every padding kind."""
    geometries = [
        ("k3-valid", dict(filters=4, kernel_size=3), (2, 6, 7, 3)),
        ("k3-s2-p1", dict(filters=3, kernel_size=3, stride=2, padding=1), (2, 7, 6, 3)),
        ("k2x3-d2", dict(filters=2, kernel_size=(2, 3), dilation=2), (2, 7, 8, 1)),
        ("k3-d2-s2-p2x1", dict(filters=2, kernel_size=3, dilation=2, stride=2, padding=(2, 1)),
         (2, 8, 7, 3)),
        ("k4-same", dict(filters=3, kernel_size=4, padding="same"), (2, 5, 6, 1)),
        ("k3-same", dict(filters=3, kernel_size=3, padding="same"), (2, 5, 6, 3)),
        ("k3-s2-same", dict(filters=2, kernel_size=3, stride=2, padding="same"), (2, 6, 7, 3)),
        ("k2-s3-d2-same", dict(filters=2, kernel_size=2, stride=(3, 2), dilation=2,
                               padding="same"), (2, 7, 8, 1)),
        ("k1-nobias", dict(filters=4, kernel_size=1, bias=False), (2, 3, 4, 3)),
        ("k3-s1x2-nobias", dict(filters=3, kernel_size=3, stride=(1, 2), bias=False),
         (2, 5, 7, 1)),
    ]
    for name, args, shape in geometries:
        for fast in (True, False):
            reference = conv_reference(args.get("stride", 1), args.get("padding", "valid"),
                                       args.get("dilation", 1))
            yield LayerCase(f"Conv2D-{name}-c{shape[3]}{path_name(fast)}",
                            lambda args=args: tn.Conv2D(**args), shape, reference, fast=fast)


def one_nan_per_window(x):
    """NaN at a different place in some 2×2 windows (torch: the NaN wins, and gets the gradient;
    with two NaNs in a window torch's kernel picks the last one, a quirk no case relies on)."""
    x = x.copy()
    x[0, 0, 1, 0] = x[0, 3, 2, 1] = x[1, 2, 0, 0] = x[1, 1, 3, 1] = np.nan
    return x


def pool_cases():
    """MaxPool2D (fast, textbook) and AvgPool2D: tiling windows, overlapping ones, a remainder
    that no window covers, rectangles, and ties (the first maximum wins, as in torch)."""
    geometries = [
        ("2", dict(pool_size=2), (2, 4, 6, 3), None),
        ("3-s2-overlap", dict(pool_size=3, stride=2), (2, 7, 7, 2), None),
        ("2-remainder", dict(pool_size=2), (2, 5, 7, 2), None),
        ("2x3-s1x2", dict(pool_size=(2, 3), stride=(1, 2)), (2, 5, 7, 2), None),
        ("2-ties", dict(pool_size=2), (2, 4, 4, 2), np.round),
        ("3-s2-ties", dict(pool_size=3, stride=2), (2, 7, 7, 2), np.round),
        ("2-nan", dict(pool_size=2), (2, 4, 4, 2), one_nan_per_window),
    ]
    for name, args, shape, data in geometries:
        kernel, stride = args["pool_size"], args.get("stride", args["pool_size"])
        extra = {} if data is None else {"data": data}
        for fast in (True, False):
            yield LayerCase(f"MaxPool2D-{name}{path_name(fast)}",
                            lambda args=args: tn.MaxPool2D(**args), shape,
                            lambda F, x, p, y, k=kernel, s=stride: nhwc(F.max_pool2d(nchw(x), k, s)),
                            fast=fast, **extra)
        if data is None:
            yield LayerCase(f"AvgPool2D-{name}", lambda args=args: tn.AvgPool2D(**args), shape,
                            lambda F, x, p, y, k=kernel, s=stride: nhwc(F.avg_pool2d(nchw(x), k, s)))


def batchnorm_reference(training, eps):
    """torch's batch_norm: (N, C) as is, (N, H, W, C) as NCHW. In training the batch statistics
    (biased variance) are used and differentiated through; in inference the running ones."""
    def reference(F, x, p, y):
        images = x.ndim == 4
        running = (None, None) if training else (p["running_mean"], p["running_var"])
        out = F.batch_norm(nchw(x) if images else x, *running, p["gamma"], p["beta"],
                           training=training, eps=eps)
        return nhwc(out) if images else out
    return reference


def batchnorm_cases():
    for shape in ((6, 4), (3, 4, 3, 5)):
        for training, eps in ((True, 1e-5), (True, 1e-2), (False, 1e-5), (False, 1e-2)):
            mode = "training" if training else "inference"
            yield LayerCase(f"BatchNorm-{len(shape)}d-{mode}-eps{eps:g}",
                            lambda eps=eps: tn.BatchNorm(eps=eps), shape,
                            batchnorm_reference(training, eps), training=training)


def dropout_reference(p):
    """Dropout's randomness cannot be shared, so the reference keeps the units tinynn kept
    (y ≠ 0; x has no zeros) and scales them as torch's dropout scales its survivors."""
    def reference(F, x, params, y):
        survivor = F.dropout(x.new_ones(10_000), p, training=True).max()  # torch's 1/(1 − p)
        return x * x.new_tensor(y != 0) * survivor
    return reference


def layer_norm_reference(eps):
    def reference(F, x, p, y):
        return F.layer_norm(x, x.shape[-1:], p["gamma"], p["beta"], eps=eps)
    return reference


def split_heads(x, heads):
    batch, time, dim = x.shape
    return x.reshape(batch, time, heads, dim // heads).transpose(1, 2)


def attention_reference(heads, causal, prefix=""):
    """torch's scaled_dot_product_attention on tinynn's projections (``prefix``: the path of
    the layer inside a block, for a Residual's parameter names)."""
    def reference(F, x, p, y):
        w = {name: p[prefix + name] for name in ("wq", "wk", "wv", "wo", "bq", "bv", "bo")}
        q, k, v = (split_heads(x @ w["w" + n] + (w["b" + n] if n != "k" else 0), heads)
                   for n in "qkv")
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return out.transpose(1, 2).flatten(2) @ w["wo"] + w["bo"]
    return reference


def residual_reference(F, x, p, y):
    """Residual(Net([LayerNorm(), MultiHeadAttention(2), GELU(), Dense(4)]))."""
    h = layer_norm_reference(1e-5)(F, x, {"gamma": p["0.gamma"], "beta": p["0.beta"]}, None)
    h = F.gelu(attention_reference(2, True, "1.")(F, h, p, None), approximate="tanh")
    return x + F.linear(h, p["3.w"].T, p["3.b"])


LAYER_CASES = [
    LayerCase("Dense", lambda: tn.Dense(3), (4, 5), dense_reference),
    LayerCase("Dense-sequence", lambda: tn.Dense(3), (2, 4, 5), dense_reference),
    LayerCase("LayerNorm-2d", tn.LayerNorm, (4, 6), layer_norm_reference(1e-5), scale=3.0),
    LayerCase("LayerNorm-3d-eps0.1", lambda: tn.LayerNorm(eps=0.1), (2, 3, 5),
              layer_norm_reference(0.1)),
    LayerCase("PositionalEmbedding", lambda: tn.PositionalEmbedding(7), (2, 5, 4),
              lambda F, x, p, y: x + p["w"][:x.shape[1]]),
    LayerCase("MultiHeadAttention-causal", lambda: tn.MultiHeadAttention(2), (3, 5, 6),
              attention_reference(2, True)),
    LayerCase("MultiHeadAttention-causal-one-head", lambda: tn.MultiHeadAttention(1), (2, 4, 3),
              attention_reference(1, True)),
    LayerCase("MultiHeadAttention-full", lambda: tn.MultiHeadAttention(3, causal=False),
              (2, 4, 6), attention_reference(3, False)),
    LayerCase("Residual-Dense", lambda: tn.Residual(tn.Dense(5)), (3, 5),
              lambda F, x, p, y: x + F.linear(x, p["w"].T, p["b"])),
    LayerCase("Residual-attention-block",
              lambda: tn.Residual(tn.Net([tn.LayerNorm(), tn.MultiHeadAttention(2), tn.GELU(),
                                          tn.Dense(4)])), (2, 5, 4), residual_reference),
    LayerCase("Dense-nobias", lambda: tn.Dense(2, bias=False), (3, 4), dense_reference),
    LayerCase("Dense-inference", lambda: tn.Dense(3), (4, 5), dense_reference, training=False),
    activation("ReLU", tn.ReLU, lambda F, x: F.relu(x), data=away_from_zero),
    activation("LeakyReLU-default", tn.LeakyReLU, lambda F, x: F.leaky_relu(x, 0.01),
               data=away_from_zero),
    activation("LeakyReLU-0.2", lambda: tn.LeakyReLU(0.2), lambda F, x: F.leaky_relu(x, 0.2),
               data=away_from_zero),
    activation("Sigmoid", tn.Sigmoid, lambda F, x: F.sigmoid(x)),
    activation("Sigmoid-large", tn.Sigmoid, lambda F, x: F.sigmoid(x), scale=40.0),
    activation("Tanh", tn.Tanh, lambda F, x: F.tanh(x)),
    activation("GELU", tn.GELU, lambda F, x: F.gelu(x, approximate="tanh"), scale=2.0),
    activation("Softplus", tn.Softplus, lambda F, x: F.softplus(x), scale=2.0),
    # torch's softplus is linear above `threshold` (20): raise it to compare the exact function
    activation("Softplus-large", tn.Softplus, lambda F, x: F.softplus(x, threshold=1e3),
               scale=40.0),
    LayerCase("Flatten", tn.Flatten, (2, 3, 4, 2), lambda F, x, p, y: x.flatten(1)),
    activation("Dropout-p0-training", lambda: tn.Dropout(0.0),
               lambda F, x: F.dropout(x, 0.0, training=True)),
    activation("Dropout-p0.5-inference", lambda: tn.Dropout(0.5),
               lambda F, x: F.dropout(x, 0.5, training=False), training=False),
    LayerCase("Dropout-p0.3-training", lambda: tn.Dropout(0.3), (6, 7), dropout_reference(0.3)),
    *conv_cases(),
    *pool_cases(),
    *batchnorm_cases(),
]


@dataclasses.dataclass
class RunningStatisticsCase:
    """BatchNorm's running averages after a few training forwards, against torch's BatchNorm
    module with momentum 1 − tinynn's (tinynn: running = m·running + (1 − m)·batch, Keras'
    convention; torch: running = (1 − m)·running + m·batch; both take the unbiased batch
    variance), then an inference forward with them."""
    id: str
    shape: tuple
    momentum: float
    subject = tn.BatchNorm

    def check(self, torch):
        gen = np.random.default_rng(SEED)
        batches = [gen.standard_normal(self.shape) * 2 + 1 for _ in range(4)]
        layer = tn.BatchNorm(momentum=self.momentum, eps=1e-3)
        images = len(self.shape) == 4
        module = (torch.nn.BatchNorm2d if images else torch.nn.BatchNorm1d)(
            self.shape[-1], eps=1e-3, momentum=1.0 - self.momentum, dtype=torch.float64)
        as_torch = (lambda x: nchw(torch.tensor(x))) if images else torch.tensor
        as_tinynn = nhwc if images else (lambda y: y)
        layer.forward(batches[0], training=False)  # build
        for name in ("gamma", "beta"):
            layer.params[name][...] = gen.standard_normal(self.shape[-1])
        module.weight.data = torch.tensor(layer.params["gamma"])
        module.bias.data = torch.tensor(layer.params["beta"])
        module.train()
        for step, x in enumerate(batches[:3], start=1):
            y = layer.forward(x, training=True)
            assert_close(y, as_tinynn(module(as_torch(x))), FORWARD_RTOL, f"{self.id}: forward")
            assert_close(layer.running_mean, module.running_mean, FORWARD_RTOL,
                         f"{self.id}: running_mean after {step} training forwards")
            assert_close(layer.running_var, module.running_var, FORWARD_RTOL,
                         f"{self.id}: running_var after {step} training forwards")
        module.eval()
        assert_close(layer.forward(batches[3], training=False), as_tinynn(module(as_torch(batches[3]))),
                     FORWARD_RTOL, f"{self.id}: inference with the running statistics")


class EmbeddingCase:
    """Embedding against torch's F.embedding and nn.Embedding (with tinynn's table copied in):
    the looked-up rows and dL/dw, repeated ids included; no dL/d(ids) on either side."""
    id = "Embedding-repeated-ids"
    subject = tn.Embedding

    def check(self, torch):
        gen = np.random.default_rng(SEED)
        ids = gen.integers(0, 6, (3, 7))
        ids[0, :3] = 2  # the same row read at several positions: the gradients add up
        layer = tn.Embedding(6, 4, dtype=np.float64)
        randomise(layer, gen)
        y = layer.forward(ids)
        upstream = gen.standard_normal(y.shape)
        assert layer.backward(upstream) is None
        module = torch.nn.Embedding(6, 4, dtype=torch.float64)
        module.weight.data = torch.tensor(layer.params["w"])
        w = torch.tensor(layer.params["w"], requires_grad=True)
        for what, out, weight in (("F.embedding", torch.nn.functional.embedding(
                torch.tensor(ids), w), w), ("nn.Embedding", module(torch.tensor(ids)), module.weight)):
            assert_close(y, out, FORWARD_RTOL, f"{self.id}: forward ({what})")
            out.backward(torch.tensor(upstream))
            assert_close(layer.grads["w"], weight.grad, BACKWARD_RTOL, f"{self.id}: dL/dw ({what})")


class MultiheadAttentionModuleCase:
    """MultiHeadAttention against torch.nn.MultiheadAttention (batch_first, a causal mask) with
    tinynn's weights copied in (in_proj = [wq; wk; wv]ᵀ, a zero key bias, out_proj = woᵀ):
    the output, dL/dx and every weight's gradient mapped back to tinynn's names."""
    id = "MultiHeadAttention-vs-nn.MultiheadAttention"
    subject = tn.MultiHeadAttention

    def check(self, torch):
        gen = np.random.default_rng(SEED)
        x = gen.standard_normal((3, 6, 8))
        layer = tn.MultiHeadAttention(4)
        layer.forward(x, training=False)
        randomise(layer, gen)
        y = layer.forward(x)
        p = layer.params
        module = torch.nn.MultiheadAttention(8, 4, batch_first=True, dtype=torch.float64)
        module.in_proj_weight.data = torch.tensor(np.concatenate([p["wq"].T, p["wk"].T, p["wv"].T]))
        module.in_proj_bias.data = torch.tensor(np.concatenate([p["bq"], np.zeros(8), p["bv"]]))
        module.out_proj.weight.data = torch.tensor(p["wo"].T.copy())
        module.out_proj.bias.data = torch.tensor(p["bo"])
        xt = torch.tensor(x, requires_grad=True)
        mask = torch.triu(torch.ones(6, 6, dtype=torch.bool), diagonal=1)  # True: may not look
        yt, _ = module(xt, xt, xt, attn_mask=mask, need_weights=False)
        assert_close(y, yt, FORWARD_RTOL, f"{self.id}: forward")
        upstream = gen.standard_normal(y.shape)
        dx = layer.backward(upstream)
        yt.backward(torch.tensor(upstream))
        assert_close(dx, xt.grad, BACKWARD_RTOL, f"{self.id}: dL/dx")
        w_in, b_in = module.in_proj_weight.grad, module.in_proj_bias.grad
        expected = {"wq": w_in[:8].T, "wk": w_in[8:16].T, "wv": w_in[16:].T, "bq": b_in[:8],
                    "bv": b_in[16:], "wo": module.out_proj.weight.grad.T,
                    "bo": module.out_proj.bias.grad}
        for name, grad in expected.items():
            assert_close(layer.grads[name], grad, BACKWARD_RTOL, f"{self.id}: dL/d{name}")
        key_bias = np.abs(b_in[8:16].numpy()).max()  # 0 up to rounding: why tinynn has none
        assert key_bias < BACKWARD_RTOL * np.abs(b_in.numpy()).max(), f"{self.id}: {key_bias}"


STATISTICS_CASES = [
    RunningStatisticsCase("BatchNorm-running-statistics-2d", (8, 3), 0.9),
    RunningStatisticsCase("BatchNorm-running-statistics-4d", (3, 4, 3, 2), 0.9),
    RunningStatisticsCase("BatchNorm-running-statistics-momentum0.5", (5, 3), 0.5),
    RunningStatisticsCase("BatchNorm-running-statistics-momentum0", (5, 3), 0.0),
]


# ---------------------------------------------------------------- losses
@dataclasses.dataclass
class LossCase:
    """``reference(F, pred, target)``: torch's batch-mean loss; tinynn's grad is its gradient."""
    id: str
    make: Callable
    shape: tuple
    target: Callable  # gen -> the target array tinynn gets (torch gets it as a tensor)
    reference: Callable
    scale: float = 1.0

    @property
    def subject(self):
        return type(self.make())

    def check(self, torch):
        gen = np.random.default_rng(SEED)
        pred = gen.standard_normal(self.shape) * self.scale
        target = self.target(gen)
        value, grad = self.make()(pred, target)
        pred_t = torch.tensor(pred, requires_grad=True)
        value_t = self.reference(torch.nn.functional, pred_t, torch.as_tensor(np.asarray(target)))
        value_t.backward()
        assert_close(value, value_t, FORWARD_RTOL, f"{self.id}: value")
        assert_close(grad, pred_t.grad, BACKWARD_RTOL, f"{self.id}: d value / d pred")


def labels(n, classes):
    return lambda gen: gen.integers(0, classes, n)


def soft_labels(shape):
    return lambda gen: gen.uniform(0.0, 1.0, shape)


def binary(shape):
    return lambda gen: gen.integers(0, 2, shape).astype(np.float64)


def cross_entropy(F, pred, target):
    return F.cross_entropy(pred, target)  # indices, or (one-hot) probabilities of pred's shape


LOSS_CASES = [
    LossCase("MSE", tn.MSE, (5, 3), lambda gen: gen.standard_normal((5, 3)),
             lambda F, p, t: F.mse_loss(p, t)),
    LossCase("MSE-one-output", tn.MSE, (6, 1), lambda gen: gen.standard_normal((6, 1)),
             lambda F, p, t: F.mse_loss(p, t)),
    LossCase("SoftmaxCrossEntropy-indices", tn.SoftmaxCrossEntropy, (6, 4), labels(6, 4),
             cross_entropy),
    LossCase("SoftmaxCrossEntropy-float-indices", tn.SoftmaxCrossEntropy, (6, 4),
             lambda gen: labels(6, 4)(gen).astype(np.float64),
             lambda F, p, t: F.cross_entropy(p, t.long())),
    LossCase("SoftmaxCrossEntropy-one-hot", tn.SoftmaxCrossEntropy, (6, 4),
             lambda gen: np.eye(4)[labels(6, 4)(gen)], cross_entropy),
    LossCase("SoftmaxCrossEntropy-large-logits", tn.SoftmaxCrossEntropy, (6, 4), labels(6, 4),
             cross_entropy, scale=1e3),
    LossCase("SoftmaxCrossEntropy-sequence", tn.SoftmaxCrossEntropy, (3, 5, 4),
             lambda gen: gen.integers(0, 4, (3, 5)),
             lambda F, p, t: F.cross_entropy(p.permute(0, 2, 1), t)),
    LossCase("SoftmaxCrossEntropy-sequence-one-hot", tn.SoftmaxCrossEntropy, (2, 3, 5),
             lambda gen: np.eye(5)[gen.integers(0, 5, (2, 3))],
             lambda F, p, t: F.cross_entropy(p.permute(0, 2, 1), t.argmax(-1))),
    LossCase("SigmoidCrossEntropy-soft-targets", tn.SigmoidCrossEntropy, (5, 3),
             soft_labels((5, 3)), lambda F, p, t: F.binary_cross_entropy_with_logits(p, t)),
    LossCase("SigmoidCrossEntropy-labels-one-output", tn.SigmoidCrossEntropy, (6, 1),
             binary(6), lambda F, p, t: F.binary_cross_entropy_with_logits(p, t[:, None])),
    LossCase("SigmoidCrossEntropy-large-logits", tn.SigmoidCrossEntropy, (5, 3), binary((5, 3)),
             lambda F, p, t: F.binary_cross_entropy_with_logits(p, t), scale=100.0),
]


# ---------------------------------------------------------------- optimizers
THETA0 = [np.array([1.0, -2.0, 3.0]), np.array([[0.5, -0.25], [2.0, -1.5]])]
CURVATURE = [np.array([1.0, 2.0, 0.5]), np.array([[3.0, 1.0], [0.2, 4.0]])]
SHIFT = [np.array([0.1, -0.3, 0.2]), np.array([[0.0, 0.5], [-0.4, 0.05]])]


def bowl_gradient(theta):
    """The gradient of Σ ½aθ² + cθ: it changes with θ, so every step's state matters."""
    return [a * t + c for a, t, c in zip(CURVATURE, theta, SHIFT)]


@dataclasses.dataclass
class OptimizerCase:
    """``reference(optim, params)``: the torch.optim optimizer with the same settings;
    ``torch_schedule(lr_scheduler, opt)`` its scheduler when tinynn's lr is a Schedule."""
    id: str
    make: Callable
    reference: Callable
    fast: Optional[bool] = None
    torch_schedule: Optional[Callable] = None
    steps: int = 6

    @property
    def subject(self):
        return type(self.make())

    def check(self, torch):
        ours = with_fast(self.make(), self.fast)
        theta = [t.copy() for t in THETA0]
        params = [torch.tensor(t, requires_grad=True) for t in THETA0]
        theirs = self.reference(torch.optim, params)
        schedule = self.torch_schedule and self.torch_schedule(torch.optim.lr_scheduler, theirs)
        for step in range(1, self.steps + 1):
            ours.step(theta, bowl_gradient(theta))
            for p, g in zip(params, bowl_gradient([p.detach().numpy() for p in params])):
                p.grad = torch.tensor(g)
            theirs.step()
            if schedule:
                schedule.step()
            for k, (a, e) in enumerate(zip(theta, params)):
                assert_close(a, e, FORWARD_RTOL, f"{self.id}: parameter {k} after step {step}")


def adam_cases(name, make, reference):
    for fast in (True, False):
        yield OptimizerCase(f"{name}{path_name(fast)}", make, reference, fast=fast)


OPTIMIZER_CASES = [
    OptimizerCase("SGD", lambda: tn.SGD(lr=0.1), lambda o, p: o.SGD(p, lr=0.1)),
    OptimizerCase("SGD-weight-decay", lambda: tn.SGD(lr=0.1, weight_decay=0.01),
                  lambda o, p: o.SGD(p, lr=0.1, weight_decay=0.01)),
    OptimizerCase("Momentum", lambda: tn.Momentum(lr=0.05, momentum=0.9),
                  lambda o, p: o.SGD(p, lr=0.05, momentum=0.9)),
    OptimizerCase("Momentum-weight-decay", lambda: tn.Momentum(lr=0.05, momentum=0.8,
                                                               weight_decay=0.1),
                  lambda o, p: o.SGD(p, lr=0.05, momentum=0.8, weight_decay=0.1)),
    OptimizerCase("Momentum-nesterov", lambda: tn.Momentum(lr=0.05, momentum=0.9, nesterov=True),
                  lambda o, p: o.SGD(p, lr=0.05, momentum=0.9, nesterov=True)),
    OptimizerCase("Momentum-nesterov-weight-decay",
                  lambda: tn.Momentum(lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.1),
                  lambda o, p: o.SGD(p, lr=0.05, momentum=0.7, nesterov=True, weight_decay=0.1)),
    # torch's RMSprop: alpha is tinynn's rho, eps is added outside the square root (as tinynn)
    OptimizerCase("RMSProp", lambda: tn.RMSProp(lr=0.01, rho=0.9, eps=1e-8),
                  lambda o, p: o.RMSprop(p, lr=0.01, alpha=0.9, eps=1e-8)),
    OptimizerCase("RMSProp-eps-weight-decay",
                  lambda: tn.RMSProp(lr=0.01, rho=0.8, eps=0.1, weight_decay=0.05),
                  lambda o, p: o.RMSprop(p, lr=0.01, alpha=0.8, eps=0.1, weight_decay=0.05)),
    *adam_cases("Adam", lambda: tn.Adam(lr=0.1), lambda o, p: o.Adam(p, lr=0.1)),
    *adam_cases("Adam-betas-eps", lambda: tn.Adam(lr=0.05, beta1=0.8, beta2=0.99, eps=0.1),
                lambda o, p: o.Adam(p, lr=0.05, betas=(0.8, 0.99), eps=0.1)),
    # Adam's weight_decay is L2 (added to the gradient), as torch.optim.Adam's
    *adam_cases("Adam-weight-decay", lambda: tn.Adam(lr=0.1, weight_decay=0.05),
                lambda o, p: o.Adam(p, lr=0.1, weight_decay=0.05)),
    *adam_cases("AdamW", lambda: tn.AdamW(lr=0.1, weight_decay=0.2),
                lambda o, p: o.AdamW(p, lr=0.1, weight_decay=0.2)),
    *adam_cases("AdamW-default-decay", lambda: tn.AdamW(lr=0.05, beta1=0.8, beta2=0.99),
                lambda o, p: o.AdamW(p, lr=0.05, betas=(0.8, 0.99))),
    *adam_cases("AdamW-no-decay", lambda: tn.AdamW(lr=0.1, weight_decay=0.0),
                lambda o, p: o.AdamW(p, lr=0.1, weight_decay=0.0)),
    # a Schedule as lr: tinynn sets lr = schedule(t) before step t, torch steps its scheduler after
    OptimizerCase("SGD-with-StepDecay", lambda: tn.SGD(lr=tn.StepDecay(0.1, step_size=2, gamma=0.5)),
                  lambda o, p: o.SGD(p, lr=0.1),
                  torch_schedule=lambda s, opt: s.StepLR(opt, step_size=2, gamma=0.5)),
    OptimizerCase("AdamW-with-CosineDecay",
                  lambda: tn.AdamW(lr=tn.CosineDecay(0.1, total_steps=8, min_lr=0.01)),
                  lambda o, p: o.AdamW(p, lr=0.1),
                  torch_schedule=lambda s, opt: s.CosineAnnealingLR(opt, T_max=8, eta_min=0.01)),
]


# ---------------------------------------------------------------- schedules
@dataclasses.dataclass
class ScheduleCase:
    """``reference(lr_scheduler, optimizer)``: the torch scheduler whose learning rate at step k
    (after k calls of ``step``) is tinynn's ``schedule(k)``; ``lr`` starts torch's optimizer."""
    id: str
    make: Callable
    lr: float
    reference: Callable
    steps: int = 50

    @property
    def subject(self):
        return type(self.make())

    def check(self, torch):
        param = torch.zeros(1, dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.SGD([param], lr=self.lr)
        scheduler = self.reference(torch.optim.lr_scheduler, optimizer)
        expected = []
        for _ in range(self.steps):
            expected.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        ours = self.make()
        actual = np.array([ours(k) for k in range(self.steps)], dtype=np.float64)
        assert_close(actual, np.array(expected), FORWARD_RTOL, f"{self.id}: learning rates")


def cosine_then_flat(s, opt, total, min_lr, lr):
    """torch's cosine annealing goes back up after T_max; tinynn's CosineDecay stays at min_lr,
    which is torch's cosine followed by a constant min_lr (ConstantLR with factor min_lr/lr)."""
    return s.SequentialLR(opt, [s.CosineAnnealingLR(opt, T_max=total, eta_min=min_lr),
                                s.ConstantLR(opt, factor=min_lr / lr, total_iters=10 ** 6)],
                          milestones=[total])


def linear_warm_up(s, opt, steps):
    """tinynn's WarmUp uses (k + 1)/steps of the rate at step k < steps: torch's LinearLR from
    1/steps to 1 over steps − 1 iterations."""
    return s.LinearLR(opt, start_factor=1.0 / steps, end_factor=1.0, total_iters=steps - 1)


SCHEDULE_CASES = [
    ScheduleCase("StepDecay", lambda: tn.StepDecay(0.1, step_size=7, gamma=0.5), 0.1,
                 lambda s, opt: s.StepLR(opt, step_size=7, gamma=0.5)),
    ScheduleCase("StepDecay-default-gamma", lambda: tn.StepDecay(0.3, step_size=20), 0.3,
                 lambda s, opt: s.StepLR(opt, step_size=20)),
    ScheduleCase("ExponentialDecay", lambda: tn.ExponentialDecay(0.1, gamma=0.95), 0.1,
                 lambda s, opt: s.ExponentialLR(opt, gamma=0.95)),
    ScheduleCase("CosineDecay", lambda: tn.CosineDecay(0.1, total_steps=50), 0.1,
                 lambda s, opt: s.CosineAnnealingLR(opt, T_max=50)),
    ScheduleCase("CosineDecay-min-lr-then-flat",
                 lambda: tn.CosineDecay(0.2, total_steps=30, min_lr=0.02), 0.2,
                 lambda s, opt: cosine_then_flat(s, opt, 30, 0.02, 0.2)),
    ScheduleCase("WarmUp-constant", lambda: tn.WarmUp(0.1, warmup_steps=10), 0.1,
                 lambda s, opt: linear_warm_up(s, opt, 10)),
    ScheduleCase("WarmUp-then-StepDecay",
                 lambda: tn.WarmUp(tn.StepDecay(0.1, step_size=8, gamma=0.5), warmup_steps=5), 0.1,
                 lambda s, opt: s.SequentialLR(opt, [linear_warm_up(s, opt, 5),
                                                     s.StepLR(opt, step_size=8, gamma=0.5)],
                                               milestones=[5])),
    ScheduleCase("WarmUp-then-CosineDecay",
                 lambda: tn.WarmUp(tn.CosineDecay(0.1, total_steps=40), warmup_steps=10), 0.1,
                 lambda s, opt: s.SequentialLR(opt, [linear_warm_up(s, opt, 10),
                                                     s.CosineAnnealingLR(opt, T_max=40)],
                                               milestones=[10])),
]


# ---------------------------------------------------------------- a whole training step
class TrainStepCase:
    """Three ``Model.train_step`` calls of a small CNN (Conv2D, ReLU, MaxPool2D, Flatten, Dense,
    softmax cross-entropy, Adam) against the same net written with torch: the layers, the loss's
    batch mean, the first layer's input_grad=False backward and the optimizer, wired together."""
    id = "Model-train-step-cnn-adam"
    subject = tn.Model

    def check(self, torch):
        F = torch.nn.functional
        gen = np.random.default_rng(SEED)
        x, y = gen.standard_normal((4, 6, 6, 2)), gen.integers(0, 3, 4)
        net = tn.Net([tn.Conv2D(3, 3, padding="same"), tn.ReLU(), tn.MaxPool2D(2), tn.Flatten(),
                      tn.Dense(3)])
        net.forward(x)  # builds every layer in float64 (tinynn's initialisers)
        model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=0.01), dtype=np.float64)
        params = [torch.tensor(p, requires_grad=True) for p in net.params]
        optimizer = torch.optim.Adam(params, lr=0.01)
        w0, b0, w1, b1 = params
        for step in range(1, 4):
            value = model.train_step(x, y)
            optimizer.zero_grad()
            h = F.relu(F.conv2d(nchw(torch.tensor(x)), w0.permute(3, 2, 0, 1), b0, padding="same"))
            logits = nhwc(F.max_pool2d(h, 2)).flatten(1) @ w1 + b1
            expected = F.cross_entropy(logits, torch.tensor(y))
            expected.backward()
            optimizer.step()
            assert_close(value, expected, FORWARD_RTOL, f"{self.id}: loss at step {step}")
            for k, (a, e) in enumerate(zip(net.params, params)):
                assert_close(a, e, BACKWARD_RTOL, f"{self.id}: parameter {k} after step {step}")


class GPTCase:
    """A whole small GPT (tinynn.models.build_gpt: 2 blocks) against the same network written
    with torch.nn.functional on the same weights: the loss on a batch of token ids and the
    gradient of every parameter, named by its state_dict path."""
    id = "GPT-loss-and-every-gradient"
    subject = tn.Net

    def check(self, torch):
        from tinynn.models import build_gpt
        F = torch.nn.functional
        gen = np.random.default_rng(SEED)
        ids = gen.integers(0, 11, (3, 9))
        x, y = ids[:, :-1], ids[:, 1:]
        net = build_gpt(11, context=8, dim=8, heads=2, layers=2, dtype=np.float64)
        net.forward(x)
        for array in net.params:  # not the initial values (zero biases, unit gammas)
            array[...] = gen.standard_normal(array.shape) * 0.5
        value, grad = tn.SoftmaxCrossEntropy()(net.forward(x, training=True), y)
        net.backward(grad)
        p = {key[len("param."):]: torch.tensor(a, requires_grad=True)
             for key, a in net.state_dict().items()}
        logits = self.torch_gpt(F, torch.tensor(x), p, blocks=(2, 3, 4, 5))
        expected = F.cross_entropy(logits.flatten(0, 1), torch.tensor(y).flatten())
        expected.backward()
        assert_close(value, expected, FORWARD_RTOL, f"{self.id}: loss")
        ours = set()
        for path, layer in tinynn.net.leaf_layers(net):
            for name in layer.params:
                key = f"{path}.{name}"
                ours.add(key)
                assert_close(layer.grads[name], p[key].grad, BACKWARD_RTOL, f"{self.id}: d{key}")
        assert ours == set(p)

    @staticmethod
    def torch_gpt(F, ids, p, blocks):
        h = F.embedding(ids, p["0.w"]) + p["1.w"][:ids.shape[1]]
        for i in blocks:
            if i % 2 == 0:  # attention
                a = F.layer_norm(h, h.shape[-1:], p[f"{i}.0.gamma"], p[f"{i}.0.beta"])
                h = h + attention_reference(2, True, f"{i}.1.")(F, a, p, None)
            else:           # the MLP
                a = F.layer_norm(h, h.shape[-1:], p[f"{i}.0.gamma"], p[f"{i}.0.beta"])
                a = F.gelu(a @ p[f"{i}.1.w"] + p[f"{i}.1.b"], approximate="tanh")
                h = h + a @ p[f"{i}.3.w"] + p[f"{i}.3.b"]
        h = F.layer_norm(h, h.shape[-1:], p["6.gamma"], p["6.beta"])
        return h @ p["7.w"] + p["7.b"]


# ---------------------------------------------------------------- the table
CASES = [*LAYER_CASES, EmbeddingCase(), MultiheadAttentionModuleCase(), *STATISTICS_CASES,
         *LOSS_CASES, *OPTIMIZER_CASES, *SCHEDULE_CASES, TrainStepCase(), GPTCase()]

KNOWN_BUGS = {}  # case id -> why tinynn disagrees with PyTorch (an xfail that must keep failing)


def table():
    for case in CASES:
        marks = ([pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case.id])]
                 if case.id in KNOWN_BUGS else [])
        yield pytest.param(case, id=case.id, marks=marks)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")
@pytest.mark.parametrize("case", list(table()))
def test_matches_pytorch(case, torch, monkeypatch):
    # tinynn's global generator (Dropout's masks, the initialisers) from a fixed seed, restored after
    monkeypatch.setattr(tinynn.random, "_generator", np.random.default_rng(SEED))
    case.check(torch)


# ---------------------------------------------------------------- the table is complete
FAMILIES = (tn.Layer, tn.Loss, tn.Optimizer, tn.Schedule)

# Classes with no PyTorch counterpart, so no row in the table: name -> why. Keep it empty unless
# that is really so (every class tinynn has today has one).
NO_PYTORCH_COUNTERPART = {}


def framework_modules(package=tinynn):
    """Every module of the framework (not the course tooling, not the command line)."""
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name in ("tinynn.course", "tinynn.__main__"):
            continue
        module = importlib.import_module(info.name)
        yield module
        if info.ispkg:
            yield from framework_modules(module)


def framework_classes():
    """Every public layer, loss, optimizer and schedule class tinynn defines or exports."""
    found = {cls for _, cls in inspect.getmembers(tn, inspect.isclass)}
    for module in framework_modules():
        found |= {cls for name, cls in inspect.getmembers(module, inspect.isclass)
                  if cls.__module__ == module.__name__ and not name.startswith("_")}
    return {cls for cls in found if issubclass(cls, FAMILIES) and cls not in FAMILIES}


def test_every_class_has_a_case():
    covered = {case.subject for case in CASES}
    missing = sorted(cls.__name__ for cls in framework_classes() - covered
                     if cls.__name__ not in NO_PYTORCH_COUNTERPART)
    assert not missing, f"no PyTorch cross-check in CASES for: {missing}"
    assert {tn.Dense, tn.Conv2D, tn.BatchNorm, tn.MSE, tn.AdamW, tn.WarmUp} <= framework_classes()


def test_every_fast_path_and_its_textbook_path_have_a_case():
    paths = {}
    for case in CASES:
        fast = getattr(case, "fast", None)
        paths.setdefault(case.subject, set()).add(getattr(case.subject, "fast", None)
                                                  if fast is None else fast)
    switchable = {cls for cls in framework_classes() if hasattr(cls, "fast")}
    assert switchable, "expected classes with a fast switch (Conv2D, MaxPool2D, Adam)"
    lacking = sorted(cls.__name__ for cls in switchable if not {True, False} <= paths.get(cls, set()))
    assert not lacking, f"a fast or a textbook path without a PyTorch case: {lacking}"


def test_case_ids_are_unique():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


# ---------------------------------------------------------------- the torch helper itself
@pytest.fixture
def torch_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError


def test_without_torch_the_cross_check_is_skipped(torch_missing, monkeypatch):
    monkeypatch.delenv("TINYNN_REQUIRE_TORCH", raising=False)
    with pytest.raises(pytest.skip.Exception, match="torch is not installed"):
        import_torch()


def test_without_torch_the_cross_check_fails_where_torch_is_required(torch_missing, monkeypatch):
    monkeypatch.setenv("TINYNN_REQUIRE_TORCH", "1")
    with pytest.raises(pytest.fail.Exception, match="TINYNN_REQUIRE_TORCH=1 but torch cannot"):
        import_torch()


def test_with_torch_the_helper_returns_it(monkeypatch):
    fake = types.ModuleType("torch")
    monkeypatch.setitem(sys.modules, "torch", fake)
    monkeypatch.setenv("TINYNN_REQUIRE_TORCH", "1")
    assert import_torch() is fake
