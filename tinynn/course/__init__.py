"""The course tooling around the framework: what the notebooks use, apart from tinynn itself.

    viz.py        live plots, decision boundaries, digit grids, confusion matrix
    widgets/      the learning-rate lab and the playground (ipywidgets)
    exercises.py  check_* after each exercise (plain-words diagnosis, never raise) and expect()
    classroom.py  the student-notebook generator
    autograde/    python -m tinynn grade: run and score every student's submitted notebooks

The framework never imports from here; matplotlib and ipywidgets load only when something draws.
"""
from .exercises import expect

__all__ = ["expect"]
