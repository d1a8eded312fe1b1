"""Notebook 09 (convolutions): the exercises im2col, conv2d, col2im and conv2d_layer.

    check_im2col(my_im2col)   # my_im2col(x, k, stride, dilation), derived from the index arithmetic
    check_conv2d(my_conv2d)   # my_conv2d(x, w, b): im2col, one matrix product, the bias, a reshape
    check_col2im(my_col2im)   # my_col2im(dcols, x_shape, k, stride, dilation)
    check_layer(MyConv2D, Conv2D)   # the backward, wrapped in a layer

im2col and col2im are checked on geometries from overlapping windows to stride and dilation
together; a result that equals the function written with one planted mistake (``IM2COL_MISTAKES``,
``COL2IM_MISTAKES``, ``CONV2D_MISTAKES``) names it.
"""
import numpy as np

from ...conv import Conv2D, col2im, im2col, output_size, windows
from ...layers import Layer
from .compare import _as_array, _close, _expect, _first_mismatch
from .core import SEED, Failed, NotDone, _name, _run
from .n01_dense import check_layer
from .spec import Exercise, visible_defaults


# col2im geometries to try: (x_shape, k, stride, dilation), from overlapping windows to both
# stride and dilation.
COL2IM_TRIALS = [((2, 5, 6, 3), 3, 1, 1), ((1, 6, 6, 2), 2, 2, 1), ((2, 7, 6, 2), 3, 2, 1),
                 ((1, 7, 7, 2), 2, 1, 2), ((2, 9, 8, 1), 3, 2, 2)]


def _col2im_variant(cols, x_shape, k, s, d, swap=False, channels_first=False, stride=True,
                    dilation=True, swap_stride=False, assign=False):
    """col2im written with one planted mistake (the flags), to recognise a student's version."""
    n, h, w, c = x_shape
    ho, wo = output_size(h, k, s, d), output_size(w, k, s, d)
    if channels_first:
        rows = cols.reshape(n, ho, wo, c, k, k).transpose(0, 1, 2, 4, 5, 3)
    else:
        rows = cols.reshape(n, ho, wo, k, k, c)
    dx = np.zeros(x_shape)
    offset, step = (s, d) if swap_stride else (d if dilation else 1, s if stride else 1)
    for i in range(k):
        for j in range(k):
            block = rows[:, :, :, j, i] if swap else rows[:, :, :, i, j]
            target = (slice(None), slice(i * offset, i * offset + step * (ho - 1) + 1, step),
                      slice(j * offset, j * offset + step * (wo - 1) + 1, step))
            if assign:
                dx[target] = block
            else:
                dx[target] += block
    return dx


COL2IM_MISTAKES = [
    (dict(assign=True), "overwrites (=) where windows overlap: a pixel copied into several "
                        "windows receives the SUM of their gradients — add with += into an "
                        "array that starts at np.zeros"),
    (dict(swap=True), "puts the gradient of kernel offset (i, j) at (j, i): the columns are "
                      "ordered (i, j, c), kernel row first, as in w.reshape(-1, F) — reshape "
                      "dcols to (N, Ho, Wo, k, k, C) and take [:, :, :, i, j]"),
    (dict(channels_first=True), "reads the columns in (c, i, j) order (PyTorch's unfold "
                                "order); tinynn's im2col orders them (i, j, c): reshape dcols "
                                "to (N, Ho, Wo, k, k, C)"),
    (dict(stride=False), "ignores the stride: window (y, x) starts at pixel (y·s, x·s), so the "
                         "slice for offset (i, j) steps by s: i·d : i·d + s·(Ho − 1) + 1 : s"),
    (dict(dilation=False), "ignores the dilation: offset (i, j) sits at (i·d, j·d) inside its "
                           "window, so its slice starts at i·d, not at i"),
    (dict(swap_stride=True), "swaps stride and dilation: the slice for offset (i, j) starts at "
                             "i·d (the dilation spaces the taps) and steps by s (the stride "
                             "spaces the windows)"),
]


@visible_defaults
def check_col2im(candidate, *, trials=COL2IM_TRIALS, seed=SEED):
    """Check ``candidate(dcols, x_shape, k, stride=1, dilation=1) -> dx``, the adjoint of
    im2col: on overlapping windows, stride 2, dilation 2 and both, naming overwritten overlaps,
    a wrong column order (i, j, c), and a forgotten or swapped stride or dilation. ``trials``:
    (x_shape, k, stride, dilation) geometries; ``seed``: of the gradients."""
    def run():
        rng = np.random.default_rng(seed)
        for x_shape, k, s, d in trials:
            _col2im_trial(candidate, x_shape, k, s, d, rng)
        return (f"matches col2im on {len(trials)} geometries (overlapping windows, "
                "stride 2, dilation 2, both): it adds every window's gradient back where "
                "im2col copied it from")
    return _run(_name(candidate), run, seed)


