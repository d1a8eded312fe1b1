"""The one random number generator behind initialisation, shuffling and dropout.

``tn.seed(n)`` resets it, which makes a whole run bitwise reproducible.
"""
import numpy as np

_generator = np.random.default_rng()


def seed(n):
    """Reset tinynn's random generator so that every later draw is reproducible."""
    global _generator
    _generator = np.random.default_rng(n)


def rng():
    """The current generator (use it, never ``np.random`` globals, inside tinynn)."""
    return _generator
