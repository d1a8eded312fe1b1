"""Tests for tinynn.course.grading (hidden.py and borrowed.py): honest work passes the hidden tests, mistakes fail with the
check's diagnosis, and every way of borrowing tinynn's reference is refused by name.

The implementations are written here the way a student writes them in the notebook.
"""
import inspect
import linecache
import re
import sys
import types

import numpy as np
import pytest

import tinynn as tn
import tinynn.course.exercises as exercises
from tinynn.autograd import Tensor, unbroadcast
from tinynn.course.grading import MIME, borrowed, grade
from tinynn.errors import ConfigError
from tinynn.random import rng

from conftest_helpers import StudentDense

def outcome(exercise_id, *candidates):
    """(passed, message) of grade(); the message of a failure is the AssertionError's."""
    try:
        grade(exercise_id, *candidates)
    except AssertionError as e:
        return False, str(e)
    return True, ""


# ================================================================ honest implementations
class MyDense(StudentDense):
    """Notebook 01's exercise, done right (conftest_helpers)."""


class MeanBiasDense(MyDense):
    def backward(self, grad):
        self.grads["w"] = self.x.T @ grad
        self.grads["b"] = grad.mean(axis=0)
        return grad @ self.params["w"].T


class StubDense(MyDense):
    def backward(self, grad):
        # YOUR CODE HERE
        raise NotImplementedError()


class MySoftmaxCrossEntropy(tn.Loss):
    def forward(self, pred, target):
        n, rows = len(pred), np.arange(len(pred))
        shifted = pred - pred.max(axis=1, keepdims=True)
        log_prob = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        grad = np.exp(log_prob)
        grad[rows, target] -= 1
        return -np.mean(log_prob[rows, target]), grad / n


class SumSoftmaxCrossEntropy(MySoftmaxCrossEntropy):
    def forward(self, pred, target):
        value, grad = super().forward(pred, target)
        return value, grad * len(pred)


class StubSoftmaxCrossEntropy(tn.Loss):
    def forward(self, pred, target):
        raise NotImplementedError()


class MyMomentum(tn.Optimizer):
    def __init__(self, lr=0.01, momentum=0.9, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum, self.nesterov = momentum, nesterov

    def update(self, param, grad):
        (velocity,) = self.slots(param, 1)
        velocity *= self.momentum
        velocity += grad
        param -= self.lr * (grad + self.momentum * velocity if self.nesterov else velocity)


class FixedMomentum(MyMomentum):
    """Hard-codes the visible check's momentum 0.9."""
    def update(self, param, grad):
        (velocity,) = self.slots(param, 1)
        velocity *= 0.9
        velocity += grad
        param -= self.lr * (grad + 0.9 * velocity if self.nesterov else velocity)


class StubMomentum(MyMomentum):
    def update(self, param, grad):
        raise NotImplementedError()


class MyAdamW(tn.Adam):
    decoupled_weight_decay = True

    def update(self, param, grad):
        param -= self.lr * self.weight_decay * param
        super().update(param, grad)


class MyCosineDecay(tn.Schedule):
    def __init__(self, lr, total_steps, min_lr=0.0):
        self.lr, self.total_steps, self.min_lr = lr, total_steps, min_lr

    def __call__(self, step):
        progress = min(step, self.total_steps) / self.total_steps
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + np.cos(np.pi * progress))


class UnclampedCosineDecay(MyCosineDecay):
    def __call__(self, step):
        return self.min_lr + 0.5 * (self.lr - self.min_lr) * (
            1 + np.cos(np.pi * step / self.total_steps))


class StubCosineDecay(MyCosineDecay):
    def __call__(self, step):
        raise NotImplementedError()


class MyDropout(tn.Layer):
    def __init__(self, p=0.5):
        super().__init__()
        self.p = p

    def forward(self, x, training=True):
        if not training:
            return x
        keep = rng().random(x.shape, dtype=x.dtype) >= self.p
        self.mask = keep * x.dtype.type(1.0 / (1.0 - self.p))
        return x * self.mask

    def backward(self, grad):
        return grad * self.mask


class UnscaledDropout(MyDropout):
    def forward(self, x, training=True):
        if not training:
            return x
        self.mask = (rng().random(x.shape, dtype=x.dtype) >= self.p).astype(x.dtype)
        return x * self.mask


class StubDropout(MyDropout):
    def forward(self, x, training=True):
        raise NotImplementedError()


def predict_classes(logits):
    return np.argmax(logits, axis=1)


def predict_classes_wrong_axis(logits):
    return np.argmax(logits, axis=0)


