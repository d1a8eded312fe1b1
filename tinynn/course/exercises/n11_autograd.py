"""Notebook 11 (autograd): ``check_op``, ``check_pick`` and ``check_topological_order``, and the
exercises add, mul, relu, matmul, tanh, pick and topological_order.

    check_op(my_add, autograd.add)                    # forward, backward, gradient check
    check_pick(my_pick, autograd.pick)                # the same, with indices picked twice
    check_topological_order(my_topological_order)

An operation is checked on input shapes with broadcasting: the forward value, each input's
gradient after ``out.backward(G)`` (accumulated with +=, summed back over broadcast axes), the
exercise's known mistakes (``mistakes``) named, and the numerical gradient check.
"""
import inspect

import numpy as np

from ... import autograd
from ...autograd import Tensor, topological_order, unbroadcast
from ...gradcheck import numerical_gradient, relative_error
from .compare import GRADCHECK_TOLERANCE, _close, _expect, _first_mismatch
from .core import SEED, Failed, NotDone, _name, _run
from .n01_dense import _layer_input
from .spec import Exercise, visible_defaults

DEFAULT_OP_TRIALS = [((3, 4),), ((5,),)]   # input shapes of an operation without an exercise


@visible_defaults
def check_op(candidate, reference, *trials, shapes=DEFAULT_OP_TRIALS, hint="", mistakes=(),
             seed=SEED):
    """Check an autograd operation ``candidate(*tensors) -> Tensor`` against a tinynn.autograd
    reference function, e.g. ``check_op(my_add, autograd.add)``: the forward value, each input's
    gradient after ``out.backward(G)`` (accumulated with +=, summed back over broadcast axes),
    known mistakes named, and the numerical gradient check. ``trials`` (or ``shapes``) are tuples
    of input shapes; ``hint``: how the operation's backward goes; ``mistakes``: (gradients of a
    mistaken backward from the inputs' data and out.grad, one per input; diagnosis) pairs."""
    def run():
        rng = np.random.default_rng(seed)
        tried = trials or shapes
        worst = max(_op_trial(candidate, reference, trial, rng, hint, mistakes)
                    for trial in tried)
        verdict = "below 1e-8" if worst < 1e-8 else f"rel. err {worst:.0e}"
        broadcast = " (with broadcasting)" if any(map(_broadcasts, tried)) else ""
        return (f"forward and gradients match {reference.__name__} on {len(tried)} input "
                f"shapes{broadcast}; numerical gradient check {verdict}")
    return _run(_name(candidate), run, seed)


def _broadcasts(shapes):
    """Whether elementwise inputs of these shapes broadcast (matmul's shapes do not)."""
    try:
        return any(shape != np.broadcast_shapes(*shapes) for shape in shapes)
    except ValueError:
        return False


def _input_names(candidate, count):
    try:
        names = [p for p in inspect.signature(candidate).parameters][:count]
    except (TypeError, ValueError):
        names = []
    return names if len(names) == count else [f"input {i + 1}" for i in range(count)]


def _is_tensor(value):
    """A Tensor of tinynn.autograd, whichever copy of tinynn made it (the hidden test runs this
    check from a fresh copy, while the student's operation builds the notebook's Tensors)."""
    return isinstance(value, Tensor) or any(
        cls.__qualname__ == "Tensor" and cls.__module__.endswith(".autograd")
        for cls in type(value).__mro__)


