"""Notebook 09 (convolutions): ``check_col2im``, and the exercises im2col and conv2d (checked by
``check_function``), col2im and conv2d_layer (checked by ``check_layer``).

    check_col2im(my_col2im)   # my_col2im(dcols, x_shape, k, stride, dilation)

col2im is checked on geometries from overlapping windows to stride and dilation together; a
result that equals col2im written with one planted mistake (``COL2IM_MISTAKES``) names it.
"""
import numpy as np

from ...conv import Conv2D, col2im, im2col, output_size
from ...layers import Layer
from .compare import _as_array, _close, _expect, _first_mismatch
from .core import SEED, Failed, NotDone, _name, _run
from .n00_overview import check_function
from .n01_dense import check_layer
from .spec import Call, Exercise, visible_defaults


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


def conv2d_reference(x, w, b):
    """The reference of my_conv2d in the hidden test: tinynn's Conv2D with these weights."""
    layer = Conv2D(w.shape[-1], w.shape[:2])
    layer.load_params({"w": w, "b": b})
    return layer.forward(x)


IM2COL = Exercise(
    "im2col", ("my_im2col",), check_function, reference=im2col,
    calls=lambda rng: [Call(args=(rng.standard_normal((3, 6, 7, 2)), 2))])
CONV2D = Exercise(
    "conv2d", ("my_conv2d",), check_function, forbidden=(Conv2D,), bases=(Layer,),
    calls=lambda rng: [Call(args=(conv2d_reference, *(
        rng.standard_normal(s) for s in ((3, 7, 6, 2), (2, 2, 2, 5), (5,)))))])
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
