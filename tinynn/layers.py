"""Layers: the building blocks of a network.

A layer is a function with a memory. ``forward(x)`` computes the output and remembers what the
backward pass will need; ``backward(grad_y)`` receives dL/dy (same shape as y) and returns dL/dx
(same shape as x), storing dL/dθ in ``layer.grads[name]`` for every parameter ``layer.params[name]``.
Gradients are *summed* over the batch: the loss has already divided by the batch size.

Arrays are batch-first: the first axis indexes samples.
"""
import numpy as np

from . import initializers
from .errors import ConfigError, ShapeError
from .random import rng


class Layer:
    """Base class. Subclasses implement ``forward`` and ``backward``; parameter-free layers
    leave ``params`` empty."""

    def __init__(self):
        self.params = {}
        self.grads = {}

    def forward(self, x, training=True):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def __call__(self, x, training=True):
        return self.forward(x, training)

    def config(self):
        """The constructor arguments that define this layer's architecture (used by save/load)."""
        return {}

    def load_params(self, params):
        """Adopt saved parameter arrays (creating them if this layer is still unbuilt)."""
        self.params = {name: np.array(value) for name, value in params.items()}
        self.grads = {name: np.zeros_like(value) for name, value in self.params.items()}

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


def _check_positive_int(value, what, layer):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"{layer}: {what} must be a positive integer, got {value!r}")


class Dense(Layer):
    """Fully connected layer: y = x @ w + b, with w of shape (in_features, units).

    The input width is inferred on the first forward, so ``Dense(10)`` is all you write.
    Backward, for a batch X (n × in) and upstream gradient G = dL/dY (n × units):
        dL/dw = Xᵀ G      dL/db = Σ_rows G      dL/dX = G wᵀ
    """

    def __init__(self, units, in_features=None, init="xavier_uniform", bias=True):
        super().__init__()
        _check_positive_int(units, "units", "Dense")
        self.units = int(units)
        self.init = initializers.get(init)
        self.bias = bias
        if in_features is not None:
            _check_positive_int(in_features, "in_features", "Dense")
            self.build(in_features, np.float32)

    def build(self, in_features, dtype):
        """Create the parameters once the input width (and dtype) is known."""
        self.params["w"] = self.init((in_features, self.units), dtype)
        if self.bias:
            self.params["b"] = np.zeros(self.units, dtype=dtype)
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}

    def forward(self, x, training=True):
        if x.ndim != 2:
            raise ShapeError(f"{self!r}: expected input of shape (batch, in_features), got shape "
                             f"{x.shape}; hint: put a Flatten() before Dense for images")
        if "w" not in self.params:
            self.build(x.shape[1], x.dtype)
        w = self.params["w"]
        if x.shape[1] != w.shape[0] or x.dtype != w.dtype:
            raise ShapeError(f"{self!r}: expected input (batch, {w.shape[0]}) of dtype {w.dtype}, "
                             f"got {x.shape} of dtype {x.dtype}")
        self.x = x
        y = x @ w
        if self.bias:
            y += self.params["b"]  # in place: no second (batch × units) temporary
        return y

    def backward(self, grad):
        self.backward_params(grad)
        return grad @ self.params["w"].T

    def backward_params(self, grad):
        """The parameter half of ``backward``: fill ``grads``, skip dL/dX. Model uses it for a
        net's first layer, whose input is the data: nobody needs that gradient."""
        np.matmul(self.x.T, grad, out=self.grads["w"])
        if self.bias:
            np.sum(grad, axis=0, out=self.grads["b"])

    def config(self):
        return {"units": self.units, "bias": self.bias}


class ReLU(Layer):
    """max(0, x). Derivative: 1 where x > 0, else 0."""

    def forward(self, x, training=True):
        self.mask = x > 0
        return np.maximum(x, 0)

    def backward(self, grad):
        return grad * self.mask


class LeakyReLU(Layer):
    """x where x > 0, else alpha·x: a small slope keeps 'dead' units learning."""

    def __init__(self, alpha=0.01):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x, training=True):
        self.mask = x > 0
        return np.where(self.mask, x, self.alpha * x)

    def backward(self, grad):
        return np.where(self.mask, grad, self.alpha * grad)

    def config(self):
        return {"alpha": self.alpha}


class Sigmoid(Layer):
    """σ(x) = 1 / (1 + e⁻ˣ), computed as ½(1 + tanh(x/2)), which never overflows.
    Derivative: σ(x)(1 − σ(x))."""

    def forward(self, x, training=True):
        self.y = 0.5 * (1.0 + np.tanh(0.5 * x))
        return self.y

    def backward(self, grad):
        return grad * self.y * (1.0 - self.y)


class Tanh(Layer):
    """tanh(x). Derivative: 1 − tanh²(x)."""

    def forward(self, x, training=True):
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1.0 - self.y * self.y)


class GELU(Layer):
    """Gaussian error linear unit, x·Φ(x), in its tanh approximation (as in BERT and GPT-2):
        gelu(x) = ½x(1 + tanh(u)),   u = √(2/π)(x + 0.044715x³)
    Derivative: ½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 3·0.044715x²)."""

    C = float(np.sqrt(2.0 / np.pi))
    A = 0.044715

    def forward(self, x, training=True):
        self.x = x
        self.t = np.tanh(self.C * (x + self.A * x ** 3))
        return 0.5 * x * (1.0 + self.t)

    def backward(self, grad):
        x, t = self.x, self.t
        du_dx = self.C * (1.0 + 3.0 * self.A * x * x)
        return grad * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)


class Softplus(Layer):
    """log(1 + eˣ), a smooth ReLU, computed as logaddexp(0, x) so large x cannot overflow.
    Derivative: σ(x)."""

    def forward(self, x, training=True):
        self.x = x
        return np.logaddexp(0.0, x)

    def backward(self, grad):
        return grad * (0.5 * (1.0 + np.tanh(0.5 * self.x)))


class Flatten(Layer):
    """(batch, d1, d2, ...) → (batch, d1·d2·…). Backward restores the shape."""

    def forward(self, x, training=True):
        self.shape = x.shape
        return x.reshape(len(x), -1)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Dropout(Layer):
    """Inverted dropout: in training, zero each unit with probability p and scale the survivors
    by 1/(1 − p), so the expected activation is unchanged and inference is the identity."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ConfigError(f"Dropout: p must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x, training=True):
        if not training or self.p == 0.0:
            self.mask = None
            return x
        keep = rng().random(x.shape, dtype=x.dtype) >= self.p
        self.mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, grad):
        return grad if self.mask is None else grad * self.mask

    def config(self):
        return {"p": self.p}
