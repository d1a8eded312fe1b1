"""Net: an ordered list of layers.

Forward runs the layers first to last; backward runs them last to first, each turning the gradient
of its output into the gradient of its input (the chain rule, one layer at a time).
"""
import numpy as np

from .errors import ConfigError, ShapeError
from .layers import Layer


class Net:
    def __init__(self, layers):
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                hint = (f"; write {layer.__name__}() to make an instance"
                        if isinstance(layer, type) and issubclass(layer, Layer) else "")
                raise ConfigError(f"Net: item {i} is {layer!r}, not a tinynn Layer{hint}")
        self.layers = layers

    def forward(self, x, training=True):
        if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
            raise ShapeError(f"Net: input must be a floating-point numpy array, got "
                             f"{type(x).__name__} of dtype {getattr(x, 'dtype', None)}")
        if x.ndim < 2 or len(x) == 0:
            raise ShapeError(f"Net: input must be a non-empty batch (batch, features...), got "
                             f"shape {x.shape}; hint: for one sample use x[None]")
        for layer in self.layers:
            x = layer.forward(x, training)
        return x

    __call__ = forward

    def backward(self, grad):
        for layer in reversed(self.layers):
            grad = layer.backward(grad)
        return grad

    @property
    def params(self):
        """Every parameter array, in a fixed order (the live arrays, not copies)."""
        return [p for layer in self.layers for p in layer.params.values()]

    @property
    def grads(self):
        """Every gradient array, in the same order as ``params``."""
        return [layer.grads[name] for layer in self.layers for name in layer.params]

    def get_params(self):
        """A copy of every parameter, named ``"<layer index>.<name>"`` (e.g. ``"0.w"``)."""
        return {f"{i}.{name}": p.copy()
                for i, layer in enumerate(self.layers) for name, p in layer.params.items()}

    def set_params(self, values):
        """Overwrite parameters from a ``get_params()``-style dict; names and shapes must match."""
        current = self.get_params()
        if set(values) != set(current):
            raise ShapeError(f"Net.set_params: expected parameters {sorted(current)}, got "
                             f"{sorted(values)}")
        for key, value in values.items():
            if np.shape(value) != current[key].shape:
                raise ShapeError(f"Net.set_params: {key} expected shape {current[key].shape}, "
                                 f"got {np.shape(value)}")
        for i, layer in enumerate(self.layers):
            for name, p in layer.params.items():
                p[...] = values[f"{i}.{name}"]

    def architecture(self):
        """A plain description of the layers (types, settings and parameter shapes)."""
        return [{"type": type(layer).__name__, **layer.config(),
                 "params": {name: list(p.shape) for name, p in layer.params.items()}}
                for layer in self.layers]

    def __repr__(self):
        inner = ",\n".join(f"  {layer!r}" for layer in self.layers)
        return f"Net([\n{inner}\n])"
