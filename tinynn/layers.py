"""Layers: the building blocks of a network.

A layer is a function with a memory. ``forward(x, training=True)`` computes the output and, in
training, saves what the backward pass will need; ``backward(grad)`` receives dL/dy (same shape
as y) and returns dL/dx (same shape as x), storing dL/dθ in ``layer.grads[name]`` for every
parameter ``layer.params[name]``. Gradients are *summed* over the batch: the loss has already
divided by the batch size.

Training and inference. Only a training forward saves anything. A forward with
``training=False`` (``net(x)``, ``model.predict``, ``model.evaluate``) leaves the layer exactly
as it was, so a backward after it still belongs to the last training forward; a backward with
no training forward at all raises CallOrderError.

Backward never writes into what forward saved. It only reads the saved tensors, so a second
backward after one forward returns the same dL/dx and the same gradients as the first (a
gradient-accumulation loop, or a notebook cell run twice, gets the right numbers). Reusing a
saved buffer as scratch space would be a speed trick that breaks this; tinynn uses none (Conv2D's
fast backward allocates its own dL/dcols: reusing the saved im2col matrix saved no measurable
time).

The dtype rule. Every layer computes in floating point: an input that is not a floating-point
numpy array (int, bool, ...) raises ShapeError naming the layer and the dtype it got, with the
hint ``x.astype(np.float32)``. Integer data would otherwise build integer weights (Dense,
Conv2D), round means and scales to whole numbers (AvgPool2D, BatchNorm), or come out of an
activation as float64. A layer's dtype is fixed when its parameters are created: from
``dtype=`` if given, else from the first input (lazy, ``Dense(10)``) or float32 (eager,
``Dense(10, in_features=784)``). After that an input of another dtype raises ShapeError naming
the layer, the expected and the actual dtype. A layer never casts: a silent cast would hide a
float64 array that doubles memory and time, or a float32 one that ruins a gradient check
(which needs float64 throughout). ``Model`` converts the data to the net's dtype once, on the
way in. Parameter-free layers compute in their input's dtype.

Arrays are batch-first: the first axis indexes samples.
"""
import numpy as np

from . import initializers
from .checks import check_float_dtype, check_float_input, check_int, check_number
from .errors import CallOrderError, ShapeError
from .functional import matmul_rows, sigmoid
from .random import rng