def _op_trial(candidate, reference, shapes, rng, hint, mistakes):
    """One trial on inputs of ``shapes``; returns the numerical gradient check's error."""
    data = [_layer_input(rng, shape) for shape in shapes]
    ref_inputs = [Tensor(d.copy()) for d in data]
    ref_out = reference(*ref_inputs)
    upstream = rng.standard_normal(ref_out.shape)
    ref_out.backward(upstream.copy())
    expected = [t.grad for t in ref_inputs]
    earlier = [rng.standard_normal(shape) for shape in shapes]  # gradients from an earlier use

    inputs = [Tensor(d.copy()) for d in data]
    for tensor, grad in zip(inputs, earlier):
        tensor.grad = grad.copy()
    where = " and ".join(str(s) for s in shapes)
    out = _op_forward(candidate, inputs, data, ref_out, where)
    try:
        out.backward(upstream.copy())
    except ValueError as e:
        if "broadcast" in str(e) or "shape" in str(e) or "matmul" in str(e):
            raise Failed(f"backward raised ValueError for inputs of shape {where}: {e}\n  The "
                         f"gradient added to each input must have that input's shape. {hint}"
                         ) from None
        raise
    names = [f"{n}.grad" for n in _input_names(candidate, len(inputs))]
    for i, (tensor, want) in enumerate(zip(inputs, expected)):
        grad = np.asarray(tensor.grad, dtype=np.float64)
        _check_input_gradient(names[i], grad, earlier[i], want, out.shape, where, hint,
                              mistakes, lambda mistake, i=i: mistake(data, upstream)[i])
    return _op_gradcheck(candidate, data, upstream, [t.grad for t in inputs], earlier)


def _op_forward(candidate, inputs, data, ref_out, where):
    out = candidate(*inputs)
    if out is None:
        raise NotDone("returned None — `return out` at the end")
    if not _is_tensor(out):
        raise Failed(f"returned {type(out).__name__}, not a Tensor: wrap the result, "
                     "out = Tensor(..., parents, op), and return out")
    if any(not np.array_equal(t.data, d) for t, d in zip(inputs, data)):
        raise Failed("changed an input's data in place: compute a new array for out")
    _expect(f"the forward value for inputs of shape {where}", out.data, ref_out.data)
    return out


def _check_input_gradient(what, grad, before, want, out_shape, where, hint, mistakes, mistaken):
    """One input's gradient ``grad`` (it held ``before``) against the reference's ``want``;
    ``mistaken(mistake)`` is what a catalogued mistake would have added."""
    if grad.shape != want.shape:
        message = (f"{what} has shape {grad.shape}, but {what[:-5]} has shape {want.shape}")
        if grad.shape == out_shape:
            message += (" — the output's shape: it was broadcast in forward, so sum out.grad "
                        "over the broadcast axes: unbroadcast(out.grad, "
                        f"{what[:-5]}.shape)")
        raise Failed(message + f". {hint}")
    added = grad - before
    if _close(grad, want) and not _close(added, want):
        raise Failed(f"{what} is overwritten (= ...) instead of accumulated (+= ...): a tensor "
                     "used twice would keep only its last contribution")
    if not added.any() and want.any():
        raise Failed(f"{what} was not changed by backward: add this input's share of "
                     f"out.grad to it. {hint}")
    for mistake, message in mistakes:
        try:
            wrong = unbroadcast(np.asarray(mistaken(mistake), dtype=np.float64), want.shape)
        except (ValueError, IndexError):
            continue
        if wrong.shape == want.shape and not _close(wrong, want) and _close(added, wrong):
            raise Failed(f"{what} is wrong for inputs of shape {where}: your backward "
                         f"{message}" + _first_mismatch(added, want))
    _expect(f"{what} for inputs of shape {where}", added, want,
            factors=[(-1.0, f"has the wrong sign: {hint}"),
                     (2.0, "is twice the expected: is a contribution added twice?")])


def _op_gradcheck(candidate, data, upstream, grads, earlier):
    def objective():
        return float(np.sum(candidate(*[Tensor(d) for d in data]).data * upstream))
    errors = [relative_error(grad - before, numerical_gradient(objective, d))
              for grad, before, d in zip(grads, earlier, data)]
    worst = max(errors)
    if worst > GRADCHECK_TOLERANCE:
        raise Failed(f"matches the reference but fails the numerical gradient check "
                     f"(rel. err {worst:.1e}): does forward compute what backward assumes?")
    return worst


