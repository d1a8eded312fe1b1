"""The one random number generator behind initialisation, shuffling and dropout.

``tn.seed(n)`` resets it, which makes a whole run bitwise reproducible.
"""
import contextlib
import copy

import numpy as np

_generator = np.random.default_rng()


def seed(n):
    """Reset tinynn's random generator so that every later draw is reproducible."""
    global _generator
    _generator = np.random.default_rng(n)


def rng():
    """The current generator (use it, never ``np.random`` globals, inside tinynn)."""
    return _generator


@contextlib.contextmanager
def fork(seed=None):
    """Run a block on its own generator and give the caller's generator back afterwards, exactly
    where it was: ``with tn.random.fork(0): ...`` draws the same numbers whatever ran before, and
    the code after the block draws what it would have drawn without it. ``seed=None`` continues
    from a copy of the current generator's state instead of a fresh seed."""
    global _generator
    saved = _generator
    if seed is None:
        _generator = np.random.default_rng()
        _generator.bit_generator.state = copy.deepcopy(saved.bit_generator.state)
    else:
        _generator = np.random.default_rng(seed)
    try:
        yield _generator
    finally:
        _generator = saved
