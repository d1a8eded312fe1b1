"""Saving and loading (tinynn.saving): round trips, layer state, the files of every older
format (tests/fixtures), settings a later tinynn adds, real mismatches, and the dtype rule."""
import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

import tinynn as tn
from conftest_helpers import params_equal, small_classifier, toy_data

FIXTURES = Path(__file__).parent / "fixtures"


def fixture_models():
    """tests/fixtures/make_fixtures.py's MODELS: the nets the fixture files were saved from."""
    spec = importlib.util.spec_from_file_location("make_fixtures", FIXTURES / "make_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MODELS


def fresh(name):
    """An unbuilt model of fixture ``name``'s architecture."""
    net, _ = fixture_models()[name]()
    return tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam())


def expected(fixture):
    with np.load(FIXTURES / f"{fixture}.expected.npz") as f:
        return f["x"], f["y"]


@pytest.fixture
def trained(tmp_path):
    tn.seed(0)
    x, y = toy_data(n=40)
    model = small_classifier()
    model.fit(x, y, epochs=2, batch_size=8)
    return model, x, model.save(tmp_path / "model.npz")


# ------------------------------------------------------------------ round trips
def test_save_load_round_trip_gives_identical_predictions(trained, tmp_path):
    model, x, path = trained
    assert path == tmp_path / "model.npz" and path.exists()
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]  # no temporary file left behind
    tn.seed(99)
    other = small_classifier()
    other.predict(x)  # built, with different random weights
    assert not np.array_equal(other.predict(x), model.predict(x))
    other.optimizer.step(other.net.params, other.net.grads)
    other.load(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    assert params_equal(other.net.state_dict(), model.net.state_dict())
    assert other.optimizer.t == 0 and other.optimizer.state == {}  # fresh optimizer state


def test_save_adds_the_npz_suffix(trained, tmp_path):
    model, _, _ = trained
    assert model.save(tmp_path / "weights") == tmp_path / "weights.npz"
    assert model.save(str(tmp_path / "w2.npz")) == tmp_path / "w2.npz"


def test_an_unbuilt_net_can_load_a_saved_file(trained):
    model, x, path = trained
    fresh_model = small_classifier()
    assert fresh_model.net.params == []
    fresh_model.load(path)
    np.testing.assert_array_equal(fresh_model.predict(x), model.predict(x))
    fresh_model.fit(x, np.zeros(len(x), np.int64), epochs=1, batch_size=8)  # and can keep training


def test_the_file_records_its_format_tinynn_version_and_each_layers_dtype(trained):
    _, _, path = trained
    with np.load(path, allow_pickle=False) as f:
        assert int(f["format_version"]) == 3
        assert str(f["tinynn_version"]) == tn.__version__
        architecture = json.loads(str(f["architecture"]))
    assert [layer["dtype"] for layer in architecture] == ["float32", None, "float32"]


def test_the_version_is_written_in_one_place():
    """pyproject.toml takes the version from tinynn.__version__, so the two cannot drift."""
    pyproject = pytest.importorskip("setuptools.config.pyprojecttoml")
    project = pyproject.read_configuration(Path(tn.__file__).parent.parent / "pyproject.toml")
    assert project["project"]["version"] == tn.__version__
    assert "version" in project["project"]["dynamic"]


def test_save_load_keeps_batchnorm_running_statistics(tmp_path):
    tn.seed(0)
    x, y = toy_data(n=40)

    def make():
        return tn.Model(tn.Net([tn.Dense(8), tn.BatchNorm(), tn.ReLU(), tn.Dense(3)]),
                        tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-2))
    model = make()
    model.fit(x * 3 + 2, y, epochs=3, batch_size=8)  # running statistics far from 0 and 1
    path = model.save(tmp_path / "bn.npz")
    built = make()
    built.fit(x, y, epochs=1, batch_size=8)  # different weights and statistics
    for other in (make(), built):  # unbuilt, and built
        other.load(path)
        np.testing.assert_array_equal(other.predict(x), model.predict(x))
        for name, value in model.net.layers[1].state.items():
            np.testing.assert_array_equal(other.net.layers[1].state[name], value)


