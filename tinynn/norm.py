"""Normalisation layers: BatchNorm and LayerNorm.

Batch normalisation standardises each channel with the statistics of the batch in training and
with running averages of them at inference. Its running averages are part of the model but never
trained: they live in ``layer.state`` (like Keras' non-trainable weights or PyTorch's buffers),
apart from ``params``, so optimizers never touch them, while saving, loading and rolling back a
model carry them along.

Layer normalisation standardises each sample (each position of a sequence) over its own features
instead: no batch statistics, so training and inference compute the same thing and a batch of
one is fine. Transformers use it.
"""
import numpy as np

from .checks import check_float_input, check_number
from .errors import ShapeError
from .layers import Layer


class BatchNorm(Layer):
    """Batch normalisation over the last (channel/feature) axis, for (N, C) features or
    (N, H, W, C) images: statistics are taken over every axis but the last.

    Training: x̂ = (x − μ_B) / √(σ²_B + eps) with the batch's mean and (biased) variance per
    channel, y = γ·x̂ + β; the running averages move as running = momentum·running +
    (1 − momentum)·batch (Keras' convention; the running variance uses the unbiased batch
    variance, as PyTorch does). A training batch needs more than one value per channel (more
    than one sample, or one image of more than one pixel): one value is its own mean, so the
    output would be β whatever the input, the gradient 0, and the running variance would be
    pulled towards 0; such a batch raises ShapeError (PyTorch refuses it too). Inference
    (training=False): the running statistics replace the batch's, so a prediction does not
    depend on the rest of the batch (a batch of one is fine), and nothing is kept for a backward
    pass (a pending backward still sees the last training forward).

    Backward, m values per channel, G = dL/dy:
        dL/dγ = Σ G·x̂      dL/dβ = Σ G
        dL/dx = γ / √(σ²_B + eps) · (G − mean(G) − x̂·mean(G·x̂))
    The two subtracted means are the gradient flowing through μ_B and σ²_B: shifting all of a
    channel's inputs, or scaling them, changes nothing after normalisation.

    ``state`` holds the running statistics, ``{"running_mean": μ, "running_var": σ²}``; each
    forward reads them from there afresh and stores the updated averages back as new arrays, so
    code that restores a model may either write into those arrays or replace them."""

    STATE = ("running_mean", "running_var")

    def __init__(self, momentum=0.9, eps=1e-5):
        super().__init__()
        self.momentum = check_number(momentum, "momentum", "BatchNorm", "[0, 1)")
        self.eps = check_number(eps, "eps", "BatchNorm", "(0, inf)")
        self.state = {}

    @property
    def running_mean(self):
        """The running mean per channel (read-only shortcut for ``state["running_mean"]``)."""
        return self.state.get("running_mean")

    @property
    def running_var(self):
        """The running variance per channel (read-only shortcut for ``state["running_var"]``)."""
        return self.state.get("running_var")

    def build(self, channels, dtype):
        self.params = {"gamma": np.ones(channels, dtype), "beta": np.zeros(channels, dtype)}
        self.make_grads()
        self.state = {"running_mean": np.zeros(channels, dtype), "running_var": np.ones(channels, dtype)}

    def load_params(self, params):
        """Adopt saved γ and β; the running statistics restart from mean 0, variance 1, in
        γ's dtype, until ``load_state`` gives the saved ones."""
        super().load_params(params)
        gamma = self.params["gamma"]
        self.state = {"running_mean": np.zeros_like(gamma), "running_var": np.ones_like(gamma)}

    def _check(self, x):
        if not isinstance(x, np.ndarray) or x.ndim not in (2, 4):
            raise ShapeError(f"{self!r}: expected features (batch, channels) or images (batch, "
                             f"height, width, channels), got shape {np.shape(x)}")
        check_float_input(x, self)
        gamma = self.params.get("gamma")
        if gamma is not None and (x.shape[-1] != len(gamma) or x.dtype != gamma.dtype):
            raise ShapeError(f"{self!r}: expected {len(gamma)} channels (last axis) of dtype "
                             f"{gamma.dtype}, got shape {x.shape} of dtype {x.dtype}")

    def forward(self, x, training=True):
        self._check(x)
        if "gamma" not in self.params:
            self.build(x.shape[-1], x.dtype)
        if training:
            mean, var = self._batch_statistics(x)
        else:  # the state's arrays, in x's dtype whatever was written there
            mean, var = (self.state[name].astype(x.dtype, copy=False) for name in self.STATE)
        inv_std = (1.0 / np.sqrt(var + self.eps)).astype(x.dtype)
        x_hat = (x - mean) * inv_std
        if training:
            self.save_for_backward(x_hat, inv_std)
        return x_hat * self.params["gamma"] + self.params["beta"]

    def _batch_statistics(self, x):
        """The batch's mean and biased variance per channel; moves the running averages."""
        axes = tuple(range(x.ndim - 1))
        m = x.size // x.shape[-1]
        if m == 1:
            raise ShapeError(f"{self!r}: training needs more than 1 value per channel, got input "
                             f"of shape {x.shape} (batch size {len(x)}): its mean is the value "
                             "itself and its variance 0; hint: train on batches of 2 or more "
                             "samples, or use forward(x, training=False) for one sample")
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        unbiased = var * (m / (m - 1))
        for name, batch in zip(self.STATE, (mean, unbiased)):
            running = self.momentum * self.state[name] + (1.0 - self.momentum) * batch
            self.state[name] = running.astype(x.dtype)
        return mean, var

    def backward(self, grad, input_grad=True):
        """Fill ``grads`` (dL/dγ, dL/dβ) and return dL/dx (``None`` when ``input_grad=False``)."""
        x_hat, inv_std = self.saved_tensors
        axes = tuple(range(grad.ndim - 1))
        self.grads["gamma"][...] = (grad * x_hat).sum(axis=axes)
        self.grads["beta"][...] = grad.sum(axis=axes)
        if not input_grad:
            return None
        m = x_hat.size // x_hat.shape[-1]
        scale = self.params["gamma"] * inv_std
        return scale * (grad - self.grads["beta"] / m - x_hat * (self.grads["gamma"] / m))

    def config(self):
        return {"momentum": self.momentum, "eps": self.eps}


