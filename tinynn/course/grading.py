"""Hidden tests: ``grade(exercise_id, *candidates)``, the assertion nbgrader scores.

    from tinynn.course.grading import grade
    grade("dense", MyDense)      # one verdict; raises AssertionError(message) unless passed

The visible checks of :mod:`tinynn.course.exercises` run in the student's namespace against
references the student can replace, on inputs the student has seen. ``grade`` does not trust
either. For every call it

1. loads a **fresh private copy** of tinynn from the package's files on disk (under a private
   module name, never through ``sys.modules["tinynn"]`` or the student's ``tn``) and takes both
   the reference (e.g. ``Dense``) and the check (e.g. ``check_layer``) from that copy, so patching
   ``tinynn.Dense``, ``tinynn.course.exercises.check_layer`` or a notebook's ``check_layer`` changes
   nothing. The copy shares one module with the live package, ``tinynn.random`` (the generator,
   no reference code), so a dropout or initialiser that draws from the notebook's
   ``tn.random.rng()`` draws the numbers the check expects;
2. **refuses borrowed code**, with a message that names it: a candidate that *is* a tinynn class or
   function, *subclasses* one other than the exercise's allowed base (``tn.Layer``, ``tn.Loss``,
   ``tn.Optimizer``, ``tn.Schedule``; ``tn.Adam`` for AdamW), has a method whose code comes from
   tinynn's files (the function itself, or rebuilt from its code object), is a verbatim paste of
   the reference's source (same instructions, names and constants, adding up to at least
   ``MIN_COPY_STATEMENTS`` statements: a short honest function such as
   ``return np.argmax(logits, axis=1)`` may equal a short reference), or *calls* the live
   reference while the check runs (its functions are swapped for tripwires that record the call,
   then restored);
3. runs the copy's check — the same diagnosis code the student saw — on **hidden inputs**: other
   seeds, shapes and constructor arguments (``REGISTRY``; the seed can be changed for a course
   with ``TINYNN_GRADING_SEED``), so answers hard-coded from the visible check fail;
4. shows **one verdict** (display_data ``application/vnd.tinynn.verdict+json`` plus ``text/plain``,
   or a printed line outside IPython) and raises ``AssertionError(message)`` unless it passed.

What this can and cannot guarantee: a hidden test runs inside the student's own kernel, in the
same process as their code, so it stops honest mistakes and the obvious shortcuts (aliasing,
subclassing, copying or calling tinynn's reference), but not a determined student who reads this
source and patches numpy, IPython's display, or ``grade`` itself before the test cell runs. The
teacher's defence is the grader's own run and log (``python -m tinynn grade`` re-executes every
submission), spot checks of the code, and hidden inputs that the student never sees.
"""
import ast
import contextlib
import dataclasses
import dis
import importlib
import importlib.util
import inspect
import io
import itertools
import linecache
import os
import sys
import textwrap
import types
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from ..errors import ConfigError

__all__ = ["grade", "REGISTRY", "MIME", "fresh_tinynn"]

MIME = "application/vnd.tinynn.verdict+json"
ROOT = __name__.partition(".")[0]                     # "tinynn": the live package's name
PACKAGE_DIR = Path(__file__).resolve().parent.parent  # the tinynn package on disk
PRIVATE_PREFIX = f"_{ROOT}_grading_"                  # module names of the fresh copies
SEED = int(os.environ.get("TINYNN_GRADING_SEED", "2718"))  # the hidden trials' seed
MIN_COPY_STATEMENTS = 8   # verbatim copies this long are pasted, not re-invented (_refuse_copies)
VERDICT_STARTS = ("✔ ", "✘ ", "not yet implemented")  # how an exercises check's verdict begins
_loads = itertools.count()


