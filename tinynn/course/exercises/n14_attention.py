"""Notebook 14 (attention and a small GPT): the exercises causal_softmax, attention_backward and
layer_norm_backward, their checks and catalogues of mistakes.

    check_causal_softmax(my_causal_softmax)             # scores (..., T, T) -> weights
    check_attention_backward(my_attention_backward)     # (q, k, v, grad_out) -> (dq, dk, dv)
    check_layer_norm_backward(my_layer_norm_backward)   # (x, gamma, grad_out) -> (dx, dγ, dβ)

Each check compares the candidate with a reference on small float64 inputs and, when they
differ, with the same computation written with one planted mistake (the ``*_MISTAKES`` tables):
a candidate that equals a planted mistake gets that mistake's name. The attention backward is
compared with tinynn's autograd (notebook 11) and with central differences.
"""
import numpy as np

from ...autograd import Tensor, where
from ...functional import log_softmax, softmax
from ...gradcheck import numerical_gradient, relative_error
from ...norm import LayerNorm
from ...sequence import MultiHeadAttention
from .compare import LARGE, _as_array, _close, _expect, _first_mismatch
from .core import SEED, Failed, NotDone, _name, _run
from .spec import Exercise, visible_defaults

NAN_TOLERANCE = 1e-7


def _same(yours, other):
    """Equal to the check's tolerance, NaN where the other is NaN (a planted mistake may give
    NaN: a row with every key masked)."""
    return yours.shape == other.shape and bool(np.allclose(
        yours, other, rtol=NAN_TOLERANCE, atol=NAN_TOLERANCE * max(np.nanmax(np.abs(other),
                                                                           initial=0.0), 1e-12),
        equal_nan=True))


def _matches_mistake(yours, wrong, expected):
    """Whether ``yours`` equals the planted mistake ``wrong`` where that differs from right."""
    return not _same(wrong, expected) and _same(yours, wrong)


# ================================================================ the causal softmax
def _tril(time, k=0):
    return np.tril(np.ones((time, time), dtype=bool), k)


def causal_softmax(scores):
    """The reference: softmax over the last axis (the keys s) of scores (..., T, T), with the
    scores of future keys (s > t) set to −∞ first, so their weights are exactly 0."""
    return softmax(np.where(_tril(scores.shape[-1]), scores, -np.inf), axis=-1)


def _unshifted(scores, mask):
    e = np.exp(np.where(mask, scores, -np.inf))
    return e / e.sum(axis=-1, keepdims=True)


def _shift_before_mask(scores, mask):
    e = np.exp(scores - scores.max(axis=-1, keepdims=True)) * mask
    return e / e.sum(axis=-1, keepdims=True)


CAUSAL_SOFTMAX_MISTAKES = [
    (lambda s, m: softmax(np.where(m.T, s, -np.inf), axis=-1),
     "masks the wrong triangle: position t may look at itself and the past, keys s ≤ t, the "
     "lower triangle (np.tril); np.triu keeps the future and hides the past"),
    (lambda s, m: softmax(np.where(np.tril(m, -1), s, -np.inf), axis=-1),
     "masks the diagonal too (keys s < t only): position t may look at itself (s = t), and row "
     "0 then has no key at all, so its softmax is 0/0 = NaN — keep the diagonal (np.tril with "
     "k=0)"),
    (lambda s, m: softmax(np.where(m, s, -np.inf), axis=-2),
     "takes the softmax over the wrong axis (the queries, axis −2): each query's weights over "
     "its keys must sum to 1, so normalise along the last axis (the keys)"),
    (lambda s, m: softmax(s, axis=-1) * m,
     "masks AFTER the softmax without renormalising: zeroing the future weights leaves rows "
     "that sum to less than 1 — set the future scores to −∞ before the softmax (or divide by "
     "the row sums again)"),
    (lambda s, m: softmax(np.where(m, s, 0.0), axis=-1),
     "sets the masked scores to 0 (or multiplies the scores by the mask): e⁰ = 1, so the future "
     "keeps a weight — the masked scores must be −∞, whose exponential is 0"),
    (lambda s, m: softmax(s, axis=-1),
     "applies no mask: position t must not look at keys s > t (the future)"),
]
CAUSAL_SOFTMAX_AT_LARGE = [
    (_unshifted, "overflows at large scores: exp(1000) is inf and inf/inf is NaN — subtract "
                 "each row's maximum over its allowed keys before exp (the softmax does not "
                 "change)"),
    (_shift_before_mask, "subtracts each row's maximum over ALL keys, the future included, "
                         "before masking: when a future score is the largest, every allowed "
                         "exp underflows to 0 and the row is 0/0 — mask first, then take the "
                         "maximum"),
]
CAUSAL_SOFTMAX_TRIALS = [(4, 4), (2, 5, 5), (2, 2, 3, 3), (1, 1)]


