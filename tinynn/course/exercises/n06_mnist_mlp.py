"""Notebook 06 (MNIST with an MLP): ``check_he_init``, ``check_confusion_matrix`` and
``check_precision_recall``, and the exercises he_normal, confusion_matrix and precision_recall.

    check_he_init(my_he_normal)                    # my_he_normal(shape, dtype) -> array
    check_confusion_matrix(my_confusion_matrix)    # (logits, labels, n_classes) -> counts
    check_precision_recall(my_precision_recall)    # counts -> (precision, recall) per class

He initialisation is random, so it is checked statistically: on a few hundred thousand seeded
draws the standard deviation must be √(2/fan_in), and the classic mistakes (1/fan_in, Xavier,
fan_out, the variance as the std, a uniform bound as the std) are named by the std they give.
"""
import numpy as np

from ... import random as tn_random
from ...initializers import he_normal
from ...metrics import confusion_matrix, precision_recall
from .compare import _first_mismatch, _same
from .core import SEED, Failed, NotDone, _name, _run
from .spec import Exercise, visible_defaults

HE_SHAPES = [(400, 1000), (1000, 250)]   # (fan_in, fan_out): 400,000 and 250,000 draws each
HE_TOLERANCE = 0.03                      # relative; a sample std of 250,000 draws is within 0.2 %


def _he_candidates(fan_in, fan_out):
    """(name, std, uniform?, diagnosis) of He normal and of the classic mistakes."""
    he = np.sqrt(2.0 / fan_in)
    return [
        ("he", he, False, None),
        ("he_uniform", he, True,
         "has the right variance 2/fan_in, but the values are uniformly distributed (that is "
         "He *uniform*, tn.initializers.he_uniform); the exercise asks for a normal "
         "distribution: rng.standard_normal(shape) * std"),
        ("bound_as_std", np.sqrt(2.0 / fan_in / 3.0), True,
         "draws uniform(-a, a) with a = √(2/fan_in), the std used as the bound: uniform(-a, a) "
         "has variance a²/3, so its std is a/√3, too small. Draw from a normal distribution with "
         "std √(2/fan_in)"),
        ("std_as_bound", np.sqrt(6.0 / fan_in), False,
         "uses √(6/fan_in), He *uniform*'s bound, as the std of a normal distribution: the "
         "bound a of uniform(-a, a) is √3 times its std. For a normal draw, std = √(2/fan_in)"),
        ("lecun", np.sqrt(1.0 / fan_in), False,
         "has variance 1/fan_in (LeCun's initialisation, right for linear or tanh units): a ReLU "
         "zeroes half of its inputs, which halves E[h²], so He doubles it: Var(w) = 2/fan_in"),
        ("xavier", np.sqrt(2.0 / (fan_in + fan_out)), False,
         "has variance 2/(fan_in + fan_out): that is Xavier/Glorot's compromise between the "
         "forward and the backward pass; He keeps the forward signal through ReLUs: "
         "Var(w) = 2/fan_in"),
        ("fan_out", np.sqrt(2.0 / fan_out), False,
         "uses fan_out (shape[1], the number of units) instead of fan_in (shape[0], the number "
         "of inputs): each output sums fan_in products, so Var(w) = 2/fan_in"),
        ("std_is_variance", 2.0 / fan_in, False,
         "has std 2/fan_in, but 2/fan_in is the VARIANCE: the std is its square root, "
         "√(2/fan_in) (np.sqrt)"),
        ("no_scale", 1.0, False,
         "has std 1: multiply the standard normal draws by std = √(2/fan_in)"),
    ]


@visible_defaults
def check_he_init(candidate, *, shapes=HE_SHAPES, seed=SEED):
    """Check ``my_he_normal(shape, dtype) -> array``: normal, mean 0, std √(2/fan_in) with
    fan_in = shape[0], the requested shape and dtype, drawn from tinynn's seeded generator.
    Compared statistically on the seeded draws of ``shapes`` (by default 400,000 and 250,000);
    the classic mistakes (1/fan_in,
    Xavier, fan_out, std = 2/fan_in, uniform bound vs std) are named."""
    def run():
        for shape in shapes:
            _he_trial(candidate, shape)
        tn_random.seed(seed)
        first = np.asarray(candidate((30, 20), np.float32))
        tn_random.seed(seed)
        again = np.asarray(candidate((30, 20), np.float32))
        if not np.array_equal(first, again):
            raise Failed("two calls after the same tn.seed(0) gave different weights: draw from "
                         "tinynn's generator, tn.random.rng(), not np.random, so that a seeded "
                         "run is reproducible")
        fan_in = shapes[0][0]
        return (f"std √(2/fan_in) (e.g. {np.sqrt(2 / fan_in):.4f} for fan_in = {fan_in}), mean 0, "
                f"normal, on {len(shapes)} shapes; right shape and dtype; reproducible")
    return _run(_name(candidate), run, seed)


