"""Notebook 01 (tensors and the Dense layer): ``check_layer``, and the exercise dense.

    check_layer(MyDense, tn.Dense)   # a Layer class or instance vs. the reference class

``check_layer`` is the check of every layer exercise (notebooks 01, 02, 09, 10, 12). It runs the
candidate next to the reference on small float64 inputs, copies the reference's parameters into
the candidate first (so random initialisation does not matter), compares the forward output, the
input gradient and every parameter gradient, checks that nothing is changed in place, and runs the
numerical gradient check. A layer's own catalogue of mistakes (``diagnose``, ``extra_check``)
comes from its exercise's spec, in the notebook's module.
"""
import copy
import inspect
import traceback

import numpy as np

from ...gradcheck import gradcheck
from ...layers import Dense, Layer
from .compare import GRADCHECK_TOLERANCE, _close, _expect, _first_mismatch, _mask_differs
from .core import SEED, Failed, NotDone, _make, _name, _reseed, _run
from .spec import Exercise, visible_defaults

# Constructor arguments and input shapes of a layer without an exercise (ReLU, Tanh, ...).
DEFAULT_LAYER_TRIALS = [((), (4, 5)), ((), (3, 2, 4)), ((), (1, 6))]


@visible_defaults
def check_layer(candidate, reference, *, trials=DEFAULT_LAYER_TRIALS, tie_trials=(),
                extra_check=None, diagnose=None, seed=SEED):
    """Check a layer (class or instance) against a tinynn reference layer class, e.g.
    ``check_layer(MyDense, tn.Dense)``: forward output, input gradient, parameter gradients,
    cached input, no mutation of parameters or input, and the numerical gradient check.

    ``trials``: (constructor arguments, input shape) pairs; ``tie_trials``: more, on inputs with
    ties (no gradient check there); ``extra_check(candidate, reference, args, shape)``: a further
    check of the layer; ``diagnose(ref, x, upstream, ours, theirs)``: names a known mistake in
    backward, as (what, message, yours, expected) or None; ``seed``: of every input."""
    def run():
        rng = np.random.default_rng(seed)
        worst = max(_layer_trial(candidate, reference, args, shape, rng, seed, diagnose)
                    for args, shape in trials)
        for args, shape in tie_trials:  # no gradient check: a tie is where max has no derivative
            _layer_trial(candidate, reference, args, shape, rng, seed, diagnose, ties=True)
        if extra_check:
            extra_check(candidate, reference, *trials[0])
        also = " and on inputs with ties" if tie_trials else ""
        return f"forward matches, gradients match{also} (max rel. err {worst:.0e})"
    return _run(_name(candidate), run, seed)


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




def _layer_trial(candidate, reference, args, shape, rng, seed, diagnose, ties=False):
    """One trial: build both layers on one input, then forward and backward on another.
    Returns the candidate's worst numerical-gradient-check error. ``ties``: the second input
    holds small integers (many equal values in every window) and the gradient check is skipped."""
    cand, ref, shape = _layer_pair(candidate, reference, args, shape)
    x_first, x = _layer_input(rng, shape), _layer_input(rng, shape)
    if ties:
        x = rng.integers(0, 3, shape).astype(np.float64)
    _build_alike(cand, ref, x_first, rng, seed)
    before = {name: np.copy(p) for name, p in cand.params.items()}
    expected_y = _compare_forward(cand, ref, x, shape, before, seed)
    upstream = rng.standard_normal(expected_y.shape)
    dense = type(ref).__name__ == "Dense"
    ours = _backward(cand, upstream.copy(), _dense_shapes(x, ref, upstream) if dense else None)
    _unchanged(cand, before, "backward")
    theirs = _ref_gradients(ref, upstream)
    extra = {"input": [_dense_missing_transpose(ref.params["w"], upstream)]} if dense else {}
    try:
        _compare_gradients(ours, theirs, len(x), extra)
    except Failed:
        named = diagnose(ref, x, upstream, ours, theirs) if diagnose else None
        if named:
            what, message, yours, expected = named
            raise Failed(f"{what}{' on inputs with ties' if ties else ''} {message}"
                         + _first_mismatch(yours, expected)) from None
        _reseed(seed)
        ref.forward(x_first.copy())
        if _same_gradients(ours, _ref_gradients(ref, upstream)):
            raise Failed("backward used the input of an EARLIER forward call (stale cache): "
                         "store what backward needs (self.x = x) on every forward, not only "
                         "the first") from None
        raise
    return 0.0 if ties else _gradcheck(cand, x)