OP_HINTS = {
    "add": "out = a + b broadcasts, so each input's gradient is out.grad summed back to that "
           "input's shape: a.grad += unbroadcast(out.grad, a.shape), the same for b",
    "mul": "d(a·b)/da = b: a.grad += unbroadcast(out.grad * b.data, a.shape), and "
           "b.grad += unbroadcast(out.grad * a.data, b.shape)",
    "matmul": "for out = a @ b, (n, k) @ (k, m) → (n, m): a.grad += out.grad @ b.data.T has a's "
              "shape (n, k), b.grad += a.data.T @ out.grad has b's shape (k, m)",
    "relu": "the gradient passes where the input was positive: a.grad += out.grad * (a.data > 0)",
    "tanh": "tanh'(a) = 1 − tanh²(a), and tanh(a) is what forward stored in out.data: "
            "a.grad += out.grad * (1 - out.data ** 2)",
    "pick": "out = a[index] passes each picked element's gradient back to where it was picked "
            "from, and an element picked twice collects both: np.add.at(a.grad, index, out.grad)",
}


def _swapped_mul(data, g):
    return [g * data[0], g * data[1]]


def _mul_without_upstream(data, g):
    return [np.broadcast_to(data[1], g.shape), np.broadcast_to(data[0], g.shape)]


# Known mistakes, per operation: (gradients of the mistaken backward before summing
# over broadcast axes, one per input, from the inputs' data and out.grad; diagnosis).
OP_MISTAKES = {
    "mul": [(_swapped_mul, "uses each input's own value: d(a·b)/da is b, so a.grad += out.grad "
                           "* b.data and b.grad += out.grad * a.data"),
            (_mul_without_upstream, "forgets out.grad: the chain rule multiplies the local "
                                    "derivative (b for a, a for b) by the gradient arriving "
                                    "from above")],
    "relu": [(lambda data, g: [g], "lets the gradient through everywhere: multiply out.grad by "
                                   "the mask (a.data > 0), where relu was not flat"),
             (lambda data, g: [g * data[0]], "multiplies out.grad by the input; relu's "
                                             "derivative is 1 or 0, so multiply by the mask "
                                             "(a.data > 0)"),
             (lambda data, g: [g * (data[0] < 0)], "has the mask inverted: the gradient passes "
                                                   "where the input was POSITIVE (a.data > 0)"),
             (lambda data, g: [(data[0] > 0) * 1.0], "forgets out.grad: multiply the mask by "
                                                     "the gradient arriving from above")],
    "tanh": [(lambda data, g: [g * (1 - data[0] ** 2)], "uses the input a where the derivative "
              "needs tanh(a): d tanh(a)/da = 1 − tanh²(a), and tanh(a) is out.data"),
             (lambda data, g: [g * (1 - np.tanh(data[0]))], "forgets the square: d tanh(a)/da = "
              "1 − tanh²(a), not 1 − tanh(a)"),
             (lambda data, g: [g * np.tanh(data[0])], "multiplies by the output itself, the rule "
              "of exp (d eᵃ/da = eᵃ); tanh's derivative is 1 − tanh²(a)"),
             (lambda data, g: [g / np.cosh(data[0])], "multiplies by sech(a); the derivative of "
              "tanh is sech²(a) = 1 − tanh²(a)"),
             (lambda data, g: [1 - np.tanh(data[0]) ** 2], "forgets out.grad: the chain rule "
              "multiplies the local derivative by the gradient arriving from above")],
    "matmul": [(lambda data, g: [g @ data[1], data[0] @ g], "forgets the transposes: "
                "a.grad += out.grad @ b.data.T and b.grad += a.data.T @ out.grad"),
               (lambda data, g: [data[1].T @ g, g @ data[0].T], "has the factors in the wrong "
                "order: a.grad += out.grad @ b.data.T, b.grad += a.data.T @ out.grad")],
}


