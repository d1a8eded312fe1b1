"""Comparing a student's arrays with the reference's, and saying in plain words how they differ.

``_expect(what, yours, expected, ...)`` raises ``Failed`` with a diagnosis unless the two are equal
to ``TOLERANCE``: a wrong shape (transposed, a batch axis kept or lost), NaN or inf, a constant
factor (the sign, the batch size, ...), a transpose, then the check's own ``extra`` diagnoses.
Each message ends with the first numbers that differ.
"""
import numpy as np

from ...gradcheck import relative_error
from .core import Failed, NotDone

TOLERANCE = 1e-7         # max relative error (vs the largest magnitude) that still counts as equal
GRADCHECK_TOLERANCE = 1e-6
LARGE = 1e3              # "large logits": where a softmax without the max-shift overflows

def _first_mismatch(yours, expected):
    """'at index (0, 2): yours 0.5, expected -0.25 (3 of 12 values differ)'."""
    bad = ~np.isclose(yours, expected, rtol=TOLERANCE, atol=TOLERANCE * _scale(expected),
                      equal_nan=True)
    if not bad.any():
        return ""
    if yours.ndim == 0:
        return f"\n  yours {_fmt(yours)}, expected {_fmt(expected)}"
    index = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"\n  first mismatch at index {index}: yours {_fmt(yours[index])}, expected "
            f"{_fmt(expected[index])} ({int(bad.sum())} of {bad.size} values differ)")


def _fmt(value):
    return f"{float(value) + 0.0:.6g}"  # + 0.0 turns -0 into 0


def _scale(array):
    return max(float(np.abs(array).max(initial=0.0)), 1e-12) if np.all(np.isfinite(array)) else 1.0


def _close(yours, expected):
    return yours.shape == expected.shape and relative_error(yours, expected) <= TOLERANCE


def _factor(yours, expected):
    """k if yours == k · expected for one constant k (least squares, then verified), else None."""
    e, y = expected.ravel(), yours.ravel()
    if not (np.all(np.isfinite(y)) and np.dot(e, e) > 0):
        return None
    k = float(np.dot(y, e) / np.dot(e, e))
    return k if relative_error(y, k * e) <= TOLERANCE and abs(k) > 1e-12 else None


def _as_array(value, what):
    if value is None:
        raise NotDone(f"{what} is None — did you forget a `return`?")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise Failed(f"{what} should be a numpy array of numbers, got "
                     f"{type(value).__name__}") from None


def _expect(what, yours, expected, batch=None, factors=(), extra=(), nonfinite=""):
    """Raise Failed with a diagnosis unless ``yours`` equals ``expected``.

    The diagnoses are tried in order (a small table): wrong shape, NaN/inf, a constant factor
    (each with its own message: sign, batch size, ...), transposed, then ``extra`` checks
    (functions (yours, expected) -> message or None), then a plain "differs"."""
    yours = _as_array(yours, what)
    if yours.shape != expected.shape:
        raise Failed(_shape_message(what, yours.shape, expected.shape, batch))
    if _close(yours, expected):
        return
    if not np.all(np.isfinite(yours)) and np.all(np.isfinite(expected)):
        raise Failed(f"{what} contains NaN or inf where the reference is finite. {nonfinite}"
                     + _first_mismatch(yours, expected))
    k = _factor(yours, expected)
    if k is not None:
        for factor, message in (*factors, (-1.0, "has the wrong sign (yours = −expected)")):
            if np.isclose(k, factor, rtol=1e-6):
                raise Failed(f"{what} {message}" + _first_mismatch(yours, expected))
        if yours.size > 1:
            raise Failed(f"{what} is {k:.4g} × the expected values: a constant factor is wrong or "
                         "missing" + _first_mismatch(yours, expected))
    if yours.ndim == 2 and yours.shape[0] == yours.shape[1] and _close(yours, expected.T):
        raise Failed(f"{what} is transposed" + _first_mismatch(yours, expected))
    for diagnose in extra:
        message = diagnose(yours, expected)
        if message:
            raise Failed(f"{what} {message}" + _first_mismatch(yours, expected))
    raise Failed(f"{what} differs from the reference" + _first_mismatch(yours, expected))


def _shape_message(what, got, expected, batch):
    message = f"{what} has the wrong shape: expected {expected}, got {got}"
    if got == expected[::-1] and len(got) > 1:
        message += " — it is transposed"
    elif batch and got == (batch, *expected):
        message += (f" — it keeps the batch axis: sum over the batch (axis=0) so there is one "
                    "gradient per parameter, not one per sample")
    elif batch and len(got) > len(expected) and got[len(got) - len(expected):] == expected:
        message += (" — it keeps the batch (and position) axes: a parameter's gradient is summed "
                    "over every sample and every place the parameter was used")
    elif batch and expected == (batch, *got) and got:
        message += " — the batch axis is missing (did you sum or average over axis 0?)"
    elif got == () and expected:
        message += " — a single number instead of an array (a sum or mean too many?)"
    return message


def _mask_differs(yours, expected):
    if np.any((yours == 0) != (expected == 0)):
        return ("is zero in different places than the reference: the mask that decides where the "
                "gradient passes is wrong (it should come from forward's input, e.g. x > 0)")
    return None


def _percent(error):
    if not np.isfinite(error):
        return "infinitely"
    return "100%" if abs(error - 1) < 0.005 else f"{100 * error:.2g}%"


def _finite(array):
    try:
        return bool(np.all(np.isfinite(np.asarray(array, dtype=np.float64))))
    except (TypeError, ValueError):
        return False


def _same(a, b):
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))
