"""tinynn.course.widgets driven from Python exactly as a user's clicks would drive them:
``slider.value = ...`` and ``button.click()``, then the effect on the model and the runs."""
import time

import numpy as np
import pytest

pytest.importorskip("ipywidgets")
matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")  # headless, for this test process only

import tinynn as tn  # noqa: E402
from tinynn.course import widgets  # noqa: E402
from tinynn.course.widgets import LearningRateLab, Playground, lr_range_test  # noqa: E402

PNG = b"\x89PNG"


@pytest.fixture(scope="module")
def moons():
    x, y = tn.data.moons(240, noise=0.15, seed=0)
    return (x[:200], y[:200]), (x[200:], y[200:])


@pytest.fixture
def lab(moons):
    (x, y), validation = moons
    lab = LearningRateLab(x, y, validation=validation, hidden=(16,), optimizer="adam", lr=0.01,
                          batch_size=32, epochs=2, range_test_steps=80)
    yield lab
    lab.stop()
    assert lab.wait(timeout=30), "a background run did not end"


def wait_until(condition, timeout=30.0):
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


# ------------------------------------------------------------------ helpers
def test_parse_hidden():
    assert widgets.parse_hidden("128, 64") == (128, 64)
    assert widgets.parse_hidden(" 32 ") == (32,)
    assert widgets.parse_hidden("") == ()
    for bad in ("a, 3", "0", "-4"):
        with pytest.raises(tn.ConfigError, match="hidden layers"):
            widgets.parse_hidden(bad)


def test_make_schedule_names():
    assert widgets.make_schedule("constant", 0.1, 100) == 0.1
    assert widgets.make_schedule("step decay", 0.1, 90)(30) == pytest.approx(0.01)
    cosine = widgets.make_schedule("cosine", 0.1, 100)
    assert cosine(0) == pytest.approx(0.1) and cosine(100) == pytest.approx(0.0)
    warm = widgets.make_schedule("warm-up + cosine", 0.1, 100)
    assert warm(0) == pytest.approx(0.01) and warm(9) == pytest.approx(0.1)
    with pytest.raises(tn.ConfigError):
        widgets.make_schedule("linear", 0.1, 10)


# ------------------------------------------------------------------ the lab
def test_lab_shows_as_a_widget_with_a_plot(lab):
    bundle = lab._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bytes(lab.plot.value).startswith(PNG)
    assert "tinynn-lr-lab" in lab.widget._dom_classes


def test_slider_sets_the_optimizer_learning_rate(lab):
    lab.lr_slider.value = 0.05
    assert lab.model.optimizer.lr == pytest.approx(0.05)
    assert lab.settings()["lr"] == pytest.approx(0.05)


def test_train_button_adds_a_run_with_its_history(lab):
    before = bytes(lab.plot.value)
    lab.train_button.click()
    assert lab.wait(timeout=60)
    (run,) = lab.runs
    assert run.steps == run.planned_steps == 2 * 7
    assert len(run.history["val_accuracy"]) == 2 and run.history["stopped"] is None
    assert run.model is lab.model and lab.error is None
    assert bytes(lab.plot.value).startswith(PNG) and bytes(lab.plot.value) != before
    assert lab.progress.value == run.planned_steps
    assert "run 1" in lab.status.value
    assert not lab.train_button.disabled and lab.stop_button.disabled


def test_every_run_starts_from_the_same_initial_weights(lab):
    first = lab.train(wait=True)
    lab.configure(lr=0.1, optimizer="sgd", batch_size=16, epochs=1)
    second = lab.train(wait=True)
    assert len(lab.runs) == 2 and lab.model is second.model
    assert isinstance(second.model.optimizer, tn.SGD) and second.planned_steps == 13
    # the first loss is measured before any update: same weights, same first batch → same loss
    assert second.history["step_loss"][0] != first.history["step_loss"][0]  # batch 16 vs 32
    third = lab.configure(batch_size=32, epochs=2).train(wait=True)
    assert third.history["step_loss"][0] == first.history["step_loss"][0]
    assert "run 3: sgd lr=1.0e-01 (constant), batch 32" in third.summary()


