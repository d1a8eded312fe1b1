"""tinynn.course.viz, the plots of notebooks 04 (optimizer paths, loss curves on a real net) and 08
(learning curve, λ sweep, seed spread): each draws what its notebook relies on."""
import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # headless, for this test process only
import matplotlib.pyplot as plt  # noqa: E402

from tinynn.course import viz  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_learning_curve_plots_both_scores_against_size_on_a_log_axis():
    fig = viz.plot_learning_curve([500, 2000, 8000], [1.0, 0.99, 0.95], [0.88, 0.92, 0.93])
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["500", "2,000", "8,000"]
    assert [list(line.get_ydata()) for line in ax.lines[:2]] == [[1.0, 0.99, 0.95], [0.88, 0.92, 0.93]]


def test_sweep_rings_the_best_validation_value_and_spaces_values_evenly():
    fig = viz.plot_sweep([0.0, 1.0, 3.0, 10.0], [0.001, 0.007, 0.04, 0.38], [0.37, 0.31, 0.30, 0.51])
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "3", "10"]
    assert "best on validation: 3" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert ax.get_yscale() == "linear"


def test_seed_spread_has_one_panel_per_measure_with_every_seed_and_the_mean():
    per_seed = {"none": {"a": np.array([1.0, 2.0, 3.0]), "b": np.array([0.5, 0.6, 0.7])},
                "aug": {"a": np.array([4.0, 5.0, 6.0]), "b": np.array([0.1, 0.2, 0.3])}}
    fig = viz.plot_seed_spread(per_seed, {"a": "measure a"})
    assert len(fig.axes) == 2 and fig.axes[0].get_title() == "measure a"
    means = [line.get_ydata()[0] for line in fig.axes[0].lines[::2]]
    assert means == [2.0, 5.0]


def test_surface_panels_paths_and_report():
    surface = dict(f=lambda p: p[0] ** 2 + p[1] ** 2, start=(-1.0, 1.0), minimum=(0, 0),
                   xlim=(-2, 2), ylim=(-2, 2), levels=np.logspace(-2, 1, 5))
    path = np.array([[-1.0, 1.0], [-0.5, 0.5], [0.0, -0.0]])
    fig, axes = viz.surface_panels(2)
    assert len(axes) == 2
    viz.draw_surface(axes[0], surface, {"a": path, "b": path}, viz.two_line_title("SGD lr=0.1"))
    assert axes[0].get_title() == "SGD\nlr=0.1" and axes[0].get_legend() is not None
    assert viz.two_line_title("Momentum lr=0.3 μ=0.9") == "Momentum\nlr=0.3 μ=0.9"


def test_report_path_prints_the_end_and_the_first_step_below_a_thousandth(capsys):
    surface = dict(f=lambda p: p[0] ** 2 + p[1] ** 2)
    viz.report_path("path", surface, np.array([[1.0, 1.0], [0.1, 0.0], [0.0, -0.0]]))
    out = capsys.readouterr().out
    assert "ends at (  0.000,  0.000)" in out and "loss < 0.001 at step    2" in out


def test_step_losses_are_smoothed_one_line_per_run_on_a_log_axis():
    fig = viz.plot_step_losses({"SGD": np.linspace(2, 1, 100), "Adam": np.linspace(2, 0.5, 100)}, window=10)
    ax = fig.axes[0]
    assert len(ax.lines) == 2 and ax.get_yscale() == "log"
    assert len(ax.lines[0].get_ydata()) == 91
    assert np.isclose(ax.lines[0].get_ydata()[0], np.linspace(2, 1, 100)[:10].mean())