# ================================================================ the fresh copy of tinynn
@contextlib.contextmanager
def fresh_tinynn():
    """Load a private copy of the tinynn package from its files; yield (package, exercises).

    The copy lives under a private module name while the ``with`` block runs (its functions
    import lazily, so it must stay importable), and is removed from ``sys.modules`` afterwards.
    Its ``random`` module is the live ``tinynn.random``: one generator for both copies."""
    name = f"{PRIVATE_PREFIX}{next(_loads)}"
    live_random = importlib.import_module(f"{ROOT}.random")
    spec = importlib.util.spec_from_file_location(
        name, PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(PACKAGE_DIR)])
    package = importlib.util.module_from_spec(spec)
    package.random = live_random
    sys.modules[name], sys.modules[f"{name}.random"] = package, live_random
    try:
        spec.loader.exec_module(package)
        yield package, importlib.import_module(f"{name}.course.exercises")
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
            del sys.modules[key]


def _resolve(package, path):
    """``package``'s object at ``path`` = (module, qualname), e.g. ("net", "Net.forward")."""
    module, qualname = path
    obj = importlib.import_module(f"{package.__name__}.{module}")
    for attr in qualname.split("."):
        obj = getattr(obj, attr)
    return obj


# ================================================================ the registry
@dataclasses.dataclass(frozen=True)
class Exercise:
    """How one exercise is graded.

    ``names``: the candidates' names in the notebook (grade's arguments, in order);
    ``checks(tn, ex, rng, *candidates)``: the fresh copy's check calls, as zero-argument functions
    (``tn`` the fresh package, ``ex`` its exercises module, ``rng`` the hidden inputs' generator);
    ``references``: the tinynn objects the candidates must not be, copy or call, as
    (module, qualname); ``bases``: the tinynn classes a candidate class may subclass;
    ``hidden``: constants of the fresh exercises module replaced for the hidden trials."""
    names: tuple
    checks: object
    references: tuple = ()
    bases: tuple = ()
    hidden: dict = dataclasses.field(default_factory=dict)


LAYER, LOSS, OPTIMIZER, SCHEDULE = (("layers", "Layer"),), (("losses", "Loss"),), \
    (("optimizers", "Optimizer"),), (("schedules", "Schedule"),)


def _layer(reference, trials=None, **hidden):
    """A layer exercise: check_layer(candidate, tn.<reference>) on hidden trials."""
    if trials is not None:
        hidden["LAYER_TRIALS"] = {reference: trials}
    return dict(checks=lambda tn, ex, rng, c: [partial(ex.check_layer, c, getattr(tn, reference))],
                references=((_MODULES[reference], reference),), bases=LAYER, hidden=hidden)


def _op(name, trials):
    """An autograd operation: check_op(candidate, autograd.<name>) on hidden input shapes."""
    return Exercise(("my_" + name,),
                    lambda tn, ex, rng, c: [partial(ex.check_op, c, getattr(tn.autograd, name))],
                    (("autograd", name),), hidden={"OP_TRIALS": {name: trials}})


_MODULES = {"Dense": "layers", "Sigmoid": "layers", "LeakyReLU": "layers", "Dropout": "layers",
            "Conv2D": "conv", "MaxPool2D": "conv", "BatchNorm": "norm"}
HIDDEN_DENSE = [((5,), (3, 7)), ((2,), (6, 3)), ((1,), (2, 4))]


def _logits(rng, n, classes):
    """Float32 scores (as a model predicts them); about half the rows' top class is the label."""
    logits = rng.standard_normal((n, classes)).astype(np.float32)
    labels = np.where(rng.random(n) < 0.5, logits.argmax(axis=1), rng.integers(0, classes, n))
    return logits, labels


def _net_passes(tn, ex, rng, forward_through, backward_through):
    layers = [tn.Dense(5), tn.Tanh(), tn.Dense(4)]
    x, y = rng.standard_normal((6, 3)), rng.integers(0, 4, 6)

    def net_forward(layers, x):
        return tn.Net(layers).forward(x, training=True)

    def net_backward(layers, grad):
        return tn.Net(layers).backward(grad)
    logits = net_forward(layers, x)
    grad = tn.SoftmaxCrossEntropy()(logits, y)[1]
    return [partial(ex.check_function, forward_through, net_forward, layers, x),
            partial(ex.check_function, backward_through, net_backward, layers, grad)]


