"""tinynn.models: the standard MLP builder, by default the command line's 784-200-100-10 net."""
import numpy as np
import pytest

import tinynn as tn
from tinynn.models import build_mlp


def layer_summary(net):
    return [(type(layer).__name__, getattr(layer, "units", None)) for layer in net.layers]


def test_build_mlp_defaults_to_the_mnist_net_with_he_initialised_relu_layers():
    net = build_mlp()
    assert layer_summary(net) == [("Dense", 200), ("ReLU", None), ("Dense", 100), ("ReLU", None),
                                  ("Dense", 10)]
    assert [layer.init.__name__ for layer in net.layers[::2]] == ["he_normal", "he_normal",
                                                                  "xavier_uniform"]
    tn.seed(0)
    net.forward(np.zeros((1, 784), np.float32), training=False)
    assert [p.shape for p in net.params] == [(784, 200), (200,), (200, 100), (100,), (100, 10),
                                             (10,)]


def test_build_mlp_takes_sizes_outputs_activation_init_and_a_flatten():
    net = build_mlp(hidden=(8,), outputs=3, activation="tanh", init="xavier_uniform", flatten=True)
    assert layer_summary(net) == [("Flatten", None), ("Dense", 8), ("Tanh", None), ("Dense", 3)]
    assert net.forward(np.ones((2, 4, 4), np.float32), training=False).shape == (2, 3)
    assert layer_summary(build_mlp(hidden=(), outputs=1)) == [("Dense", 1)]  # a linear model


def test_build_mlp_refuses_an_unknown_activation():
    with pytest.raises(tn.ConfigError, match="unknown activation 'swish'; expected one of"):
        build_mlp(activation="swish")
