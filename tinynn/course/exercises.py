"""Exercise checks: the cell after each exercise in the course calls one of these.

    from tinynn.course.exercises import check_layer
    check_layer(MyDense, tn.Dense)   # prints "✔ ..." or "✘ <what is wrong>", returns True/False

Each check runs your implementation next to tinynn's reference on a few small float64 inputs,
copies the reference's parameters into yours first (so random initialisation does not matter),
runs the numerical gradient check, and says in plain words what is wrong, showing the first
numbers that differ. A check never raises: an exercise that is not done yet reports
"not yet implemented", and the notebook carries on with the reference version.

    check_layer(MyDense, tn.Dense)            # a Layer class or instance vs. the reference class
    check_loss(MySoftmaxCE, tn.SoftmaxCrossEntropy)
    check_optimizer(MyMomentum, tn.Momentum, lr=0.1, momentum=0.9)   # both built with the kwargs
    check_function(my_softmax, softmax, logits)   # plain functions (or schedules) on example args
    check_model_step(train_step)              # train_step(net, loss, optimizer, x, y) -> loss
    check_op(my_add, autograd.add)            # an autograd operation: forward, backward, gradcheck
    check_topological_order(my_topological_order)
    check_col2im(my_col2im)                   # my_col2im(dcols, x_shape, k, stride, dilation)


    check_dropout(MyDropout)                  # a dropout layer: random, so checked by its rules

Everything is seeded, so a check prints the same words every time it runs.

``expect`` checks what an experiment teaches, for results no two machines print digit for digit
(anything trained): ``expect("test accuracy is at least 97.5%", accuracy >= 0.975, f"{accuracy:.2%}")``.
"""
import copy
import inspect
import traceback
import warnings
from contextlib import contextmanager

import numpy as np

from .. import random as tn_random
from ..gradcheck import gradcheck, numerical_gradient, relative_error
from ..layers import Dense, ReLU
from ..losses import Loss, SoftmaxCrossEntropy
from ..net import Net
from .. import SGD, Adam, Schedule

__all__ = ["check_layer", "check_loss", "check_optimizer", "check_function", "check_model_step",
           "check_op", "check_topological_order", "check_col2im",
           "check_shuffle", "check_scaling", "check_dead_fraction", "check_inference",
           "check_dropout", "expect"]

SEED = 0
TOLERANCE = 1e-7         # max relative error (vs the largest magnitude) that still counts as equal
GRADCHECK_TOLERANCE = 1e-6
LARGE = 1e3              # "large logits": where a softmax without the max-shift overflows


class Failed(Exception):
    """A diagnosed mistake; the message says what is wrong in plain words."""


class NotDone(Exception):
    """The exercise is not implemented yet (NotImplementedError, or a method returned None)."""


# ================================================================ running a check and reporting
def expect(claim, holds, got=None):
    """Check one claim of the lesson: print "✔ claim" if it holds, else "✘ claim — got …".

    Trained numbers differ in their last digits between machines (BLAS kernels and thread counts
    sum in different orders), so the cell that prints them cannot be compared digit for digit.
    What they *teach* can: "the loss fell", "accuracy ≥ 97.5%". The ✔ line holds no volatile
    number, so it is the same on every machine, and a ✘ line (with the value that broke the claim)
    makes the notebook's test fail. It never raises: a student's experiment carries on.
    Returns whether the claim held."""
    try:
        holds = bool(holds)
    except Exception as e:  # e.g. the truth value of an array: say so instead of crashing
        holds, got = False, f"{got} ({type(e).__name__}: {e})"
    if holds:
        print(f"✔ {claim}")
    else:
        print(f"✘ {claim} — got {got}" if got is not None else f"✘ {claim}")
    return holds


def _run(what, check):
    """Run ``check() -> detail`` with seeded randomness and silenced numpy warnings, print one
    verdict, return True/False. Never raises (except KeyboardInterrupt)."""
    try:
        with _isolated(), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            detail = check()
    except NotDone as e:
        print(f"not yet implemented — {what}: {e}")
    except NotImplementedError as e:
        print(f"not yet implemented — {what}: {_where(e)} raises NotImplementedError. Replace "
              "'# YOUR CODE HERE' and the raise with your code, run that cell, then this one "
              "again.")
    except Failed as e:
        print(f"✘ {what}: {e}")
    except Exception as e:  # student code can fail in any way: report it, never crash the notebook
        print(f"✘ {what} raised {type(e).__name__}: {e}\n  hint: {_hint(e)}")
    else:
        print(f"✔ {what} passed: {detail}")
        return True
    return False


@contextmanager
def _isolated():
    """Give the check its own tinynn random generator and restore the notebook's afterwards."""
    saved = tn_random._generator
    _reseed()
    try:
        yield
    finally:
        tn_random._generator = saved


def _reseed():
    """Restart tinynn's generator, so candidate and reference draw the same numbers (dropout)."""
    tn_random._generator = np.random.default_rng(SEED)


def _where(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].name}()" if frames else "the code"


def _hint(exc):
    """A plain-words hint for an exception raised inside student code."""
    message = str(exc)
    if isinstance(exc, AttributeError):
        return ("something is read that was never stored. Does forward save what backward needs "
                "(e.g. self.x = x)? Does __init__ call super().__init__() (which creates params "
                "and grads)?")
    if isinstance(exc, TypeError) and "NoneType" in message:
        return "a value is None: does every function end with a `return`?"
    if isinstance(exc, TypeError) and "argument" in message:
        return ("the signature differs from tinynn's: forward(self, x, training=True), "
                "backward(self, grad), a loss is called as loss(pred, target), an optimizer as "
                "step(params, grads); classes take the reference's constructor arguments "
                "(e.g. MyDense(units)).")
    shapes = ("broadcast", "matmul", "shape", "align")
    if isinstance(exc, ValueError) and any(word in message for word in shapes):
        return ("array shapes do not line up: print them. Dense: x (batch, in), w (in, units), "
                "grad (batch, units); a parameter's gradient has the parameter's shape (sum over "
                "the batch axis).")
    if isinstance(exc, KeyError):
        return ("a params/grads entry is missing: use the reference's names (Dense: 'w' and 'b') "
                "and fill layer.grads[name] for every layer.params[name].")
    if isinstance(exc, IndexError):
        return ("an index is out of range: check which axis is the batch (axis 0) and which the "
                "classes.")
    return "read the message above, then compare your code with the formulas in the exercise text."


# ================================================================ comparing arrays
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


# ================================================================ constructing candidates
def _name(obj):
    return getattr(obj, "__name__", type(obj).__name__)


def _make(candidate, *args, **kwargs):
    """A class is constructed with the reference's arguments; an instance is copied (so the check
    never changes the student's object)."""
    if inspect.isclass(candidate):
        try:
            return candidate(*args, **kwargs)
        except NotImplementedError:
            raise
        except TypeError as e:
            given = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
            raise Failed(f"could not construct {candidate.__name__}({given}): {e}\n  hint: take "
                         "the same constructor arguments as the reference") from None
    return copy.deepcopy(candidate)


# ================================================================ layers
# Constructor arguments and input shapes to try, per reference class name (default: no arguments).
LAYER_TRIALS = {
    "Dense": [((3,), (4, 5)), ((4,), (6, 4)), ((2,), (1, 3))],
    "Conv2D": [((2, 3), (2, 5, 5, 3)), ((3, 2), (3, 4, 6, 2)), ((1, 1), (1, 3, 3, 1))],
    "MaxPool2D": [((), (2, 4, 4, 3)), ((2,), (3, 6, 4, 2)), ((3,), (1, 6, 6, 1))],
    "AvgPool2D": [((), (2, 4, 4, 3)), ((2,), (3, 6, 4, 2)), ((3,), (1, 6, 6, 1))],
    "BatchNorm": [((), (8, 3)), ((), (4, 3, 3, 2)), ((), (5, 4))],
}
DEFAULT_LAYER_TRIALS = [((), (4, 5)), ((), (3, 2, 4)), ((), (1, 6))]
# Extra trials on inputs with ties (no gradient check there), per reference class name.
LAYER_TIE_TRIALS = {"MaxPool2D": [((), (2, 4, 4, 3)), ((3,), (1, 6, 6, 2))]}


def check_layer(candidate, reference):
    """Check a layer (class or instance) against a tinynn reference layer class, e.g.
    ``check_layer(MyDense, tn.Dense)``: forward output, input gradient, parameter gradients,
    cached input, no mutation of parameters or input, and the numerical gradient check."""
    def run():
        rng = np.random.default_rng(SEED)
        trials = LAYER_TRIALS.get(reference.__name__, DEFAULT_LAYER_TRIALS)
        worst = max(_layer_trial(candidate, reference, args, shape, rng) for args, shape in trials)
        ties = LAYER_TIE_TRIALS.get(reference.__name__, [])
        for args, shape in ties:  # no gradient check: a tie is where max has no derivative
            _layer_trial(candidate, reference, args, shape, rng, ties=True)
        extra = LAYER_EXTRA_CHECKS.get(reference.__name__)
        if extra:
            extra(candidate, reference, *trials[0])
        also = " and on inputs with ties" if ties else ""
        return f"forward matches, gradients match{also} (max rel. err {worst:.0e})"
    return _run(_name(candidate), run)


def _layer_input(rng, shape):
    """Standard normal values kept at least 0.1 away from 0 (the kink of ReLU-like layers)."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + 0.1, x - 0.1)


def _layer_pair(candidate, reference, args, shape):
    """(candidate, reference) instances and the input shape to use. An instance candidate keeps its
    own settings (e.g. units) and, if already built, its input width."""
    if inspect.isclass(candidate):
        return _make(candidate, *args), reference(*args), shape
    cand = copy.deepcopy(candidate)
    signature = inspect.signature(reference.__init__).parameters
    settings = {k: getattr(cand, k) for k in signature if k != "self"
                and isinstance(getattr(cand, k, None), (int, float, bool, str, tuple))}
    ref = reference(**settings) if settings else reference(*args)
    widths = [p.shape[0] for p in getattr(cand, "params", {}).values() if np.ndim(p) == 2]
    return cand, ref, (shape[:-1] + (widths[0],) if widths else shape)


def _randomize(layer, rng):
    """Random parameter values, so that e.g. a bias initialised to zero cannot hide a mistake."""
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)


def _adopt_params(cand, ref):
    """Copy the reference's parameters into the candidate (float64), and zero its grads."""
    theirs, ours = ref.params, getattr(cand, "params", None)
    if ours is None:
        raise Failed("has no `params` dict: subclass tn.Layer and call super().__init__()")
    if not theirs:
        return
    if not ours:
        raise Failed(f"has no parameters after its first forward; it needs "
                     f"{_describe(theirs)} (create them in __init__ or on the first forward)")
    if set(ours) != set(theirs):
        raise Failed(f"has parameters {sorted(ours)} but {type(ref).__name__} has "
                     f"{sorted(theirs)}: use the same names ({_describe(theirs)})")
    for name, value in theirs.items():
        shape = np.shape(ours[name])
        if shape != value.shape:
            hint = " (transposed: y = x @ w needs w of shape (in_features, units))" \
                if shape == value.shape[::-1] else ""
            raise Failed(f"params[{name!r}] has shape {shape}, expected {value.shape}{hint}")
        if isinstance(ours[name], np.ndarray) and ours[name].dtype == np.float64:
            ours[name][...] = value  # in place, in case the layer keeps other references to it
        else:
            ours[name] = value.copy()
        if hasattr(cand, "grads"):
            cand.grads[name] = np.zeros_like(value)


def _describe(params):
    return ", ".join(f"{name!r} of shape {p.shape}" for name, p in params.items())


def _layer_trial(candidate, reference, args, shape, rng, ties=False):
    """One trial: build both layers on one input, then forward and backward on another.
    Returns the candidate's worst numerical-gradient-check error. ``ties``: the second input
    holds small integers (many equal values in every window) and the gradient check is skipped."""
    cand, ref, shape = _layer_pair(candidate, reference, args, shape)
    x_first, x = _layer_input(rng, shape), _layer_input(rng, shape)
    if ties:
        x = rng.integers(0, 3, shape).astype(np.float64)
    _reseed()
    ref.forward(x_first.copy())
    _randomize(ref, rng)
    if getattr(cand, "params", None):
        _adopt_params(cand, ref)  # already built (an instance): match the reference before forward
    _reseed()
    _forward(cand, x_first.copy())
    _adopt_params(cand, ref)

    before = {name: np.copy(p) for name, p in cand.params.items()}
    x_seen = x.copy()
    _reseed()
    y = _forward(cand, x_seen)
    _reseed()
    expected_y = ref.forward(x.copy())
    if not np.array_equal(x_seen, x):
        raise Failed("forward changed its input x in place (e.g. x[x < 0] = 0 or x += b): the "
                     "caller's array must stay as it was; compute a new array instead")
    _unchanged(cand, before, "forward")
    _expect(f"forward output for input of shape {shape}", y, expected_y,
            nonfinite="Is there an exp() that can overflow?")

    upstream = rng.standard_normal(expected_y.shape)
    dense = type(ref).__name__ == "Dense"
    ours = _backward(cand, upstream.copy(), _dense_shapes(x, ref, upstream) if dense else None)
    _unchanged(cand, before, "backward")
    theirs = _ref_gradients(ref, upstream)
    extra = {"input": [_dense_missing_transpose(ref.params["w"], upstream)]} if dense else {}
    try:
        _compare_gradients(ours, theirs, len(x), extra)
    except Failed:
        diagnose = LAYER_DIAGNOSES.get(type(ref).__name__)
        named = diagnose(ref, x, upstream, ours, theirs) if diagnose else None
        if named:
            what, message, yours, expected = named
            raise Failed(f"{what}{' on inputs with ties' if ties else ''} {message}"
                         + _first_mismatch(yours, expected)) from None
        _reseed()
        ref.forward(x_first.copy())
        if _same_gradients(ours, _ref_gradients(ref, upstream)):
            raise Failed("backward used the input of an EARLIER forward call (stale cache): "
                         "store what backward needs (self.x = x) on every forward, not only "
                         "the first") from None
        raise
    if ties:
        return 0.0
    errors = gradcheck(cand, x)
    name, worst = max(errors.items(), key=lambda item: item[1])
    if worst > GRADCHECK_TOLERANCE:
        raise Failed(f"matches the reference but fails the numerical gradient check for "
                     f"{name!r} (rel. err {worst:.1e}): does forward depend on anything that "
                     "changes between calls?")
    return worst