def _conv2d(tn, ex, rng, candidate):
    x, w, b = (rng.standard_normal(s) for s in ((3, 7, 6, 2), (2, 2, 2, 5), (5,)))

    def conv2d_reference(x, w, b):
        layer = tn.Conv2D(w.shape[-1], w.shape[:2])
        layer.load_params({"w": w, "b": b})
        return layer.forward(x)
    return [partial(ex.check_function, candidate, conv2d_reference, x, w, b)]


def _max_pool(tn, ex, rng, candidate):
    def max_pool_reference(x):
        return tn.MaxPool2D(2).forward(x)
    return [partial(ex.check_function, candidate, max_pool_reference,
                    rng.standard_normal((3, 4, 8, 2)))]


_BROADCASTS = [((4, 3), (4, 3)), ((2, 5), (5,)), ((4, 1), (1, 3)), ((3, 2, 5), (2, 1))]

REGISTRY = {
    # 00 overview
    "predict_classes": Exercise(
        ("predict_classes",), lambda tn, ex, rng, c: [partial(
            ex.check_function, c, tn.metrics.predicted_classes, _logits(rng, 17, 10)[0])],
        (("metrics", "predicted_classes"),)),
    "accuracy": Exercise(
        ("accuracy",), lambda tn, ex, rng, c: [partial(
            ex.check_function, c, tn.accuracy, *_logits(rng, 41, 10))],
        (("metrics", "accuracy"),)),
    # 01, 02 layers
    "dense": Exercise(("MyDense",), **_layer("Dense", HIDDEN_DENSE)),
    "sigmoid": Exercise(("MySigmoid",), **_layer(
        "Sigmoid", DEFAULT_LAYER_TRIALS=[((), (5, 3)), ((), (2, 3, 5)), ((), (1, 7))])),
    "leaky_relu": Exercise(("MyLeakyReLU",), **_layer(
        "LeakyReLU", [((0.2,), (5, 3)), ((), (2, 3, 5)), ((0.05,), (1, 7))])),
    # 03 losses
    "softmax_cross_entropy": Exercise(
        ("MySoftmaxCrossEntropy",),
        lambda tn, ex, rng, c: [partial(ex.check_loss, c, tn.SoftmaxCrossEntropy)],
        (("losses", "SoftmaxCrossEntropy"),), LOSS,
        {"LOSS_SHAPES": [(5, 4), (7, 12), (2, 3)]}),
    # 04 optimizers and a schedule
    "momentum": Exercise(
        ("MyMomentum",), lambda tn, ex, rng, c: [
            partial(ex.check_optimizer, c, tn.Momentum, lr=0.05, momentum=0.8),
            partial(ex.check_optimizer, c, tn.Momentum, lr=0.05, momentum=0.8, nesterov=True)],
        (("optimizers", "Momentum"),), OPTIMIZER,
        {"OPTIMIZER_SHAPES": [(2, 4), (3,)], "STEPS": 7, "LR_CHANGE_AT": 3}),
    "adam": Exercise(
        ("MyAdam",), lambda tn, ex, rng, c: [
            partial(ex.check_optimizer, c, tn.Adam, lr=0.02, beta2=0.99)],
        (("optimizers", "Adam"),), OPTIMIZER,
        {"OPTIMIZER_SHAPES": [(2, 4), (3,)], "STEPS": 7, "LR_CHANGE_AT": 3}),
    "cosine_decay": Exercise(
        ("MyCosineDecay",), lambda tn, ex, rng, c: [
            partial(ex.check_function, c, tn.CosineDecay, 0.05, 300, 0.002)],
        (("schedules", "CosineDecay"),), SCHEDULE,
        {"SCHEDULE_STEPS": [*range(60), 120, 299, 300, 301, 450, 1000, 3000]}),
    # 05 net and model
    "net_passes": Exercise(("forward_through", "backward_through"), _net_passes,
                           (("net", "Net.forward"), ("net", "Net.backward"))),
    "train_step": Exercise(
        ("my_train_step",), lambda tn, ex, rng, c: [partial(ex.check_model_step, c)],
        (("model", "Model.train_step"),), hidden={"TRAIN_STEPS": 4}),
    # 06 MNIST MLP
    "he_normal": Exercise(
        ("my_he_normal",), lambda tn, ex, rng, c: [partial(ex.check_he_init, c)],
        (("initializers", "he_normal"),), hidden={"HE_SHAPES": [(500, 800), (800, 300)]}),
    "confusion_matrix": Exercise(
        ("my_confusion_matrix",), lambda tn, ex, rng, c: [partial(
            ex.check_function, c, tn.confusion_matrix, *_logits(rng, 60, 7), 7)],
        (("metrics", "confusion_matrix"),)),
    # 07 learning-rate lab
    "lr_range_test": Exercise(
        ("my_lr_range_test",), lambda tn, ex, rng, c: [partial(ex.check_lr_range_test, c)],
        (("lr_finder", "lr_range_test"),),
        hidden={"RANGE_TEST_ARGS": dict(lr_min=1e-4, lr_max=1e2, num_steps=60, batch_size=12,
                                        seed=3)}),
    # 08 generalisation
    "adamw": Exercise(
        ("MyAdamW",), lambda tn, ex, rng, c: [
            partial(ex.check_optimizer, c, tn.AdamW, lr=0.05, weight_decay=0.2)],
        (("optimizers", "AdamW"),), (("optimizers", "Adam"),),
        {"OPTIMIZER_SHAPES": [(2, 4), (3,)], "STEPS": 7, "LR_CHANGE_AT": 3}),
    "dropout": Exercise(
        ("MyDropout",), lambda tn, ex, rng, c: [partial(ex.check_dropout, c)],
        (("layers", "Dropout"),), LAYER,
        {"DROPOUT_RATES": (0.6, 0.3), "DROPOUT_SHAPE": (150, 90)}),
    # 09 convolutions
    "im2col": Exercise(
        ("my_im2col",), lambda tn, ex, rng, c: [partial(
            ex.check_function, c, tn.conv.im2col, rng.standard_normal((3, 6, 7, 2)), 2)],
        (("conv", "im2col"),)),
    "conv2d": Exercise(("my_conv2d",), _conv2d, (("conv", "Conv2D"),), LAYER),
    "col2im": Exercise(
        ("my_col2im",), lambda tn, ex, rng, c: [partial(ex.check_col2im, c)],
        (("conv", "col2im"),),
        hidden={"COL2IM_TRIALS": [((1, 6, 5, 2), 3, 1, 1), ((2, 7, 7, 1), 3, 2, 1),
                                  ((1, 8, 6, 2), 2, 2, 1), ((2, 8, 8, 1), 3, 1, 2),
                                  ((1, 9, 9, 2), 2, 2, 2)]}),
    "conv2d_layer": Exercise(("MyConv2D",), **_layer(
        "Conv2D", [((3, 2), (2, 6, 5, 2)), ((2, 3), (1, 5, 6, 3)), ((1, 1), (2, 3, 4, 1))])),
    # 10 MNIST CNN
    "max_pool": Exercise(("my_max_pool",), _max_pool, (("conv", "MaxPool2D"),), LAYER),
    "max_pool_layer": Exercise(("MyMaxPool2D",), **_layer(
        "MaxPool2D", [((), (3, 6, 4, 2)), ((2,), (2, 4, 8, 3)), ((3,), (1, 9, 6, 1))],
        LAYER_TIE_TRIALS={"MaxPool2D": [((), (3, 4, 6, 2)), ((3,), (2, 6, 3, 2))]})),
    "batch_norm": Exercise(("MyBatchNorm",), **_layer(
        "BatchNorm", [((), (7, 4)), ((), (3, 4, 2, 3)), ((), (6, 2))])),
    # 11 autograd
    "add": _op("add", _BROADCASTS),
    "mul": _op("mul", _BROADCASTS),
    "relu": _op("relu", [((4, 3),), ((6,),), ((3, 2, 2),)]),
    "matmul": _op("matmul", [((2, 5), (5, 3)), ((4, 2), (2, 1)), ((2, 2), (2, 2))]),
    "topological_order": Exercise(
        ("my_topological_order",),
        lambda tn, ex, rng, c: [partial(ex.check_topological_order, c)],
        (("autograd", "topological_order"),)),
    # 12 debugging
    "shuffle": Exercise(("shuffle_together",),
                        lambda tn, ex, rng, c: [partial(ex.check_shuffle, c)],
                        hidden={"SHUFFLE_ROWS": 31, "SHUFFLE_SEED": 5}),
    "scaling": Exercise(("scale_pixels",), lambda tn, ex, rng, c: [partial(ex.check_scaling, c)],
                        hidden={"SCALING_SHAPE": (7, 784)}),
    "dead_fraction": Exercise(
        ("my_dead_fraction",), lambda tn, ex, rng, c: [
            partial(ex.check_dead_fraction, c, tn.dead_fraction)],
        (("diagnostics", "dead_fraction"),),
        hidden={"DEAD_SHAPE": (9, 11), "DEAD_UNITS": [0, 3, 7, 10]}),
    "evaluate": Exercise(("my_evaluate",),
                         lambda tn, ex, rng, c: [partial(ex.check_inference, c)],
                         (("model", "Model.evaluate"),)),
    "dense_backward": Exercise(("MyDense",), **_layer("Dense", HIDDEN_DENSE)),
}


