"""Tests for tinynn.course.exercises: every planted mistake is named, correct code passes, nothing raises.

Each table row is (buggy implementation, a keyword the printed diagnosis must contain). The
implementations are what students really write; the keyword is the part of the message that
names the mistake.
"""
import numpy as np
import pytest

import tinynn as tn
from tinynn.course.exercises import (check_function, check_layer, check_loss, check_model_step,
                                     check_optimizer)
from tinynn.course.exercises.n04_optimizers import RMSPROP_MISTAKES

NOT_DONE = "not yet implemented"


def verdict(capsys, check, *args, **kwargs):
    """Run a check; return (its result, what it printed). Stderr must stay empty (no warnings)."""
    result = check(*args, **kwargs)
    out, err = capsys.readouterr()
    assert err == ""
    return result, out


# ================================================================ layers
class MyDense(tn.Layer):
    """A correct Dense written from scratch, the way the notebook's exercise asks for it."""

    def __init__(self, units):
        super().__init__()
        self.units = units

    def forward(self, x, training=True):
        if "w" not in self.params:
            self.params["w"] = np.ones((x.shape[1], self.units), dtype=x.dtype)
            self.params["b"] = np.zeros(self.units, dtype=x.dtype)
            self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.x = x
        return x @ self.params["w"] + self.params["b"]

    def backward(self, grad):
        self.grads["w"] = self.x.T @ grad
        self.grads["b"] = grad.sum(axis=0)
        return grad @ self.params["w"].T


def dense_backward(w_grad, b_grad, x_grad=lambda layer, g: g @ layer.params["w"].T):
    """A MyDense whose backward uses the given formulas."""
    def backward(self, grad):
        self.grads["w"] = w_grad(self, grad)
        self.grads["b"] = b_grad(self, grad)
        return x_grad(self, grad)
    return type("BuggyDense", (MyDense,), {"backward": backward})


def dense_forward(forward):
    return type("BuggyDense", (MyDense,), {"forward": forward})


def _forward_mutating_w(self, x, training=True):
    y = MyDense.forward(self, x)
    self.params["w"] *= 0.99
    return y


def _forward_caching_once(self, x, training=True):
    y = MyDense.forward(self, x)
    self.x = getattr(self, "first_x", x)
    self.first_x = self.x
    return y


def _forward_without_cache(self, x, training=True):
    y = MyDense.forward(self, x)
    del self.x
    return y


def _backward_updating_w(self, grad):
    result = MyDense.backward(self, grad)
    self.params["w"] -= 0.1 * self.grads["w"]
    return result


def _not_implemented(self, *args, **kwargs):
    # YOUR CODE HERE
    raise NotImplementedError()


class RenamedParams(MyDense):
    def forward(self, x, training=True):
        if "W" not in self.params:
            self.params = {"W": np.ones((x.shape[1], self.units)), "b": np.zeros(self.units)}
        return x @ self.params["W"] + self.params["b"]


class WrongConstructor(MyDense):
    def __init__(self, in_features, units):
        super().__init__(units)


DENSE_BUGS = [
    (dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g), "keeps the batch axis"),
    (dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g.mean(axis=0)), "SUM parameter gradients"),
    (dense_backward(lambda s, g: s.x.T @ g / len(g), lambda s, g: g.sum(0)), "SUM parameter gradients"),
    (dense_backward(lambda s, g: g.T @ s.x, lambda s, g: g.sum(0)), "transposed"),
    (dense_backward(lambda s, g: -(s.x.T @ g), lambda s, g: g.sum(0)), "wrong sign"),
    (dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g.sum(0),
                    lambda s, g: -g @ s.params["w"].T), "wrong sign"),
    (dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g.sum(0), lambda s, g: g @ s.params["w"]),
     "shapes do not line up"),
    (dense_forward(_forward_mutating_w), "forward changed params['w']"),
    (dense_forward(_forward_caching_once), "EARLIER forward"),
    (dense_forward(_forward_without_cache), "cached input was not stored"),
    (dense_forward(lambda self, x, training=True: MyDense.forward(self, x).T), "wrong shape"),
    (dense_forward(lambda self, x, training=True: MyDense.forward(self, x) - self.params["b"]),
     "forward output"),
    (type("UpdatesInBackward", (MyDense,), {"backward": _backward_updating_w}),
     "backward changed params['w']"),
    (RenamedParams, "use the same names"),
    (WrongConstructor, "could not construct"),
    (dense_forward(_not_implemented), NOT_DONE),
    (type("NoBackward", (MyDense,), {"backward": _not_implemented}), NOT_DONE),
    (dense_forward(lambda self, x, training=True: None), NOT_DONE),
    (type("BackwardReturnsNothing", (MyDense,), {"backward": lambda self, g: None}), NOT_DONE),
    (type("Empty", (tn.Layer,), {"__init__": lambda self, units: tn.Layer.__init__(self)}), NOT_DONE),
]


@pytest.mark.parametrize("buggy, keyword", DENSE_BUGS)
def test_dense_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_layer, buggy, tn.Dense)
    assert result is False
    assert keyword in out
    assert not out.startswith("✔")


def test_bias_gradient_mean_shows_first_mismatching_numbers(capsys):
    buggy = dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g.mean(axis=0))
    _, out = verdict(capsys, check_layer, buggy, tn.Dense)
    assert out.startswith("✘ BuggyDense: grads['b'] is 1/4 of the expected (batch size 4)")
    assert "first mismatch at index (0,): yours " in out and "expected" in out


class MyReLU(tn.Layer):
    def forward(self, x, training=True):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, grad):
        return grad * (self.x > 0)


class ReLUWrongMask(MyReLU):
    def backward(self, grad):
        return grad * (self.x < 0)


class ReLUInPlace(tn.Layer):
    def forward(self, x, training=True):
        self.mask = x > 0
        x[~self.mask] = 0
        return x

    def backward(self, grad):
        return grad * self.mask


class LeakyForgetsAlpha(tn.LeakyReLU):
    def backward(self, grad):
        (positive,) = self.saved_tensors
        return grad * positive


class TanhSign(tn.Tanh):
    def backward(self, grad):
        (y,) = self.saved_tensors
        return grad * (y * y - 1.0)


class SigmoidWrongDerivative(tn.Sigmoid):
    def backward(self, grad):
        (y,) = self.saved_tensors
        return grad * y


class ReLUMissingSuper(tn.Layer):
    def __init__(self):
        pass  # forgot super().__init__()

    def forward(self, x, training=True):
        self.x = x
        return np.maximum(x, 0)

    def backward(self, grad):
        return grad * (self.x > 0)


