"""Notebook 07 (learning-rate lab): ``check_lr_range_test``, and the exercise lr_range_test.

    check_lr_range_test(my_lr_range_test)
    # my_lr_range_test(model, x, y, lr_min, lr_max, num_steps, batch_size, seed) -> (lrs, losses)

The student's range test runs on a seeded tiny problem next to tinynn's ``lr_range_test``; each
part of the recipe is checked in turn (geometric rates, the bias-corrected moving average, the
early stop, the restored weights), so a mistake is named by the first part it breaks.
"""
import numpy as np

from ... import random as tn_random
from ...batches import BatchIterator
from ...layers import Dense, ReLU
from ...losses import SoftmaxCrossEntropy
from ...lr_finder import MovingAverage, lr_range_test
from ...model import Model
from ...net import Net
from ...optimizers import SGD, Momentum
from .compare import _expect, _same
from .core import SEED, Failed, NotDone, _name, _run
from .spec import Exercise, visible_defaults

RANGE_TEST_ARGS = dict(lr_min=1e-3, lr_max=1e3, num_steps=80, batch_size=16, seed=0)


@visible_defaults
def check_lr_range_test(candidate, smoothing=0.98, diverge_factor=4.0, *,
                        settings=RANGE_TEST_ARGS, seed=SEED):
    """Check ``my_lr_range_test(model, x, y, lr_min, lr_max, num_steps, batch_size, seed)
    -> (lrs, losses)`` against tinynn's ``lr_range_test`` on a seeded tiny problem (its data and
    weights drawn from ``seed``, the test run with ``settings``): rates growing geometrically from
    lr_min to lr_max, the loss smoothed by a bias-corrected moving average (β = ``smoothing``), a
    stop as soon as the smoothed loss exceeds ``diverge_factor`` × its minimum so far, and the
    initial weights restored, and the optimizer too (a second run with a Momentum optimizer that
    has already taken a few steps: its step count, velocities and learning rate must come back).
    Linear spacing, no smoothing, a missing bias correction, no early stop, weights left as
    trained and an optimizer left at the sweep's last rate and velocities are named."""
    def run():
        a = settings
        x, y, start, fresh = _range_problem(seed)
        model = fresh()
        lrs, losses = _returned(candidate(model, x.copy(), y.copy(), a["lr_min"], a["lr_max"],
                                          a["num_steps"], a["batch_size"], a["seed"]), a)
        ref = lr_range_test(fresh(), x, y, start_lr=a["lr_min"], end_lr=a["lr_max"],
                            num_steps=a["num_steps"], batch_size=a["batch_size"], seed=a["seed"],
                            smoothing=smoothing, diverge_factor=diverge_factor)
        _check_rates(lrs, a)
        raw = _replay_losses(fresh(), x, y, lrs, a["batch_size"], a["seed"])
        _check_smoothing(losses, raw, smoothing)
        _check_stop(len(lrs), len(ref.lrs), a["num_steps"], diverge_factor)
        _check_restored(model.net.state_dict(), start)
        _check_optimizer_restored(candidate, x, y, fresh, a)
        _expect("the learning rates", lrs, ref.lrs)
        _expect("the smoothed losses", losses, ref.losses)
        return (f"{len(lrs)} rates from {lrs[0]:g} growing geometrically, smoothed losses and the "
                f"stop at {diverge_factor:g}× the minimum match lr_range_test; weights and "
                "optimizer restored")
    return _run(_name(candidate), run, seed)