class Layer:
    """Base class. Subclasses implement ``forward`` and ``backward``; parameter-free layers
    leave ``params`` empty.

    ``forward(x, training=True)``: on a layer the default is training, because a layer on its
    own is studied forward-then-backward (gradcheck, the notebooks' exercises), and backward
    needs what a training forward saves. ``Net.forward`` defaults to ``training=False``
    instead: ``net(x)`` is a prediction, and training code (``Model``) says
    ``training=True``.

    ``backward(grad, input_grad=True)``: fill ``grads``, return dL/dx, or ``None`` when
    ``input_grad`` is False: a net's first layer gets that, because its input is the data and
    nobody needs dL/d(data), so it may skip computing it. A backward that takes only ``grad``
    (a layer you write yourself) is fine too: Net then calls it with ``grad`` alone.

    ``grads``: one array per parameter, created with it (``make_grads``), same shape and
    dtype. Every built-in backward writes its result *into* these arrays (``grads[name][...] =
    ...``) rather than binding new ones, so a list taken once from ``net.grads`` keeps showing the
    latest gradients. A layer you write may bind new arrays instead (``self.grads["w"] = ...``):
    ``Net.grads`` reads ``layer.grads`` afresh at every call, so Net and Model work either way.

    ``state``: arrays that belong to the model but are not trained (BatchNorm's running
    statistics, PyTorch's buffers): saved and restored with ``params``, never given to an
    optimizer."""

    def __init__(self):
        self.params, self.grads, self.state = {}, {}, {}
        self._saved = None

    def forward(self, x, training=True):
        raise NotImplementedError

    def backward(self, grad, input_grad=True):
        raise NotImplementedError

    def __call__(self, x, training=True):
        return self.forward(x, training)

    def save_for_backward(self, *values):
        """Keep what backward will need (a training forward calls this; as in PyTorch)."""
        self._saved = values

    @property
    def saved_tensors(self):
        """What the last training forward saved; CallOrderError if there was none."""
        saved = getattr(self, "_saved", None)
        if saved is None:
            raise CallOrderError(f"{self!r}: backward needs a forward(x, training=True) first; "
                                 "an inference forward (training=False) keeps nothing for it")
        return saved

    def make_grads(self):
        """A zero gradient array for every parameter (call it whenever ``params`` is created)."""
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def config(self):
        """The constructor arguments that define this layer's architecture (used by save/load)."""
        return {}

    def load_params(self, params):
        """Adopt saved parameter arrays (creating them if this layer is still unbuilt)."""
        self.params = {name: np.array(value) for name, value in params.items()}
        self.make_grads()

    def load_state(self, state):
        """Adopt saved state arrays (after ``load_params``)."""
        self.state = {name: np.array(value) for name, value in state.items()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class Dense(Layer):
    """Fully connected layer: y = x @ w + b, with w of shape (in_features, units).

    The input width is inferred on the first forward, so ``Dense(10)`` is all you write
    (``in_features`` builds it at once; ``dtype`` fixes its dtype, see the module docstring).
    Backward, for a batch X (n × in) and upstream gradient G = dL/dY (n × units):
        dL/dw = Xᵀ G      dL/db = Σ_rows G      dL/dX = G wᵀ

    A sequence (batch, time, in_features) goes through the same w at every position: each of
    its batch·time rows is one row of X above, so the parameter gradients sum over batch and
    time alike (the backward flattens both into rows, and dL/dX keeps the input's shape)."""

    def __init__(self, units, in_features=None, init="xavier_uniform", bias=True, dtype=None):
        super().__init__()
        self.units = check_int(units, "units", "Dense")
        self.init = initializers.get(init)
        self.bias = bias
        self.dtype = None if dtype is None else check_float_dtype(dtype, "Dense")
        if in_features is not None:
            self.build(check_int(in_features, "in_features", "Dense"), self.dtype or np.float32)

    def build(self, in_features, dtype):
        """Create the parameters once the input width (and dtype) is known."""
        self.params["w"] = self.init((in_features, self.units), dtype)
        if self.bias:
            self.params["b"] = np.zeros(self.units, dtype=dtype)
        self.make_grads()

    def forward(self, x, training=True):
        check_float_input(x, self)
        if x.ndim not in (2, 3):
            raise ShapeError(f"{self!r}: expected input of shape (batch, in_features) or (batch, "
                             f"time, in_features), got shape {x.shape}; hint: put a Flatten() "
                             "before Dense for images")
        if "w" not in self.params:
            self.build(x.shape[-1], self.dtype or x.dtype)
        w = self.params["w"]
        if x.shape[-1] != w.shape[0] or x.dtype != w.dtype:
            hint = "; hint: put a Flatten() before Dense for images" if x.ndim > 2 else ""
            raise ShapeError(f"{self!r}: expected input (batch, {w.shape[0]}) or (batch, time, "
                             f"{w.shape[0]}) of dtype {w.dtype}, got {x.shape} of dtype "
                             f"{x.dtype}{hint}")
        if training:
            self.save_for_backward(x)
        y = matmul_rows(x, w)
        return y + self.params["b"] if self.bias else y

    def backward(self, grad, input_grad=True):
        (x,) = self.saved_tensors
        rows, grad_rows = x.reshape(-1, x.shape[-1]), grad.reshape(-1, grad.shape[-1])
        self.grads["w"][...] = rows.T @ grad_rows      # dL/dw = Xᵀ G
        if self.bias:
            self.grads["b"][...] = grad_rows.sum(axis=0)   # dL/db = Σ_rows G
        if not input_grad:                             # the net's first layer: dL/d(data) unused
            return None
        return matmul_rows(grad, self.params["w"].T)  # dL/dX = G wᵀ

    def config(self):
        return {"units": self.units, "bias": self.bias}


class ReLU(Layer):
    """max(0, x). Derivative: 1 where x > 0, else 0."""

    def forward(self, x, training=True):
        check_float_input(x, self)
        if training:
            self.save_for_backward(x > 0)
        return np.maximum(x, 0)

    def backward(self, grad):
        (positive,) = self.saved_tensors
        return grad * positive


class LeakyReLU(Layer):
    """x where x > 0, else alpha·x: a small slope keeps 'dead' units learning."""

    def __init__(self, alpha=0.01):
        super().__init__()
        self.alpha = check_number(alpha, "alpha", "LeakyReLU")

    def forward(self, x, training=True):
        check_float_input(x, self)
        positive = x > 0
        if training:
            self.save_for_backward(positive)
        return np.where(positive, x, self.alpha * x)

    def backward(self, grad):
        (positive,) = self.saved_tensors
        return np.where(positive, grad, self.alpha * grad)

    def config(self):
        return {"alpha": self.alpha}


class Sigmoid(Layer):
    """σ(x) = 1 / (1 + e⁻ˣ) (``tinynn.functional.sigmoid``: accurate, never overflows).
    Derivative: σ(x)(1 − σ(x)), from the output alone."""

    def forward(self, x, training=True):
        check_float_input(x, self)
        y = sigmoid(x)
        if training:
            self.save_for_backward(y)
        return y

    def backward(self, grad):
        (y,) = self.saved_tensors
        return grad * y * (1.0 - y)


class Tanh(Layer):
    """tanh(x). Derivative: 1 − tanh²(x)."""

    def forward(self, x, training=True):
        check_float_input(x, self)
        y = np.tanh(x)
        if training:
            self.save_for_backward(y)
        return y

    def backward(self, grad):
        (y,) = self.saved_tensors
        return grad * (1.0 - y * y)


class GELU(Layer):
    """Gaussian error linear unit, x·Φ(x), in its tanh approximation (as in BERT and GPT-2):
        gelu(x) = ½x(1 + tanh(u)),   u = √(2/π)(x + 0.044715x³)
    Derivative: ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)."""

    C = float(np.sqrt(2.0 / np.pi))
    A = 0.044715

    def forward(self, x, training=True):
        check_float_input(x, self)
        t = np.tanh(self.C * (x + self.A * x * x * x))   # x*x*x: numpy's x**3 is 30x slower
        if training:
            self.save_for_backward(x, t)
        return 0.5 * x * (1.0 + t)

    def backward(self, grad):
        x, t = self.saved_tensors
        du_dx = self.C * (1.0 + 3.0 * self.A * x * x)
        return grad * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


class Softplus(Layer):
    """log(1 + eˣ), a smooth ReLU, computed as logaddexp(0, x) so large x cannot overflow.
    Derivative: σ(x)."""

    def forward(self, x, training=True):
        check_float_input(x, self)
        if training:
            self.save_for_backward(x)
        return np.logaddexp(0.0, x)

    def backward(self, grad):
        (x,) = self.saved_tensors
        return grad * sigmoid(x)


class Flatten(Layer):
    """(batch, d1, d2, ...) → (batch, d1·d2·…). Backward restores the shape."""

    def forward(self, x, training=True):
        check_float_input(x, self)
        if training:
            self.save_for_backward(x.shape)
        return x.reshape(len(x), -1)

    def backward(self, grad):
        (shape,) = self.saved_tensors
        return grad.reshape(shape)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the survivors
    by 1/(1 − p), so the expected activation is unchanged and inference is the identity."""

    def __init__(self, p=0.5):
        super().__init__()
        self.p = check_number(p, "p", "Dropout", "[0, 1)")

    def forward(self, x, training=True):
        check_float_input(x, self)
        if not training:
            return x
        if self.p == 0.0:
            self.save_for_backward(None)
            return x
        keep = rng().random(x.shape, dtype=x.dtype) >= self.p
        mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad):
        (mask,) = self.saved_tensors
        return grad if mask is None else grad * mask

    def config(self):
        return {"p": self.p}
