"""tinynn.course.viz: static plots return figures with the expected artists; live plots update one
figure through a display handle and leave no pyplot figure open."""
import subprocess
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # headless, for this test process only (never for notebook kernels)
import matplotlib.pyplot as plt  # noqa: E402

import tinynn as tn  # noqa: E402
from tinynn.course import viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


class FakeHandle:
    """Stands in for IPython's DisplayHandle: counts the in-place updates."""

    def __init__(self, fig):
        self.shown, self.updates = fig, 0

    def update(self, fig):
        assert fig is self.shown, "a live plot must keep updating the same figure"
        self.updates += 1


@pytest.fixture
def handles(monkeypatch):
    made = []

    def fake_display(fig):
        made.append(FakeHandle(fig))
        return made[-1]

    monkeypatch.setattr(viz, "_display_handle", fake_display)
    return made


def trained_toy_model(x, y, epochs=5, units=16):
    tn.seed(0)
    model = tn.Model(tn.Net([tn.Dense(units), tn.Tanh(), tn.Dense(int(y.max()) + 1)]),
                     tn.SoftmaxCrossEntropy(), tn.Adam(lr=0.05))
    model.fit(x, y, epochs=epochs, batch_size=32, seed=0)
    return model


def test_importing_viz_and_widgets_loads_neither_matplotlib_nor_ipywidgets():
    code = ("import sys, tinynn, tinynn.course.viz, tinynn.course.widgets; "
            "print(sorted(m for m in ('matplotlib', 'ipywidgets', 'IPython') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_class_probabilities_softmax_and_single_logit():
    p = viz.class_probabilities(np.array([[1000.0, 0.0, -5.0], [0.0, 0.0, 0.0]]))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert p[0, 0] == pytest.approx(1.0) and p[1, 2] == pytest.approx(1 / 3)
    q = viz.class_probabilities(np.array([[0.0], [50.0]]))
    np.testing.assert_allclose(q, [[0.5, 0.5], [0.0, 1.0]], atol=1e-12)
    # tn.functional.sigmoid: a very negative logit keeps its tiny probability (½(1 + tanh(x/2))
    # would round it to exactly 0)
    assert viz.class_probabilities(np.array([-40.0]))[0, 1] == pytest.approx(np.exp(-40.0), rel=1e-9)


def test_decision_boundary_draws_regions_boundary_and_every_class():
    x, y = tn.data.spirals(150, 3, noise=0.1, seed=0)
    model = trained_toy_model(x, y)
    fig = viz.plot_decision_boundary(model, x, y, resolution=40)
    (ax,) = fig.axes
    assert len(ax.images) == 1                      # the coloured regions
    assert ax.images[0].get_array().shape == (40, 40, 3)
    scatters = [c for c in ax.collections if c.get_label().startswith("class")]
    assert [s.get_label() for s in scatters] == ["class 0", "class 1", "class 2"]
    assert sum(len(s.get_offsets()) for s in scatters) == 150
    assert "accuracy" in ax.get_title()
    assert ax.get_xlabel() == "x₁"


def test_decision_boundary_accepts_a_net_an_axes_and_a_single_logit_output():
    x, y = tn.data.moons(100, noise=0.1, seed=1)
    tn.seed(1)
    net = tn.Net([tn.Dense(8), tn.ReLU(), tn.Dense(1)])
    net.forward(x[:1])
    fig, ax = plt.subplots()
    assert viz.plot_decision_boundary(net, x, y, ax=ax, resolution=20, title="mine") is fig
    assert ax.get_title() == "mine" and len(ax.images) == 1


def test_show_digits_grid_titles_and_wrong_predictions_in_red():
    images = np.random.default_rng(0).random((12, 784)).astype(np.float32)
    labels = np.arange(12) % 10
    predictions = labels.copy()
    predictions[3] = 9
    fig = viz.show_digits(images, labels, predictions, ncols=5)
    assert len(fig.axes) == 15                      # 3 rows × 5 columns, 3 left empty
    shown = [ax for ax in fig.axes if ax.images]
    assert len(shown) == 12 and shown[0].images[0].get_array().shape == (28, 28)
    assert shown[3].get_title() == "9 (true 3)"
    assert matplotlib.colors.to_hex(shown[3].title.get_color()) == "#d62728"
    assert shown[4].get_title() == "4"
    fig = viz.show_digits(images[:3].reshape(3, 28, 28), labels[:3])
    assert [ax.get_title() for ax in fig.axes] == ["0", "1", "2"]


def test_confusion_matrix_heat_map_with_counts_and_labels():
    counts = np.array([[5, 1, 0], [0, 7, 2], [1, 0, 9]])
    fig = viz.plot_confusion_matrix(counts)
    (ax,) = fig.axes
    assert len(ax.images) == 1 and len(ax.texts) == 9
    assert ax.texts[1].get_text() == "1"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")
    assert "0.840" in ax.get_title()                # 21 / 25 correct
    fig = viz.plot_confusion_matrix(counts, normalize=True, class_names=["a", "b", "c"])
    assert fig.axes[0].texts[0].get_text() == "0.83"
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()] == ["a", "b", "c"]


