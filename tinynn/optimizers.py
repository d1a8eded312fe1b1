"""Optimizers turn gradients into parameter updates, and schedules change the learning rate.

``optimizer.step(params, grads)`` updates every array in ``params`` in place. ``optimizer.lr`` is a
plain attribute: a widget or your own loop may change it between steps. Passing a schedule as
``lr`` (``Adam(lr=CosineDecay(1e-3, total_steps=2000))``) lets the schedule set it before each step.

The update rules below follow the papers (and PyTorch's conventions), with g the gradient,
η the learning rate and t the step number starting at 1:
    SGD       θ ← θ − η g
    Momentum  v ← μ v + g;  θ ← θ − η v            (Nesterov: θ ← θ − η (g + μ v))
    RMSProp   s ← ρ s + (1 − ρ) g²;  θ ← θ − η g / (√s + ε)
    Adam      m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;
              m̂ = m / (1 − β₁ᵗ);  v̂ = v / (1 − β₂ᵗ);  θ ← θ − η m̂ / (√v̂ + ε)
Weight decay λ (L2 regularisation) adds λθ to g first.
"""
import math

import numpy as np

from .errors import ConfigError


def _check_range(value, what, owner, low, high):
    """Raise ConfigError unless low <= value < high (a number, not NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not low <= value < high:
        raise ConfigError(f"{owner}: {what} must be in [{low:g}, {high:g}), got {value!r}")


# ---------------------------------------------------------------- learning-rate schedules
class Schedule:
    """A learning rate as a function of the step number (0, 1, 2, ...)."""

    def __call__(self, step):
        raise NotImplementedError


class StepDecay(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` steps."""

    def __init__(self, lr, step_size, gamma=0.1):
        _check_range(step_size, "step_size", "StepDecay", 1, math.inf)
        self.lr, self.step_size, self.gamma = lr, step_size, gamma

    def __call__(self, step):
        return self.lr * self.gamma ** (step // self.step_size)


class ExponentialDecay(Schedule):
    """lr · gammaˢᵗᵉᵖ: a smooth version of step decay."""

    def __init__(self, lr, gamma):
        self.lr, self.gamma = lr, gamma

    def __call__(self, step):
        return self.lr * self.gamma ** step


class CosineDecay(Schedule):
    """Half a cosine from ``lr`` down to ``min_lr`` over ``total_steps``, then flat."""

    def __init__(self, lr, total_steps, min_lr=0.0):
        _check_range(total_steps, "total_steps", "CosineDecay", 1, math.inf)
        self.lr, self.total_steps, self.min_lr = lr, total_steps, min_lr

    def __call__(self, step):
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + math.cos(math.pi * progress))


class WarmUp(Schedule):
    """Ramp linearly up to ``after`` (a rate or a schedule) over ``warmup_steps``, then follow it.
    Large early steps on a freshly initialised net can blow it up; a warm-up avoids them."""

    def __init__(self, after, warmup_steps):
        self.after, self.warmup_steps = after, warmup_steps

    def _after(self, step):
        return self.after(step) if isinstance(self.after, Schedule) else self.after

    def __call__(self, step):
        if step < self.warmup_steps:
            return self._after(0) * (step + 1) / self.warmup_steps
        return self._after(step - self.warmup_steps)


# ---------------------------------------------------------------- optimizers
class Optimizer:
    """Base class: subclasses implement ``update(i, param, grad)`` for parameter number i."""

    def __init__(self, lr, weight_decay=0.0):
        self.schedule = lr if isinstance(lr, Schedule) else None
        self.lr = lr(0) if self.schedule else lr
        if not weight_decay >= 0:
            raise ConfigError(f"{type(self).__name__}: weight_decay must be >= 0, got {weight_decay!r}")
        self.weight_decay = weight_decay
        self.reset()

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{type(self).__name__}: learning rate must be a positive number, "
                              f"got {value!r}; try 1e-3 for Adam or 0.1 for SGD")
        self._lr = float(value)

    def reset(self):
        """Forget all state (momenta, running averages) and the step count."""
        self.t = 0
        self.state = {}

    def slots(self, i, param, count):
        """``count`` zero arrays shaped like ``param``, created once and reused at every step."""
        if i not in self.state:
            self.state[i] = [np.zeros_like(param) for _ in range(count)]
        return self.state[i]

    def step(self, params, grads):
        if len(params) != len(grads):
            raise ConfigError(f"{type(self).__name__}: got {len(params)} parameters but "
                              f"{len(grads)} gradients")
        if self.schedule:
            scheduled = self.schedule(self.t)
            if scheduled == 0:  # a schedule may decay to exactly 0 (cosine to min_lr=0): no update
                self._lr = 0.0
            else:
                self.lr = scheduled
        self.t += 1
        for i, (param, grad) in enumerate(zip(params, grads)):
            if self.weight_decay:
                grad = grad + self.weight_decay * param
            self.update(i, param, grad)

    def update(self, i, param, grad):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr:g})"


