"""A small reverse-mode autograd on numpy arrays (notebook 11).

Every ``Tensor`` remembers the tensors it was computed from (its *parents*) and a ``_backward``
closure: given ``out.grad = dL/d out``, the closure adds each parent's share of it to the
parent's ``grad`` (the chain rule for one operation). ``loss.backward()`` sets
``loss.grad = 1`` and runs the closures from the loss back to the inputs, in reverse
topological order, so a node's gradient is complete before it is passed on.

    import tinynn as tn
    w = tn.Tensor(np.ones((3, 2)));  x = tn.Tensor(np.ones((4, 3)))
    loss = (x @ w).relu().sum()
    loss.backward()                  # w.grad == dL/dw, same shape as w.data

Gradients ACCUMULATE (``grad += ...``), as in PyTorch: a tensor used twice receives both
contributions, and a second ``backward()`` adds to the first until ``zero_grad()``. (tinynn's
hand-written layers overwrite ``layer.grads`` instead: each backward is a fresh result.)

Each operation's forward and backward sit together in one short function (``add``, ``mul``,
``matmul``, ``transpose``, ``where``, ...); the ``Tensor`` operators (``a + b``, ``a @ b``,
``a / b``, ``a ** 2``, ``a.T``) call them, with a numpy array or a number on either side (it
becomes a constant tensor). The design
follows Karpathy's micrograd, on arrays instead of scalars. float64 inputs give float64
gradients, for checking against central differences.
"""
import numpy as np

from . import functional
from .errors import ConfigError, ShapeError


class Tensor:
    """An array in a computational graph: ``data``, ``grad`` (same shape, starts at 0) and how
    to pass a gradient back to the parents it was computed from."""

    # numpy must not take over ``array * tensor`` (it would build an object array of one-element
    # Tensors): None makes numpy's operators step aside, so Python calls Tensor.__rmul__ etc.
    __array_ufunc__ = None

    def __init__(self, data, parents=(), op=""):
        data = np.asarray(data)
        if data.dtype.kind != "f":
            data = data.astype(np.float64)  # ints and bools become float64; floats keep their dtype
        self.data = data
        self.grad = np.zeros_like(data)
        self.parents = tuple(parents)
        self.op = op
        self._backward = lambda: None     # a leaf (input or parameter) passes nothing on

    shape = property(lambda self: self.data.shape)
    dtype = property(lambda self: self.data.dtype)
    ndim = property(lambda self: self.data.ndim)

    def __repr__(self):
        op = f", op={self.op!r}" if self.op else ""
        return f"Tensor(shape={self.shape}, dtype={self.dtype}{op})"

    def backward(self, grad=None):
        """Add dL/d(leaf) to ``.grad`` of every leaf (input or parameter) this tensor was computed
        from: set this tensor's gradient (1 for a scalar loss, else ``grad``) and run every
        backward closure, output first. Leaves accumulate across calls until ``zero_grad()``;
        intermediate results start each pass at 0 (their gradient is only this pass's)."""
        if grad is None:
            if self.data.size != 1:
                raise ShapeError(
                    f"Tensor.backward(): this tensor has shape {self.shape}, so dL/d(it) is not "
                    "a single number. Call backward() on a scalar (the loss: reduce first, e.g. "
                    f".sum() or .mean()), or pass the gradient: backward(grad) with grad of shape "
                    f"{self.shape}")
            grad = np.ones_like(self.data)
        grad = np.asarray(grad, dtype=self.dtype)
        if grad.shape != self.shape:
            raise ShapeError(f"Tensor.backward(grad): grad has shape {grad.shape}, but the tensor "
                             f"has shape {self.shape}; they must be equal")
        order = topological_order(self)
        for node in order:     # intermediate results: their gradient belongs to this pass only
            if node.parents:
                node.grad = np.zeros_like(node.data)
        self.grad += grad
        for node in reversed(order):
            node._backward()

    def zero_grad(self):
        """Set ``grad`` to 0 in place (gradients accumulate until you do)."""
        self.grad[...] = 0

    # operators: a + b, a - b, -a, a * b, a / b, a ** p, a @ b, a[index]; numbers and arrays,
    # on either side, are turned into constants
    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __neg__(self):
        return neg(self)

    def __sub__(self, other):
        return add(self, neg(as_tensor(other, like=self)))

    def __rsub__(self, other):
        return add(other, neg(self))

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        return div(self, other)

    def __rtruediv__(self, other):
        return div(other, self)

    def __pow__(self, exponent):
        return power(self, exponent)

    def __rpow__(self, base):
        return constant_power(base, self)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __getitem__(self, index):
        return pick(self, index)

    def relu(self):
        return relu(self)

    def exp(self):
        return exp(self)

    def log(self):
        return log(self)

    def tanh(self):
        return tanh(self)

    def sum(self, axis=None, keepdims=False):
        return sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims=False):
        return mean(self, axis, keepdims)

    def log_softmax(self, axis=-1):
        return log_softmax(self, axis)

    def transpose(self, *axes):
        return transpose(self, axes or None)

    T = property(lambda self: transpose(self))