def test_a_file_without_the_state_of_a_stateful_layer_is_refused(tmp_path):
    tn.seed(0)
    x, y = toy_data(n=40)
    model = tn.Model(tn.Net([tn.Dense(8), tn.BatchNorm(), tn.Dense(3)]), tn.SoftmaxCrossEntropy(),
                     tn.Adam(lr=1e-2))
    model.fit(x, y, epochs=1, batch_size=8)
    path = model.save(tmp_path / "bn.npz")
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files if k != "state.1.running_var"}
    np.savez(tmp_path / "cut.npz", **arrays)
    before = model.net.state_dict()
    with pytest.raises(tn.DataError, match="state.1.running_var"):
        model.load(tmp_path / "cut.npz")
    assert params_equal(model.net.state_dict(), before)


def test_a_version_1_file_of_a_net_with_batchnorm_is_refused(tmp_path):
    """Version 1 files held parameters only: a clear DataError for a net with BatchNorm (its
    running statistics are not in the file), and nothing adopted."""
    tn.seed(0)
    x, y = toy_data(n=40)
    model = tn.Model(tn.Net([tn.Dense(8), tn.BatchNorm(), tn.Dense(3)]), tn.SoftmaxCrossEntropy(),
                     tn.Adam(lr=1e-2))
    model.fit(x, y, epochs=1, batch_size=8)
    architecture = [{k: v for k, v in layer.items() if k not in ("state", "dtype")}
                    for layer in model.net.architecture()]
    arrays = {k: v for k, v in model.net.state_dict().items() if k.startswith("param.")}
    np.savez(tmp_path / "v1.npz", format_version=np.array(1),
             architecture=np.array(json.dumps(architecture)), **arrays)
    other = tn.Model(tn.Net([tn.Dense(8), tn.BatchNorm(), tn.Dense(3)]), tn.SoftmaxCrossEntropy(),
                     tn.Adam())
    with pytest.raises(tn.DataError, match="running_mean"):
        other.load(tmp_path / "v1.npz")
    assert other.net.params == []  # unbuilt, and still unbuilt: nothing adopted


# ------------------------------------------------------------------ files of every format
FIXTURE_FILES = ["mlp.v1", "mlp.v2", "cnn.v2", "mlp64.v2", "mlp.v3", "cnn.v3", "mlp64.v3"]


@pytest.mark.parametrize("fixture", FIXTURE_FILES)
def test_every_committed_file_loads_and_predicts_as_recorded(fixture):
    """A newer tinynn reads every older file: the committed files of each format version
    (tests/fixtures/README.md) give their recorded predictions, in their dtype."""
    x, y = expected(fixture)
    model = fresh(fixture.split(".")[0])
    assert model.load(FIXTURES / f"{fixture}.npz") is model
    assert model.dtype == y.dtype and all(p.dtype == y.dtype for p in model.net.params)
    prediction = model.predict(x)
    assert prediction.dtype == y.dtype
    np.testing.assert_allclose(prediction, y, rtol=1e-5 if y.dtype == np.float32 else 1e-12,
                               atol=1e-6 if y.dtype == np.float32 else 1e-12)


def test_the_fixtures_cover_every_readable_format():
    versions = {int(name.split(".v")[1]) for name in FIXTURE_FILES}
    assert versions == set(tn.saving.READABLE_VERSIONS)
    assert sorted(p.name[:-len(".npz")] for p in FIXTURES.glob("*.npz")
                  if not p.name.endswith(".expected.npz")) == sorted(FIXTURE_FILES)


def test_the_cnn_fixture_brings_its_batchnorm_statistics():
    model = fresh("cnn")
    model.load(FIXTURES / "cnn.v2.npz")
    with np.load(FIXTURES / "cnn.v2.npz") as f:
        for name in ("running_mean", "running_var"):
            np.testing.assert_array_equal(model.net.layers[1].state[name], f[f"state.1.{name}"])
            assert not np.allclose(f[f"state.1.{name}"], 0.0 if name == "running_mean" else 1.0)


# ------------------------------------------------------------------ settings a later tinynn adds
def with_init_in_config(monkeypatch, reported):
    """Simulate a later tinynn whose Dense.config() also reports its ``init`` argument (a
    constructor argument with the default "xavier_uniform"): this net's Dense layers report
    ``reported``."""
    config = tn.Dense.config
    monkeypatch.setattr(tn.Dense, "config", lambda self: {**config(self), "init": reported})