def _he_trial(candidate, shape):
    fan_in, fan_out = shape
    result = None
    for dtype in (np.float32, np.float64):
        result = candidate(shape, dtype)
        if result is None:
            raise NotDone("returned None — `return` the array of weights")
        if not isinstance(result, np.ndarray):
            raise Failed(f"returned {type(result).__name__}, expected a numpy array")
        if result.shape != tuple(shape):
            raise Failed(f"for shape {shape} returned shape {result.shape}: pass `shape` to the "
                         "generator, e.g. rng.standard_normal(shape)")
        if result.dtype != dtype:
            raise Failed(f"asked for dtype {np.dtype(dtype).name}, returned "
                         f"{result.dtype.name}: finish with .astype(dtype)")
    w = result.astype(np.float64).ravel()
    if not np.all(np.isfinite(w)):
        raise Failed("the weights contain NaN or inf")
    mean, std = float(w.mean()), float(w.std())
    if std <= 1e-12 * max(abs(mean), 1.0):
        raise Failed("all weights are equal: draw them at random (rng.standard_normal)")
    if abs(mean) > 0.02 * std + 1e-12 and abs(mean) > 5 * std / np.sqrt(w.size):
        raise Failed(f"the mean of the weights is {mean:.3g}, not 0 (std {std:.3g}): draw from a "
                     "distribution centred at 0 (standard_normal, not random() in [0, 1))")
    kurtosis = float(np.mean((w - mean) ** 4) / std ** 4)   # normal 3, uniform 1.8
    uniform = kurtosis < 2.4
    matches = [c for c in _he_candidates(fan_in, fan_out)
               if c[2] == uniform and abs(std / c[1] - 1) < HE_TOLERANCE]
    if matches and matches[0][0] == "he":
        return
    if matches:
        raise Failed(f"for shape {shape} (fan_in {fan_in}, fan_out {fan_out}) it "
                     f"{matches[0][3]}")
    kind = "uniformly distributed" if uniform else "normal"
    raise Failed(f"for shape {shape} (fan_in {fan_in}, fan_out {fan_out}) the weights are {kind} "
                 f"with std {std:.4g}; He normal has std √(2/fan_in) = {np.sqrt(2 / fan_in):.4g}"
                 f" (ratio {std / np.sqrt(2 / fan_in):.3g})")


# ---------------------------------------------------------------- the confusion matrix
# (samples, classes) of the trials: many samples per pair of classes (repeated pairs are where
# `counts[labels, predicted] += 1` goes wrong), and the last class never occurs (the matrix is
# still n_classes × n_classes).
CONFUSION_TRIALS = [(200, 5), (90, 7), (40, 4)]


def _confusion_trial(rng, n, classes):
    """Float32 logits and labels of `classes` classes in which the last class is never the
    label and never predicted: about half the rows right."""
    logits = rng.standard_normal((n, classes)).astype(np.float32)
    logits[:, -1] -= 10.0
    labels = np.where(rng.random(n) < 0.5, logits.argmax(axis=1), rng.integers(0, classes - 1, n))
    return logits, labels


