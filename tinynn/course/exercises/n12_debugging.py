"""Notebook 12 (debugging a network): ``check_shuffle``, ``check_scaling``,
``check_dead_fraction``, ``check_inference`` and ``check_batch_dependency``, and the exercises
shuffle, scaling, dead_fraction, evaluate, batch_dependency and dense_backward (notebook 01's
Dense, checked again by ``check_layer``).

Each check builds a small input whose right answer is known by construction (row i of the data
holds 3i, 3i + 1, 3i + 2; chosen units are dead) and names the bug that a wrong answer reveals.
"""
import copy
import dataclasses

import numpy as np

from ... import random as tn_random
from ...diagnostics import batch_dependency, dead_fraction
from ...errors import CallOrderError
from ...layers import Dense, Dropout, Layer, ReLU
from ...metrics import accuracy
from ...model import Model
from ...net import Net
from ...norm import BatchNorm
from .compare import _close, _first_mismatch
from .core import SEED, Failed, NotDone, _name, _run
from .n01_dense import DENSE
from .spec import Exercise, visible_defaults

@visible_defaults
def check_shuffle(candidate, *, samples=20, shuffle_seed=0, seed=SEED):
    """Check ``shuffle_together(x, y, seed) -> (x_shuffled, y_shuffled)``: every image keeps its
    own label, nothing is lost or duplicated, the order changes, and the inputs stay as they were.
    ``samples``: rows of the data set (below 70, so that labels stay unique); ``shuffle_seed``:
    the seed passed to the candidate."""
    def run():
        n = samples
        x = np.arange(3 * n, dtype=np.float64).reshape(n, 3)  # row i holds 3i, 3i + 1, 3i + 2
        y = np.arange(n) % 7 * 10 + np.arange(n) // 7        # a label that identifies row i
        x_given, y_given = x.copy(), y.copy()
        result = candidate(x_given, y_given, shuffle_seed)
        if result is None:
            raise NotDone("shuffle_together returned None — `return x_shuffled, y_shuffled`")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Failed("return two arrays, the shuffled images and the shuffled labels: "
                         "return x[order], y[order]")
        xs, ys = (np.asarray(a) for a in result)
        if not (np.array_equal(x_given, x) and np.array_equal(y_given, y)):
            raise Failed("changed its input arrays in place (np.random.shuffle(x) does that): "
                         "index with a permutation instead, x[order]")
        if xs.shape != x.shape or ys.shape != y.shape:
            raise Failed(f"returned shapes {xs.shape} and {ys.shape}, expected {x.shape} and "
                         f"{y.shape}: shuffle the rows, keep every sample")
        rows = xs[:, 0].astype(np.int64) // 3
        if sorted(rows.tolist()) != list(range(n)) or not np.array_equal(xs, x[rows]):
            raise Failed("the shuffled images are not the original images once each: some are "
                         "lost or repeated — use one permutation of range(len(x))")
        if sorted(ys.tolist()) != sorted(y.tolist()):
            raise Failed("the shuffled labels are not the original labels once each")
        if np.array_equal(rows, np.arange(n)):
            raise Failed("did not change the order: draw a permutation, e.g. "
                         "np.random.default_rng(seed).permutation(len(x))")
        if not np.array_equal(ys, y[rows]):
            kept = int(np.sum(ys == y[rows]))
            raise Failed(f"images and labels are shuffled with DIFFERENT permutations: only "
                         f"{kept} of {n} images still carry their own label. Draw one "
                         "permutation and index both arrays with it: x[order], y[order]")
        again = candidate(x.copy(), y.copy(), shuffle_seed)
        if not np.array_equal(np.asarray(again[0]), xs):
            raise Failed("two calls with the same seed gave different orders: draw the "
                         "permutation from np.random.default_rng(seed)")
        return "every image keeps its label; one permutation, from the seed"
    return _run(_name(candidate), run, seed)


