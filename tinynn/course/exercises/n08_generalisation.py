"""Notebook 08 (generalisation): ``check_dropout``, and the exercises adamw (checked by
``check_optimizer``, with its own catalogue of mistakes) and dropout.

    check_dropout(MyDropout)   # a dropout layer: random, so checked by its rules

A dropout layer's masks are random, so it is checked by the rules rather than number for number:
the share it drops, the scale of what it keeps, a fresh mask each time, backward through that
very mask, and inference as the identity.
"""
import copy
import inspect

import numpy as np

from ...layers import Dropout, Layer
from ...optimizers import Adam, AdamW
from .compare import _as_array, _close, _expect, _fmt
from .core import SEED, Failed, NotDone, _make, _name, _run
from .n01_dense import _layer_input
from .n04_optimizers import LR_CHANGE_AT, OPTIMIZER_SHAPES, STEPS, check_optimizer
from .spec import Call, Exercise, visible_defaults


# ================================================================ AdamW
def _adamw_as_l2(self, param, grad):
    """Adam + L2: the decay added to the gradient, so it goes through m, v and √v̂."""
    Adam.update(self, param, grad + self.weight_decay * param)


def _adamw_decay_after_step(self, param, grad):
    """The decay applied to the parameter AFTER the Adam step (PyTorch decays first)."""
    Adam.update(self, param, grad)
    param *= 1.0 - self.lr * self.weight_decay


def _adamw_no_decay(self, param, grad):
    """Plain Adam: with ``decoupled_weight_decay = True`` step adds no λθ, and update forgot it."""
    Adam.update(self, param, grad)


def _adamw_decay_without_lr(self, param, grad):
    param *= 1.0 - self.weight_decay
    Adam.update(self, param, grad)


ADAMW_MISTAKES = [
    (_adamw_as_l2,
     "your updates match Adam + L2 (λθ added to the gradient, so it is averaged into "
     "m and v and divided by √v̂): decoupled weight decay shrinks the parameter "
     "itself, θ ← θ − ηλθ, and the Adam step uses the gradient g unchanged"),
    (_adamw_decay_without_lr,
     "your decay is θ ← (1 − λ)θ: multiply λ by the learning rate, θ ← θ − ηλθ"),
    (_adamw_decay_after_step,
     "you decay θ after the Adam step, so the decay also shrinks the step: with "
     "s = m̂/(√v̂ + ε), (θ − ηs)(1 − ηλ) = θ − ηs − ηλθ + η²λs, one term too many. In AdamW's formula "
     "θ ← θ − η(s + λθ) the λθ is the θ from before the step: decay first (θ ← θ − ηλθ), "
     "then the Adam step with g, as PyTorch does"),
    (_adamw_no_decay,
     "your updates are plain Adam's: with decoupled_weight_decay = True, step no longer "
     "adds λθ to the gradient, so update must apply the formula's −ηλθ itself, in place"),
]


# ================================================================ dropout
DROPOUT_RATES = (0.5, 0.2)   # 0.2 tells "p drops" from "p keeps" (at 0.5 they look the same)
DROPOUT_SHAPE = (100, 120)   # 12,000 units: the dropped share lands within ±0.03 of p (> 6 σ)
DROPOUT_SHARE_TOLERANCE = 0.03


@visible_defaults
def check_dropout(candidate, *, rates=DROPOUT_RATES, shape=DROPOUT_SHAPE, seed=SEED):
    """Check an inverted-dropout layer (a class built as ``candidate(p)``, or an instance with
    ``.p``). Its masks are random, so it is checked by the rules rather than number for number:
    in training each unit is zeroed with probability p and the others are scaled by 1/(1 − p);
    every training forward draws a fresh mask; backward multiplies by the very mask (and scale)
    the last training forward used; inference (``training=False``) returns x unchanged and
    leaves the saved mask alone; neither the input nor its dtype changes. ``rates``: the p of
    the layers built from a class; ``shape``: of the inputs, drawn from ``seed``."""
    def run():
        rng = np.random.default_rng(seed)
        if inspect.isclass(candidate):
            layers = [(_make(candidate, p), p) for p in rates]
        else:
            p = getattr(candidate, "p", None)
            if not isinstance(p, (int, float)) or not 0 < p < 1:
                raise Failed(f"keep the drop probability in self.p (a number in (0, 1); check a "
                             f"layer with p > 0 such as MyDropout(0.5)), got {p!r}")
            layers = [(copy.deepcopy(candidate), float(p))]
        for layer, p in layers:
            _dropout_trial(layer, p, shape, rng)
        tried = " and ".join(f"{p:g}" for _, p in layers)
        return (f"drops a share p of the units and scales the rest by 1/(1 − p), a fresh mask "
                f"each time, backward reuses it, inference is the identity (p = {tried})")
    return _run(_name(candidate), run, seed)


def _dropout_forward(layer, x, training):
    y = layer.forward(x, training=training)
    if y is None:
        raise NotDone("forward returned None — write its code and `return` the output")
    y = _as_array(y, "forward's output")
    if y.shape != x.shape:
        raise Failed(f"forward output has shape {y.shape}, expected the input's {x.shape}")
    return y


def _dropout_trial(layer, p, shape, rng):
    x = _layer_input(rng, shape)
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

    x_test = _layer_input(rng, shape)
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


ADAMW = Exercise(
    "adamw", ("MyAdamW",), check_optimizer, reference=AdamW, bases=(Adam,),
    mistakes=dict(mistakes=ADAMW_MISTAKES),
    trials=dict(shapes=OPTIMIZER_SHAPES, steps=STEPS, lr_change_at=LR_CHANGE_AT),
    hidden=dict(shapes=[(2, 4), (3,)], steps=7, lr_change_at=3),
    calls=(Call(kwargs=dict(lr=0.05, weight_decay=0.2)),))
DROPOUT = Exercise(
    "dropout", ("MyDropout",), check_dropout, forbidden=(Dropout,), bases=(Layer,),
    trials=dict(rates=DROPOUT_RATES, shape=DROPOUT_SHAPE),
    hidden=dict(rates=(0.6, 0.3), shape=(150, 90)))
EXERCISES = (ADAMW, DROPOUT)