def as_tensor(value, like=None):
    """``value`` itself if it is a Tensor, else a constant Tensor (in ``like``'s dtype, so that
    ``x * 2`` keeps a float32 ``x`` float32)."""
    if isinstance(value, Tensor):
        return value
    dtype = like.dtype if like is not None and np.ndim(value) == 0 else None
    return Tensor(np.asarray(value, dtype=dtype))


def topological_order(root):
    """Every tensor ``root`` depends on, each listed after all of its parents (``root`` last).

    Depth-first search with an explicit stack (deep graphs cannot hit Python's recursion
    limit): a node is appended once all its parents are; the ``visited`` set makes a tensor
    reached along two paths (a shared subexpression) appear once, so its backward runs once."""
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            order.append(node)
        elif id(node) not in visited:
            visited.add(id(node))
            stack.append((node, True))
            stack.extend((parent, False) for parent in node.parents if id(parent) not in visited)
    return order


def unbroadcast(grad, shape):
    """Sum ``grad`` down to ``shape``: the backward of numpy broadcasting.

    Broadcasting repeats a value along the axes it lacks (leading axes) or has with size 1;
    every copy contributed to the loss, so its gradient is the sum over those axes."""
    while grad.ndim > len(shape):              # leading axes that broadcasting added
        grad = grad.sum(axis=0)
    for axis, size in enumerate(shape):        # axes of size 1 that were stretched
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis=axis, keepdims=True)
    return grad


# ------------------------------------------------------------------ operations: forward + backward
def add(a, b):
    """a + b with broadcasting.  d(a + b)/da = 1, so dL/da = G summed over broadcast axes."""
    a, b = as_tensor(a, like=b if isinstance(b, Tensor) else None), as_tensor(b, like=a)
    out = Tensor(a.data + b.data, (a, b), "+")

    def backward():
        a.grad += unbroadcast(out.grad, a.shape)
        b.grad += unbroadcast(out.grad, b.shape)
    out._backward = backward
    return out


def mul(a, b):
    """a * b (elementwise, with broadcasting).  dL/da = G · b,  dL/db = G · a."""
    a, b = as_tensor(a, like=b if isinstance(b, Tensor) else None), as_tensor(b, like=a)
    out = Tensor(a.data * b.data, (a, b), "*")

    def backward():
        a.grad += unbroadcast(out.grad * b.data, a.shape)
        b.grad += unbroadcast(out.grad * a.data, b.shape)
    out._backward = backward
    return out


def div(a, b):
    """a / b (elementwise, with broadcasting).  dL/da = G / b,  dL/db = −G · a / b²."""
    a, b = as_tensor(a, like=b if isinstance(b, Tensor) else None), as_tensor(b, like=a)
    out = Tensor(a.data / b.data, (a, b), "/")

    def backward():
        a.grad += unbroadcast(out.grad / b.data, a.shape)
        b.grad -= unbroadcast(out.grad * a.data / b.data ** 2, b.shape)
    out._backward = backward
    return out


def power(a, exponent):
    """a ** p for a constant exponent p (a number or an array, not a Tensor).
    dL/da = G · p · a^(p−1)."""
    if isinstance(exponent, Tensor):
        raise ConfigError("power(a, exponent): the exponent must be a constant (a number or an "
                          "array), got a Tensor; hint: for a ** b with both tensors and a > 0, "
                          "write exp(b * log(a))")
    p = as_tensor(exponent, like=a).data
    out = Tensor(a.data ** p, (a,), "**")

    def backward():
        a.grad += unbroadcast(out.grad * p * a.data ** (p - 1), a.shape)
    out._backward = backward
    return out


def constant_power(base, a):
    """base ** a for a constant base > 0 (``2 ** t``), computed as exp(a · ln base): exp and mul
    give the gradient, dL/da = G · base^a · ln base. (A base ≤ 0 has no real log: refused.)"""
    base = np.asarray(base)
    if np.any(base <= 0):
        got = base if base.ndim == 0 else f"an array whose minimum is {base.min()}"
        raise ConfigError(f"constant_power (base ** tensor): the base must be positive (it is "
                          f"computed as exp(tensor · ln base)), got {got}")
    return exp(mul(a, np.log(base)))


def neg(a):
    """−a.  dL/da = −G."""
    out = Tensor(-a.data, (a,), "neg")

    def backward():
        a.grad -= out.grad
    out._backward = backward
    return out


def matmul(a, b):
    """a @ b for matrices, (n, k) @ (k, m) → (n, m).  dL/da = G bᵀ,  dL/db = aᵀ G
    (each gradient has its input's shape: only one arrangement of the factors fits)."""
    a, b = as_tensor(a), as_tensor(b)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ShapeError(f"matmul: expected (n, k) @ (k, m), got {a.shape} @ {b.shape}")
    out = Tensor(a.data @ b.data, (a, b), "@")

    def backward():
        a.grad += out.grad @ b.data.T
        b.grad += a.data.T @ out.grad
    out._backward = backward
    return out


