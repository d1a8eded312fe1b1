"""Net: an ordered list of layers.

Forward runs the layers first to last; backward runs them last to first, each turning the gradient
of its output into the gradient of its input (the chain rule, one layer at a time).

Nets nest. A Net is itself usable as a layer (it has ``forward(x, training)`` and
``backward(grad, input_grad)``), so a block of layers is one item of a bigger net, and
``tn.Residual(block)`` wraps one. Such containers hold no parameters of their own: everything
that reads parameters (``params``, ``grads``, ``state_dict``, saving, the diagnostics) walks
down to the layers that do, ``leaf_layers(net)``, and names each by its path, the indices from
the outside in: ``"2.1"`` is layer 1 of the Net that is layer 2. A Residual adds no step to the
path (it has one block), so a flat net's names are what they always were (``"0.w"``).
"""
import functools
import inspect

import numpy as np

from .errors import ConfigError, ShapeError
from .layers import Layer


class Net:
    def __init__(self, layers):
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, (Layer, Net)):
                hint = (f"; write {layer.__name__}() to make an instance"
                        if isinstance(layer, type) and issubclass(layer, Layer) else "")
                raise ConfigError(f"Net: item {i} is {layer!r}, not a tinynn Layer{hint}")
        self.layers = layers

    def forward(self, x, training=False):
        """The net's output for the batch ``x``. Inference by default (``net(x)`` predicts:
        no dropout, BatchNorm uses and keeps its running statistics); training code passes
        ``training=True``, which also makes every layer save what backward needs. A net that
        starts with an Embedding takes integer token ids (batch, time); the Embedding checks
        them."""
        if not isinstance(x, np.ndarray) or (x.dtype.kind != "f" and not self.takes_ids):
            raise ShapeError(f"Net: input must be a floating-point numpy array, got "
                             f"{type(x).__name__} of dtype {getattr(x, 'dtype', None)}")
        if x.ndim < 2 or len(x) == 0:
            raise ShapeError(f"Net: input must be a non-empty batch (batch, features...), got "
                             f"shape {x.shape}; hint: for one sample use x[None]")
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    __call__ = forward

    def backward(self, grad, input_grad=True):
        """Backpropagate dL/d(output) through every layer, last to first; returns dL/d(input).

        ``input_grad=False`` (what Model uses) returns None instead and tells the first layer
        that nobody needs dL/d(input data), so it may skip it (a fast path: for the MNIST MLP
        that drops the largest matrix product of the backward pass; benchmarks/fastpaths.py
        measures what it saves). A first layer whose backward takes only ``grad`` is simply
        called with ``grad``, and returns dL/dx that is then dropped."""
        for layer in reversed(self.layers[1:]):
            grad = layer.backward(grad)
        if not self.layers:
            return grad if input_grad else None
        grad = call_backward(self.layers[0].backward, grad, input_grad)
        return grad if input_grad else None

    @property
    def takes_ids(self):
        """True when the first layer (inside nested nets too) takes integer ids (Embedding)."""
        first = next(leaf_layers(self), (None, None))[1]
        return bool(getattr(first, "takes_ids", False))

    def sublayers(self):
        """The layers directly inside, each with its step of the path (its index)."""
        return [(str(i), layer) for i, layer in enumerate(self.layers)]

    @property
    def params(self):
        """Every parameter array, in a fixed order (the live arrays, not copies), nested
        layers included."""
        return [p for _, layer in leaf_layers(self) for p in layer.params.values()]

    @property
    def grads(self):
        """Every gradient array, in the same order as ``params``."""
        return [layer.grads[name] for _, layer in leaf_layers(self) for name in layer.params]

    def state_dict(self):
        """A copy of everything the outputs depend on: each parameter as ``"param.<layer
        index>.<name>"`` and each state array (BatchNorm's running statistics) as
        ``"state.<layer index>.<name>"``, the names they have in a saved file."""
        return {key: p.copy() for key, p in self._live_all().items()}

    def load_state_dict(self, values):
        """Overwrite parameters and state from a ``state_dict()``; names and shapes must match."""
        _overwrite("Net.load_state_dict", "arrays", self._live_all(), values)

    def _live_all(self):
        return {f"{kind}.{path}.{name}": array for path, layer in leaf_layers(self)
                for kind, arrays in (("param", layer.params), ("state", layer_state(layer)))
                for name, array in arrays.items()}

    def architecture(self):
        """A plain description of the layers: types, settings (``config()``), dtypes
        (``layer_dtype``, as a name such as ``"float32"``), parameter and state shapes; a
        nested Net as ``{"type": "Net", "layers": [...]}``, a Residual as ``{"type":
        "Residual", "block": {...}}`` (see ``describe``)."""
        return [describe(layer) for layer in self.layers]

    def __repr__(self):
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Net([\n{inner}\n])"