# Inputs where sigmoid's forms differ: e⁻ˣ overflows for large negative x (float32: x < −88;
# float64: x < −709), and ½(1 + tanh(x/2)) loses its digits for x below about −10 (float32) or −20
# (float64), where tanh(x/2) is within a few rounding steps of −1.
SIGMOID_TAIL = np.array([-1000.0, -200.0, -100.0, -40.0, -30.0, -25.0, -20.0, -17.0, -15.0, -10.0,
                         -1.0, 0.0, 1.0, 10.0, 20.0, 40.0, 100.0, 1000.0])
SIGMOID_TAIL_TOLERANCE = {np.float32: 1e-5, np.float64: 1e-10}  # max relative error per element


def _sigmoid_tail(candidate, reference, args, shape):
    """Sigmoid must neither overflow nor lose its small values in the negative tail."""
    for side, x in (("negative", SIGMOID_TAIL[SIGMOID_TAIL < 0]),
                    ("positive", SIGMOID_TAIL[SIGMOID_TAIL > 0])):
        for dtype in (np.float32, np.float64):
            cand, _, _ = _layer_pair(candidate, reference, args, shape)
            try:
                with np.errstate(over="raise", invalid="raise"):
                    _forward(cand, x.astype(dtype)[None, :])
            except FloatingPointError as e:
                both = ""
                if side == "negative":
                    try:
                        cand, _, _ = _layer_pair(candidate, reference, args, shape)
                        with np.errstate(over="raise", invalid="raise"):
                            _forward(cand, -x[::-1].astype(dtype)[None, :])
                    except FloatingPointError:
                        both = (" — and for large positive x too: np.where(c, a, b) computes BOTH "
                                "a and b for every element, so a branch's exp() overflows even "
                                "where it is not picked")
                raise Failed(f"forward overflows for large {side} x ({np.dtype(dtype).name}, e.g. "
                             f"x = {x[0] if side == 'negative' else x[-1]:g}): numpy warns "
                             f"'RuntimeWarning: {e}'{both}. " + (
                                 "1 / (1 + exp(−x)) computes e⁻ˣ, which is inf for x < −88 in "
                                 "float32" if side == "negative" else
                                 "exp(x) / (1 + exp(x)) computes eˣ, which is inf for x > 88 in "
                                 "float32") +
                             "; the value may still come out right, but inf is one step from "
                             "nan (inf/inf). Compute z = exp(−|x|) (never above 1) and "
                             "σ(x) = 1/(1 + z) for x ≥ 0, z/(1 + z) for x < 0.") from None
    for dtype in (np.float32, np.float64):
        x = SIGMOID_TAIL.astype(dtype)
        cand, _, _ = _layer_pair(candidate, reference, args, shape)
        y = _as_array(_forward(cand, x[None, :]), "forward output")
        if y.shape != (1, x.size):
            raise Failed(f"forward output for input of shape {(1, x.size)} has shape {y.shape}")
        y = y[0]
        true = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
        normal = true >= np.finfo(dtype).tiny       # results that the dtype holds to full precision
        error = np.where(normal, np.abs(y - true) / np.where(normal, true, 1.0), 0.0)
        bad = np.flatnonzero(~(error <= SIGMOID_TAIL_TOLERANCE[dtype]))
        if bad.size:
            size = np.where(np.isfinite(error[bad]), error[bad], np.inf)
            worst = min(bad[size == size.max()], key=lambda i: abs(x[i]))  # nearest 0 of the worst
            side = bad[(x[bad] < 0) == (x[worst] < 0)]
            first = side[np.argmin(np.abs(x[side]))]           # the failure nearest to 0
            where = "negative tail" if x[worst] < 0 else "positive tail"
            already = "" if first == worst else (
                f"; already at x = {x[first]:g} it is {_percent(error[first])} off")
            raise Failed(
                f"forward is inaccurate in the {where} ({np.dtype(dtype).name}): at x = "
                f"{x[worst]:g} yours is {_fmt(y[worst])}, the true σ(x) is {_fmt(true[worst])} "
                f"({_percent(error[worst])} off){already}. " + (
                    "½(1 + tanh(x/2)) never overflows, but for negative x it adds 1 to a tanh "
                    "within a few rounding steps of −1: the digits of the small result cancel. "
                    "Compute from z = exp(−|x|): σ(x) = 1/(1 + z) for x ≥ 0, z/(1 + z) for x < 0 "
                    "(no subtraction, so no digits lost)." if x[worst] < 0 else
                    "Compute from z = exp(−|x|): σ(x) = 1/(1 + z) for x ≥ 0, z/(1 + z) for x < 0."))


def _percent(error):
    if not np.isfinite(error):
        return "infinitely"
    return "100%" if abs(error - 1) < 0.005 else f"{100 * error:.2g}%"


LAYER_EXTRA_CHECKS = {"Sigmoid": _sigmoid_tail}


def _forward(layer, x):
    y = layer.forward(x, training=True)
    if y is None:
        raise NotDone("forward returned None — write its code and `return` the output")
    return y


def _backward(layer, upstream, shapes_hint=None):
    try:
        grad_x = layer.backward(upstream)
    except AttributeError as e:
        raise Failed(f"backward raised AttributeError: {e}\n  The cached input was not stored: "
                     "forward must save what backward needs on self (e.g. self.x = x).") from None
    except ValueError as e:
        if shapes_hint is None:
            raise
        raise Failed(f"backward raised ValueError{_at_line(e)}: {e}\n  {shapes_hint}") from None
    if grad_x is None:
        raise NotDone("backward returned None — write its code and `return` the gradient with "
                      "respect to the input")
    grads = getattr(layer, "grads", {})
    return {"input": grad_x, **{name: grads.get(name) for name in layer.params}}


def _ref_gradients(ref, upstream):
    grad_x = ref.backward(upstream.copy())
    return {"input": grad_x, **{name: g.copy() for name, g in ref.grads.items()}}


def _gradient_factors(name, batch):
    """Constant factors that name a mistake in gradient ``name`` ("input" or a parameter's)."""
    sign = "has the wrong sign (yours = −expected): check the sign of each term of the derivative"
    if batch == 1:
        return [(-1.0, sign)]
    divided = f"is 1/{batch} of the expected (batch size {batch}): " + (
        "the input gradient is per sample; a layer never divides by the batch size"
        if name == "input" else
        "layers SUM parameter gradients over the batch — the loss already divided by the batch "
        "size, so do not divide (or take a mean) again")
    times = f"is {batch} × the expected (batch size {batch}): is something summed twice?"
    return [(-1.0, sign), (1.0 / batch, divided), (float(batch), times)]


def _compare_gradients(ours, theirs, batch, extra=None):
    for name, expected in theirs.items():
        if ours[name] is None:
            raise Failed(f"backward did not fill grads[{name!r}] (shape {expected.shape})")
        what = "the input gradient (backward's return value)" if name == "input" \
            else f"grads[{name!r}]"
        checks = ((_mask_differs,) if name == "input" else ()) + tuple((extra or {}).get(name, ()))
        _expect(what, ours[name], expected, batch=batch, factors=_gradient_factors(name, batch),
                extra=checks)