# ================================================================ grade
def grade(exercise_id, *candidates):
    """Check the candidates of exercise ``exercise_id`` on hidden inputs against a fresh copy of
    tinynn's reference, refusing borrowed reference code; display one verdict and raise
    ``AssertionError(message)`` unless they passed. An unknown id or a wrong number of candidates
    is the notebook author's mistake: ``ConfigError``."""
    exercise = REGISTRY.get(exercise_id)
    if exercise is None:
        raise ConfigError(f"grade(): no exercise {exercise_id!r}; the exercise ids are "
                          f"{', '.join(sorted(REGISTRY))}")
    if len(candidates) != len(exercise.names):
        raise ConfigError(f"grade({exercise_id!r}, ...) takes {len(exercise.names)} candidate(s), "
                          f"{', '.join(exercise.names)}; got {len(candidates)}")
    try:
        message = _grade(exercise, candidates)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # whatever the student's code does, the verdict is a failure
        message = f"the hidden test stopped: {type(e).__name__}: {e}"
    passed = message is None
    if passed:
        message = f"{' and '.join(exercise.names)} passed on inputs it has not seen"
    _show(exercise_id, passed, message)
    if not passed:
        raise AssertionError(message)


def _grade(exercise, candidates):
    """None if the candidates pass, else the message that says why not."""
    live_random = importlib.import_module(f"{ROOT}.random")
    saved = live_random._generator
    live_random._generator = np.random.default_rng(SEED)   # the hidden inputs' own stream
    try:
        with fresh_tinynn() as (tn, ex):
            references = [_resolve(tn, path) for path in exercise.references]
            bases = [_resolve(tn, path) for path in exercise.bases]
            for name, candidate in zip(exercise.names, candidates):
                refused = _refuse_borrowed(name, candidate, references, bases)
                if refused:
                    return refused
            for constant, value in {"SEED": SEED, **exercise.hidden}.items():
                setattr(ex, constant, value)
            ex.EXTRA_TENSOR_TYPES = (importlib.import_module(f"{ROOT}.autograd").Tensor,)
            checks = exercise.checks(tn, ex, np.random.default_rng(SEED), *candidates)
            with _tripwires(_live_functions(exercise)) as calls:
                for check in checks:
                    printed = io.StringIO()
                    with contextlib.redirect_stdout(printed):
                        passed = check()
                    if calls:
                        break
                    if not passed:
                        return _verdict(printed.getvalue())
            if calls:
                caller, reference = calls[0]
                caller = _student_name(caller, exercise.names, candidates)
                return f"{caller} calls tinynn's {reference} — write your own"
            return None
    finally:
        live_random._generator = saved


