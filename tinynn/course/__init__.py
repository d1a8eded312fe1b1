"""The course tooling around the framework: what the notebooks use, apart from tinynn itself.

    viz.py        live plots, decision boundaries, digit grids, confusion matrix
    widgets/      the learning-rate lab and the playground (ipywidgets)
    exercises/    check_* after each exercise (plain-words diagnosis, never raise) and expect();
                  one Exercise spec per exercise, in its notebook's module (n01_dense.py, ...)
    grading/      grade(): the hidden tests, run from a fresh copy of tinynn on hidden trials
    classroom.py  the student-notebook generator
    autograde/    python -m tinynn grade: run and score every student's submitted notebooks

The framework never imports from here; matplotlib and ipywidgets load only when something draws.
"""
from .exercises import expect

__all__ = ["expect"]