def _confusion_variants(logits, labels, n_classes):
    """(counts, diagnosis) of the classic wrong confusion matrices on this input."""
    predicted = logits.argmax(axis=1)
    right = confusion_matrix(logits, labels, n_classes)
    once = np.zeros((n_classes, n_classes), dtype=np.int64)
    once[labels, predicted] += 1
    fitted = int(max(labels.max(), predicted.max())) + 1
    return [
        (right.T, "is transposed: rows are the TRUE classes, columns the predictions — "
                  "counts[label, prediction], not counts[prediction, label]"),
        (once, "counts each (true, predicted) pair at most once: with arrays as indices, "
               "counts[labels, predicted] += 1 is ONE buffered assignment, so a pair that occurs "
               "many times still adds only 1. Loop over the samples, or let numpy accumulate "
               "(np.add.at, or np.bincount of label · n_classes + prediction)"),
        (right / np.maximum(right.sum(axis=1, keepdims=True), 1),
         "holds fractions (each row divided by its sum): the matrix counts samples; the "
         "fractions (recall) come later, from the counts"),
        (right / right.sum(), "holds fractions of all samples: the matrix counts samples"),
        (right[:fitted, :fitted], f"is {fitted} × {fitted}, sized from the classes that occur: "
                                  f"with n_classes = {n_classes} it is {n_classes} × "
                                  f"{n_classes} even if a class never occurs (its row and "
                                  "column are 0)"),
        (np.diag(right.diagonal()), "counts only the correct predictions (the diagonal): every "
                                    "sample counts once, in row label, column prediction"),
    ]


@visible_defaults
def check_confusion_matrix(candidate, *, trials=CONFUSION_TRIALS, seed=SEED):
    """Check ``candidate(logits, labels, n_classes) -> counts`` (counts[i, j]: samples of true
    class i predicted as j) on seeded logits with many repeated pairs and a class that never
    occurs; a transposed matrix, pairs counted once (``counts[labels, predicted] += 1``),
    fractions, a matrix sized from the data, and the diagonal alone are named."""
    def run():
        rng = np.random.default_rng(seed)
        for n, classes in trials:
            _confusion_case(candidate, *_confusion_trial(rng, n, classes), classes)
        return (f"counts match on {len(trials)} inputs ({', '.join(str(n) for n, _ in trials)} "
                "samples, repeated pairs, a class that never occurs)")
    return _run(_name(candidate), run, seed)


def _confusion_case(candidate, logits, labels, n_classes):
    where = f"for {len(labels)} samples of {n_classes} classes"
    given_logits, given_labels = logits.copy(), labels.copy()
    yours = candidate(given_logits, given_labels, n_classes)
    if yours is None:
        raise NotDone("returned None — `return` the matrix of counts")
    if not (np.array_equal(given_logits, logits) and np.array_equal(given_labels, labels)):
        raise Failed("changed its arguments in place: read them, count into a new array")
    yours = np.asarray(yours)
    expected = confusion_matrix(logits, labels, n_classes)
    for wrong, message in _confusion_variants(logits, labels, n_classes):
        if yours.shape == wrong.shape and not _same(wrong, expected) and _same(
                yours.astype(np.float64), wrong.astype(np.float64)):
            raise Failed(f"the matrix {where} {message}"
                         + (_first_mismatch(yours.astype(np.float64), expected.astype(np.float64))
                            if yours.shape == expected.shape else ""))
    if yours.shape != expected.shape:
        raise Failed(f"the matrix {where} has shape {yours.shape}, expected {expected.shape} "
                     "(n_classes × n_classes)")
    if yours.dtype.kind not in "iu":
        if _same(yours.astype(np.float64), expected.astype(np.float64)):
            raise Failed(f"the counts are right but of dtype {yours.dtype}: counts are integers "
                         "(np.zeros(..., dtype=int))")
    if not np.array_equal(yours, expected):
        if yours.sum() != len(labels):
            raise Failed(f"the matrix {where} sums to {yours.sum()}, not {len(labels)}: every "
                         "sample counts exactly once" + _first_mismatch(
                             yours.astype(np.float64), expected.astype(np.float64)))
        raise Failed(f"the matrix {where} differs from the reference" + _first_mismatch(
            yours.astype(np.float64), expected.astype(np.float64)))


# ---------------------------------------------------------------- precision and recall
def _precision_recall_trials(rng, classes):
    """A confusion matrix with one class never predicted (its column is 0), one never present
    (its row is 0), and the rest counts of 0–30."""
    counts = rng.integers(0, 30, (classes, classes))
    counts[:, 1] = 0
    counts[2, :] = 0
    return counts


