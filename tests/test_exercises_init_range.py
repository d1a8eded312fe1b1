"""Planted-bug tests for notebook 06's He initialisation check and notebook 07's range-test check:
each row is (what students really write, a keyword the printed diagnosis must contain)."""
import numpy as np
import pytest

import tinynn as tn
from tinynn.course.exercises import check_he_init, check_lr_range_test

NOT_DONE = "not yet implemented"


def verdict(capsys, check, *args):
    result = check(*args)
    out, err = capsys.readouterr()
    assert err == ""
    return result, out


# ================================================================ He initialisation (06)
def he(std, uniform=False, fan=lambda s: s[0]):
    """An initializer drawing from tinynn's generator with std (or uniform bound) std(fan)."""
    def init(shape, dtype=np.float32):
        scale = std(fan(shape), shape)
        rng = tn.random.rng()
        w = rng.uniform(-scale, scale, shape) if uniform else rng.standard_normal(shape) * scale
        return w.astype(dtype)
    return init


def my_he_normal(shape, dtype=np.float32):
    fan_in = shape[0]
    return (tn.random.rng().standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def _not_done(shape, dtype=np.float32):
    # YOUR CODE HERE
    raise NotImplementedError()


HE_BUGS = [
    (he(lambda n, s: np.sqrt(1 / n)), "1/fan_in (LeCun"),
    (he(lambda n, s: np.sqrt(2 / (s[0] + s[1]))), "Xavier/Glorot"),
    (he(lambda n, s: np.sqrt(2 / n), fan=lambda s: s[1]), "fan_out"),
    (he(lambda n, s: 2 / n), "is the VARIANCE"),
    (he(lambda n, s: np.sqrt(2 / n), uniform=True), "std used as the bound"),
    (he(lambda n, s: np.sqrt(6 / n)), "bound, as the std"),
    (he(lambda n, s: np.sqrt(6 / n), uniform=True), "He *uniform*"),
    (he(lambda n, s: 1.0), "has std 1"),
    (lambda shape, dtype=np.float32: tn.random.rng().standard_normal(shape) * np.sqrt(2 / shape[0]),
     "finish with .astype(dtype)"),
    (lambda shape, dtype=np.float32: (np.random.standard_normal(shape) * np.sqrt(2 / shape[0])
                                      ).astype(dtype), "tinynn's generator"),
    (lambda shape, dtype=np.float32: (tn.random.rng().random(shape) * np.sqrt(2 / shape[0])
                                      ).astype(dtype), "not 0"),
    (lambda shape, dtype=np.float32: my_he_normal(shape[::-1], dtype), "returned shape"),
    (lambda shape, dtype=np.float32: None, NOT_DONE),
    (_not_done, NOT_DONE),
    (lambda shape, dtype=np.float32: np.full(shape, 0.07, dtype), "all weights are equal"),
]


@pytest.mark.parametrize("buggy, keyword", HE_BUGS)
def test_he_init_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_he_init, buggy)
    assert result is False
    assert keyword in out, out


@pytest.mark.parametrize("candidate", [my_he_normal, tn.initializers.he_normal])
def test_correct_he_init_passes(capsys, candidate):
    result, out = verdict(capsys, check_he_init, candidate)
    assert result is True and out.startswith("✔"), out


def test_he_check_is_deterministic_and_leaves_the_generator_alone(capsys):
    tn.seed(5)
    expected = tn.random.rng().standard_normal(3)
    tn.seed(5)
    first = verdict(capsys, check_he_init, HE_BUGS[0][0])[1]
    assert np.array_equal(tn.random.rng().standard_normal(3), expected)
    assert verdict(capsys, check_he_init, HE_BUGS[0][0])[1] == first


# ================================================================ the range test (07)
def endless_batches(x, y, batch_size, seed):
    batches = tn.BatchIterator(x, y, batch_size, shuffle=True, seed=seed)
    while True:
        yield from batches


def range_test(spacing="geometric", smoothing=True, corrected=True, stop=True, restore=True,
               stop_before_recording=False):
    """A range test written the way a student would, with one of the mistakes switched on
    (``restore``: True for the net and the optimizer, "net" for the weights only)."""
    def my_lr_range_test(model, x, y, lr_min, lr_max, num_steps, batch_size=64, seed=0,
                         beta=0.98, diverge_factor=4.0):
        batches = endless_batches(x, y, batch_size, seed)
        snapshot, saved_optimizer = model.net.state_dict(), model.optimizer.snapshot()
        lrs, losses, average, best = [], [], 0.0, np.inf
        for i in range(num_steps):
            if spacing == "linear":
                lr = lr_min + (lr_max - lr_min) * i / (num_steps - 1)
            elif spacing == "short":
                lr = lr_min * (lr_max / lr_min) ** (i / num_steps)
            else:
                lr = lr_min * (lr_max / lr_min) ** (i / (num_steps - 1))
            model.optimizer.lr = lr
            loss = model.train_step(*next(batches))
            if stop and not np.isfinite(loss):
                break
            average = beta * average + (1 - beta) * loss
            value = (average / (1 - beta ** (i + 1)) if corrected else average) if smoothing else loss
            if stop_before_recording and value > diverge_factor * best:
                break
            lrs.append(lr)
            losses.append(value)
            best = min(best, value)
            if stop and value > diverge_factor * best:
                break
        if restore:
            model.net.load_state_dict(snapshot)
        if restore is True:
            model.optimizer.restore(saved_optimizer)
        return lrs, losses
    return my_lr_range_test


def _range_not_done(model, x, y, lr_min, lr_max, num_steps, batch_size=64, seed=0):
    batches = endless_batches(x, y, batch_size, seed)
    # YOUR CODE HERE
    raise NotImplementedError()


RANGE_BUGS = [
    (range_test(spacing="linear"), "linear"),
    (range_test(spacing="short"), "never reach lr_max"),
    (range_test(smoothing=False), "not smoothed"),
    (range_test(corrected=False), "no bias correction"),
    (range_test(stop=False), "never stops early"),
    (range_test(stop_before_recording=True), "record the step, then stop"),
    (range_test(restore=False), "forgot to restore the initial weights"),
    (range_test(restore="net"), "the optimizer keeps its learning rate"),
    (lambda *args: None, NOT_DONE),
    (_range_not_done, NOT_DONE),
    (lambda *args: range_test()(*args)[0], "return two lists"),
]


@pytest.mark.parametrize("buggy, keyword", RANGE_BUGS)
def test_range_test_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_lr_range_test, buggy)
    assert result is False
    assert keyword in out, out


def test_a_correct_range_test_passes(capsys):
    result, out = verdict(capsys, check_lr_range_test, range_test())
    assert result is True and out.startswith("✔"), out