ACTIVATION_BUGS = [
    (ReLUWrongMask, tn.ReLU, "mask"),
    (ReLUInPlace, tn.ReLU, "changed its input x in place"),
    (LeakyForgetsAlpha, tn.LeakyReLU, "mask"),
    (TanhSign, tn.Tanh, "wrong sign"),
    (SigmoidWrongDerivative, tn.Sigmoid, "input gradient"),
    (ReLUMissingSuper, tn.ReLU, "super().__init__()"),
    (type("ReLUTodo", (tn.Layer,), {"forward": _not_implemented}), tn.ReLU, NOT_DONE),
]


@pytest.mark.parametrize("buggy, reference, keyword", ACTIVATION_BUGS)
def test_activation_mistakes_are_named(capsys, buggy, reference, keyword):
    result, out = verdict(capsys, check_layer, buggy, reference)
    assert result is False
    assert keyword in out


CORRECT_LAYERS = [
    (MyDense, tn.Dense), (type("Sub", (tn.Dense,), {}), tn.Dense), (tn.Dense, tn.Dense),
    (MyDense(3), tn.Dense), (tn.Dense(4, in_features=7), tn.Dense),  # instances, one prebuilt float32
    (MyReLU, tn.ReLU), (MyReLU(), tn.ReLU), (tn.LeakyReLU, tn.LeakyReLU), (tn.Sigmoid, tn.Sigmoid),
    (tn.Tanh, tn.Tanh), (tn.GELU, tn.GELU), (tn.Softplus, tn.Softplus), (tn.Flatten, tn.Flatten),
    (tn.Dropout, tn.Dropout),
]


@pytest.mark.parametrize("candidate, reference", CORRECT_LAYERS)
def test_correct_layers_pass(capsys, candidate, reference):
    result, out = verdict(capsys, check_layer, candidate, reference)
    assert result is True, out
    assert out.startswith("✔ ") and "passed: forward matches, gradients match (max rel. err " in out


def test_check_leaves_an_instance_and_the_random_generator_alone(capsys):
    layer = MyDense(3)
    tn.seed(7)
    expected = tn.random.rng().random()
    tn.seed(7)
    assert check_layer(layer, tn.Dense)
    assert tn.random.rng().random() == expected
    assert layer.params == {}  # the check worked on a copy


# ================================================================ losses
def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class MySoftmaxCE(tn.Loss):
    def forward(self, pred, target):
        n = len(pred)
        shifted = pred - pred.max(axis=1, keepdims=True)
        log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        grad = np.exp(log_p)
        grad[np.arange(n), target] -= 1
        return float(-np.mean(log_p[np.arange(n), target])), grad / n


class NoMaxShift(MySoftmaxCE):
    def forward(self, pred, target):
        n = len(pred)
        e = np.exp(pred)
        p = e / e.sum(axis=1, keepdims=True)
        grad = p.copy()
        grad[np.arange(n), target] -= 1
        return float(-np.mean(np.log(p[np.arange(n), target]))), grad / n


class LogOfSoftmax(MySoftmaxCE):
    """Max-shifted, but log(p) is -inf once p underflows to 0."""

    def forward(self, pred, target):
        n = len(pred)
        p = _softmax(pred)
        grad = p.copy()
        grad[np.arange(n), target] -= 1
        return float(-np.mean(np.log(p[np.arange(n), target]))), grad / n


def ce_variant(transform):
    def forward(self, pred, target):
        return transform(*MySoftmaxCE.forward(self, pred, target), len(pred))
    return type("BuggyCE", (MySoftmaxCE,), {"forward": forward})


class MyMSE(tn.Loss):
    def forward(self, pred, target):
        diff = pred - target
        return float(np.mean(diff ** 2)), 2 * diff / diff.size


def mse_variant(transform):
    def forward(self, pred, target):
        return transform(pred, target, pred - target)
    return type("BuggyMSE", (MyMSE,), {"forward": forward})


LOSS_BUGS = [
    (NoMaxShift, tn.SoftmaxCrossEntropy, "subtract each row's maximum"),
    (LogOfSoftmax, tn.SoftmaxCrossEntropy, "compute the log-probability directly"),
    (ce_variant(lambda v, g, n: (v, g * n)), tn.SoftmaxCrossEntropy, "carries a factor 1/4"),
    (ce_variant(lambda v, g, n: (v * n, g)), tn.SoftmaxCrossEntropy, "it is a sum"),
    (ce_variant(lambda v, g, n: (v, -g)), tn.SoftmaxCrossEntropy, "wrong sign"),
    (ce_variant(lambda v, g, n: v), tn.SoftmaxCrossEntropy, "returns a pair"),
    (ce_variant(lambda v, g, n: (np.full(n, v), g)), tn.SoftmaxCrossEntropy, "return one number"),
    (ce_variant(lambda v, g, n: (v, None)), tn.SoftmaxCrossEntropy, NOT_DONE),
    (type("CETodo", (tn.Loss,), {"forward": _not_implemented}), tn.SoftmaxCrossEntropy, NOT_DONE),
    (mse_variant(lambda p, t, d: (float(np.mean(d ** 2)), d / d.size)), tn.MSE, "half the expected"),
    (mse_variant(lambda p, t, d: (float(np.mean(np.sum(d ** 2, axis=1))), 2 * d / d.size)), tn.MSE,
     "per-sample sums"),
    (mse_variant(lambda p, t, d: (float(np.mean(d ** 2)), 2 * d / len(d))), tn.MSE,
     "divide by pred.size"),
]


@pytest.mark.parametrize("buggy, reference, keyword", LOSS_BUGS)
def test_loss_mistakes_are_named(capsys, buggy, reference, keyword):
    result, out = verdict(capsys, check_loss, buggy, reference)
    assert result is False
    assert keyword in out


def my_softmax_ce_function(pred, target):
    return MySoftmaxCE()(pred, target)


@pytest.mark.parametrize("candidate, reference", [
    (MySoftmaxCE, tn.SoftmaxCrossEntropy), (MySoftmaxCE(), tn.SoftmaxCrossEntropy),
    (my_softmax_ce_function, tn.SoftmaxCrossEntropy), (MyMSE, tn.MSE),
    (tn.SigmoidCrossEntropy, tn.SigmoidCrossEntropy),
])
def test_correct_losses_pass(capsys, candidate, reference):
    result, out = verdict(capsys, check_loss, candidate, reference)
    assert result is True, out
    assert out.startswith("✔ ") and "value matches, gradient matches" in out


# ================================================================ optimizers
class MySGD:
    """Not derived from tn.Optimizer: only the contract matters."""

    def __init__(self, lr):
        self.lr = lr

    def step(self, params, grads):
        for p, g in zip(params, grads):
            p -= self.lr * g


class MomentumUphill(tn.Momentum):
    def update(self, param, grad):
        (v,) = self.slots(param, 1)
        v *= self.momentum
        v += grad
        param += self.lr * v


class MomentumAveraged(tn.Momentum):
    def update(self, param, grad):
        (v,) = self.slots(param, 1)
        v[...] = self.momentum * v + (1 - self.momentum) * grad
        param -= self.lr * v