# ================================================================ pick, with repeated indices
PICK_TRIALS = [((4, 3), ([0, 1, 2, 3], [2, 0, 1, 1])),        # one label per row: no repeats
               ((4, 3), ([0, 1, 1, 3, 1], [2, 0, 0, 1, 0])),  # (1, 0) picked three times
               ((6,), ([1, 4, 1, 1],))]                       # a 1-D array, 1 picked thrice
HIDDEN_PICK_TRIALS = [((5, 2), ([0, 2, 4, 1], [1, 0, 1, 1])),
                      ((3, 4), ([2, 2, 0, 2], [3, 3, 1, 3])),
                      ((7,), ([0, 6, 6, 3],))]


def _as_index(index):
    return tuple(np.asarray(i) for i in index)


def _buffered_assignment(index):
    """What ``grad[index] += out.grad`` (or ``= out.grad`` into zeros) puts into a.grad: numpy
    writes each repeated element once, so only one of its contributions survives."""
    def mistake(data, g):
        grad = np.zeros_like(data[0])
        grad[index] += g
        return [grad]
    return mistake


def _pick_sum_of_all(index):
    def mistake(data, g):
        return [np.full_like(data[0], g.sum())]
    return mistake


@visible_defaults
def check_pick(candidate, reference, *, trials=PICK_TRIALS, hint=OP_HINTS["pick"], seed=SEED):
    """Check ``candidate(a, index) -> Tensor``, ``a[index]`` as an autograd operation, against
    ``autograd.pick`` on ``trials`` ((shape, index) pairs, some of which pick an element more than
    once): the forward, the gradient (accumulated, put back where it was picked from, repeated
    picks summed) with the known mistakes named, and the numerical gradient check."""
    def run():
        rng = np.random.default_rng(seed)
        worst = 0.0
        for shape, index in trials:
            index = _as_index(index)

            def picked(a, index=index):
                return candidate(a, index)

            def reference_pick(a, index=index):
                return reference(a, index)
            reference_pick.__name__ = getattr(reference, "__name__", "pick")
            mistakes = [(_buffered_assignment(index),
                         "writes a.grad[index] += out.grad: numpy's fancy indexing writes an "
                         "element picked twice only once, so it keeps one of its gradients. "
                         "Add every pick: np.add.at(a.grad, index, out.grad)"),
                        (_pick_sum_of_all(index),
                         "spreads the sum of out.grad over every element: only the picked "
                         "elements influenced the output; the others get 0")]
            worst = max(worst, _op_trial(picked, reference_pick, (shape,), rng, hint, mistakes))
        repeats = sum(len(set(zip(*index))) < len(index[0]) for _, index in trials)
        verdict = "below 1e-8" if worst < 1e-8 else f"rel. err {worst:.0e}"
        return (f"forward and gradients match {_name(reference)} on {len(trials)} arrays "
                f"({repeats} with elements picked more than once); numerical gradient check "
                f"{verdict}")
    return _run(_name(candidate), run, seed)


# ================================================================ topological order
@visible_defaults
def check_topological_order(candidate, *, seed=SEED):
    """Check ``candidate(root) -> list of Tensors``: every tensor the root depends on, each once,
    each after its parents, the root last; on a chain, a shared subexpression and a small MLP."""
    def run():
        graphs = _topo_graphs(seed)
        for label, root in graphs:
            _topo_trial(candidate, label, root)
        return (f"every tensor once, each after its parents, on {len(graphs)} graphs "
                f"({', '.join(label for label, _ in graphs)})")
    return _run(_name(candidate), run, seed)


def _topo_graphs(seed):
    rng = np.random.default_rng(seed)
    x = Tensor(rng.standard_normal(3))
    chain = x.relu().exp().sum()
    h = x * x
    shared = (h + x + h).sum()          # h and x reached along several paths
    xs, w, b = (Tensor(rng.standard_normal(s)) for s in ((4, 3), (3, 2), (2,)))
    mlp = ((xs @ w + b).relu() * 2.0).mean()
    return [("a chain", chain), ("x·x used twice", shared), ("a small Dense + ReLU", mlp)]


