"""Convolutional layers: Conv2D, MaxPool2D, AvgPool2D (BatchNorm lives in ``tinynn.norm``).

Images are channels-last
------------------------
An image batch is (batch, height, width, channels) — "NHWC", as in Keras/TensorFlow — everywhere
in tinynn. Two reasons:

* Dense works on the last axis, and so does a convolution's mixing of channels: Conv2D (and
  BatchNorm) infer their input channels lazily from ``x.shape[-1]``, just as Dense infers its width.
* With channels innermost, one receptive field is kh·kw runs of C neighbouring numbers, so im2col
  is a strided *view* plus one copy, and the matrix product (pixels × filters) already *is* the
  NHWC output: no transposes anywhere.

Flat MNIST (N, 784) becomes images with ``x.reshape(-1, 28, 28, 1)``. Conv2D weights are
(kh, kw, in_channels, filters) ("HWIO"), so the initializers see fan_in = kh·kw·in_channels.

A convolution is one matrix product (im2col)
--------------------------------------------
With X̃ the zero-padded input, stride s and dilation d, a Conv2D computes

    Y[n, y, x, f] = b[f] + Σ_{i, j, c} X̃[n, y·s + i·d, x·s + j·d, c] · W[i, j, c, f].

Copy each receptive field into one row of a matrix ``cols``: row p = (n, y, x), column
k = (i, j, c), ``cols[p, k] = X̃[n, y·s + i·d, x·s + j·d, c]`` (that is ``im2col``). Then, with
W₂ = W reshaped to (kh·kw·C, F),

    Y = cols @ W₂ + b          (N·Ho·Wo × kh·kw·C) @ (kh·kw·C × F) → (N·Ho·Wo × F) = NHWC.

The backward pass, derived
--------------------------
It is Dense's backward applied to that product, plus one new step. Given G = dL/dY (rows p):

    dL/dW₂ = colsᵀ G        — every place the filter was applied adds its contribution
                              (weight sharing = a sum over batch *and* positions)
    dL/db  = Σ_p G[p]
    dL/dcols = G W₂ᵀ

Each element of X̃ was copied into several rows (one per window covering it), and a copied value's
gradient is the sum of its copies' gradients. So ``col2im`` adds every entry of dL/dcols back
onto the pixel it came from:

    dL/dX̃[n, y·s + i·d, x·s + j·d, c] += dL/dcols[(n, y, x), (i, j, c)]   for all y, x, i, j

and dL/dX is dL/dX̃ with the padding cropped off. col2im is the transpose (adjoint) of im2col.
Pooling follows the same pattern: max pooling sends each window's gradient to the element that
won the max; average pooling shares it equally over the window.

Textbook code and fast paths
----------------------------
``forward`` and ``backward`` of each layer, read top to bottom, are exactly the algorithm above.
Speed tricks live apart, in ``_fast_*`` methods right after the textbook ones, each commented with
what it buys (how much, on the benchmark CNN's epoch: benchmarks/RESULTS.md). A class attribute
``fast = True`` picks them; ``Conv2D.fast = False`` (or ``layer.fast = False``) runs the textbook
code instead, and the tests check that both give the same numbers.

Everything stays in the input's dtype (float32 for training; integer input is refused, see the
dtype rule in ``tinynn.layers``). No Python loop ever runs over
pixels or samples: the only loops are over the kh·kw kernel offsets (or pool offsets), each
iteration a whole-batch array operation.

Inference (``training=False``) leaves no trace: it keeps nothing, and overwrites nothing, that a
later backward reads; that backward still sees the last training forward.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import initializers
from .checks import check_float_dtype, check_float_input, check_int, check_pair
from .errors import ConfigError, ShapeError
from .layers import Layer

PADDINGS = ("valid", "same")


def _compact(pair):
    """3 for (3, 3), [3, 5] for (3, 5): the JSON-stable form used by config() (save/load)."""
    return pair[0] if pair[0] == pair[1] else list(pair)


def _check_images(layer, x):
    if not isinstance(x, np.ndarray) or x.ndim != 4:
        raise ShapeError(f"{layer!r}: expected images of shape (batch, height, width, channels), "
                         f"got shape {np.shape(x)}; hint: channels-last, e.g. flat MNIST as "
                         "x.reshape(-1, 28, 28, 1)")
    check_float_input(x, layer)


# ---------------------------------------------------------------- im2col and col2im
def output_size(size, kernel, stride=1, dilation=1):
    """Output length along one axis of a (padded) input of length ``size``: the number of
    positions a kernel spanning dilation·(kernel − 1) + 1 pixels fits, stepping by ``stride``."""
    return (size - dilation * (kernel - 1) - 1) // stride + 1


def windows(x, kernel_size, stride=1, dilation=1):
    """Every receptive field of ``x`` (N, H, W, C) as a read-only *view* of shape
    (N, Ho, Wo, kh, kw, C): ``[n, y, x, i, j, c]`` is ``x[n, y·sh + i·dh, x·sw + j·dw, c]``.

    No data is copied: the view walks x's memory with new strides (bytes per step along each
    axis). Moving one output row down moves sh input rows; moving one kernel row moves dh."""
    (kh, kw), (sh, sw), (dh, dw) = (check_pair(kernel_size, "kernel_size", "windows"),
                                    check_pair(stride, "stride", "windows"),
                                    check_pair(dilation, "dilation", "windows"))
    n, h, w, c = x.shape
    ho, wo = output_size(h, kh, sh, dh), output_size(w, kw, sw, dw)
    if ho < 1 or wo < 1:
        raise ShapeError(f"windows: input {h}×{w} is smaller than the {kh}×{kw} kernel "
                         f"(dilation {dh}×{dw})")
    sn, sy, sx, sc = x.strides
    return as_strided(x, (n, ho, wo, kh, kw, c), (sn, sy * sh, sx * sw, sy * dh, sx * dw, sc),
                      writeable=False)


def im2col(x, kernel_size, stride=1, dilation=1):
    """Unfold the receptive fields of ``x`` (N, H, W, C; already padded) into the rows of a
    matrix of shape (N·Ho·Wo, kh·kw·C), columns ordered (i, j, c) like ``w.reshape(-1, filters)``
    for a weight w of shape (kh, kw, C, filters). Always a new array (never a view of x)."""
    view = windows(x, kernel_size, stride, dilation)
    n, ho, wo, kh, kw, c = view.shape
    cols = np.empty((n * ho * wo, kh * kw * c), dtype=x.dtype)
    cols.reshape(view.shape)[...] = view  # one copy: row (n, y, x) gets that receptive field
    return cols


def col2im(cols, x_shape, kernel_size, stride=1, dilation=1):
    """The adjoint of ``im2col``: add every entry of ``cols`` (N·Ho·Wo, kh·kw·C) back onto the
    pixel of an (N, H, W, C) array it was copied from. Overlapping windows add up.

    One strided add per kernel offset (i, j): the block cols[:, (i, j, :)] holds, for every
    window, the gradient of the pixel at offset (i, j) inside it — pixels that form a strided
    slice of the image. (``cols`` may also come as an (N, Ho, Wo, kh, kw, C) array of any strides.)"""
    n, h, w, c = x_shape
    (kh, kw), (sh, sw), (dh, dw) = (check_pair(kernel_size, "kernel_size", "col2im"),
                                    check_pair(stride, "stride", "col2im"),
                                    check_pair(dilation, "dilation", "col2im"))
    ho, wo = output_size(h, kh, sh, dh), output_size(w, kw, sw, dw)
    rows = cols.reshape(n, ho, wo, kh, kw, c)
    dx = np.zeros(x_shape, dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, i * dh:i * dh + sh * (ho - 1) + 1:sh, j * dw:j * dw + sw * (wo - 1) + 1:sw] += \
                rows[:, :, :, i, j]
    return dx


class Conv2D(Layer):
    """2-D convolution (cross-correlation, as in every framework) over channels-last images.

    ``Conv2D(filters, kernel_size, stride=1, padding="valid", dilation=1, init="he_normal",
    bias=True, in_channels=None, dtype=None)``; sizes are an int or an (h, w) pair. ``padding``:
    "valid" (none), "same" (output size = ceil(input / stride), extra padding at the
    bottom/right when odd, as in Keras), or an int / (h, w) pair of zeros added on each side.
    The input channels are inferred on the first forward (or given as ``in_channels``);
    ``dtype`` fixes the parameters' dtype as in Dense (see the dtype rule in
    ``tinynn.layers``). Parameters: ``w`` (kh, kw, C, filters), ``b`` (filters,). See the module
    docstring for the im2col forward and the backward."""

    fast = True  # False: run the textbook forward/backward (same numbers, slower)

    def __init__(self, filters, kernel_size, stride=1, padding="valid", dilation=1,
                 init="he_normal", bias=True, in_channels=None, dtype=None):
        super().__init__()
        self.filters = check_int(filters, "filters", "Conv2D")
        self.kernel_size = check_pair(kernel_size, "kernel_size", "Conv2D")
        self.stride = check_pair(stride, "stride", "Conv2D")
        self.dilation = check_pair(dilation, "dilation", "Conv2D")
        if isinstance(padding, str):
            if padding not in PADDINGS:
                raise ConfigError(f"Conv2D: padding must be 'valid', 'same' or an integer >= 0, "
                                  f"got {padding!r}")
            self.padding = padding
        else:
            self.padding = check_pair(padding, "padding", "Conv2D", minimum=0)
        self.init = initializers.get(init)
        self.bias = bool(bias)
        self.dtype = None if dtype is None else check_float_dtype(dtype, "Conv2D")
        if in_channels is not None:
            self.build(check_int(in_channels, "in_channels", "Conv2D"), self.dtype or np.float32)

    def build(self, in_channels, dtype):
        """Create the parameters once the input channels (and dtype) are known."""
        self.params["w"] = self.init(self.kernel_size + (in_channels, self.filters), dtype)
        if self.bias:
            self.params["b"] = np.zeros(self.filters, dtype=dtype)
        self.make_grads()

    def _pads(self, h, w):
        """((top, bottom), (left, right)) zero rows/columns to add for an h × w input."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        if self.padding == "same":
            pads = []
            for size, k, s, d in zip((h, w), self.kernel_size, self.stride, self.dilation):
                total = max((-(-size // s) - 1) * s + d * (k - 1) + 1 - size, 0)
                pads.append((total // 2, total - total // 2))
            return tuple(pads)
        return (self.padding[0],) * 2, (self.padding[1],) * 2

    def output_shape(self, input_shape):
        """(N, Ho, Wo, filters) for an input of shape (N, H, W, C)."""
        n, h, w, _ = input_shape
        (top, bottom), (left, right) = self._pads(h, w)
        return (n, output_size(h + top + bottom, self.kernel_size[0], self.stride[0], self.dilation[0]),
                output_size(w + left + right, self.kernel_size[1], self.stride[1], self.dilation[1]),
                self.filters)

    def _check(self, x):
        _check_images(self, x)
        w = self.params.get("w")
        if w is not None:
            channels, dtype = w.shape[2], w.dtype
        else:  # unbuilt: the channels of x, in the dtype the layer will be built in
            channels, dtype = x.shape[3], self.dtype or x.dtype
        if x.shape[3] != channels or x.dtype != dtype:
            raise ShapeError(f"{self!r}: expected images (batch, height, width, {channels}) of "
                             f"dtype {dtype}, got shape {x.shape} of dtype {x.dtype}")
        _, ho, wo, _ = self.output_shape(x.shape)
        if ho < 1 or wo < 1:
            (kh, kw), (dh, dw) = self.kernel_size, self.dilation
            raise ShapeError(f"{self!r}: input of shape {x.shape} (height × width {x.shape[1]}×"
                             f"{x.shape[2]}, padding {self.padding!r}) is smaller than the kernel, "
                             f"which spans {dh * (kh - 1) + 1}×{dw * (kw - 1) + 1} pixels; hint: "
                             "use padding='same' or a smaller kernel")

    def _w2(self):
        """The weights as the (kh·kw·C, filters) matrix of the im2col product (a view)."""
        return self.params["w"].reshape(-1, self.filters)

    def _crop(self, dxp, x_shape):
        """dL/dX from dL/dX̃: the padding's rows and columns cut off."""
        (top, _), (left, _) = self._pads(x_shape[1], x_shape[2])
        return dxp[:, top:top + x_shape[1], left:left + x_shape[2]]

    # ------------------------------------------------------------ textbook
    def forward(self, x, training=True):
        """pad → im2col → one matrix product (+ bias) → reshape to (N, Ho, Wo, filters)."""
        self._check(x)
        if "w" not in self.params:
            self.build(x.shape[3], self.dtype or x.dtype)
        if self.fast and x.shape[3] == 1:
            return self._fast_forward_one_channel(x, training)
        n, ho, wo, f = self.output_shape(x.shape)
        xp = np.pad(x, ((0, 0), *self._pads(x.shape[1], x.shape[2]), (0, 0)))
        cols = im2col(xp, self.kernel_size, self.stride, self.dilation)
        y = cols @ self._w2()
        if self.bias:
            y += self.params["b"]
        if training:
            self.save_for_backward({"x_shape": x.shape, "xp_shape": xp.shape, "cols": cols,
                                    "layout": "rows"})
        return y.reshape(n, ho, wo, f)

    def backward(self, grad, input_grad=True):
        """dW₂ = colsᵀ G, db = Σ_p G, and (if ``input_grad``) dcols = G W₂ᵀ → col2im → crop.
        Returns dL/dX, or None when ``input_grad=False`` (a net's first layer: nobody needs
        the gradient of the data, and skipping it saves a product and the col2im)."""
        (cache,) = self.saved_tensors
        if self.fast:
            return self._fast_backward(grad, input_grad, cache)
        if cache["layout"] != "rows":
            raise ConfigError(f"{self!r}: fast was switched off between forward and backward")
        g = grad.reshape(-1, self.filters)
        self.grads["w"][...] = (cache["cols"].T @ g).reshape(self.params["w"].shape)
        if self.bias:
            self.grads["b"][...] = g.sum(axis=0)
        if not input_grad:
            return None
        dcols = g @ self._w2().T
        dxp = col2im(dcols, cache["xp_shape"], self.kernel_size, self.stride, self.dilation)
        return self._crop(dxp, cache["x_shape"])

    # ------------------------------------------------------------ fast path
    # The same arithmetic, arranged for numpy and OpenBLAS (benchmarks/bench.py's fast-paths
    # table measures what each class's fast path saves on the benchmark CNN's epoch).
    def _fast_forward_one_channel(self, x, training):
        """A single-channel input (a grayscale image's first layer): its receptive fields would
        be rows of only kh·kw numbers, slow to copy and to multiply. They are stored per
        sample as the *columns* of a (kh·kw, Ho·Wo) block instead: im2col then copies whole
        image planes, and backward gets dL/dcols from N products instead of thousands of thin
        ones."""
        n, ho, wo, f = self.output_shape(x.shape)
        kh, kw = self.kernel_size
        xp = np.pad(x, ((0, 0), *self._pads(x.shape[1], x.shape[2]), (0, 0)))
        cols = np.empty((n, kh * kw, ho * wo), dtype=x.dtype)
        view = windows(xp, self.kernel_size, self.stride, self.dilation)[..., 0]  # (N, Ho, Wo, kh, kw)
        np.copyto(cols.reshape(n, kh, kw, ho, wo), view.transpose(0, 3, 4, 1, 2))
        y = np.matmul(cols.transpose(0, 2, 1), self._w2())
        if self.bias:
            y += self.params["b"]
        if training:
            self.save_for_backward({"x_shape": x.shape, "xp_shape": xp.shape, "cols": cols,
                                    "layout": "columns"})
        return y.reshape(n, ho, wo, f)

    def _fast_backward(self, grad, input_grad, cache):
        cols, f = cache["cols"], self.filters
        n, ho, wo, _ = grad.shape
        if self.bias:  # see _channel_sum
            self.grads["b"][...] = _channel_sum(grad)
        dw = self.grads["w"].reshape(-1, f)
        if cache["layout"] == "columns":
            np.sum(np.matmul(cols, grad.reshape(n, ho * wo, f)), axis=0, out=dw)
        else:
            np.matmul(cols.T, grad.reshape(-1, f), out=dw)
        if not input_grad:
            return None
        kh, kw, c, _ = self.params["w"].shape
        w2 = self._w2()
        # dL/dcols in a new array: ``cols`` is what forward saved, and backward never writes into
        # it (a second backward must see the same cols).
        if cache["layout"] == "columns":
            # dL/dcols = W₂ Gᵀ per sample, (N, kh·kw, Ho·Wo): N products instead of thousands.
            dcols = np.matmul(w2, grad.reshape(n, ho * wo, f).transpose(0, 2, 1))
            rows = dcols.reshape(n, kh, kw, ho, wo, 1).transpose(0, 3, 4, 1, 2, 5)
        else:
            # dL/dcols = G W₂ᵀ laid out offset-major, (kh·kw, N·Ho·Wo, C): each kernel offset's
            # block is then contiguous for col2im's strided adds. The tiny transposed weight is
            # copied: matmul is slower on a view.
            w_t = np.ascontiguousarray(w2.reshape(kh * kw, c, f).transpose(0, 2, 1))
            dcols = np.matmul(grad.reshape(1, -1, f), w_t)
            rows = dcols.reshape(kh, kw, n, ho, wo, c).transpose(2, 3, 4, 0, 1, 5)
        dxp = col2im(rows, cache["xp_shape"], self.kernel_size, self.stride, self.dilation)
        return self._crop(dxp, cache["x_shape"])

    def config(self):
        padding = self.padding if isinstance(self.padding, str) else _compact(self.padding)
        return {"filters": self.filters, "kernel_size": _compact(self.kernel_size),
                "stride": _compact(self.stride), "padding": padding,
                "dilation": _compact(self.dilation), "bias": self.bias}


def _channel_sum(a):
    """Per-channel sums of a (N, ..., C) array over every axis but the last (Conv2D's fast
    path). Summing the samples first (long contiguous rows), then the positions, is much faster
    than one reduction over N·H·W short rows of C numbers."""
    total = a.sum(axis=0)
    return total.reshape(-1, a.shape[-1]).sum(axis=0) if a.ndim > 2 else total


# ---------------------------------------------------------------- pooling
class _Pool2D(Layer):
    """Shared geometry of the pooling layers: a pool_size window stepped by ``stride``
    (default: pool_size, non-overlapping). Rows/columns that do not fill a window are dropped."""

    def __init__(self, pool_size=2, stride=None):
        super().__init__()
        name = type(self).__name__
        self.pool_size = check_pair(pool_size, "pool_size", name)
        self.stride = self.pool_size if stride is None else check_pair(stride, "stride", name)

    def _geometry(self, x):
        _check_images(self, x)
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        ho, wo = output_size(x.shape[1], ph, sh), output_size(x.shape[2], pw, sw)
        if ho < 1 or wo < 1:
            raise ShapeError(f"{self!r}: input of shape {x.shape} is smaller than the {ph}×{pw} "
                             "pool window")
        return ho, wo

    def _offsets(self, ho, wo):
        """For each window offset (i, j), the slice of the input that offset sees in every
        window: x[offset] has the output's shape (N, Ho, Wo, C)."""
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        return [(slice(None), slice(i, i + sh * (ho - 1) + 1, sh), slice(j, j + sw * (wo - 1) + 1, sw))
                for i in range(ph) for j in range(pw)]

    def config(self):
        return {"pool_size": _compact(self.pool_size), "stride": _compact(self.stride)}


class MaxPool2D(_Pool2D):
    """The maximum of each pool_size window, per channel. Backward: each window's gradient goes
    to the element that won the max (the first one on ties, as in PyTorch); the rest get 0.

    NaN wins: the maximum of a window that holds a NaN is NaN (as in PyTorch and np.max), and
    the window's gradient goes to its first NaN. A NaN in the data so shows up in the output
    instead of being silently dropped.

    The loop runs over the ph·pw window offsets, each a whole-batch strided slice: a running
    maximum, and which offset holds it — all the backward needs (not x itself)."""

    fast = True  # False: run the textbook forward/backward (same numbers, slower)

    # ------------------------------------------------------------ textbook
    def forward(self, x, training=True):
        ho, wo = self._geometry(x)
        if self.fast:
            return self._fast_forward(x, ho, wo, training)
        offsets = self._offsets(ho, wo)
        y = x[offsets[0]].copy()
        winner = np.zeros(y.shape, dtype=np.intp)
        for k, offset in enumerate(offsets[1:], start=1):
            candidate = x[offset]
            # strict: on ties the earlier element keeps the win; a NaN beats every number
            better = (candidate > y) | (np.isnan(candidate) & ~np.isnan(y))
            y[better] = candidate[better]
            winner[better] = k
        if training:
            self.save_for_backward(x.shape, winner)
        return y

    def backward(self, grad, input_grad=True):
        """dL/dx: each window's gradient to the offset that won. ``input_grad`` is ignored (a
        pooling layer has nothing else to compute)."""
        x_shape, winner = self.saved_tensors
        if self.fast and self._tiles(x_shape):
            return self._fast_backward(grad, x_shape, winner)
        dx = np.zeros(x_shape, dtype=grad.dtype)
        for k, offset in enumerate(self._offsets(*grad.shape[1:3])):
            dx[offset] += grad * (winner == k)
        return dx

    # ------------------------------------------------------------ fast path
    def _fast_forward(self, x, ho, wo, training):
        # The winner as a small uint8 index, updated by arithmetic: masked writes (y[better] =
        # ..., winner[better] = k) take ~10× longer than these whole-array operations.
        # np.maximum propagates NaN; the rare windows holding one get their winner afterwards.
        offsets = self._offsets(ho, wo)
        y = x[offsets[0]].copy()
        winner = np.zeros(y.shape, dtype=np.uint8 if len(offsets) <= 256 else np.intp)
        for k, offset in enumerate(offsets[1:], start=1):
            better = x[offset] > y
            np.maximum(y, x[offset], out=y)
            winner += better * (k - winner)
        nan = np.isnan(y)
        if nan.any():
            for k in reversed(range(len(offsets))):  # last to first: the first NaN wins
                winner[nan & np.isnan(x[offsets[k]])] = k
        if training:
            self.save_for_backward(x.shape, winner)
        return y

    def _tiles(self, x_shape):
        """True when the windows cover the input exactly once (non-overlapping, no remainder)."""
        (ph, pw), (sh, sw) = self.pool_size, self.stride
        return (ph, pw) == (sh, sw) and x_shape[1] % ph == 0 and x_shape[2] % pw == 0

    def _fast_backward(self, grad, x_shape, winner):
        # Windows that tile the input write every input element once: straight into an
        # uninitialised array, with no zero fill and no read-add-write.
        dx = np.empty(x_shape, dtype=grad.dtype)
        for k, offset in enumerate(self._offsets(*grad.shape[1:3])):
            np.multiply(grad, winner == k, out=dx[offset])
        return dx


class AvgPool2D(_Pool2D):
    """The mean of each pool_size window, per channel. Backward: each window's gradient is
    shared equally, 1/(ph·pw) to every element of the window."""

    def forward(self, x, training=True):
        offsets = self._offsets(*self._geometry(x))
        y = x[offsets[0]].copy()
        for offset in offsets[1:]:
            y += x[offset]
        y *= x.dtype.type(1.0 / len(offsets))
        if training:
            self.save_for_backward(x.shape)
        return y

    def backward(self, grad, input_grad=True):
        """dL/dx: 1/(ph·pw) of each window's gradient to each of its elements. ``input_grad`` is
        ignored (a pooling layer has nothing else to compute)."""
        (x_shape,) = self.saved_tensors
        offsets = self._offsets(*grad.shape[1:3])
        share = grad * grad.dtype.type(1.0 / len(offsets))
        dx = np.zeros(x_shape, dtype=grad.dtype)
        for offset in offsets:
            dx[offset] += share
        return dx