def _verdict(printed):
    """The check's verdict from what it printed (the student's own prints come before it)."""
    lines = printed.rstrip().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith(VERDICT_STARTS)), default=0)
    text = "\n".join(lines[start:]).strip()
    return text[2:] if text.startswith("✘ ") else text or "the check printed no verdict"


def _show(exercise_id, passed, message):
    """Display the verdict: the MIME bundle in IPython (what the grader reads), else a line."""
    text = (f"✔ hidden test '{exercise_id}' passed" if passed
            else f"✘ hidden test '{exercise_id}': {message}")
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display({MIME: {"exercise": exercise_id, "passed": passed, "message": message},
                 "text/plain": text}, raw=True)
    else:
        print(text)


# ================================================================ borrowed code
def _is_tinynn(obj):
    """Whether a class or function belongs to tinynn (the live package or a fresh copy)."""
    module = getattr(obj, "__module__", None) or ""
    return module == ROOT or module.startswith((f"{ROOT}.", PRIVATE_PREFIX))


@lru_cache(maxsize=None)
def _in_package(filename):
    """Whether a code object's file is one of tinynn's (the live package and the fresh copies
    share the files)."""
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


def _reference_functions(references, bases):
    """The functions of the references: a function itself, or those a reference class defines
    (in its own class and any tinynn class between it and the allowed bases)."""
    allowed = {cls for base in bases for cls in base.__mro__}
    functions = []
    for ref in references:
        if not inspect.isclass(ref):
            functions.append(ref)
            continue
        for cls in ref.__mro__:
            if cls not in allowed and _is_tinynn(cls):
                functions += [f for f in map(_function_of, vars(cls).values()) if f]
    return functions