class MomentumForgets(tn.Momentum):
    def update(self, param, grad):
        v = np.zeros_like(param)
        v = self.momentum * v + grad
        param -= self.lr * v


class AdamNoBiasCorrection(tn.Adam):
    def update(self, param, grad):
        m, v = self.slots(param, 2)
        m[...] = self.beta1 * m + (1 - self.beta1) * grad
        v[...] = self.beta2 * v + (1 - self.beta2) * grad ** 2
        param -= self.lr * m / (np.sqrt(v) + self.eps)


class MomentumRebindsVelocity(tn.Momentum):
    def update(self, param, grad):
        (velocity,) = self.slots(param, 1)
        velocity = self.momentum * velocity + grad  # the bug: a new array, the slot stays 0
        if self.nesterov:
            param -= self.lr * (grad + self.momentum * velocity)
        else:
            param -= self.lr * velocity


class MomentumRebindsParam(tn.Momentum):
    def update(self, param, grad):
        (velocity,) = self.slots(param, 1)
        velocity *= self.momentum
        velocity += grad
        param = param - self.lr * velocity  # noqa: F841 (the bug)


def adam_update(t_of=lambda self: self.t, correct_m=True, correct_v=True, eps_inside=False,
                rebind=False, count_itself=False):
    """An Adam written from scratch with one of the classic mistakes switched on."""
    def update(self, param, grad):
        if count_itself:
            self.t += 1
        m, v = self.slots(param, 2)
        if rebind:
            m = self.beta1 * m + (1 - self.beta1) * grad
            v = self.beta2 * v + (1 - self.beta2) * grad ** 2
        else:
            m *= self.beta1
            m += (1 - self.beta1) * grad
            v *= self.beta2
            v += (1 - self.beta2) * grad ** 2
        t = t_of(self)
        m_hat = m / (1 - self.beta1 ** t) if correct_m else m
        v_hat = v / (1 - self.beta2 ** t) if correct_v else v
        denominator = np.sqrt(v_hat + self.eps) if eps_inside else np.sqrt(v_hat) + self.eps
        param -= self.lr * m_hat / denominator
    return type("BuggyAdam", (tn.Optimizer,), {
        "__init__": lambda self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8: (
            tn.Optimizer.__init__(self, lr), setattr(self, "beta1", beta1),
            setattr(self, "beta2", beta2), setattr(self, "eps", eps)) and None,
        "update": update})


class AdamOwnCounterFromZero(tn.Adam):
    def update(self, param, grad):
        m, v = self.slots(param, 2)
        count = getattr(self, "count", 0)
        m *= self.beta1
        m += (1 - self.beta1) * grad
        v *= self.beta2
        v += (1 - self.beta2) * grad ** 2
        param -= self.lr * (m / (1 - self.beta1 ** count)) / (
            np.sqrt(v / (1 - self.beta2 ** count)) + self.eps)
        self.count = count + 1


class RMSPropEpsInside(tn.RMSProp):
    def update(self, param, grad):
        (s,) = self.slots(param, 1)
        s[...] = self.rho * s + (1 - self.rho) * grad ** 2
        param -= self.lr * grad / np.sqrt(s + self.eps)


class RMSPropNoSqrt(tn.RMSProp):
    def update(self, param, grad):
        (s,) = self.slots(param, 1)
        s[...] = self.rho * s + (1 - self.rho) * grad ** 2
        param -= self.lr * grad / (s + self.eps)


class SGDRebinds(MySGD):
    def step(self, params, grads):
        for p, g in zip(params, grads):
            p = p - self.lr * g  # noqa: F841 (the bug)


class SGDCopiesLr(MySGD):
    def __init__(self, lr):
        self.rate = lr
        self.lr = lr

    def step(self, params, grads):
        for p, g in zip(params, grads):
            p -= self.rate * g


class SGDScalesGrads(MySGD):
    def step(self, params, grads):
        for p, g in zip(params, grads):
            g *= self.lr
            p -= g


OPTIMIZER_BUGS = [
    (MomentumUphill, tn.Momentum, dict(lr=0.1, momentum=0.9), "wrong sign"),
    (MomentumAveraged, tn.Momentum, dict(lr=0.1, momentum=0.9), "averages the gradient"),
    (MomentumForgets, tn.Momentum, dict(lr=0.1, momentum=0.9), "keep the state"),
    (AdamNoBiasCorrection, tn.Adam, dict(lr=0.01), "WITHOUT bias correction"),
    (MomentumRebindsVelocity, tn.Momentum, dict(lr=0.1, momentum=0.9), "makes a new array"),
    (MomentumRebindsVelocity, tn.Momentum, dict(lr=0.1, momentum=0.9, nesterov=True),
     "does not carry over between steps"),
    (MomentumRebindsParam, tn.Momentum, dict(lr=0.1, momentum=0.9), "only rebinds a name"),
    (adam_update(correct_m=False, correct_v=False), tn.Adam, dict(lr=0.01),
     "WITHOUT bias correction"),
    (adam_update(correct_v=False), tn.Adam, dict(lr=0.01), "bias-correct m but not v"),
    (adam_update(correct_m=False), tn.Adam, dict(lr=0.01), "bias-correct v but not m"),
    (adam_update(t_of=lambda self: self.t - 1), tn.Adam, dict(lr=0.01), "1 − β⁰ = 0"),
    (AdamOwnCounterFromZero, tn.Adam, dict(lr=0.01), "counts steps from 1"),
    (adam_update(t_of=lambda self: self.t + 1), tn.Adam, dict(lr=0.01), "uses t + 1"),
    (adam_update(count_itself=True), tn.Adam, dict(lr=0.01), "advance self.t inside update"),
    (adam_update(rebind=True), tn.Adam, dict(lr=0.01), "m and v do not carry over"),
    (adam_update(eps_inside=True), tn.Adam, dict(lr=0.01), "ε inside the square root"),
    # RMSProp has no graded exercise, so no spec gives check_optimizer its catalogue: passed here
    (RMSPropEpsInside, tn.RMSProp, dict(lr=0.01, mistakes=RMSPROP_MISTAKES),
     "ε inside the square root"),
    (RMSPropNoSqrt, tn.RMSProp, dict(lr=0.01, mistakes=RMSPROP_MISTAKES), "square root"),
    (SGDRebinds, tn.SGD, dict(lr=0.1), "did not change the parameters"),
    (SGDCopiesLr, tn.SGD, dict(lr=0.1), "ignores changes of .lr"),
    (SGDScalesGrads, tn.SGD, dict(lr=0.1), "changed the gradient arrays"),
    (type("MomentumTodo", (tn.Optimizer,), {"update": _not_implemented}), tn.Momentum,
     dict(lr=0.1), NOT_DONE),
]