@pytest.mark.parametrize("fixture", ["mlp.v1", "mlp.v2", "cnn.v2", "mlp64.v2"])
def test_a_setting_a_later_tinynn_adds_leaves_older_files_readable(monkeypatch, fixture):
    """The file lacks the new setting: it counts as the constructor's default, which is what
    this net has, so the file loads and predicts as before."""
    with_init_in_config(monkeypatch, "xavier_uniform")
    x, y = expected(fixture)
    model = fresh(fixture.split(".")[0])
    model.load(FIXTURES / f"{fixture}.npz")
    np.testing.assert_allclose(model.predict(x), y, rtol=1e-5, atol=1e-6)


def test_a_missing_setting_whose_default_differs_from_the_net_is_refused(monkeypatch):
    with_init_in_config(monkeypatch, "he_normal")
    with pytest.raises(tn.DataError, match=r"layer 0 \(Dense\): the file has init='xavier_uniform' "
                                           r"\(the default: the file predates it\), "
                                           r"this net has init='he_normal'"):
        fresh("mlp").load(FIXTURES / "mlp.v2.npz")


def test_a_missing_setting_without_a_default_is_refused(monkeypatch):
    """A later Dense.config() reporting a setting that is no constructor argument: an older
    file lacking it cannot be read as any value, so it is refused."""
    config = tn.Dense.config
    monkeypatch.setattr(tn.Dense, "config", lambda self: {**config(self), "activation": "linear"})
    with pytest.raises(tn.DataError, match=r"layer 0 \(Dense\): the file lacks the setting "
                                           r"activation, this net has activation='linear'"):
        fresh("mlp").load(FIXTURES / "mlp.v2.npz")


def test_a_setting_that_differs_in_value_is_refused():
    model = tn.Model(tn.Net([tn.Dense(8), tn.LeakyReLU(0.1), tn.Dense(3)]),
                     tn.SoftmaxCrossEntropy(), tn.Adam())
    with pytest.raises(tn.DataError, match=r"mlp64.v2.npz was saved from a different "
                                           r"architecture: layer 1 \(LeakyReLU\): the file has "
                                           r"alpha=0.2, this net has alpha=0.1"):
        model.load(FIXTURES / "mlp64.v2.npz")
    assert model.net.params == []


def test_a_setting_this_tinynn_does_not_know_is_refused(tmp_path):
    """A file from a newer tinynn whose LeakyReLU has a setting this one lacks."""
    with np.load(FIXTURES / "mlp64.v2.npz") as f:
        arrays = {key: f[key] for key in f.files}
    architecture = json.loads(str(arrays["architecture"]))
    architecture[1]["clip"] = 6.0
    arrays["architecture"] = np.array(json.dumps(architecture))
    np.savez(tmp_path / "newer.npz", **arrays)
    with pytest.raises(tn.DataError, match=r"layer 1 \(LeakyReLU\): the file has the setting "
                                           r"clip=6.0, which this tinynn's LeakyReLU does "
                                           r"not know"):
        fresh("mlp64").load(tmp_path / "newer.npz")


def test_settings_that_change_only_training_are_not_compared(tmp_path):
    """Dropout's p and BatchNorm's momentum do not change what the model computes: the file
    loads, and the net keeps its own."""
    tn.seed(0)
    x, y = toy_data(n=40)

    def make(p, momentum):
        return tn.Model(tn.Net([tn.Dense(8), tn.BatchNorm(momentum), tn.Dropout(p), tn.Dense(3)]),
                        tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-2))
    model = make(0.5, 0.9)
    model.fit(x, y, epochs=1, batch_size=8)
    path = model.save(tmp_path / "dropout.npz")
    other = make(0.2, 0.99)
    other.load(path)
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    assert other.net.layers[2].p == 0.2 and other.net.layers[1].momentum == 0.99


