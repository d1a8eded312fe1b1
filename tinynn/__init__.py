"""tinynn: a small, real deep-learning framework in numpy.

    import tinynn as tn
    net = tn.Net([tn.Dense(200), tn.ReLU(), tn.Dense(100), tn.ReLU(), tn.Dense(10)])
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3))
    history = model.fit(x_train, y_train, epochs=5, batch_size=128, validation=(x_test, y_test))

The core imports numpy only; the course tooling (tinynn.course: plots, widgets, exercise checks) loads on demand.
"""
from . import data, initializers, metrics, optimizers
from .batches import BatchIterator
from .data import circles, load_mnist, moons, spirals
from .errors import ConfigError, DataError, ShapeError, TinynnError
from .gradcheck import gradcheck
from .layers import (GELU, Dense, Dropout, Flatten, Layer, LeakyReLU, ReLU, Sigmoid, Softplus,
                     Tanh)
from .losses import MSE, Loss, SigmoidCrossEntropy, SoftmaxCrossEntropy
from .metrics import accuracy, confusion_matrix
from .model import AverageWeights, Callback, Model
from .net import Net
from .optimizers import (SGD, Adam, CosineDecay, ExponentialDecay, Momentum, Optimizer, RMSProp,
                         Schedule, StepDecay, WarmUp)
from .random import seed

__version__ = "0.1.0"