@pytest.mark.parametrize("buggy, reference, kwargs, keyword", OPTIMIZER_BUGS)
def test_optimizer_mistakes_are_named(capsys, buggy, reference, kwargs, keyword):
    result, out = verdict(capsys, check_optimizer, buggy, reference, **kwargs)
    assert result is False
    assert keyword in out


@pytest.mark.parametrize("candidate, reference, kwargs", [
    (MySGD, tn.SGD, dict(lr=0.1)), (MySGD(0.1), tn.SGD, dict(lr=0.1)),
    (tn.Momentum, tn.Momentum, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (tn.RMSProp, tn.RMSProp, dict(lr=0.01)), (tn.Adam, tn.Adam, dict(lr=0.01, weight_decay=0.1)),
])
def test_correct_optimizers_pass(capsys, candidate, reference, kwargs):
    result, out = verdict(capsys, check_optimizer, candidate, reference, **kwargs)
    assert result is True, out
    assert out.startswith("✔ ") and "6 steps on 2 parameters match" in out


def test_a_correct_adam_written_from_scratch_passes(capsys):
    """The planted-bug Adam with no bug switched on: the table above tests mistakes, not style."""
    result, out = verdict(capsys, check_optimizer, adam_update(), tn.Adam, lr=0.01)
    assert result is True, out
    assert "with ordinary and with tiny gradients" in out


def test_eps_inside_the_sqrt_is_invisible_with_ordinary_gradients():
    """Why check_optimizer has a second trial: on gradients of size ~1, ε's place changes an
    Adam step by less than the check's tolerance."""
    from tinynn.course.exercises.compare import _close
    rng = np.random.default_rng(0)
    start, grads = rng.standard_normal(5), rng.standard_normal(5)
    steps = []
    for optimizer in (tn.Adam(lr=0.01), adam_update(eps_inside=True)(lr=0.01)):
        p = start.copy()
        optimizer.step([p], [grads])
        steps.append(p - start)
    assert _close(steps[1], steps[0])


# ================================================================ plain functions and schedules
def naive_softmax(z):
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def softmax_wrong_axis(z):
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def softmax_in_place(z):
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def softmax_todo(z):
    ### (the student has not started)
    return None


def step_decay_off_by_one(lr, step_size, gamma=0.1):
    return lambda step: lr * gamma ** ((step + 1) // step_size)


Z = np.array([[1.0, 2.0, 3.0], [0.5, -1.0, 4.0]])

FUNCTION_BUGS = [
    (naive_softmax, _softmax, (Z,), "overflows"),
    (softmax_wrong_axis, _softmax, (Z,), "differs from the reference"),
    (softmax_in_place, _softmax, (Z,), "in place"),
    (softmax_todo, _softmax, (Z,), NOT_DONE),
    (lambda z: _not_implemented(None), _softmax, (Z,), NOT_DONE),
    (lambda z: _softmax(z).T, _softmax, (Z,), "transposed"),
]


@pytest.mark.parametrize("buggy, reference, args, keyword", FUNCTION_BUGS)
def test_function_mistakes_are_named(capsys, buggy, reference, args, keyword):
    result, out = verdict(capsys, check_function, buggy, reference, *args)
    assert result is False
    assert keyword in out


def test_schedule_off_by_one_is_named(capsys):
    result, out = verdict(capsys, check_function, step_decay_off_by_one(0.1, 10), tn.StepDecay, 0.1, 10)
    assert result is False and "one step ahead" in out


class CosineCountsFromOne(tn.Schedule):
    """The optimizer's t (from 1) used as the schedule's step (from 0)."""

    def __init__(self, lr, total_steps, min_lr=0.0):
        self.lr, self.total_steps, self.min_lr = lr, total_steps, min_lr

    def __call__(self, step):
        progress = min(step + 1, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + np.cos(np.pi * progress))


class CosineNeverStops(CosineCountsFromOne):
    def __call__(self, step):
        progress = step / self.total_steps  # the bug: no min(step, total_steps)
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + np.cos(np.pi * progress))


@pytest.mark.parametrize("buggy, keyword", [
    (CosineCountsFromOne, "uses schedule(0)"),
    (CosineNeverStops, "min(step, total_steps)"),
])
def test_cosine_schedule_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_function, buggy, tn.CosineDecay, 0.1, 1000, 0.001)
    assert result is False and keyword in out, out


@pytest.mark.parametrize("candidate, reference, args", [
    (_softmax, _softmax, (Z,)), (lambda a, b: a @ b, np.matmul, (Z, Z.T)),
    (tn.CosineDecay, tn.CosineDecay, (0.1, 50)),
    (lambda step: 0.1 * 0.5 ** (step // 10), tn.StepDecay, (0.1, 10, 0.5)),
])
def test_correct_functions_pass(capsys, candidate, reference, args):
    result, out = verdict(capsys, check_function, candidate, reference, *args)
    assert result is True, out


# ================================================================ one training step
# Written here independently of exercises.py's own catalogue of mistakes (_no_update, ...):
# reusing that catalogue would let a wrong entry in it pass its own test.
def train_step(net, loss, optimizer, x, y):
    pred = net.forward(x, training=True)
    value, grad = loss(pred, y)
    net.backward(grad)
    optimizer.step(net.params, net.grads)
    return value


def step_without_update(net, loss, optimizer, x, y):
    value, grad = loss(net.forward(x, training=True), y)
    net.backward(grad)
    return value


def step_before_backward(net, loss, optimizer, x, y):
    value, grad = loss(net.forward(x, training=True), y)
    optimizer.step(net.params, net.grads)
    net.backward(grad)
    return value


def step_uphill(net, loss, optimizer, x, y):
    value, grad = loss(net.forward(x, training=True), y)
    net.backward(-grad)
    optimizer.step(net.params, net.grads)
    return value


def step_returns_pair(net, loss, optimizer, x, y):
    value, grad = loss(net.forward(x, training=True), y)
    net.backward(grad)
    optimizer.step(net.params, net.grads)
    return value, grad


def step_returns_nothing(net, loss, optimizer, x, y):
    train_step(net, loss, optimizer, x, y)


def step_returns_wrong_loss(net, loss, optimizer, x, y):
    return 2 * train_step(net, loss, optimizer, x, y)


MODEL_STEP_BUGS = [
    (step_without_update, "never change"),
    (step_before_backward, "before net.backward"),
    (step_uphill, "uphill"),
    (step_returns_pair, "tuple"),
    (step_returns_nothing, NOT_DONE),
    (step_returns_wrong_loss, "the loss returned at step 1"),
    (lambda net, loss, optimizer, x, y: _not_implemented(None), NOT_DONE),
]


@pytest.mark.parametrize("buggy, keyword", MODEL_STEP_BUGS)
def test_model_step_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_model_step, buggy)
    assert result is False
    assert keyword in out


def test_correct_model_step_passes(capsys):
    result, out = verdict(capsys, check_model_step, train_step)
    assert result is True
    assert out == "✔ train_step passed: losses and parameters match the reference for 3 steps\n"


# ================================================================ never raises, always the same words
@pytest.mark.parametrize("check, args, kwargs", [
    (check_layer, (42, tn.Dense), {}), (check_layer, (MyDense, "Dense"), {}),
    (check_loss, ("abc", tn.MSE), {}),
    (check_optimizer, (tn.SGD, tn.Momentum), {"nesterov": True}),  # SGD takes no nesterov
    (check_function, (len, _softmax, Z), {}), (check_model_step, (None,), {}),
])
def test_checks_never_raise(capsys, check, args, kwargs):
    result, out = verdict(capsys, check, *args, **kwargs)
    assert result is False
    assert out.count("\n") >= 1 and ("✘" in out or NOT_DONE in out)


def test_output_is_deterministic(capsys):
    buggy = dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g.mean(axis=0))
    outputs = []
    for seed in (1, 2):
        tn.seed(seed)
        np.random.seed(seed)
        check_layer(buggy, tn.Dense)
        check_layer(MyDense, tn.Dense)
        check_loss(NoMaxShift, tn.SoftmaxCrossEntropy)
        check_optimizer(MomentumUphill, tn.Momentum, lr=0.1, momentum=0.9)
        outputs.append(capsys.readouterr().out)
    assert outputs[0] == outputs[1]