# ---------------------------------------------------------------- Dense: the shape argument
def _at_line(exc):
    """' at `<source line>`' for the innermost frame of the student's code, if known."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if "numpy" not in f.filename.replace("\\", "/").split("/")]
    return f" at `{frames[-1].line.strip()}`" if frames and frames[-1].line else ""


def _dense_shapes(x, ref, upstream):
    """The shape argument for Dense's backward, with this trial's numbers (no code given)."""
    n, d_in = x.shape
    d_out = upstream.shape[1]
    return (f"The shapes do not line up in a matrix product. Here G = dL/dY is {(n, d_out)}, "
            f"X is {(n, d_in)} and W is {(d_in, d_out)}. Each gradient has the shape of what it "
            f"is the gradient of: dL/dX {(n, d_in)}, dL/dW {(d_in, d_out)}, dL/db {(d_out,)}. "
            f"dL/dX = G W or Wᵀ G cannot be right: {(n, d_out)} @ {(d_in, d_out)} and "
            f"{(d_out, d_in)} @ {(n, d_out)} do not fit. Write the shapes under the factors of "
            "your derivation's sum: the index it sums over must be the inner size of the product.")


def _dense_missing_transpose(w, upstream):
    """Square W: G @ W has the right shape but the wrong values (the transpose is missing)."""
    def diagnose(yours, expected):
        if w.shape[0] == w.shape[1] and _close(yours, upstream @ w):
            return ("equals G W: the transpose of W is missing. dL/dX_ik = Σ_j G_ij W_kj sums "
                    "over W's SECOND index; with this square W the shapes fit either way, with "
                    "any other they would not")
        return None
    return diagnose


def _same_gradients(ours, theirs):
    return all(ours[name] is not None and np.shape(ours[name]) == expected.shape
               and _close(np.asarray(ours[name], dtype=np.float64), expected)
               for name, expected in theirs.items())


def _unchanged(layer, before, method):
    for name, value in before.items():
        if not np.array_equal(layer.params.get(name), value):
            raise Failed(f"{method} changed params[{name!r}]: {method} only computes; parameters "
                         "change only in the optimizer's step (watch out for in-place ops like "
                         "w += ... or y = x @ w; y += b when y aliases a parameter)")


# ================================================================ dropout
DROPOUT_RATES = (0.5, 0.2)   # 0.2 tells "p drops" from "p keeps" (at 0.5 they look the same)
DROPOUT_SHAPE = (100, 120)   # 12,000 units: the dropped share lands within ±0.03 of p (> 6 σ)
DROPOUT_SHARE_TOLERANCE = 0.03


def check_dropout(candidate):
    """Check an inverted-dropout layer (a class built as ``candidate(p)``, or an instance with
    ``.p``). Its masks are random, so it is checked by the rules rather than number for number:
    in training each unit is zeroed with probability p and the others are scaled by 1/(1 − p);
    every training forward draws a fresh mask; backward multiplies by the very mask (and scale)
    the last training forward used; inference (``training=False``) returns x unchanged and
    leaves the saved mask alone; neither the input nor its dtype changes."""
    def run():
        rng = np.random.default_rng(SEED)
        if inspect.isclass(candidate):
            layers = [(_make(candidate, p), p) for p in DROPOUT_RATES]
        else:
            p = getattr(candidate, "p", None)
            if not isinstance(p, (int, float)) or not 0 < p < 1:
                raise Failed(f"keep the drop probability in self.p (a number in (0, 1); check a "
                             f"layer with p > 0 such as MyDropout(0.5)), got {p!r}")
            layers = [(copy.deepcopy(candidate), float(p))]
        for layer, p in layers:
            _dropout_trial(layer, p, rng)
        rates = " and ".join(f"{p:g}" for _, p in layers)
        return (f"drops a share p of the units and scales the rest by 1/(1 − p), a fresh mask "
                f"each time, backward reuses it, inference is the identity (p = {rates})")
    return _run(_name(candidate), run)


def _dropout_forward(layer, x, training):
    y = layer.forward(x, training=training)
    if y is None:
        raise NotDone("forward returned None — write its code and `return` the output")
    y = _as_array(y, "forward's output")
    if y.shape != x.shape:
        raise Failed(f"forward output has shape {y.shape}, expected the input's {x.shape}")
    return y


def _dropout_trial(layer, p, rng):
    x = _layer_input(rng, DROPOUT_SHAPE)
    x_seen = x.copy()
    first = _dropout_forward(layer, x_seen, True)
    if not np.array_equal(x_seen, x):
        raise Failed("forward changed its input x in place (e.g. x *= mask): the caller's "
                     "array must stay as it was; compute a new array (x * mask)")
    _dropout_training_output(first, x, p)
    y = _dropout_forward(layer, x.copy(), True)
    if np.array_equal(y == 0, first == 0):
        raise Failed("drops the same units on every training forward: draw a new random mask "
                     "on each call (one fixed mask would simply be a smaller network)")
    _dropout_training_output(y, x, p)

    upstream = rng.standard_normal(x.shape)
    expected = upstream * (y / x)             # the last forward's mask and scale
    grad = _dropout_backward(layer, upstream)
    _dropout_gradient(grad, upstream, expected, y, first, p)

    x_test = _layer_input(rng, DROPOUT_SHAPE)
    y_test = _dropout_forward(layer, x_test.copy(), False)
    _dropout_inference_output(y_test, x_test, p)
    try:
        again = _dropout_backward(layer, upstream)
    except (NotDone, Failed):
        raise
    except Exception as e:
        raise Failed(f"backward after an inference forward raised {type(e).__name__}: {e}. "
                     "The inference forward (training=False) must leave the mask saved by the "
                     "last training forward alone: save it only when training is True") from None
    if not _close(again, expected):
        raise Failed("an inference forward (training=False) changed the mask that backward "
                     "uses: save the mask only when training is True (inference leaves no trace)")

    x32 = x.astype(np.float32)
    y32 = layer.forward(x32, training=True)
    if getattr(y32, "dtype", None) != np.float32:
        raise Failed(f"turns a float32 input into {getattr(y32, 'dtype', type(y32).__name__)}: "
                     "a layer never changes the dtype (multiply x by a mask of x's dtype, e.g. "
                     "rng().random(x.shape, dtype=x.dtype) >= p times the scale)")


def _dropout_training_output(y, x, p):
    dropped = y == 0
    share = dropped.mean()
    scale = 1.0 / (1.0 - p)
    if not dropped.any():
        if _close(y, x):
            raise Failed("the training forward drops nothing (it returns x): zero each unit with "
                         "probability p, e.g. keep = rng().random(x.shape) >= p")
        if _close(y, x * (1.0 - p)):
            raise Failed("the training forward multiplies every unit by (1 − p) and zeroes none: "
                         "that is what old-style dropout does at INFERENCE; in training zero "
                         "random units and scale the others by 1/(1 − p)")
        raise Failed("the training forward zeroes no unit: zero each one with probability p")
    if abs(share - p) > DROPOUT_SHARE_TOLERANCE:
        if abs(share - (1.0 - p)) <= DROPOUT_SHARE_TOLERANCE:
            raise Failed(f"drops {share:.0%} of the units with p = {p:g}, that is 1 − p: p is the "
                         "probability to DROP (zero) a unit, so keep = rng().random(x.shape) >= p")
        raise Failed(f"drops {share:.0%} of the units; with p = {p:g} it should drop about {p:.0%} "
                     "(zero a unit where a uniform random number is below p)")
    ratio = (y / x)[~dropped]
    if np.allclose(ratio, scale, rtol=1e-6):
        return
    if np.allclose(ratio, 1.0, rtol=1e-6):
        raise Failed(f"forgot the scale: the units that survive must be divided by (1 − p) "
                     f"(× {scale:g} for p = {p:g}); without it the expected activation in "
                     "training is (1 − p)·x, but x at inference")
    if np.allclose(ratio, 1.0 - p, rtol=1e-6):
        raise Failed(f"multiplies the surviving units by (1 − p) = {1 - p:g}; inverted dropout "
                     f"DIVIDES them by (1 − p), so that the expected output is x")
    if p > 0 and np.allclose(ratio, 1.0 / p, rtol=1e-6):
        raise Failed(f"scales the surviving units by 1/p = {1 / p:g}; divide by the probability "
                     f"to KEEP a unit, 1 − p (× {scale:g})")
    raise Failed(f"the surviving units are not x/(1 − p): y/x ranges from {_fmt(ratio.min())} "
                 f"to {_fmt(ratio.max())}, expected {scale:g} everywhere")


def _dropout_backward(layer, upstream):
    try:
        grad = layer.backward(upstream.copy())
    except AttributeError as e:
        raise Failed(f"backward raised AttributeError: {e}\n  Save the mask in forward "
                     "(e.g. self.mask = ...) so that backward can reuse it.") from None
    if grad is None:
        raise NotDone("backward returned None — `return` the gradient with respect to the input")
    grad = _as_array(grad, "backward's return value")
    if grad.shape != upstream.shape:
        raise Failed(f"backward returned shape {grad.shape}, expected {upstream.shape} (the "
                     "gradient has the input's shape)")
    return grad


def _dropout_gradient(grad, upstream, expected, y, first, p):
    if _close(grad, expected):
        return
    if _close(grad, upstream):
        raise Failed("backward passes the gradient through unchanged: multiply it by the mask "
                     "(and scale) forward used, dL/dx = dL/dy · mask / (1 − p)")
    if np.any((grad == 0) != (y == 0)):
        if not np.any((grad == 0) != (first == 0)):
            raise Failed("backward used the mask of an EARLIER forward: save the mask on every "
                         "training forward, and use the latest one")
        raise Failed("backward zeroes other units than forward dropped: it draws a new random "
                     "mask; save forward's mask (self.mask = ...) and reuse it in backward")
    if _close(grad, upstream * (y != 0)):
        raise Failed(f"backward reuses the mask but forgot the scale: forward multiplied by "
                     f"1/(1 − p) = {1 / (1 - p):g}, so backward must too")
    _expect("the input gradient (backward's return value)", grad, expected)


def _dropout_inference_output(y, x, p):
    if _close(y, x):
        return
    if np.any(y == 0):
        raise Failed("drops units at inference (training=False): dropout is for training only; "
                     "at inference return x unchanged")
    if _close(y, x * (1.0 - p)):
        raise Failed("scales by (1 − p) at inference: with INVERTED dropout the training forward "
                     "already divided by (1 − p), so inference returns x as it is")
    if _close(y, x / (1.0 - p)):
        raise Failed("scales by 1/(1 − p) at inference: the scale belongs to the training forward "
                     "only; inference returns x as it is")
    raise Failed("the inference forward (training=False) changes x; it should return x as it is")


# ================================================================ notebooks 09 and 10: col2im, max pooling, BatchNorm
# Known mistakes in a layer's backward, per reference class name: a function
# (ref, x, upstream, ours, theirs) -> (what, message, yours, expected) or None, consulted when
# check_layer finds a gradient that differs. ``ref`` has just run forward on ``x`` (its saved
# tensors belong to x); ``ours``/``theirs`` are the gradients by name ("input", params...).
def _spread(upstream, mask, shape):
    """Each pooling window's gradient times ``mask`` (N, Ho, ph, Wo, pw, C), as an input array."""
    n, ho, _, wo, _, c = mask.shape
    return (upstream.reshape(n, ho, 1, wo, 1, c) * mask).reshape(shape)


def _window_onehot(flat_index, n, ho, wo, c, ph, pw):
    """(N, Ho, ph, Wo, pw, C) mask of the element with index ``flat_index`` (i·pw + j) per window."""
    onehot = np.arange(ph * pw) == flat_index[..., None]
    return onehot.reshape(n, ho, wo, c, ph, pw).transpose(0, 1, 4, 2, 5, 3)