def transpose(a, axes=None):
    """a with its axes permuted (``axes`` as in np.transpose; None reverses them, ``a.T``).
    A transpose only moves numbers: dL/da is G moved back by the inverse permutation."""
    axes = tuple(reversed(range(a.ndim))) if axes is None else tuple(axes)
    if sorted(axes) != list(range(a.ndim)):
        raise ShapeError(f"transpose: axes {axes} are not a permutation of the {a.ndim} axes of "
                         f"a tensor of shape {a.shape}")
    out = Tensor(np.transpose(a.data, axes), (a,), "transpose")

    def backward():
        a.grad += np.transpose(out.grad, np.argsort(axes))
    out._backward = backward
    return out


def where(condition, a, b):
    """a where ``condition`` (a constant boolean array) holds, else b, with broadcasting (a causal
    mask: ``where(mask, scores, -np.inf)``). Each output element came from one of the two:
    dL/da = G where the condition holds (0 elsewhere), dL/db = G where it does not."""
    condition = np.asarray(condition, dtype=bool)
    a, b = as_tensor(a, like=b if isinstance(b, Tensor) else None), as_tensor(b, like=a)
    out = Tensor(np.where(condition, a.data, b.data), (a, b), "where")

    def backward():
        a.grad += unbroadcast(np.where(condition, out.grad, 0), a.shape)
        b.grad += unbroadcast(np.where(condition, 0, out.grad), b.shape)
    out._backward = backward
    return out


def relu(a):
    """max(0, a).  dL/da = G where a > 0, else 0."""
    out = Tensor(np.maximum(a.data, 0), (a,), "relu")

    def backward():
        a.grad += out.grad * (a.data > 0)
    out._backward = backward
    return out


def exp(a):
    """eᵃ.  dL/da = G · eᵃ (the output itself)."""
    out = Tensor(np.exp(a.data), (a,), "exp")

    def backward():
        a.grad += out.grad * out.data
    out._backward = backward
    return out


def log(a):
    """ln a.  dL/da = G / a."""
    out = Tensor(np.log(a.data), (a,), "log")

    def backward():
        a.grad += out.grad / a.data
    out._backward = backward
    return out


def tanh(a):
    """tanh a.  dL/da = G · (1 − tanh² a): the output itself, as for exp."""
    out = Tensor(np.tanh(a.data), (a,), "tanh")

    def backward():
        a.grad += out.grad * (1 - out.data ** 2)
    out._backward = backward
    return out


def sum(a, axis=None, keepdims=False):  # noqa: A001 (the name numpy and PyTorch use)
    """Sum over ``axis`` (all axes if None).  Every summed element gets G: dL/da = G repeated
    back along the summed axes (the reverse of unbroadcast)."""
    out = Tensor(a.data.sum(axis=axis, keepdims=keepdims), (a,), "sum")

    def backward():
        grad = out.grad if keepdims or axis is None else np.expand_dims(out.grad, axis)
        a.grad += np.broadcast_to(grad, a.shape)
    out._backward = backward
    return out


def mean(a, axis=None, keepdims=False):
    """Mean over ``axis``: the sum divided by the number of elements summed."""
    count = a.data.size // np.asarray(a.data.sum(axis=axis, keepdims=keepdims)).size
    return mul(sum(a, axis, keepdims), 1.0 / count)


def log_softmax(a, axis=-1):
    """log softmax(a) along ``axis``: a − m − log Σ exp(a − m), with m = max a (stable).

    dL/da = G − softmax(a) · Σ G (along ``axis``): the max-shift m cancels, so it needs no
    gradient of its own."""
    out = Tensor(functional.log_softmax(a.data, axis), (a,), "log_softmax")

    def backward():
        softmax = np.exp(out.data)  # e^(log softmax): no second pass over the sums
        a.grad += out.grad - softmax * out.grad.sum(axis=axis, keepdims=True)
    out._backward = backward
    return out


def pick(a, index):
    """a[index] (numpy indexing, e.g. ``log_probs[rows, labels]``).  dL/da is G put back where
    it was picked from, and 0 elsewhere; an element picked twice gets both (np.add.at)."""
    out = Tensor(a.data[index], (a,), "[]")

    def backward():
        np.add.at(a.grad, index, out.grad)
    out._backward = backward
    return out


def cross_entropy(logits, labels):
    """Mean softmax cross-entropy of (batch, classes) logits for integer labels, as autograd
    operations: −mean(log_softmax(logits)[rows, labels])."""
    labels = np.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ShapeError(f"cross_entropy: expected logits (batch, classes) and labels (batch,), "
                         f"got {logits.shape} and {labels.shape}")
    rows = np.arange(len(labels))
    return -log_softmax(logits, axis=1)[rows, labels].mean()


def zero_grad(tensors):
    """Set the gradient of every tensor in ``tensors`` to 0 (PyTorch: ``optimizer.zero_grad()``)."""
    for t in tensors:
        t.zero_grad()