@visible_defaults
def check_causal_softmax(candidate, *, trials=CAUSAL_SOFTMAX_TRIALS, seed=SEED):
    """Check ``candidate(scores) -> weights``: the softmax over the last axis (keys) of scores
    of shape (..., T, T) in which key s > t is masked out for query t. ``trials``: the scores'
    shapes (each also tried × 1000, where an unshifted exp overflows); ``seed``: of the scores."""
    def run():
        rng = np.random.default_rng(seed)
        for shape in trials:
            scores = rng.standard_normal(shape)
            _causal_softmax_trial(candidate, scores, f"for scores of shape {shape}",
                                  CAUSAL_SOFTMAX_MISTAKES)
            _causal_softmax_trial(candidate, scores * LARGE, f"for scores of shape {shape} "
                                  f"× {LARGE:g}", CAUSAL_SOFTMAX_AT_LARGE)
        return (f"matches the masked softmax on {len(trials)} shapes, and at scores × {LARGE:g}: "
                "rows sum to 1, future weights are 0")
    return _run(_name(candidate), run, seed)


def _causal_softmax_trial(candidate, scores, where, mistakes):
    given = scores.copy()
    yours = candidate(given)
    if yours is None:
        raise NotDone("returned None — `return` the weights")
    if not np.array_equal(given, scores):
        raise Failed("changed the scores in place: compute a new array (np.where makes one)")
    expected = causal_softmax(scores)
    yours = _as_array(yours, f"the weights {where}")
    if yours.shape != expected.shape:
        raise Failed(f"the weights {where} have shape {yours.shape}, expected {expected.shape} "
                     "(the scores' shape: one weight per query and key)")
    if _close(yours, expected):
        return
    mask = _tril(scores.shape[-1])
    for mistake, message in mistakes:
        with np.errstate(all="ignore"):
            wrong = mistake(scores, mask)
        if _matches_mistake(yours, wrong, expected):
            raise Failed(f"the weights {where}: {message}" + _first_mismatch(yours, expected))
    if not np.all(np.isfinite(yours)):
        raise Failed(f"the weights {where} contain NaN or inf: subtract each row's maximum "
                     "(over its allowed keys) before exp" + _first_mismatch(yours, expected))
    if np.any(np.abs(yours[..., ~mask]) > 0):
        raise Failed(f"the weights {where} are nonzero above the diagonal (a query attends to "
                     "future keys): masked scores must be −∞ before the softmax"
                     + _first_mismatch(yours, expected))
    if not np.allclose(yours.sum(axis=-1), 1.0):
        raise Failed(f"the weights {where} do not sum to 1 over the keys (the last axis)"
                     + _first_mismatch(yours, expected))
    _expect(f"the weights {where}", yours, expected)


# ================================================================ attention's backward
def attention_autograd(q, k, v):
    """Causal single-head attention, softmax(mask(QKᵀ/√d)) V, with tinynn's autograd (notebook
    11): Tensors in, a Tensor out. The row maximum is subtracted as a constant (the softmax
    does not change, so it needs no gradient)."""
    scores = where(_tril(q.shape[0]), (q @ k.T) * (1.0 / np.sqrt(q.shape[1])), -np.inf)
    e = (scores - scores.data.max(axis=-1, keepdims=True)).exp()
    return (e / e.sum(axis=-1, keepdims=True)) @ v


def attention_backward_reference(q, k, v, grad_out):
    """The reference of my_attention_backward: (dq, dk, dv) by tinynn's autograd."""
    q, k, v = (Tensor(np.array(a, dtype=np.float64)) for a in (q, k, v))
    attention_autograd(q, k, v).backward(np.asarray(grad_out, dtype=np.float64))
    return q.grad, k.grad, v.grad