def _col2im_trial(candidate, x_shape, k, s, d, rng):
    n, h, w, c = x_shape
    ho, wo = output_size(h, k, s, d), output_size(w, k, s, d)
    where = f"for x_shape {x_shape}, k={k}, stride={s}, dilation={d} (Ho×Wo = {ho}×{wo})"
    cols = rng.standard_normal((n * ho * wo, k * k * c))
    given = cols.copy()
    try:
        yours = candidate(given, x_shape, k, s, d)
    except ValueError as e:
        text = str(e)
        if "reshape" in text:
            raise Failed(f"{where}: {type(e).__name__}: {e}\n  hint: dcols has N·Ho·Wo rows "
                         "and k·k·C columns, with Ho = (H − d·(k − 1) − 1) // s + 1 (the same "
                         "for Wo): compute Ho and Wo with the stride and dilation") from None
        if "broadcast" in text or "shape" in text:
            raise Failed(f"{where}: {type(e).__name__}: {e}\n  hint: the slice of dx that "
                         "offset (i, j) writes to must hold Ho × Wo pixels: rows "
                         "i·d : i·d + s·(Ho − 1) + 1 : s, columns likewise") from None
        raise
    if yours is None:
        raise NotDone("returned None — `return dx` at the end")
    if not np.array_equal(given, cols):
        raise Failed("changed dcols in place: read it, and write into a new array dx")
    expected = col2im(cols, x_shape, k, s, d)
    yours = _as_array(yours, f"dx {where}")
    if yours.shape != expected.shape:
        raise Failed(f"dx {where} has the wrong shape: expected {expected.shape} (x_shape), got "
                     f"{yours.shape}")
    if _close(yours, expected):
        return
    again = candidate(cols.copy(), x_shape, k, s, d)
    if again is not None and not np.array_equal(np.asarray(again, dtype=np.float64), yours):
        raise Failed(f"dx {where}: two calls on the same dcols gave different results: dx must "
                     "start from np.zeros (np.empty holds whatever was in memory)")
    for flags, message in COL2IM_MISTAKES:
        try:
            wrong = _col2im_variant(cols, x_shape, k, s, d, **flags)
        except (ValueError, IndexError):
            continue
        if not _close(wrong, expected) and _close(yours, wrong):
            raise Failed(f"dx {where} {message}" + _first_mismatch(yours, expected))
    counts = col2im(np.ones_like(cols), x_shape, k, s, d)
    once, many = counts == 1, counts > 1
    if many.any() and _close(yours[once], expected[once]) and not _close(yours[many], expected[many]):
        raise Failed(f"dx {where} is right where a pixel lies in one window only and wrong where "
                     "windows overlap: every window that copied a pixel adds its gradient to it "
                     "(+=, starting from np.zeros)" + _first_mismatch(yours, expected))
    if np.any(yours[counts == 0]):
        raise Failed(f"dx {where} is nonzero at pixels no window covers (they get 0): start "
                     "from np.zeros, not np.empty" + _first_mismatch(yours, expected))
    _expect(f"dx {where}", yours, expected)


def _im2col_variant(x, k, s, d, swap=False, channels_first=False, stride=True, dilation=True,
                    swap_stride=False):
    """im2col written with one planted mistake (the flags), to recognise a student's version."""
    n, h, w, c = x.shape
    ho, wo = output_size(h, k, s, d), output_size(w, k, s, d)
    cols6 = np.zeros((n, ho, wo, k, k, c))
    offset, step = (s, d) if swap_stride else (d if dilation else 1, s if stride else 1)
    for i in range(k):
        for j in range(k):
            block = x[:, i * offset:i * offset + step * (ho - 1) + 1:step,
                      j * offset:j * offset + step * (wo - 1) + 1:step]
            if swap:
                cols6[:, :, :, j, i] = block
            else:
                cols6[:, :, :, i, j] = block
    if channels_first:
        cols6 = cols6.transpose(0, 1, 2, 5, 3, 4)
    return cols6.reshape(n * ho * wo, k * k * c)


