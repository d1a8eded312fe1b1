"""Net and Model: lazy building, parameters in and out, fit and its history, callbacks,
reproducibility, the dtype rule, and a real MNIST run (save/load: test_saving.py)."""
import sys

import numpy as np
import pytest

import tinynn as tn
from conftest_helpers import (StudentDense, offline_mnist, one_blas_thread, params_equal,
                              small_classifier, toy_data)


# ------------------------------------------------------------------ Net
def test_net_builds_lazily_on_the_first_forward():
    net = tn.Net([tn.Dense(5), tn.ReLU(), tn.Dense(2, bias=False)])
    assert net.params == [] and net.state_dict() == {}
    y = net.forward(np.zeros((3, 4), np.float32))
    assert y.shape == (3, 2)
    assert {k: v.shape for k, v in net.state_dict().items()} == {
        "param.0.w": (4, 5), "param.0.b": (5,), "param.2.w": (5, 2)}
    assert [p.shape for p in net.params] == [(4, 5), (5,), (5, 2)]
    assert [g.shape for g in net.grads] == [(4, 5), (5,), (5, 2)]
    assert net.architecture() == [
        {"type": "Dense", "units": 5, "bias": True, "dtype": "float32",
         "params": {"w": [4, 5], "b": [5]}, "state": {}},
        {"type": "ReLU", "dtype": None, "params": {}, "state": {}},
        {"type": "Dense", "units": 2, "bias": False, "dtype": "float32",
         "params": {"w": [5, 2]}, "state": {}}]


def test_params_are_live_arrays_and_state_dict_returns_copies():
    tn.seed(0)
    net = tn.Net([tn.Dense(3)])
    net.forward(np.ones((1, 2)))
    copy = net.state_dict()
    copy["param.0.w"][...] = 42.0
    assert not np.any(net.layers[0].params["w"] == 42.0)
    net.params[0][...] = 7.0  # the live array: changes the layer
    assert np.all(net.layers[0].params["w"] == 7.0)


def test_state_dict_round_trip():
    tn.seed(0)
    x, y = toy_data()
    model = small_classifier()
    model.predict(x)
    saved = model.net.state_dict()
    model.fit(x, y, epochs=2, batch_size=16)
    assert not params_equal(model.net.state_dict(), saved)
    model.net.load_state_dict(saved)
    assert params_equal(model.net.state_dict(), saved)


@pytest.mark.parametrize("change, words", [
    (lambda p: p.pop("param.0.b"), ["expected arrays", "param.0.b"]),
    (lambda p: p.update({"param.9.w": np.zeros(1)}), ["param.9.w"]),
    (lambda p: p.update({"param.0.w": np.zeros((8, 4))}), ["param.0.w", "(4, 8)", "(8, 4)"]),
], ids=["missing_name", "extra_name", "wrong_shape"])
def test_load_state_dict_refuses_wrong_names_and_shapes(change, words):
    tn.seed(0)
    net = tn.Net([tn.Dense(8), tn.ReLU(), tn.Dense(3)])
    net.forward(np.zeros((1, 4), np.float32))
    before = net.state_dict()
    bad = net.state_dict()
    for p in bad.values():
        p += 1.0  # so a partial write would show
    change(bad)
    with pytest.raises(tn.ShapeError) as info:
        net.load_state_dict(bad)
    assert all(w in str(info.value) for w in words), str(info.value)
    assert params_equal(net.state_dict(), before)  # nothing written