def test_stop_ends_a_background_run_early_and_leaves_a_working_model(moons):
    (x, y), _ = moons
    big_x, big_y = np.tile(x, (10, 1)), np.tile(y, 10)
    lab = LearningRateLab(big_x, big_y, hidden=(16,), lr=0.01, batch_size=16, epochs=30)
    lab.train_button.click()
    assert lab.running and not lab.stop_button.disabled and lab.train_button.disabled
    wait_until(lambda: lab.runs[0].steps >= 5)
    lab.stop_button.click()
    assert lab.wait(timeout=30)
    (run,) = lab.runs
    assert 5 <= run.steps < run.planned_steps == 30 * 125
    assert run.stopped_by_user and "stopped by you after" in run.summary()
    assert run.history["stopped"].startswith("stopped by a callback")
    assert np.isfinite(lab.model.predict(big_x)).all()
    assert lab.model.evaluate(big_x, big_y)["accuracy"] > 0.5
    assert not lab.train_button.disabled and lab.stop_button.disabled


def test_stop_that_lands_while_the_plot_redraws_is_still_reported(moons):
    # Stop can arrive at any moment of a step; the slowest moment is the redraw, after the
    # callback has already looked for a Stop request (a CI run once lost the note this way)
    (x, y), _ = moons
    lab = LearningRateLab(x, y, hidden=(8,), lr=0.01, batch_size=16, epochs=5)
    tick = lab._tick

    def tick_then_stop(step, describe):
        tick(step, describe)
        if step == 3:
            lab.stop()

    lab._tick = tick_then_stop
    run = lab.train(wait=True)
    assert run.steps == 3 and run.stopped_by_user, run.summary()
    assert "after 3 of 13 steps of the first epoch: " in run.summary()
    assert "(stopped by you after 3 of 65 steps)" in run.summary()


def test_slider_changes_the_rate_of_a_run_in_progress(moons):
    (x, y), _ = moons
    lab = LearningRateLab(np.tile(x, (10, 1)), np.tile(y, 10), hidden=(8,), lr=0.01,
                          batch_size=16, epochs=30)
    lab.train()
    try:
        wait_until(lambda: lab.runs[0].steps >= 2)
        lab.lr_slider.value = 0.002
        assert lab.runs[0].model.optimizer.lr == pytest.approx(0.002)
    finally:
        lab.stop()
        assert lab.wait(timeout=30)


def test_reset_reinitialises_and_clears_the_runs(lab):
    lab.train(wait=True)
    before = lab.model.net.state_dict()
    lab.reset_button.click()
    assert lab.runs == [] and lab.seed == 1
    after = lab.model.net.state_dict()
    assert not np.allclose(before["param.0.w"], after["param.0.w"])
    assert "seed 1" in lab.status.value


def test_range_test_suggests_a_sane_rate_and_use_suggestion_moves_the_slider(lab):
    assert lab.use_button.disabled
    result = lab.range_test(wait=True)
    assert result is lab.range_result
    assert 1e-4 < result.suggestion < 1.0
    assert result.suggestion == pytest.approx(result.min_loss_lr / 10)
    assert len(result.lrs) <= 80 and np.all(np.diff(result.lrs) > 0)
    assert "suggested learning rate" in lab.suggestion_label.value
    assert not lab.use_button.disabled
    lab.use_button.click()
    assert lab.lr_slider.value == pytest.approx(result.suggestion)
    assert lab.model.optimizer.lr == pytest.approx(result.suggestion)


def test_range_test_button_runs_in_the_background(lab):
    lab.range_button.click()
    assert lab.wait(timeout=60)
    assert lab.range_result is not None and lab.error is None


def test_lr_range_test_is_the_frameworks_with_a_plot(moons):
    """The course's lr_range_test runs tinynn.lr_range_test (tests/test_lr_finder.py) and adds
    plot(); the model is left as it was, schedule included."""
    (x, y), _ = moons
    results = []
    for run in (lr_range_test, tn.lr_range_test):
        tn.seed(0)
        model = tn.Model(tn.Net([tn.Dense(8), tn.ReLU(), tn.Dense(2)]), tn.SoftmaxCrossEntropy(),
                         tn.Momentum(lr=tn.CosineDecay(0.1, 100)))
        model.net.forward(x[:1])
        before = model.net.state_dict()
        results.append(run(model, x, y, 1e-5, 100.0, num_steps=100, batch_size=32))
        after = model.net.state_dict()
        assert all(np.array_equal(before[k], after[k]) for k in before)
        assert model.optimizer.t == 0 and isinstance(model.optimizer.schedule, tn.CosineDecay)
    ours, framework = results
    assert isinstance(ours, widgets.PlottableRangeTestResult) and hasattr(ours, "plot")
    assert isinstance(ours, tn.RangeTestResult) and str(ours) == str(framework)
    np.testing.assert_array_equal(ours.losses, framework.losses)
    with pytest.raises(tn.ConfigError):
        lr_range_test(model, x, y, 1.0, 0.1)


