"""tinynn.lr_finder: the learning-rate range test sweeps the rate geometrically, stops when the
smoothed loss explodes, and leaves the model exactly as it found it (parameters, BatchNorm's
running statistics, the optimizer's step count, moments, rate and schedule)."""
import numpy as np
import pytest

import tinynn as tn


def data(n=96):
    gen = np.random.default_rng(1)
    x = gen.standard_normal((n, 4))
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)


def trained_model(x, y, steps=4):
    """A float64 Dense-BatchNorm-ReLU-Dense classifier with Adam after ``steps`` steps."""
    tn.seed(0)
    model = tn.Model(tn.Net([tn.Dense(8), tn.BatchNorm(), tn.ReLU(), tn.Dense(2)]),
                     tn.SoftmaxCrossEntropy(), tn.Adam(lr=0.01), dtype=np.float64)
    for i in range(steps):
        model.train_step(x[16 * i:16 * (i + 1)], y[16 * i:16 * (i + 1)])
    return model


def optimizer_state(optimizer):
    """(t, lr, schedule, a copy of each parameter's state arrays)."""
    return optimizer.t, optimizer.lr, optimizer.schedule, {
        key: [a.copy() for a in slots] for key, slots in optimizer.state.items()}


def test_lr_range_test_leaves_a_trained_batchnorm_adam_model_exactly_as_it_was():
    x, y = data()
    model, twin = trained_model(x, y), trained_model(x, y)  # twin: never range-tested
    net_before, (t, lr, schedule, moments) = model.net.state_dict(), optimizer_state(model.optimizer)
    assert t == 4 and len(moments) == 6  # Dense w, b; BatchNorm γ, β; Dense w, b
    result = tn.lr_range_test(model, x, y, 1e-4, 1e2, num_steps=60, batch_size=16)
    assert len(result.lrs) > 10
    net_after = model.net.state_dict()
    assert net_after.keys() == net_before.keys()
    assert {"state.1.running_mean", "state.1.running_var"} <= net_after.keys()
    for key in net_before:
        np.testing.assert_array_equal(net_after[key], net_before[key], err_msg=key)
    assert (model.optimizer.t, model.optimizer.lr, model.optimizer.schedule) == (t, lr, schedule)
    assert model.optimizer.state.keys() == moments.keys()
    for key, slots in moments.items():
        for a, b in zip(model.optimizer.state[key], slots):
            np.testing.assert_array_equal(a, b)
    xb, yb = x[:16], y[:16]
    assert model.train_step(xb, yb) == twin.train_step(xb, yb)
    for key, value in twin.net.state_dict().items():
        np.testing.assert_array_equal(model.net.state_dict()[key], value, err_msg=key)


def test_lr_range_test_restores_the_model_when_a_step_raises():
    x, y = data()
    model = trained_model(x, y)
    net_before, (t, _, _, _) = model.net.state_dict(), optimizer_state(model.optimizer)

    def interrupt(step, lr, loss):
        if step == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        tn.lr_range_test(model, x, y, 1e-4, 1e2, num_steps=60, batch_size=16, on_step=interrupt)
    assert all(np.array_equal(v, model.net.state_dict()[k]) for k, v in net_before.items())
    assert model.optimizer.t == t and model.optimizer.lr == 0.01


def test_lr_range_test_restores_a_schedule_and_a_plain_rate():
    x, y = data()
    tn.seed(0)
    model = tn.Model(tn.Net([tn.Dense(8), tn.ReLU(), tn.Dense(2)]), tn.SoftmaxCrossEntropy(),
                     tn.Momentum(lr=tn.CosineDecay(0.1, 100)), dtype=np.float64)
    schedule = model.optimizer.schedule
    result = tn.lr_range_test(model, x, y, 1e-5, 1e3, num_steps=100, batch_size=16)
    assert "exploded" in result.stopped or "non-finite" in result.stopped
    assert model.optimizer.schedule is schedule and model.optimizer.t == 0
    assert model.optimizer.lr == 0.1


def test_lr_range_test_sweeps_geometrically_and_smooths_with_bias_correction():
    """The rates and smoothed losses, replayed by hand on an untouched copy: rate i is
    start · (end/start)^(i/(n − 1)); the loss is averaged as a ← βa + (1 − β)L, a/(1 − β^(i+1))."""
    x, y = data()
    start, end, n, beta = 1e-3, 1.0, 20, 0.9
    result = tn.lr_range_test(trained_model(x, y, steps=0), x, y, start, end, num_steps=n,
                              batch_size=16, smoothing=beta, diverge_factor=1e9)
    np.testing.assert_allclose(result.lrs, start * (end / start) ** (np.arange(n) / (n - 1)),
                               rtol=1e-12)
    replay, batches = trained_model(x, y, steps=0), tn.BatchIterator(x, y, 16, shuffle=True, seed=0)
    raw = []
    while len(raw) < n:
        for xb, yb in batches:
            replay.optimizer.lr = result.lrs[len(raw)]
            raw.append(replay.train_step(xb, yb))
            if len(raw) == n:
                break
    average, expected = 0.0, []
    for i, loss in enumerate(raw):
        average = beta * average + (1 - beta) * loss
        expected.append(average / (1 - beta ** (i + 1)))
    np.testing.assert_allclose(result.losses, expected, rtol=1e-12)
    assert result.stopped == "it reached the largest learning rate"
    lowest = int(np.argmin(expected))
    assert result.min_loss_lr == result.lrs[lowest] and result.suggestion == result.lrs[lowest] / 10


def test_moving_average_is_bias_corrected():
    average = tn.lr_finder.MovingAverage(0.5)
    assert average.add(2.0) == 2.0            # a = 1, corrected 1 / (1 − 0.5)
    assert average.add(4.0) == pytest.approx(2.5 / 0.75)
    assert all(tn.lr_finder.MovingAverage(0.98).add(v) == pytest.approx(v) for v in (0.3, 7.0))


def test_moving_average_without_bias_correction_starts_from_zero():
    average = tn.lr_finder.MovingAverage(0.5, bias_correction=False)
    assert average.add(2.0) == 1.0            # (1 − 0.5) · 2
    assert average.add(4.0) == 2.5            # 0.5 · 1 + 0.5 · 4


def test_ema_is_the_moving_average_after_each_value():
    np.testing.assert_allclose(tn.lr_finder.ema([2.0, 4.0, 1.0], 0.5),
                               [2.0, 2.5 / 0.75, 1.75 / 0.875])
    np.testing.assert_allclose(tn.lr_finder.ema([2.0, 4.0], 0.5, bias_correction=False), [1.0, 2.5])
    assert tn.lr_finder.ema([], 0.9).shape == (0,)
    assert tn.lr_finder.ema(np.float32([1.5]), 0.9).dtype == np.float64


@pytest.mark.parametrize("args", [(1.0, 0.1, 10), (0.0, 1.0, 10), (1e-3, 1.0, 1)])
def test_lr_range_test_refuses_a_bad_sweep(args):
    x, y = data()
    with pytest.raises(tn.ConfigError, match="lr_range_test: need 0 < start_lr < end_lr"):
        tn.lr_range_test(trained_model(x, y, steps=0), x, y, *args)

