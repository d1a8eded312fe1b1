"""Notebook 04 (optimizers): ``check_optimizer``, and the exercises momentum, adam and
cosine_decay (a schedule, checked by ``check_function``).

    check_optimizer(MyMomentum, tn.Momentum, lr=0.1, momentum=0.9)   # both built with the kwargs

An optimizer is checked by its trajectory: a few steps on two parameters with the same gradients
as the reference, the learning rate changed half-way (as widgets and schedules do). A trajectory
that matches one of the exercise's known mistakes (its ``mistakes``: the update method of the
mistaken version, and what it gets wrong) is named.
"""
import numpy as np

from ...optimizers import Adam, Momentum, Optimizer
from ...schedules import CosineDecay, Schedule
from .compare import _close, _expect, _first_mismatch
from .core import SEED, Failed, _make, _name, _run
from .n00_overview import SCHEDULE_STEPS, check_function
from .spec import Call, Exercise, visible_defaults

STEPS = 6
LR_CHANGE_AT = 4  # before this step both optimizers' .lr is halved, as a widget or schedule would
TINY = 1e-4  # the second trial's gradient scale: where ε stops being negligible
OPTIMIZER_SHAPES = [(3, 2), (2,)]   # the parameters the trial updates


@visible_defaults
def check_optimizer(candidate, reference, *, mistakes=(), nonfinite=None, shapes=OPTIMIZER_SHAPES,
                    steps=STEPS, lr_change_at=LR_CHANGE_AT, seed=SEED, **kwargs):
    """Check an optimizer (class or instance) against a tinynn optimizer class, both built with
    ``kwargs``: ``steps`` steps on parameters of ``shapes`` with the same gradients, the learning
    rate halved before step ``lr_change_at`` (as widgets do), in-place updates, and known mistakes
    named (``mistakes``: (update method of the mistaken version, diagnosis) pairs; ``nonfinite``:
    what NaN or inf after the first step means). The trial runs twice, with ordinary gradients
    and with gradients × ``TINY`` (where ε matters)."""
    def run():
        rng = np.random.default_rng(seed)
        start = [rng.standard_normal(s) for s in shapes]
        gradients = [[rng.standard_normal(s) for s in shapes] for _ in range(steps)]
        tracks = _tracks(reference, kwargs, mistakes)
        for scale in (1.0, TINY):
            scaled = [[g * scale for g in grads] for grads in gradients]
            ours = _trajectory(_make(candidate, **kwargs), True, start, scaled, lr_change_at,
                               check=True)
            expected = {key: _trajectory(make(), follow, start, scaled, lr_change_at)
                        for key, (make, follow) in tracks.items()}
            if _same_trajectory(ours, expected["reference"]):
                continue
            try:
                _diagnose_trajectory(ours, expected, start, lr_change_at, nonfinite)
            except Failed as e:
                if scale == 1.0:
                    raise
                raise Failed(f"correct with ordinary gradients, but not with tiny ones (all × "
                             f"{TINY:g}): {e}") from None
        return (f"{steps} steps on {len(shapes)} parameters match "
                f"{reference.__name__}({_kwargs(kwargs)}), with ordinary and with tiny gradients")
    return _run(_name(candidate), run, seed)


def _tracks(reference, kwargs, mistakes):
    """{track: (make the optimizer, whether it follows the lr change)} for the reference, the
    reference that ignores the lr change, and each known mistake."""
    tracks = {"reference": (lambda: reference(**kwargs), True),
              "ignores lr": (lambda: reference(**kwargs), False)}
    for update, message in mistakes:
        mistaken = type(reference.__name__, (reference,), {"update": update})
        tracks[message] = (lambda mistaken=mistaken: mistaken(**kwargs), True)
    return tracks


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


EPS_INSIDE = ("you add ε inside the square root, √(v̂ + ε); it belongs outside: √v̂ + ε. (It "
              "only shows where √v̂ is as small as √ε, so this check also runs with tiny "
              "gradients.)")