def _diagnose_max_pool(ref, x, upstream, ours, theirs):
    (ph, pw), (sh, sw) = ref.pool_size, ref.stride
    n, h, w, c = x.shape
    if (ph, pw) != (sh, sw) or h % ph or w % pw:
        return None
    try:
        dx = np.asarray(ours["input"], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    expected = theirs["input"]
    if dx.shape != x.shape:
        return None
    ho, wo = h // ph, w // pw
    win = x.reshape(n, ho, ph, wo, pw, c)
    flat = win.transpose(0, 1, 3, 5, 2, 4).reshape(n, ho, wo, c, ph * pw)
    first = _window_onehot(flat.argmax(axis=-1), n, ho, wo, c, ph, pw)
    last = _window_onehot(ph * pw - 1 - flat[..., ::-1].argmax(axis=-1), n, ho, wo, c, ph, pw)
    is_max = win == win.max(axis=(2, 4), keepdims=True)
    variants = [
        (is_max, "sends a window's gradient to EVERY element equal to its maximum (a mask "
                 "x == max): when several tie, only the FIRST of them (in reading order) won, "
                 "and it alone gets the gradient, as in PyTorch — pick the winner with "
                 "argmax, which returns the first"),
        (last, "gives a tied window's gradient to the LAST of its equal maxima: the first one "
               "(in reading order) wins, the one np.argmax returns"),
        (is_max / is_max.sum(axis=(2, 4), keepdims=True),
         "shares a tied window's gradient among its equal maxima: the first of them won and "
         "gets all of it (np.argmax)"),
        (np.ones(win.shape), "sends each window's gradient to every element of the window: only "
                             "the winner (the maximum) gets it, the others get 0"),
        (np.full(win.shape, 1.0 / (ph * pw)),
         "shares each window's gradient equally, as AVERAGE pooling does: max pooling sends "
         "all of it to the winner"),
        (~first, "sends the gradient to the elements that LOST: the mask is inverted"),
    ]
    what = "the input gradient (backward's return value)"
    for mask, message in variants:
        wrong = _spread(upstream, mask, x.shape)
        if not _close(wrong, expected) and _close(dx, wrong):
            return what, message, dx, expected
    if _close(dx.reshape(n, ho, ph, wo, pw, c).sum(axis=(2, 4)), upstream):
        return (what, "gives each window its whole gradient, but not to the element that won: "
                      "going back from the windows to (N, H, W, C), undo the forward's reshape "
                      "and transpose exactly (the inverse order of axes)", dx, expected)
    return None


def _diagnose_batch_norm(ref, x, upstream, ours, theirs):
    x_hat, inv_std = ref.saved_tensors
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    g, gamma = upstream, ref.params["gamma"]
    sum_g, sum_gx = g.sum(axis=axes), (g * x_hat).sum(axis=axes)
    scale = gamma * inv_std
    mean_term, var_term = sum_g / m, x_hat * (sum_gx / m)
    twice = (f"divides by m = {m} twice (m values per channel: N·H·W for images): in "
             "dx = (1/m)·γ·inv_std·(m·G − ΣG − x̂·Σ(G·x̂)) the 1/m appears once — written "
             "with means it is γ·inv_std·(G − mean(G) − x̂·mean(G·x̂)), with no further 1/m")
    variants = {
        "input": [
            (scale * (g - var_term), "forgets the term through the batch MEAN, −ΣG/m: μ_B "
             "depends on every x, and shifting a whole channel changes nothing after "
             "normalisation, so dx must sum to 0 over each channel"),
            (scale * (g - mean_term), "forgets the term through the batch VARIANCE, "
             "−x̂·Σ(G·x̂)/m: σ²_B depends on every x too (scaling a whole channel changes "
             "nothing after normalisation)"),
            (scale * g, "treats μ_B and σ²_B as constants (dx = γ·inv_std·G): both depend on "
             "x, which adds the two terms −ΣG/m and −x̂·Σ(G·x̂)/m"),
            (scale * (g - mean_term - var_term) / m, twice),
            (scale * (g - mean_term / m - var_term / m), twice),
            (inv_std * (g - mean_term - var_term), "forgets γ: the gradient reaching x̂ is "
             "dL/dx̂ = γ·G (from y = γ·x̂ + β)"),
            (gamma * (g - mean_term - var_term), "forgets the factor inv_std = 1/√(σ²_B + ε) "
             "(x̂ = (x − μ_B)·inv_std)"),
            (gamma / inv_std * (g - mean_term - var_term), "multiplies by √(σ²_B + ε) where "
             "it should divide by it (multiply by inv_std)"),
            (scale * (g + mean_term + var_term), "adds the two terms that should be "
             "subtracted: dx = γ·inv_std·(G − mean(G) − x̂·mean(G·x̂))"),
        ],
        "gamma": [((g * x).sum(axis=axes), "sums G·x; y = γ·x̂ + β, so dL/dγ = Σ G·x̂, with "
                   "the NORMALISED input x̂"),
                  (sum_gx / m, f"is the mean over the m = {m} values per channel: SUM them, "
                   "dL/dγ = Σ G·x̂ (the loss already divided by the batch size)")],
        "beta": [(sum_g / m, f"is the mean over the m = {m} values per channel: SUM them, "
                  "dL/dβ = Σ G (the loss already divided by the batch size)")],
    }
    for name, candidates in variants.items():
        try:
            yours = np.asarray(ours.get(name), dtype=np.float64)
        except (TypeError, ValueError):
            continue
        expected = theirs[name]
        if yours.shape != expected.shape or _close(yours, expected):
            continue
        what = "the input gradient (backward's return value)" if name == "input" \
            else f"grads[{name!r}]"
        for wrong, message in candidates:
            if not _close(wrong, expected) and _close(yours, wrong):
                return what, message, yours, expected
        return None
    return None


LAYER_DIAGNOSES = {"MaxPool2D": _diagnose_max_pool, "BatchNorm": _diagnose_batch_norm}


# col2im geometries to try: (x_shape, k, stride, dilation), from overlapping windows to both
# stride and dilation.
COL2IM_TRIALS = [((2, 5, 6, 3), 3, 1, 1), ((1, 6, 6, 2), 2, 2, 1), ((2, 7, 6, 2), 3, 2, 1),
                 ((1, 7, 7, 2), 2, 1, 2), ((2, 9, 8, 1), 3, 2, 2)]


def _col2im_variant(cols, x_shape, k, s, d, swap=False, channels_first=False, stride=True,
                    dilation=True, swap_stride=False, assign=False):
    """col2im written with one planted mistake (the flags), to recognise a student's version."""
    from ..conv import output_size
    n, h, w, c = x_shape
    ho, wo = output_size(h, k, s, d), output_size(w, k, s, d)
    if channels_first:
        rows = cols.reshape(n, ho, wo, c, k, k).transpose(0, 1, 2, 4, 5, 3)
    else:
        rows = cols.reshape(n, ho, wo, k, k, c)
    dx = np.zeros(x_shape)
    offset, step = (s, d) if swap_stride else (d if dilation else 1, s if stride else 1)
    for i in range(k):
        for j in range(k):
            block = rows[:, :, :, j, i] if swap else rows[:, :, :, i, j]
            target = (slice(None), slice(i * offset, i * offset + step * (ho - 1) + 1, step),
                      slice(j * offset, j * offset + step * (wo - 1) + 1, step))
            if assign:
                dx[target] = block
            else:
                dx[target] += block
    return dx


COL2IM_MISTAKES = [
    (dict(assign=True), "overwrites (=) where windows overlap: a pixel copied into several "
                        "windows receives the SUM of their gradients — add with += into an "
                        "array that starts at np.zeros"),
    (dict(swap=True), "puts the gradient of kernel offset (i, j) at (j, i): the columns are "
                      "ordered (i, j, c), kernel row first, as in w.reshape(-1, F) — reshape "
                      "dcols to (N, Ho, Wo, k, k, C) and take [:, :, :, i, j]"),
    (dict(channels_first=True), "reads the columns in (c, i, j) order (PyTorch's unfold "
                                "order); tinynn's im2col orders them (i, j, c): reshape dcols "
                                "to (N, Ho, Wo, k, k, C)"),
    (dict(stride=False), "ignores the stride: window (y, x) starts at pixel (y·s, x·s), so the "
                         "slice for offset (i, j) steps by s: i·d : i·d + s·(Ho − 1) + 1 : s"),
    (dict(dilation=False), "ignores the dilation: offset (i, j) sits at (i·d, j·d) inside its "
                           "window, so its slice starts at i·d, not at i"),
    (dict(swap_stride=True), "swaps stride and dilation: the slice for offset (i, j) starts at "
                             "i·d (the dilation spaces the taps) and steps by s (the stride "
                             "spaces the windows)"),
]


def check_col2im(candidate):
    """Check ``candidate(dcols, x_shape, k, stride=1, dilation=1) -> dx``, the adjoint of
    im2col: on overlapping windows, stride 2, dilation 2 and both, naming overwritten overlaps,
    a wrong column order (i, j, c), and a forgotten or swapped stride or dilation."""
    def run():
        rng = np.random.default_rng(SEED)
        for x_shape, k, s, d in COL2IM_TRIALS:
            _col2im_trial(candidate, x_shape, k, s, d, rng)
        return (f"matches col2im on {len(COL2IM_TRIALS)} geometries (overlapping windows, "
                "stride 2, dilation 2, both): it adds every window's gradient back where "
                "im2col copied it from")
    return _run(_name(candidate), run)


def _col2im_trial(candidate, x_shape, k, s, d, rng):
    from ..conv import col2im, output_size
    n, h, w, c = x_shape
    ho, wo = output_size(h, k, s, d), output_size(w, k, s, d)
    where = f"for x_shape {x_shape}, k={k}, stride={s}, dilation={d} (Ho×Wo = {ho}×{wo})"
    cols = rng.standard_normal((n * ho * wo, k * k * c))
    given = cols.copy()
    try:
        yours = candidate(given, x_shape, k, s, d)
    except ValueError as e:
        text = str(e)
        if "reshape" in text:
            raise Failed(f"{where}: {type(e).__name__}: {e}\n  hint: dcols has N·Ho·Wo rows "
                         "and k·k·C columns, with Ho = (H − d·(k − 1) − 1) // s + 1 (the same "
                         "for Wo): compute Ho and Wo with the stride and dilation") from None
        if "broadcast" in text or "shape" in text:
            raise Failed(f"{where}: {type(e).__name__}: {e}\n  hint: the slice of dx that "
                         "offset (i, j) writes to must hold Ho × Wo pixels: rows "
                         "i·d : i·d + s·(Ho − 1) + 1 : s, columns likewise") from None
        raise
    if yours is None:
        raise NotDone("returned None — `return dx` at the end")
    if not np.array_equal(given, cols):
        raise Failed("changed dcols in place: read it, and write into a new array dx")
    expected = col2im(cols, x_shape, k, s, d)
    yours = _as_array(yours, f"dx {where}")
    if yours.shape != expected.shape:
        raise Failed(f"dx {where} has the wrong shape: expected {expected.shape} (x_shape), got "
                     f"{yours.shape}")
    if _close(yours, expected):
        return
    again = candidate(cols.copy(), x_shape, k, s, d)
    if again is not None and not np.array_equal(np.asarray(again, dtype=np.float64), yours):
        raise Failed(f"dx {where}: two calls on the same dcols gave different results: dx must "
                     "start from np.zeros (np.empty holds whatever was in memory)")
    for flags, message in COL2IM_MISTAKES:
        try:
            wrong = _col2im_variant(cols, x_shape, k, s, d, **flags)
        except (ValueError, IndexError):
            continue
        if not _close(wrong, expected) and _close(yours, wrong):
            raise Failed(f"dx {where} {message}" + _first_mismatch(yours, expected))
    counts = col2im(np.ones_like(cols), x_shape, k, s, d)
    once, many = counts == 1, counts > 1
    if many.any() and _close(yours[once], expected[once]) and not _close(yours[many], expected[many]):
        raise Failed(f"dx {where} is right where a pixel lies in one window only and wrong where "
                     "windows overlap: every window that copied a pixel adds its gradient to it "
                     "(+=, starting from np.zeros)" + _first_mismatch(yours, expected))
    if np.any(yours[counts == 0]):
        raise Failed(f"dx {where} is nonzero at pixels no window covers (they get 0): start "
                     "from np.zeros, not np.empty" + _first_mismatch(yours, expected))
    _expect(f"dx {where}", yours, expected)



# ================================================================ losses
NONFINITE_LOSS_HINTS = {
    "SoftmaxCrossEntropy": "At large logits exp() overflows: e¹⁰⁰⁰ = inf, and inf/inf = nan — a "
                           "softmax of the unshifted logits: subtract each row's maximum before "
                           "exp (softmax does not change, and the largest term becomes e⁰ = 1).",
    "SigmoidCrossEntropy": "At large logits use the stable form max(z, 0) − z·t + "
                           "log(1 + e^−|z|).",
}
UNSHIFTED_LOG_HINT = ("The value takes the log of a softmax computed without the max-shift: "
                      "exp(±1000) overflows (inf) or underflows (0) before the log, giving nan. "
                      "So subtract each row's maximum m first and use log-sum-exp, "
                      "log softmax(z)ᵢ = zᵢ − m − log Σⱼ exp(zⱼ − m).")
LOG_OF_ZERO_HINT = ("The gradient is fine, so the value takes log of a probability that "
                    "underflowed to 0 (a very wrong, very confident prediction): compute the "
                    "log-probability directly, log softmax(z)ᵢ = zᵢ − m − log Σⱼ exp(zⱼ − m), "
                    "m = max z.")


def check_loss(candidate, reference):
    """Check a loss (class, instance or function ``(pred, target) -> (value, grad)``) against a
    tinynn loss class, e.g. ``check_loss(MySoftmaxCE, tn.SoftmaxCrossEntropy)``: value and gradient
    on several shapes, at large logits, and the numerical gradient check."""
    def run():
        loss = _make(candidate) if inspect.isclass(candidate) else candidate
        ref = reference()
        worst = 0.0
        for label, pred, target in _loss_trials(reference, np.random.default_rng(SEED)):
            _loss_trial(loss, ref, label, pred, target)
            if label not in ("large", "confident"):
                worst = max(worst, gradcheck(_AsLoss(loss), pred, target)["input"])
        if worst > GRADCHECK_TOLERANCE:
            raise Failed(f"matches the reference but fails the numerical gradient check "
                         f"(rel. err {worst:.1e})")
        return f"value matches, gradient matches, also at ±{LARGE:g} (max rel. err {worst:.0e})"
    return _run(_name(candidate), run)


LOSS_SHAPES = [(4, 3), (6, 10), (1, 5)]      # (batch, classes) of the ordinary trials
BINARY_LOSS_SHAPES = [(4, 1), (5, 3), (1, 2)]  # for SigmoidCrossEntropy


def _loss_trials(reference, rng):
    """(label, pred, target) triples: three ordinary shapes, then large logits (all near ±1000)
    and confident ones (spread over ±1000)."""
    name = reference.__name__
    binary = name == "SigmoidCrossEntropy"
    shapes = BINARY_LOSS_SHAPES if binary else LOSS_SHAPES
    trials = []
    for shape in shapes:
        pred = rng.standard_normal(shape) * 2
        if name == "SoftmaxCrossEntropy":
            target = rng.integers(0, shape[1], shape[0])
        elif binary:
            target = rng.integers(0, 2, shape).astype(np.float64)
        else:
            target = rng.standard_normal(shape)
        trials.append((str(shape), pred, target))
    label, pred, target = trials[0]
    offset = LARGE * np.where(np.arange(len(pred)) % 2 == 0, 1.0, -1.0)[:, None]
    trials.append(("large", pred + offset, target))                  # needs the max-shift
    trials.append(("confident", pred * LARGE / np.abs(pred).max(), target))  # needs log-softmax
    return trials


def _loss_trial(loss, ref, label, pred, target):
    result = loss(pred.copy(), target.copy())
    if result is None:
        raise NotDone("the loss returned None — return (value, grad)")
    if not (isinstance(result, tuple) and len(result) == 2):
        raise Failed(f"a loss returns a pair (value, grad), got {type(result).__name__}")
    value, grad = result
    expected_value, expected_grad = ref(pred.copy(), target.copy())
    batch, size = pred.shape[0], pred.size
    where = {"large": f"at large logits (±{LARGE:g} + small)",
             "confident": f"at confident logits (spread over ±{LARGE:g})"}.get(
                 label, f"for predictions of shape {label}")
    nonfinite = NONFINITE_LOSS_HINTS.get(type(ref).__name__, "")
    softmax_ce = type(ref).__name__ == "SoftmaxCrossEntropy"
    if softmax_ce and label == "large":
        value_nonfinite = UNSHIFTED_LOG_HINT
    elif softmax_ce and _finite(grad):
        value_nonfinite = LOG_OF_ZERO_HINT
    else:
        value_nonfinite = nonfinite
    value = _as_array(value, f"the loss value {where}")
    if value.size != 1:
        raise Failed(f"the loss value {where} has shape {value.shape}: return one number, the mean "
                     "over the batch (np.mean)")
    value_factors, grad_factors = _loss_factors(type(ref).__name__, batch, size)
    _expect(f"the loss value {where}", value.reshape(()), np.asarray(expected_value),
            factors=value_factors, nonfinite=value_nonfinite)
    extra = (_forgot_onehot(expected_grad, target, batch),) if softmax_ce else ()
    _expect(f"the gradient {where}", grad, expected_grad, factors=grad_factors, nonfinite=nonfinite,
            extra=extra)


def _forgot_onehot(expected_grad, target, batch):
    """Softmax cross-entropy's gradient without its − onehot term (with or without the 1/N)."""
    def diagnose(yours, expected):
        onehot = np.zeros_like(expected_grad)
        onehot[np.arange(batch), np.asarray(target).astype(int)] = 1.0
        softmax = expected_grad * batch + onehot
        if _close(yours, softmax / batch):
            return ("is softmax/N: the − onehot is missing. The loss has the term −z_y; its "
                    "derivative subtracts 1 at each row's true class")
        if _close(yours, softmax):
            return ("is the softmax itself: both the − onehot (from the term −z_y) and the 1/N "
                    "(the loss is a mean over the batch) are missing")
        return None
    return diagnose


def _loss_factors(name, batch, size):
    """(value factors, gradient factors): the constant factors that name a known mistake.
    Softmax cross-entropy averages over the batch (summing over classes); MSE and sigmoid
    cross-entropy average over all elements."""
    per_element = name != "SoftmaxCrossEntropy"
    n, what = (size, "all elements (pred.size)") if per_element else (batch, "the batch")
    value, grad = [], []
    if n > 1:
        value.append((float(n), f"is {n} × the expected: it is a sum; return the mean over "
                                f"{what}"))
        grad.append((float(n), f"is {n} × the expected: it is the gradient of the SUM (/N "
                               f"forgotten). The value is a mean over {what}, so the gradient "
                               f"carries a factor 1/{n}"))
    if size != batch and per_element:
        value.append((size / batch, "is the mean over the batch of per-sample sums; this loss is "
                                    "the mean over all elements (divide by pred.size)"))
        grad.append((size / batch, "divides by the batch size; this loss is a mean over all "
                                   "elements, so divide by pred.size"))
    if size != batch and not per_element:
        value.append((batch / size, "averages over all elements; cross-entropy sums over the "
                                    "classes and averages over the batch only"))
        grad.append((batch / size, "divides by pred.size; the loss averages over the batch only, "
                                   "so divide by the batch size"))
    if name == "MSE":
        grad.append((0.5, "is half the expected: d/dp (p − t)² = 2(p − t)"))
    if n > 1:
        grad.append((1.0 / n, f"is 1/{n} of the expected: divided by {n} twice? The mean's 1/{n} "
                              "appears once, in the gradient of the mean"))
    return value, grad


def _finite(array):
    try:
        return bool(np.all(np.isfinite(np.asarray(array, dtype=np.float64))))
    except (TypeError, ValueError):
        return False


class _AsLoss(Loss):
    """Lets tn.gradcheck treat any callable (pred, target) -> (value, grad) as a Loss."""

    def __init__(self, loss):
        self.loss = loss

    def forward(self, pred, target):
        value, grad = self.loss(pred, target)
        return float(np.asarray(value).reshape(())), np.asarray(grad, dtype=np.float64)


# ================================================================ optimizers
STEPS = 6
LR_CHANGE_AT = 4  # before this step both optimizers' .lr is halved, as a widget or schedule would


def _momentum_dampened(self, param, grad):
    (velocity,) = self.slots(param, 1)
    velocity *= self.momentum
    velocity += (1.0 - self.momentum) * grad
    param -= self.lr * velocity


def _momentum_rebinds_velocity(self, param, grad):
    (velocity,) = self.slots(param, 1)
    velocity = self.momentum * velocity + grad  # a new array: the stored velocity stays 0
    param -= self.lr * (grad + self.momentum * velocity if self.nesterov else velocity)


def _adam_moments(self, param, grad):
    """The correct in-place update of Adam's m and v (the mistakes below differ after it)."""
    m, v = self.slots(param, 2)
    m *= self.beta1
    m += (1.0 - self.beta1) * grad
    v *= self.beta2
    v += (1.0 - self.beta2) * grad * grad
    return m, v


def _adam_corrected(self, param, m, v, t, correct_m=True, correct_v=True):
    m_hat = m / (1.0 - self.beta1 ** t) if correct_m else m
    v_hat = v / (1.0 - self.beta2 ** t) if correct_v else v
    param -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def _adam_without_bias_correction(self, param, grad):
    m, v = _adam_moments(self, param, grad)
    _adam_corrected(self, param, m, v, self.t, correct_m=False, correct_v=False)


def _adam_corrects_only_m(self, param, grad):
    m, v = _adam_moments(self, param, grad)
    _adam_corrected(self, param, m, v, self.t, correct_v=False)


def _adam_corrects_only_v(self, param, grad):
    m, v = _adam_moments(self, param, grad)
    _adam_corrected(self, param, m, v, self.t, correct_m=False)


def _adam_t_plus_one(self, param, grad):
    m, v = _adam_moments(self, param, grad)
    _adam_corrected(self, param, m, v, self.t + 1)


def _adam_counts_steps_itself(self, param, grad):
    self.t += 1
    m, v = _adam_moments(self, param, grad)
    _adam_corrected(self, param, m, v, self.t)


def _adam_rebinds_moments(self, param, grad):
    m, v = self.slots(param, 2)
    m = self.beta1 * m + (1.0 - self.beta1) * grad  # new arrays: the stored m and v stay 0
    v = self.beta2 * v + (1.0 - self.beta2) * grad * grad
    _adam_corrected(self, param, m, v, self.t)


def _adam_eps_inside_sqrt(self, param, grad):
    m, v = _adam_moments(self, param, grad)
    m_hat, v_hat = m / (1.0 - self.beta1 ** self.t), v / (1.0 - self.beta2 ** self.t)
    param -= self.lr * m_hat / np.sqrt(v_hat + self.eps)


def _adamw_as_l2(self, param, grad):
    """Adam + L2: the decay added to the gradient, so it goes through m, v and √v̂."""
    Adam.update(self, param, grad + self.weight_decay * param)


def _adamw_decay_after_step(self, param, grad):
    """The decay applied to the parameter AFTER the Adam step (PyTorch decays first)."""
    Adam.update(self, param, grad)
    param *= 1.0 - self.lr * self.weight_decay


def _adamw_decay_without_lr(self, param, grad):
    param *= 1.0 - self.weight_decay
    Adam.update(self, param, grad)


def _rmsprop_without_sqrt(self, param, grad):
    (mean_square,) = self.slots(param, 1)
    mean_square *= self.rho
    mean_square += (1.0 - self.rho) * grad * grad
    param -= self.lr * grad / (mean_square + self.eps)


def _rmsprop_eps_inside_sqrt(self, param, grad):
    (mean_square,) = self.slots(param, 1)
    mean_square *= self.rho
    mean_square += (1.0 - self.rho) * grad * grad
    param -= self.lr * grad / np.sqrt(mean_square + self.eps)


EPS_INSIDE = ("you add ε inside the square root, √(v̂ + ε); it belongs outside: √v̂ + ε. (It "
              "only shows where √v̂ is as small as √ε, so this check also runs with tiny "
              "gradients.)")
# Known mistakes, per reference class name: (update method of the mistaken version, diagnosis).
OPTIMIZER_MISTAKES = {
    "Momentum": [(_momentum_dampened,
                  "your velocity averages the gradient (v ← μv + (1 − μ)g, as Adam's m does); "
                  "momentum adds the whole gradient: v ← μv + g"),
                 (_momentum_rebinds_velocity,
                  "your velocity does not carry over between steps (each step uses only the "
                  "current gradient): `velocity = self.momentum * velocity + grad` makes a new "
                  "array and leaves the stored velocity at zero (as would a new np.zeros_like at "
                  "every step): keep the state in the slot from self.slots(param, 1) and update "
                  "it in place: velocity *= self.momentum, then velocity += grad")],
    "Adam": [(_adam_without_bias_correction,
              "your updates match Adam WITHOUT bias correction: m and v start at 0, so divide "
              "them by (1 − β₁ᵗ) and (1 − β₂ᵗ) (t = 1, 2, … the step number) before the update"),
             (_adam_corrects_only_m,
              "you bias-correct m but not v: divide v by (1 − β₂ᵗ) too (v̂ = v / (1 − β₂ᵗ))"),
             (_adam_corrects_only_v,
              "you bias-correct v but not m: divide m by (1 − β₁ᵗ) too (m̂ = m / (1 − β₁ᵗ))"),
             (_adam_t_plus_one,
              "your bias correction uses t + 1: self.t is already 1 on the first step (an "
              "optimizer counts steps from 1; only a schedule's step argument starts at 0), so "
              "use self.beta1 ** self.t and self.beta2 ** self.t"),
             (_adam_counts_steps_itself,
              "you advance self.t inside update: step() already counts it (1 on the first step), "
              "and update runs once per parameter, so your t runs ahead. Read self.t, never "
              "change it"),
             (_adam_rebinds_moments,
              "m and v do not carry over between steps (every step looks like the first): "
              "`m = self.beta1 * m + ...` makes a new array and leaves the stored m and v at "
              "zero. Keep the state in the slots and update them in place: m *= self.beta1, "
              "then m += (1 - self.beta1) * grad, and the same for v"),
             (_adam_eps_inside_sqrt, EPS_INSIDE)],
    "AdamW": [(_adamw_as_l2,
               "your updates match Adam + L2 (λθ added to the gradient, so it is averaged into "
               "m and v and divided by √v̂): decoupled weight decay shrinks the parameter "
               "itself, θ ← θ − ηλθ, and the Adam step uses the gradient g unchanged"),
              (_adamw_decay_without_lr,
               "your decay is θ ← (1 − λ)θ: multiply λ by the learning rate, θ ← θ − ηλθ"),
              (_adamw_decay_after_step,
               "you decay θ after the Adam step; decay it first (θ ← θ − ηλθ, then the Adam "
               "step), as PyTorch does — a small difference, but the rule is the rule")],
    "RMSProp": [(_rmsprop_without_sqrt,
                 "you divide by the running mean of g² itself; divide by its square root: √s + ε"),
                (_rmsprop_eps_inside_sqrt, EPS_INSIDE.replace("v̂", "s"))],
}
# What NaN or inf after the first step means, per reference class name.
OPTIMIZER_NONFINITE = {
    "Adam": ("the first step gives NaN or inf: with t = 0 the bias correction divides by "
             "1 − β⁰ = 0. An optimizer counts steps from 1: use self.t as it is (already 1 on "
             "the first step), do not subtract 1 or keep your own counter from 0"),
}
TINY = 1e-4  # the second trial's gradient scale: where ε stops being negligible
OPTIMIZER_SHAPES = [(3, 2), (2,)]   # the parameters the trial updates


def check_optimizer(candidate, reference, **kwargs):
    """Check an optimizer (class or instance) against a tinynn optimizer class, both built with
    ``kwargs``: ``STEPS`` steps on two parameters with the same gradients, the learning rate changed
    half-way (as widgets do), in-place updates, and known mistakes named. The trial runs twice,
    with ordinary gradients and with gradients × ``TINY`` (where ε matters)."""
    def run():
        rng = np.random.default_rng(SEED)
        shapes = OPTIMIZER_SHAPES
        start = [rng.standard_normal(s) for s in shapes]
        gradients = [[rng.standard_normal(s) for s in shapes] for _ in range(STEPS)]
        for scale in (1.0, TINY):
            scaled = [[g * scale for g in grads] for grads in gradients]
            ours, expected = _optimizer_trial(candidate, reference, kwargs, start, scaled)
            if _same_trajectory(ours, expected["reference"]):
                continue
            try:
                _diagnose_trajectory(ours, expected, start, reference.__name__)
            except Failed as e:
                if scale == 1.0:
                    raise
                raise Failed(f"correct with ordinary gradients, but not with tiny ones (all × "
                             f"{TINY:g}): {e}") from None
        return (f"{STEPS} steps on {len(shapes)} parameters match "
                f"{reference.__name__}({_kwargs(kwargs)}), with ordinary and with tiny gradients")
    return _run(_name(candidate), run)


def _optimizer_trial(candidate, reference, kwargs, start, gradients):
    """Our trajectory, and {track: trajectory} for the reference and the known mistakes."""
    # (optimizer, whether it follows the lr change) for the reference and known mistakes
    tracks = {"reference": (reference(**kwargs), True),
              "ignores lr": (reference(**kwargs), False)}
    for update, message in OPTIMIZER_MISTAKES.get(reference.__name__, []):
        mistaken = type(reference.__name__, (reference,), {"update": update})
        tracks[message] = (mistaken(**kwargs), True)
    ours = _trajectory(_make(candidate, **kwargs), True, start, gradients, check=True)
    expected = {key: _trajectory(opt, follow, start, gradients)
                for key, (opt, follow) in tracks.items()}
    return ours, expected


def _kwargs(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _trajectory(opt, follow_lr, start, gradients, check=False):
    """Parameters after each step (a list of lists of arrays)."""
    if not hasattr(opt, "lr"):
        raise Failed("has no attribute .lr: keep the learning rate in self.lr (widgets and "
                     "schedules change it between steps)")
    params = [p.copy() for p in start]
    steps = []
    for t, grads in enumerate(gradients, 1):
        if t == LR_CHANGE_AT and follow_lr:
            opt.lr = opt.lr / 2
        given = [g.copy() for g in grads]
        opt.step(params, given)
        if check and not all(np.array_equal(a, b) for a, b in zip(given, grads)):
            raise Failed(f"step {t} changed the gradient arrays: step only updates the parameters")
        steps.append([p.copy() for p in params])
    return steps


def _same_trajectory(ours, theirs):
    return all(_close(a, b) for step_a, step_b in zip(ours, theirs) for a, b in zip(step_a, step_b))


def _diagnose_trajectory(ours, expected, start, name=""):
    """Name a known mistake whose whole trajectory matches ours, else explain the first bad step."""
    for key, trajectory in expected.items():
        if key != "reference" and _same_trajectory(ours, trajectory):
            if key == "ignores lr":
                raise Failed(f"ignores changes of .lr between steps (it was halved before step "
                             f"{LR_CHANGE_AT}): read self.lr inside step; widgets and schedules "
                             "set it")
            raise Failed(key)
    theirs = expected["reference"]
    previous = [p.copy() for p in start]
    for t, (step_a, step_b) in enumerate(zip(ours, theirs), 1):
        if not all(_close(a, b) for a, b in zip(step_a, step_b)):
            break
        previous = step_b
    moved = [a - p for a, p in zip(step_a, previous)]
    should = [b - p for b, p in zip(step_b, previous)]
    if t == 1 and name in OPTIMIZER_NONFINITE and not all(np.all(np.isfinite(m)) for m in moved):
        raise Failed(OPTIMIZER_NONFINITE[name])
    if not any(np.any(m) for m in moved):
        raise Failed(f"step {t} did not change the parameters: update each array in place "
                     "(param -= ... or param[...] = ...); `param = param - ...` only rebinds a "
                     "name")
    moved, should = (np.concatenate([a.ravel() for a in arrays]) for arrays in (moved, should))
    uphill = "has the wrong sign: it moves uphill; subtract: param -= lr * ..."
    try:
        _expect(f"the update at step {t} (parameter change)", moved, should,
                factors=[(-1.0, uphill)])
    except Failed as e:
        if t == 1 or "differs" not in str(e):
            raise
        done = "step 1 matches" if t == 2 else f"steps 1–{t - 1} match"
        raise Failed(f"{done} but step {t} does not: keep the state (velocity, running averages, "
                     "step count t) on self, one entry per parameter, and update it at every step"
                     + _first_mismatch(moved, should)) from None
    raise Failed(f"parameters after step {t} differ from the reference")


# ================================================================ plain functions and schedules
SCHEDULE_STEPS = [*range(100), 150, 200, 500, 1000, 2000, 5000]


def check_function(candidate, reference, *example_args):
    """Check a plain function against a reference on ``example_args`` (and, for float-array
    arguments, on the same arrays × 1000, where a softmax without the max-shift overflows).
    A reference that is a tn Schedule class is built from ``example_args`` (so is the candidate,
    if it is a class) and compared at many steps."""
    def run():
        if inspect.isclass(reference) and issubclass(reference, Schedule):
            return _check_schedule(candidate, reference, example_args)
        _compare_call(candidate, reference, example_args, "on the example")
        if example_args and all(_is_float_array(a) for a in example_args):
            large = [np.asarray(a) * LARGE for a in example_args]
            expected = reference(*copy.deepcopy(large))
            if all(np.all(np.isfinite(e)) for e in _leaves(expected)):
                _compare_call(candidate, reference, large,
                              f"at large inputs (the example × {LARGE:g})")
                return f"output matches {_name(reference)} on the example and on it × {LARGE:g}"
        return f"output matches {_name(reference)} on the example"
    return _run(_name(candidate), run)


def _is_float_array(value):
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _leaves(value):
    return [leaf for item in value for leaf in _leaves(item)] if isinstance(value, (tuple, list)) \
        else [np.asarray(value, dtype=np.float64)]


def _compare_call(candidate, reference, args, where):
    given = copy.deepcopy(list(args))
    yours = candidate(*given)
    if yours is None:
        raise NotDone("the function returned None — write its code and `return` the result")
    for i, (a, b) in enumerate(zip(given, args)):
        if isinstance(b, np.ndarray) and not np.array_equal(a, b):
            raise Failed(f"changed its argument number {i + 1} in place: compute a new array "
                         "instead")
    expected = reference(*copy.deepcopy(list(args)))
    _compare_values(f"the result {where}", yours, expected)


def _compare_values(what, yours, expected):
    if isinstance(expected, (tuple, list)):
        if not isinstance(yours, (tuple, list)) or len(yours) != len(expected):
            raise Failed(f"{what} should be a {type(expected).__name__} of {len(expected)} values")
        for i, (a, b) in enumerate(zip(yours, expected)):
            _compare_values(f"{what}[{i}]", a, b)
        return
    _expect(what, yours, np.asarray(expected, dtype=np.float64),
            nonfinite="Is there an exp() that overflows? Subtract the maximum first.")


def _check_schedule(candidate, reference, args):
    schedule = _make(candidate, *args) if inspect.isclass(candidate) else candidate
    ref = reference(*args)
    yours = []
    for step in SCHEDULE_STEPS:
        value = schedule(step)
        if value is None:
            raise NotDone("the schedule returned None — `return` the learning rate")
        yours.append(float(value))
    yours, expected = np.array(yours), np.array([ref(s) for s in SCHEDULE_STEPS])
    if _close(yours, expected):
        return (f"learning rates match {reference.__name__} at {len(SCHEDULE_STEPS)} steps from 0 "
                f"to {SCHEDULE_STEPS[-1]}")
    first = ("a schedule's step argument starts at 0: the optimizer's first step (its t = 1) "
             "uses schedule(0), the rate you start from")
    shifted = [(1, f"is one step ahead: {first}"), (-1, f"is one step behind: {first}")]
    for shift, message in shifted:
        if _close(yours[1:-1], np.array([ref(s + shift) for s in SCHEDULE_STEPS[1:-1]])):
            raise Failed(message)
    bad = [i for i in range(len(yours)) if not _close(yours[i:i + 1], expected[i:i + 1])]
    if bad and bad[0] > 0 and np.all(expected[bad[0] - 1:] == expected[-1]):
        raise Failed(f"matches up to step {SCHEDULE_STEPS[bad[0] - 1]}, but from step "
                     f"{SCHEDULE_STEPS[bad[0]]} on, where the reference stays at "
                     f"{_fmt(expected[-1])}, yours is {_fmt(yours[bad[0]])}: after its last step "
                     "the schedule stays flat (for a cosine: min(step, total_steps))")
    _expect(f"the learning rate at steps 0, 1, …, {SCHEDULE_STEPS[-1]}", yours, expected)


# ================================================================ one training step
def _reference_train_step(net, loss, optimizer, x, y):
    pred = net.forward(x, training=True)
    value, grad = loss(pred, y)
    net.backward(grad)
    optimizer.step(net.params, net.grads)
    return value


def _step_before_backward(net, loss, optimizer, x, y):
    pred = net.forward(x, training=True)
    value, grad = loss(pred, y)
    optimizer.step(net.params, net.grads)
    net.backward(grad)
    return value


def _no_update(net, loss, optimizer, x, y):
    value, grad = loss(net.forward(x, training=True), y)
    net.backward(grad)
    return value


def _uphill(net, loss, optimizer, x, y):
    value, grad = loss(net.forward(x, training=True), y)
    net.backward(-grad)
    optimizer.step(net.params, net.grads)
    return value


TRAIN_STEP_MISTAKES = [
    (_no_update, "the parameters never change: after net.backward(grad) call "
                 "optimizer.step(net.params, net.grads)"),
    (_step_before_backward, "optimizer.step runs before net.backward, so every step uses the "
                            "previous batch's gradients (and the first step none): the order is "
                            "forward → loss → backward → step"),
    (_uphill, "the parameters move uphill (the loss grows): pass the loss gradient to "
              "net.backward as it is, without a minus sign"),
]
TRAIN_STEPS = 3


def check_model_step(candidate_train_step):
    """Check ``train_step(net, loss, optimizer, x, y) -> loss value`` on a small classifier for
    ``TRAIN_STEPS`` batches: the returned loss and the parameters after every step."""
    def run():
        rng = np.random.default_rng(SEED)
        batches = [(rng.standard_normal((8, 4)), rng.integers(0, 3, 8)) for _ in range(TRAIN_STEPS)]
        start = _small_net(rng)
        ours = _train(candidate_train_step, start, batches, check=True)
        expected = _train(_reference_train_step, start, batches)
        if _same_training(ours, expected):
            return f"losses and parameters match the reference for {TRAIN_STEPS} steps"
        for mistake, message in TRAIN_STEP_MISTAKES:
            if _same_training(ours, _train(mistake, start, batches)):
                raise Failed(message)
        _diagnose_training(ours, expected)
    return _run(_name(candidate_train_step), run)


def _small_net(rng):
    """Initial float64 parameters of a 4-5-3 MLP, as a get_params() dict."""
    net = Net([Dense(5), ReLU(), Dense(3)])
    net.forward(rng.standard_normal((2, 4)))
    return net.get_params()


def _train(train_step, start, batches, check=False):
    """[(returned loss, parameters after the step)] for every batch, from fresh copies of start."""
    net = Net([Dense(5), ReLU(), Dense(3)])
    net.forward(np.zeros((1, 4)))
    net.set_params(start)
    loss, optimizer = SoftmaxCrossEntropy(), SGD(lr=0.5)
    record = []
    for x, y in batches:
        value = train_step(net, loss, optimizer, x.copy(), y.copy())
        if check:
            value = _returned_loss(value)
        record.append((float(value), net.get_params()))
    return record


def _returned_loss(value):
    if value is None:
        raise NotDone("train_step returned None — write its code and `return` the loss value")
    if isinstance(value, tuple):
        raise Failed("train_step returned a tuple; return only the loss value (the first thing "
                     "loss(pred, y) gives back)")
    if np.size(value) != 1:
        raise Failed(f"train_step returned an array of shape {np.shape(value)}; return the loss "
                     "value, one number")
    return float(np.asarray(value, dtype=np.float64).reshape(()))


def _same_training(ours, theirs):
    return all(np.isclose(va, vb, rtol=TOLERANCE) and all(_close(pa[k], pb[k]) for k in pb)
               for (va, pa), (vb, pb) in zip(ours, theirs))


def _diagnose_training(ours, expected):
    for t, ((value, params), (ref_value, ref_params)) in enumerate(zip(ours, expected), 1):
        if not np.isclose(value, ref_value, rtol=TOLERANCE):
            raise Failed(f"the loss returned at step {t} is {_fmt(value)}, expected "
                         f"{_fmt(ref_value)}: return the value the loss gave for this batch")
        for name, expected_param in ref_params.items():
            _expect(f"parameter {name} after step {t}", params[name], expected_param)


# ================================================================ autograd operations (notebook 11)
# Input shapes to try, per reference operation (tinynn.autograd.<name>): broadcasting included.
BROADCAST_TRIALS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1))]
OP_TRIALS = {
    "add": BROADCAST_TRIALS,
    "mul": BROADCAST_TRIALS,
    "matmul": [((3, 4), (4, 2)), ((1, 5), (5, 3)), ((3, 3), (3, 3))],
    "relu": [((3, 4),), ((5,),), ((2, 3, 2),)],
}
DEFAULT_OP_TRIALS = [((3, 4),), ((5,),)]
# Tensor classes an operation may return besides this module's own (grading.py checks with a
# fresh copy of tinynn and adds the notebook's tinynn.Tensor here).
EXTRA_TENSOR_TYPES = ()
OP_HINTS = {
    "add": "out = a + b broadcasts, so each input's gradient is out.grad summed back to that "
           "input's shape: a.grad += unbroadcast(out.grad, a.shape), the same for b",
    "mul": "d(a·b)/da = b: a.grad += unbroadcast(out.grad * b.data, a.shape), and "
           "b.grad += unbroadcast(out.grad * a.data, b.shape)",
    "matmul": "for out = a @ b, (n, k) @ (k, m) → (n, m): a.grad += out.grad @ b.data.T has a's "
              "shape (n, k), b.grad += a.data.T @ out.grad has b's shape (k, m)",
    "relu": "the gradient passes where the input was positive: a.grad += out.grad * (a.data > 0)",
}