@visible_defaults
def check_scaling(candidate, *, shape=(5, 784), seed=SEED):
    """Check ``scale_pixels(raw)``: uint8 pixels 0–255 → float32 values in [0, 1] (pixel / 255),
    on raw images of ``shape`` drawn from ``seed``."""
    def run():
        raw = np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)
        raw[0, :2] = 0, 255
        given = raw.copy()
        result = candidate(given)
        if result is None:
            raise NotDone("scale_pixels returned None — `return` the scaled array")
        if not np.array_equal(given, raw):
            raise Failed("changed the raw array in place: return a new array")
        result = np.asarray(result)
        if result.shape != raw.shape:
            raise Failed(f"returned shape {result.shape}, expected {raw.shape}: scale every "
                         "pixel, keep the shape")
        if result.dtype.kind != "f":
            raise Failed(f"returned dtype {result.dtype}: integer division loses everything "
                         "between 0 and 1 — convert to float32 first, raw.astype(np.float32)")
        if result.dtype != np.float32:
            raise Failed(f"returned dtype {result.dtype}; the net trains in float32 "
                         "(raw.astype(np.float32) / 255)")
        expected = raw.astype(np.float32) / 255
        if np.allclose(result, raw):
            raise Failed("the values are still 0–255: divide by 255")
        if np.allclose(result, raw / 256.0):
            raise Failed("divided by 256: the largest pixel, 255, must become exactly 1")
        if np.allclose(result.mean(), 0, atol=1e-3) and np.allclose(result.std(), 1, atol=1e-2):
            raise Failed("standardised to mean 0 and std 1; here the exercise asks for [0, 1], "
                         "pixel / 255")
        if not np.allclose(result, expected, rtol=1e-6, atol=1e-7):
            raise Failed(f"values differ from pixel / 255 (range {result.min():g} to "
                         f"{result.max():g}, expected 0 to 1)" + _first_mismatch(
                             result.astype(np.float64), expected.astype(np.float64)))
        return "pixels 0–255 become float32 values 0–1"
    return _run(_name(candidate), run, seed)


@visible_defaults
def check_dead_fraction(candidate, reference, *, shape=(6, 8), dead_units=(1, 4, 5), seed=SEED):
    """Check ``my_dead_fraction(h)``: the fraction of units (columns) that are 0 for EVERY
    sample (row) of a batch of activations ``h`` (of ``shape``, drawn from ``seed``, with the
    columns ``dead_units`` dead and one sample where every unit is 0)."""
    def run():
        h = np.maximum(np.random.default_rng(seed).standard_normal(shape), 0)
        h[:, list(dead_units)] = 0   # dead units (three in the example)
        h[2, :] = 0                  # and one sample where every unit is 0
        dead = f"{int(np.all(h == 0, axis=0).sum())} of {h.shape[1]}"
        result = candidate(h.copy())
        if result is None:
            raise NotDone("my_dead_fraction returned None — `return` the fraction")
        try:
            value = float(np.asarray(result, dtype=np.float64).reshape(()))
        except (TypeError, ValueError):
            raise Failed(f"returned an array of shape {np.shape(result)}: return one number, "
                         "the mean over the units") from None
        expected = reference(h)
        if abs(value - expected) < 1e-12:
            return f"{expected:.3f} of the units are dead in the example ({dead})"
        if abs(value - np.mean(h == 0)) < 1e-12:
            raise Failed(f"got {value:.3f}: that is the fraction of zero ENTRIES; a unit is dead "
                         "only when it is 0 for every sample: np.all(h == 0, axis=0), then the mean")
        if abs(value - np.mean(np.all(h == 0, axis=1))) < 1e-12:
            raise Failed(f"got {value:.3f}: that counts samples whose units are all 0 (axis=1); "
                         "a unit is a column — np.all(h == 0, axis=0)")
        if abs(value - np.mean(np.any(h == 0, axis=0))) < 1e-12:
            raise Failed(f"got {value:.3f}: that counts units that are 0 for SOME sample (any); "
                         "a dead unit is 0 for every sample (all)")
        if abs(value - expected * h.shape[1]) < 1e-9:
            raise Failed(f"got {value:g}: that is the number of dead units; divide by the "
                         "number of units (take the mean)")
        raise Failed(f"got {value:.4g}, expected {expected:.4g} ({dead} units are 0 for every "
                     "sample)")
    return _run(_name(candidate), run, seed)


@visible_defaults
def check_inference(candidate, *, seed=SEED):
    """Check ``my_evaluate(net, x, y) -> accuracy``: it must use the net in inference mode
    (``training=False``: no dropout), so that it is deterministic and equals tn's evaluation."""
    def run():
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((200, 6)).astype(np.float32)
        y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + 2 * (x[:, 2] > 0)
        tn_random.seed(seed)
        net = Net([Dense(32), ReLU(), Dropout(0.5), Dense(4)])
        net.forward(x[:1])
        before = net.state_dict()
        expected = accuracy(net.forward(x, training=False), y)
        first = candidate(net, x.copy(), y.copy())
        if first is None:
            raise NotDone("my_evaluate returned None — `return` the accuracy")
        first = float(np.asarray(first, dtype=np.float64).reshape(()))
        second = float(np.asarray(candidate(net, x.copy(), y.copy()), dtype=np.float64).reshape(()))
        if any(not np.array_equal(before[k], v) for k, v in net.state_dict().items()):
            raise Failed("evaluating changed the parameters: evaluation only runs forward")
        if first != second:
            raise Failed(f"two evaluations of the same net on the same data gave {first:.3f} and "
                         f"{second:.3f}: dropout is still on — call net.forward(x, training=False)")
        if abs(first - expected) > 1e-12:
            if abs(first - (1 - expected)) < 1e-12:
                raise Failed("returned the error rate (1 − accuracy)")
            raise Failed(f"got accuracy {first:.4f}, expected {expected:.4f}: predicted class = "
                         "argmax of the logits along axis 1, compared with y, then the mean")
        return "deterministic, and equal to the inference-mode accuracy"
    return _run(_name(candidate), run, seed)