# Known mistakes: (update method of the mistaken version, diagnosis).
MOMENTUM_MISTAKES = [
    (_momentum_dampened,
     "your velocity averages the gradient (v ← μv + (1 − μ)g, as Adam's m does); "
     "momentum adds the whole gradient: v ← μv + g"),
    (_momentum_rebinds_velocity,
     "your velocity does not carry over between steps (each step uses only the "
     "current gradient): `velocity = self.momentum * velocity + grad` makes a new "
     "array and leaves the stored velocity at zero (as would a new np.zeros_like at "
     "every step): keep the state in the slot from self.slots(param, 1) and update "
     "it in place: velocity *= self.momentum, then velocity += grad"),
]
ADAM_MISTAKES = [
    (_adam_without_bias_correction,
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
    (_adam_eps_inside_sqrt, EPS_INSIDE),
]
# What NaN or inf after Adam's first step means.
ADAM_NONFINITE = ("the first step gives NaN or inf: with t = 0 the bias correction divides by "
                  "1 − β⁰ = 0. An optimizer counts steps from 1: use self.t as it is (already 1 "
                  "on the first step), do not subtract 1 or keep your own counter from 0")


# RMSProp is taught in notebook 04 without a graded exercise: the catalogue of its mistakes, for
# a check of it (check_optimizer(MyRMSProp, tn.RMSProp, mistakes=RMSPROP_MISTAKES, lr=0.01)).
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



RMSPROP_MISTAKES = [
    (_rmsprop_without_sqrt,
     "you divide by the running mean of g² itself; divide by its square root: √s + ε"),
    (_rmsprop_eps_inside_sqrt, EPS_INSIDE.replace("v̂", "s")),
]


def _kwargs(kwargs):
    return ", ".join(f"{k}={v!r}" for k, v in kwargs.items())


def _trajectory(opt, follow_lr, start, gradients, lr_change_at, check=False):
    """Parameters after each step (a list of lists of arrays)."""
    if not hasattr(opt, "lr"):
        raise Failed("has no attribute .lr: keep the learning rate in self.lr (widgets and "
                     "schedules change it between steps)")
    params = [p.copy() for p in start]
    steps = []
    for t, grads in enumerate(gradients, 1):
        if t == lr_change_at and follow_lr:
            opt.lr = opt.lr / 2
        given = [g.copy() for g in grads]
        opt.step(params, given)
        if check and not all(np.array_equal(a, b) for a, b in zip(given, grads)):
            raise Failed(f"step {t} changed the gradient arrays: step only updates the parameters")
        steps.append([p.copy() for p in params])
    return steps


def _same_trajectory(ours, theirs):
    return all(_close(a, b) for step_a, step_b in zip(ours, theirs) for a, b in zip(step_a, step_b))


def _diagnose_trajectory(ours, expected, start, lr_change_at, nonfinite=None):
    """Name a known mistake whose whole trajectory matches ours, else explain the first bad step."""
    for key, trajectory in expected.items():
        if key != "reference" and _same_trajectory(ours, trajectory):
            if key == "ignores lr":
                raise Failed(f"ignores changes of .lr between steps (it was halved before step "
                             f"{lr_change_at}): read self.lr inside step; widgets and schedules "
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
    if t == 1 and nonfinite and not all(np.all(np.isfinite(m)) for m in moved):
        raise Failed(nonfinite)
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



MOMENTUM = Exercise(
    "momentum", ("MyMomentum",), check_optimizer, reference=Momentum, bases=(Optimizer,),
    mistakes=dict(mistakes=MOMENTUM_MISTAKES),
    trials=dict(shapes=OPTIMIZER_SHAPES, steps=STEPS, lr_change_at=LR_CHANGE_AT),
    hidden=dict(shapes=[(2, 4), (3,)], steps=7, lr_change_at=3),
    calls=(Call(kwargs=dict(lr=0.05, momentum=0.8)),
           Call(kwargs=dict(lr=0.05, momentum=0.8, nesterov=True))))
ADAM = Exercise(
    "adam", ("MyAdam",), check_optimizer, reference=Adam, bases=(Optimizer,),
    mistakes=dict(mistakes=ADAM_MISTAKES, nonfinite=ADAM_NONFINITE),
    trials=dict(shapes=OPTIMIZER_SHAPES, steps=STEPS, lr_change_at=LR_CHANGE_AT),
    hidden=dict(shapes=[(2, 4), (3,)], steps=7, lr_change_at=3),
    calls=(Call(kwargs=dict(lr=0.02, beta2=0.99)),))
COSINE_DECAY = Exercise(
    "cosine_decay", ("MyCosineDecay",), check_function, reference=CosineDecay, bases=(Schedule,),
    trials=dict(schedule_steps=SCHEDULE_STEPS),
    hidden=dict(schedule_steps=[*range(60), 120, 299, 300, 301, 450, 1000, 3000]),
    calls=(Call(args=(0.05, 300, 0.002)),))
EXERCISES = (MOMENTUM, ADAM, COSINE_DECAY)