def leaf_layers(layer, path=""):
    """(path, layer) for every layer inside ``layer`` that is not a container (a Net or a
    Residual), depth first, in forward order; a layer that is no container is its own leaf."""
    children = getattr(layer, "sublayers", None)
    if children is None:
        yield path, layer
        return
    for step, child in children():
        yield from leaf_layers(child, join_path(path, step))


def join_path(path, step):
    """``"2"`` + ``"1"`` → ``"2.1"``; an empty step (a Residual's block) adds nothing."""
    return ".".join(part for part in (path, step) if part)


def describe(layer):
    """A JSON-plain description of ``layer`` (see ``Net.architecture``): a container
    describes its insides, any other layer its type, settings, dtype and array shapes."""
    if isinstance(layer, Net):
        return {"type": "Net", "layers": layer.architecture()}
    if hasattr(layer, "architecture"):
        return layer.architecture()
    return {"type": type(layer).__name__, **layer.config(),
            "dtype": getattr(layer_dtype(layer), "name", None),
            "params": {name: list(p.shape) for name, p in layer.params.items()},
            "state": {name: list(s.shape) for name, s in layer_state(layer).items()}}


def layer_state(layer):
    """A layer's state arrays (``{}`` for a layer written without ``super().__init__()``)."""
    return getattr(layer, "state", None) or {}


def layer_dtype(layer):
    """The dtype a layer computes in: its parameters' once they exist, else the one it
    declares (``Dense(8, dtype=np.float64)``), else None (it takes its input's). A container
    (Net, Residual) computes in the dtype of the first layer inside that has one."""
    if hasattr(layer, "sublayers"):
        dtypes = (layer_dtype(leaf) for _, leaf in leaf_layers(layer))
        return next((d for d in dtypes if d is not None), None)
    if layer.params:
        return next(iter(layer.params.values())).dtype
    declared = getattr(layer, "dtype", None)
    return None if declared is None else np.dtype(declared)


def _overwrite(who, what, live, values):
    """Write ``values`` into the ``live`` arrays, after checking every name and shape."""
    if set(values) != set(live):
        raise ShapeError(f"{who}: expected {what} {sorted(live)}, got {sorted(values)}")
    for key, value in values.items():
        if np.shape(value) != live[key].shape:
            raise ShapeError(f"{who}: {key} expected shape {live[key].shape}, got "
                             f"{np.shape(value)}")
    for key, array in live.items():
        array[...] = values[key]


def call_backward(backward, grad, input_grad):
    """``backward(grad, input_grad=False)`` when asked and ``backward`` takes that keyword,
    else ``backward(grad)``: a layer (or hook, or net) written for the one-argument contract
    still runs. The signature is read once per function, not at every step."""
    if input_grad or not _takes_input_grad(getattr(backward, "__func__", backward)):
        return backward(grad)
    return backward(grad, input_grad=False)


@functools.lru_cache(maxsize=256)
def _takes_input_grad(function):
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a readable signature
        return False
    return any(p.kind is p.VAR_KEYWORD or (p.name == "input_grad" and p.kind in
                                            (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
               for p in parameters)
