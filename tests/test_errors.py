"""Robustness (issue 8): every classroom mistake gets a tinynn error that says what, where and
what to do, and never corrupts the model; faults (Ctrl-C, a crash mid-save, divergence) leave
the model usable and the previous file intact.

The table below is the bad-input suite: each case runs against a freshly built and saved model,
asserts the exception type and key words of its message, then checks that the model's parameters
and optimizer state are exactly as before and that it still predicts.
"""
import json
import os
import signal
import zipfile

import numpy as np
import pytest

import tinynn as tn
from conftest_helpers import params_equal, small_classifier, toy_data


class Env:
    """A built, trained, saved 4 → 8 → 3 classifier, its data, and files to load."""

    def __init__(self, tmp_path):
        tn.seed(0)
        self.tmp = tmp_path
        self.x, self.y = toy_data(n=20)
        self.model = small_classifier()
        self.model.fit(self.x, self.y, epochs=1, batch_size=5)
        self.saved = self.model.save(tmp_path / "good.npz")

    @property
    def net(self):
        return self.model.net

    def fit(self, x=None, y=None, **kwargs):
        kwargs.setdefault("batch_size", 5)
        return self.model.fit(self.x if x is None else x, self.y if y is None else y, **kwargs)

    def with_x(self, index, value):
        x = self.x.copy()
        x[index] = value
        return x

    def file(self, name, data=None, raw=None):
        """Write a file into the test folder: arrays via np.savez, or raw bytes."""
        path = self.tmp / name
        if raw is not None:
            path.write_bytes(raw)
        else:
            np.savez(path, **data)
        return path

    def saved_arrays(self):
        with np.load(self.saved) as f:
            return {key: f[key] for key in f.files}

    def tampered(self, name, **changes):
        data = self.saved_arrays()
        for key, value in changes.items():
            key = key.replace("__", ".")
            if value is None:
                del data[key]
            else:
                data[key] = value
        return self.file(name, data)

    def load(self, path):
        return self.model.load(path)


def other_architecture(env):
    tn.seed(1)
    other = tn.Model(tn.Net([tn.Dense(16), tn.ReLU(), tn.Dense(3)]), tn.SoftmaxCrossEntropy(),
                     tn.Adam())
    other.predict(env.x)
    return other.save(env.tmp / "other.npz")