# ------------------------------------------------------------------ real mismatches
@pytest.mark.parametrize("layers, words", [
    (lambda: [tn.Dense(8), tn.ReLU(), tn.Dense(3), tn.ReLU()],
     "the file has 3 layers, this net has 4"),
    (lambda: [tn.Dense(8), tn.Tanh(), tn.Dense(3)],
     "layer 1 (Tanh): the file has a ReLU layer there, this net has a Tanh"),
    (lambda: [tn.Dense(16), tn.ReLU(), tn.Dense(3)],
     "layer 0 (Dense): the file has units=8, this net has units=16"),
    (lambda: [tn.Dense(8), tn.ReLU(), tn.Dense(3, bias=False)],
     "layer 2 (Dense): the file has bias=True, this net has bias=False"),
    (lambda: [tn.Dense(8, in_features=5), tn.ReLU(), tn.Dense(3)],
     "layer 0 (Dense): the file has parameters w (4, 8), b (8,), this net has w (5, 8), b (8,)"),
], ids=["layer_count", "layer_type", "units_unbuilt", "bias", "shape_built"])
def test_a_different_architecture_is_refused_naming_the_layer(layers, words):
    model = tn.Model(tn.Net(layers()), tn.SoftmaxCrossEntropy(), tn.Adam())
    before = model.net.state_dict()
    with pytest.raises(tn.DataError) as info:
        model.load(FIXTURES / "mlp.v2.npz")
    assert f"mlp.v2.npz was saved from a different architecture: {words}" in str(info.value)
    assert params_equal(model.net.state_dict(), before)


def test_loading_into_a_built_net_of_other_widths_names_both(trained):
    model, x, path = trained
    other = small_classifier(hidden=16)
    other.predict(x)
    before = other.net.state_dict()
    with pytest.raises(tn.DataError, match=r"layer 0 \(Dense\): the file has units=8, this net "
                                           r"has units=16"):
        other.load(path)
    assert params_equal(other.net.state_dict(), before)


def test_a_conv_setting_shapes_cannot_show_is_compared():
    net = tn.Net([tn.Conv2D(2, 3, padding="valid"), tn.BatchNorm(), tn.ReLU(), tn.MaxPool2D(2),
                  tn.Flatten(), tn.Dense(3)])
    with pytest.raises(tn.DataError, match=r"layer 0 \(Conv2D\): the file has padding='same', "
                                           r"this net has padding='valid'"):
        tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam()).load(FIXTURES / "cnn.v2.npz")


# ------------------------------------------------------------------ the dtype of a loaded model
def test_a_float64_file_makes_a_float32_built_model_float64():
    x, y = expected("mlp64.v2")
    net = tn.Net([tn.Dense(8, in_features=4), tn.LeakyReLU(0.2), tn.Dense(3)])
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam())
    model.predict(x)  # built, float32
    assert model.dtype == np.float32
    model.load(FIXTURES / "mlp64.v2.npz")
    assert model.dtype == np.float64
    assert {p.dtype for p in model.net.params} == {np.dtype(np.float64)}
    assert model.predict(x.astype(np.float32)).dtype == np.float64
    np.testing.assert_allclose(model.predict(x), y, rtol=1e-12)


def test_a_float32_file_makes_a_float64_model_float32_state_included():
    x, y = expected("cnn.v2")
    net, _ = fixture_models()["cnn"]()
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(), dtype=np.float64)
    model.predict(x)  # built, float64
    assert model.dtype == np.float64
    model.load(FIXTURES / "cnn.v2.npz")
    assert model.dtype == np.float32
    assert {a.dtype for a in model.net.state_dict().values()} == {np.dtype(np.float32)}
    assert model.predict(x).dtype == np.float32
    np.testing.assert_allclose(model.predict(x), y, rtol=1e-5, atol=1e-6)


def test_a_float32_file_into_layers_declared_float64_gives_float32():
    x, y = expected("mlp.v2")
    net = tn.Net([tn.Dense(8, dtype=np.float64), tn.ReLU(), tn.Dense(3, dtype=np.float64)])
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam())
    assert model.dtype == np.float64  # declared, unbuilt
    model.load(FIXTURES / "mlp.v2.npz")
    assert model.dtype == np.float32 and model.predict(x).dtype == np.float32
    model.fit(x, np.zeros(len(x), np.int64), epochs=1, batch_size=8)  # and trains in float32
    assert {p.dtype for p in model.net.params} == {np.dtype(np.float32)}


def test_a_file_whose_parameter_has_another_dtype_than_recorded_is_refused(trained, tmp_path):
    _, _, path = trained
    with np.load(path) as f:
        arrays = {key: f[key] for key in f.files}
    arrays["param.2.b"] = arrays["param.2.b"].astype(np.float64)
    np.savez(tmp_path / "mixed.npz", **arrays)
    with pytest.raises(tn.DataError, match=r"param.2.b should be finite float32 of shape \(3,\), "
                                           r"found float64"):
        small_classifier().load(tmp_path / "mixed.npz")