def _swapped_mul(data, g):
    return [g * data[0], g * data[1]]


def _mul_without_upstream(data, g):
    return [np.broadcast_to(data[1], g.shape), np.broadcast_to(data[0], g.shape)]


# Known mistakes, per reference operation: (gradients of the mistaken backward before summing
# over broadcast axes, one per input, from the inputs' data and out.grad; diagnosis).
OP_MISTAKES = {
    "mul": [(_swapped_mul, "uses each input's own value: d(a·b)/da is b, so a.grad += out.grad "
                           "* b.data and b.grad += out.grad * a.data"),
            (_mul_without_upstream, "forgets out.grad: the chain rule multiplies the local "
                                    "derivative (b for a, a for b) by the gradient arriving "
                                    "from above")],
    "relu": [(lambda data, g: [g], "lets the gradient through everywhere: multiply out.grad by "
                                   "the mask (a.data > 0), where relu was not flat"),
             (lambda data, g: [g * data[0]], "multiplies out.grad by the input; relu's "
                                             "derivative is 1 or 0, so multiply by the mask "
                                             "(a.data > 0)"),
             (lambda data, g: [g * (data[0] < 0)], "has the mask inverted: the gradient passes "
                                                   "where the input was POSITIVE (a.data > 0)"),
             (lambda data, g: [(data[0] > 0) * 1.0], "forgets out.grad: multiply the mask by "
                                                     "the gradient arriving from above")],
    "matmul": [(lambda data, g: [g @ data[1], data[0] @ g], "forgets the transposes: "
                "a.grad += out.grad @ b.data.T and b.grad += a.data.T @ out.grad"),
               (lambda data, g: [data[1].T @ g, g @ data[0].T], "has the factors in the wrong "
                "order: a.grad += out.grad @ b.data.T, b.grad += a.data.T @ out.grad")],
}


