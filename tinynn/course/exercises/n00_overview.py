"""Notebook 00 (overview): ``check_function``, and the exercises predict_classes, accuracy and
epoch_accuracy.

    check_function(my_softmax, softmax, logits)   # plain functions (or schedules) on example args
    check_epoch_accuracy(epoch_accuracy)   # (batch accuracies, batch sizes) -> the epoch's accuracy

``check_function`` is the check of every exercise that writes a plain function: it compares the
candidate with a reference on the notebook's example arguments (and on them × 1000, where a
softmax without the max-shift overflows); a learning-rate schedule is compared at many steps.
"""
import copy
import inspect

import numpy as np

from ...metrics import accuracy, predicted_classes
from ...model import Model
from ...schedules import Schedule
from .compare import LARGE, _close, _expect, _fmt
from .core import SEED, NotDone, Failed, _make, _name, _run
from .spec import Call, Exercise, visible_defaults

SCHEDULE_STEPS = [*range(100), 150, 200, 500, 1000, 2000, 5000]


@visible_defaults
def check_function(candidate, reference, *example_args, schedule_steps=SCHEDULE_STEPS, seed=SEED):
    """Check a plain function against a reference on ``example_args`` (and, for float-array
    arguments, on the same arrays × 1000, where a softmax without the max-shift overflows).
    A reference that is a tn Schedule class is built from ``example_args`` (so is the candidate,
    if it is a class) and compared at each of ``schedule_steps``."""
    def run():
        if inspect.isclass(reference) and issubclass(reference, Schedule):
            return _check_schedule(candidate, reference, example_args, schedule_steps)
        _compare_call(candidate, reference, example_args, "on the example")
        if example_args and all(_is_float_array(a) for a in example_args):
            large = [np.asarray(a) * LARGE for a in example_args]
            expected = reference(*copy.deepcopy(large))
            if all(np.all(np.isfinite(e)) for e in _leaves(expected)):
                _compare_call(candidate, reference, large,
                              f"at large inputs (the example × {LARGE:g})")
                return f"output matches {_name(reference)} on the example and on it × {LARGE:g}"
        return f"output matches {_name(reference)} on the example"
    return _run(_name(candidate), run, seed)


def _is_float_array(value):
    return isinstance(value, np.ndarray) and value.dtype.kind == "f"


def _leaves(value):
    return [leaf for item in value for leaf in _leaves(item)] if isinstance(value, (tuple, list)) \
        else [np.asarray(value, dtype=np.float64)]


def _compare_call(candidate, reference, args, where):
    given = copy.deepcopy(list(args))
    yours = candidate(*given)
    if yours is None:
        raise NotDone("the function returned None — write its code and `return` the result")
    for i, (a, b) in enumerate(zip(given, args)):
        if isinstance(b, np.ndarray) and not np.array_equal(a, b):
            raise Failed(f"changed its argument number {i + 1} in place: compute a new array "
                         "instead")
    expected = reference(*copy.deepcopy(list(args)))
    _compare_values(f"the result {where}", yours, expected)


def _compare_values(what, yours, expected):
    if isinstance(expected, (tuple, list)):
        if not isinstance(yours, (tuple, list)) or len(yours) != len(expected):
            raise Failed(f"{what} should be a {type(expected).__name__} of {len(expected)} values")
        for i, (a, b) in enumerate(zip(yours, expected)):
            _compare_values(f"{what}[{i}]", a, b)
        return
    _expect(what, yours, np.asarray(expected, dtype=np.float64),
            nonfinite="Is there an exp() that overflows? Subtract the maximum first.")




def _check_schedule(candidate, reference, args, steps):
    schedule = _make(candidate, *args) if inspect.isclass(candidate) else candidate
    ref = reference(*args)
    yours = []
    for step in steps:
        value = schedule(step)
        if value is None:
            raise NotDone("the schedule returned None — `return` the learning rate")
        yours.append(float(value))
    yours, expected = np.array(yours), np.array([ref(s) for s in steps])
    if _close(yours, expected):
        return (f"learning rates match {reference.__name__} at {len(steps)} steps from 0 "
                f"to {steps[-1]}")
    first = ("a schedule's step argument starts at 0: the optimizer's first step (its t = 1) "
             "uses schedule(0), the rate you start from")
    shifted = [(1, f"is one step ahead: {first}"), (-1, f"is one step behind: {first}")]
    for shift, message in shifted:
        if _close(yours[1:-1], np.array([ref(s + shift) for s in steps[1:-1]])):
            raise Failed(message)
    bad = [i for i in range(len(yours)) if not _close(yours[i:i + 1], expected[i:i + 1])]
    if bad and bad[0] > 0 and np.all(expected[bad[0] - 1:] == expected[-1]):
        raise Failed(f"matches up to step {steps[bad[0] - 1]}, but from step "
                     f"{steps[bad[0]]} on, where the reference stays at "
                     f"{_fmt(expected[-1])}, yours is {_fmt(yours[bad[0]])}: after its last step "
                     "the schedule stays flat (for a cosine: min(step, total_steps))")
    _expect(f"the learning rate at steps 0, 1, …, {steps[-1]}", yours, expected)


def _logits(rng, n, classes):
    """Float32 scores (as a model predicts them); about half the rows' top class is the label."""
    logits = rng.standard_normal((n, classes)).astype(np.float32)
    labels = np.where(rng.random(n) < 0.5, logits.argmax(axis=1), rng.integers(0, classes, n))
    return logits, labels


# ---------------------------------------------------------------- the epoch's training accuracy
def epoch_accuracy_reference(batch_accuracies, batch_sizes):
    """The fraction of the epoch's samples that were right: each batch's accuracy times its size
    is its number of right answers; their sum over all the samples (what ``fit`` reports)."""
    a = np.asarray(batch_accuracies, dtype=np.float64)
    n = np.asarray(batch_sizes, dtype=np.float64)
    return float(np.dot(a, n) / n.sum())