# ------------------------------------------------------------------ fit and history
def test_progress_bars_are_optional(monkeypatch):
    """Without tqdm (an optional dependency) fit and the range test still run, with no bar."""
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm...` raise ImportError
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    tn.seed(0)
    x, y = toy_data()
    model = small_classifier()
    assert len(model.fit(x, y, epochs=2, batch_size=16, progress=True)["loss"]) == 2
    result = tn.lr_range_test(model, x, y, end_lr=1e-2, num_steps=5, batch_size=16, progress=True)
    assert len(result.lrs) == 5


def test_fit_returns_the_documented_history():
    tn.seed(0)
    x, y = toy_data(n=50)
    model = small_classifier()
    history = model.fit(x, y, epochs=3, batch_size=16, validation=(x[:20], y[:20]))
    assert set(history) == {"loss", "accuracy", "val_loss", "val_accuracy", "step_loss", "stopped"}
    assert history["stopped"] is None
    assert len(history["step_loss"]) == 3 * 4  # ceil(50 / 16) = 4 batches per epoch
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert len(history[key]) == 3 and all(isinstance(v, float) for v in history[key])
    assert history["loss"][-1] < history["loss"][0]
    assert history["val_accuracy"][-1] == model.evaluate(x[:20], y[:20])["accuracy"]
    assert model.history is history


def test_fit_learns_a_toy_problem():
    tn.seed(1)
    x, y = toy_data(n=120)
    model = small_classifier(hidden=16)
    model.fit(x, y, epochs=20, batch_size=16)
    result = model.evaluate(x, y)
    assert set(result) == {"loss", "accuracy"} and result["accuracy"] > 0.95


def test_regression_history_has_no_accuracy():
    tn.seed(0)
    x = np.random.default_rng(0).standard_normal((32, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    model = tn.Model(tn.Net([tn.Dense(1)]), tn.MSE(), tn.SGD(lr=0.1))
    history = model.fit(x, y, epochs=30, batch_size=8)
    assert "accuracy" not in history and "accuracy" not in model.evaluate(x, y)
    assert history["loss"][-1] < 1e-3


def test_train_step_predict_and_evaluate():
    tn.seed(0)
    x, y = toy_data(n=30)
    model = small_classifier()
    first = model.train_step(x[:10], y[:10])
    assert isinstance(first, float)
    assert model.optimizer.t == 1
    for _ in range(20):
        last = model.train_step(x[:10], y[:10])
    assert last < first
    full = model.net.forward(x, training=False)
    np.testing.assert_allclose(model.predict(x, batch_size=7), full, rtol=1e-6)
    assert model.predict(x.astype(np.float64)).dtype == np.float32  # cast to the net's dtype


# ------------------------------------------------------------------ the dtype rule
def test_model_honours_a_dtype_declared_on_unbuilt_layers():
    """Dense(8, dtype=np.float64), built lazily: the model converts float32 data to float64
    (it used to convert to float32, which the layer then refused)."""
    tn.seed(0)
    x, y = toy_data(n=24)
    net = tn.Net([tn.Dense(8, dtype=np.float64), tn.ReLU(), tn.Dense(3, dtype=np.float64)])
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-2))
    assert model.dtype == np.float64
    history = model.fit(x, y, epochs=2, batch_size=8)
    assert history["stopped"] is None
    assert {p.dtype for p in net.params} == {np.dtype(np.float64)}
    assert model.predict(x).dtype == np.float64


def test_a_declared_dtype_on_a_later_layer_counts_too():
    net = tn.Net([tn.Flatten(), tn.Dense(3, dtype=np.float64)])
    model = tn.Model(net, tn.MSE(), tn.SGD())
    assert model.predict(np.ones((2, 2, 2), np.float32)).dtype == np.float64


@pytest.mark.parametrize("layers, model_dtype, expected", [
    (lambda: [tn.Dense(3)], np.float32, np.float32),        # the default
    (lambda: [tn.Dense(3)], np.float64, np.float64),        # Model(dtype=) for undeclared layers
    (lambda: [tn.Dense(3, dtype=np.float32)], np.float64, np.float32),  # the layer's declaration
    (lambda: [tn.Dense(3, in_features=2)], np.float64, np.float32),     # built params win
], ids=["default", "model_dtype", "declared_wins", "built_wins"])
def test_model_dtype_rule(layers, model_dtype, expected):
    model = tn.Model(tn.Net(layers()), tn.MSE(), tn.SGD(), dtype=model_dtype)
    assert model.dtype == expected
    assert model.predict(np.ones((2, 2))).dtype == expected
    assert model.dtype == expected  # and it stays after the net is built


def conv_first_net():
    from tinynn.conv import Conv2D, MaxPool2D
    return tn.Net([Conv2D(4, 3, padding="same"), MaxPool2D(2), tn.ReLU(), tn.Flatten(), tn.Dense(3)])


@pytest.mark.parametrize("make_net, shape", [
    (lambda: tn.Net([tn.Dense(6), tn.ReLU(), tn.Dense(3)]), (8, 5)),
    (conv_first_net, (8, 6, 6, 1)),
    (conv_first_net, (8, 6, 6, 2)),
], ids=["dense_first", "conv_first_one_channel", "conv_first_two_channels"])
def test_train_step_skips_only_the_unused_input_gradient(make_net, shape):
    """Model calls net.backward(grad, input_grad=False) (the fast path: no dL/d(data)); the
    update must be bit for bit that of the full net.backward followed by optimizer.step."""
    gen = np.random.default_rng(3)
    x = gen.standard_normal(shape).astype(np.float32)
    y = gen.integers(0, 3, len(x))
    models = []
    for _ in range(2):
        tn.seed(5)
        models.append(tn.Model(make_net(), tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-2)))
        models[-1].predict(x)  # builds the lazy layers now, from the same seed
    shortcut, reference = models
    for _ in range(3):  # the reference: the textbook step
        value, grad = reference.loss(reference.net.forward(x, training=True), y)
        assert reference.net.backward(grad).shape == x.shape
        reference.optimizer.step(reference.net.params, reference.net.grads)
    for _ in range(3):
        shortcut.train_step(x, y)
    assert params_equal(shortcut.net.state_dict(), reference.net.state_dict())


def test_an_instance_hook_on_the_first_layer_runs_during_fit():
    tn.seed(0)
    x, y = toy_data(n=20)
    model = small_classifier()
    model.predict(x)
    first, calls = model.net.layers[0], []
    original = first.backward
    first.backward = lambda grad: calls.append(grad.shape) or original(grad)
    model.fit(x, y, epochs=2, batch_size=10)
    assert calls == [(10, 8)] * 4


def test_a_student_layer_first_trains():
    tn.seed(1)
    x, y = toy_data(n=120)
    model = tn.Model(tn.Net([StudentDense(16), tn.ReLU(), tn.Dense(3)]), tn.SoftmaxCrossEntropy(),
                     tn.Adam(lr=1e-2))
    start = model.net.layers
    model.fit(x, y, epochs=20, batch_size=16)
    assert model.evaluate(x, y)["accuracy"] > 0.95 and model.net.layers is start


def test_a_diverging_run_gives_one_tinynn_warning():
    """Numpy's own overflow warnings stay inside the training step; the student sees one
    DivergenceWarning (a TinynnWarning and a RuntimeWarning) that says what to do."""
    import warnings
    tn.seed(0)
    x, y = toy_data(n=40)
    model = small_classifier(optimizer=tn.SGD(lr=1e6))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(x, y, epochs=3, batch_size=10)
    assert history["stopped"].startswith("diverged")
    assert [w.category for w in caught] == [tn.DivergenceWarning]
    assert issubclass(tn.DivergenceWarning, tn.TinynnWarning)
    assert issubclass(tn.DivergenceWarning, RuntimeWarning)
    assert "learning rate" in str(caught[0].message)
    with warnings.catch_warnings(record=True) as caught:  # outside fit numpy still warns
        warnings.simplefilter("always")
        np.float32(3e38) * np.float32(10)
    assert [w.category for w in caught] == [RuntimeWarning]


def batchnorm_net():
    from tinynn.norm import BatchNorm
    return tn.Net([tn.Dense(8), BatchNorm(), tn.Tanh(), tn.Dense(8), BatchNorm(), tn.Tanh(),
                   tn.Dense(1)])


def regression_data():
    gen = np.random.default_rng(0)
    x = gen.standard_normal((64, 3)).astype(np.float32)
    return x, (x @ np.array([[1.0], [-2.0], [0.5]]) + 3.0).astype(np.float32)


def test_divergence_rolls_back_batchnorm_statistics_too():
    tn.seed(0)
    x, y = regression_data()
    model = tn.Model(batchnorm_net(), tn.MSE(), tn.SGD(lr=1e6))
    model.predict(x)
    start = model.net.state_dict()  # the first epoch begins well: it is the rollback point
    with np.errstate(all="ignore"), pytest.warns(tn.DivergenceWarning, match="epoch 1"):
        history = model.fit(x, y, epochs=5, batch_size=16)
    assert history["stopped"].startswith("diverged") and len(history["step_loss"]) > 1
    assert params_equal(model.net.state_dict(), start)
    pred = model.predict(x)
    assert np.isfinite(pred).all() and np.ptp(pred) > 0


def test_divergence_on_the_first_step_restores_batchnorm_statistics():
    tn.seed(0)
    x, y = regression_data()
    model = tn.Model(batchnorm_net(), tn.MSE(), tn.SGD(lr=0.1))
    model.predict(x)
    start = model.net.state_dict()
    with np.errstate(all="ignore"), pytest.warns(tn.DivergenceWarning, match="very first step"):
        model.fit(x, np.full_like(y, 3e38), epochs=2, batch_size=16)  # the loss overflows
    assert params_equal(model.net.state_dict(), start)
class RecordParams(tn.Callback):
    def on_train_begin(self, model):
        self.seen = [model.net.state_dict()]

    def on_batch_end(self, model, step, logs):
        self.seen.append(model.net.state_dict())


def test_average_weights_puts_the_moving_average_into_the_net():
    x, y = toy_data(n=40)
    tn.seed(0)
    model = small_classifier()
    recorder, averager = RecordParams(), tn.AverageWeights(decay=0.7)
    model.fit(x, y, epochs=3, batch_size=10, callbacks=[recorder, averager])
    assert len(recorder.seen) == 13  # the start and 12 steps
    expected = {name: value.astype(np.float64) for name, value in recorder.seen[0].items()}
    for params in recorder.seen[1:]:  # a_t = 0.7·a_(t−1) + 0.3·θ_t, written out by hand
        expected = {name: 0.7 * expected[name] + 0.3 * params[name] for name in expected}
    final = model.net.state_dict()
    for name in expected:
        np.testing.assert_allclose(final[name], expected[name], rtol=1e-5, atol=1e-6)
    assert not params_equal(final, recorder.seen[-1])  # not simply the last step's weights


def test_average_weights_is_not_used_after_a_divergence():
    x, y = toy_data(n=40)
    tn.seed(0)
    model = small_classifier(optimizer=tn.SGD(lr=1e6))
    recorder = RecordParams()
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="learning rate"):
        history = model.fit(x, y, epochs=3, batch_size=10,
                            callbacks=[recorder, tn.AverageWeights(0.9)])
    assert history["stopped"].startswith("diverged")
    assert params_equal(model.net.state_dict(), recorder.seen[0])  # rolled back, not averaged


def test_epochs_zero_trains_nothing():
    x, y = toy_data(n=10)
    model = small_classifier()
    history = model.fit(x, y, epochs=0)
    assert history["step_loss"] == [] and history["loss"] == [] and history["stopped"] is None


class Recorder(tn.Callback):
    def __init__(self, stop_at_step=None, stop_at_epoch=None):
        self.events, self.stop_at_step, self.stop_at_epoch = [], stop_at_step, stop_at_epoch

    def on_train_begin(self, model):
        self.events.append("train_begin")

    def on_epoch_begin(self, model, epoch):
        self.events.append(f"epoch_begin {epoch}")

    def on_batch_end(self, model, step, logs):
        self.events.append(f"batch_end {step}")
        assert set(logs) == {"loss"}
        if step == self.stop_at_step:
            model.stop_training = True

    def on_epoch_end(self, model, epoch, logs):
        self.events.append(f"epoch_end {epoch}")
        assert "loss" in logs and "accuracy" in logs
        if epoch == self.stop_at_epoch:
            model.stop_training = True

    def on_train_end(self, model, history):
        self.events.append("train_end")


def test_callbacks_are_called_in_order():
    x, y = toy_data(n=20)
    first, second = Recorder(), Recorder()
    small_classifier().fit(x, y, epochs=2, batch_size=10, callbacks=[first, second])
    assert first.events == second.events == [
        "train_begin",
        "epoch_begin 0", "batch_end 1", "batch_end 2", "epoch_end 0",
        "epoch_begin 1", "batch_end 3", "batch_end 4", "epoch_end 1",
        "train_end"]


def test_stop_training_from_a_batch_callback_stops_after_that_step():
    x, y = toy_data(n=40)
    recorder = Recorder(stop_at_step=3)
    history = small_classifier().fit(x, y, epochs=5, batch_size=10, callbacks=[recorder])
    assert len(history["step_loss"]) == 3
    assert "callback" in history["stopped"]
    assert recorder.events[-1] == "train_end"


def test_stop_training_from_an_epoch_callback_stops_after_that_epoch():
    x, y = toy_data(n=40)
    history = small_classifier().fit(x, y, epochs=5, batch_size=10,
                                     callbacks=[Recorder(stop_at_epoch=1)])
    assert len(history["loss"]) == 2 and len(history["step_loss"]) == 8
    assert "epoch 2" in history["stopped"]


# ------------------------------------------------------------------ reproducibility
def run(seed, fit_seed=None):
    """Build (with Dropout) and train under ``tn.seed(seed)``; return history and params."""
    tn.seed(seed)
    x, y = toy_data(n=64, seed=3)
    model = small_classifier(hidden=16, dropout=0.3)
    history = model.fit(x, y, epochs=3, batch_size=8, seed=fit_seed)
    return history, model.net.state_dict()


def test_same_seed_gives_bitwise_identical_training():
    history_a, params_a = run(11)
    history_b, params_b = run(11)
    assert history_a["step_loss"] == history_b["step_loss"]
    assert history_a == history_b
    assert params_equal(params_a, params_b)
    history_c, params_c = run(11, fit_seed=5)
    history_d, params_d = run(11, fit_seed=5)
    assert history_c["step_loss"] == history_d["step_loss"] and params_equal(params_c, params_d)


def test_different_seeds_give_different_training():
    history_a, params_a = run(11)
    history_b, params_b = run(12)
    assert history_a["step_loss"] != history_b["step_loss"]
    assert not params_equal(params_a, params_b)


def test_fit_seed_changes_only_the_shuffling():
    history_a, _ = run(11, fit_seed=1)
    history_b, _ = run(11, fit_seed=2)
    assert history_a["step_loss"] != history_b["step_loss"]


# ------------------------------------------------------------------ real MNIST
def test_mnist_mlp_reaches_97_percent(monkeypatch):
    """784-200-100-10 ReLU MLP, Adam 1e-3, batch 128: ≥ 97% test accuracy after 3 epochs
    (2 epochs land at 96.8–97.1% depending on the seed: too close to the line)."""
    (x_train, y_train), (x_test, y_test) = offline_mnist(monkeypatch)
    tn.seed(0)
    net = tn.Net([tn.Dense(200), tn.ReLU(), tn.Dense(100), tn.ReLU(), tn.Dense(10)])
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3))
    with one_blas_thread():
        history = model.fit(x_train, y_train, epochs=3, batch_size=128, seed=0)
    assert history["stopped"] is None
    accuracy = model.evaluate(x_test, y_test)["accuracy"]
    assert accuracy >= 0.97, f"test accuracy {accuracy:.4f}"


def test_fit_refuses_a_last_batch_of_one_sample_for_batchnorm_unless_drop_last():
    """A BatchNorm training batch of one sample is refused (it would output β and shrink the
    running variance), so fit says so before training instead of failing mid-epoch."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(33, 4)).astype(np.float32), np.arange(33) % 3

    def model():
        tn.seed(0)
        return tn.Model(tn.Net([tn.Dense(8), tn.BatchNorm(), tn.ReLU(), tn.Dense(3)]),
                        tn.SoftmaxCrossEntropy(), tn.Adam())

    untouched = model()
    untouched.predict(x[:2])  # builds the lazy layers
    before = untouched.net.state_dict()
    with pytest.raises(tn.ConfigError, match=r"33 samples in batches of 16 .* drop_last=True"):
        untouched.fit(x, y, batch_size=16)
    assert all(np.array_equal(before[k], v) for k, v in untouched.net.state_dict().items())
    assert len(model().fit(x, y, batch_size=16, drop_last=True)["step_loss"]) == 2
    assert len(model().fit(x, y, batch_size=11)["step_loss"]) == 3  # no batch of one: fine
