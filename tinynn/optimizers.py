"""Optimizers turn gradients into parameter updates.

``optimizer.step(params, grads)`` updates every array in ``params`` in place. ``optimizer.lr`` is a
plain attribute: a widget or your own loop may change it between steps. Passing a schedule
(``tinynn.schedules``) as ``lr`` lets the schedule set it before each step.

The update rules below follow the papers (and PyTorch's conventions), with g the gradient,
η the learning rate and t the step number starting at 1:
    SGD       θ ← θ − η g
    Momentum  v ← μ v + g;  θ ← θ − η v            (Nesterov: θ ← θ − η (g + μ v))
    RMSProp   s ← ρ s + (1 − ρ) g²;  θ ← θ − η g / (√s + ε)
    Adam      m ← β₁ m + (1 − β₁) g;  v ← β₂ v + (1 − β₂) g²;
              m̂ = m / (1 − β₁ᵗ);  v̂ = v / (1 − β₂ᵗ);  θ ← θ − η m̂ / (√v̂ + ε)
    AdamW     θ ← θ − η λ θ, then the Adam step with g itself (decoupled weight decay)
Weight decay λ in every other optimizer is L2 regularisation: it adds λθ to g first (the
gradient of (λ/2)‖θ‖²), so in Adam it is divided by √v̂ like the rest of the gradient. AdamW
(Loshchilov & Hutter, 2019) keeps the decay out of the gradient: every weight shrinks by the
same fraction ηλ per step, whatever its gradients. As in PyTorch's AdamW, the decay uses the
current learning rate and comes before the Adam step.
"""
import numpy as np

from .checks import check_number
from .errors import ConfigError
from .schedules import Schedule


