"""Notebook 00 (overview): ``check_function``, and the exercises predict_classes and accuracy.

    check_function(my_softmax, softmax, logits)   # plain functions (or schedules) on example args

``check_function`` is the check of every exercise that writes a plain function: it compares the
candidate with a reference on the notebook's example arguments (and on them × 1000, where a
softmax without the max-shift overflows); a learning-rate schedule is compared at many steps.
"""
import copy
import inspect

import numpy as np

from ...metrics import accuracy, predicted_classes
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


PREDICT_CLASSES = Exercise(
    "predict_classes", ("predict_classes",), check_function, reference=predicted_classes,
    calls=lambda rng: [Call(args=(_logits(rng, 17, 10)[0],))])
ACCURACY = Exercise(
    "accuracy", ("accuracy",), check_function, reference=accuracy,
    calls=lambda rng: [Call(args=_logits(rng, 41, 10))])
EXERCISES = (PREDICT_CLASSES, ACCURACY)