class _FlattenMixing(Layer):
    """(N, a, b) → (N, a·b) written ``x.reshape(-1, N).T``: the shapes are right, but each row
    takes pixels of several samples (a batch-mixing reshape, planted for the check)."""

    def forward(self, x, training=True):
        if training:
            self.save_for_backward(x.shape)
        return x.reshape(-1, len(x)).T

    def backward(self, grad):
        (shape,) = self.saved_tensors
        return grad.T.reshape(shape)


def _dependency_nets(shape):
    """The check's three nets, for inputs of ``shape`` (batch, features): one that treats every
    sample on its own, one with BatchNorm, one with a batch-mixing flatten (its input gets an
    extra axis of 2). Each is built (an inference forward, which moves nothing) in float64."""
    n, d = shape
    nets = [("an MLP (Dense, ReLU, Dense)", Net([Dense(6), ReLU(), Dense(4)]), (n, d)),
            ("an MLP with BatchNorm (Dense, BatchNorm, ReLU, Dense)",
             Net([Dense(6), BatchNorm(), ReLU(), Dense(4)]), (n, d)),
            ("a net whose flatten is x.reshape(-1, len(x)).T",
             Net([_FlattenMixing(), Dense(6), ReLU(), Dense(4)]), (n, 2, d))]
    return nets


def _dependency_variant(net, x, i, seed_rows="row", scale=1.0):
    """The batch dependency written with one planted mistake, to recognise a student's version:
    ``seed_rows`` "all" (every row seeded: the whole batch's output) or "column" (output unit i
    instead of sample i); ``scale`` (1/N: the gradient of a mean)."""
    net = copy.deepcopy(net)
    out = net.forward(x, training=True)
    seed = np.zeros_like(out)
    if seed_rows == "all":
        seed[...] = 1
    elif seed_rows == "column":
        seed[:, i % out.shape[1]] = 1
    else:
        seed[i] = 1
    return net.backward(seed * scale)


BATCH_DEPENDENCY_MISTAKES = [
    (dict(seed_rows="all"), "seeds EVERY row of the output with 1: that is the gradient of the "
                            "whole batch's output, in which every row is non-zero whatever the "
                            "net — seed only row i: np.zeros_like(out), then seed[i] = 1"),
    (dict(seed_rows="column"), "seeds column i (output unit i of every sample) instead of row i "
                               "(every output of sample i): seed[i] = 1, not seed[:, i] = 1"),
    (dict(scale="mean"), "seeds row i with 1/N (the gradient of a batch mean): the sum of row "
                         "i's outputs has gradient 1 for each of them"),
]


@visible_defaults
def check_batch_dependency(candidate, reference, *, trials=((5, 4, 1), (6, 3, 5)),
                           mistakes=BATCH_DEPENDENCY_MISTAKES, seed=SEED):
    """Check ``my_batch_dependency(net, x, i) -> dx``: the gradient of the sum of output row
    ``i`` of a training forward with respect to the whole batch ``x`` (x's shape), computed
    without changing the net. Run on three nets (an MLP, where every row but i must be exactly
    0; one with BatchNorm and one with a batch-mixing flatten, where they are not), for each
    (batch, features, i) of ``trials``; a result equal to a variant of ``mistakes`` names it."""
    def run():
        rng = np.random.default_rng(seed)
        for n, d, i in trials:
            for what, net, shape in _dependency_nets((n, d)):
                x = rng.standard_normal(shape)
                net.forward(x, training=False)
                _dependency_trial(candidate, reference, what, net, x, i, mistakes)
        return (f"matches on {len(trials)} batches × 3 nets: every row but i is exactly 0 for "
                "the MLP, and not for BatchNorm in training mode or the batch-mixing flatten")
    return _run(_name(candidate), run, seed)


