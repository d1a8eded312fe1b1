"""tinynn.diagnostics: each tool detects the fault it is for and passes a healthy net; the stats
callback is read-only (bit for bit); the layer dashboard draws (Agg backend)."""
import math

import numpy as np
import pytest

import tinynn as tn
from tinynn.course import exercises
from tinynn.gradcheck import numerical_gradient


def blobs(n=240, features=12, classes=4, seed=0, scale=1.0):
    """Easy synthetic classification data: a Gaussian cluster per class."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, features)) * 2
    y = rng.integers(0, classes, n)
    x = centres[y] + rng.standard_normal((n, features))
    return (x * scale).astype(np.float32), y


def mlp(classes=4, hidden=32, **kwargs):
    return tn.Net([tn.Dense(hidden, init="he_normal", **kwargs), tn.ReLU(),
                   tn.Dense(hidden, init="he_normal", **kwargs), tn.ReLU(), tn.Dense(classes)])


def model(lr=1e-2, net=None, optimizer=None):
    tn.seed(0)
    return tn.Model(net or mlp(), tn.SoftmaxCrossEntropy(), optimizer or tn.Adam(lr=lr))


class Softmax(tn.Layer):
    """A softmax output layer: the classic mistake before a loss that expects logits."""

    def forward(self, x, training=True):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        if training:
            self.p = p
        return p

    def backward(self, grad):
        return self.p * (grad - (grad * self.p).sum(axis=1, keepdims=True))


class MeanBiasDense(tn.Dense):
    """A Dense whose bias gradient is averaged over the batch instead of summed."""

    def backward(self, grad, input_grad=True):
        out = super().backward(grad, input_grad)
        self.grads["b"] = grad.mean(axis=0)
        return out


# ================================================================ initial loss
def test_initial_loss_check_passes_an_untrained_net_near_ln_c():
    x, y = blobs()
    report = tn.initial_loss_check(model(), x, y)
    assert report.ok and bool(report)
    assert report.expected == pytest.approx(math.log(4))
    assert "ln 4" in repr(report) and "OK" in repr(report)


def test_initial_loss_check_detects_unscaled_inputs():
    x, y = blobs()
    report = tn.initial_loss_check(model(), x * 255, y)
    assert not report.ok and report.loss > 10
    assert "far above" in report.verdict and "scaled" in report.verdict


def test_initial_loss_check_detects_a_net_that_knows_too_much():
    x, y = blobs()
    m = model()
    m.fit(x, y, epochs=30, batch_size=32, seed=0)
    report = tn.initial_loss_check(m, x, y)
    assert not report.ok and "far below" in report.verdict


def test_initial_loss_check_takes_a_net_and_a_loss():
    x, y = blobs()
    tn.seed(0)
    assert tn.initial_loss_check(mlp(), x, y, loss=tn.SoftmaxCrossEntropy()).ok
    with pytest.raises(tn.ConfigError):
        tn.initial_loss_check(mlp(), x, y)
    with pytest.raises(tn.ConfigError, match="no expected"):
        tn.initial_loss_check(tn.Model(mlp(), tn.MSE(), tn.SGD()), x, np.zeros((len(x), 4)))


# ================================================================ overfit one batch
def test_overfit_batch_passes_a_healthy_pipeline_and_leaves_the_model_alone():
    x, y = blobs(n=16)
    m = model()
    m.net.forward(x[:1])
    before = m.net.state_dict()
    report = tn.overfit_batch(m, x, y, steps=150)
    assert report.ok and report.accuracy == 1.0 and report.loss < 0.05
    assert len(report.losses) == 150 and report.losses[-1] < report.losses[0]
    assert all(np.array_equal(v, m.net.state_dict()[k]) for k, v in before.items())
    assert m.optimizer.t == 0


def test_overfit_batch_continues_a_trained_model_with_its_optimizer_state():
    """The copy it trains keeps Adam's moments and step count (re-keyed to the copied arrays),
    so its first steps are the ones the model itself would take next; the model is untouched."""
    x, y = blobs(n=16)
    m = model()
    for _ in range(4):
        m.train_step(x, y)
    before, t = m.net.state_dict(), m.optimizer.t
    moments = {key: [a.copy() for a in slots] for key, slots in m.optimizer.state.items()}
    report = tn.overfit_batch(m, x, y, steps=3)
    assert all(np.array_equal(v, m.net.state_dict()[k]) for k, v in before.items())
    assert m.optimizer.t == t == 4 and moments.keys() == m.optimizer.state.keys()
    assert all(np.array_equal(a, b) for key in moments
               for a, b in zip(moments[key], m.optimizer.state[key]))
    own = [float(m.train_step(x, y)) for _ in range(3)]  # the model's own next steps
    assert report.losses == own


@pytest.mark.parametrize("steps", [0, -1, 2.0])
def test_overfit_batch_refuses_a_step_count_below_one(steps):
    with pytest.raises(tn.ConfigError, match=rf"overfit_batch: steps must be a positive integer, "
                                             rf"got {steps}"):
        tn.overfit_batch(model(), *blobs(n=8), steps=steps)


def test_overfit_batch_detects_softmax_fed_to_a_logits_loss():
    x, y = blobs(n=16)
    m = model(net=tn.Net(mlp().layers + [Softmax()]))
    report = tn.overfit_batch(m, x, y, steps=150)
    assert not report.ok
    floor = math.log(1 + 3 / math.e)  # best case: one probability 1, the others 0
    assert report.loss > floor - 1e-3
    assert "cannot be memorised" in report.verdict


def test_overfit_batch_reports_divergence():
    x, y = blobs(n=16, scale=1e3)
    report = tn.overfit_batch(model(optimizer=tn.SGD(lr=1e3)), x, y, steps=50)
    assert not report.ok


def test_overfit_batch_does_not_move_tinynns_generator():
    x, y = blobs(n=16)
    m = model(net=tn.Net([tn.Dense(16), tn.ReLU(), tn.Dropout(0.3), tn.Dense(4)]))
    tn.seed(5)
    tn.overfit_batch(m, x, y, steps=5)
    after = tn.random.rng().random()
    tn.seed(5)
    assert tn.random.rng().random() == after


# ================================================================ the gradient check of a net
def test_gradcheck_net_passes_the_reference_layers_even_with_dropout():
    x, y = blobs(n=6)
    tn.seed(0)
    net = tn.Net([tn.Dense(5), tn.Tanh(), tn.Dropout(0.3), tn.Dense(4, init="he_normal"),
                  tn.ReLU(), tn.Dense(4)])
    net.forward(x[:1])
    before = net.state_dict()
    report = tn.gradcheck_net(net, tn.SoftmaxCrossEntropy(), x, y)
    assert report.ok, report
    assert set(report.errors) == {"0.w", "0.b", "3.w", "3.b", "5.w", "5.b"}
    assert max(report.errors.values()) < 1e-6
    assert net.params[0].dtype == np.float32  # the net itself was not converted
    assert all(np.array_equal(v, net.state_dict()[k]) for k, v in before.items())


def test_gradcheck_net_finds_the_layer_with_a_wrong_bias_gradient():
    x, y = blobs(n=8)
    tn.seed(0)
    net = tn.Net([tn.Dense(6), tn.ReLU(), MeanBiasDense(4)])
    report = tn.gradcheck_net(net, tn.SoftmaxCrossEntropy(), x, y)
    assert not report.ok and report.worst == "2.b"
    assert report.errors["2.b"] == pytest.approx(1 - 1 / 8, rel=1e-4)  # mean = sum / 8
    assert report.errors["2.w"] < 1e-6 and report.errors["0.w"] < 1e-6
    assert "2.b" in report.verdict and "MeanBiasDense" in report.verdict


def test_gradcheck_net_does_not_move_tinynns_generator():
    x, y = blobs(n=6)
    tn.seed(0)
    net = tn.Net([tn.Dense(5), tn.Dropout(0.3), tn.Dense(4)])
    net.forward(x[:1])
    tn.seed(5)
    tn.gradcheck_net(net, tn.SoftmaxCrossEntropy(), x, y, samples=3)
    after = tn.random.rng().random()
    tn.seed(5)
    assert tn.random.rng().random() == after


def test_numerical_gradient_of_chosen_entries_only():
    a = np.arange(6.0).reshape(2, 3)
    grad = numerical_gradient(lambda: float(np.sum(a ** 2)), a, indices=[1, 5])
    assert np.allclose(grad.reshape(-1), [0, 2, 0, 0, 0, 10])  # d(a²)/da = 2a, where asked
    assert np.array_equal(a, np.arange(6.0).reshape(2, 3))  # every nudge was put back


def test_gradcheck_net_samples_entries_of_big_parameters():
    x, y = blobs(n=4, features=50)
    tn.seed(0)
    net = tn.Net([tn.Dense(40), tn.ReLU(), tn.Dense(4)])
    report = tn.gradcheck_net(net, tn.SoftmaxCrossEntropy(), x, y, samples=10)
    assert report.ok and len(report.errors) == 4


# ================================================================ activation statistics
def test_dead_fraction_counts_units_zero_for_every_sample():
    h = np.array([[0, 1, 0, 0], [0, 2, 3, 0], [0, 0, 0, 0]], dtype=np.float32)
    assert tn.dead_fraction(h) == 0.5
    assert tn.dead_fraction(np.zeros((2, 3, 3, 2))) == 1.0


def test_activation_stats_finds_dead_relus_from_a_bad_initialisation():
    x, y = blobs()
    tn.seed(0)
    healthy = mlp()
    rows = tn.activation_stats(healthy, x)
    assert [r["layer"] for r in rows] == ["0 Dense", "1 ReLU", "2 Dense", "3 ReLU", "4 Dense"]
    assert rows[1]["dead"] < 0.2 and rows[1]["std"] > 0

    dead = mlp()
    dead.forward(x[:1])
    dead.layers[0].params["b"][...] = -20.0   # every pre-activation negative
    rows = tn.activation_stats(dead, x)
    assert rows[1]["dead"] == 1.0 and rows[1]["std"] == 0.0


# ================================================================ the LayerStats callback
def fit_params(callbacks, net_layers=None):
    x, y = blobs(n=200)
    tn.seed(0)
    net = tn.Net(net_layers() if net_layers else
                 [tn.Dense(16), tn.ReLU(), tn.Dropout(0.2), tn.Dense(4)])
    m = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-2))
    history = m.fit(x, y, epochs=3, batch_size=32, seed=0, validation=(x[:50], y[:50]),
                    callbacks=callbacks)
    return m.net.state_dict(), history


def test_layer_stats_is_read_only_bit_for_bit():
    x, _ = blobs(n=64)
    plain, history_plain = fit_params([])
    stats = tn.LayerStats(x, every=1)
    watched, history_watched = fit_params([stats])
    assert all(np.array_equal(plain[k], watched[k]) for k in plain)
    assert history_plain["step_loss"] == history_watched["step_loss"]
    assert history_plain["val_loss"] == history_watched["val_loss"]
    assert len(stats.steps) == len(history_watched["step_loss"])


def test_layer_stats_records_every_layer_and_a_healthy_update_ratio():
    x, y = blobs(n=200)
    stats = tn.LayerStats(x[:64], every=2)
    m = tn.Model(mlp(), tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3))
    m.fit(x, y, epochs=2, batch_size=32, seed=0, callbacks=[stats])
    assert stats.layers == ["0 Dense", "1 ReLU", "2 Dense", "3 ReLU", "4 Dense"]
    assert stats.steps == list(range(2, 15, 2))
    ratios = stats.latest("update_ratio")
    assert math.isnan(ratios["1 ReLU"])
    assert all(1e-4 < ratios[k] < 1e-2 for k in ("0 Dense", "2 Dense", "4 Dense")), ratios
    assert stats.problems() == []
    assert "update" in stats.summary() and "3 ReLU" in stats.summary()


def test_layer_stats_flags_a_learning_rate_far_too_large():
    x, y = blobs(n=200)
    stats = tn.LayerStats(x[:64], every=1)
    m = tn.Model(mlp(), tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3 * 100))
    m.fit(x, y, epochs=1, batch_size=32, seed=0, callbacks=[stats])
    first = [stats.history["update_ratio"][i][0] for i in (0, 2, 4)]
    assert min(first) > 1e-2, first
    assert any("step size is too large" in p for p in stats.problems())


def test_layer_stats_flags_dead_relus():
    x, y = blobs(n=200)
    tn.seed(0)
    net = mlp()
    net.forward(x[:1])
    net.layers[2].params["b"][...] = -50.0
    stats = tn.LayerStats(x[:64], every=1)
    tn.Model(net, tn.SoftmaxCrossEntropy(), tn.SGD(lr=0.1)).fit(x, y, epochs=1, batch_size=32,
                                                                 seed=0, callbacks=[stats])
    assert stats.latest("dead")["3 ReLU"] == 1.0
    assert any("3 ReLU" in p and "dead" in p for p in stats.problems())
    # dead units get no gradient, so the layer feeding them never moves again
    assert stats.history["update_ratio"][2][-1] == 0.0


def test_layer_stats_refuses_a_bad_every():
    with pytest.raises(tn.ConfigError):
        tn.LayerStats(np.zeros((2, 3)), every=0)


# ================================================================ the dashboard (course tooling)
def test_layer_dashboard_draws_live_and_static(monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tinynn.course import viz

    updates = []

    class Handle:
        def update(self, fig):
            updates.append(fig)

    monkeypatch.setattr(viz, "_display_handle", lambda fig: Handle())
    x, y = blobs(n=200)
    dashboard = viz.LayerDashboard(x[:64], every=2, record_every=1, min_interval=0)
    m = tn.Model(mlp(), tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3))
    m.fit(x, y, epochs=2, batch_size=32, seed=0, callbacks=[dashboard])
    assert len(updates) == dashboard.updates > 3
    assert all(fig is dashboard.figure for fig in updates)
    assert len(dashboard.figure.axes) == 4
    assert len(dashboard.stats.steps) == 14
    assert len(dashboard.figure.axes[3].get_lines()) >= 3  # a line per Dense, plus the 1e-3 mark
    fig = viz.plot_layer_stats(dashboard.stats, title="after training")
    assert len(fig.axes) == 4 and len(fig.axes[1].get_lines()) == 2  # the two ReLU layers
    assert len(dashboard.figure.legends) == 1  # redraws replace the legend, never stack them
    plt.close("all")


def test_bin_counts_keep_every_value_and_put_the_overflow_in_the_end_bins():
    from tinynn.diagnostics import bin_counts
    counts = bin_counts(np.array([-5.0, -1.0, -0.2, 0.0, 0.3, 1.0, 7.0, np.nan]), [-1, 0, 1])
    assert counts.tolist() == [3, 4]      # -5 clipped to -1; 1.0 and 7.0 in the last bin
    assert counts.dtype.kind in "iu"


def test_activation_histograms_show_a_saturated_tanh_layer():
    x, _ = blobs(n=64)
    tn.seed(0)
    big = tn.Net([tn.Dense(32, init=lambda shape, dtype: tn.initializers.normal(shape, dtype, 3.0)),
                  tn.Tanh()])
    rows = tn.activation_histograms(big, x, np.linspace(-1, 1, 21))
    assert [row["layer"] for row in rows] == ["0 Dense", "1 Tanh"]
    tanh = rows[1]["counts"]
    assert tanh.sum() == 64 * 32
    assert (tanh[0] + tanh[-1]) / tanh.sum() > 0.5     # most outputs within 0.1 of ±1


def test_layer_stats_with_bins_records_histograms_read_only():
    x, _ = blobs(n=64)
    plain, _ = fit_params([])
    bins = np.linspace(-3, 3, 13)
    stats = tn.LayerStats(x, every=2, bins=bins, grad_bins=np.linspace(-8, 0, 9))
    watched, history = fit_params([stats])
    assert all(np.array_equal(plain[k], watched[k]) for k in plain)
    assert stats.layers == ["0 Dense", "1 ReLU", "2 Dropout", "3 Dense"]
    records = len(stats.steps)
    hist = stats.hist_matrix("1 ReLU")
    assert hist.shape == (12, records) and np.all(hist.sum(axis=0) == 64 * 16)
    assert hist[:6].sum() == 0 and hist[6].sum() > 0   # ReLU: nothing below 0, zeros in [0, 0.5)
    grads = stats.hist_matrix(0, "grad_hist")
    assert grads.shape == (8, records) and np.all(grads.sum(axis=0) == 12 * 16 + 16)
    assert stats.hist_matrix("1 ReLU", "grad_hist") is None      # no parameters
    assert "hist" not in tn.LayerStats(x).history                # no bins: no histograms
    assert tn.LayerStats(x).hist_matrix(0) is None


def test_layer_stats_refuses_bins_that_are_not_ascending_edges():
    for bins in ([1.0], [0.0, 1.0, 0.5], np.zeros((2, 2))):
        with pytest.raises(tn.ConfigError):
            tn.LayerStats(np.zeros((2, 3)), bins=bins)


def test_layer_histograms_draw_as_images_and_live_in_the_dashboard(monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from tinynn.course import viz

    updates = []

    class Handle:
        def update(self, fig):
            updates.append(fig)

    monkeypatch.setattr(viz, "_display_handle", lambda fig: Handle())
    x, y = blobs(n=200)
    tn.seed(0)
    net = tn.Net([tn.Dense(16), tn.Tanh(), tn.Dense(16), tn.Tanh(), tn.Dense(4)])
    dashboard = viz.LayerHistogramDashboard(x[:64], bins=np.linspace(-1, 1, 21), layers="Tanh",
                                            every=2, record_every=1, min_interval=0)
    m = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3))
    m.fit(x, y, epochs=2, batch_size=32, seed=0, callbacks=[dashboard])
    assert len(updates) == dashboard.updates > 3
    axes = dashboard.figure.axes
    assert len(axes) == 8                                  # four panels, a row of four below
    assert [ax.get_title() for ax in axes[4:6]] == ["layer 1 Tanh", "layer 3 Tanh"]
    assert all(len(ax.get_images()) == 1 for ax in axes[4:6])
    assert not axes[6].axison and not axes[7].axison       # no third tanh layer: left blank
    assert len(axes[3].get_lines()) >= 3                   # the four panels as before
    image = axes[4].get_images()[0].get_array()
    assert image.shape == (20, len(dashboard.stats.steps))
    fig = viz.plot_layer_histograms({"a": dashboard.stats, "b": dashboard.stats}, key="grad_hist")
    assert len(fig.axes) == 6 and all(len(ax.get_images()) == 1 for ax in fig.axes)
    plt.close("all")


# ================================================================ the notebook's exercise checks
def test_check_shuffle_names_the_mistakes(capsys):
    def right(x, y, seed):
        order = np.random.default_rng(seed).permutation(len(x))
        return x[order], y[order]

    def apart(x, y, seed):
        rng = np.random.default_rng(seed)
        return x[rng.permutation(len(x))], y[rng.permutation(len(y))]

    def todo(x, y, seed):
        raise NotImplementedError()

    assert exercises.check_shuffle(right)
    assert not exercises.check_shuffle(apart)
    assert not exercises.check_shuffle(lambda x, y, s: (x, y))
    assert not exercises.check_shuffle(todo)
    out = capsys.readouterr().out
    assert "DIFFERENT permutations" in out and "did not change the order" in out
    assert "not yet implemented" in out


def test_check_scaling_names_the_mistakes(capsys):
    assert exercises.check_scaling(lambda raw: raw.astype(np.float32) / 255)
    assert not exercises.check_scaling(lambda raw: raw.astype(np.float32))
    assert not exercises.check_scaling(lambda raw: raw // 255)
    assert not exercises.check_scaling(lambda raw: raw.astype(np.float32) / 256)
    out = capsys.readouterr().out
    assert "still 0–255" in out and "integer division" in out and "256" in out


def test_check_dead_fraction_names_the_mistakes(capsys):
    assert exercises.check_dead_fraction(lambda h: np.mean(np.all(h == 0, axis=0)), tn.dead_fraction)
    assert not exercises.check_dead_fraction(lambda h: np.mean(h == 0), tn.dead_fraction)
    assert not exercises.check_dead_fraction(lambda h: np.mean(np.all(h == 0, axis=1)), tn.dead_fraction)
    out = capsys.readouterr().out
    assert "zero ENTRIES" in out and "axis=1" in out


def test_check_inference_names_dropout_left_on(capsys):
    def right(net, x, y):
        return tn.accuracy(net.forward(x, training=False), y)

    def dropout_on(net, x, y):
        return tn.accuracy(net.forward(x, training=True), y)

    assert exercises.check_inference(right)
    assert not exercises.check_inference(dropout_on)
    assert "dropout is still on" in capsys.readouterr().out
