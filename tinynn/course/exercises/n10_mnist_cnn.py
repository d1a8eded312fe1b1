"""Notebook 10 (a MNIST CNN): the exercises max_pool (checked by ``check_function``),
max_pool_layer and batch_norm (checked by ``check_layer``), and their catalogues of mistakes.

When ``check_layer`` finds a gradient that differs, it asks the layer's ``diagnose``: a function
(ref, x, upstream, ours, theirs) -> (what, message, yours, expected) or None. ``ref`` has just run
forward on ``x`` (its saved tensors belong to x); ``ours``/``theirs`` are the gradients by name
("input", then the parameters). Each diagnosis builds the gradient a known mistake would give and
names the mistake when the student's equals it.
"""
import numpy as np

from ...conv import MaxPool2D
from ...layers import Layer
from ...norm import BatchNorm
from .compare import _close
from .n00_overview import check_function
from .n01_dense import check_layer
from .spec import Call, Exercise


# ================================================================ max pooling
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


# ================================================================ BatchNorm
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


def max_pool_reference(x):
    """The reference of my_max_pool in the hidden test: tinynn's MaxPool2D(2)."""
    return MaxPool2D(2).forward(x)


MAX_POOL = Exercise(
    "max_pool", ("my_max_pool",), check_function, forbidden=(MaxPool2D,), bases=(Layer,),
    calls=lambda rng: [Call(args=(max_pool_reference, rng.standard_normal((3, 4, 8, 2))))])
MAX_POOL_LAYER = Exercise(
    "max_pool_layer", ("MyMaxPool2D",), check_layer, reference=MaxPool2D, bases=(Layer,),
    mistakes=dict(diagnose=_diagnose_max_pool),
    trials=dict(trials=[((), (2, 4, 4, 3)), ((2,), (3, 6, 4, 2)), ((3,), (1, 6, 6, 1))],
                tie_trials=[((), (2, 4, 4, 3)), ((3,), (1, 6, 6, 2))]),
    hidden=dict(trials=[((), (3, 6, 4, 2)), ((2,), (2, 4, 8, 3)), ((3,), (1, 9, 6, 1))],
                tie_trials=[((), (3, 4, 6, 2)), ((3,), (2, 6, 3, 2))]))
BATCH_NORM = Exercise(
    "batch_norm", ("MyBatchNorm",), check_layer, reference=BatchNorm, bases=(Layer,),
    mistakes=dict(diagnose=_diagnose_batch_norm),
    trials=dict(trials=[((), (8, 3)), ((), (4, 3, 3, 2)), ((), (5, 4))]),
    hidden=dict(trials=[((), (7, 4)), ((), (3, 4, 2, 3)), ((), (6, 2))]))
EXERCISES = (MAX_POOL, MAX_POOL_LAYER, BATCH_NORM)