def _key(cls):
    """(module, qualname) with a fresh copy's module named as the live one's."""
    return f"{ROOT}.{cls.__module__.partition('.')[2]}".rstrip("."), cls.__qualname__


def _function_of(value):
    """The Python function behind a class attribute (method, static/class method), or None."""
    value = getattr(value, "__func__", value)
    return value if inspect.isfunction(value) else None


def _refuse_borrowed(name, candidate, references, bases):
    """The message refusing ``candidate`` (called ``name`` in the notebook), or None."""
    obj = candidate
    if inspect.ismethod(obj):
        obj = obj.__func__
    while isinstance(obj, partial):
        obj = obj.func
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        if callable(obj) and not hasattr(obj, "__dict__"):
            return None   # a builtin (e.g. numpy's): nothing of tinynn's to borrow
        obj = type(obj)   # an instance: judge its class
    kind = "class" if inspect.isclass(obj) else "function"
    if _is_tinynn(obj):
        return f"{name} is tinynn's {obj.__qualname__} — write your own {kind}"
    functions = [(name, obj)] if inspect.isfunction(obj) else []
    if inspect.isclass(obj):
        allowed = {_key(cls) for base in bases for cls in base.__mro__}
        hint = " or ".join(f"tn.{base.__name__}" for base in bases) or "no tinynn class"
        for cls in obj.__mro__[1:]:
            if _is_tinynn(cls) and _key(cls) not in allowed:
                return (f"{name} subclasses tinynn's {cls.__qualname__} — write your own "
                        f"(subclass {hint})")
        for cls in obj.__mro__:
            if not _is_tinynn(cls) and cls is not object:
                owner = name if cls is obj else cls.__qualname__
                functions += [(f"{owner}.{attr}", f) for attr, value in vars(cls).items()
                              if (f := _function_of(value))]
    for label, func in functions:
        code = func.__code__
        if _in_package(code.co_filename):
            how = "is" if _is_tinynn(func) else "is rebuilt from the code of"
            return f"{label} {how} tinynn's {_qualname(code)} — write your own"
    return _refuse_copies(functions, _reference_functions(references, bases))