def _attention_variant(q, k, v, g, scale_forward=True, scale_backward=True, jacobian="full",
                       masked=True, dk_transposed=False, dv_transposed=False,
                       dq_transposed=False):
    """(dq, dk, dv) of causal attention written with one planted mistake (the flags)."""
    c = 1.0 / np.sqrt(q.shape[1])
    s = q @ k.T * (c if scale_forward else 1.0)
    a = softmax(np.where(_tril(len(q)), s, -np.inf) if masked else s, axis=-1)
    da = g @ v.T
    dv = (a if dv_transposed else a.T) @ g
    if jacobian == "full":
        ds = a * (da - (da * a).sum(axis=-1, keepdims=True))
    elif jacobian == "elementwise":
        ds = da * a * (1 - a)
    elif jacobian == "diagonal":
        ds = a * da
    else:  # "no_a": the leading a_i forgotten
        ds = da - (da * a).sum(axis=-1, keepdims=True)
    cb = c if scale_backward and scale_forward else 1.0
    dq = (ds.T if dq_transposed else ds) @ k * cb
    dk = (ds if dk_transposed else ds.T) @ q * cb
    return dq, dk, dv


ATTENTION_MISTAKES = [
    (dict(scale_backward=False), "forgets the scale 1/√d in the backward: the scores are "
     "QKᵀ/√d, so the gradients reaching Q and K through them carry the factor 1/√d too (dq and "
     "dk are √d times too large; dv is right)"),
    (dict(scale_forward=False), "leaves out 1/√d altogether (forward and backward): the scores "
     "are QKᵀ/√d"),
    (dict(jacobian="elementwise"), "replaces the softmax's Jacobian by its diagonal, "
     "p(1 − p) elementwise: every weight of a row depends on every score of the row "
     "(∂aᵢ/∂sⱼ = aᵢ(δᵢⱼ − aⱼ)), so dS needs the whole row: the sum over the keys of dA ⊙ A"),
    (dict(jacobian="diagonal"), "keeps only the δᵢⱼ part of the softmax's Jacobian "
     "(aᵢ(δᵢⱼ − aⱼ)): the −aᵢaⱼ part subtracts the row's Σⱼ dAⱼ aⱼ from every dAᵢ"),
    (dict(jacobian="no_a"), "forgets the factor aᵢ in front of (dAᵢ − Σⱼ dAⱼ aⱼ): without it "
     "the masked keys (a = 0) receive a gradient — it leaks into the future"),
    (dict(masked=False), "recomputes the weights without the causal mask: the backward must use "
     "the same (masked) weights as the forward, or the gradient leaks into future positions"),
    (dict(dk_transposed=True), "computes dk from dS instead of dSᵀ (dk is transposed): row s of "
     "dk collects what every query t said about key s, a COLUMN of dS — the shapes fit only "
     "because dS is square"),
    (dict(dv_transposed=True), "computes dv with A instead of Aᵀ: value s is used by every query "
     "t ≥ s, a COLUMN of A — the shapes fit only because A is square"),
    (dict(dq_transposed=True), "computes dq from dSᵀ instead of dS: query t's gradient is row t "
     "of dS (its own scores) times K"),
]
ATTENTION_TRIALS = [(5, 3), (4, 4), (3, 2), (6, 5)]   # (T, d); (4, 4) is square


@visible_defaults
def check_attention_backward(candidate, *, trials=ATTENTION_TRIALS, seed=SEED):
    """Check ``candidate(q, k, v, grad_out) -> (dq, dk, dv)`` for causal single-head attention
    out = softmax(mask(QKᵀ/√d)) V, q, k, v and grad_out of shape (T, d): against tinynn's
    autograd (notebook 11), against central differences (float64), and for gradient leaking
    into future positions. ``trials``: (T, d) shapes; ``seed``: of the inputs."""
    def run():
        rng = np.random.default_rng(seed)
        worst = 0.0
        for time, width in trials:
            q, k, v, g = (rng.standard_normal((time, width)) for _ in range(4))
            worst = max(worst, _attention_trial(candidate, q, k, v, g, rng))
        if worst > 1e-6:
            raise Failed(f"matches the autograd, but the gradient check (central differences) "
                         f"differs by {worst:.1e} (> 1e-6): is everything float64?")
        return (f"dq, dk, dv match tinynn's autograd on {len(trials)} shapes (T, d), agree with "
                "central differences (float64, below 1e-6), and no gradient reaches a future "
                "position")
    return _run(_name(candidate), run, seed)


