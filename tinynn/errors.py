"""One family of exceptions, so a mistake always says what, where, and what to do.

Every message names the layer or argument, the expected and the actual value, and a hint.
Each class also derives from the matching built-in (ValueError, ...) so generic handlers still work.
"""


class TinynnError(Exception):
    """Base class of every error tinynn raises on purpose."""


class ShapeError(TinynnError, ValueError):
    """An array has the wrong rank, width, length or dtype for where it was passed."""


class ConfigError(TinynnError, ValueError):
    """An argument is out of range or of the wrong kind (learning rate, batch size, name, ...)."""


class DataError(TinynnError, ValueError):
    """Data is unusable: a file missing, corrupted or tampered with, or arrays holding NaN/inf."""


class CallOrderError(TinynnError, RuntimeError):
    """Methods called out of order: a backward with no training forward before it."""


class TinynnWarning(UserWarning):
    """Base class of every warning tinynn gives on purpose."""


class DivergenceWarning(TinynnWarning, RuntimeWarning):
    """Training stopped because the loss became NaN or inf (the learning rate is too high)."""