def test_smoothed_curves_use_the_bias_corrected_average_up_to_the_first_non_finite_loss():
    np.testing.assert_allclose(widgets._smooth([2.0, 4.0, float("nan"), 1.0], beta=0.5),
                               [2.0, 2.5 / 0.75])


def test_divergence_is_reported_without_file_paths(capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4)).astype(np.float32)
    y = (x @ rng.normal(size=(4, 1))).astype(np.float32)
    lab = LearningRateLab(x, y, hidden=(), optimizer="sgd", lr=10.0, batch_size=16, epochs=3)
    run = lab.train(wait=True)
    assert run.diverged and "diverged" in run.summary()
    err = capsys.readouterr().err
    assert "DivergenceWarning: Training diverged" in err and ".py" not in err
    assert np.isfinite(lab.model.predict(x)).all()


def test_bad_settings_are_reported_not_raised_from_a_click(lab):
    lab.hidden_text.value = "16, x"
    lab.train_button.click()
    assert lab.runs == [] and "error" in lab.status.value
    with pytest.raises(tn.ConfigError):
        lab.train(wait=True)
    with pytest.raises(tn.ConfigError, match="outside the slider"):
        lab.configure(lr=100.0)


def test_schedule_menu_gives_the_run_a_schedule(lab):
    lab.schedule_menu.value = "warm-up + cosine"
    run = lab.train(wait=True)
    assert isinstance(run.model.optimizer.schedule, tn.WarmUp)
    assert run.model.optimizer.lr < 0.01  # the cosine has decayed by the end


def test_lab_flattens_images():
    x = np.random.default_rng(0).random((64, 6, 6)).astype(np.float32)
    y = np.arange(64) % 3
    lab = LearningRateLab(x, y, hidden=(8,), epochs=1)
    assert isinstance(lab.model.net.layers[0], tn.Flatten)
    assert lab.train(wait=True).steps == 1


# ------------------------------------------------------------------ the playground
def test_playground_learns_moons_and_rebuilds_on_new_data():
    pg = Playground(dataset="moons", noise=0.1, n_samples=200, hidden=(8,), lr=0.05, epochs=30)
    assert bytes(pg.plot.value).startswith(PNG) and "tinynn-playground" in pg.widget._dom_classes
    pg.train(wait=True)
    assert pg.accuracy() > 0.85 and len(pg.losses) == 30 * 7
    pg.train(wait=True)                              # Train again continues from there
    assert len(pg.losses) == 60 * 7
    pg.dataset_menu.value = "spirals"
    assert pg.losses == [] and pg.model.net.layers[-1].units == 3 and len(pg.x) == 200
    pg.hidden_text.value = "8, 8"
    assert len(pg.model.net.layers) == 5
    pg.lr_slider.value = 0.01
    assert pg.model.optimizer.lr == pytest.approx(0.01)


def test_playground_stop_and_reset():
    pg = Playground(dataset="circles", n_samples=200, hidden=(8,), epochs=1000)
    pg.train_button.click()
    wait_until(lambda: pg.live_history is not None and len(pg.live_history["step_loss"]) >= 3)
    pg.stop_button.click()
    assert pg.wait(timeout=30)
    assert 3 <= len(pg.losses) < 1000 * 7
    assert np.isfinite(pg.model.predict(pg.x)).all()
    before = pg.model.net.state_dict()["param.0.w"]
    pg.reset_button.click()
    assert pg.seed == 1 and pg.losses == []
    assert not np.allclose(before, pg.model.net.state_dict()["param.0.w"])