def check_op(candidate, reference, *trials):
    """Check an autograd operation ``candidate(*tensors) -> Tensor`` against a tinynn.autograd
    reference function, e.g. ``check_op(my_add, autograd.add)``: the forward value, each input's
    gradient after ``out.backward(G)`` (accumulated with +=, summed back over broadcast axes),
    known mistakes named, and the numerical gradient check. ``trials`` are tuples of input
    shapes (defaults per reference in ``OP_TRIALS``)."""
    def run():
        rng = np.random.default_rng(SEED)
        name = reference.__name__
        shapes = trials or OP_TRIALS.get(name, DEFAULT_OP_TRIALS)
        worst = max(_op_trial(candidate, reference, trial, rng) for trial in shapes)
        verdict = "below 1e-8" if worst < 1e-8 else f"rel. err {worst:.0e}"
        broadcast = " (with broadcasting)" if any(map(_broadcasts, shapes)) else ""
        return (f"forward and gradients match {name} on {len(shapes)} input shapes{broadcast}; "
                f"numerical gradient check {verdict}")
    return _run(_name(candidate), run)


def _broadcasts(shapes):
    """Whether elementwise inputs of these shapes broadcast (matmul's shapes do not)."""
    try:
        return any(shape != np.broadcast_shapes(*shapes) for shape in shapes)
    except ValueError:
        return False


def _input_names(candidate, count):
    try:
        names = [p for p in inspect.signature(candidate).parameters][:count]
    except (TypeError, ValueError):
        names = []
    return names if len(names) == count else [f"input {i + 1}" for i in range(count)]


