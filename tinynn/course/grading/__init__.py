"""Grading: the hidden tests of the exercises, and what they refuse.

    from tinynn.course.grading import grade
    grade("dense", MyDense)      # one verdict; raises AssertionError(message) unless passed

    hidden.py     grade(): the exercise's spec, run from a fresh copy of tinynn on hidden trials
    borrowed.py   candidates that are, subclass, copy or call tinynn's reference are refused
    fresh.py      the fresh private copy of tinynn the hidden tests take their code from

``python -m tinynn grade`` (grader.py) re-executes a folder of submissions and collects the
verdicts these hidden tests display.
"""
from ..exercises.core import MIME
from .fresh import fresh_tinynn
from .hidden import SEED, grade

__all__ = ["grade", "MIME", "SEED", "fresh_tinynn"]
