"""Learning-rate schedules: the rate as a function of the step number (0, 1, 2, ...).

Pass one as an optimizer's ``lr`` (``Adam(lr=CosineDecay(1e-3, total_steps=2000))``) and the
optimizer sets ``lr = schedule(t)`` before each step. A schedule's value may be 0 (a warm-up
from 0, a decay to 0): that step changes nothing. A negative or NaN value is refused, with the
step it came at. The rate a schedule starts from (``lr``) must be positive: a schedule that is
0 from the start would never train.
"""
import math

from .checks import check_int, check_number


class Schedule:
    """A learning rate as a function of the step number (0, 1, 2, ...)."""

    def __call__(self, step):
        raise NotImplementedError


def _base_rate(lr, owner):
    return check_number(lr, "learning rate", owner, "(0, inf)",
                        hint="the rate the schedule starts from, e.g. 1e-3 for Adam")


class StepDecay(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` steps."""

    def __init__(self, lr, step_size, gamma=0.1):
        self.lr, self.gamma = _base_rate(lr, "StepDecay"), gamma
        self.step_size = check_int(step_size, "step_size", "StepDecay")

    def __call__(self, step):
        return self.lr * self.gamma ** (step // self.step_size)


class ExponentialDecay(Schedule):
    """lr · gammaˢᵗᵉᵖ: a smooth version of step decay."""

    def __init__(self, lr, gamma):
        self.lr, self.gamma = _base_rate(lr, "ExponentialDecay"), gamma

    def __call__(self, step):
        return self.lr * self.gamma ** step


class CosineDecay(Schedule):
    """Half a cosine from ``lr`` down to ``min_lr`` over ``total_steps``, then flat."""

    def __init__(self, lr, total_steps, min_lr=0.0):
        self.lr = _base_rate(lr, "CosineDecay")
        self.min_lr = check_number(min_lr, "min_lr", "CosineDecay", "[0, inf)")
        self.total_steps = check_int(total_steps, "total_steps", "CosineDecay")

    def __call__(self, step):
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


class WarmUp(Schedule):
    """Ramp linearly up to ``after`` (a rate or a schedule) over ``warmup_steps``, then follow it.
    Large early steps on a freshly initialised net can blow it up; a warm-up avoids them."""

    def __init__(self, after, warmup_steps):
        self.after = after if isinstance(after, Schedule) else _base_rate(after, "WarmUp")
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", "WarmUp")

    def _after(self, step):
        return self.after(step) if isinstance(self.after, Schedule) else self.after

    def __call__(self, step):
        if step < self.warmup_steps:
            return self._after(0) * (step + 1) / self.warmup_steps
        return self._after(step - self.warmup_steps)