def predict_classes_stub(logits):
    raise NotImplementedError()


def my_add(a, b):
    out = Tensor(a.data + b.data, parents=(a, b), op="+")

    def backward():
        a.grad += unbroadcast(out.grad, a.shape)
        b.grad += unbroadcast(out.grad, b.shape)
    out._backward = backward
    return out


def my_add_no_unbroadcast(a, b):
    out = Tensor(a.data + b.data, parents=(a, b), op="+")

    def backward():
        a.grad = a.grad + out.grad
        b.grad = b.grad + out.grad
    out._backward = backward
    return out


def my_add_stub(a, b):
    out = Tensor(a.data + b.data, parents=(a, b), op="+")

    def backward():
        raise NotImplementedError()
    out._backward = backward
    return out


# (exercise id, honest, wrong, a word of the wrong one's diagnosis, stub): one row per kind
KINDS = [
    ("dense", MyDense, MeanBiasDense, "SUM parameter gradients", StubDense),
    ("softmax_cross_entropy", MySoftmaxCrossEntropy, SumSoftmaxCrossEntropy, "batch",
     StubSoftmaxCrossEntropy),
    ("momentum", MyMomentum, FixedMomentum, "differ", StubMomentum),
    ("predict_classes", predict_classes, predict_classes_wrong_axis, "shape",
     predict_classes_stub),
    ("add", my_add, my_add_no_unbroadcast, "unbroadcast", my_add_stub),
    ("cosine_decay", MyCosineDecay, UnclampedCosineDecay, "flat", StubCosineDecay),
    ("dropout", MyDropout, UnscaledDropout, "forgot the scale", StubDropout),
]


@pytest.mark.parametrize("exercise_id, honest, wrong, word, stub", KINDS,
                         ids=[row[0] for row in KINDS])
def test_honest_passes_wrong_fails_with_the_diagnosis_stub_is_not_done(
        capsys, exercise_id, honest, wrong, word, stub):
    assert outcome(exercise_id, honest) == (True, "")
    assert capsys.readouterr().out == f"✔ hidden test '{exercise_id}' passed\n"
    passed, message = outcome(exercise_id, wrong)
    assert not passed and word in message, message
    assert capsys.readouterr().out == f"✘ hidden test '{exercise_id}': {message}\n"
    passed, message = outcome(exercise_id, stub)
    assert not passed and message.startswith("not yet implemented"), message


def test_hidden_inputs_differ_from_the_visible_check(capsys):
    """An answer hard-coded for the visible check's inputs passes it, and fails the hidden one."""
    assert exercises.check_optimizer(FixedMomentum, tn.Momentum, lr=0.1, momentum=0.9)
    seen = exercises.check_function(predict_classes, tn.metrics.predicted_classes,
                                    np.random.default_rng(0).standard_normal((20, 10)))
    answer = predict_classes(np.random.default_rng(0).standard_normal((20, 10)))
    assert seen and not outcome("predict_classes", lambda logits: answer)[0]


def test_allowed_bases_and_notebook_classes_are_fine():
    assert outcome("adamw", MyAdamW) == (True, "")        # the exercise says class MyAdamW(tn.Adam)

    class StudentDense(MeanBiasDense):                    # notebook 12: a class of the notebook
        pass

    class FixedDense(StudentDense):
        def backward(self, grad):
            return MyDense.backward(self, grad)
    assert outcome("dense_backward", FixedDense) == (True, "")


# ================================================================ borrowed code is refused
class Subclass(tn.Dense):
    pass


class GrandSubclass(Subclass):
    def forward(self, x, training=True):
        return super().forward(x, training)


class CopiedMethod(MyDense):
    forward = tn.Dense.forward


class RebuiltMethod(MyDense):
    forward = types.FunctionType(tn.Dense.forward.__code__, globals(), "forward")


class Delegates(MyDense):
    def backward(self, grad):
        return tn.Dense.backward(self, grad)


_dense_backward = tn.Dense.backward   # a name bound before the test cell runs


class DelegatesThroughAlias(MyDense):
    def backward(self, grad):
        return _dense_backward(self, grad)


def pasted(obj):
    """``obj``'s source pasted into a notebook cell (in its module's namespace, as __main__)."""
    namespace = {**vars(sys.modules[obj.__module__]), "__name__": "__main__"}
    exec(inspect.getsource(obj), namespace)
    return namespace[obj.__name__]