def _dependency_trial(candidate, reference, what, net, x, i, mistakes):
    where = f"for {what}, x of shape {x.shape}, i = {i}"
    before = {k: np.array(v) for k, v in net.state_dict().items()}
    given = x.copy()
    try:
        yours = candidate(net, given, i)
    except CallOrderError:
        raise Failed(f"{where}: net.backward found nothing saved — the forward ran in inference "
                     "mode (net.forward(x) and net(x) default to training=False). Batch mixing "
                     "by BatchNorm only happens in training mode, and backward needs a training "
                     "forward: net.forward(x, training=True)") from None
    if yours is None:
        raise NotDone("my_batch_dependency returned None — `return` the gradient")
    if not np.array_equal(given, x):
        raise Failed(f"{where}: changed x in place: the check only reads it")
    after = net.state_dict()
    moved = [k for k, v in before.items() if not np.array_equal(np.asarray(after[k]), v)]
    if moved:
        raise Failed(f"{where}: changed the net ({', '.join(moved)}): a training forward moves "
                     "BatchNorm's running statistics, and a check must not change what it "
                     "checks — work on a copy, copy.deepcopy(net)")
    yours = np.asarray(yours, dtype=np.float64)
    if yours.shape in (x.shape[1:], (1,) + x.shape[1:]):
        raise Failed(f"{where}: returned only row i (shape {yours.shape}); the point of the "
                     f"check is the OTHER rows: return the gradient for the whole batch, shape "
                     f"{x.shape}")
    if yours.shape != x.shape:
        raise Failed(f"{where}: returned shape {yours.shape}, expected x's shape {x.shape}: "
                     "the gradient with respect to the whole input batch")
    expected = np.asarray(reference(net, x, i), dtype=np.float64)
    if _close(yours, expected):
        again = np.asarray(candidate(net, x.copy(), i), dtype=np.float64)
        if not np.array_equal(again, yours):
            raise Failed(f"{where}: two calls gave different results: the seed array must start "
                         "from np.zeros_like(out) (np.empty holds whatever was in memory)")
        return
    for flags, message in mistakes:
        flags = dict(flags)
        if flags.get("scale") == "mean":
            flags["scale"] = 1.0 / len(x)
        wrong = _dependency_variant(net, x, i, **flags)
        if not _close(wrong, expected) and _close(yours, wrong):
            raise Failed(f"{where}: {message}" + _first_mismatch(yours, expected))
    others = np.delete(yours, i, axis=0)
    if not np.any(np.delete(expected, i, axis=0)) and np.any(others):
        raise Failed(f"{where}: rows other than i are non-zero, but this net treats every sample "
                     "on its own, so sample i's output cannot depend on sample j's input: feed "
                     "net.backward a gradient that is 1 in row i and 0 in every other row (not "
                     "the gradient of the whole batch's output or loss)"
                     + _first_mismatch(yours, expected))
    if not np.any(yours[i]) and np.any(expected[i]):
        raise Failed(f"{where}: row i is 0: seed row i of the output gradient with 1")
    raise Failed(f"{where}: differs from the gradient of output row i's sum"
                 + _first_mismatch(yours, expected))


SHUFFLE = Exercise(
    "shuffle", ("shuffle_together",), check_shuffle,
    trials=dict(samples=20, shuffle_seed=0), hidden=dict(samples=31, shuffle_seed=5))
SCALING = Exercise(
    "scaling", ("scale_pixels",), check_scaling,
    trials=dict(shape=(5, 784)), hidden=dict(shape=(7, 784)))
DEAD_FRACTION = Exercise(
    "dead_fraction", ("my_dead_fraction",), check_dead_fraction, reference=dead_fraction,
    trials=dict(shape=(6, 8), dead_units=(1, 4, 5)),
    hidden=dict(shape=(9, 11), dead_units=(0, 3, 7, 10)))
EVALUATE = Exercise(
    "evaluate", ("my_evaluate",), check_inference, forbidden=(Model.evaluate,))
BATCH_DEPENDENCY = Exercise(
    "batch_dependency", ("my_batch_dependency",), check_batch_dependency,
    reference=batch_dependency, mistakes=dict(mistakes=BATCH_DEPENDENCY_MISTAKES),
    trials=dict(trials=((5, 4, 1), (6, 3, 5))), hidden=dict(trials=((7, 5, 6), (4, 6, 0))))
DENSE_BACKWARD = dataclasses.replace(DENSE, id="dense_backward")
EXERCISES = (SHUFFLE, SCALING, DEAD_FRACTION, EVALUATE, BATCH_DEPENDENCY, DENSE_BACKWARD)
