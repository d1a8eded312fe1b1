"""Net (issue 13): inference leaves no trace a later backward reads, the first layer can skip
dL/d(input data) (``Net.backward(grad, input_grad=False)``) whatever kind of backward it has,
``net(x)`` is inference, and ``state_dict`` covers parameters and layer state."""
import numpy as np
import pytest

import tinynn as tn
from conftest_helpers import StudentDense, params_equal

CONV = pytest.importorskip("tinynn.conv")


def mlp():
    return tn.Net([tn.Dense(6), tn.ReLU(), tn.Dropout(0.3), tn.Dense(5), tn.LeakyReLU(0.1),
                   tn.Dense(5), tn.Sigmoid(), tn.Dense(5), tn.Tanh(), tn.Dense(5), tn.GELU(),
                   tn.Dense(5), tn.Softplus(), tn.Dense(3)])


def cnn():
    return tn.Net([CONV.Conv2D(4, 3, padding="same"), tn.BatchNorm(), CONV.MaxPool2D(2),
                   tn.ReLU(), CONV.Conv2D(4, 3, padding="same"), CONV.AvgPool2D(2), tn.Flatten(),
                   tn.Dropout(0.2), tn.Dense(3)])


NETS = {"mlp": (mlp, (8, 7)), "cnn": (cnn, (8, 8, 8, 2))}


def gradients_after(make, shape, interleave):
    """Seeded build, a training forward on batch A, optionally inference on batch B (same
    size), then backward: every parameter gradient and dL/dx."""
    gen = np.random.default_rng(0)
    a, b = (gen.standard_normal(shape).astype(np.float32) for _ in range(2))
    tn.seed(1)
    net = make()
    net.forward(a[:1], training=False)  # build the lazy layers
    tn.seed(2)
    y = net.forward(a, training=True)
    if interleave:
        interleave(net, b)
    grad_x = net.backward(np.ones_like(y))
    return [g.copy() for g in net.grads], grad_x


INFERENCES = {
    "forward_training_false": lambda net, b: net.forward(b, training=False),
    "call": lambda net, b: net(b),
    "predict": lambda net, b: tn.Model(net, tn.SoftmaxCrossEntropy(), tn.SGD()).predict(b),
    "evaluate": lambda net, b: tn.Model(net, tn.SoftmaxCrossEntropy(), tn.SGD()).evaluate(
        b, np.zeros(len(b), np.int64)),
}


@pytest.mark.parametrize("inference", list(INFERENCES))
@pytest.mark.parametrize("name", list(NETS))
def test_inference_between_forward_and_backward_changes_no_gradient(name, inference):
    make, shape = NETS[name]
    clean_grads, clean_dx = gradients_after(make, shape, None)
    grads, dx = gradients_after(make, shape, INFERENCES[inference])
    assert len(grads) == len(clean_grads) > 0
    for g, clean in zip(grads, clean_grads):
        np.testing.assert_array_equal(g, clean)
    np.testing.assert_array_equal(dx, clean_dx)


def test_net_call_and_forward_default_to_inference():
    tn.seed(0)
    net = tn.Net([tn.Dense(50), tn.Dropout(0.5), tn.Dense(2)])
    x = np.ones((4, 3), np.float32)
    first = net(x)
    np.testing.assert_array_equal(net(x), first)  # no dropout: deterministic
    np.testing.assert_array_equal(net.forward(x), first)
    assert not np.array_equal(net.forward(x, training=True), first)


def test_net_call_leaves_batchnorm_statistics_alone():
    net = tn.Net([tn.Dense(4), tn.BatchNorm()])
    x = np.random.default_rng(0).standard_normal((16, 3)).astype(np.float32) + 5
    net(x)
    state = {k: v.copy() for k, v in net.layers[1].state.items()}
    net(x)
    net.forward(x)
    for k, v in net.layers[1].state.items():
        np.testing.assert_array_equal(v, state[k])


# ------------------------------------------------------------------ input_grad
def test_input_grad_false_skips_the_first_layer_input_gradient():
    tn.seed(0)
    net = tn.Net([tn.Dense(4), tn.ReLU(), tn.Dense(2)])
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    y = net.forward(x, training=True)
    full = net.backward(np.ones_like(y))
    grads = [g.copy() for g in net.grads]
    assert full.shape == x.shape
    assert net.backward(np.ones_like(y), input_grad=False) is None
    for g, before in zip(net.grads, grads):
        np.testing.assert_array_equal(g, before)
    assert net.layers[0].backward(np.ones((5, 4), np.float32), input_grad=False) is None


def test_a_student_layer_without_input_grad_is_called_with_grad_only():
    tn.seed(0)
    net = tn.Net([StudentDense(4), tn.ReLU(), tn.Dense(2)])
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    y = net.forward(x, training=True)
    assert net.backward(np.ones_like(y), input_grad=False) is None
    assert net.layers[0].grads["w"].shape == (3, 4)


HOOKS = {  # an instance hook (net.layers[0].backward = f), and what it records per call
    "grad_only": (lambda calls, original: lambda grad: calls.append("grad") or original(grad),
                  ["grad", "grad"]),
    "with_input_grad": (lambda calls, original: lambda grad, input_grad=True:
                        calls.append(input_grad) or original(grad, input_grad), [False, True]),
    "star_args": (lambda calls, original: lambda *args, **kwargs:
                  calls.append(kwargs) or original(*args, **kwargs), [{"input_grad": False}, {}]),
}


@pytest.mark.parametrize("name", list(HOOKS))
def test_an_instance_hook_on_the_first_layer_runs(name):
    """The hook runs in both calls; input_grad=False is passed only to a callable that takes it."""
    make_hook, expected = HOOKS[name]
    tn.seed(0)
    net = tn.Net([tn.Dense(4), tn.ReLU(), tn.Dense(2)])
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    net.forward(x, training=True)
    calls = []
    net.layers[0].backward = make_hook(calls, net.layers[0].backward)
    net.backward(np.ones((5, 2), np.float32), input_grad=False)
    net.backward(np.ones((5, 2), np.float32))
    assert calls == expected


# ------------------------------------------------------------------ state_dict
def test_state_dict_holds_parameters_and_layer_state_as_copies():
    tn.seed(0)
    net = tn.Net([tn.Dense(4), tn.BatchNorm(), tn.Dense(2)])
    x = np.random.default_rng(0).standard_normal((8, 3)).astype(np.float32)
    net.forward(x, training=True)
    saved = net.state_dict()
    assert sorted(saved) == ["param.0.b", "param.0.w", "param.1.beta", "param.1.gamma",
                             "param.2.b", "param.2.w", "state.1.running_mean",
                             "state.1.running_var"]
    before = net.forward(x)
    for _ in range(3):
        net.forward(x * 3 + 1, training=True)
        for p in net.params:
            p += 0.5
    assert not np.array_equal(net.forward(x), before)
    net.load_state_dict(saved)
    np.testing.assert_array_equal(net.forward(x), before)
    assert params_equal(net.state_dict(), saved)
    with pytest.raises(tn.ShapeError, match="state.1.running_var"):
        net.load_state_dict({k: v for k, v in saved.items() if k != "state.1.running_var"})