REFUSED = [
    ("dense", tn.Dense, "MyDense is tinynn's Dense — write your own"),
    ("predict_classes", tn.metrics.predicted_classes,
     "predict_classes is tinynn's predicted_classes — write your own"),
    ("dense", Subclass, "MyDense subclasses tinynn's Dense — write your own"),
    ("dense", GrandSubclass, "MyDense subclasses tinynn's Dense"),
    ("adamw", type("MyAdamW", (tn.AdamW,), {}), "MyAdamW subclasses tinynn's AdamW"),
    ("dense", CopiedMethod, "MyDense.forward is tinynn's Dense.forward — write your own"),
    ("dense", RebuiltMethod, "MyDense.forward is rebuilt from the code of tinynn's Dense.forward"),
    ("dense", Delegates, "MyDense.backward calls tinynn's Dense.backward — write your own"),
    ("dense", DelegatesThroughAlias, "MyDense.backward calls tinynn's Dense.backward"),
    ("predict_classes", lambda logits: tn.metrics.predicted_classes(logits),
     "predict_classes calls tinynn's predicted_classes"),
    ("adamw", type("MyAdamW", (tn.Adam,), {"update": lambda s, p, g: tn.AdamW.update(s, p, g)}),
     "calls tinynn's AdamW.update"),
    ("dense", pasted(tn.Dense), "MyDense.backward, MyDense.config are copies of tinynn's "
                                "Dense.__init__, Dense.build, Dense.forward"),
    ("col2im", pasted(tn.conv.col2im), "my_col2im is a copy of tinynn's col2im — write your own"),
    ("momentum", pasted(tn.Momentum),
     "MyMomentum.__init__, MyMomentum.update are copies of tinynn's Momentum.__init__, "
     "Momentum.update"),
]


@pytest.mark.parametrize("exercise_id, candidate, words", REFUSED,
                         ids=[f"{row[0]}: {row[2][:40]}" for row in REFUSED])
def test_borrowed_reference_code_is_refused_by_name(exercise_id, candidate, words):
    passed, message = outcome(exercise_id, candidate)
    assert not passed and words in message, message


class ScaffoldedMomentum(MyMomentum):
    """Notebook 04's solution: its update is tinynn's Momentum.update, to the instruction."""

    def update(self, param, grad):
        (velocity,) = self.slots(param, 1)
        velocity *= self.momentum
        velocity += grad
        if self.nesterov:
            param -= self.lr * (grad + self.momentum * velocity)
        else:
            param -= self.lr * velocity


def test_short_honest_functions_equal_to_the_reference_are_not_flagged():
    """dead_fraction is two statements, Momentum.update six: honest students write exactly
    that; the pasted copies refused above add up to eight statements or more."""
    same = pasted(tn.dead_fraction)
    assert borrowed._same_code(same.__code__, tn.dead_fraction.__code__)
    assert outcome("dead_fraction", same) == (True, "")
    assert borrowed._same_code(ScaffoldedMomentum.update.__code__, tn.Momentum.update.__code__)
    assert outcome("momentum", ScaffoldedMomentum) == (True, "")
    assert borrowed._statements(tn.Momentum.update) < borrowed.MIN_COPY_STATEMENTS \
        <= borrowed._statements(tn.conv.col2im)


# ================================================================ on every supported Python
def pasted_as(obj, name):
    """``obj``'s source pasted into a notebook cell and renamed ``name``, as a student does."""
    source = re.sub(rf"^(class|def) {obj.__name__}\b", rf"\1 {name}", inspect.getsource(obj),
                    count=1, flags=re.MULTILINE)
    namespace = {**vars(sys.modules[obj.__module__]), "__name__": "__main__"}
    exec(compile(source, "<pasted cell>", "exec"), namespace)
    return namespace[name]


class DelegatesInALambda(MyDense):
    def backward(self, grad):
        return (lambda g: tn.Dense.backward(self, g))(grad)


def test_grading_runs_on_this_python():
    """Every path of grade() that reads a code object's names, on the running Python (Python 3.9
    and 3.10 have no co_qualname: each hidden test used to stop on the AttributeError)."""
    assert outcome("dense", MyDense) == (True, "")
    for candidate, words in [
            (RebuiltMethod, "MyDense.forward is rebuilt from the code of tinynn's Dense.forward"),
            (Delegates, "MyDense.backward calls tinynn's Dense.backward — write your own"),
            (DelegatesInALambda,
             "MyDense.backward.<locals>.<lambda> calls tinynn's Dense.backward")]:
        passed, message = outcome("dense", candidate)
        assert not passed and words in message, (sys.version, message)
    tripwire = borrowed._tripwire_code(tn.Dense.backward.__code__, 0)
    assert tripwire.co_name == "backward"
    assert getattr(tripwire, "co_qualname", "Dense.backward") == "Dense.backward"