def test_weight_histograms_show_parameters_and_gradients_per_layer():
    x, y = tn.data.moons(64, seed=0)
    model = trained_toy_model(x, y, epochs=1)
    fig = viz.plot_weight_histograms(model.net)
    assert len(fig.axes) == 4                       # 2 Dense layers × (parameters, gradients)
    assert all(len(ax.patches) == 40 for ax in fig.axes)
    assert "layer 0 Dense parameters" in fig.axes[0].get_title()
    assert "gradients" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="no parameters yet"):
        viz.plot_weight_histograms(tn.Net([tn.Dense(3)]))


def test_lr_range_test_plot_marks_the_suggestion():
    from tinynn.course.widgets import lr_range_test
    x, y = tn.data.moons(200, noise=0.1, seed=0)
    model = trained_toy_model(x, y, epochs=0)
    result = lr_range_test(model, x, y, 1e-4, 10.0, num_steps=60, batch_size=32)
    fig = result.plot()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "learning rate"
    assert any(line.get_label().startswith("suggested") for line in ax.lines)


def test_live_plot_updates_one_figure_in_place_and_closes_it(handles):
    x, y = tn.data.moons(64, noise=0.1, seed=0)
    xv, yv = tn.data.moons(32, noise=0.1, seed=1)
    live = viz.LivePlot(metrics=("loss", "accuracy"), every=4, min_interval=0)
    model = trained_toy_model(x, y, epochs=0)
    model.fit(x, y, epochs=2, batch_size=8, validation=(xv, yv), seed=0, callbacks=[live])
    (handle,) = handles
    # 16 steps: a redraw at steps 4, 8, 12, 16, one per epoch end, one at the end of training
    assert handle.updates == live.updates == 4 + 2 + 1
    assert plt.get_fignums() == []                  # closed: no duplicate when the cell ends
    loss_ax, acc_ax = live.figure.axes
    assert [line.get_label() for line in loss_ax.lines] == ["train (each step)", "train (epoch)",
                                                           "validation"]
    assert len(loss_ax.lines[0].get_xdata()) == 16
    assert (loss_ax.get_xlabel(), acc_ax.get_xlabel(), acc_ax.get_ylabel()) == ("step", "epoch",
                                                                             "accuracy")
    assert len(acc_ax.lines) == 2 and len(acc_ax.lines[1].get_xdata()) == 2
    assert "step 16" in live.figure._suptitle.get_text()


def test_live_plot_throttles_redraws_by_time(handles):
    x, y = tn.data.moons(64, seed=0)
    live = viz.LivePlot(every=1, min_interval=3600)
    trained_toy_model(x, y, epochs=0).fit(x, y, epochs=1, batch_size=4, callbacks=[live])
    assert handles[0].updates == 2                  # the epoch end and the end of training only


def test_live_plot_log_scale_and_divergence(handles):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
    model = tn.Model(tn.Net([tn.Dense(1)]), tn.MSE(), tn.SGD(lr=50.0))
    live = viz.LivePlot(log_scale=True, every=1, min_interval=0)
    with pytest.warns(RuntimeWarning, match="diverged"), np.errstate(all="ignore"):
        history = model.fit(x, y, epochs=3, batch_size=8, callbacks=[live])
    assert history["stopped"].startswith("diverged")
    assert live.figure.axes[0].get_yscale() == "log"
    assert "diverged" in live.figure._suptitle.get_text()


def test_live_plot_outside_a_kernel_draws_nothing_on_screen_but_keeps_the_figure(capsys):
    x, y = tn.data.moons(64, seed=0)
    live = viz.LivePlot(every=2)
    trained_toy_model(x, y, epochs=0).fit(x, y, epochs=1, batch_size=16, callbacks=[live])
    assert live.handle is None and live.figure is not None
    assert capsys.readouterr().out == ""
    assert plt.get_fignums() == []


def test_live_plot_rejects_a_bad_every():
    with pytest.raises(ValueError, match="every"):
        viz.LivePlot(every=0)


def test_live_decision_boundary_redraws_regions_and_loss(handles):
    x, y = tn.data.moons(64, noise=0.1, seed=0)
    live = viz.LiveDecisionBoundary(x, y, every=4, min_interval=0, resolution=20)
    trained_toy_model(x, y, epochs=0).fit(x, y, epochs=2, batch_size=16, callbacks=[live])
    assert handles[0].updates == 2 + 2 + 1
    boundary, loss = live.figure.axes
    assert len(boundary.images) == 1 and "accuracy" in boundary.get_title()
    assert len(loss.lines[0].get_xdata()) == 8
    assert plt.get_fignums() == []


