"""Argument checks shared by every module: one place that says what a valid integer or
number is, and one wording for the error (``"<owner>: <what> must be ..., got ..."``)."""
import math

import numpy as np

from .errors import ConfigError, DataError, ShapeError


def check_int(value, what, owner, minimum=1, hint=""):
    """``int(value)``, or ConfigError unless ``value`` is an integer >= ``minimum`` (a bool or
    a float such as 32.0 is refused: it is almost always a slip)."""
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{owner}: {what} must be {_integer_kind(minimum)}, got "
                          f"{value!r}{_hint(hint)}")
    return int(value)


def check_pair(value, what, owner, minimum=1):
    """``(a, b)`` from an integer (meaning ``(value, value)``) or a pair of integers, each
    >= ``minimum``: a kernel size, a stride, a padding... ConfigError otherwise."""
    pair = (value, value) if _is_int(value) else value
    if not (isinstance(pair, (tuple, list)) and len(pair) == 2
            and all(_is_int(v) and v >= minimum for v in pair)):
        raise ConfigError(f"{owner}: {what} must be {_integer_kind(minimum)} or a pair of them, "
                          f"got {value!r}")
    return int(pair[0]), int(pair[1])


def _is_int(value):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _integer_kind(minimum):
    return "a positive integer" if minimum == 1 else f"an integer >= {minimum}"


def check_number(value, what, owner, interval="(-inf, inf)", hint=""):
    """``float(value)``, or ConfigError unless ``value`` is a finite real number inside
    ``interval``, written as in maths: ``"[0, 1)"``, ``"(0, inf)"``, ...; NaN never passes."""
    low, high = (float(bound) for bound in interval[1:-1].split(","))
    inside = (isinstance(value, (int, float, np.integer, np.floating))
              and not isinstance(value, bool) and math.isfinite(value)
              and (low <= value if interval[0] == "[" else low < value)
              and (value <= high if interval[-1] == "]" else value < high))
    if not inside:
        raise ConfigError(f"{owner}: {what} must be {_describe(interval, low, high)}, got "
                          f"{value!r}{_hint(hint)}")
    return float(value)


def _describe(interval, low, high):
    if high == math.inf and low == 0:
        return "a positive number" if interval[0] == "(" else "a number >= 0"
    return f"a number in {interval}"


def _hint(hint):
    return f"; hint: {hint}" if hint else ""


def check_float_dtype(dtype, owner):
    """``np.dtype(dtype)``, or ConfigError unless it is a floating-point type."""
    try:
        dtype = np.dtype(dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise ConfigError(f"{owner}: dtype must be a floating-point type such as np.float32, "
                          f"got {dtype!r}")
    return dtype


def check_float_input(x, owner):
    """Refuse, with ShapeError, a layer input that is not a floating-point numpy array: integer
    or bool data would build integer weights, or round every mean and scale to whole numbers.
    ``owner`` is the layer (its repr names it in the message)."""
    if not isinstance(x, np.ndarray) or x.dtype.kind != "f":
        got = f"dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise ShapeError(f"{owner!r}: expected a floating-point numpy array (float32 or float64), "
                         f"got {got}; hint: convert the data once, e.g. x.astype(np.float32)")


def check_batch(x, what, owner, dtype):
    """``x`` as a non-empty, finite batch of ``dtype`` (samples first): the data going into a
    model, converted once on the way in; ShapeError or DataError otherwise."""
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise ShapeError(f"{owner}: {what} must be numeric, got dtype {x.dtype}")
    if x.ndim < 2 or len(x) == 0:
        raise ShapeError(f"{owner}: {what} must be a non-empty batch (samples, features...), "
                         f"got shape {x.shape}; hint: for one sample use x[None]")
    x = x.astype(dtype, copy=False)
    if not np.isfinite(x).all():
        raise DataError(f"{owner}: {what} contains NaN or inf values "
                        f"({np.count_nonzero(~np.isfinite(x))} of {x.size}); clean the data first")
    return x


def check_ids(x, what, owner):
    """``x`` as a non-empty batch of integer token ids (batch, time), not cast: ids index a
    table, so floats are refused (ShapeError) rather than rounded."""
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ShapeError(f"{owner}: {what} must be integer token ids (the net starts with an "
                         f"Embedding), got dtype {x.dtype}; hint: x.astype(np.int64)")
    if x.ndim != 2 or len(x) == 0:
        raise ShapeError(f"{owner}: {what} must be a non-empty batch of token ids (batch, time), "
                         f"got shape {x.shape}; hint: for one sequence use ids[None]")
    return x


def check_targets(y, n, owner):
    """``y`` as an array of ``n`` targets without NaN or inf."""
    y = np.asarray(y)
    if len(y) != n:
        raise ShapeError(f"{owner}: x has {n} samples but y has {len(y)}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise DataError(f"{owner}: targets contain NaN or inf values")
    return y
