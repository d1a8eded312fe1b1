"""Optimizers and schedules against their published rules, written out independently here.

The known example: two parameters (a vector and a matrix) on the quadratic bowl
f(θ) = Σ ½ a θ² + c θ, whose gradient a θ + c changes at every step, so any slip in the
state (velocity, moments, bias correction) shows up in the trajectory.
"""
import copy
import math
import pickle

import numpy as np
import pytest

import tinynn as tn

STEPS = 5
THETA0 = [np.array([1.0, -2.0, 3.0]), np.array([[0.5, -0.25], [2.0, -1.5]])]
CURVATURE = [np.array([1.0, 2.0, 0.5]), np.array([[3.0, 1.0], [0.2, 4.0]])]
SHIFT = [np.array([0.1, -0.3, 0.2]), np.array([[0.0, 0.5], [-0.4, 0.05]])]


def gradient(theta):
    return [a * t + c for a, t, c in zip(CURVATURE, theta, SHIFT)]


def trajectory(optimizer, steps=STEPS):
    """θ after each step of ``optimizer`` on the known example."""
    params = [t.copy() for t in THETA0]
    out = []
    for _ in range(steps):
        optimizer.step(params, gradient(params))
        out.append([p.copy() for p in params])
    return out


# Each reference: (theta, grads, state, t, hyper) -> new theta, written from the papers.
def sgd_rule(theta, g, state, t, lr, wd=0.0):
    return [th - lr * (gi + wd * th) for th, gi in zip(theta, g)]


def momentum_rule(theta, g, state, t, lr, mu, nesterov=False):
    """PyTorch's (Sutskever et al.) form: v ← μv + g; θ ← θ − ηv, or θ ← θ − η(g + μv)."""
    state.setdefault("v", [np.zeros_like(th) for th in theta])
    new = []
    for k, (th, gi) in enumerate(zip(theta, g)):
        state["v"][k] = mu * state["v"][k] + gi
        step = gi + mu * state["v"][k] if nesterov else state["v"][k]
        new.append(th - lr * step)
    return new


def rmsprop_rule(theta, g, state, t, lr, rho, eps):
    """Hinton's lecture 6e: s ← ρs + (1 − ρ)g²; θ ← θ − ηg / (√s + ε)."""
    state.setdefault("s", [np.zeros_like(th) for th in theta])
    new = []
    for k, (th, gi) in enumerate(zip(theta, g)):
        state["s"][k] = rho * state["s"][k] + (1 - rho) * gi ** 2
        new.append(th - lr * gi / (np.sqrt(state["s"][k]) + eps))
    return new


def adam_rule(theta, g, state, t, lr, b1, b2, eps, wd=0.0):
    """Kingma & Ba, Algorithm 1, with L2 weight decay added to the gradient first."""
    state.setdefault("m", [np.zeros_like(th) for th in theta])
    state.setdefault("v", [np.zeros_like(th) for th in theta])
    new = []
    for k, (th, gi) in enumerate(zip(theta, g)):
        gi = gi + wd * th
        state["m"][k] = b1 * state["m"][k] + (1 - b1) * gi
        state["v"][k] = b2 * state["v"][k] + (1 - b2) * gi ** 2
        m_hat = state["m"][k] / (1 - b1 ** t)
        v_hat = state["v"][k] / (1 - b2 ** t)
        new.append(th - lr * m_hat / (np.sqrt(v_hat) + eps))
    return new


def reference_trajectory(rule, steps=STEPS, **hyper):
    theta, state, out = [t.copy() for t in THETA0], {}, []
    for t in range(1, steps + 1):
        theta = rule(theta, gradient(theta), state, t, **hyper)
        out.append(theta)
    return out