# ================================================================ convolutional layers
def test_conv_layers_pass_and_an_unsummed_conv_bias_is_named(capsys):
    conv = pytest.importorskip("tinynn.conv")
    for layer in (conv.Conv2D, conv.Conv2D(4, 2, padding="same"), conv.MaxPool2D, tn.BatchNorm):
        result, out = verdict(capsys, check_layer, layer, layer if isinstance(layer, type) else type(layer))
        assert result is True, out
    pooling = [((), (2, 4, 4, 3)), ((2,), (3, 6, 4, 2)), ((3,), (1, 6, 6, 1))]  # no exercise: given
    result, out = verdict(capsys, check_layer, conv.AvgPool2D, conv.AvgPool2D, trials=pooling)
    assert result is True, out

    class BiasSummedOverBatchOnly(conv.Conv2D):
        def backward(self, grad):
            grad_x = super().backward(grad)
            self.grads["b"] = grad.sum(axis=0)
            return grad_x

    result, out = verdict(capsys, check_layer, BiasSummedOverBatchOnly, conv.Conv2D)
    assert result is False and "every place the parameter was used" in out


# ================================================================ autograd operations (notebook 11)
from tinynn import autograd as ag  # noqa: E402
from tinynn.autograd import Tensor, unbroadcast  # noqa: E402
from tinynn.course.exercises import check_op, check_topological_order  # noqa: E402


def binary_op(forward, backward):
    """An op written the way notebook 11 asks: forward on .data, a backward closure."""
    def my_op(a, b):
        out = Tensor(forward(a.data, b.data), (a, b), "op")
        out._backward = lambda: backward(out, a, b)
        return out
    return my_op


def unary_op(forward, backward):
    def my_op(a):
        out = Tensor(forward(a.data), (a,), "op")
        out._backward = lambda: backward(out, a)
        return out
    return my_op


def _accumulate(tensor, grad):
    tensor.grad += grad


def _not_done(*args):
    raise NotImplementedError()


def _relu(x):
    return np.maximum(x, 0)


OP_MISTAKES_TABLE = [
    (binary_op(np.add, lambda o, a, b: (_accumulate(a, o.grad), _accumulate(b, o.grad))),
     ag.add, "unbroadcast(out.grad"),
    (binary_op(np.add, lambda o, a, b: (setattr(a, "grad", unbroadcast(o.grad, a.shape)),
                                        setattr(b, "grad", unbroadcast(o.grad, b.shape)))),
     ag.add, "overwritten"),
    (binary_op(np.add, lambda o, a, b: _accumulate(a, unbroadcast(o.grad, a.shape))),
     ag.add, "b.grad was not changed"),
    (binary_op(np.add, _not_done), ag.add, NOT_DONE),
    (binary_op(np.multiply, lambda o, a, b: (_accumulate(a, unbroadcast(o.grad * a.data, a.shape)),
                                             _accumulate(b, unbroadcast(o.grad * b.data, b.shape)))),
     ag.mul, "own value"),
    (binary_op(np.multiply, lambda o, a, b: (_accumulate(a, unbroadcast(o.grad * b.data, a.shape)),
                                             _accumulate(b, unbroadcast(-o.grad * a.data, b.shape)))),
     ag.mul, "wrong sign"),
    (unary_op(_relu, lambda o, a: _accumulate(a, o.grad)), ag.relu, "everywhere"),
    (unary_op(_relu, lambda o, a: _accumulate(a, o.grad * a.data)), ag.relu, "by the input"),
    (unary_op(_relu, lambda o, a: _accumulate(a, o.grad * (a.data < 0))), ag.relu, "inverted"),
    (binary_op(np.matmul, lambda o, a, b: (_accumulate(a, o.grad @ b.data),
                                           _accumulate(b, a.data @ o.grad))),
     ag.matmul, "b.data.T"),
    (lambda a, b: None, ag.add, "returned None"),
    (lambda a, b: a.data + b.data, ag.add, "not a Tensor"),
]


@pytest.mark.parametrize("buggy, reference, keyword", OP_MISTAKES_TABLE)
def test_op_mistakes_are_named(capsys, buggy, reference, keyword):
    result, out = verdict(capsys, check_op, buggy, reference)
    assert result is False and keyword in out, out


@pytest.mark.parametrize("candidate, reference", [
    (binary_op(np.add, lambda o, a, b: (_accumulate(a, unbroadcast(o.grad, a.shape)),
                                        _accumulate(b, unbroadcast(o.grad, b.shape)))), ag.add),
    (ag.mul, ag.mul), (lambda a, b: a @ b, ag.matmul),
    (unary_op(_relu, lambda o, a: _accumulate(a, o.grad * (a.data > 0))), ag.relu),
])
def test_correct_ops_pass(capsys, candidate, reference):
    result, out = verdict(capsys, check_op, candidate, reference)
    assert result is True and out.startswith("✔") and "below 1e-8" in out, out


def _post_order(root, visited=True):
    order, seen = [], set()

    def visit(node):
        if visited and id(node) in seen:
            return
        seen.add(id(node))
        for parent in node.parents:
            visit(parent)
        order.append(node)
    visit(root)
    return order


