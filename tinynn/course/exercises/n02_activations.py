"""Notebook 02 (activations): the exercises sigmoid, leaky_relu and gelu (checked by
``check_layer``).

Sigmoid has one more check than the others (``_sigmoid_tail``): its forward must neither overflow
nor lose its small values in the negative tail, where the textbook formulas do. GELU's backward is
derived by the student (its derivative is printed nowhere above the exercise); ``_gelu_backward``
names the usual slips of that derivation: a term of the product rule or a link of the chain rule
left out, tanh's derivative or du/dx written wrongly, the exact GELU's derivative instead of the
tanh approximation's.
"""
import math

import numpy as np

from ...layers import GELU, Layer, LeakyReLU, Sigmoid
from .compare import _as_array, _close, _fmt, _percent
from .core import Failed
from .n01_dense import DEFAULT_LAYER_TRIALS, _forward, _layer_pair, check_layer
from .spec import Exercise

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


SIGMOID = Exercise(
    "sigmoid", ("MySigmoid",), check_layer, reference=Sigmoid, bases=(Layer,),
    mistakes=dict(extra_check=_sigmoid_tail), trials=dict(trials=DEFAULT_LAYER_TRIALS),
    hidden=dict(trials=[((), (5, 3)), ((), (2, 3, 5)), ((), (1, 7))]))
LEAKY_RELU = Exercise(
    "leaky_relu", ("MyLeakyReLU",), check_layer, reference=LeakyReLU, bases=(Layer,),
    trials=dict(trials=DEFAULT_LAYER_TRIALS),
    hidden=dict(trials=[((0.2,), (5, 3)), ((), (2, 3, 5)), ((0.05,), (1, 7))]))


def _gelu_mistakes(x):
    """(f'(x) written with one slip, what the slip is) for GELU's tanh approximation
    f(x) = ½x(1 + tanh u), u = c(x + a·x³), c = √(2/π), a = 0.044715."""
    c, a = GELU.C, GELU.A
    t = np.tanh(c * (x + a * x ** 3))
    du = c * (1 + 3 * a * x ** 2)
    erf = np.vectorize(math.erf)
    exact = 0.5 * (1 + erf(x / math.sqrt(2))) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)
    product = ("misses a term of the product rule: f(x) = ½x·(1 + tanh u) has two factors that "
               "depend on x, and ")
    return [
        (0.5 * (1 + t), product + "yours keeps only ½(1 + tanh u), the derivative of the first "
         "factor; add ½x·(1 − tanh²u)·du/dx, the second factor's"),
        (0.5 * x * (1 - t * t) * du, product + "yours keeps only ½x·(1 − tanh²u)·du/dx; add "
         "½(1 + tanh u), the derivative of the first factor x"),
        (0.5 * (1 + t) + 0.5 * x * (1 - t * t), "stops the chain rule at tanh: tanh's argument is "
         "u(x) = √(2/π)(x + 0.044715x³), so multiply (1 − tanh²u) by du/dx"),
        (0.5 * (1 + t) + 0.5 * x * (1 - t) * du, "uses 1 − tanh u for tanh's derivative: "
         "d tanh(u)/du = 1 − tanh²u (the square)"),
        (0.5 * (1 + t) + 0.5 * x * t * (1 - t) * du, "uses the sigmoid's σ(1 − σ) rule for tanh: "
         "d tanh(u)/du = 1 − tanh²u"),
        (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + a * x ** 2), "writes du/dx without "
         "the 3: d(0.044715x³)/dx = 3·0.044715x²"),
        (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (1 + 3 * a * x ** 2), "drops the constant "
         "√(2/π) from du/dx: u = √(2/π)(x + 0.044715x³)"),
        (exact, "is the derivative of the exact GELU, Φ(x) + x·φ(x): close, but the layer "
         "computes the tanh approximation, so its backward must differentiate that (the two "
         "differ by up to about 10⁻³)"),
    ]


def _gelu_backward(ref, x, upstream, ours, theirs):
    """Name a slip in GELU's derivative: the input gradient is G ⊙ f'(x) with one of the
    mistakes of ``_gelu_mistakes``."""
    yours = ours.get("input")
    if yours is None or np.shape(yours) != np.shape(upstream):
        return None
    yours = np.asarray(yours, dtype=np.float64)
    for derivative, message in _gelu_mistakes(np.asarray(x, dtype=np.float64)):
        wrong = upstream * derivative
        if _close(yours, wrong) and not _close(wrong, theirs["input"]):
            return "backward", message, yours, theirs["input"]
    return None


GELU_BACKWARD = Exercise(
    "gelu", ("MyGELU",), check_layer, reference=GELU, bases=(Layer,),
    mistakes=dict(diagnose=_gelu_backward), trials=dict(trials=DEFAULT_LAYER_TRIALS),
    hidden=dict(trials=[((), (5, 3)), ((), (2, 3, 5)), ((), (1, 7))]))
EXERCISES = (SIGMOID, LEAKY_RELU, GELU_BACKWARD)