class SGD(Optimizer):
    """Plain gradient descent: a step of size lr down the gradient."""

    def __init__(self, lr=0.01, weight_decay=0.0):
        super().__init__(lr, weight_decay)

    def update(self, i, param, grad):
        param -= self.lr * grad


class Momentum(Optimizer):
    """SGD with a velocity that accumulates past gradients: it speeds up along consistent
    directions and damps oscillation across a ravine. Nesterov looks ahead along the velocity."""

    def __init__(self, lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        _check_range(momentum, "momentum", "Momentum", 0, 1)
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, i, param, grad):
        (velocity,) = self.slots(i, param, 1)
        velocity *= self.momentum
        velocity += grad
        if self.nesterov:
            param -= self.lr * (grad + self.momentum * velocity)
        else:
            param -= self.lr * velocity


class RMSProp(Optimizer):
    """Divide each coordinate's step by a running RMS of its gradients: big, noisy gradients
    get small steps, small consistent ones get bigger steps."""

    def __init__(self, lr=1e-3, rho=0.9, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        _check_range(rho, "rho", "RMSProp", 0, 1)
        self.rho, self.eps = rho, eps

    def update(self, i, param, grad):
        (mean_square,) = self.slots(i, param, 1)
        mean_square *= self.rho
        mean_square += (1.0 - self.rho) * grad * grad
        param -= self.lr * grad / (np.sqrt(mean_square) + self.eps)


class Adam(Optimizer):
    """Momentum (first moment m) and RMSProp (second moment v) together, with bias correction
    because both averages start at zero."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        _check_range(beta1, "beta1", "Adam", 0, 1)
        _check_range(beta2, "beta2", "Adam", 0, 1)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self._work = {}

    def update(self, i, param, grad):
        m, v = self.slots(i, param, 2)
        # Speed: every operation writes into a reused work array (out= and in-place ufuncs),
        # so a step allocates nothing; the arithmetic is exactly that of the comments.
        work, step = self._work_arrays(param)
        np.subtract(grad, m, out=work)                 # m += (1 − β₁)(g − m)  (= β₁m + (1 − β₁)g)
        work *= 1.0 - self.beta1
        m += work
        np.multiply(grad, grad, out=work)              # v += (1 − β₂)(g² − v)  (= β₂v + (1 − β₂)g²)
        work -= v
        work *= 1.0 - self.beta2
        v += work
        m_hat_scale = 1.0 / (1.0 - self.beta1 ** self.t)
        v_hat_scale = 1.0 / (1.0 - self.beta2 ** self.t)
        np.multiply(v, v_hat_scale, out=work)          # denom = √v̂ + ε
        np.sqrt(work, out=work)
        work += self.eps
        np.multiply(m, self.lr * m_hat_scale, out=step)  # θ −= η·m̂ / denom
        step /= work
        param -= step

    def _work_arrays(self, param):
        """Two scratch arrays shaped like ``param``, kept between steps (not optimizer state)."""
        key = (param.shape, param.dtype)
        if key not in self._work:
            self._work[key] = (np.empty_like(param), np.empty_like(param))
        return self._work[key]


OPTIMIZERS = {cls.__name__.lower(): cls for cls in (SGD, Momentum, RMSProp, Adam)}


def get(name, **kwargs):
    """An optimizer from its name: ``get("adam", lr=1e-3)``."""
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name.lower()](**kwargs)