class Optimizer:
    """Base class: subclasses implement ``update(param, grad)``, the rule for one parameter.

    State (velocities, moments) belongs to a parameter *array*, as in PyTorch: ``slots(param,
    n)`` hands out that array's own n state arrays, made at its first step. So the order of
    the list passed to ``step`` does not matter, and an optimizer given another net's
    parameters starts fresh momenta for them instead of reusing the wrong ones. The optimizer
    holds on to every array it has state for until ``reset()``.

    The state is looked up by ``id(param)``, and an id is only an address in this process: a
    copy of the model (``copy.deepcopy``, ``pickle``) has new arrays with new ids. So a copy
    carries the state as (parameter, state arrays) pairs (``__getstate__``), and the copied
    optimizer rebuilds its id index from them (``__setstate__``). A model copied whole (net and
    optimizer together) therefore takes exactly the step the original would take next; an
    optimizer copied on its own holds state only for its own copies of the arrays, so it starts
    fresh on the original net's parameters.

    A learning rate given as a number must be positive. A schedule's value may be 0 (a warm-up
    from 0, a cosine decay to 0): that step updates nothing. ``snapshot()`` and ``restore()``
    take the optimizer back to an earlier moment exactly (``lr_range_test`` uses them).

    ``weight_decay`` λ is L2 regularisation: ``step`` adds λθ to each gradient before
    ``update`` sees it. A subclass with ``decoupled_weight_decay = True`` (AdamW) gets the
    gradient unchanged and applies the decay itself."""

    decoupled_weight_decay = False

    def __init__(self, lr, weight_decay=0.0):
        self.schedule = lr if isinstance(lr, Schedule) else None
        if self.schedule:
            self._lr = self._scheduled_lr(0)
        else:
            self.lr = lr
        self.weight_decay = check_number(weight_decay, "weight_decay", type(self).__name__,
                                         "[0, inf)")
        self.reset()

    @property
    def lr(self):
        return self._lr

    @lr.setter
    def lr(self, value):
        self._lr = check_number(value, "learning rate", type(self).__name__, "(0, inf)",
                                hint="try 1e-3 for Adam or 0.1 for SGD")

    def _scheduled_lr(self, step):
        """The schedule's rate for ``step``: a number >= 0 (0 means no update that step)."""
        return check_number(self.schedule(step), f"the learning rate of its schedule at step "
                            f"{step}", type(self).__name__, "[0, inf)",
                            hint=f"a schedule ({type(self.schedule).__name__}) must give a "
                                 "finite rate >= 0 at every step")

    def reset(self):
        """Forget all state (momenta, running averages) and the step count."""
        self.t = 0
        self.state = {}    # id(param) -> that parameter's state arrays
        self._owners = {}  # id(param) -> param: kept alive, so no other array can take its id

    def slots(self, param, count):
        """``count`` zero arrays shaped like ``param``: its state, created at its first step
        and reused at every later one."""
        key = id(param)
        if self._owners.get(key) is not param:
            self._owners[key] = param
            self.state[key] = [np.zeros_like(param) for _ in range(count)]
        return self.state[key]

    def step(self, params, grads):
        if len(params) != len(grads):
            raise ConfigError(f"{type(self).__name__}: got {len(params)} parameters but "
                              f"{len(grads)} gradients")
        if self.schedule:
            self._lr = self._scheduled_lr(self.t)
        self.t += 1
        for param, grad in zip(params, grads):
            if self.weight_decay and not self.decoupled_weight_decay:
                grad = grad + self.weight_decay * param  # L2: the gradient of (λ/2)‖θ‖²
            self.update(param, grad)

    def update(self, param, grad):
        raise NotImplementedError

    def snapshot(self):
        """A copy of everything the next steps depend on — settings, learning rate, schedule,
        step count ``t`` and every parameter's state arrays — for ``restore``. The parameter
        arrays themselves are not copied: they belong to the net (``net.state_dict()``)."""
        return _with_copied_state(vars(self))

    def restore(self, snapshot):
        """Go back exactly to the moment of ``snapshot()`` (the snapshot stays usable)."""
        vars(self).clear()
        vars(self).update(_with_copied_state(snapshot))

    def __getstate__(self):
        """What ``copy.deepcopy`` and ``pickle`` copy: the attributes, with the state as
        (parameter, state arrays) pairs, since the ids it is keyed by do not survive a copy."""
        attributes = dict(vars(self))
        attributes["state"] = [(self._owners[key], slots) for key, slots in self.state.items()]
        del attributes["_owners"]
        return attributes

    def __setstate__(self, attributes):
        """The other half of ``__getstate__``: key each copied state by its copied array's id."""
        pairs = attributes.pop("state")
        vars(self).update(attributes)
        self.state = {id(param): slots for param, slots in pairs}
        self._owners = {id(param): param for param, _ in pairs}

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr:g})"


def _with_copied_state(attributes):
    """A copy of an optimizer's attributes in which the state arrays are copies too."""
    attributes = dict(attributes)
    attributes["state"] = {key: [array.copy() for array in slots]
                           for key, slots in attributes["state"].items()}
    attributes["_owners"] = dict(attributes["_owners"])
    return attributes


class SGD(Optimizer):
    """Plain gradient descent: a step of size lr down the gradient."""

    def __init__(self, lr=0.01, weight_decay=0.0):
        super().__init__(lr, weight_decay)

    def update(self, param, grad):
        param -= self.lr * grad