@pytest.mark.parametrize("candidate, keyword", [
    (lambda root: _post_order(root)[::-1], "reversed"),
    (lambda root: _post_order(root, visited=False), "visited"),
    (lambda root: _post_order(root)[1:], "misses"),
    (lambda root: None, "returned None"),
    (_not_done, NOT_DONE),
])
def test_topological_order_mistakes_are_named(capsys, candidate, keyword):
    result, out = verdict(capsys, check_topological_order, candidate)
    assert result is False and keyword in out, out


def test_a_correct_topological_order_passes(capsys):
    for candidate in (_post_order, ag.topological_order):
        result, out = verdict(capsys, check_topological_order, candidate)
        assert result is True and out.startswith("✔"), out


# ---------------------------------------------------------------- issue 23: tanh and pick (11)
from tinynn.course.exercises import check_pick  # noqa: E402


@pytest.mark.parametrize("backward, keyword", [
    (lambda o, a: _accumulate(a, o.grad * (1 - o.data ** 2)), None),
    (lambda o, a: _accumulate(a, o.grad * (1 - a.data ** 2)), "uses the input a"),
    (lambda o, a: _accumulate(a, o.grad * (1 - o.data)), "forgets the square"),
    (lambda o, a: _accumulate(a, o.grad * o.data), "rule of exp"),
    (lambda o, a: _accumulate(a, o.grad / np.cosh(a.data)), "sech"),
    (lambda o, a: _accumulate(a, 1 - o.data ** 2), "forgets out.grad"),
    (lambda o, a: setattr(a, "grad", o.grad * (1 - o.data ** 2)), "overwritten"),
    (_not_done, NOT_DONE),
])
def test_tanh_mistakes_are_named_and_the_derivative_passes(capsys, backward, keyword):
    result, out = verdict(capsys, check_op, unary_op(np.tanh, backward), ag.tanh)
    if keyword is None:
        assert result is True and out.startswith("✔"), out
    else:
        assert result is False and keyword in out, out


def pick_op(backward):
    def my_pick(a, index):
        out = Tensor(a.data[index], (a,), "[]")
        out._backward = lambda: backward(out, a, index)
        return out
    return my_pick


def _fancy_add(o, a, index):
    a.grad[index] += o.grad


@pytest.mark.parametrize("backward, keyword", [
    (lambda o, a, index: np.add.at(a.grad, index, o.grad), None),
    (_fancy_add, "np.add.at"),
    (lambda o, a, index: _accumulate(a, o.grad), "input's shape"),
    (lambda o, a, index: _accumulate(a, np.full_like(a.data, o.grad.sum())), "the others get 0"),
    (lambda o, a, index: _not_done(), NOT_DONE),
])
def test_pick_mistakes_are_named_and_add_at_passes(capsys, backward, keyword):
    result, out = verdict(capsys, check_pick, pick_op(backward), ag.pick)
    if keyword is None:
        assert result is True and "2 with elements picked more than once" in out, out
    else:
        assert result is False and keyword in out, out


# ================================================================ issue 15: notebooks 01-03
# 01 · MyDense: the student derives dL/dX; the check names the shape argument and the transpose.
def _square_dense(backward):
    """A MyDense instance already built 4 -> 4: W is square, so G @ W has the right shape."""
    layer = type("SquareDense", (MyDense,), {"backward": backward})(4)
    layer.forward(np.ones((2, 4)))
    return layer


def _dense_g_w(self, grad):
    MyDense.backward(self, grad)
    return grad @ self.params["w"]


DENSE_DERIVATION_BUGS = [
    # dL/dX = G W (no transpose): shapes do not fit for a non-square W
    (dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g.sum(0), lambda s, g: g @ s.params["w"]),
     ["shapes do not line up", "G W or Wᵀ G", "(4, 3) @ (5, 3)", "at `"]),
    # dL/dX = Wᵀ G
    (dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g.sum(0), lambda s, g: s.params["w"].T @ g),
     ["shapes do not line up", "dL/dX (4, 5)"]),
    # dL/dW = X G (transpose of X missing)
    (dense_backward(lambda s, g: s.x @ g, lambda s, g: g.sum(0)), ["shapes do not line up", "dL/dW (5, 3)"]),
    # dL/dX = W Gᵀ: the result is transposed
    (dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g.sum(0), lambda s, g: s.params["w"] @ g.T),
     ["input gradient", "it is transposed"]),
    # mean instead of sum for db
    (dense_backward(lambda s, g: s.x.T @ g, lambda s, g: g.mean(axis=0)), ["grads['b'] is 1/4", "SUM"]),
    # a square W: G @ W fits the shapes, the values name the missing transpose
    (_square_dense(_dense_g_w), ["equals G W", "transpose of W is missing"]),
]


@pytest.mark.parametrize("buggy, keywords", DENSE_DERIVATION_BUGS)
def test_dense_derivation_mistakes_are_named(capsys, buggy, keywords):
    result, out = verdict(capsys, check_layer, buggy, tn.Dense)
    assert result is False
    for keyword in keywords:
        assert keyword in out, out


def test_square_dense_instance_passes_when_correct(capsys):
    result, out = verdict(capsys, check_layer, _square_dense(MyDense.backward), tn.Dense)
    assert result is True, out


# 02 · MySigmoid: the accurate form from e^-|x| is expected.
def _sigmoid_layer(formula):
    def forward(self, x, training=True):
        self.y = formula(x)
        return self.y

    def backward(self, grad):
        return grad * self.y * (1 - self.y)
    return type("MySigmoid", (tn.Layer,), {"forward": forward, "backward": backward})


def _accurate(x):
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def _both_branches(x):
    return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


SIGMOID_BUGS = [
    (lambda x: 1 / (1 + np.exp(-x)), ["overflows for large negative x", "RuntimeWarning: overflow"]),
    (lambda x: 0.5 * (1 + np.tanh(0.5 * x)), ["inaccurate in the negative tail", "float32", "x = -20",
                                              "100% off", "tanh"]),
    (_both_branches, ["overflows for large negative x", "BOTH"]),
    (lambda x: np.exp(x) / (1 + np.exp(x)), ["overflows for large positive x"]),
    (lambda x: np.where(x >= -12, _accurate(x), 0.0), ["inaccurate in the negative tail", "x = -15"]),
]


@pytest.mark.parametrize("formula, keywords", SIGMOID_BUGS)
def test_sigmoid_forms_are_named(capsys, formula, keywords):
    result, out = verdict(capsys, check_layer, _sigmoid_layer(formula), tn.Sigmoid)
    assert result is False
    for keyword in keywords:
        assert keyword in out, out


def test_accurate_sigmoid_passes(capsys):
    result, out = verdict(capsys, check_layer, _sigmoid_layer(_accurate), tn.Sigmoid)
    assert result is True, out


# 03 · MySoftmaxCrossEntropy: the student derives the fused gradient.
class UnshiftedGradient(MySoftmaxCE):
    """The value is stable, but the gradient uses the softmax of the unshifted logits."""

    def forward(self, pred, target):
        value, _ = MySoftmaxCE.forward(self, pred, target)
        e = np.exp(pred)
        grad = e / e.sum(axis=1, keepdims=True)
        grad[np.arange(len(pred)), target] -= 1
        return value, grad / len(pred)