CASES = {
    "SGD": (lambda: tn.SGD(lr=0.1), sgd_rule, dict(lr=0.1)),
    "SGD_weight_decay": (lambda: tn.SGD(lr=0.1, weight_decay=0.01), sgd_rule,
                         dict(lr=0.1, wd=0.01)),
    "Momentum": (lambda: tn.Momentum(lr=0.05, momentum=0.9), momentum_rule,
                 dict(lr=0.05, mu=0.9)),
    "Nesterov": (lambda: tn.Momentum(lr=0.05, momentum=0.9, nesterov=True), momentum_rule,
                 dict(lr=0.05, mu=0.9, nesterov=True)),
    "RMSProp": (lambda: tn.RMSProp(lr=0.01, rho=0.9, eps=1e-8), rmsprop_rule,
                dict(lr=0.01, rho=0.9, eps=1e-8)),
    "Adam": (lambda: tn.Adam(lr=0.1, beta1=0.9, beta2=0.999, eps=1e-8), adam_rule,
             dict(lr=0.1, b1=0.9, b2=0.999, eps=1e-8)),
    "Adam_weight_decay": (lambda: tn.Adam(lr=0.1, weight_decay=0.05), adam_rule,
                          dict(lr=0.1, b1=0.9, b2=0.999, eps=1e-8, wd=0.05)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_optimizer_follows_its_published_rule_step_by_step(name):
    factory, rule, hyper = CASES[name]
    optimizer = factory()
    actual, expected = trajectory(optimizer), reference_trajectory(rule, **hyper)
    for step, (a, e) in enumerate(zip(actual, expected), start=1):
        for k in range(len(a)):
            np.testing.assert_allclose(a[k], e[k], rtol=1e-12, atol=1e-15,
                                       err_msg=f"{name}, step {step}, parameter {k}")
    assert optimizer.t == STEPS
    assert not np.allclose(actual[-1][0], THETA0[0])  # it really moved


def test_hand_computed_first_steps():
    """Numbers worked out on paper, independent of any code."""
    theta = [np.array([1.0])]
    tn.SGD(lr=0.1).step(theta, [np.array([2.0])])
    assert theta[0][0] == pytest.approx(0.8)

    theta, opt = [np.array([0.0])], tn.Momentum(lr=0.1, momentum=0.9)
    for _ in range(2):
        opt.step(theta, [np.array([1.0])])  # v = 1 then 1.9: θ = −0.1 − 0.19
    assert theta[0][0] == pytest.approx(-0.29)

    theta, opt = [np.array([0.0])], tn.Momentum(lr=0.1, momentum=0.9, nesterov=True)
    for _ in range(2):
        opt.step(theta, [np.array([1.0])])  # −0.1(1 + 0.9) − 0.1(1 + 0.9·1.9)
    assert theta[0][0] == pytest.approx(-0.19 - 0.271)

    theta = [np.array([1.0, 1.0])]  # Adam's first step is ≈ lr · sign(g), whatever |g|
    tn.Adam(lr=0.01).step(theta, [np.array([1000.0, -0.001])])
    np.testing.assert_allclose(theta[0], [0.99, 1.01], rtol=1e-6)


def test_optimizer_works_in_float32_and_keeps_dtype():
    params = [np.ones(3, np.float32)]
    for opt in (tn.SGD(0.1), tn.Momentum(0.1), tn.RMSProp(0.1), tn.Adam(0.1, weight_decay=0.1)):
        opt.step(params, [np.full(3, 0.5, np.float32)])
        assert params[0].dtype == np.float32
        assert all(s.dtype == np.float32 for slots in opt.state.values() for s in slots)


def test_reset_forgets_the_state_and_step_count():
    opt = tn.Adam(lr=0.1)
    first = trajectory(opt, 3)
    opt.reset()
    assert opt.t == 0 and opt.state == {}
    again = trajectory(opt, 3)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a[0], b[0])


def test_learning_rate_is_a_plain_attribute_read_at_every_step():
    theta, opt = [np.array([0.0])], tn.SGD(lr=0.1)
    opt.step(theta, [np.array([1.0])])
    opt.lr = 0.5  # what a widget does between steps
    opt.step(theta, [np.array([1.0])])
    assert theta[0][0] == pytest.approx(-0.6)


# ------------------------------------------------------------------ schedules
@pytest.mark.parametrize("schedule, expected", [
    (tn.StepDecay(0.1, step_size=10, gamma=0.5), {0: 0.1, 9: 0.1, 10: 0.05, 25: 0.025}),
    (tn.ExponentialDecay(0.1, gamma=0.9), {0: 0.1, 1: 0.09, 2: 0.081, 10: 0.1 * 0.9 ** 10}),
    (tn.CosineDecay(1.0, total_steps=100, min_lr=0.1),
     {0: 1.0, 25: 0.1 + 0.45 * (1 + math.sqrt(0.5)), 50: 0.55, 100: 0.1, 150: 0.1}),
    (tn.CosineDecay(0.2, total_steps=4), {0: 0.2, 2: 0.1, 4: 0.0, 9: 0.0}),
    (tn.WarmUp(0.1, warmup_steps=4), {0: 0.025, 1: 0.05, 3: 0.1, 4: 0.1, 100: 0.1}),
    (tn.WarmUp(tn.StepDecay(0.1, step_size=2, gamma=0.5), warmup_steps=2),
     {0: 0.05, 1: 0.1, 2: 0.1, 3: 0.1, 4: 0.05, 6: 0.025}),
], ids=["step", "exponential", "cosine", "cosine_to_zero", "warmup_constant", "warmup_then_step"])
def test_schedule_values(schedule, expected):
    for step, lr in expected.items():
        assert schedule(step) == pytest.approx(lr, rel=1e-12, abs=1e-15), f"step {step}"


def test_optimizer_uses_its_schedule_at_every_step():
    schedule = tn.StepDecay(1.0, step_size=1, gamma=0.5)
    theta, opt = [np.array([0.0])], tn.SGD(lr=schedule)
    assert opt.lr == 1.0
    seen = []
    for _ in range(4):
        opt.step(theta, [np.array([1.0])])
        seen.append(opt.lr)
    assert seen == [1.0, 0.5, 0.25, 0.125]
    assert theta[0][0] == pytest.approx(-1.875)


def test_a_schedule_may_decay_to_zero_without_stopping_training():
    theta, opt = [np.array([0.0])], tn.SGD(lr=tn.CosineDecay(0.2, total_steps=2))
    for _ in range(4):  # steps 2 and 3 use lr 0: no update, and no error
        opt.step(theta, [np.array([1.0])])
    assert opt.lr == 0.0
    assert theta[0][0] == pytest.approx(-0.2 - 0.1)


class WarmUpFromZero(tn.Schedule):
    """The usual hand-written warm-up: 0, 0.05, 0.1, then 0.1."""

    def __call__(self, step):
        return 0.1 * min(step, 2) / 2


def test_a_schedule_may_start_at_zero_at_construction_as_in_step():
    theta, opt = [np.array([1.0])], tn.SGD(lr=WarmUpFromZero())
    assert opt.lr == 0.0
    seen = []
    for _ in range(4):
        opt.step(theta, [np.array([1.0])])  # step 0 runs at rate 0: no update
        seen.append((opt.lr, theta[0][0]))
    assert seen == [(0.0, 1.0), (0.05, 0.95), (0.1, 0.85), (0.1, 0.75)]


@pytest.mark.parametrize("make, owner", [
    (lambda lr: tn.StepDecay(lr, step_size=2), "StepDecay"),
    (lambda lr: tn.ExponentialDecay(lr, gamma=0.9), "ExponentialDecay"),
    (lambda lr: tn.CosineDecay(lr, total_steps=10), "CosineDecay"),
    (lambda lr: tn.WarmUp(lr, warmup_steps=3), "WarmUp")])
@pytest.mark.parametrize("lr", [0.0, -0.1, float("nan")])
def test_a_schedule_refuses_a_starting_rate_that_is_not_positive(make, owner, lr):
    """A schedule may pass through 0, but one that starts from 0 would never train."""
    with pytest.raises(tn.ConfigError, match=rf"{owner}: learning rate must be a positive number"):
        make(lr)


def test_cosine_decay_refuses_a_negative_floor():
    with pytest.raises(tn.ConfigError, match=r"CosineDecay: min_lr must be a number >= 0"):
        tn.CosineDecay(0.1, total_steps=10, min_lr=-0.01)


class Falling(tn.Schedule):
    """0.1, 0.05, 0, −0.05, ... and NaN from step ``nan_at`` on: a buggy schedule."""

    def __init__(self, nan_at=math.inf):
        self.nan_at = nan_at

    def __call__(self, step):
        return math.nan if step >= self.nan_at else 0.1 - 0.05 * step


@pytest.mark.parametrize("schedule, bad_step, value", [
    (Falling(), 3, "-0.05"), (Falling(nan_at=1), 1, "nan"), (Falling(nan_at=0), 0, "nan")])
def test_a_negative_or_nan_scheduled_rate_is_refused_naming_the_optimizer_and_step(
        schedule, bad_step, value):
    message = (rf"Momentum: the learning rate of its schedule at step {bad_step} must be a "
               rf"number >= 0, got {value}")
    if bad_step == 0:
        with pytest.raises(tn.ConfigError, match=message):
            tn.Momentum(lr=schedule)
        return
    theta, opt = [np.array([1.0])], tn.Momentum(lr=schedule)
    for _ in range(bad_step):
        opt.step(theta, [np.array([1.0])])
    before = theta[0].copy()
    with pytest.raises(tn.ConfigError, match=message + ".*hint: a schedule \\(Falling\\)"):
        opt.step(theta, [np.array([1.0])])
    np.testing.assert_array_equal(theta[0], before)  # no step was taken


def test_optimizers_get_by_name():
    assert isinstance(tn.optimizers.get("adam", lr=0.01), tn.Adam)
    assert isinstance(tn.optimizers.get("SGD"), tn.SGD)
    assert tn.optimizers.get("momentum", lr=0.1, nesterov=True).nesterov


@pytest.mark.parametrize("lr", [0, 0.0, -1e-3, float("nan"), float("inf"), -float("inf"), "0.1",
                                None])
@pytest.mark.parametrize("factory", [tn.SGD, tn.Momentum, tn.RMSProp, tn.Adam])
def test_bad_learning_rates_raise_config_error(factory, lr):
    with pytest.raises(tn.ConfigError, match="learning rate"):
        factory(lr=lr)
    opt = factory(lr=0.01)
    with pytest.raises(tn.ConfigError, match="learning rate"):
        opt.lr = lr
    assert opt.lr == 0.01  # unchanged by the refused assignment


# ------------------------------------------------------------------ state belongs to a parameter
def test_state_follows_the_parameter_not_its_position():
    """Momenta are kept per parameter array: a new parameter list order (or a parameter
    dropped) must not hand one array's velocity to another."""
    a, b = np.zeros(3), np.zeros(3)
    opt = tn.Momentum(lr=0.1, momentum=0.9)
    opt.step([a, b], [np.ones(3), -np.ones(3)])   # v_a = 1, v_b = −1
    opt.step([b, a], [np.zeros(3), np.zeros(3)])  # same arrays, swapped: each keeps its own v
    np.testing.assert_allclose(a, -0.1 - 0.09)
    np.testing.assert_allclose(b, 0.1 + 0.09)
    opt.step([b], [np.zeros(3)])                  # a list without a
    np.testing.assert_allclose(b, 0.19 + 0.081)


def test_one_optimizer_reused_for_another_net_starts_fresh_momenta_there():
    first, second = np.zeros(2), np.zeros(2)
    opt = tn.Momentum(lr=1.0, momentum=0.5)
    opt.step([first], [np.ones(2)])
    opt.step([second], [np.zeros(2)])  # another net's parameter: no velocity yet, no move
    np.testing.assert_array_equal(second, 0.0)
    fresh_twin = np.zeros(2)
    tn.Momentum(lr=1.0, momentum=0.5).step([fresh_twin], [np.zeros(2)])
    np.testing.assert_array_equal(second, fresh_twin)


def test_optimizer_state_survives_garbage_collection_of_a_parameter():
    """State is held with its array (which the optimizer keeps alive until reset()), so a new
    array never inherits another one's state, even once the old one is dropped."""
    opt = tn.Momentum(lr=1.0, momentum=0.5)
    for _ in range(50):
        p = np.zeros(2)
        opt.step([p], [np.ones(2)])
        np.testing.assert_array_equal(p, -1.0)  # a first step: v = g, whatever came before
        del p
    assert len(opt.state) == 50


@pytest.mark.parametrize("name", ["Adam", "Adam_weight_decay"])
def test_adam_textbook_update_equals_the_fast_path(name, monkeypatch):
    """Adam.fast = False runs the three-line textbook rule; both follow the published rule,
    and on float32 they agree to float32 rounding."""
    factory, rule, hyper = CASES[name]
    monkeypatch.setattr(tn.Adam, "fast", False)
    textbook = trajectory(factory())
    for step, (a, e) in enumerate(zip(textbook, reference_trajectory(rule, **hyper)), start=1):
        for k in range(len(a)):
            np.testing.assert_allclose(a[k], e[k], rtol=1e-12, atol=1e-15, err_msg=f"step {step}")
    gen = np.random.default_rng(0)
    params0 = [gen.standard_normal((30, 20)).astype(np.float32), np.zeros(20, np.float32)]
    grads = [[gen.standard_normal(p.shape).astype(np.float32) for p in params0] for _ in range(5)]
    results = []
    for fast in (True, False):
        opt, params = factory(), [p.copy() for p in params0]
        opt.fast = fast
        for g in grads:
            opt.step(params, g)
        results.append(params)
    for a, b in zip(*results):
        assert a.dtype == b.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ copies, pickles, snapshots
COPYABLE = {
    "SGD": lambda: tn.SGD(lr=0.1, weight_decay=0.01),
    "Momentum": lambda: tn.Momentum(lr=0.05),
    "Nesterov": lambda: tn.Momentum(lr=0.05, nesterov=True),
    "RMSProp": lambda: tn.RMSProp(lr=0.01),
    "Adam": lambda: tn.Adam(lr=0.01),
    "Adam_textbook": lambda: textbook(tn.Adam(lr=0.01)),
    "AdamW": lambda: tn.AdamW(lr=0.01, weight_decay=0.1),
}
COPIES = {"deepcopy": copy.deepcopy, "pickle": lambda model: pickle.loads(pickle.dumps(model))}


def textbook(adam):
    adam.fast = False
    return adam


def trained_model(optimizer, steps=3):
    """A small float64 model after a few steps on a fixed batch, and that batch."""
    gen = np.random.default_rng(0)
    x, y = gen.standard_normal((12, 3)), np.arange(12) % 3
    tn.seed(0)
    model = tn.Model(tn.Net([tn.Dense(5), tn.Tanh(), tn.Dense(3)]), tn.SoftmaxCrossEntropy(),
                     optimizer, dtype=np.float64)
    for _ in range(steps):
        model.train_step(x, y)
    return model, x, y


@pytest.mark.parametrize("how", list(COPIES))
@pytest.mark.parametrize("name", list(COPYABLE))
def test_a_copied_or_pickled_model_takes_the_step_the_original_would_take(name, how):
    """State is keyed by id(param), which a copy changes: the copy must re-key it to its own
    arrays, not restart its moments (with the old step count) and hold stale entries."""
    original, x, y = trained_model(COPYABLE[name]())
    twin = COPIES[how](original)
    assert twin.optimizer.t == original.optimizer.t == 3
    assert set(twin.optimizer.state) <= {id(p) for p in twin.net.params}  # no stale entries
    assert len(twin.optimizer.state) == len(original.optimizer.state)
    for _ in range(2):
        original.train_step(x, y)
        twin.train_step(x, y)
        for a, b in zip(original.net.params, twin.net.params):
            assert a is not b
            np.testing.assert_array_equal(a, b)


def test_an_optimizer_copied_alone_starts_fresh_on_the_original_parameters():
    theta = [np.zeros(2)]
    opt = tn.Momentum(lr=1.0, momentum=0.5)
    opt.step(theta, [np.ones(2)])
    alone = copy.deepcopy(opt)
    alone.step(theta, [np.zeros(2)])  # its state belongs to its own copies of the arrays
    np.testing.assert_array_equal(theta[0], -1.0)
    opt.step(theta, [np.zeros(2)])    # the original still has the velocity: v = 0.5
    np.testing.assert_array_equal(theta[0], -1.5)


@pytest.mark.parametrize("name", list(COPYABLE))
def test_restore_takes_the_optimizer_back_to_its_snapshot_exactly(name):
    model, x, y = trained_model(COPYABLE[name]())
    saved_net, saved = model.net.state_dict(), model.optimizer.snapshot()
    expected = []
    for _ in range(2):  # what happens next, from the snapshot
        model.train_step(x, y)
        expected.append(model.net.state_dict())
    for _ in range(2):  # twice: a snapshot stays usable after a restore
        model.net.load_state_dict(saved_net)
        model.optimizer.restore(saved)
        assert model.optimizer.t == 3
        for want in expected:
            model.train_step(x, y)
            got = model.net.state_dict()
            assert all(np.array_equal(got[k], want[k]) for k in want)