def _describe_node(node):
    return f"the {node.op!r} node" if node.op else f"the input of shape {node.shape}"


def _topo_trial(candidate, label, root):
    result = candidate(root)
    if result is None:
        raise NotDone("returned None — `return order` at the end")
    order = list(result)
    if any(not isinstance(node, Tensor) for node in order):
        raise Failed("the list should hold the Tensors themselves (not their data or ids)")
    nodes = topological_order(root)
    ids = [id(node) for node in order]
    for node in order:
        if ids.count(id(node)) > 1:
            raise Failed(f"on {label}: lists {_describe_node(node)} {ids.count(id(node))} times. "
                         "It is reached along several paths: keep a `visited` set and skip a "
                         "node seen before, else its backward runs twice and doubles its "
                         "parents' gradients")
    missing = [node for node in nodes if id(node) not in ids]
    if missing:
        raise Failed(f"on {label}: misses {len(missing)} of the {len(nodes)} tensors the output "
                     f"depends on (e.g. {_describe_node(missing[0])}): visit every parent in "
                     "node.parents, recursively, down to the inputs")
    if len(order) != len(nodes):
        raise Failed(f"on {label}: lists tensors the output does not depend on")
    position = {id(node): i for i, node in enumerate(order)}

    def respects(pos):
        return all(pos[id(p)] < pos[id(n)] for n in nodes for p in n.parents)
    if not respects(position):
        if respects({k: -v for k, v in position.items()}):
            raise Failed(f"on {label}: the order is reversed — list each tensor AFTER its parents "
                         "(inputs first, the output last); backward walks the list from the end")
        node, parent = next((n, p) for n in order for p in n.parents
                            if position[id(p)] > position[id(n)])
        raise Failed(f"on {label}: lists {_describe_node(node)} before its parent "
                     f"{_describe_node(parent)}: append a node only after all its parents "
                     "(depth-first, post-order)")


# ================================================================ the exercises
BROADCAST_TRIALS = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1))]
HIDDEN_BROADCAST_TRIALS = [((4, 3), (4, 3)), ((2, 5), (5,)), ((4, 1), (1, 3)), ((3, 2, 5), (2, 1))]


def _op_exercise(name, trials, hidden):
    """An operation exercise: check_op(my_<name>, autograd.<name>) with its hint and mistakes."""
    return Exercise(name, (f"my_{name}",), check_op, reference=getattr(autograd, name),
                    mistakes=dict(hint=OP_HINTS[name], mistakes=OP_MISTAKES.get(name, ())),
                    trials=dict(shapes=trials), hidden=dict(shapes=hidden))


ADD = _op_exercise("add", BROADCAST_TRIALS, HIDDEN_BROADCAST_TRIALS)
MUL = _op_exercise("mul", BROADCAST_TRIALS, HIDDEN_BROADCAST_TRIALS)
RELU = _op_exercise("relu", [((3, 4),), ((5,),), ((2, 3, 2),)], [((4, 3),), ((6,),), ((3, 2, 2),)])
MATMUL = _op_exercise("matmul", [((3, 4), (4, 2)), ((1, 5), (5, 3)), ((3, 3), (3, 3))],
                      [((2, 5), (5, 3)), ((4, 2), (2, 1)), ((2, 2), (2, 2))])
TANH = _op_exercise("tanh", [((3, 4),), ((5,),), ((2, 3, 2),)], [((4, 3),), ((6,),), ((3, 2, 2),)])
PICK = Exercise("pick", ("my_pick",), check_pick, reference=autograd.pick,
                trials=dict(trials=PICK_TRIALS), hidden=dict(trials=HIDDEN_PICK_TRIALS))
TOPOLOGICAL_ORDER = Exercise(
    "topological_order", ("my_topological_order",), check_topological_order,
    forbidden=(topological_order,))
EXERCISES = (ADD, MUL, RELU, MATMUL, TANH, PICK, TOPOLOGICAL_ORDER)
