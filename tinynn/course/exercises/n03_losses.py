"""Notebook 03 (losses): ``check_loss``, and the exercise softmax_cross_entropy.

    check_loss(MySoftmaxCrossEntropy, tn.SoftmaxCrossEntropy)

A loss is checked on a few ordinary shapes, then at large and at confident logits (where a softmax
without the max-shift overflows and a log of a softmax underflows), with the constant factors
that name a mistake (a sum for a mean, a forgotten 1/N, the wrong sign).
"""
import inspect

import numpy as np

from ...functional import log_softmax, softmax
from ...gradcheck import gradcheck
from ...losses import Loss, SoftmaxCrossEntropy
from .compare import GRADCHECK_TOLERANCE, LARGE, _as_array, _close, _expect, _finite
from .core import SEED, Failed, NotDone, _make, _name, _run
from .spec import Exercise, visible_defaults

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


@visible_defaults
def check_loss(candidate, reference, *, shapes=None, seed=SEED):
    """Check a loss (class, instance or function ``(pred, target) -> (value, grad)``) against a
    tinynn loss class, e.g. ``check_loss(MySoftmaxCE, tn.SoftmaxCrossEntropy)``: value and gradient
    on several shapes, at large logits, and the numerical gradient check. ``shapes``: the
    (batch, classes) of the ordinary trials (default ``LOSS_SHAPES``, or ``BINARY_LOSS_SHAPES`` for
    a sigmoid cross-entropy); ``seed``: of the inputs."""
    def run():
        loss = _make(candidate) if inspect.isclass(candidate) else candidate
        ref = reference()
        worst = 0.0
        for label, pred, target in _loss_trials(reference, shapes, np.random.default_rng(seed)):
            _loss_trial(loss, ref, label, pred, target)
            if label not in ("large", "confident"):
                worst = max(worst, gradcheck(_AsLoss(loss), pred, target)["input"])
        if worst > GRADCHECK_TOLERANCE:
            raise Failed(f"matches the reference but fails the numerical gradient check "
                         f"(rel. err {worst:.1e})")
        return f"value matches, gradient matches, also at ±{LARGE:g} (max rel. err {worst:.0e})"
    return _run(_name(candidate), run, seed)


LOSS_SHAPES = [(4, 3), (6, 10), (1, 5)]      # (batch, classes) of the ordinary trials
BINARY_LOSS_SHAPES = [(4, 1), (5, 3), (1, 2)]  # for SigmoidCrossEntropy


def _loss_trials(reference, shapes, rng):
    """(label, pred, target) triples: three ordinary shapes, then large logits (all near ±1000)
    and confident ones (spread over ±1000)."""
    name = reference.__name__
    binary = name == "SigmoidCrossEntropy"
    shapes = shapes or (BINARY_LOSS_SHAPES if binary else LOSS_SHAPES)
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




class _AsLoss(Loss):
    """Lets tn.gradcheck treat any callable (pred, target) -> (value, grad) as a Loss."""

    def __init__(self, loss):
        self.loss = loss

    def forward(self, pred, target):
        value, grad = self.loss(pred, target)
        return float(np.asarray(value).reshape(())), np.asarray(grad, dtype=np.float64)


SOFTMAX_CROSS_ENTROPY = Exercise(
    "softmax_cross_entropy", ("MySoftmaxCrossEntropy",), check_loss,
    reference=SoftmaxCrossEntropy, bases=(Loss,),
    forbidden=(SoftmaxCrossEntropy, log_softmax, softmax),
    trials=dict(shapes=LOSS_SHAPES), hidden=dict(shapes=[(5, 4), (7, 12), (2, 3)]))
EXERCISES = (SOFTMAX_CROSS_ENTROPY,)