IM2COL_MISTAKES = [
    (dict(swap=True), "puts kernel offset (i, j) in the columns of (j, i): each row is ordered "
                      "(i, j, c), kernel row first, like w.reshape(-1, F) — write the pixels "
                      "at offset (i, j) into cols6[:, :, :, i, j]"),
    (dict(channels_first=True), "orders each row (c, i, j) (PyTorch's unfold order); tinynn's "
                                "rows are (i, j, c), so that they meet w.reshape(-1, F) of a "
                                "(k, k, C, F) weight: build an (N, Ho, Wo, k, k, C) array"),
    (dict(stride=False), "ignores the stride: window (y, x) starts at pixel (y·s, x·s), so "
                         "the pixels at offset (i, j) of all windows are s apart — the slice "
                         "must step by s"),
    (dict(dilation=False), "ignores the dilation: offset (i, j) of window (y, x) is pixel "
                           "(y·s + i·d, x·s + j·d), so the slice for offset i starts at i·d, "
                           "not at i"),
    (dict(swap_stride=True), "swaps stride and dilation: offset i starts at i·d (the dilation "
                             "spaces the taps inside a window) and steps by s (the stride spaces "
                             "the windows)"),
]


@visible_defaults
def check_im2col(candidate, *, trials=COL2IM_TRIALS, seed=SEED):
    """Check ``candidate(x, k, stride=1, dilation=1) -> cols`` against tinynn's im2col on
    overlapping windows, stride 2, dilation 2 and both, naming a wrong column order ((j, i, c) or
    PyTorch's (c, i, j)), windows as columns, a forgotten or swapped stride or dilation, and a
    wrong output size. ``trials``: (x_shape, k, stride, dilation) geometries."""
    def run():
        rng = np.random.default_rng(seed)
        for x_shape, k, s, d in trials:
            _im2col_trial(candidate, x_shape, k, s, d, rng)
        return (f"matches im2col on {len(trials)} geometries (overlapping windows, stride 2, "
                "dilation 2, both): row (n, y, x) holds pixel (y·s + i·d, x·s + j·d, c) in "
                "column (i, j, c)")
    return _run(_name(candidate), run, seed)


def _im2col_trial(candidate, x_shape, k, s, d, rng):
    n, h, w, c = x_shape
    ho, wo = output_size(h, k, s, d), output_size(w, k, s, d)
    where = f"for x of shape {x_shape}, k={k}, stride={s}, dilation={d} (Ho×Wo = {ho}×{wo})"
    x = rng.standard_normal(x_shape)
    given = x.copy()
    try:
        yours = candidate(given, k, s, d)
    except ValueError as e:
        if "broadcast" in str(e) or "reshape" in str(e) or "shape" in str(e):
            raise Failed(f"{where}: {type(e).__name__}: {e}\n  hint: a window needs d·(k − 1) "
                         "+ 1 pixels and windows start s apart, so Ho = (H − d·(k − 1) − 1) // s "
                         "+ 1 (Wo likewise); for offset i the pixels the Ho windows see are "
                         "i·d, i·d + s, …, i·d + s·(Ho − 1)") from None
        raise
    if yours is None:
        raise NotDone("returned None — `return` the (N·Ho·Wo, k·k·C) matrix")
    if not np.array_equal(given, x):
        raise Failed("changed x in place: copy its pixels into a new array")
    expected = im2col(x, k, s, d)
    yours = _as_array(yours, f"cols {where}")
    if yours.shape == expected.shape[::-1] and yours.shape != expected.shape:
        raise Failed(f"cols {where} has shape {yours.shape}, the transpose of {expected.shape}: "
                     "tinynn puts each window in a ROW (N·Ho·Wo rows, k·k·C columns), so that "
                     "cols @ w.reshape(-1, F) is the convolution")
    if yours.shape != expected.shape:
        raise Failed(f"cols {where} has the wrong shape: expected {expected.shape} = "
                     f"(N·Ho·Wo, k·k·C), got {yours.shape}")
    if _close(yours, expected):
        return
    for flags, message in IM2COL_MISTAKES:
        try:
            wrong = _im2col_variant(x, k, s, d, **flags)
        except (ValueError, IndexError):
            continue
        if not _close(wrong, expected) and _close(yours, wrong):
            raise Failed(f"cols {where} {message}" + _first_mismatch(yours, expected))
    _expect(f"cols {where}", yours, expected)


CONV2D_TRIALS = [((2, 6, 5, 3), 3, 4), ((1, 5, 5, 2), 2, 3), ((3, 4, 6, 1), 3, 2)]


def _conv2d_variant(x, w, b, bias=True, order="ijc", flip=False):
    """my_conv2d written with one planted mistake, to recognise a student's version."""
    n, h, wd, c = x.shape
    k, f = w.shape[0], w.shape[-1]
    if flip:
        w = w[::-1, ::-1]
    if order == "cij":      # PyTorch's column order for the weights, against tinynn's cols
        w2 = w.transpose(2, 0, 1, 3).reshape(-1, f)
    elif order == "f_first":  # w.reshape(F, -1).T: the weights read as if F came first
        w2 = w.reshape(f, -1).T
    else:
        w2 = w.reshape(-1, f)
    y = im2col(x, k) @ w2 + (b if bias else 0)
    return y.reshape(n, h - k + 1, wd - k + 1, f)