def test_live_plot_says_which_epoch_runs_and_waits_for_data_with_placeholders(handles):
    x, y = tn.data.moons(64, noise=0.1, seed=0)
    live = viz.LivePlot(metrics=("loss", "accuracy"), every=2, min_interval=0)
    titles, texts = [], []

    def record(fig):
        titles.append(fig._suptitle.get_text())
        texts.append([[t.get_text() for t in ax.texts] for ax in fig.axes])

    class Spy(tn.Callback):
        def on_batch_end(self, model, step, logs):
            if step % 2 == 0:                                  # just after each redraw
                record(live.figure)

    model = trained_toy_model(x, y, epochs=0)
    model.fit(x, y, epochs=2, batch_size=16, seed=0, callbacks=[live, Spy()])
    assert titles[0].startswith("epoch 1 · step 2")          # 4 steps per epoch
    assert titles[2].startswith("epoch 2 · step 6")
    assert any("after the first epoch" in t for t in texts[0][1])
    assert texts[0][0] == [] and texts[-1] == [[], []]
    assert live.figure._suptitle.get_text().startswith("2 epochs done · step 8")


def test_live_plot_before_the_first_step_shows_placeholders_not_empty_axes(handles):
    model = tn.Model(tn.Net([tn.Dense(2)]), tn.SoftmaxCrossEntropy(), tn.SGD(lr=0.1))
    model.history = {"loss": [], "step_loss": [], "stopped": None, "accuracy": []}
    live = viz.LivePlot(metrics=("loss", "accuracy"), min_interval=0)
    live.on_train_begin(model)
    for ax in live.figure.axes:
        assert not ax.lines and list(ax.get_yticks()) == [] and ax.texts


def test_live_plot_of_a_stopped_run_names_the_stop_not_a_finished_epoch(handles):
    x, y = tn.data.moons(64, noise=0.1, seed=0)

    class StopAtStep6(tn.Callback):
        def on_batch_end(self, model, step, logs):
            model.stop_training = step == 6

    live = viz.LivePlot(every=100)
    trained_toy_model(x, y, epochs=0).fit(x, y, epochs=3, batch_size=16,
                                          callbacks=[live, StopAtStep6()])
    title = live.figure._suptitle.get_text()
    assert "done" not in title and "step 6" in title and "stopped" in title, title


# ---------------------------------------------------------------- notebook 06: learned weights
def test_weight_images_show_one_unit_per_panel_on_a_scale_symmetric_around_zero():
    w = np.random.default_rng(0).standard_normal((784, 12))
    w[:, 2] *= 5
    fig = viz.show_weight_images(w, n=7, ncols=4)
    shown = [ax for ax in fig.axes if ax.images]
    assert len(fig.axes) == 8 and len(shown) == 7          # 2 rows × 4 columns, one left empty
    image = shown[2].images[0]
    assert image.get_array().shape == (28, 28)
    low, high = image.get_clim()
    assert low == -high and np.isclose(high, np.abs(w[:, 2]).max())
    assert shown[0].get_title() == "unit 0"
    fig = viz.show_weight_images(w[:, :3], titles=["a", "b", "c"])
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]


def test_notebook_13_plots_draw_every_character():
    chars = ".abc"
    fig = viz.plot_bigram_counts(np.arange(16).reshape(4, 4), chars)
    assert len(fig.axes[0].texts) == 2 * 16
    fig = viz.plot_embeddings(np.random.default_rng(0).standard_normal((4, 5)), chars)
    assert [t.get_text() for t in fig.axes[0].texts] == list(chars)


# ---------------------------------------------------------------- notebook 09: channels
def test_multichannel_conv_draws_every_channel_its_kernel_slice_and_the_output_pixel():
    rng = np.random.default_rng(0)
    x, w = rng.integers(0, 3, (5, 5, 3)), rng.integers(-1, 2, (3, 3, 3, 2))
    y = rng.integers(-5, 6, (3, 3, 2))
    fig = viz.draw_multichannel_conv(x, w, y, at=(1, 2), f=1)
    top, bottom = fig.axes[:4], fig.axes[4:]
    assert [ax.get_title() for ax in top[:3]] == [f"input channel {c}" for c in range(3)]
    assert top[3].get_title() == "output map 1"
    for c, ax in enumerate(top[:3]):                     # the window: 3×3 at row 1, column 2
        (box,) = ax.patches
        assert (box.get_xy(), box.get_width(), box.get_height()) == ((1.5, 0.5), 3, 3)
        np.testing.assert_array_equal(ax.images[0].get_array(), x[:, :, c])
    for c in range(3):                                   # filter 1's slice for each channel
        (ax,) = [a for a in bottom if a.get_title() == f"filter 1: slice for channel {c}"]
        np.testing.assert_array_equal(ax.images[0].get_array(), w[:, :, c, 1])
    assert top[3].patches[0].get_width() == 1
    plt.close(fig)