def _op_trial(candidate, reference, shapes, rng):
    from ..autograd import Tensor, unbroadcast
    name = reference.__name__
    hint = OP_HINTS.get(name, "")
    data = [_layer_input(rng, shape) for shape in shapes]
    ref_inputs = [Tensor(d.copy()) for d in data]
    ref_out = reference(*ref_inputs)
    upstream = rng.standard_normal(ref_out.shape)
    ref_out.backward(upstream.copy())
    expected = [t.grad for t in ref_inputs]
    earlier = [rng.standard_normal(shape) for shape in shapes]  # gradients from an earlier use

    inputs = [Tensor(d.copy()) for d in data]
    for tensor, grad in zip(inputs, earlier):
        tensor.grad = grad.copy()
    names = [f"{n}.grad" for n in _input_names(candidate, len(inputs))]
    where = " and ".join(str(s) for s in shapes)
    out = candidate(*inputs)
    if out is None:
        raise NotDone("returned None — `return out` at the end")
    if not isinstance(out, (Tensor, *EXTRA_TENSOR_TYPES)):
        raise Failed(f"returned {type(out).__name__}, not a Tensor: wrap the result, "
                     "out = Tensor(..., parents, op), and return out")
    if any(not np.array_equal(t.data, d) for t, d in zip(inputs, data)):
        raise Failed("changed an input's data in place: compute a new array for out")
    _expect(f"the forward value for inputs of shape {where}", out.data, ref_out.data)
    try:
        out.backward(upstream.copy())
    except ValueError as e:
        if "broadcast" in str(e) or "shape" in str(e) or "matmul" in str(e):
            raise Failed(f"backward raised ValueError for inputs of shape {where}: {e}\n  The "
                         f"gradient added to each input must have that input's shape. {hint}"
                         ) from None
        raise
    for i, (tensor, want) in enumerate(zip(inputs, expected)):
        grad, what = np.asarray(tensor.grad, dtype=np.float64), names[i]
        if grad.shape != want.shape:
            message = (f"{what} has shape {grad.shape}, but {what[:-5]} has shape {want.shape}")
            if grad.shape == out.shape:
                message += (" — the output's shape: it was broadcast in forward, so sum out.grad "
                            "over the broadcast axes: unbroadcast(out.grad, "
                            f"{what[:-5]}.shape)")
            raise Failed(message + f". {hint}")
        added = grad - earlier[i]
        if _close(grad, want) and not _close(added, want):
            raise Failed(f"{what} is overwritten (= ...) instead of accumulated (+= ...): a tensor "
                         "used twice would keep only its last contribution")
        if not added.any() and want.any():
            raise Failed(f"{what} was not changed by backward: add this input's share of "
                         f"out.grad to it. {hint}")
        for mistake, message in OP_MISTAKES.get(name, []):
            try:
                wrong = unbroadcast(np.asarray(mistake(data, upstream)[i], dtype=np.float64),
                                    want.shape)
            except (ValueError, IndexError):
                continue
            if wrong.shape == want.shape and not _close(wrong, want) and _close(added, wrong):
                raise Failed(f"{what} is wrong for inputs of shape {where}: your backward "
                             f"{message}" + _first_mismatch(added, want))
        _expect(f"{what} for inputs of shape {where}", added, want,
                factors=[(-1.0, f"has the wrong sign: {hint}"),
                         (2.0, "is twice the expected: is a contribution added twice?")])

    def objective():
        return float(np.sum(candidate(*[Tensor(d) for d in data]).data * upstream))
    errors = [relative_error(grad - before, numerical_gradient(objective, d))
              for grad, before, d in zip((t.grad for t in inputs), earlier, data)]
    worst = max(errors)
    if worst > GRADCHECK_TOLERANCE:
        raise Failed(f"matches the reference but fails the numerical gradient check "
                     f"(rel. err {worst:.1e}): does forward compute what backward assumes?")
    return worst


# ================================================================ topological order (notebook 11)
def check_topological_order(candidate):
    """Check ``candidate(root) -> list of Tensors``: every tensor the root depends on, each once,
    each after its parents, the root last; on a chain, a shared subexpression and a small MLP."""
    def run():
        graphs = _topo_graphs()
        for label, root in graphs:
            _topo_trial(candidate, label, root)
        return (f"every tensor once, each after its parents, on {len(graphs)} graphs "
                f"({', '.join(label for label, _ in graphs)})")
    return _run(_name(candidate), run)


def _topo_graphs():
    from ..autograd import Tensor
    rng = np.random.default_rng(SEED)
    x = Tensor(rng.standard_normal(3))
    chain = x.relu().exp().sum()
    h = x * x
    shared = (h + x + h).sum()          # h and x reached along several paths
    xs, w, b = (Tensor(rng.standard_normal(s)) for s in ((4, 3), (3, 2), (2,)))
    mlp = ((xs @ w + b).relu() * 2.0).mean()
    return [("a chain", chain), ("x·x used twice", shared), ("a small Dense + ReLU", mlp)]


def _describe_node(node):
    return f"the {node.op!r} node" if node.op else f"the input of shape {node.shape}"


def _topo_trial(candidate, label, root):
    from ..autograd import Tensor, topological_order
    result = candidate(root)
    if result is None:
        raise NotDone("returned None — `return order` at the end")
    order = list(result)
    if any(not isinstance(node, Tensor) for node in order):
        raise Failed("the list should hold the Tensors themselves (not their data or ids)")
    nodes = topological_order(root)
    ids = [id(node) for node in order]
    for node in order:
        if ids.count(id(node)) > 1:
            raise Failed(f"on {label}: lists {_describe_node(node)} {ids.count(id(node))} times. "
                         "It is reached along several paths: keep a `visited` set and skip a "
                         "node seen before, else its backward runs twice and doubles its "
                         "parents' gradients")
    missing = [node for node in nodes if id(node) not in ids]
    if missing:
        raise Failed(f"on {label}: misses {len(missing)} of the {len(nodes)} tensors the output "
                     f"depends on (e.g. {_describe_node(missing[0])}): visit every parent in "
                     "node.parents, recursively, down to the inputs")
    if len(order) != len(nodes):
        raise Failed(f"on {label}: lists tensors the output does not depend on")
    position = {id(node): i for i, node in enumerate(order)}

    def respects(pos):
        return all(pos[id(p)] < pos[id(n)] for n in nodes for p in n.parents)
    if not respects(position):
        if respects({k: -v for k, v in position.items()}):
            raise Failed(f"on {label}: the order is reversed — list each tensor AFTER its parents "
                         "(inputs first, the output last); backward walks the list from the end")
        node, parent = next((n, p) for n in order for p in n.parents
                            if position[id(p)] > position[id(n)])
        raise Failed(f"on {label}: lists {_describe_node(node)} before its parent "
                     f"{_describe_node(parent)}: append a node only after all its parents "
                     "(depth-first, post-order)")


# ================================================================ notebook 12: debugging
SHUFFLE_ROWS, SHUFFLE_SEED = 20, 0   # the data set check_shuffle shuffles, and the seed it passes


def check_shuffle(candidate):
    """Check ``shuffle_together(x, y, seed) -> (x_shuffled, y_shuffled)``: every image keeps its
    own label, nothing is lost or duplicated, the order changes, and the inputs stay as they were."""
    def run():
        n = SHUFFLE_ROWS                                     # below 70: labels stay unique
        x = np.arange(3 * n, dtype=np.float64).reshape(n, 3)  # row i holds 3i, 3i + 1, 3i + 2
        y = np.arange(n) % 7 * 10 + np.arange(n) // 7        # a label that identifies row i
        x_given, y_given = x.copy(), y.copy()
        result = candidate(x_given, y_given, SHUFFLE_SEED)
        if result is None:
            raise NotDone("shuffle_together returned None — `return x_shuffled, y_shuffled`")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Failed("return two arrays, the shuffled images and the shuffled labels: "
                         "return x[order], y[order]")
        xs, ys = (np.asarray(a) for a in result)
        if not (np.array_equal(x_given, x) and np.array_equal(y_given, y)):
            raise Failed("changed its input arrays in place (np.random.shuffle(x) does that): "
                         "index with a permutation instead, x[order]")
        if xs.shape != x.shape or ys.shape != y.shape:
            raise Failed(f"returned shapes {xs.shape} and {ys.shape}, expected {x.shape} and "
                         f"{y.shape}: shuffle the rows, keep every sample")
        rows = xs[:, 0].astype(np.int64) // 3
        if sorted(rows.tolist()) != list(range(n)) or not np.array_equal(xs, x[rows]):
            raise Failed("the shuffled images are not the original images once each: some are "
                         "lost or repeated — use one permutation of range(len(x))")
        if sorted(ys.tolist()) != sorted(y.tolist()):
            raise Failed("the shuffled labels are not the original labels once each")
        if np.array_equal(rows, np.arange(n)):
            raise Failed("did not change the order: draw a permutation, e.g. "
                         "np.random.default_rng(seed).permutation(len(x))")
        if not np.array_equal(ys, y[rows]):
            kept = int(np.sum(ys == y[rows]))
            raise Failed(f"images and labels are shuffled with DIFFERENT permutations: only "
                         f"{kept} of {n} images still carry their own label. Draw one "
                         "permutation and index both arrays with it: x[order], y[order]")
        again = candidate(x.copy(), y.copy(), SHUFFLE_SEED)
        if not np.array_equal(np.asarray(again[0]), xs):
            raise Failed("two calls with the same seed gave different orders: draw the "
                         "permutation from np.random.default_rng(seed)")
        return "every image keeps its label; one permutation, from the seed"
    return _run(_name(candidate), run)


SCALING_SHAPE = (5, 784)   # the raw uint8 images check_scaling scales


def check_scaling(candidate):
    """Check ``scale_pixels(raw)``: uint8 pixels 0–255 → float32 values in [0, 1] (pixel / 255)."""
    def run():
        raw = np.random.default_rng(SEED).integers(0, 256, SCALING_SHAPE).astype(np.uint8)
        raw[0, :2] = 0, 255
        given = raw.copy()
        result = candidate(given)
        if result is None:
            raise NotDone("scale_pixels returned None — `return` the scaled array")
        if not np.array_equal(given, raw):
            raise Failed("changed the raw array in place: return a new array")
        result = np.asarray(result)
        if result.shape != raw.shape:
            raise Failed(f"returned shape {result.shape}, expected {raw.shape}: scale every "
                         "pixel, keep the shape")
        if result.dtype.kind != "f":
            raise Failed(f"returned dtype {result.dtype}: integer division loses everything "
                         "between 0 and 1 — convert to float32 first, raw.astype(np.float32)")
        if result.dtype != np.float32:
            raise Failed(f"returned dtype {result.dtype}; the net trains in float32 "
                         "(raw.astype(np.float32) / 255)")
        expected = raw.astype(np.float32) / 255
        if np.allclose(result, raw):
            raise Failed("the values are still 0–255: divide by 255")
        if np.allclose(result, raw / 256.0):
            raise Failed("divided by 256: the largest pixel, 255, must become exactly 1")
        if np.allclose(result.mean(), 0, atol=1e-3) and np.allclose(result.std(), 1, atol=1e-2):
            raise Failed("standardised to mean 0 and std 1; here the exercise asks for [0, 1], "
                         "pixel / 255")
        if not np.allclose(result, expected, rtol=1e-6, atol=1e-7):
            raise Failed(f"values differ from pixel / 255 (range {result.min():g} to "
                         f"{result.max():g}, expected 0 to 1)" + _first_mismatch(
                             result.astype(np.float64), expected.astype(np.float64)))
        return "pixels 0–255 become float32 values 0–1"
    return _run(_name(candidate), run)


DEAD_SHAPE, DEAD_UNITS = (6, 8), [1, 4, 5]   # the batch of activations, and its dead columns