# ------------------------------------------------------------------ issue 15: what the student reads
def test_summary_and_legend_report_a_rate_moved_during_the_run(moons):
    (x, y), _ = moons
    lab = LearningRateLab(x, y, hidden=(8,), optimizer="sgd", lr=1e-3, batch_size=16, epochs=2)
    tick = lab._tick

    def tick_and_move(step, describe):  # the slider moves between steps 5 and 6, as by hand
        tick(step, describe)
        if step == 5:
            lab.lr_slider.value = 0.03

    lab._tick = tick_and_move
    run = lab.train(wait=True)
    assert run.lr_changes == [(6, pytest.approx(0.03))]
    assert "lr=1.0e-03 → 3.0e-02 (moved during the run, at step 6)" in run.summary()
    assert "1.0e-03→3.0e-02" in run.label
    legend = lab.figure().legends[0]
    assert [t.get_text() for t in legend.get_texts()] == [run.label]
    lab._tick = tick
    still = lab.train(wait=True)
    assert still.lr_changes == [] and "lr=3.0e-02 (constant)" in still.summary()


def test_summary_counts_a_partial_epoch_as_steps_not_as_an_epoch(moons):
    (x, y), _ = moons
    lab = LearningRateLab(x, y, hidden=(8,), lr=0.01, batch_size=16, epochs=5)  # 13 steps/epoch
    tick = lab._tick

    def tick_then_stop(step, describe):
        tick(step, describe)
        if step == 30:
            lab.stop()

    lab._tick = tick_then_stop
    run = lab.train(wait=True)
    assert "after 2 epochs and 4 of 13 steps:" in run.summary(), run.summary()
    lab._tick = tick
    assert "after 5 epochs:" in lab.train(wait=True).summary()


def test_legend_and_curves_agree_and_are_readable(moons):
    (x, y), _ = moons
    lab = LearningRateLab(x[:64], y[:64], hidden=(4,), lr=0.01, batch_size=64, epochs=1)
    for _ in range(10):
        lab.train(wait=True)
    fig = lab.figure()
    loss_ax, metric_ax, _ = fig.axes
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    drawn = [line.get_label() for line in loss_ax.lines if not line.get_label().startswith("_")]
    assert labels == drawn == [run.label for run in lab.runs[-widgets.RUNS_SHOWN:]]
    assert len(metric_ax.lines) == widgets.RUNS_SHOWN
    assert min(t.get_fontsize() for t in fig.legends[0].get_texts()) >= 9
    assert f"last {widgets.RUNS_SHOWN} of 10 runs" in loss_ax.get_title()


def test_progress_bar_ends_full_when_the_range_test_ends(lab):
    lab.range_test(wait=True)
    assert lab.progress.value == lab.progress.max


def test_empty_range_test_axis_spans_the_slider_and_says_what_to_do(lab):
    lab.train(wait=True)
    lab.reset_button.click()
    range_ax = lab.figure().axes[2]
    assert range_ax.get_xlim() == pytest.approx((1e-5, 10.0))
    assert any("LR range test" in t.get_text() for t in range_ax.texts)


def test_playground_with_no_steps_yet_shows_a_placeholder_not_an_empty_frame():
    pg = Playground(dataset="moons", n_samples=100, hidden=(4,), epochs=10)
    loss_ax = pg.figure().axes[1]
    assert not loss_ax.lines and list(loss_ax.get_yticks()) == []
    assert any("Train" in t.get_text() for t in loss_ax.texts)


def test_playground_says_who_stopped_it(moons):
    pg = Playground(dataset="moons", n_samples=100, hidden=(4,), epochs=10)  # 4 steps/epoch
    tick = pg._tick

    def tick_then_stop(step, describe):
        tick(step, describe)
        if step == 6:
            pg.stop()

    pg._tick = tick_then_stop
    pg.train(wait=True)
    assert "(stopped by you after 6 of 40 steps)" in pg.status.value, pg.status.value
    assert "callback" not in pg.status.value


def test_dashboards_carry_a_picture_for_frontends_without_the_widget_state(lab):
    for dashboard in (lab, Playground(dataset="moons", n_samples=100, hidden=(4,))):
        bundle = dashboard._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle
        assert bundle["image/png"].startswith(PNG)
        assert bundle["text/plain"] == (f"{type(dashboard).__name__} "
                                        "(run the notebook to use it)")
