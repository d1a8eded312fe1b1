"""Hidden tests: ``grade(exercise_id, *candidates)``, the assertion nbgrader scores.

    from tinynn.course.grading import grade
    grade("dense", MyDense)      # one verdict; raises AssertionError(message) unless passed

The visible checks of :mod:`tinynn.course.exercises` run in the student's namespace against
references the student can replace, on inputs the student has seen. ``grade`` does not trust
either. For every call it

1. loads a **fresh private copy** of tinynn from the package's files on disk (``fresh.py``) and
   takes the exercise's spec — its check, reference and hidden trials — from that copy;
2. **refuses borrowed code**, with a message that names it (``borrowed.py``): a candidate that is,
   subclasses, copies or (while the check runs) calls tinynn's reference;
3. runs the copy's check — the same diagnosis code the student saw — on the spec's **hidden
   trials**: other seeds, shapes and constructor arguments (the seed can be changed for a course
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
import contextlib
import io
import os

import numpy as np

from ...errors import ConfigError
from ..exercises.core import show_verdict, verdict_of
from ..exercises.spec import path_of, registry
from .borrowed import live_functions, refuse_borrowed, student_name, tripwires
from .fresh import fresh_tinynn, live_package

SEED = int(os.environ.get("TINYNN_GRADING_SEED", "2718"))  # the hidden trials' seed


def grade(exercise_id, *candidates):
    """Check the candidates of exercise ``exercise_id`` on hidden inputs against a fresh copy of
    tinynn's reference, refusing borrowed reference code; display one verdict and raise
    ``AssertionError(message)`` unless they passed. An unknown id or a wrong number of candidates
    is the notebook author's mistake: ``ConfigError``."""
    exercises = registry()
    spec = exercises.get(exercise_id)
    if spec is None:
        raise ConfigError(f"grade(): no exercise {exercise_id!r}; the exercise ids are "
                          f"{', '.join(sorted(exercises))}")
    if len(candidates) != len(spec.names):
        raise ConfigError(f"grade({exercise_id!r}, ...) takes {len(spec.names)} candidate(s), "
                          f"{', '.join(spec.names)}; got {len(candidates)}")
    try:
        message = _grade(exercise_id, candidates)
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # whatever the student's code does, the verdict is a failure
        message = f"the hidden test stopped: {type(e).__name__}: {e}"
    passed = message is None
    if passed:
        message = f"{' and '.join(spec.names)} passed on inputs it has not seen"
    show_verdict(exercise_id, passed, message)
    if not passed:
        raise AssertionError(message)


def _grade(exercise_id, candidates):
    """None if the candidates pass, else the message that says why not."""
    with live_package().random.fork(SEED), fresh_tinynn() as (_, exercises):
        spec = exercises.registry()[exercise_id]      # the fresh copy's: its check, its reference
        references, bases = spec.forbidden_code(), spec.bases
        for name, candidate in zip(spec.names, candidates):
            refused = refuse_borrowed(name, candidate, references, bases)
            if refused:
                return refused
        checks = spec.hidden_checks(candidates, np.random.default_rng(SEED), SEED)
        live = live_functions([path_of(r) for r in references], [path_of(b) for b in bases])
        with tripwires(live) as calls:
            for check in checks:
                printed = io.StringIO()
                with contextlib.redirect_stdout(printed):
                    passed = check()
                if calls:
                    break
                if not passed:
                    return verdict_of(printed.getvalue())
        if calls:
            caller, reference = calls[0]
            return f"{student_name(caller, spec.names, candidates)} calls tinynn's {reference} — " \
                   "write your own"
        return None