class Payload:
    """Unpickling this runs a shell command (creates ``marker``): the classic pickle attack."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def pickled_model_file(env):
    """A model file whose parameter is a pickled object array (np.savez pickles it silently)."""
    data = env.saved_arrays()
    data["param.0.b"] = np.array([Payload(env.tmp / "pwned")], dtype=object)
    return env.file("pickled.npz", data)


def fresh_unbuilt_save(env):
    return small_classifier().save(env.tmp / "never.npz")


F32 = np.float32
CASES = [
    # ---- ranks and widths: the error names the layer and both shapes
    ("net_input_rank_1", lambda e: e.net.forward(np.zeros(4, F32)),
     tn.ShapeError, ["Net", "(4,)", "x[None]"]),
    ("dense_input_rank_3", lambda e: e.net.forward(np.zeros((2, 4, 1), F32)),
     tn.ShapeError, ["Dense(units=8", "(2, 4, 1)", "Flatten"]),
    ("dense_wrong_width", lambda e: e.net.forward(np.zeros((2, 5), F32)),
     tn.ShapeError, ["Dense(units=8", "(batch, 4)", "(2, 5)"]),
    ("fit_wrong_width", lambda e: e.fit(x=e.x[:, :3]),
     tn.ShapeError, ["Dense(units=8", "(batch, 4)", ", 3)"]),
    ("predict_wrong_width", lambda e: e.model.predict(np.zeros((2, 6))),
     tn.ShapeError, ["Dense(units=8", "(batch, 4)", "(2, 6)"]),
    ("fit_x_rank_1", lambda e: e.fit(x=np.zeros(20, F32)),
     tn.ShapeError, ["non-empty batch", "(20,)", "x[None]"]),
    ("validation_wrong_width", lambda e: e.fit(validation=(e.x[:, :2], e.y)),
     tn.ShapeError, ["Dense(units=8", "(batch, 4)", ", 2)"]),
    ("x_y_length_mismatch", lambda e: e.fit(y=e.y[:-1]),
     tn.ShapeError, ["20 samples", "19"]),
    ("loss_length_mismatch", lambda e: tn.MSE()(np.zeros((3, 2)), np.zeros((2, 2))),
     tn.ShapeError, ["MSE", "3 samples", "2"]),
    ("mse_target_shape", lambda e: tn.MSE()(np.zeros((3, 2)), np.zeros((3, 1))),
     tn.ShapeError, ["target shape (3, 1)", "pred shape (3, 2)"]),
    ("softmax_logits_rank_1", lambda e: tn.SoftmaxCrossEntropy()(np.zeros(3), np.zeros(3, int)),
     tn.ShapeError, ["logits", "(batch, classes)", "(3,)"]),
    # ---- dtypes
    ("string_array_predict", lambda e: e.model.predict(np.array([["a", "b", "c", "d"]])),
     tn.ShapeError, ["numeric", "<U1"]),
    ("string_array_net", lambda e: e.net.forward(np.array([["a", "b", "c", "d"]])),
     tn.ShapeError, ["Net", "floating-point", "<U1"]),
    ("float64_into_float32_net", lambda e: e.net.forward(np.zeros((2, 4))),
     tn.ShapeError, ["Dense(units=8", "float32", "float64"]),
    ("int_into_net", lambda e: e.net.forward(np.zeros((2, 4), np.int64)),
     tn.ShapeError, ["floating-point", "int64"]),
    ("list_into_net", lambda e: e.net.forward([[0.0, 1.0, 2.0, 3.0]]),
     tn.ShapeError, ["floating-point numpy array", "list"]),
    # ---- empty batches
    ("empty_fit", lambda e: e.fit(x=np.zeros((0, 4), F32), y=np.zeros(0, np.int64)),
     tn.ShapeError, ["non-empty batch", "(0, 4)"]),
    ("empty_predict", lambda e: e.model.predict(np.zeros((0, 4), F32)),
     tn.ShapeError, ["non-empty batch", "(0, 4)"]),
    ("empty_net_forward", lambda e: e.net.forward(np.zeros((0, 4), F32)),
     tn.ShapeError, ["non-empty batch", "(0, 4)"]),
    ("empty_loss", lambda e: tn.SoftmaxCrossEntropy()(np.zeros((0, 3)), np.zeros(0, int)),
     tn.ShapeError, ["empty batch", "(0, 3)"]),
    # ---- labels
    ("labels_above_range", lambda e: e.fit(y=e.y + 1),
     tn.ShapeError, ["labels must lie in [0, 2]", "3 outputs", "max 3"]),
    ("labels_negative", lambda e: e.fit(y=e.y - 1),
     tn.ShapeError, ["labels must lie in [0, 2]", "min -1"]),
    ("labels_out_of_range_evaluate", lambda e: e.model.evaluate(e.x, e.y + 5),
     tn.ShapeError, ["labels must lie in [0, 2]", "max 7"]),
    ("labels_out_of_range_train_step", lambda e: e.model.train_step(e.x, e.y * 9),
     tn.ShapeError, ["labels must lie in [0, 2]", "max 18"]),
    ("validation_labels_out_of_range", lambda e: e.fit(validation=(e.x, e.y + 3)),
     tn.ShapeError, ["labels must lie in [0, 2]"]),
    ("non_integer_labels", lambda e: e.fit(y=e.y + 0.5),
     tn.ShapeError, ["class indices must be integers", "float64"]),
    ("string_labels", lambda e: e.fit(y=e.y.astype(str)),
     tn.ShapeError, ["class indices must be integers", "<U"]),
    ("bool_labels", lambda e: e.fit(y=e.y > 0),
     tn.ShapeError, ["class indices must be integers", "bool"]),
    # ---- one-hot versus index confusion
    ("one_hot_wrong_width", lambda e: e.fit(y=np.eye(5)[e.y]),
     tn.ShapeError, ["one-hot of shape (20, 3)", "(20, 5)"]),
    ("labels_as_a_column", lambda e: e.fit(y=e.y[:, None]),
     tn.ShapeError, ["class indices of shape (20,)", "(20, 1)"]),
    ("probabilities_not_one_hot", lambda e: e.fit(y=np.full((20, 3), 1 / 3)),
     tn.ShapeError, ["must be one-hot", "integer class indices"]),
    ("two_ones_in_a_row", lambda e: e.fit(y=np.eye(3)[e.y] + np.eye(3)[(e.y + 1) % 3]),
     tn.ShapeError, ["must be one-hot", "one 1 per row"]),
    # ---- NaN / inf in inputs and targets
    ("nan_in_x_fit", lambda e: e.fit(x=e.with_x((3, 1), np.nan)),
     tn.DataError, ["x contains NaN or inf", "1 of 80", "clean the data"]),
    ("inf_in_x_predict", lambda e: e.model.predict(e.with_x((0, 0), np.inf)),
     tn.DataError, ["x contains NaN or inf"]),
    ("nan_in_x_train_step", lambda e: e.model.train_step(e.with_x((0, 0), np.nan), e.y),
     tn.DataError, ["x contains NaN or inf"]),
    ("nan_in_validation_x", lambda e: e.fit(validation=(e.with_x((1, 1), np.nan), e.y)),
     tn.DataError, ["validation x contains NaN or inf"]),
    ("nan_in_one_hot_targets", lambda e: e.fit(y=np.where(np.eye(3)[e.y] == 1, np.nan, 0.0)),
     tn.DataError, ["targets contain NaN or inf"]),
    ("inf_in_regression_target", lambda e: tn.MSE()(np.zeros((2, 1)), np.array([[1.0], [np.inf]])),
     tn.DataError, ["MSE", "target contains NaN or inf"]),
    ("sigmoid_ce_target_out_of_unit_interval",
     lambda e: tn.SigmoidCrossEntropy()(np.zeros((2, 1)), np.array([[0.5], [2.0]])),
     tn.ShapeError, ["[0, 1]", "max 2.0"]),
    # ---- training configuration
    ("lr_zero", lambda e: tn.SGD(lr=0), tn.ConfigError, ["SGD", "learning rate", "positive", "0"]),
    ("lr_negative", lambda e: tn.Adam(lr=-1e-3), tn.ConfigError, ["Adam", "learning rate", "-0.001"]),
    ("lr_nan", lambda e: tn.RMSProp(lr=float("nan")), tn.ConfigError, ["learning rate", "nan"]),
    ("lr_inf", lambda e: tn.Momentum(lr=float("inf")), tn.ConfigError, ["learning rate", "inf"]),
    ("lr_set_to_zero_on_the_model", lambda e: setattr(e.model.optimizer, "lr", 0.0),
     tn.ConfigError, ["learning rate", "try 1e-3 for Adam"]),
    ("schedule_starting_at_zero", lambda e: tn.Adam(lr=tn.ExponentialDecay(0.0, 0.9)),
     tn.ConfigError, ["learning rate", "0.0"]),
    ("weight_decay_negative", lambda e: tn.SGD(lr=0.1, weight_decay=-0.1),
     tn.ConfigError, ["weight_decay", ">= 0"]),
    ("adam_beta1_one", lambda e: tn.Adam(beta1=1.0), tn.ConfigError, ["Adam", "beta1", "[0, 1)"]),
    ("momentum_above_one", lambda e: tn.Momentum(momentum=1.5),
     tn.ConfigError, ["Momentum", "momentum", "1.5"]),
    ("step_decay_step_size_zero", lambda e: tn.StepDecay(0.1, step_size=0),
     tn.ConfigError, ["StepDecay", "step_size"]),
    ("cosine_total_steps_zero", lambda e: tn.CosineDecay(0.1, total_steps=0),
     tn.ConfigError, ["CosineDecay", "total_steps"]),
    ("batch_size_zero", lambda e: e.fit(batch_size=0),
     tn.ConfigError, ["batch_size", "positive integer", "0"]),
    ("batch_size_negative", lambda e: e.fit(batch_size=-8), tn.ConfigError, ["batch_size", "-8"]),
    ("batch_size_float", lambda e: e.fit(batch_size=32.0), tn.ConfigError, ["batch_size", "32.0"]),
    ("batch_size_bool", lambda e: e.fit(batch_size=True), tn.ConfigError, ["batch_size", "True"]),
    ("batch_iterator_size_zero", lambda e: tn.BatchIterator(e.x, e.y, batch_size=0),
     tn.ConfigError, ["BatchIterator", "batch_size"]),
    ("epochs_negative", lambda e: e.fit(epochs=-1), tn.ConfigError, ["epochs", ">= 0", "-1"]),
    ("epochs_float", lambda e: e.fit(epochs=2.5), tn.ConfigError, ["epochs", "2.5"]),
    ("validation_not_a_pair", lambda e: e.fit(validation=e.x),
     tn.ConfigError, ["validation", "pair (x_val, y_val)"]),
    ("unknown_optimizer", lambda e: tn.optimizers.get("adagrad", lr=1e-3),
     tn.ConfigError, ["unknown optimizer 'adagrad'", "'adam'", "'sgd'"]),
    ("optimizer_name_not_a_string", lambda e: tn.optimizers.get(None),
     tn.ConfigError, ["unknown optimizer None"]),
    ("unknown_initializer", lambda e: tn.Dense(4, init="kaiming"),
     tn.ConfigError, ["unknown initializer 'kaiming'", "he_normal"]),
    ("dropout_p_one", lambda e: tn.Dropout(1.0), tn.ConfigError, ["Dropout", "[0, 1)", "1.0"]),
    ("dropout_p_negative", lambda e: tn.Dropout(-0.1), tn.ConfigError, ["Dropout", "-0.1"]),
    ("dropout_p_nan", lambda e: tn.Dropout(float("nan")), tn.ConfigError, ["Dropout", "nan"]),
    ("dense_units_zero", lambda e: tn.Dense(0), tn.ConfigError, ["Dense", "units", "positive integer"]),
    ("dense_units_float", lambda e: tn.Dense(2.5), tn.ConfigError, ["Dense", "units", "2.5"]),
    ("dense_in_features_zero", lambda e: tn.Dense(3, in_features=0),
     tn.ConfigError, ["Dense", "in_features"]),
    ("layer_class_not_instance", lambda e: tn.Net([tn.Dense(3), tn.ReLU]),
     tn.ConfigError, ["Net", "item 1", "not a tinynn Layer", "ReLU()"]),
    ("model_arguments_swapped", lambda e: tn.Model(e.net, tn.Adam(), tn.SoftmaxCrossEntropy()),
     tn.ConfigError, ["loss", "Model(net, loss, optimizer)"]),
    ("optimizer_class_not_instance", lambda e: tn.Model(e.net, tn.MSE(), tn.Adam),
     tn.ConfigError, ["optimizer", "tn.Adam()"]),
    ("gradcheck_float32_layer", lambda e: tn.gradcheck(tn.Dense(2, in_features=3), np.ones((1, 3))),
     tn.ConfigError, ["gradcheck", "float32", "float64"]),
    ("accuracy_length_mismatch", lambda e: tn.accuracy(np.zeros((4, 3)), np.array([0, 1])),
     tn.ShapeError, ["accuracy", "4 predictions", "2 targets"]),
    # ---- files
    ("missing_model_file", lambda e: e.load(e.tmp / "nope.npz"),
     tn.DataError, ["nope.npz", "does not exist"]),
    ("corrupted_model_file", lambda e: e.load(e.file("junk.npz", raw=os.urandom(300))),
     tn.DataError, ["junk.npz", "not a readable tinynn model file", "Model.save"]),
    ("truncated_model_file", lambda e: e.load(e.file("cut.npz", raw=e.saved.read_bytes()[:200])),
     tn.DataError, ["cut.npz", "not a readable tinynn model file"]),
    ("empty_model_file", lambda e: e.load(e.file("empty.npz", raw=b"")),
     tn.DataError, ["empty.npz", "not a readable tinynn model file"]),
    ("non_tinynn_npz", lambda e: e.load(e.file("other.npz", {"weights": np.ones(3)})),
     tn.DataError, ["not a readable tinynn model file", "format_version"]),
    ("directory_instead_of_file", lambda e: e.load(e.tmp),
     tn.DataError, ["not a readable tinynn model file"]),
    ("architecture_mismatch", lambda e: e.load(other_architecture(e)),
     tn.DataError, ["different architecture", "layer 0 (Dense)", "the file has units=16",
                    "this net has units=8"]),
    ("pickled_object_in_npz", lambda e: e.load(pickled_model_file(e)),
     tn.DataError, ["pickled.npz", "not a readable tinynn model file", "allow_pickle=False"]),
    ("format_version_from_the_future", lambda e: e.load(e.tampered("v99.npz", format_version=np.array(99))),
     tn.DataError, ["format version 99", "tinynn 0.1.0", "reads versions 1, 2 and 3",
                    "upgrade tinynn"]),
    ("architecture_not_json", lambda e: e.load(e.tampered("arch.npz", architecture=np.array("{oops"))),
     tn.DataError, ["arch.npz", "not a readable tinynn model file"]),
    ("architecture_malformed", lambda e: e.load(e.tampered("arch2.npz", architecture=np.array("42"))),
     tn.DataError, ["arch2.npz", "malformed"]),
    ("parameter_missing_from_file", lambda e: e.load(e.tampered("miss.npz", param__2__w=None)),
     tn.DataError, ["miss.npz", "param.2.w", "missing"]),
    ("parameter_with_wrong_shape", lambda e: e.load(e.tampered("shape.npz", param__2__b=np.zeros(4, F32))),
     tn.DataError, ["param.2.b", "shape (3,)", "(4,)"]),
    ("parameter_with_nan", lambda e: e.load(e.tampered("nan.npz", param__0__b=np.full(8, np.nan, F32))),
     tn.DataError, ["param.0.b", "finite"]),
    ("save_before_build", fresh_unbuilt_save, tn.ConfigError, ["no parameters yet", "predict once"]),
    ("average_weights_decay_of_one", lambda e: tn.AverageWeights(decay=1),
     tn.ConfigError, ["AverageWeights", "decay", "between 0 and 1", "got 1"]),
    ("predict_batch_size_zero", lambda e: e.model.predict(e.x, batch_size=0),
     tn.ConfigError, ["Model.predict", "batch_size", "positive integer", "got 0"]),
    ("evaluate_batch_size_zero", lambda e: e.model.evaluate(e.x, e.y, batch_size=0),
     tn.ConfigError, ["Model.evaluate", "batch_size", "positive integer", "got 0"]),
    ("model_integer_dtype", lambda e: tn.Model(e.net, tn.MSE(), tn.SGD(), dtype=np.int64),
     tn.ConfigError, ["Model", "dtype", "floating-point", "int64"]),
    ("save_into_a_missing_folder", lambda e: e.model.save(e.tmp / "runs" / "model.npz"),
     tn.DataError, ["Model.save", "runs", "does not exist", "os.makedirs"]),
]


def test_the_table_is_big_enough():
    assert len(CASES) >= 30
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("action, error, words", [case[1:] for case in CASES],
                         ids=[case[0] for case in CASES])
def test_bad_input_is_refused_clearly_and_changes_nothing(tmp_path, action, error, words):
    env = Env(tmp_path)
    params, t = env.net.state_dict(), env.model.optimizer.t
    lr, prediction = env.model.optimizer.lr, env.model.predict(env.x)
    with pytest.raises(error) as info:
        action(env)
    assert isinstance(info.value, tn.TinynnError)
    message = str(info.value)
    missing = [w for w in words if w not in message]
    assert not missing, f"message lacks {missing}: {message}"
    # nothing corrupted: same parameters, same optimizer state, still predicts the same
    assert params_equal(env.net.state_dict(), params)
    assert env.model.optimizer.t == t and env.model.optimizer.lr == lr
    np.testing.assert_array_equal(env.model.predict(env.x), prediction)
    assert env.model.load(env.saved) is env.model  # and the good file still loads


# ------------------------------------------------------------------ faults
class InterruptAt(tn.Callback):
    def __init__(self, step):
        self.step, self.ended = step, False

    def on_batch_end(self, model, step, logs):
        if step == self.step:
            raise KeyboardInterrupt

    def on_train_end(self, model, history):
        self.ended = True


def test_keyboard_interrupt_mid_epoch_keeps_history_and_a_usable_model(tmp_path, capsys):
    env = Env(tmp_path)
    callback = InterruptAt(step=6)  # 4 batches per epoch: in the middle of epoch 2
    history = env.fit(epochs=5, callbacks=[callback])
    assert "interrupt" in history["stopped"] and "6 steps" in history["stopped"]
    assert len(history["step_loss"]) == 6 and len(history["loss"]) == 1
    assert callback.ended
    assert "interrupted" in capsys.readouterr().out
    assert all(np.isfinite(p).all() for p in env.net.params)
    assert np.isfinite(env.model.predict(env.x)).all()
    assert len(env.fit(epochs=1)["step_loss"]) == 4  # and training can simply continue


class InterruptMidStep(tn.Adam):
    """Adam that receives a real Ctrl-C (SIGINT) between updating two parameters."""

    def __init__(self, at_step):
        super().__init__(lr=1e-2)
        self.at_step = at_step

    def step(self, params, grads):
        self.first = params[0]
        super().step(params, grads)

    def update(self, param, grad):
        super().update(param, grad)
        if self.t == self.at_step and param is self.first:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture
def ctrl_c_interrupts():
    """Python's own Ctrl-C handler (KeyboardInterrupt) for the test. A process started in the
    background of a non-interactive shell, as CI starts its test run, inherits SIGINT *ignored*:
    Python then installs no handler, and a Ctrl-C is (rightly) lost; the tests that interrupt
    training must not depend on how the suite was started."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_an_optimizer_step_lets_the_step_finish(ctrl_c_interrupts):
    def run(optimizer, callbacks=()):
        tn.seed(0)
        model = tn.Model(tn.Net([tn.Dense(8), tn.ReLU(), tn.Dense(3)]),
                         tn.SoftmaxCrossEntropy(), optimizer)
        x, y = toy_data(n=20)
        return model, model.fit(x, y, epochs=3, batch_size=5, seed=0, callbacks=callbacks)

    interrupted, history = run(InterruptMidStep(at_step=6))
    assert history["stopped"] == "interrupted after 6 steps"  # the 6th step finished, logged
    assert len(history["step_loss"]) == 6 and interrupted.optimizer.t == 6
    twin, _ = run(tn.Adam(lr=1e-2), [StopAfter(6)])  # exactly six whole steps, no interrupt
    assert params_equal(interrupted.net.state_dict(), twin.net.state_dict())
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored


def test_where_ctrl_c_is_ignored_training_ignores_it_and_installs_no_handler():
    """Started with SIGINT ignored (e.g. `nohup`, or `cmd &` in a script), nobody can stop the
    process with Ctrl-C: fit leaves that as it is instead of installing a handler of its own."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        tn.seed(0)
        model = tn.Model(tn.Net([tn.Dense(8), tn.ReLU(), tn.Dense(3)]),
                         tn.SoftmaxCrossEntropy(), InterruptMidStep(at_step=6))
        seen = []

        class Watch(tn.Callback):
            def on_batch_end(self, model, step, logs):
                seen.append(signal.getsignal(signal.SIGINT))

        x, y = toy_data(n=20)
        history = model.fit(x, y, epochs=3, batch_size=5, seed=0, callbacks=[Watch()])
        assert history["stopped"] is None and len(history["step_loss"]) == 12
        assert set(seen) == {signal.SIG_IGN}
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


class StopAfter(tn.Callback):
    def __init__(self, steps):
        self.steps = steps

    def on_batch_end(self, model, step, logs):
        if step == self.steps:
            model.stop_training = True


def crash(*args, **kwargs):
    raise OSError("simulated crash: disk full")


@pytest.mark.parametrize("where", ["os.replace", "np.savez", "KeyboardInterrupt"])
def test_a_crash_during_save_keeps_the_previous_file(tmp_path, monkeypatch, where):
    env = Env(tmp_path)
    old_prediction = env.model.predict(env.x)
    env.fit(epochs=2)  # the model moves on; the file on disk holds the old parameters
    assert not np.array_equal(env.model.predict(env.x), old_prediction)
    if where == "os.replace":
        monkeypatch.setattr(os, "replace", crash)
    elif where == "np.savez":
        monkeypatch.setattr(np, "savez", crash)
    else:
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt
        monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises((OSError, KeyboardInterrupt)):
        env.model.save(env.saved)
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["good.npz"]  # no temporary file left behind
    reloaded = small_classifier()
    reloaded.load(env.saved)
    np.testing.assert_array_equal(reloaded.predict(env.x), old_prediction)


@pytest.mark.parametrize("batch_size", [64, 16, 4], ids=["full_batch", "4_steps", "16_steps"])
def test_divergence_stops_with_a_warning_and_finite_parameters(batch_size):
    tn.seed(0)
    gen = np.random.default_rng(0)
    x = gen.standard_normal((64, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]]) + 3.0).astype(np.float32)
    model = tn.Model(tn.Net([tn.Dense(8), tn.Tanh(), tn.Dense(1)]), tn.MSE(),
                     tn.Momentum(lr=1e4, momentum=0.9))
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="learning rate") as caught:
        history = model.fit(x, y, epochs=50, batch_size=batch_size)
    message = " ".join(str(w.message) for w in caught)
    assert "start of epoch" in message and "Try a lower learning rate (now 10000)" in message
    assert history["stopped"].startswith("diverged")
    assert f"step {len(history['step_loss'])}" in history["stopped"]
    assert not np.isfinite(history["step_loss"][-1])
    assert all(np.isfinite(p).all() for p in model.net.params)
    assert np.isfinite(model.predict(x)).all()
    # Rolled back to parameters whose loss is finite, with fresh momenta: the student lowers
    # the learning rate and simply carries on.
    assert np.isfinite(model.evaluate(x, y)["loss"])
    assert model.optimizer.state == {}
    model.optimizer.lr = 1e-2
    again = model.fit(x, y, epochs=20, batch_size=batch_size)
    assert again["stopped"] is None and np.isfinite(again["step_loss"]).all()
    assert again["loss"][-1] < again["loss"][0]


def test_divergence_on_the_very_first_step_keeps_the_parameters():
    tn.seed(0)
    model = tn.Model(tn.Net([tn.Dense(1)]), tn.MSE(), tn.SGD(lr=0.1))
    x = np.ones((4, 2), np.float32)
    model.predict(x)
    before = model.net.state_dict()
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning, match="very first step"):
        history = model.fit(x, np.full((4, 1), 3e38, np.float32), epochs=3)  # loss overflows
    assert history["stopped"] == "diverged: loss became non-finite at step 1 (epoch 1)"
    assert params_equal(model.net.state_dict(), before)


def test_train_step_with_a_non_finite_loss_skips_the_update():
    tn.seed(0)
    model = tn.Model(tn.Net([tn.Dense(2)]), tn.MSE(), tn.SGD(lr=0.1))
    x = np.full((2, 3), 1e30, np.float32)  # finite input, but the loss overflows to inf
    model.predict(x)
    before = model.net.state_dict()
    with np.errstate(all="ignore"):
        value = model.train_step(x, np.zeros((2, 2), np.float32))
    assert not np.isfinite(value)
    assert params_equal(model.net.state_dict(), before)


def test_a_pickle_payload_in_a_model_file_never_runs(tmp_path):
    env = Env(tmp_path)
    path = pickled_model_file(env)
    with pytest.raises(tn.DataError, match="allow_pickle=False"):
        env.model.load(path)
    with pytest.raises(tn.DataError):
        small_classifier().load(path)  # an unbuilt net refuses it too
    assert not (tmp_path / "pwned").exists()


def test_saved_file_is_plain_npz_without_pickles(tmp_path):
    env = Env(tmp_path)
    with zipfile.ZipFile(env.saved) as archive:
        names = sorted(archive.namelist())
    assert names == sorted(["format_version.npy", "tinynn_version.npy", "architecture.npy",
                            "param.0.w.npy", "param.0.b.npy", "param.2.w.npy", "param.2.b.npy"])
    with np.load(env.saved, allow_pickle=False) as f:  # loads without allowing pickles
        assert int(f["format_version"]) == 3  # 3: + tinynn's version and the dtypes
        assert json.loads(str(f["architecture"]))[0]["type"] == "Dense"