@pytest.mark.parametrize("exercise_id, obj, name, words", [
    ("dense", tn.Dense, "MyDense", "MyDense.build"),            # holds a dict comprehension
    ("batch_norm", tn.BatchNorm, "MyBatchNorm", "MyBatchNorm.forward"),   # a generator expression
    ("matmul", tn.autograd.matmul, "my_matmul", "my_matmul is a copy of tinynn's matmul"),  # a def
])
def test_a_paste_renamed_as_the_students_is_a_copy(exercise_id, obj, name, words):
    """Before Python 3.11 the code making a nested function or comprehension holds its qualified
    name ('MyDense.build.<locals>.<dictcomp>'), which names the student's class or function: the
    copy is found all the same."""
    passed, message = outcome(exercise_id, pasted_as(obj, name))
    assert not passed and words in message and "write your own" in message, message


def test_a_notebook_cells_code_is_named_by_its_class():
    """Before Python 3.11 the name of the student's code that calls the reference is read from
    its source: for a notebook cell, the copy IPython keeps in linecache."""
    cell = "<ipython-input-7-grading>"
    source = ("class MyDense(StudentDense):\n"
              "    def backward(self, grad):\n"
              "        return tn.Dense.backward(self, grad)\n")
    linecache.cache[cell] = (len(source), None, source.splitlines(True), cell)
    try:
        namespace = {"StudentDense": StudentDense, "tn": tn, "__name__": "__main__"}
        exec(compile(source, cell, "exec"), namespace)
        passed, message = outcome("dense", namespace["MyDense"])
    finally:
        del linecache.cache[cell]
    assert not passed and message.startswith("MyDense.backward calls tinynn's Dense.backward")


def test_patching_the_reference_or_the_checks_changes_nothing(monkeypatch):
    monkeypatch.setattr(tn, "Dense", MeanBiasDense)
    monkeypatch.setattr(tn.layers, "Dense", MeanBiasDense)
    monkeypatch.setattr(exercises, "check_layer", lambda *args: print("✔ passed") or True)
    monkeypatch.setitem(globals(), "check_layer", lambda *args: print("✔ passed") or True)
    passed, message = outcome("dense", MeanBiasDense)
    assert not passed and "SUM parameter gradients" in message, message
    assert outcome("dense", MyDense) == (True, "")


def test_grade_leaves_no_trace():
    code, state = tn.Dense.backward.__code__, rng().bit_generator.state
    modules = set(sys.modules)
    assert not outcome("dense", Delegates)[0]
    assert tn.Dense.backward.__code__ is code             # the tripwires are restored
    assert "__tinynn_grading_tripwire__" not in vars(tn.layers)
    assert rng().bit_generator.state == state             # the notebook's random stream too
    assert set(sys.modules) == modules                    # the fresh copy is gone


def test_the_students_exception_becomes_the_assertion():
    class Quits(MyDense):
        def forward(self, x, training=True):
            raise SystemExit("bye")
    passed, message = outcome("dense", Quits)
    assert not passed and "SystemExit" in message and "bye" in message
    passed, message = outcome("dense", type("Broken", (MyDense,), {"backward": lambda s, g: 1 / 0}))
    assert not passed and "ZeroDivisionError" in message


def test_unknown_id_and_wrong_arity_are_clear_errors():
    with pytest.raises(ConfigError, match="no exercise 'desne'"):
        grade("desne", MyDense)
    with pytest.raises(ConfigError, match="takes 2 candidate"):
        grade("net_passes", MyDense)


def test_verdict_is_one_display_with_exactly_the_contract_keys(monkeypatch):
    import IPython
    import IPython.display
    shown = []
    monkeypatch.setattr(IPython, "get_ipython", lambda: object())
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw: shown.append((obj, raw)))
    grade("dense", MyDense)
    with pytest.raises(AssertionError) as failure:
        grade("dense", MeanBiasDense)
    (passed, raw), (failed, _) = shown
    assert raw is True and set(passed) == set(failed) == {MIME, "text/plain"}
    assert passed[MIME] == {"exercise": "dense", "passed": True,
                            "message": "MyDense passed on inputs it has not seen"}
    assert passed["text/plain"] == "✔ hidden test 'dense' passed"
    assert set(failed[MIME]) == {"exercise", "passed", "message"}
    assert failed[MIME]["passed"] is False and failed[MIME]["message"] == str(failure.value)
    assert failed["text/plain"] == f"✘ hidden test 'dense': {failure.value}"