def _range_problem(seed):
    """A seeded tiny classification problem (float64), the initial state of its MLP, and a
    function that builds a fresh Model from that state."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((3, 5)) * 2
    y = rng.integers(0, 3, 96)
    x = centres[y] + rng.standard_normal((96, 5))
    tn_random.seed(seed)
    net = Net([Dense(16), ReLU(), Dense(3)])
    net.forward(x[:1], training=False)
    start = net.state_dict()

    def fresh():
        net = Net([Dense(16), ReLU(), Dense(3)])
        net.forward(x[:1], training=False)
        net.load_state_dict(start)
        return Model(net, SoftmaxCrossEntropy(), SGD(lr=0.01), dtype=np.float64)
    return x, y, start, fresh


def _returned(result, a):
    """(lrs, losses) as float arrays, after checking that the candidate returned two lists of
    the same length, at least one step and at most num_steps."""
    if result is None:
        raise NotDone("returned None — `return lrs, losses` at the end")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Failed("return two lists, the learning rates and the smoothed losses: "
                     "return lrs, losses")
    lrs, losses = (np.asarray(r, dtype=np.float64).ravel() for r in result)
    n, k = a["num_steps"], len(lrs)
    if len(losses) != k:
        raise Failed(f"returned {k} learning rates but {len(losses)} losses: append one of "
                     "each per step")
    if k == 0:
        raise Failed("returned no steps: loop over the num_steps learning rates, one training "
                     "step each")
    if k > n:
        raise Failed(f"returned {k} steps for num_steps = {n}")
    return lrs, losses


def _check_rates(lrs, a):
    """The rates must grow geometrically from lr_min to lr_max; name linear spacing and an
    exponent off by one."""
    n, k = a["num_steps"], len(lrs)
    i = np.arange(n)
    ratio = a["lr_max"] / a["lr_min"]
    planned = a["lr_min"] * ratio ** (i / (n - 1))
    if _same(lrs, planned[:k]):
        return
    if _same(lrs, np.linspace(a["lr_min"], a["lr_max"], n)[:k]):
        raise Failed("your learning rates are evenly spaced (linear, np.linspace): almost "
                     "all of them are large, and the small rates, where the loss starts "
                     "to fall, get a handful of steps. Space them geometrically: multiply "
                     "by the same factor each step, lr_min · (lr_max/lr_min)^(i/(num_steps "
                     "− 1))")
    if _same(lrs, (a["lr_min"] * ratio ** (i / n))[:k]):
        raise Failed("your rates never reach lr_max: the exponent should be "
                     "i / (num_steps − 1), so that step 0 uses lr_min and the last step "
                     "lr_max")
    if _same(lrs, (a["lr_min"] * ratio ** ((i + 1) / n))[:k]) or lrs[0] != a["lr_min"]:
        raise Failed(f"the first step should use lr_min ({a['lr_min']:g}), yours "
                     f"{lrs[0]:.4g}: lr_i = lr_min · (lr_max/lr_min)^(i/(num_steps − 1)) "
                     "for i = 0, 1, …")
    _expect("the learning rates", lrs, planned[:k])


def _endless_batches(x, y, batch_size, seed):
    batches = BatchIterator(x, y, batch_size, shuffle=True, seed=seed)
    while True:
        yield from batches


def _replay_losses(model, x, y, lrs, batch_size, seed):
    """The raw training losses of the steps taken at rates ``lrs`` (the candidate's own rates)."""
    batches, losses = _endless_batches(x, y, batch_size, seed), []
    for lr in lrs:
        model.optimizer.lr = float(lr)
        losses.append(float(model.train_step(*next(batches))))
    return np.array(losses)


def _check_smoothing(losses, raw, smoothing):
    """The losses must be the bias-corrected moving average of the raw losses at the candidate's
    rates; name raw losses and a missing bias correction."""
    average = MovingAverage(smoothing)
    smoothed = np.array([average.add(value) for value in raw])
    if _same(losses, smoothed):
        return
    if _same(losses, raw):
        raise Failed("your losses are the raw loss of each step, not smoothed: one batch's "
                     "loss is noisy, and the stop rule would fire on a single unlucky "
                     f"batch. Keep a moving average avg = β·avg + (1 − β)·loss (β = "
                     f"{smoothing}) and record avg / (1 − β^(i+1))")
    uncorrected = smoothed * (1 - smoothing ** np.arange(1, len(raw) + 1))
    if _same(losses, uncorrected):
        raise Failed("your moving average has no bias correction: it starts at 0, so the "
                     "first smoothed losses are far too small (the first is 2 % of the "
                     "loss) and the minimum is found at the start. Record "
                     "avg / (1 − β^(i+1)), i = 0, 1, …")
    _expect("the smoothed losses (the reference's smoothing of the losses at your rates)",
            losses, smoothed)


def _check_stop(k, m, n, diverge_factor):
    """The candidate's ``k`` steps must be the reference's ``m`` (of ``n`` planned)."""
    if k == m:
        return
    if k == n and m < n:
        raise Failed(f"your test never stops early: it ran all {n} steps, while the "
                     f"smoothed loss passed {diverge_factor:g}× its minimum at step {m}. "
                     f"Stop (break) as soon as the smoothed loss exceeds "
                     f"{diverge_factor:g} × the lowest smoothed loss so far: the rest is "
                     "the explosion, wasted steps that can overflow")
    raise Failed(f"stopped after {k} steps, tinynn's lr_range_test after {m}: record the "
                 f"step, then stop as soon as its smoothed loss exceeds "
                 f"{diverge_factor:g} × the lowest smoothed loss so far (and at a "
                 "non-finite loss, before recording it)")


def _check_restored(after, start):
    if any(not np.array_equal(after[name], start[name]) for name in start):
        raise Failed("the rates and losses match tinynn's, but the model keeps the weights of "
                     "the last (exploding) step: you forgot to restore the initial weights. "
                     "Restore the whole model: before the loop save snapshot = "
                     "model.net.state_dict() (the weights and layer state such as "
                     "BatchNorm's running statistics) and saved = model.optimizer.snapshot() "
                     "(its step count and moments); after it, "
                     "model.net.load_state_dict(snapshot) and model.optimizer.restore(saved)")


def _check_optimizer_restored(candidate, x, y, fresh, a):
    """Run the candidate on a model whose optimizer has state (Momentum, after a few ordinary
    steps): its step count, velocities and learning rate must be as they were before the test.
    Plain SGD has none, so the first run cannot tell; a test used before Adam would leave it
    the sweep's moments and the exploding rate."""
    model = fresh()
    model.optimizer = Momentum(lr=0.01, momentum=0.9)
    for xb, yb in BatchIterator(x, y, a["batch_size"], shuffle=True, seed=a["seed"] + 1):
        model.train_step(xb, yb)   # one epoch: velocities and a step count to protect
    before = model.optimizer.snapshot()
    candidate(model, x.copy(), y.copy(), a["lr_min"], a["lr_max"], a["num_steps"],
              a["batch_size"], a["seed"])
    after = vars(model.optimizer)
    same_state = (set(after["state"]) == set(before["state"])
                  and all(np.array_equal(u, v) for key in before["state"]
                          for u, v in zip(after["state"][key], before["state"][key])))
    if after["_lr"] == before["_lr"] and after["t"] == before["t"] and same_state:
        return
    left = []
    if after["_lr"] != before["_lr"]:
        left.append(f"its learning rate {after['_lr']:.3g} (the sweep's last rate, not "
                    f"{before['_lr']:g})")
    if after["t"] != before["t"]:
        left.append(f"its step count {after['t']} (not {before['t']})")
    if not same_state:
        left.append("the sweep's velocities")
    raise Failed("the weights come back, but the optimizer keeps " + ", ".join(left) + ": "
                 "the next training step would run at the rate that made the loss explode, "
                 "with momenta from the sweep. Save saved = model.optimizer.snapshot() before "
                 "the loop and call model.optimizer.restore(saved) after it (checked with a "
                 "Momentum optimizer that had already taken a few steps)")


LR_RANGE_TEST = Exercise(
    "lr_range_test", ("my_lr_range_test",), check_lr_range_test, forbidden=(lr_range_test,),
    trials=dict(settings=RANGE_TEST_ARGS),
    hidden=dict(settings=dict(lr_min=1e-4, lr_max=1e2, num_steps=60, batch_size=12, seed=3)))
EXERCISES = (LR_RANGE_TEST,)
