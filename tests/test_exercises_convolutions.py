"""check_im2col and check_conv2d (notebook 09's exercises 1 and 2): every planted mistake is
named, correct code passes, nothing raises. The mistakes are written as students write them (not
with the module's own variants, which would let a wrong entry there pass its own test)."""
import numpy as np
import pytest

from tinynn.conv import im2col
from tinynn.course.exercises.n09_convolutions import check_conv2d, check_im2col

NOT_DONE = "not yet implemented"


def verdict(capsys, check, *args, **kwargs):
    result = check(*args, **kwargs)
    out, err = capsys.readouterr()
    assert err == ""
    return result, out


def im2col_written(swap=False, channels_first=False, stride=True, dilation=True, swapped=False,
                   wrong_size=False, transposed=False, in_place=False):
    def my_im2col(x, k, s=1, d=1):
        n, h, w, c = x.shape
        if wrong_size:
            ho, wo = h - k + 1, w - k + 1
        else:
            ho, wo = (h - d * (k - 1) - 1) // s + 1, (w - d * (k - 1) - 1) // s + 1
        cols6 = np.zeros((n, ho, wo, k, k, c))
        start, step = (s, d) if swapped else ((d if dilation else 1), (s if stride else 1))
        for i in range(k):
            for j in range(k):
                block = x[:, i * start:i * start + step * (ho - 1) + 1:step,
                          j * start:j * start + step * (wo - 1) + 1:step]
                if swap:
                    cols6[:, :, :, j, i] = block
                else:
                    cols6[:, :, :, i, j] = block
        if channels_first:
            cols6 = np.moveaxis(cols6, 5, 3)
        if in_place:
            x[...] = 0
        cols = cols6.reshape(n * ho * wo, k * k * c)
        return cols.T if transposed else cols
    return my_im2col


def im2col_loops(x, k, s=1, d=1):
    """A correct im2col with a loop over windows (slow, but right)."""
    n, h, w, c = x.shape
    ho, wo = (h - d * (k - 1) - 1) // s + 1, (w - d * (k - 1) - 1) // s + 1
    rows = []
    for b in range(n):
        for y in range(ho):
            for xx in range(wo):
                rows.append(x[b, y * s:y * s + d * (k - 1) + 1:d, xx * s:xx * s + d * (k - 1) + 1:d].ravel())
    return np.array(rows)


def im2col_todo(x, k, s=1, d=1):
    # YOUR CODE HERE
    raise NotImplementedError()


IM2COL_BUGS = [
    (im2col_written(swap=True), "(j, i)"),
    (im2col_written(channels_first=True), "(c, i, j)"),
    (im2col_written(stride=False), "ignores the stride"),
    (im2col_written(dilation=False), "ignores the dilation"),
    (im2col_written(swapped=True), "swaps stride and dilation"),
    (im2col_written(wrong_size=True), "Ho = (H − d·(k − 1) − 1) // s + 1"),
    (im2col_written(transposed=True), "each window in a ROW"),
    (im2col_written(in_place=True), "changed x in place"),
    (lambda x, k, s=1, d=1: None, NOT_DONE),
    (im2col_todo, NOT_DONE),
]


@pytest.mark.parametrize("buggy, keyword", IM2COL_BUGS)
def test_im2col_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_im2col, buggy)
    assert result is False and keyword in out, out


def test_a_correct_im2col_passes(capsys):
    for candidate in (im2col_written(), im2col_loops, im2col):
        result, out = verdict(capsys, check_im2col, candidate)
        assert result is True and out.startswith("✔") and "5 geometries" in out, out


def conv2d_written(bias=True, weights="ijc", flip=False, output=True):
    def my_conv2d(x, w, b):
        n, h, wd, c = x.shape
        k, f = w.shape[0], w.shape[-1]
        if flip:
            w = np.flip(w, axis=(0, 1))
        if weights == "ijc":
            w2 = w.reshape(-1, f)
        elif weights == "f_first":
            w2 = w.reshape(f, -1).T
        else:  # (c, i, j)
            w2 = np.transpose(w, (2, 0, 1, 3)).reshape(-1, f)
        y = im2col(x, k) @ w2
        if bias:
            y = y + b
        return y.reshape(n, h - k + 1, wd - k + 1, f) if output else None
    return my_conv2d


CONV2D_BUGS = [
    (conv2d_written(bias=False), "forgets the bias"),
    (conv2d_written(weights="f_first"), "as if its filters came first"),
    (conv2d_written(weights="cij"), "orders the weights (c, i, j)"),
    (conv2d_written(flip=True), "flips the kernel"),
    (conv2d_written(output=False), NOT_DONE),
]


@pytest.mark.parametrize("buggy, keyword", CONV2D_BUGS)
def test_conv2d_mistakes_are_named(capsys, buggy, keyword):
    result, out = verdict(capsys, check_conv2d, buggy)
    assert result is False and keyword in out, out


def test_a_correct_conv2d_passes(capsys):
    result, out = verdict(capsys, check_conv2d, conv2d_written())
    assert result is True and "3 shapes" in out, out