def _call_attention(candidate, q, k, v, g, where):
    given = [a.copy() for a in (q, k, v, g)]
    result = candidate(*given)
    if result is None:
        raise NotDone("returned None — `return dq, dk, dv`")
    if any(not np.array_equal(a, b) for a, b in zip(given, (q, k, v, g))):
        raise Failed("changed an argument in place: compute new arrays")
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise Failed(f"should return three arrays (dq, dk, dv), got {type(result).__name__}")
    return [_as_array(r, f"{n} {where}") for r, n in zip(result, ("dq", "dk", "dv"))]


def _attention_trial(candidate, q, k, v, g, rng):
    time, width = q.shape
    where = f"for q, k, v of shape (T, d) = {q.shape}"
    yours = _call_attention(candidate, q, k, v, g, where)
    expected = attention_backward_reference(q, k, v, g)
    names = ("dq", "dk", "dv")
    for name, y, e in zip(names, yours, expected):
        if y.shape != e.shape:
            raise Failed(f"{name} {where} has shape {y.shape}, expected {e.shape}: a gradient "
                         f"has the shape of what it is the gradient of ({name[1:]})")
    if not all(_close(y, e) for y, e in zip(yours, expected)):
        _diagnose_attention(candidate, q, k, v, g, yours, expected, where)
    objective = _attention_objective(q, k, v, g)
    numeric = [numerical_gradient(objective, a) for a in (q, k, v)]
    return max(relative_error(y, n) for y, n in zip(yours, numeric))


def _attention_objective(q, k, v, g):
    """Σ out ⊙ G, whose gradient is the backward's with upstream G (reads q, k, v live)."""
    def objective():
        c = 1.0 / np.sqrt(q.shape[1])
        a = softmax(np.where(_tril(len(q)), q @ k.T * c, -np.inf), axis=-1)
        return float(np.sum((a @ v) * g))
    return objective


def _diagnose_attention(candidate, q, k, v, g, yours, expected, where):
    names = ("dq", "dk", "dv")
    for order in ((1, 0, 2), (2, 1, 0), (0, 2, 1), (1, 2, 0), (2, 0, 1)):
        if all(_close(yours[i], expected[j]) for i, j in enumerate(order)) \
                and not all(_close(expected[i], expected[j]) for i, j in enumerate(order)):
            raise Failed(f"returns the right gradients in the wrong order {where}: return "
                         f"(dq, dk, dv) — yours are ({', '.join(names[j] for j in order)})")
    for flags, message in ATTENTION_MISTAKES:
        wrong = _attention_variant(q, k, v, g, **flags)
        if any(not _close(w, e) for w, e in zip(wrong, expected)) \
                and all(_close(y, w) for y, w in zip(yours, wrong)):
            bad = next(i for i, (y, e) in enumerate(zip(yours, expected)) if not _close(y, e))
            raise Failed(f"{where}: {message}" + _first_mismatch(yours[bad], expected[bad]))
    leak = _future_leak(candidate, q, k, v, where)
    if leak:
        raise Failed(leak)
    for name, y, e in zip(names, yours, expected):
        _expect(f"{name} {where}", y, e,
                factors=((np.sqrt(q.shape[1]), "is √d times the expected: the 1/√d of the "
                                               "scores belongs in the backward too"),
                         (1 / np.sqrt(q.shape[1]), "is 1/√d times the expected: the scale "
                                                   "1/√d enters once, not twice")))