class UnshiftedLog(MySoftmaxCE):
    """The gradient is stable, but the value is the log of a softmax without the max-shift."""

    def forward(self, pred, target):
        _, grad = MySoftmaxCE.forward(self, pred, target)
        e = np.exp(pred)
        p = e / e.sum(axis=1, keepdims=True)
        return float(-np.mean(np.log(p[np.arange(len(pred)), target]))), grad


def _without_onehot(divide):
    def forward(self, pred, target):
        value, _ = MySoftmaxCE.forward(self, pred, target)
        p = _softmax(pred)
        return value, p / len(pred) if divide else p
    return type("NoOnehotCE", (MySoftmaxCE,), {"forward": forward})


SOFTMAX_CE_DERIVATION_BUGS = [
    (ce_variant(lambda v, g, n: (v, g * n)), ["gradient of the SUM", "/N forgotten", "1/4"]),
    (_without_onehot(True), ["softmax/N", "− onehot is missing"]),
    (_without_onehot(False), ["softmax itself", "− onehot", "1/N"]),
    (UnshiftedGradient, ["the gradient at large logits", "unshifted logits", "subtract each row's maximum"]),
    (UnshiftedLog, ["the loss value at large logits", "log of a softmax computed without the max-shift"]),
    (LogOfSoftmax, ["confident logits", "compute the log-probability directly"]),
    (ce_variant(lambda v, g, n: (v * n, g)), ["loss value", "it is a sum; return the mean"]),
    (ce_variant(lambda v, g, n: (v, g / n)), ["1/4 of the expected", "divided by 4 twice"]),
]


@pytest.mark.parametrize("buggy, keywords", SOFTMAX_CE_DERIVATION_BUGS)
def test_softmax_ce_derivation_mistakes_are_named(capsys, buggy, keywords):
    result, out = verdict(capsys, check_loss, buggy, tn.SoftmaxCrossEntropy)
    assert result is False
    for keyword in keywords:
        assert keyword in out, out


# ================================================================ notebooks 09 and 10: col2im, max-pool and BatchNorm backward
# Written as students write them (not with exercises.py's own variants, which would let a wrong
# entry there pass its own test).
from tinynn.conv import MaxPool2D  # noqa: E402
from tinynn.course.exercises import check_col2im  # noqa: E402
from tinynn.norm import BatchNorm  # noqa: E402


_leftovers = iter(range(1000))


def col2im_written(assign=False, swap=False, channels_first=False, stride=True, dilation=True,
                   wrong_size=False, empty=False, in_place=False):
    def my_col2im(dcols, x_shape, k, s=1, d=1):
        n, h, w, c = x_shape
        if wrong_size:
            ho, wo = h - k + 1, w - k + 1
        else:
            ho, wo = (h - d * (k - 1) - 1) // s + 1, (w - d * (k - 1) - 1) // s + 1
        if channels_first:
            rows = dcols.reshape(n, ho, wo, c, k, k).transpose(0, 1, 2, 4, 5, 3)
        else:
            rows = dcols.reshape(n, ho, wo, k, k, c)
        dx = np.empty(x_shape) if empty else np.zeros(x_shape)
        if empty:  # what np.empty may hold: leftovers, different at every call
            dx[...] = next(_leftovers)
        first, step = (d if dilation else 1), (s if stride else 1)
        for i in range(k):
            for j in range(k):
                block = rows[:, :, :, j, i] if swap else rows[:, :, :, i, j]
                target = (slice(None), slice(i * first, i * first + step * (ho - 1) + 1, step),
                          slice(j * first, j * first + step * (wo - 1) + 1, step))
                if assign:
                    dx[target] = block
                else:
                    dx[target] += block
        if in_place:
            dcols *= 0
        return dx
    return my_col2im


def col2im_assign_reversed(dcols, x_shape, k, s=1, d=1):
    """Overwrites, looping over the offsets in reverse order."""
    n, h, w, c = x_shape
    ho, wo = (h - d * (k - 1) - 1) // s + 1, (w - d * (k - 1) - 1) // s + 1
    rows = dcols.reshape(n, ho, wo, k, k, c)
    dx = np.zeros(x_shape)
    for i in reversed(range(k)):
        for j in reversed(range(k)):
            dx[:, i * d:i * d + s * (ho - 1) + 1:s, j * d:j * d + s * (wo - 1) + 1:s] = rows[:, :, :, i, j]
    return dx


def col2im_todo(dcols, x_shape, k, s=1, d=1):
    # YOUR CODE HERE
    raise NotImplementedError()


COL2IM_BUGS = [
    (col2im_written(assign=True), "overwrites (=) where windows overlap"),
    (col2im_assign_reversed, "wrong where windows overlap"),
    (col2im_written(swap=True), "(i, j) at (j, i)"),
    (col2im_written(channels_first=True), "(c, i, j) order"),
    (col2im_written(stride=False), "ignores the stride"),
    (col2im_written(dilation=False), "ignores the dilation"),
    (col2im_written(stride=False, dilation=False), "ignores the stride"),  # the first to show
    (col2im_written(wrong_size=True), "Ho = (H − d·(k − 1) − 1) // s + 1"),
    (col2im_written(empty=True), "start from np.zeros"),
    (col2im_written(in_place=True), "changed dcols in place"),
    (lambda dcols, x_shape, k, s=1, d=1: None, NOT_DONE),
    (col2im_todo, NOT_DONE),
]


@pytest.mark.parametrize("buggy, keyword", COL2IM_BUGS)
def test_col2im_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_col2im, buggy)
    assert result is False and keyword in out, out


def test_a_correct_col2im_passes(capsys):
    conv = pytest.importorskip("tinynn.conv")
    for candidate in (col2im_written(), conv.col2im):
        result, out = verdict(capsys, check_col2im, candidate)
        assert result is True and out.startswith("✔") and "5 geometries" in out, out


