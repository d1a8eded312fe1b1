"""The contract every tinynn layer keeps (tinynn.layers' module docstring and Layer's), checked
on every layer type, fast and textbook paths apart:

* backward never writes into what forward saved: a second backward after one forward gives the
  very same dL/dx and gradients, and the saved tensors are unchanged;
* the gradient arrays are created with the parameters and every backward writes into them, so a
  list taken once from ``net.grads`` holds the latest gradients;
* the dtype rule: input that is not floating point is refused, naming the layer and the dtype;
  the one exception, by design, is Embedding, which takes integer token ids and refuses floats
  (``ID_LAYERS``)."""
import copy
import inspect

import numpy as np
import pytest

import tinynn as tn
from tinynn.conv import AvgPool2D, Conv2D, MaxPool2D
from tinynn.norm import BatchNorm


def textbook(layer):
    layer.fast = False
    return layer


# name -> (a new layer, the shape of an input it accepts)
LAYERS = {
    "Dense": (lambda: tn.Dense(3), (4, 5)),
    "Dense no bias": (lambda: tn.Dense(3, bias=False), (4, 5)),
    "ReLU": (tn.ReLU, (4, 5)),
    "LeakyReLU": (lambda: tn.LeakyReLU(0.1), (4, 5)),
    "Sigmoid": (tn.Sigmoid, (4, 5)),
    "Tanh": (tn.Tanh, (4, 5)),
    "GELU": (tn.GELU, (4, 5)),
    "Softplus": (tn.Softplus, (4, 5)),
    "Flatten": (tn.Flatten, (4, 3, 2, 2)),
    "Dropout": (lambda: tn.Dropout(0.5), (4, 5)),
    "Dropout p=0": (lambda: tn.Dropout(0.0), (4, 5)),
    "Conv2D fast 1 channel": (lambda: Conv2D(4, 3, padding="same"), (3, 6, 5, 1)),
    "Conv2D fast 3 channels": (lambda: Conv2D(4, 3, padding="same"), (3, 6, 5, 3)),
    "Conv2D fast strided": (lambda: Conv2D(4, (3, 2), stride=2, padding=1), (3, 7, 6, 2)),
    "Conv2D textbook 1 channel": (lambda: textbook(Conv2D(4, 3, padding="same")), (3, 6, 5, 1)),
    "Conv2D textbook 3 channels": (lambda: textbook(Conv2D(4, 3, padding="same")), (3, 6, 5, 3)),
    "MaxPool2D fast": (lambda: MaxPool2D(2), (3, 6, 6, 2)),
    "MaxPool2D fast overlapping": (lambda: MaxPool2D(3, 2), (3, 7, 7, 2)),
    "MaxPool2D textbook": (lambda: textbook(MaxPool2D(2)), (3, 6, 6, 2)),
    "AvgPool2D": (lambda: AvgPool2D(2), (3, 6, 6, 2)),
    "BatchNorm (N, C)": (BatchNorm, (6, 3)),
    "BatchNorm (N, H, W, C)": (BatchNorm, (3, 4, 4, 2)),
    "Dense (B, T, D)": (lambda: tn.Dense(3), (2, 4, 5)),
    "LayerNorm (N, D)": (tn.LayerNorm, (4, 5)),
    "LayerNorm (B, T, D)": (tn.LayerNorm, (2, 3, 5)),
    "Embedding": (lambda: tn.Embedding(7, 4, dtype=np.float64), (3, 5)),
    "PositionalEmbedding": (lambda: tn.PositionalEmbedding(6), (2, 5, 4)),
    "MultiHeadAttention causal": (lambda: tn.MultiHeadAttention(2), (2, 5, 4)),
    "MultiHeadAttention full": (lambda: tn.MultiHeadAttention(2, causal=False), (2, 5, 4)),
    "Residual (one layer)": (lambda: tn.Residual(tn.Dense(4)), (3, 4)),
    "Residual (Net block)": (lambda: tn.Residual(tn.Net([tn.LayerNorm(), tn.MultiHeadAttention(2),
                                                         tn.GELU(), tn.Dense(4)])), (2, 5, 4)),
}
WITH_PARAMS = [name for name in LAYERS if name.split()[0] in (
    "Dense", "Conv2D", "BatchNorm", "LayerNorm", "Embedding", "PositionalEmbedding",
    "MultiHeadAttention", "Residual")]
ID_LAYERS = [name for name in LAYERS if getattr(LAYERS[name][0](), "takes_ids", False)]
FLOAT_LAYERS = [name for name in LAYERS if name not in ID_LAYERS]
IDS = 7  # the ids an Embedding of LAYERS gets lie in [0, IDS)


def layer_input(name, gen, dtype=np.float64):
    """An input LAYERS[name] accepts: integer ids for an Embedding, else standard normal."""
    shape = LAYERS[name][1]
    if name in ID_LAYERS:
        return gen.integers(0, IDS, shape)
    return gen.standard_normal(shape).astype(dtype)


def built(name, dtype=np.float64):
    """(layer, x, upstream): the layer built on x, with random parameters (a zero bias or β
    would hide a gradient sent to the wrong place), and an upstream gradient of its output."""
    make, shape = LAYERS[name]
    gen = np.random.default_rng(0)
    x = layer_input(name, gen, dtype)
    layer = make()
    tn.seed(0)
    y = layer.forward(x)
    for p in layer.params.values():
        p[...] = gen.standard_normal(p.shape)
    return layer, x, gen.standard_normal(y.shape).astype(dtype)