CONV2D_MISTAKES = [
    (dict(bias=False), "forgets the bias: add b (shape (F,)) to every row of cols @ W₂ — "
                       "broadcasting adds it at every output pixel"),
    (dict(order="f_first"), "reshapes w as if its filters came first (w.reshape(F, -1).T): w is "
                            "(k, k, C, F) with F last, so w.reshape(-1, F) gives the (k·k·C, F) "
                            "matrix whose rows are ordered (i, j, c) like im2col's columns"),
    (dict(order="cij"), "orders the weights (c, i, j), as PyTorch's unfold orders its columns; "
                        "im2col's columns are (i, j, c): w.reshape(-1, F) matches them"),
    (dict(flip=True), "flips the kernel (the convolution of mathematics); deep-learning "
                      "frameworks compute the unflipped sum, a cross-correlation (section 1)"),
]


@visible_defaults
def check_conv2d(candidate, *, trials=CONV2D_TRIALS, seed=SEED):
    """Check ``candidate(x, w, b) -> y`` (stride 1, no padding) against tinynn's Conv2D with the
    same weights, naming a forgotten bias, weights reshaped in the wrong order and a flipped
    kernel. ``trials``: (x_shape, k, filters)."""
    def run():
        rng = np.random.default_rng(seed)
        for x_shape, k, f in trials:
            x = rng.standard_normal(x_shape)
            w, b = rng.standard_normal((k, k, x_shape[-1], f)), rng.standard_normal(f)
            where = f"for x {x_shape}, w {w.shape}"
            args = (x.copy(), w.copy(), b.copy())
            yours = candidate(*args)
            if yours is None:
                raise NotDone("returned None — `return` the (N, Ho, Wo, F) output")
            if not all(np.array_equal(a, o) for a, o in zip(args, (x, w, b))):
                raise Failed("changed an argument in place: compute a new array")
            expected = conv2d_reference(x, w, b)
            yours = _as_array(yours, f"the output {where}")
            if _close(yours, expected):
                continue
            for flags, message in CONV2D_MISTAKES:
                wrong = _conv2d_variant(x, w, b, **flags)
                if not _close(wrong, expected) and _close(yours, wrong):
                    raise Failed(f"the output {where} {message}" + _first_mismatch(yours, expected))
            _expect(f"the output {where}", yours, expected)
        return f"output matches Conv2D with the same weights on {len(trials)} shapes"
    return _run(_name(candidate), run, seed)


def conv2d_reference(x, w, b):
    """The reference of my_conv2d in the hidden test: tinynn's Conv2D with these weights."""
    layer = Conv2D(w.shape[-1], w.shape[:2])
    layer.load_params({"w": w, "b": b})
    return layer.forward(x)


IM2COL = Exercise(
    "im2col", ("my_im2col",), check_im2col, forbidden=(im2col, windows),
    trials=dict(trials=COL2IM_TRIALS),
    hidden=dict(trials=[((1, 6, 5, 2), 3, 1, 1), ((2, 7, 7, 1), 3, 2, 1), ((1, 8, 6, 2), 2, 2, 1),
                        ((2, 8, 8, 1), 3, 1, 2), ((1, 9, 9, 2), 2, 2, 2)]))
CONV2D = Exercise(
    "conv2d", ("my_conv2d",), check_conv2d, forbidden=(Conv2D,), bases=(Layer,),
    trials=dict(trials=CONV2D_TRIALS),
    hidden=dict(trials=[((3, 7, 6, 2), 2, 5), ((1, 6, 6, 3), 3, 2), ((2, 5, 4, 1), 1, 3)]))
COL2IM = Exercise(
    "col2im", ("my_col2im",), check_col2im, forbidden=(col2im,),
    trials=dict(trials=COL2IM_TRIALS),
    hidden=dict(trials=[((1, 6, 5, 2), 3, 1, 1), ((2, 7, 7, 1), 3, 2, 1), ((1, 8, 6, 2), 2, 2, 1),
                        ((2, 8, 8, 1), 3, 1, 2), ((1, 9, 9, 2), 2, 2, 2)]))
CONV2D_LAYER = Exercise(
    "conv2d_layer", ("MyConv2D",), check_layer, reference=Conv2D, bases=(Layer,),
    trials=dict(trials=[((2, 3), (2, 5, 5, 3)), ((3, 2), (3, 4, 6, 2)), ((1, 1), (1, 3, 3, 1))]),
    hidden=dict(trials=[((3, 2), (2, 6, 5, 2)), ((2, 3), (1, 5, 6, 3)), ((1, 1), (2, 3, 4, 1))]))
EXERCISES = (IM2COL, CONV2D, COL2IM, CONV2D_LAYER)