class MyMaxPool2D(tn.Layer):
    """Notebook 10's exercise: forward saves each window's p·p values; backward routes."""

    def __init__(self, pool_size=2):
        super().__init__()
        self.pool_size = pool_size

    def forward(self, x, training=True):
        p = self.pool_size
        n, h, w, c = x.shape
        win = x.reshape(n, h // p, p, w // p, p, c).transpose(0, 1, 3, 5, 2, 4)
        win = win.reshape(n, h // p, w // p, c, p * p)
        if training:
            self.save_for_backward(x.shape, win)
        return win.max(axis=-1)

    def route(self, win, grad):
        """(N, Ho, Wo, C, p·p) gradients per window element; the correct version."""
        return (np.arange(win.shape[-1]) == win.argmax(axis=-1)[..., None]) * grad[..., None]

    def backward(self, grad):
        x_shape, win = self.saved_tensors
        p, (n, h, w, c) = self.pool_size, x_shape
        dwin = self.route(win, grad)
        return dwin.reshape(n, h // p, w // p, c, p, p).transpose(0, 1, 4, 2, 5, 3).reshape(x_shape)


def max_pool_routing(route):
    return type("BuggyMaxPool", (MyMaxPool2D,), {"route": lambda self, win, grad: route(win, grad)})


def _is_max(win):
    return win == win.max(axis=-1, keepdims=True)


class MaxPoolWrongUnpermute(MyMaxPool2D):
    def backward(self, grad):
        x_shape, win = self.saved_tensors
        p, (n, h, w, c) = self.pool_size, x_shape
        dwin = self.route(win, grad)
        return dwin.reshape(n, h // p, w // p, c, p, p).transpose(0, 1, 5, 2, 4, 3).reshape(x_shape)


MAX_POOL_BUGS = [
    (max_pool_routing(lambda win, g: _is_max(win) * g[..., None]), "EVERY element equal to its maximum"),
    (max_pool_routing(lambda win, g: (np.arange(win.shape[-1]) == win.shape[-1] - 1
                                      - win[..., ::-1].argmax(axis=-1)[..., None]) * g[..., None]),
     "LAST of its equal maxima"),
    (max_pool_routing(lambda win, g: _is_max(win) / _is_max(win).sum(-1, keepdims=True) * g[..., None]),
     "shares a tied window's gradient"),
    (max_pool_routing(lambda win, g: np.ones(win.shape) * g[..., None]), "every element of the window"),
    (max_pool_routing(lambda win, g: np.ones(win.shape) * g[..., None] / win.shape[-1]), "AVERAGE pooling"),
    (max_pool_routing(lambda win, g: (win != win.max(-1, keepdims=True)) * g[..., None]), "LOST"),
    (MaxPoolWrongUnpermute, "not to the element that won"),
    (type("MaxPoolTodo", (MyMaxPool2D,), {"backward": _not_implemented}), NOT_DONE),
]


@pytest.mark.parametrize("buggy, keyword", MAX_POOL_BUGS)
def test_max_pool_backward_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_layer, buggy, MaxPool2D)
    assert result is False and keyword in out, out


def test_a_correct_max_pool_passes_also_on_ties(capsys):
    for candidate in (MyMaxPool2D, MyMaxPool2D(), MaxPool2D):
        result, out = verdict(capsys, check_layer, candidate, MaxPool2D)
        assert result is True and "on inputs with ties" in out, out


class MyBatchNorm(tn.Layer):
    """Notebook 10's exercise: forward given (training statistics), backward written."""

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = eps

    def forward(self, x, training=True):
        if "gamma" not in self.params:
            c = x.shape[-1]
            self.params = {"gamma": np.ones(c, x.dtype), "beta": np.zeros(c, x.dtype)}
            self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        axes = tuple(range(x.ndim - 1))
        inv_std = 1.0 / np.sqrt(x.var(axis=axes) + self.eps)
        x_hat = (x - x.mean(axis=axes)) * inv_std
        self.save_for_backward(x, x_hat, inv_std)
        return self.params["gamma"] * x_hat + self.params["beta"]

    def input_gradient(self, g, x_hat, inv_std, m, axes):
        gamma = self.params["gamma"]
        return gamma * inv_std / m * (m * g - g.sum(axes) - x_hat * (g * x_hat).sum(axes))

    def backward(self, grad):
        x, x_hat, inv_std = self.saved_tensors
        axes = tuple(range(grad.ndim - 1))
        m = grad.size // grad.shape[-1]
        self.grads["gamma"] = self.gamma_gradient(grad, x, x_hat, axes)
        self.grads["beta"] = self.beta_gradient(grad, axes)
        return self.input_gradient(grad, x_hat, inv_std, m, axes)

    def gamma_gradient(self, g, x, x_hat, axes):
        return (g * x_hat).sum(axes)

    def beta_gradient(self, g, axes):
        return g.sum(axes)


def batch_norm_input(formula):
    def input_gradient(self, g, x_hat, inv_std, m, axes):
        return formula(self.params["gamma"], g, x_hat, inv_std, m, axes)
    return type("BuggyBatchNorm", (MyBatchNorm,), {"input_gradient": input_gradient})


BATCH_NORM_BUGS = [
    (batch_norm_input(lambda gm, g, xh, s, m, a: gm * s / m * (m * g - xh * (g * xh).sum(a))),
     "forgets the term through the batch MEAN"),
    (batch_norm_input(lambda gm, g, xh, s, m, a: gm * s / m * (m * g - g.sum(a))),
     "forgets the term through the batch VARIANCE"),
    (batch_norm_input(lambda gm, g, xh, s, m, a: gm * s * g), "as constants"),
    (batch_norm_input(lambda gm, g, xh, s, m, a: gm * s / m * (g - g.mean(a) - xh * (g * xh).mean(a))),
     "divides by m"),
    (batch_norm_input(lambda gm, g, xh, s, m, a: gm * s / m * (m * g - g.mean(a) - xh * (g * xh).mean(a))),
     "divides by m"),
    (batch_norm_input(lambda gm, g, xh, s, m, a: s / m * (m * g - g.sum(a) - xh * (g * xh).sum(a))),
     "forgets γ"),
    (batch_norm_input(lambda gm, g, xh, s, m, a: gm / m * (m * g - g.sum(a) - xh * (g * xh).sum(a))),
     "forgets the factor inv_std"),
    (type("GammaFromX", (MyBatchNorm,), {"gamma_gradient": lambda self, g, x, xh, a: (g * x).sum(a)}),
     "NORMALISED input"),
    (type("GammaMean", (MyBatchNorm,), {"gamma_gradient": lambda self, g, x, xh, a: (g * xh).mean(a)}),
     "SUM them"),
    (type("BetaMean", (MyBatchNorm,), {"beta_gradient": lambda self, g, a: g.mean(a)}), "SUM them"),
    (type("BetaBatchOnly", (MyBatchNorm,), {"beta_gradient": lambda self, g, a: g.sum(0)}),
     "keeps the batch"),
    (type("BatchNormTodo", (MyBatchNorm,), {"backward": _not_implemented}), NOT_DONE),
]


@pytest.mark.parametrize("buggy, keyword", BATCH_NORM_BUGS)
def test_batch_norm_backward_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_layer, buggy, BatchNorm)
    assert result is False and keyword in out, out


def test_a_correct_batch_norm_passes(capsys):
    for candidate in (MyBatchNorm, MyBatchNorm(), BatchNorm):
        result, out = verdict(capsys, check_layer, candidate, BatchNorm)
        assert result is True and out.startswith("✔"), out
