"""tinynn: a small, real deep-learning framework in numpy.

    import tinynn as tn
    net = tn.Net([tn.Dense(200), tn.ReLU(), tn.Dense(100), tn.ReLU(), tn.Dense(10)])
    model = tn.Model(net, tn.SoftmaxCrossEntropy(), tn.Adam(lr=1e-3))
    history = model.fit(x_train, y_train, epochs=5, batch_size=128, validation=(x_test, y_test))

The core imports numpy only; the course tooling (tinynn.course: plots, widgets, exercise checks) loads on demand.
"""
# The one place the version is written: pyproject.toml reads it from here, and saved model
# files record it. It comes before the imports, so that tinynn.saving can import it.
__version__ = "0.1.0"

from . import (autograd, data, datasets, diagnostics, download, functional, initializers, layers,
               lr_finder, metrics, names, optimizers, schedules, sequence)
from .autograd import Tensor
from .batches import BatchIterator
from .callbacks import AverageWeights, Callback, EarlyStopping
from .conv import AvgPool2D, Conv2D, MaxPool2D
from .data import circles, moons, shift_images, split, spirals
from .datasets import load_mnist, load_names
from .diagnostics import (LayerStats, activation_histograms, activation_stats, batch_dependency,
                          dead_fraction, gradcheck_net, initial_loss_check, overfit_batch)
from .errors import (CallOrderError, ConfigError, DataError, DivergenceWarning, ShapeError,
                     TinynnError, TinynnWarning)
from .gradcheck import gradcheck
from .layers import (GELU, Dense, Dropout, Flatten, Layer, LeakyReLU, ReLU, Sigmoid, Softplus,
                     Tanh)
from .losses import MSE, Loss, SigmoidCrossEntropy, SoftmaxCrossEntropy
from .lr_finder import RangeTestResult, lr_range_test
from .metrics import accuracy, calibration, confusion_matrix
from .model import Model
from .net import Net
from .norm import BatchNorm, LayerNorm
from .optimizers import SGD, Adam, AdamW, Momentum, Optimizer, RMSProp
from .random import seed
from .sequence import Embedding, MultiHeadAttention, PositionalEmbedding, Residual, sample
from .schedules import CosineDecay, ExponentialDecay, Schedule, StepDecay, WarmUp