def _refuse_copies(functions, references):
    """Refuse verbatim copies of the references' functions, if they add up to at least
    ``MIN_COPY_STATEMENTS`` statements. The exercises scaffold their answers, so an honest
    student may write a short reference function exactly (notebook 04's solution of
    ``MyMomentum.update`` is tinynn's six statements); eight statements equal in every
    instruction, name and constant (a pasted class brings its __init__ and helpers too) are a
    paste."""
    copies = [(label, ref) for label, func in functions for ref in references
              if _same_code(func.__code__, ref.__code__)]
    if sum(_statements(ref) for _, ref in copies) < MIN_COPY_STATEMENTS:
        return None
    labels, refs = (", ".join(names) for names in zip(*[(l, r.__qualname__) for l, r in copies]))
    verb = "is a copy" if len(copies) == 1 else "are copies"
    return f"{labels} {verb} of tinynn's {refs} — write your own"


def _same_code(a, b):
    """Same instructions with the same arguments (names, constants, nested functions), the
    docstring aside."""
    return _instructions(a) == _instructions(b)


def _instructions(code):
    """(operation, argument) of each instruction, jump targets as instruction numbers. A method
    call on a module (np.mean(...)) compiles to LOAD_ATTR in a file that imports the module and
    to LOAD_METHOD in a notebook cell that does not: both count as LOAD_ATTR (from Python 3.12
    the file's LOAD_ATTR is followed by a PUSH_NULL, which is not compared). Before Python 3.11
    a nested function or comprehension is made from its code and its qualified name, a constant
    that names the enclosing class ('Dense.forward.<locals>.<listcomp>'): only its last part
    counts, as from 3.11, where the name lives in the code."""
    every = list(dis.get_instructions(code))
    instructions = [i for i in every if i.opname not in ("CACHE", "PUSH_NULL")]
    number, compared = {}, 0   # a skipped instruction's number is the next compared one's
    for i in every:
        number[i.offset] = compared
        compared += i.opname not in ("CACHE", "PUSH_NULL")
    jumps = set(dis.hasjrel) | set(dis.hasjabs)
    result = []
    for i, following in zip(instructions, instructions[1:] + [None]):
        argument = i.argval
        if i.opcode in jumps:
            argument = number.get(argument)
        elif inspect.iscode(argument):
            argument = _instructions(argument)
        elif isinstance(argument, str) and following and following.opname == "MAKE_FUNCTION":
            argument = argument.rpartition(".")[2]
        result.append(("LOAD_ATTR" if i.opname == "LOAD_METHOD" else i.opname, argument))
    return result


