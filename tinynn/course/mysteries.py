"""Notebook 12's mystery pipelines: three small MNIST training pipelines, each with one planted
bug, and ``examine``, which runs the debugging checklist on one of them and prints what it sees.

    mysteries = make_mysteries(x_train, y_train, x_val, y_val)
    report = examine(mysteries[0], baseline=zero_input_loss, dependency=my_batch_dependency)

The notebook shows only the symptoms; the student writes the diagnosis. Reading this file gives
the answers away: diagnose first, then read it to check. The answer key is in the teacher's
guide (notebooks/TEACHING.md).
"""
import dataclasses

import numpy as np

from .. import (Adam, Dense, Layer, LayerStats, Model, Net, ReLU, SoftmaxCrossEntropy,
                initial_loss_check, overfit_batch)
from .. import random as tn_random


class Flatten(Layer):
    """(batch, 28, 28) images → (batch, 784) rows."""

    def forward(self, x, training=True):
        if training:
            self.save_for_backward(x.shape)
        return x.reshape(-1, len(x)).T

    def backward(self, grad):
        (shape,) = self.saved_tensors
        return grad.T.reshape(shape)


def _mlp(first=()):
    return Net(list(first) + [Dense(64, init="he_normal"), ReLU(),
                              Dense(32, init="he_normal"), ReLU(), Dense(10)])


def _images(x):
    return x.reshape(-1, 28, 28)


@dataclasses.dataclass
class Mystery:
    """One pipeline: its data as it reaches the net, and the net it trains (``build()``)."""
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    build: object

    def model(self):
        """The pipeline's untrained model, seeded (the same every call)."""
        tn_random.seed(0)
        return Model(self.build(), SoftmaxCrossEntropy(), Adam(lr=1e-3))


def make_mysteries(x_train, y_train, x_val, y_val):
    """The three mysteries, from the notebook's data (pixels in [0, 1], rows of 784)."""
    return [
        Mystery("mystery 1", x_train / 255, y_train, x_val / 255, y_val, _mlp),
        Mystery("mystery 2", _images(x_train), y_train, _images(x_val), y_val,
                lambda: _mlp([Flatten()])),
        Mystery("mystery 3", _images(x_train).transpose(0, 2, 1).reshape(len(x_train), -1),
                y_train, x_val, y_val, _mlp),
    ]


@dataclasses.dataclass
class Report:
    """What ``examine`` measured: the tools' reports and the numbers behind the sheet."""
    initial: object
    overfit: object
    history: dict
    stats: object
    baseline: float
    dependency_self: float
    dependency_others: float


def examine(mystery, baseline, dependency, epochs=3, probe=8):
    """Run the checklist on ``mystery`` and print the sheet: the initial loss, overfit one batch,
    ``epochs`` epochs of training (batch 64, validation each epoch, ``tn.LayerStats`` on 256
    training samples), the zero-input ``baseline`` loss to compare with, and ``dependency(net, x,
    0)`` (the batch dependency, on ``probe`` training samples of the trained net). Draws the
    layer statistics and returns a ``Report``."""
    from .viz import _pyplot, plot_layer_stats
    model = mystery.model()
    initial = initial_loss_check(model, mystery.x_train, mystery.y_train)
    overfit = overfit_batch(model, mystery.x_train[:32], mystery.y_train[:32], steps=100)
    stats = LayerStats(mystery.x_train[:256], every=10)
    history = model.fit(mystery.x_train, mystery.y_train, epochs=epochs, batch_size=64, seed=0,
                        validation=(mystery.x_val, mystery.y_val), callbacks=[stats])
    gradient = np.asarray(dependency(model.net, mystery.x_train[:probe], 0))
    rows = np.abs(gradient.reshape(len(gradient), -1)).max(axis=1)
    report = Report(initial, overfit, history, stats, float(baseline), float(rows[0]),
                    float(rows[1:].max()))
    print(f"── {mystery.name}: the checklist")
    print(f"{initial}\n{overfit}")
    print(f"training loss per epoch:       {np.round(history['loss'], 3)}"
          f"   (zero-input baseline: {baseline:.3f})")
    print(f"validation loss per epoch:     {np.round(history['val_loss'], 3)}")
    print(f"validation accuracy per epoch: {np.round(history['val_accuracy'], 3)}")
    print(f"batch dependency, i = 0 of {probe}: largest |gradient| in row 0 "
          f"{report.dependency_self:.2g}, in rows 1–{probe - 1} {report.dependency_others:.2g}")
    print("layer statistics at the end:")
    print(stats.summary())
    for problem in stats.problems():
        print("⚠", problem)
    plot_layer_stats(stats, title=mystery.name)
    _pyplot().show()
    return report