# An epoch: (number of samples, batch size); the last batch holds what is left over.
EPOCH_TRIALS = [(1000, 64), (100, 32), (70, 64), (640, 64)]


def _epoch_batches(rng, samples, batch_size):
    """Batch sizes of one epoch and each batch's accuracy, rising over the epoch as a net that
    learns (right answers drawn per batch, so each accuracy is a count / the batch size)."""
    full, rest = divmod(samples, batch_size)
    sizes = np.array([batch_size] * full + ([rest] if rest else []), dtype=np.int64)
    p = np.linspace(0.3, 0.95, len(sizes))
    right = rng.binomial(sizes, p)
    if rest:   # make the small last batch stand out from the mean, as a late batch does
        right[-1] = sizes[-1]
    return right / sizes, sizes


def _epoch_mistakes(a, n):
    """What a plausible wrong epoch_accuracy returns on (a, n), and the message naming it."""
    index0, index1 = np.arange(len(a)), np.arange(1, len(a) + 1)
    return [
        (float(np.mean(a)), "is the plain mean of the batch accuracies: every batch counts the "
                            "same, but the small last batch holds fewer samples. Count each "
                            "batch's right answers (accuracy × size) and divide by the number "
                            "of samples"),
        (float(np.dot(a, index1) / index1.sum()), "weights each batch by its index (1, 2, 3, "
                                                  "…): the weight of a batch is how many "
                                                  "samples it holds, its size"),
        (float(np.dot(a, index0) / max(index0.sum(), 1)), "weights each batch by its index (0, "
                                                           "1, 2, …): the weight of a batch is "
                                                           "how many samples it holds, its size"),
        (float(np.dot(a, n) / len(n)), "divides by the number of batches: the sum of accuracy × "
                                       "size counts right SAMPLES, so divide by the number of "
                                       "samples, the sum of the sizes"),
        (float(np.dot(a, n) / (len(n) * n[0])), "assumes every batch is as large as the first: "
                                                "the last one is smaller, so divide by the sum "
                                                "of the actual sizes"),
        (float(a[-1]), "uses only the last batch: the epoch's accuracy counts the right answers "
                       "of ALL its batches"),
        (float(np.dot(a[:-1], n[:-1]) / n[:-1].sum()) if len(n) > 1 else None,
         "leaves out the last batch: its samples count too"),
        (float(np.dot(a, n)), "returns the number of right samples: divide it by the number of "
                              "samples to get a fraction"),
        (100 * epoch_accuracy_reference(a, n), "is in percent: return a fraction between 0 and 1, "
                                               "as tn.accuracy does"),
    ]


@visible_defaults
def check_epoch_accuracy(candidate, *, trials=EPOCH_TRIALS, seed=SEED):
    """Check ``candidate(batch_accuracies, batch_sizes) -> accuracy`` on epochs of ``trials``
    (samples, batch size) whose last batch is smaller, naming the plain mean of the batch
    accuracies, weights by batch index, division by the number of batches, the last batch only
    or left out, a count instead of a fraction, and percent."""
    def run():
        rng = np.random.default_rng(seed)
        for samples, batch_size in trials:
            _epoch_case(candidate, *_epoch_batches(rng, samples, batch_size), samples)
        return (f"matches fit's epoch accuracy on {len(trials)} epochs: the right answers of all "
                "batches (accuracy × size) over all the samples")
    return _run(_name(candidate), run, seed)


def _epoch_case(candidate, a, n, samples):
    where = (f"for {samples} samples in batches of {n[0]} ({len(n)} batches, the last of "
             f"{n[-1]})")
    given_a, given_n = a.copy(), n.copy()
    yours = candidate(given_a, given_n)
    if yours is None:
        raise NotDone("returned None — `return` the epoch's accuracy")
    if not (np.array_equal(given_a, a) and np.array_equal(given_n, n)):
        raise Failed("changed its arguments in place: compute with new arrays")
    try:
        value = np.asarray(yours, dtype=np.float64)
    except (TypeError, ValueError):
        raise Failed(f"should return one number, got {type(yours).__name__}") from None
    if value.size != 1:
        raise Failed(f"should return one number for the whole epoch, got an array of shape "
                     f"{value.shape}")
    value = value.reshape(())
    expected = epoch_accuracy_reference(a, n)
    if _close(value.reshape(1), np.array([expected])):
        return
    for wrong, message in _epoch_mistakes(a, n):
        if wrong is not None and not _close(np.array([wrong]), np.array([expected])) \
                and _close(value.reshape(1), np.array([wrong])):
            raise Failed(f"the accuracy {where} {message} (yours {_fmt(value)}, expected "
                         f"{_fmt(expected)})")
    raise Failed(f"the accuracy {where} is {_fmt(value)}, expected {_fmt(expected)}")


PREDICT_CLASSES = Exercise(
    "predict_classes", ("predict_classes",), check_function, reference=predicted_classes,
    calls=lambda rng: [Call(args=(_logits(rng, 17, 10)[0],))])
ACCURACY = Exercise(
    "accuracy", ("accuracy",), check_function, reference=accuracy,
    calls=lambda rng: [Call(args=_logits(rng, 41, 10))])
EPOCH_ACCURACY = Exercise(
    "epoch_accuracy", ("epoch_accuracy",), check_epoch_accuracy, forbidden=(Model._run_epoch,),
    trials=dict(trials=EPOCH_TRIALS), hidden=dict(trials=[(1500, 32), (300, 128), (90, 16)]))
EXERCISES = (PREDICT_CLASSES, ACCURACY, EPOCH_ACCURACY)
