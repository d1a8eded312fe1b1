"""One exercise, one definition: the ``Exercise`` spec, and the registry of every spec.

Each notebook's module (``n01_dense.py``, ...) defines its exercises as ``Exercise`` specs and
lists them in ``EXERCISES``. Everything else reads the specs:

* the visible check: a notebook calls ``check_layer(MyDense, tn.Dense)``; the arguments it leaves
  out (the trial inputs, the catalogue of named mistakes) come from the spec whose visible check
  this is (``visible_defaults``);
* the hidden test: ``grade("dense", MyDense)`` runs the same check on the spec's ``hidden`` trials
  (``Exercise.hidden_checks``) and refuses the spec's ``forbidden`` reference code;
* the tests: every spec's id is graded in exactly one notebook, and every check cell calls a
  spec's check.

    DENSE = Exercise(
        "dense", ("MyDense",), check_layer, reference=Dense, bases=(Layer,),
        trials=dict(trials=[((3,), (4, 5)), ...]),      # constructor args, input shape
        hidden=dict(trials=[((5,), (3, 7)), ...]))
"""
import dataclasses
import functools
import importlib
import inspect
import pkgutil
import re

from ...errors import ConfigError
from .core import _name

NOTEBOOK_MODULE = re.compile(r"n\d\d_\w+")   # the modules that hold a notebook's exercises


@dataclasses.dataclass(frozen=True)
class Call:
    """One call of a hidden test's check: ``check(candidates[candidate], <reference>, *args,
    **kwargs)``; for inputs drawn at grading time, several calls, or a second candidate."""
    args: tuple = ()
    kwargs: dict = dataclasses.field(default_factory=dict)
    candidate: int = 0


@dataclasses.dataclass(frozen=True)
class Exercise:
    """One exercise of the course.

    ``id``: what the notebook's hidden test passes to ``grade("<id>", ...)``;
    ``names``: what the student writes (grade's candidates, in order);
    ``check``: the visible check the notebook calls after the exercise;
    ``reference``: tinynn's version the check compares with (its second argument), or None;
    ``mistakes``: the check's catalogue of named mistakes (keyword arguments, visible and hidden);
    ``trials``: the visible check's trial inputs (keyword arguments);
    ``hidden``: the hidden test's trial inputs (the same keywords, other values; the seed is the
    grader's);
    ``calls``: the hidden test's calls (a tuple of ``Call``, or a function ``rng -> [Call]`` for
    inputs drawn from the hidden seed); default one call on the first candidate;
    ``forbidden``: the tinynn code the candidates may not be, copy or call (default: the
    reference); ``bases``: the tinynn classes a candidate class may subclass."""
    id: str
    names: tuple
    check: object
    reference: object = None
    mistakes: dict = dataclasses.field(default_factory=dict)
    trials: dict = dataclasses.field(default_factory=dict)
    hidden: dict = dataclasses.field(default_factory=dict)
    calls: object = (Call(),)
    forbidden: tuple = None
    bases: tuple = ()

    @property
    def check_name(self):
        return self.check.__name__

    def forbidden_code(self):
        """The classes and functions of tinynn the candidates may not borrow."""
        if self.forbidden is not None:
            return tuple(self.forbidden)
        return () if self.reference is None else (self.reference,)

    def hidden_checks(self, candidates, rng, seed):
        """The hidden test: the spec's check calls on its hidden trials, as zero-argument
        functions that print a verdict and return True/False."""
        calls = self.calls(rng) if callable(self.calls) else self.calls
        reference = () if self.reference is None else (self.reference,)
        return [functools.partial(self.check, candidates[call.candidate], *reference, *call.args,
                                  **{**self.mistakes, **self.trials, **self.hidden, **call.kwargs,
                                     "seed": seed})
                for call in calls]


def path_of(obj):
    """(module, qualname) of a tinynn class or function, the module named inside the package
    (``("layers", "Dense")``), the same for the live package and a fresh copy of it."""
    return obj.__module__.partition(".")[2], obj.__qualname__


@functools.lru_cache(maxsize=None)
def registry():
    """Every exercise of the course, by id, collected from the notebook modules (``n00_...``)."""
    package = importlib.import_module(__package__)
    found = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda info: info.name):
        if not NOTEBOOK_MODULE.fullmatch(info.name):
            continue
        module = importlib.import_module(f"{__package__}.{info.name}")
        for spec in module.EXERCISES:
            if spec.id in found:
                raise ConfigError(f"exercise id {spec.id!r} is defined twice (in {info.name})")
            found[spec.id] = spec
    return found


def visible_defaults(check):
    """Decorate a check so that a notebook's call ``check(candidate[, reference], ...)`` gets the
    keyword arguments it leaves out (trials, mistakes) from the spec whose visible check it is:
    the first spec with this check and a reference of the same name (or none, for a check that
    takes no reference). A call that matches no spec runs on the check's own defaults."""
    takes_reference = "reference" in inspect.signature(check).parameters

    @functools.wraps(check)
    def with_spec(*args, **kwargs):
        reference = _name(args[1]) if takes_reference and len(args) > 1 else None
        for spec in registry().values():
            named = None if spec.reference is None else _name(spec.reference)
            if spec.check_name == check.__name__ and named == reference:
                kwargs = {**spec.mistakes, **spec.trials, **kwargs}
                break
        return check(*args, **kwargs)
    return with_spec
