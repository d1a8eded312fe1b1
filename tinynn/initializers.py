"""Initializers: how a layer's weights start before any learning.

Each initializer is a function ``init(shape, dtype) -> array`` drawing from tinynn's seeded generator.
Fans follow the usual convention: for a weight of shape ``(..., fan_in_units, fan_out_units)`` the
leading axes are the receptive field (e.g. a conv kernel's height and width).

- Xavier/Glorot keeps the variance of activations *and* gradients equal across layers for
  symmetric activations (tanh): Var(w) = 2 / (fan_in + fan_out).
- He keeps the variance of activations constant through ReLUs, which zero half their input:
  Var(w) = 2 / fan_in.
"""
import numpy as np

from .errors import ConfigError
from .random import rng


def fans(shape):
    """(fan_in, fan_out) of a weight shape: last axis = outputs, the one before = inputs."""
    if len(shape) < 2:
        return shape[0], shape[0]
    receptive_field = int(np.prod(shape[:-2]))
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def zeros(shape, dtype=np.float32):
    return np.zeros(shape, dtype=dtype)


def normal(shape, dtype=np.float32, std=0.01):
    return (rng().standard_normal(shape) * std).astype(dtype)


def xavier_uniform(shape, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))  # uniform(-a, a) has variance a²/3
    return rng().uniform(-limit, limit, shape).astype(dtype)


def xavier_normal(shape, dtype=np.float32):
    fan_in, fan_out = fans(shape)
    return normal(shape, dtype, std=np.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform(shape, dtype=np.float32):
    fan_in, _ = fans(shape)
    limit = np.sqrt(6.0 / fan_in)
    return rng().uniform(-limit, limit, shape).astype(dtype)


def he_normal(shape, dtype=np.float32):
    fan_in, _ = fans(shape)
    return normal(shape, dtype, std=np.sqrt(2.0 / fan_in))


INITIALIZERS = {f.__name__: f for f in
                (zeros, normal, xavier_uniform, xavier_normal, he_uniform, he_normal)}
INITIALIZERS.update(glorot_uniform=xavier_uniform, glorot_normal=xavier_normal)


def get(init):
    """An initializer from its name (``"he_normal"``) or a callable ``init(shape, dtype)``."""
    if callable(init):
        return init
    if init not in INITIALIZERS:
        raise ConfigError(f"unknown initializer {init!r}; expected one of {sorted(INITIALIZERS)}")
    return INITIALIZERS[init]