def check_dead_fraction(candidate, reference):
    """Check ``my_dead_fraction(h)``: the fraction of units (columns) that are 0 for EVERY
    sample (row) of a batch of activations ``h``."""
    def run():
        h = np.maximum(np.random.default_rng(SEED).standard_normal(DEAD_SHAPE), 0)
        h[:, DEAD_UNITS] = 0         # dead units (three in the example)
        h[2, :] = 0                  # and one sample where every unit is 0
        dead = f"{int(np.all(h == 0, axis=0).sum())} of {h.shape[1]}"
        result = candidate(h.copy())
        if result is None:
            raise NotDone("my_dead_fraction returned None — `return` the fraction")
        try:
            value = float(np.asarray(result, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            raise Failed(f"returned an array of shape {np.shape(result)}: return one number, "
                         "the mean over the units") from None
        expected = reference(h)
        if abs(value - expected) < 1e-12:
            return f"{expected:.3f} of the units are dead in the example ({dead})"
        if abs(value - np.mean(h == 0)) < 1e-12:
            raise Failed(f"got {value:.3f}: that is the fraction of zero ENTRIES; a unit is dead "
                         "only when it is 0 for every sample: np.all(h == 0, axis=0), then the mean")
        if abs(value - np.mean(np.all(h == 0, axis=1))) < 1e-12:
            raise Failed(f"got {value:.3f}: that counts samples whose units are all 0 (axis=1); "
                         "a unit is a column — np.all(h == 0, axis=0)")
        if abs(value - np.mean(np.any(h == 0, axis=0))) < 1e-12:
            raise Failed(f"got {value:.3f}: that counts units that are 0 for SOME sample (any); "
                         "a dead unit is 0 for every sample (all)")
        if abs(value - expected * h.shape[1]) < 1e-9:
            raise Failed(f"got {value:g}: that is the number of dead units; divide by the "
                         "number of units (take the mean)")
        raise Failed(f"got {value:.4g}, expected {expected:.4g} ({dead} units are 0 for every "
                     "sample)")
    return _run(_name(candidate), run)


def check_inference(candidate):
    """Check ``my_evaluate(net, x, y) -> accuracy``: it must use the net in inference mode
    (``training=False``: no dropout), so that it is deterministic and equals tn's evaluation."""
    from ..layers import Dropout
    from ..metrics import accuracy

    def run():
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((200, 6)).astype(np.float32)
        y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
        tn_random.seed(SEED)
        net = Net([Dense(32), ReLU(), Dropout(0.5), Dense(4)])
        net.forward(x[:1])
        before = net.get_params()
        expected = accuracy(net.forward(x, training=False), y)
        first = candidate(net, x.copy(), y.copy())
        if first is None:
            raise NotDone("my_evaluate returned None — `return` the accuracy")
        first = float(np.asarray(first, dtype=np.float64).reshape(()))
        second = float(np.asarray(candidate(net, x.copy(), y.copy()), dtype=np.float64).reshape(()))
        if any(not np.array_equal(before[k], v) for k, v in net.get_params().items()):
            raise Failed("evaluating changed the parameters: evaluation only runs forward")
        if first != second:
            raise Failed(f"two evaluations of the same net on the same data gave {first:.3f} and "
                         f"{second:.3f}: dropout is still on — call net.forward(x, training=False)")
        if abs(first - expected) > 1e-12:
            if abs(first - (1 - expected)) < 1e-12:
                raise Failed("returned the error rate (1 − accuracy)")
            raise Failed(f"got accuracy {first:.4f}, expected {expected:.4f}: predicted class = "
                         "argmax of the logits along axis 1, compared with y, then the mean")
        return "deterministic, and equal to the inference-mode accuracy"
    return _run(_name(candidate), run)


# ================================================================ notebook 06: He initialisation
__all__ += ["check_he_init", "check_lr_range_test"]

HE_SHAPES = [(400, 1000), (1000, 250)]   # (fan_in, fan_out): 400,000 and 250,000 draws each
HE_TOLERANCE = 0.03                      # relative; a sample std of 250,000 draws is within 0.2 %


def _he_candidates(fan_in, fan_out):
    """(name, std, uniform?, diagnosis) of He normal and of the classic mistakes."""
    he = np.sqrt(2.0 / fan_in)
    return [
        ("he", he, False, None),
        ("he_uniform", he, True,
         "has the right variance 2/fan_in, but the values are uniformly distributed (that is "
         "He *uniform*, tn.initializers.he_uniform); the exercise asks for a normal "
         "distribution: rng.standard_normal(shape) * std"),
        ("bound_as_std", np.sqrt(2.0 / fan_in / 3.0), True,
         "draws uniform(-a, a) with a = √(2/fan_in), the std used as the bound: uniform(-a, a) "
         "has variance a²/3, so its std is a/√3, too small. Draw from a normal distribution with "
         "std √(2/fan_in)"),
        ("std_as_bound", np.sqrt(6.0 / fan_in), False,
         "uses √(6/fan_in), He *uniform*'s bound, as the std of a normal distribution: the "
         "bound a of uniform(-a, a) is √3 times its std. For a normal draw, std = √(2/fan_in)"),
        ("lecun", np.sqrt(1.0 / fan_in), False,
         "has variance 1/fan_in (LeCun's initialisation, right for linear or tanh units): a ReLU "
         "zeroes half of its inputs, which halves E[h²], so He doubles it: Var(w) = 2/fan_in"),
        ("xavier", np.sqrt(2.0 / (fan_in + fan_out)), False,
         "has variance 2/(fan_in + fan_out): that is Xavier/Glorot's compromise between the "
         "forward and the backward pass; He keeps the forward signal through ReLUs: "
         "Var(w) = 2/fan_in"),
        ("fan_out", np.sqrt(2.0 / fan_out), False,
         "uses fan_out (shape[1], the number of units) instead of fan_in (shape[0], the number "
         "of inputs): each output sums fan_in products, so Var(w) = 2/fan_in"),
        ("std_is_variance", 2.0 / fan_in, False,
         "has std 2/fan_in, but 2/fan_in is the VARIANCE: the std is its square root, "
         "√(2/fan_in) (np.sqrt)"),
        ("no_scale", 1.0, False,
         "has std 1: multiply the standard normal draws by std = √(2/fan_in)"),
    ]


def check_he_init(candidate):
    """Check ``my_he_normal(shape, dtype) -> array``: normal, mean 0, std √(2/fan_in) with
    fan_in = shape[0], the requested shape and dtype, drawn from tinynn's seeded generator.
    Compared statistically on 400,000 and 250,000 seeded draws; the classic mistakes (1/fan_in,
    Xavier, fan_out, std = 2/fan_in, uniform bound vs std) are named."""
    def run():
        for shape in HE_SHAPES:
            _he_trial(candidate, shape)
        tn_random.seed(SEED)
        first = np.asarray(candidate((30, 20), np.float32))
        tn_random.seed(SEED)
        again = np.asarray(candidate((30, 20), np.float32))
        if not np.array_equal(first, again):
            raise Failed("two calls after the same tn.seed(0) gave different weights: draw from "
                         "tinynn's generator, tn.random.rng(), not np.random, so that a seeded "
                         "run is reproducible")
        fan_in = HE_SHAPES[0][0]
        return (f"std √(2/fan_in) (e.g. {np.sqrt(2 / fan_in):.4f} for fan_in = {fan_in}), mean 0, "
                f"normal, on {len(HE_SHAPES)} shapes; right shape and dtype; reproducible")
    return _run(_name(candidate), run)


def _he_trial(candidate, shape):
    fan_in, fan_out = shape
    result = None
    for dtype in (np.float32, np.float64):
        result = candidate(shape, dtype)
        if result is None:
            raise NotDone("returned None — `return` the array of weights")
        if not isinstance(result, np.ndarray):
            raise Failed(f"returned {type(result).__name__}, expected a numpy array")
        if result.shape != tuple(shape):
            raise Failed(f"for shape {shape} returned shape {result.shape}: pass `shape` to the "
                         "generator, e.g. rng.standard_normal(shape)")
        if result.dtype != dtype:
            raise Failed(f"asked for dtype {np.dtype(dtype).name}, returned "
                         f"{result.dtype.name}: finish with .astype(dtype)")
    w = result.astype(np.float64).ravel()
    if not np.all(np.isfinite(w)):
        raise Failed("the weights contain NaN or inf")
    mean, std = float(w.mean()), float(w.std())
    if std <= 1e-12 * max(abs(mean), 1.0):
        raise Failed("all weights are equal: draw them at random (rng.standard_normal)")
    if abs(mean) > 0.02 * std + 1e-12 and abs(mean) > 5 * std / np.sqrt(w.size):
        raise Failed(f"the mean of the weights is {mean:.3g}, not 0 (std {std:.3g}): draw from a "
                     "distribution centred at 0 (standard_normal, not random() in [0, 1))")
    kurtosis = float(np.mean((w - mean) ** 4) / std ** 4)   # normal 3, uniform 1.8
    uniform = kurtosis < 2.4
    matches = [c for c in _he_candidates(fan_in, fan_out)
               if c[2] == uniform and abs(std / c[1] - 1) < HE_TOLERANCE]
    if matches and matches[0][0] == "he":
        return
    if matches:
        raise Failed(f"for shape {shape} (fan_in {fan_in}, fan_out {fan_out}) it "
                     f"{matches[0][3]}")
    kind = "uniformly distributed" if uniform else "normal"
    raise Failed(f"for shape {shape} (fan_in {fan_in}, fan_out {fan_out}) the weights are {kind} "
                 f"with std {std:.4g}; He normal has std √(2/fan_in) = {np.sqrt(2 / fan_in):.4g}"
                 f" (ratio {std / np.sqrt(2 / fan_in):.3g})")


# ================================================================ notebook 07: the range test
RANGE_TEST_ARGS = dict(lr_min=1e-3, lr_max=1e3, num_steps=80, batch_size=16, seed=0)


def _range_problem():
    """A seeded tiny classification problem (float64) and the initial parameters of its MLP."""
    from ..model import Model
    rng = np.random.default_rng(SEED)
    centres = rng.standard_normal((3, 5)) * 2
    y = rng.integers(0, 3, 96)
    x = centres[y] + rng.standard_normal((96, 5))
    tn_random.seed(SEED)
    net = Net([Dense(16), ReLU(), Dense(3)])
    net.forward(x[:1], training=False)
    start = net.get_params()

    def fresh():
        net = Net([Dense(16), ReLU(), Dense(3)])
        net.forward(x[:1], training=False)
        net.set_params(start)
        return Model(net, SoftmaxCrossEntropy(), SGD(lr=0.01), dtype=np.float64)
    return x, y, start, fresh


def _endless_batches(x, y, batch_size, seed):
    from ..batches import BatchIterator
    batches = BatchIterator(x, y, batch_size, shuffle=True, seed=seed)
    while True:
        yield from batches


def _replay_losses(model, x, y, lrs, batch_size, seed):
    """The raw training losses of the steps taken at rates ``lrs`` (the candidate's own rates)."""
    batches, losses = _endless_batches(x, y, batch_size, seed), []
    for lr in lrs:
        model.optimizer.lr = float(lr)
        losses.append(float(model.train_step(*next(batches))))
    return np.array(losses)


def _ema(values, beta, corrected=True):
    out, average = [], 0.0
    for i, v in enumerate(values):
        average = beta * average + (1 - beta) * v
        out.append(average / (1 - beta ** (i + 1)) if corrected else average)
    return np.array(out)


def _same(a, b):
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-9, atol=1e-12, equal_nan=True))


def check_lr_range_test(candidate, smoothing=0.98, diverge_factor=4.0):
    """Check ``my_lr_range_test(model, x, y, lr_min, lr_max, num_steps, batch_size, seed)
    -> (lrs, losses)`` against tinynn's ``lr_range_test`` on a seeded tiny problem: rates growing
    geometrically from lr_min to lr_max, the loss smoothed by a bias-corrected moving average
    (β = ``smoothing``), a stop as soon as the smoothed loss exceeds ``diverge_factor`` × its
    minimum so far, and the initial weights restored. Linear spacing, no smoothing, a missing
    bias correction, no early stop and weights left as trained are named."""
    from ..lr_finder import lr_range_test

    def run():
        x, y, start, fresh = _range_problem()
        a = RANGE_TEST_ARGS
        model = fresh()
        result = candidate(model, x.copy(), y.copy(), a["lr_min"], a["lr_max"], a["num_steps"],
                           a["batch_size"], a["seed"])
        if result is None:
            raise NotDone("returned None — `return lrs, losses` at the end")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Failed("return two lists, the learning rates and the smoothed losses: "
                         "return lrs, losses")
        lrs, losses = (np.asarray(r, dtype=np.float64).ravel() for r in result)
        ref = lr_range_test(fresh(), x, y, start_lr=a["lr_min"], end_lr=a["lr_max"],
                            num_steps=a["num_steps"], batch_size=a["batch_size"], seed=a["seed"],
                            smoothing=smoothing, diverge_factor=diverge_factor)
        n, k, m = a["num_steps"], len(lrs), len(ref.lrs)
        if len(losses) != k:
            raise Failed(f"returned {k} learning rates but {len(losses)} losses: append one of "
                         "each per step")
        if k == 0:
            raise Failed("returned no steps: loop over the num_steps learning rates, one training "
                         "step each")
        if k > n:
            raise Failed(f"returned {k} steps for num_steps = {n}")
        i = np.arange(n)
        ratio = a["lr_max"] / a["lr_min"]
        planned = a["lr_min"] * ratio ** (i / (n - 1))
        if not _same(lrs, planned[:k]):
            if _same(lrs, np.linspace(a["lr_min"], a["lr_max"], n)[:k]):
                raise Failed("your learning rates are evenly spaced (linear, np.linspace): almost "
                             "all of them are large, and the small rates, where the loss starts "
                             "to fall, get a handful of steps. Space them geometrically: multiply "
                             "by the same factor each step, lr_min · (lr_max/lr_min)^(i/(num_steps "
                             "− 1))")
            if _same(lrs, (a["lr_min"] * ratio ** (i / n))[:k]):
                raise Failed("your rates never reach lr_max: the exponent should be "
                             "i / (num_steps − 1), so that step 0 uses lr_min and the last step "
                             "lr_max")
            if _same(lrs, (a["lr_min"] * ratio ** ((i + 1) / n))[:k]) or lrs[0] != a["lr_min"]:
                raise Failed(f"the first step should use lr_min ({a['lr_min']:g}), yours "
                             f"{lrs[0]:.4g}: lr_i = lr_min · (lr_max/lr_min)^(i/(num_steps − 1)) "
                             "for i = 0, 1, …")
            _expect("the learning rates", lrs, planned[:k])
        raw = _replay_losses(fresh(), x, y, lrs, a["batch_size"], a["seed"])
        smoothed = _ema(raw, smoothing)
        if not _same(losses, smoothed):
            if _same(losses, raw):
                raise Failed("your losses are the raw loss of each step, not smoothed: one batch's "
                             "loss is noisy, and the stop rule would fire on a single unlucky "
                             f"batch. Keep a moving average avg = β·avg + (1 − β)·loss (β = "
                             f"{smoothing}) and record avg / (1 − β^(i+1))")
            if _same(losses, _ema(raw, smoothing, corrected=False)):
                raise Failed("your moving average has no bias correction: it starts at 0, so the "
                             "first smoothed losses are far too small (the first is 2 % of the "
                             "loss) and the minimum is found at the start. Record "
                             "avg / (1 − β^(i+1)), i = 0, 1, …")
            _expect("the smoothed losses (the reference's smoothing of the losses at your rates)",
                    losses, smoothed)
        if k != m:
            if k == n and m < n:
                raise Failed(f"your test never stops early: it ran all {n} steps, while the "
                             f"smoothed loss passed {diverge_factor:g}× its minimum at step {m}. "
                             f"Stop (break) as soon as the smoothed loss exceeds "
                             f"{diverge_factor:g} × the lowest smoothed loss so far: the rest is "
                             "the explosion, wasted steps that can overflow")
            raise Failed(f"stopped after {k} steps, tinynn's lr_range_test after {m}: record the "
                         f"step, then stop as soon as its smoothed loss exceeds "
                         f"{diverge_factor:g} × the lowest smoothed loss so far (and at a "
                         "non-finite loss, before recording it)")
        after = model.net.get_params()
        if any(not np.array_equal(after[name], start[name]) for name in start):
            raise Failed("the rates and losses match tinynn's, but the model keeps the weights of "
                         "the last (exploding) step: you forgot to restore the initial weights. "
                         "Restore the whole model: before the loop save snapshot = "
                         "model.net.state_dict() (the weights and layer state such as "
                         "BatchNorm's running statistics) and saved = model.optimizer.snapshot() "
                         "(its step count and moments); after it, "
                         "model.net.load_state_dict(snapshot) and model.optimizer.restore(saved)")
        _expect("the learning rates", lrs, ref.lrs)
        _expect("the smoothed losses", losses, ref.losses)
        return (f"{k} rates from {lrs[0]:g} growing geometrically, smoothed losses and the stop at "
                f"{diverge_factor:g}× the minimum match lr_range_test; weights restored")
    return _run(_name(candidate), run)