def _future_leak(candidate, q, k, v, where):
    """A message if an upstream gradient at one position reaches keys or values after it."""
    time = len(q)
    if time < 3:
        return None
    t0 = time // 2 - 1
    g = np.zeros_like(q)
    g[t0] = 1.0
    dq, dk, dv = _call_attention(candidate, q, k, v, g, where)
    future = {"dk": dk[t0 + 1:], "dv": dv[t0 + 1:], "dq": dq[t0 + 1:]}
    leaked = [name for name, rows in future.items() if np.any(np.abs(rows) > 1e-12)]
    if leaked:
        return (f"the gradient leaks into future positions {where}: with an upstream gradient "
                f"at position {t0} only, {' and '.join(leaked)} should be 0 at positions after "
                f"{t0} (query {t0} never looked at them), yours are not — the masked weights "
                "are 0, so their dS must be 0 too")
    return None


# ================================================================ LayerNorm's backward
EPS = 1e-5


def layer_norm_backward_reference(x, gamma, grad_out, eps=EPS):
    """The reference of my_layer_norm_backward: tinynn's LayerNorm with this γ (and β = 0)."""
    layer = LayerNorm(eps)
    layer.forward(x)
    layer.params["gamma"][...] = gamma
    layer.forward(x)
    dx = layer.backward(grad_out)
    return dx, layer.grads["gamma"].copy(), layer.grads["beta"].copy()


def _layer_norm_mistakes(x, gamma, grad, eps):
    """{gradient name: [(wrong value, message)]}: LayerNorm's backward with planted mistakes."""
    rows = tuple(range(x.ndim - 1))
    mean = x.mean(axis=-1, keepdims=True)
    inv = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
    x_hat = (x - mean) * inv
    g = grad * gamma
    mean_term = g.mean(axis=-1, keepdims=True)
    var_term = x_hat * (g * x_hat).mean(axis=-1, keepdims=True)
    b_inv = 1.0 / np.sqrt(x.var(axis=rows, keepdims=True) + eps)      # BatchNorm's statistics
    b_hat = (x - x.mean(axis=rows, keepdims=True)) * b_inv
    batch_norm = ("normalises over the batch axis, as BatchNorm does: LayerNorm standardises "
                  "each row (each sample, each position) over its own D features — means "
                  "over the last axis (axis=-1, keepdims=True)")
    return {
        "dx": [
            (inv * (g - var_term), "forgets the term through the MEAN, −mean(γG): μ depends on "
             "every feature of the row (shifting a whole row changes nothing after "
             "normalisation, so each row of dx sums to 0)"),
            (inv * (g - mean_term), "forgets the term through the VARIANCE, −x̂·mean(γG·x̂): σ² "
             "depends on every feature of the row too (scaling a whole row changes nothing "
             "after normalisation)"),
            (inv * g, "treats μ and σ² as constants: both depend on x, which adds a term "
             "through the mean and one through the variance"),
            (b_inv * (g - g.mean(axis=rows, keepdims=True)
                      - b_hat * (g * b_hat).mean(axis=rows, keepdims=True)), batch_norm),
            (inv * (grad - grad.mean(axis=-1, keepdims=True)
                    - x_hat * (grad * x_hat).mean(axis=-1, keepdims=True)),
             "forgets γ: the gradient reaching x̂ is γ·G (from y = γ·x̂ + β)"),
            (g - mean_term - var_term, "forgets the factor 1/√(σ² + ε) (x̂ = (x − μ)/√(σ² + ε))"),
            (inv * (g + mean_term + var_term), "adds the two terms that should be subtracted"),
        ],
        "dgamma": [
            ((grad * x).sum(axis=rows), "sums G·x: y = γ·x̂ + β, so dγ sums G·x̂, with the "
             "NORMALISED input"),
            ((grad * x_hat).mean(axis=rows), "is a mean over the rows: SUM over the batch and "
             "the positions (the loss already divided by their number)"),
            ((grad * b_hat).sum(axis=rows), batch_norm),
        ],
        "dbeta": [
            (grad.mean(axis=rows), "is a mean over the rows: SUM over the batch and the "
             "positions (the loss already divided by their number)"),
        ],
    }


LAYER_NORM_TRIALS = [(4, 5), (2, 3, 6), (3, 1, 4)]