def _precision_recall_variants(counts):
    c = counts.astype(np.float64)
    hits = c.diagonal()
    precision, recall = precision_recall(counts)
    with np.errstate(all="ignore"):
        raw_p, raw_r = hits / c.sum(axis=0), hits / c.sum(axis=1)
    return [
        ((recall, precision), "are swapped: precision[k] divides by everything PREDICTED as k "
                              "(column k's sum, axis=0), recall[k] by every sample whose TRUE "
                              "class is k (row k's sum, axis=1)"),
        ((recall, recall), "are both the recall: precision divides by the column sums (how "
                           "often k was predicted), recall by the row sums"),
        ((precision, precision), "are both the precision: recall divides by the row sums "
                                 "(how many samples of class k there are)"),
        ((raw_p, raw_r), "are NaN for a class that is never predicted (0/0 in precision) or "
                         "never present (0/0 in recall): the exercise defines those as 0 "
                         "(np.divide(..., out=np.zeros(...), where=sum > 0) or np.where)"),
        ((hits / c.sum(), hits / c.sum()), "divide by the number of all samples: that is "
                                           "each class's share of the correct answers, not a "
                                           "rate — precision divides by a column, recall by a "
                                           "row"),
        ((100 * precision, 100 * recall), "are in percent: return fractions between 0 and 1"),
        ((np.floor(precision), np.floor(recall)), "are rounded down to 0 or 1: integer "
                                                  "division (//) of counts; divide with /"),
    ]


PRECISION_RECALL_CLASSES = (6, 4)


@visible_defaults
def check_precision_recall(candidate, *, classes=PRECISION_RECALL_CLASSES, seed=SEED):
    """Check ``candidate(counts) -> (precision, recall)``, arrays of one value per class from a
    confusion matrix counts[true, predicted], on seeded matrices of ``classes`` classes with a
    class never predicted and one never present (both defined as 0); swapped or repeated
    precision/recall, NaN from 0/0, division by all samples, and percent are named."""
    def run():
        rng = np.random.default_rng(seed)
        for k in classes:
            _precision_recall_case(candidate, _precision_recall_trials(rng, k))
        return (f"precision (per column) and recall (per row) match on {len(classes)} matrices, "
                "with 0 for a class never predicted or never present")
    return _run(_name(candidate), run, seed)


def _precision_recall_case(candidate, counts):
    where = f"for a {len(counts)} × {len(counts)} matrix"
    given = counts.copy()
    result = candidate(given)
    if result is None:
        raise NotDone("returned None — `return precision, recall`")
    if not np.array_equal(given, counts):
        raise Failed("changed the matrix in place: compute new arrays")
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise Failed(f"should return two arrays, (precision, recall); got "
                     f"{type(result).__name__}")
    try:
        yours = tuple(np.asarray(r, dtype=np.float64) for r in result)
    except (TypeError, ValueError):
        raise Failed("should return two numpy arrays of numbers, (precision, recall)") from None
    expected = precision_recall(counts)
    for name, y, e in zip(("precision", "recall"), yours, expected):
        if y.shape != e.shape:
            raise Failed(f"{name} {where} has shape {y.shape}, expected {e.shape} (one value per "
                         "class)")
    if all(_same(y, e) for y, e in zip(yours, expected)):
        return
    for (wrong_p, wrong_r), message in _precision_recall_variants(counts):
        if _same(yours[0], wrong_p) and _same(yours[1], wrong_r):
            raise Failed(f"precision and recall {where} {message}")
    for name, y, e in zip(("precision", "recall"), yours, expected):
        if not _same(y, e):
            raise Failed(f"{name} {where} differs from the reference" + _first_mismatch(y, e))


HE_NORMAL = Exercise(
    "he_normal", ("my_he_normal",), check_he_init, forbidden=(he_normal,),
    trials=dict(shapes=HE_SHAPES), hidden=dict(shapes=[(500, 800), (800, 300)]))
CONFUSION_MATRIX = Exercise(
    "confusion_matrix", ("my_confusion_matrix",), check_confusion_matrix,
    forbidden=(confusion_matrix,), trials=dict(trials=CONFUSION_TRIALS),
    hidden=dict(trials=[(150, 6), (70, 8), (300, 3)]))
PRECISION_RECALL = Exercise(
    "precision_recall", ("my_precision_recall",), check_precision_recall,
    forbidden=(precision_recall,), trials=dict(classes=PRECISION_RECALL_CLASSES),
    hidden=dict(classes=(5, 7)))
EXERCISES = (HE_NORMAL, CONFUSION_MATRIX, PRECISION_RECALL)