def _statements(func):
    """How many statements ``func``'s body holds, nested ones (an if's, an inner function's)
    included and the docstring not, read from tinynn's source file."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return 0
    definition = tree.body[0]
    body = definition.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return sum(isinstance(node, ast.stmt) for stmt in body for node in ast.walk(stmt))


# ================================================================ tripwires on the live reference
HOOK = "__tinynn_grading_tripwire__"


def _live_functions(exercise):
    """The live package's reference functions (those whose code is genuinely tinynn's: a
    reference the student replaced has no tripwire, its replacement is judged as a candidate)."""
    live = sys.modules.get(ROOT) or importlib.import_module(ROOT)
    functions = []
    for path in exercise.references:
        try:
            references = [_resolve(live, path)]
            bases = [_resolve(live, base) for base in exercise.bases]
        except (AttributeError, ImportError):
            continue
        functions += [f for f in _reference_functions(references, bases)
                      if _in_package(f.__code__.co_filename) and _is_tinynn(f)]
    return list({id(f): f for f in functions}.values())


@contextlib.contextmanager
def _tripwires(functions):
    """While the block runs, each function's code is replaced by a tripwire that records
    (caller's code, function's qualname) in the yielded list and then runs the original, so the
    call is seen however the student reached the function (attribute, alias, super()).
    Restored in ``finally``."""
    calls, originals, hooked = [], [], []

    def tripwire(index, args, kwargs):
        func, original = originals[index]
        frame = sys._getframe(2)          # 0 here, 1 the tripwire code, 2 its caller
        while frame is not None and _in_package(frame.f_code.co_filename):
            frame = frame.f_back          # tinynn's own frames (e.g. a base class) lead there
        calls.append((frame.f_code if frame else None, func.__qualname__))
        return original(*args, **kwargs)

    try:
        for index, func in enumerate(functions):
            original = types.FunctionType(func.__code__, func.__globals__, func.__name__,
                                          func.__defaults__, func.__closure__)
            original.__kwdefaults__ = func.__kwdefaults__
            originals.append((func, original))
            if HOOK not in func.__globals__:
                func.__globals__[HOOK] = tripwire
                hooked.append(func.__globals__)
            func.__code__ = _tripwire_code(func.__code__, index)
        yield calls
    finally:
        for func, original in originals:
            func.__code__ = original.__code__
        for namespace in hooked:
            namespace.pop(HOOK, None)


def _tripwire_code(code, index):
    """Code that calls the hook with (index, args, kwargs), with ``code``'s free variables (a
    function's code can only be swapped for code with as many, e.g. super()'s __class__)."""
    free = code.co_freevars
    source = "\n".join([
        "def outer():",
        *(f"    {name} = None" for name in free),
        "    def tripwire(*args, **kwargs):",
        f"        {', '.join(free)}" if free else "        pass",
        f"        return {HOOK}({index}, args, kwargs)",
        "    return tripwire"])
    namespace = {}
    exec(compile(source, "<tinynn tripwire>", "exec"), namespace)
    names = {"co_name": code.co_name}
    if hasattr(code, "co_qualname"):   # Python 3.11+
        names["co_qualname"] = code.co_qualname
    return namespace["outer"]().__code__.replace(**names)


def _student_name(code, names, candidates):
    """Name the student's code that made a call: its qualname, or the candidate's notebook name
    for a function candidate (a lambda or an alias has an unhelpful qualname)."""
    if code is None:
        return " and ".join(names)
    for name, candidate in zip(names, candidates):
        if getattr(candidate, "__code__", None) is code:
            return name
        prefix = f"{getattr(candidate, '__qualname__', '')}."
        if inspect.isclass(candidate) and _qualname(code).startswith(prefix):
            return name + _qualname(code)[len(prefix) - 1:]
    return _qualname(code)


# ================================================================ qualified names of code
SCOPES = {ast.Lambda: "<lambda>", ast.ListComp: "<listcomp>", ast.SetComp: "<setcomp>",
          ast.DictComp: "<dictcomp>", ast.GeneratorExp: "<genexpr>"}  # unnamed code's names


def _qualname(code):
    """The qualified name of a function's code, e.g. 'Dense.forward'. Python 3.11+ keeps it in
    the code (co_qualname); before, it is read from the source (a file, or a notebook cell that
    IPython keeps in linecache): the definition named co_name at line co_firstlineno."""
    if hasattr(code, "co_qualname"):
        return code.co_qualname
    try:
        tree = ast.parse("".join(linecache.getlines(code.co_filename)))
    except (SyntaxError, ValueError):
        return code.co_name
    return _definitions(tree).get((code.co_firstlineno, code.co_name), code.co_name)


def _definitions(node, prefix=""):
    """{(first line, code name): qualified name} of the scopes in ``node`` (a function's first
    line is its first decorator's)."""
    found = {}
    for child in ast.iter_child_nodes(node):
        inner = prefix
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                or type(child) in SCOPES:
            name = getattr(child, "name", None) or SCOPES[type(child)]
            first = min([child.lineno, *(d.lineno for d in getattr(child, "decorator_list", []))])
            found[first, name] = prefix + name
            inner = prefix + name + ("." if isinstance(child, ast.ClassDef) else ".<locals>.")
        found.update(_definitions(child, inner))
    return found
