"""Functions on arrays that several layers and losses share (like ``torch.nn.functional``)."""
import numpy as np


def sigmoid(x):
    """σ(x) = 1 / (1 + e⁻ˣ), accurate and overflow-free in any float dtype.

    e⁻ˣ overflows for x < −88 in float32, so both halves are written with z = e^−|x| ∈ (0, 1]:
        σ(x) = 1 / (1 + z)   for x ≥ 0,        σ(x) = z / (1 + z)   for x < 0.
    Neither loses digits: σ(−20) ≈ 2.06e-9 keeps full float32 precision. (The other common
    form, ½(1 + tanh(x/2)), adds 1 to a tanh near −1, where float32 numbers are 6e-8 apart:
    it is 44% off at σ(−17) and gives exactly 0 at σ(−20).)"""
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + z), z / (1 + z))


def log_softmax(z, axis=-1):
    """log softmax(z) = z − max − log Σ e^(z − max), along ``axis``.

    Shifting by the max changes nothing mathematically (it cancels between the numerator and
    the sum) but keeps every exponent ≤ 0, so e^z never overflows, even for logits of 1e4."""
    shifted = z - z.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def softmax(z, axis=-1):
    """softmax(z)ᵢ = e^zᵢ / Σⱼ e^zⱼ along ``axis``, computed with the same max-shift."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def matmul_rows(x, w):
    """x @ w for x of shape (..., n) and a matrix w (n, m), as ONE (rows × n) @ (n × m) product.

    Dense treats every position of a (batch, time, n) sequence as one row, and so does this:
    it flattens the leading axes into rows, multiplies once and restores them. (numpy's own
    ``x @ w`` on a 3-d x runs one small product per batch item, about 2.5× slower for GPT-sized
    arrays; the result is the same.)"""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[1])