class Momentum(Optimizer):
    """SGD with a velocity that accumulates past gradients: it speeds up along consistent
    directions and damps oscillation across a ravine. Nesterov looks ahead along the velocity."""

    def __init__(self, lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = check_number(momentum, "momentum", "Momentum", "[0, 1)")
        self.nesterov = nesterov

    def update(self, param, grad):
        (velocity,) = self.slots(param, 1)
        velocity *= self.momentum                  # v ← μv + g
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
        self.rho = check_number(rho, "rho", "RMSProp", "[0, 1)")
        self.eps = eps

    def update(self, param, grad):
        (mean_square,) = self.slots(param, 1)
        mean_square *= self.rho                    # s ← ρs + (1 − ρ)g²
        mean_square += (1.0 - self.rho) * grad * grad
        param -= self.lr * grad / (np.sqrt(mean_square) + self.eps)


class Adam(Optimizer):
    """Momentum (first moment m) and RMSProp (second moment v) together, with bias correction
    because both averages start at zero."""

    fast = True  # False runs the textbook update below (same result to float rounding)

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.beta1 = check_number(beta1, "beta1", "Adam", "[0, 1)")
        self.beta2 = check_number(beta2, "beta2", "Adam", "[0, 1)")
        self.eps = eps
        self._work = {}

    def update(self, param, grad):
        if self.fast:
            return self._fast_update(param, grad)
        m, v = self.slots(param, 2)
        m[...] = self.beta1 * m + (1 - self.beta1) * grad           # m ← β₁m + (1 − β₁)g
        v[...] = self.beta2 * v + (1 - self.beta2) * grad * grad    # v ← β₂v + (1 − β₂)g²
        m_hat = m / (1 - self.beta1 ** self.t)                      # bias corrections
        v_hat = v / (1 - self.beta2 ** self.t)
        param -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)     # θ ← θ − η m̂ / (√v̂ + ε)

    def _fast_update(self, param, grad):
        """The same rule with every operation writing into two reused work arrays (out= and
        in-place ufuncs), so a step allocates nothing; the textbook version makes about ten
        parameter-sized temporaries (what that costs an epoch: benchmarks/RESULTS.md, fast paths).
        m += (1 − β₁)(g − m) is β₁m + (1 − β₁)g rearranged."""
        m, v = self.slots(param, 2)
        work, step = self._work_arrays(param)
        np.subtract(grad, m, out=work)                 # m += (1 − β₁)(g − m)
        work *= 1.0 - self.beta1
        m += work
        np.multiply(grad, grad, out=work)              # v += (1 − β₂)(g² − v)
        work -= v
        work *= 1.0 - self.beta2
        v += work
        np.multiply(v, 1.0 / (1.0 - self.beta2 ** self.t), out=work)  # denom = √v̂ + ε
        np.sqrt(work, out=work)
        work += self.eps
        np.multiply(m, self.lr / (1.0 - self.beta1 ** self.t), out=step)  # θ −= η·m̂ / denom
        step /= work
        param -= step

    def _work_arrays(self, param):
        """Two scratch arrays shaped like ``param``, kept between steps (not optimizer state)."""
        key = (param.shape, param.dtype)
        if key not in self._work:
            self._work[key] = (np.empty_like(param), np.empty_like(param))
        return self._work[key]


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019; PyTorch's AdamW):
    θ ← θ − η·(m̂ / (√v̂ + ε) + λθ).

    The decay ηλθ is applied to the parameter directly, before the Adam step, and is *not*
    added to the gradient: so it does not enter m and v and is not divided by √v̂. With
    ``Adam(weight_decay=λ)`` (L2) a weight with large gradients is hardly decayed at all; with
    AdamW every weight shrinks by the same fraction ηλ per step. Both paths of Adam (``fast``
    True or False) run the same decay. The default λ = 0.01 is PyTorch's, and so is the order:
    PyTorch's docs write the step as θ ← θ − γλθ, then the Adam update with the same g.
    (The paper's decay is η_t·λ·θ with η_t the schedule's multiplier rather than the learning
    rate, so its λ is PyTorch's times the base learning rate.)"""

    decoupled_weight_decay = True

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps, weight_decay)

    def update(self, param, grad):
        if self.weight_decay:
            param *= 1.0 - self.lr * self.weight_decay   # θ ← θ − ηλθ, in place (decoupled)
        super().update(param, grad)                  # the Adam step with g as it is

    def __repr__(self):
        return f"AdamW(lr={self.lr:g}, weight_decay={self.weight_decay:g})"


OPTIMIZERS = {cls.__name__.lower(): cls for cls in (SGD, Momentum, RMSProp, Adam, AdamW)}


def get(name, **kwargs):
    """An optimizer from its name: ``get("adam", lr=1e-3)``."""
    if not isinstance(name, str) or name.lower() not in OPTIMIZERS:
        raise ConfigError(f"unknown optimizer {name!r}; expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name.lower()](**kwargs)
