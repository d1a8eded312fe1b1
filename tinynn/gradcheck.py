"""Numerical gradient checking: the test every backward pass must pass.

The derivative of f at x is approximated by the central difference
    f'(x) ≈ (f(x + h) − f(x − h)) / 2h,
whose error shrinks like h². Nudging every input and parameter element in turn and comparing with
the analytical gradient from ``backward`` catches almost any mistake in a derivation.

For a layer, f is the scalar Σ forward(x) ⊙ G for a fixed random G, so backward(G) must return df/dx.
For a loss, f is the loss value and its returned grad must equal df/dpred.
Checks run in float64: float32 rounding (~1e-7) would swamp differences of size h.
"""
import numpy as np

from .errors import ConfigError
from .losses import Loss
from . import random as tn_random


def relative_error(analytic, numeric):
    """max |a − n| relative to the largest magnitude of either (0 when both are exactly zero)."""
    scale = max(np.abs(analytic).max(initial=0.0), np.abs(numeric).max(initial=0.0))
    return 0.0 if scale == 0 else float(np.abs(analytic - numeric).max() / scale)


def numerical_gradient(f, array, h=1e-6, indices=None):
    """df/darray by central differences, (f(x + h) − f(x − h)) / 2h for one element x at a
    time: ``array`` is nudged in place and put back. ``f()`` takes no argument (it reads
    ``array``) and returns a number. ``indices`` (positions in ``array.reshape(-1)``) limits the
    work to those elements, for a big parameter; the gradient of the others is left 0."""
    grad = np.zeros_like(array)
    flat, grad_flat = array.reshape(-1), grad.reshape(-1)  # views of the same memory
    for i in range(flat.size) if indices is None else indices:
        original = flat[i]
        flat[i] = original + h
        f_plus = f()
        flat[i] = original - h
        f_minus = f()
        flat[i] = original
        grad_flat[i] = (f_plus - f_minus) / (2 * h)
    return grad


def gradcheck(layer_or_loss, x, target=None, h=1e-6, seed=0):
    """Compare analytical and numerical gradients. Returns ``{"input": err, "<param>": err, ...}``,
    each the max relative error (see ``relative_error``); below ~1e-6 means correct.

    ``x`` is the layer input (or the loss's predictions, with ``target``). For a layer that
    takes integer token ids (Embedding) ``x`` stays integers and there is no "input" entry:
    ids have no gradient."""
    if getattr(layer_or_loss, "takes_ids", False):
        return _check_layer(layer_or_loss, np.asarray(x), h, seed)
    x = np.array(x, dtype=np.float64)
    if isinstance(layer_or_loss, Loss):
        loss = layer_or_loss
        analytic = loss(x, target)[1]
        return {"input": relative_error(analytic, numerical_gradient(lambda: loss(x, target)[0], x, h))}
    return _check_layer(layer_or_loss, x, h, seed)


def _check_layer(layer, x, h, seed):
    """The errors ``gradcheck`` returns for a layer."""
    def forward():
        # Random layers (dropout) must draw the same numbers at every forward: each one runs on
        # a copy of the caller's generator, which is left as it was found.
        with tn_random.fork():
            return layer.forward(x, training=True)

    _check_float64(layer)
    y = forward()
    _check_float64(layer)  # the first forward may have built the layer
    upstream = np.random.default_rng(seed).standard_normal(y.shape)

    def objective():
        return float(np.sum(forward() * upstream))

    forward()  # as objective's: the first forward drew the new layer's weights before a mask
    analytic = {"input": layer.backward(upstream.copy())}
    analytic.update({name: g.copy() for name, g in layer.grads.items()})
    errors = {}
    if x.dtype.kind == "f":
        errors["input"] = relative_error(analytic["input"], numerical_gradient(objective, x, h))
    for name, p in layer.params.items():
        errors[name] = relative_error(analytic[name], numerical_gradient(objective, p, h))
    return errors


def _check_float64(layer):
    for name, p in layer.params.items():
        if p.dtype != np.float64:
            raise ConfigError(f"gradcheck: {layer!r} parameter {name!r} is {p.dtype}; build "
                              "the layer with float64 input (or float64 parameters) to check it")