@visible_defaults
def check_layer_norm_backward(candidate, *, trials=LAYER_NORM_TRIALS, seed=SEED):
    """Check ``candidate(x, gamma, grad_out) -> (dx, dgamma, dbeta)``, LayerNorm's backward
    (eps = 1e-5, normalising the last axis) for x (N, D) or (B, T, D), against tinynn's
    LayerNorm, naming the forgotten mean and variance terms, BatchNorm's axis and unsummed
    parameter gradients. ``trials``: shapes of x; ``seed``: of the inputs."""
    def run():
        rng = np.random.default_rng(seed)
        for shape in trials:
            x = rng.standard_normal(shape) * 2.0 + rng.standard_normal(shape[-1])
            gamma = rng.uniform(0.5, 2.0, shape[-1])
            grad = rng.standard_normal(shape)
            _layer_norm_trial(candidate, x, gamma, grad)
        return (f"dx, dgamma, dbeta match tinynn's LayerNorm on {len(trials)} shapes, (N, D) "
                "and (B, T, D)")
    return _run(_name(candidate), run, seed)


def _layer_norm_trial(candidate, x, gamma, grad):
    where = f"for x of shape {x.shape}"
    given = [a.copy() for a in (x, gamma, grad)]
    result = candidate(*given)
    if result is None:
        raise NotDone("returned None — `return dx, dgamma, dbeta`")
    if any(not np.array_equal(a, b) for a, b in zip(given, (x, gamma, grad))):
        raise Failed("changed an argument in place: compute new arrays")
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise Failed(f"should return three arrays (dx, dgamma, dbeta), got "
                     f"{type(result).__name__}")
    names = ("dx", "dgamma", "dbeta")
    yours = [_as_array(r, f"{n} {where}") for r, n in zip(result, names)]
    expected = layer_norm_backward_reference(x, gamma, grad)
    for name, y, e in zip(names, yours, expected):
        if y.shape != e.shape:
            raise Failed(f"{name} {where} has shape {y.shape}, expected {e.shape}"
                         + _unsummed(name, y.shape, x.shape))
    mistakes = _layer_norm_mistakes(x, gamma, grad, EPS)
    for name, y, e in zip(names, yours, expected):
        if _close(y, e):
            continue
        for wrong, message in mistakes[name]:
            if not _close(wrong, e) and _close(y, wrong):
                raise Failed(f"{name} {where} {message}" + _first_mismatch(y, e))
        _expect(f"{name} {where}", y, e)


def _unsummed(name, got, x_shape):
    if name == "dx":
        return " (x's shape)"
    if got == x_shape:
        return (f": {name} is not summed — γ and β are shared by every row (every sample and "
                "every position), so their gradients sum over all axes but the last")
    if len(x_shape) == 3 and got in (x_shape[1:], x_shape[::2]):
        axis = "time" if got == x_shape[::2] else "batch"
        other = "batch" if axis == "time" else "time"
        return (f": {name} is summed over the {axis} axis but not over the {other} axis — sum "
                "over both (every position of every sample used the same parameters)")
    return f" (one number per feature, like {name[1:]})"


# ================================================================ the specs
CAUSAL_SOFTMAX = Exercise(
    "causal_softmax", ("my_causal_softmax",), check_causal_softmax,
    forbidden=(causal_softmax, softmax, log_softmax),
    trials=dict(trials=CAUSAL_SOFTMAX_TRIALS),
    hidden=dict(trials=[(5, 5), (3, 4, 4), (1, 2, 6, 6), (2, 2)]))
ATTENTION_BACKWARD = Exercise(
    "attention_backward", ("my_attention_backward",), check_attention_backward,
    forbidden=(attention_backward_reference, attention_autograd, MultiHeadAttention, Tensor),
    trials=dict(trials=ATTENTION_TRIALS),
    hidden=dict(trials=[(6, 2), (3, 3), (7, 4), (4, 3)]))
LAYER_NORM_BACKWARD = Exercise(
    "layer_norm_backward", ("my_layer_norm_backward",), check_layer_norm_backward,
    forbidden=(layer_norm_backward_reference, LayerNorm),
    trials=dict(trials=LAYER_NORM_TRIALS),
    hidden=dict(trials=[(5, 4), (3, 2, 5), (2, 4, 3)]))
EXERCISES = (CAUSAL_SOFTMAX, ATTENTION_BACKWARD, LAYER_NORM_BACKWARD)