def assert_same(a, b, where):
    """a and b equal all the way down (arrays bit for bit, NaN equal to NaN)."""
    assert type(a) is type(b), where
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same(u, v, f"{where}[{i}]")
    else:
        assert a == b, where


def test_the_table_covers_every_layer_class_in_tinynn():
    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)
    public = {cls.__name__ for cls in subclasses(tn.Layer)
              if cls.__module__.startswith("tinynn.") and not cls.__name__.startswith("_")
              and not cls.__module__.startswith("tinynn.course")}
    covered = {type(LAYERS[name][0]()).__name__ for name in LAYERS}
    assert public <= covered, f"add {sorted(public - covered)} to LAYERS"


@pytest.mark.parametrize("name", list(LAYERS))
def test_a_second_backward_repeats_the_first_and_changes_nothing_forward_saved(name):
    """forward once, backward twice with the same upstream gradient: the same dL/dx and the
    same parameter gradients both times, and what forward saved is untouched."""
    layer, x, upstream = built(name)
    layer.forward(x)
    saved = copy.deepcopy(layer.saved_tensors)
    x_before = x.copy()
    dx = layer.backward(upstream.copy())
    grads = {k: g.copy() for k, g in layer.grads.items()}
    assert_same(layer.saved_tensors, saved, f"{name}: what forward saved, after backward")
    dx_again = layer.backward(upstream.copy())
    assert (dx is None) == (name in ID_LAYERS), f"{name}: dL/dx is {type(dx).__name__}"
    assert np.array_equal(dx_again, dx), f"{name}: the second backward's dL/dx differs"
    assert_same({k: g.copy() for k, g in layer.grads.items()}, grads, f"{name}: second grads")
    assert_same(layer.saved_tensors, saved, f"{name}: what forward saved, after two backwards")
    assert np.array_equal(x, x_before)


@pytest.mark.parametrize("name", WITH_PARAMS)
def test_a_list_taken_from_net_grads_before_backward_holds_the_new_gradients(name):
    layer, x, upstream = built(name)
    net = tn.Net([layer])
    held = net.grads  # taken once, before the backward, as an optimizer loop might
    twin = copy.deepcopy(layer)
    for each in (layer, twin):
        each.forward((x + 1) % IDS if name in ID_LAYERS else x + 1.0)
        each.backward(upstream)
    assert len(held) == len(layer.params) > 0
    for array, name_ in zip(held, layer.params):
        assert array is layer.grads[name_], f"{name}: grads[{name_!r}] was replaced"
        assert array.shape == layer.params[name_].shape and array.dtype == layer.params[name_].dtype
        assert np.array_equal(array, twin.grads[name_]) and np.any(array != 0), name_


def test_gradient_arrays_are_created_with_the_parameters():
    for name in WITH_PARAMS:
        layer, _, _ = built(name)
        assert layer.grads.keys() == layer.params.keys(), name
    eager = Conv2D(2, 3, in_channels=2, dtype=np.float64)
    assert {k: (g.shape, g.dtype) for k, g in eager.grads.items()} == \
        {"w": ((3, 3, 2, 2), np.float64), "b": ((2,), np.float64)}
    assert not np.any(eager.grads["w"]) and "make_grads" in tn.Layer.__doc__


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, bool])
@pytest.mark.parametrize("name", FLOAT_LAYERS)
def test_input_that_is_not_floating_point_is_refused_naming_layer_and_dtype(name, dtype):
    make, shape = LAYERS[name]
    layer = make()
    x = np.ones(shape, dtype=dtype)
    for training in (True, False):
        with pytest.raises(tn.ShapeError) as info:
            layer.forward(x, training=training)
        message = str(info.value)
        assert repr(layer) in message and np.dtype(dtype).name in message, message
        assert "astype(np.float32)" in message
    assert layer.params == {}  # nothing was built from integer data


@pytest.mark.parametrize("dtype", [np.float32, np.float64, bool])
@pytest.mark.parametrize("name", ID_LAYERS)
def test_a_layer_that_takes_token_ids_refuses_anything_else_naming_layer_and_dtype(name, dtype):
    """Embedding's input is integer ids by design: it takes int64, int32 and uint8 ids alike
    and refuses floats (data cast by mistake, never rounded) and bools, in training and
    inference, naming the layer and the dtype."""
    make, shape = LAYERS[name]
    layer = make()
    ids = np.arange(np.prod(shape)).reshape(shape) % IDS
    expected = layer.forward(ids, training=False)
    for int_dtype in (np.int32, np.uint8):
        assert np.array_equal(layer.forward(ids.astype(int_dtype), training=False), expected)
    for training in (True, False):
        with pytest.raises(tn.ShapeError) as info:
            layer.forward(ids.astype(dtype), training=training)
        message = str(info.value)
        assert repr(layer) in message and np.dtype(dtype).name in message, message
        assert "integer token ids" in message


@pytest.mark.parametrize("name", [n for n in WITH_PARAMS if n not in ID_LAYERS])
def test_a_layer_built_on_floats_still_refuses_integers(name):
    layer, x, _ = built(name, np.float32)
    with pytest.raises(tn.ShapeError, match="int64"):
        layer.forward(np.ones(x.shape, np.int64))


def test_the_module_docstring_states_the_rules():
    doc = inspect.getdoc(tn.layers)
    assert "Backward never writes into what forward saved" in doc
    assert "floating-point" in doc and "astype(np.float32)" in doc
    assert "write" in tn.Layer.__doc__ and "net.grads" in tn.Layer.__doc__