class LayerNorm(Layer):
    """Layer normalisation over the last (feature) axis, for (N, D) features or (B, T, D)
    sequences: each row of D numbers is standardised with its own mean and variance,

        μ = mean(x),  σ² = mean((x − μ)²),  x̂ = (x − μ) / √(σ² + eps),  y = γ·x̂ + β,

    with γ (ones) and β (zeros) of shape (D,), created on the first forward from the input's
    width and dtype. Training and inference are the same computation.

    Backward, per row, with G = dL/dy and g = γ·G = dL/dx̂:
        dL/dγ = Σ_rows G·x̂      dL/dβ = Σ_rows G
        dL/dx = 1/√(σ² + eps) · (g − mean(g) − x̂·mean(g·x̂))
    The last formula is BatchNorm's, with the means taken over a row's D features instead of
    over the batch: x̂ does not change when a row is shifted (the mean(g) term) or scaled (the
    x̂·mean(g·x̂) term), so those two directions of g are removed."""

    def __init__(self, eps=1e-5):
        super().__init__()
        self.eps = check_number(eps, "eps", "LayerNorm", "(0, inf)")

    def build(self, features, dtype):
        self.params = {"gamma": np.ones(features, dtype), "beta": np.zeros(features, dtype)}
        self.make_grads()

    def forward(self, x, training=True):
        check_float_input(x, self)
        if x.ndim < 2:
            raise ShapeError(f"{self!r}: expected input (batch, features) or (batch, time, "
                             f"features), got shape {x.shape}")
        if "gamma" not in self.params:
            self.build(x.shape[-1], x.dtype)
        gamma = self.params["gamma"]
        if x.shape[-1] != len(gamma) or x.dtype != gamma.dtype:
            raise ShapeError(f"{self!r}: expected {len(gamma)} features (last axis) of dtype "
                             f"{gamma.dtype}, got shape {x.shape} of dtype {x.dtype}")
        mean = x.mean(axis=-1, keepdims=True)
        var = x.var(axis=-1, keepdims=True)
        inv_std = 1.0 / np.sqrt(var + x.dtype.type(self.eps))
        x_hat = (x - mean) * inv_std
        if training:
            self.save_for_backward(x_hat, inv_std)
        return x_hat * gamma + self.params["beta"]

    def backward(self, grad, input_grad=True):
        """Fill ``grads`` (dL/dγ, dL/dβ) and return dL/dx (``None`` when ``input_grad=False``)."""
        x_hat, inv_std = self.saved_tensors
        rows = tuple(range(grad.ndim - 1))
        self.grads["gamma"][...] = (grad * x_hat).sum(axis=rows)
        self.grads["beta"][...] = grad.sum(axis=rows)
        if not input_grad:
            return None
        g = grad * self.params["gamma"]
        return inv_std * (g - g.mean(axis=-1, keepdims=True)
                          - x_hat * (g * x_hat).mean(axis=-1, keepdims=True))

    def config(self):
        return {"eps": self.eps}