def _build_alike(cand, ref, x_first, rng, seed):
    """Build both layers by a first forward, give the reference random parameters and the
    candidate a copy of them."""
    _reseed(seed)
    ref.forward(x_first.copy())
    _randomize(ref, rng)
    if getattr(cand, "params", None):
        _adopt_params(cand, ref)  # already built (an instance): match the reference before forward
    _reseed(seed)
    _forward(cand, x_first.copy())
    _adopt_params(cand, ref)


def _compare_forward(cand, ref, x, shape, before, seed):
    """Both forward on ``x`` (the same random draws): the candidate's output must equal the
    reference's, and neither the input nor a parameter may change. Returns the reference's."""
    x_seen = x.copy()
    _reseed(seed)
    y = _forward(cand, x_seen)
    _reseed(seed)
    expected_y = ref.forward(x.copy())
    if not np.array_equal(x_seen, x):
        raise Failed("forward changed its input x in place (e.g. x[x < 0] = 0 or x += b): the "
                     "caller's array must stay as it was; compute a new array instead")
    _unchanged(cand, before, "forward")
    _expect(f"forward output for input of shape {shape}", y, expected_y,
            nonfinite="Is there an exp() that can overflow?")
    return expected_y


def _gradcheck(cand, x):
    errors = gradcheck(cand, x)
    name, worst = max(errors.items(), key=lambda item: item[1])
    if worst > GRADCHECK_TOLERANCE:
        raise Failed(f"matches the reference but fails the numerical gradient check for "
                     f"{name!r} (rel. err {worst:.1e}): does forward depend on anything that "
                     "changes between calls?")
    return worst



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


def _dense_bias(ref, x, upstream, ours, theirs):
    """Name the wrong reductions of G for dL/db (the bias was broadcast over the batch), once the
    input gradient is right."""
    grad_x, yours = ours.get("input"), ours.get("b")
    if grad_x is None or yours is None:
        return None
    grad_x, yours = np.asarray(grad_x, dtype=np.float64), np.asarray(yours, dtype=np.float64)
    if not _close(grad_x, theirs["input"]):
        return None
    n, d_out = upstream.shape
    why = (f"b_j is added to Y_ij for every example i (broadcast over the {n} rows) with "
           "derivative 1, so dL/db_j sums G_ij over the batch: one number per output column")
    if yours.shape == upstream.shape and _close(yours, upstream):
        return ("grads['b']", f"is G itself, shape {upstream.shape}: it keeps the batch axis. {why}",
                yours, yours)
    if yours.shape == (n,) and n != d_out and _close(yours, upstream.sum(axis=1)):
        return ("grads['b']", f"is summed over the outputs (axis=1), shape {(n,)}: {why}",
                yours, yours)
    if yours.shape == (d_out,) and n > 1 and _close(yours, upstream[-1]):
        return "grads['b']", f"is the last example's row of G only: {why}", yours, theirs["b"]
    return None


DENSE = Exercise(
    "dense", ("MyDense",), check_layer, reference=Dense, bases=(Layer,),
    mistakes=dict(diagnose=_dense_bias),
    trials=dict(trials=[((3,), (4, 5)), ((4,), (6, 4)), ((2,), (1, 3))]),
    hidden=dict(trials=[((5,), (3, 7)), ((2,), (6, 3)), ((1,), (2, 4))]))
EXERCISES = (DENSE,)
