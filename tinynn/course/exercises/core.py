"""The runner every check shares: it runs a check, prints one verdict and never crashes a notebook.

A check's body raises ``Failed("what is wrong")`` for a diagnosed mistake or ``NotDone(...)`` for
an exercise not written yet; anything else the student's code raises becomes a verdict with a hint.
``expect`` checks one claim of an experiment. ``show_verdict`` displays a hidden test's verdict as
the MIME bundle the grader reads.
"""
import copy
import inspect
import traceback
import warnings

import numpy as np

from ... import random as tn_random

SEED = 0          # the visible checks' seed (a hidden test passes its own)
MIME = "application/vnd.tinynn.verdict+json"           # a hidden test's verdict, for the grader
VERDICT_STARTS = ("✔ ", "✘ ", "not yet implemented")  # how every verdict line of a check begins


class Failed(Exception):
    """A diagnosed mistake; the message says what is wrong in plain words."""


class NotDone(Exception):
    """The exercise is not implemented yet (NotImplementedError, or a method returned None)."""


def expect(claim, holds, got=None):
    """Check one claim of the lesson: print "✔ claim" if it holds, else "✘ claim — got …".

    Trained numbers differ in their last digits between machines (BLAS kernels and thread counts
    sum in different orders), so the cell that prints them cannot be compared digit for digit.
    What they *teach* can: "the loss fell", "accuracy ≥ 97.5%". The ✔ line holds no volatile
    number, so it is the same on every machine, and a ✘ line (with the value that broke the claim)
    makes the notebook's test fail. It never raises: a student's experiment carries on.
    It returns nothing, so a cell that ends with it shows only the verdict line (no stray
    ``True`` under it)."""
    try:
        holds = bool(holds)
    except Exception as e:  # e.g. the truth value of an array: say so instead of crashing
        holds, got = False, f"{got} ({type(e).__name__}: {e})"
    if holds:
        print(f"✔ {claim}")
    else:
        print(f"✘ {claim} — got {got}" if got is not None else f"✘ {claim}")


def _run(what, check, seed=SEED):
    """Run ``check() -> detail`` on tinynn's generator seeded with ``seed`` (the notebook's own
    generator is given back afterwards, where it was) with numpy warnings silenced, print one
    verdict, return True/False. Never raises (except KeyboardInterrupt)."""
    try:
        with tn_random.fork(seed), warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            detail = check()
    except NotDone as e:
        print(f"not yet implemented — {what}: {e}")
    except NotImplementedError as e:
        print(f"not yet implemented — {what}: {_where(e)} raises NotImplementedError. Replace "
              "'# YOUR CODE HERE' and the raise with your code, run that cell, then this one "
              "again.")
    except Failed as e:
        print(f"✘ {what}: {e}")
    except Exception as e:  # student code can fail in any way: report it, never crash the notebook
        print(f"✘ {what} raised {type(e).__name__}: {e}\n  hint: {_hint(e)}")
    else:
        print(f"✔ {what} passed: {detail}")
        return True
    return False


def _reseed(seed):
    """Restart tinynn's generator inside a check, so candidate and reference draw the same
    numbers (dropout); ``_run``'s fork gives the notebook its own generator back."""
    tn_random.seed(seed)


def _where(exc):
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].name}()" if frames else "the code"


def _hint(exc):
    """A plain-words hint for an exception raised inside student code."""
    message = str(exc)
    if isinstance(exc, AttributeError):
        return ("something is read that was never stored. Does forward save what backward needs "
                "(e.g. self.x = x)? Does __init__ call super().__init__() (which creates params "
                "and grads)?")
    if isinstance(exc, TypeError) and "NoneType" in message:
        return "a value is None: does every function end with a `return`?"
    if isinstance(exc, TypeError) and "argument" in message:
        return ("the signature differs from tinynn's: forward(self, x, training=True), "
                "backward(self, grad), a loss is called as loss(pred, target), an optimizer as "
                "step(params, grads); classes take the reference's constructor arguments "
                "(e.g. MyDense(units)).")
    shapes = ("broadcast", "matmul", "shape", "align")
    if isinstance(exc, ValueError) and any(word in message for word in shapes):
        return ("array shapes do not line up: print them. Dense: x (batch, in), w (in, units), "
                "grad (batch, units); a parameter's gradient has the parameter's shape (sum over "
                "the batch axis).")
    if isinstance(exc, KeyError):
        return ("a params/grads entry is missing: use the reference's names (Dense: 'w' and 'b') "
                "and fill layer.grads[name] for every layer.params[name].")
    if isinstance(exc, IndexError):
        return ("an index is out of range: check which axis is the batch (axis 0) and which the "
                "classes.")
    return "read the message above, then compare your code with the formulas in the exercise text."


def _name(obj):
    return getattr(obj, "__name__", type(obj).__name__)


def _make(candidate, *args, **kwargs):
    """A class is constructed with the reference's arguments; an instance is copied (so the check
    never changes the student's object)."""
    if inspect.isclass(candidate):
        try:
            return candidate(*args, **kwargs)
        except NotImplementedError:
            raise
        except TypeError as e:
            given = ", ".join([*map(repr, args), *(f"{k}={v!r}" for k, v in kwargs.items())])
            raise Failed(f"could not construct {candidate.__name__}({given}): {e}\n  hint: take "
                         "the same constructor arguments as the reference") from None
    return copy.deepcopy(candidate)


def show_verdict(exercise_id, passed, message):
    """Display a hidden test's verdict: in IPython the MIME bundle (``MIME``: exercise, passed,
    message — what the grader reads) with a text/plain line, else the line printed."""
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


def verdict_of(printed):
    """A check's verdict from what it printed (the student's own prints come before it), without
    the leading "✘ "."""
    lines = printed.rstrip().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith(VERDICT_STARTS)), default=0)
    text = "\n".join(lines[start:]).strip()
    return text[2:] if text.startswith("✘ ") else text or "the check printed no verdict"
