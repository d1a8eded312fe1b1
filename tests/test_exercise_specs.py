"""One exercise, one definition: the notebooks, the checks and the hidden tests all name the same
``Exercise`` specs (tinynn/course/exercises/nNN_*.py), and each spec's hidden trials are not its
visible ones."""
import inspect
import re
from pathlib import Path

import nbformat
import pytest

from tinynn.course.exercises import registry
from tinynn.course.grading import SEED

from nbgrader_cells import CHECK_NAMES

ROOT = Path(__file__).resolve().parents[1]
COURSE = sorted((ROOT / "notebooks").glob("*.ipynb"))
ANY_CHECK_CALL = re.compile(r"\b(check_\w+)\(")
SPECS = sorted(registry().values(), key=lambda spec: spec.id)


def code_cells():
    """(notebook name, cell index, source) of every code cell of the course."""
    for path in COURSE:
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            if cell.cell_type == "code":
                yield path.name, index, cell.source


def graded():
    """{exercise id: [(notebook, cell index, the grade call's argument count, the checks the
    cell calls)]} over the hidden tests of the course."""
    found = {}
    for name, index, source in code_cells():
        for match in re.finditer(r"^\s*grade\(\"(\w+)\"(.*)\)\s*$", source, re.MULTILINE):
            arguments = [a for a in match.group(2).split(",") if a.strip()]
            checks = set(ANY_CHECK_CALL.findall(source))
            found.setdefault(match.group(1), []).append((name, index, len(arguments), checks))
    return found


def test_every_spec_is_graded_in_exactly_one_notebook_and_every_grade_names_a_spec():
    calls = graded()
    assert sorted(calls) == sorted(spec.id for spec in SPECS)
    for exercise_id, places in calls.items():
        assert len(places) == 1, f"{exercise_id!r} is graded in {places}"


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.id)
def test_the_check_cell_calls_the_specs_check_and_grades_its_candidates(spec):
    ((notebook, index, arguments, checks),) = graded()[spec.id]
    assert checks == {spec.check_name}, f"{notebook} cell {index} calls {checks}"
    assert arguments == len(spec.names), f"{notebook} cell {index}: grade() takes {spec.names}"


def test_every_check_the_notebooks_call_is_a_specs_check():
    called = {(name, check) for name, _, source in code_cells()
              for check in ANY_CHECK_CALL.findall(source)}
    assert called and {check for _, check in called} <= set(CHECK_NAMES), called


def _defaults(check):
    return {name: p.default for name, p in inspect.signature(check).parameters.items()
            if p.default is not inspect.Parameter.empty}


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.id)
def test_hidden_trials_differ_from_the_visible_ones(spec):
    """Every trial input the hidden test sets differs from the visible check's, and the seed
    differs too, so an answer hard-coded from the visible check cannot pass the hidden one."""
    visible = {**_defaults(spec.check), **spec.trials}
    assert SEED != visible["seed"]
    assert set(spec.trials) <= set(spec.hidden), "a visible trial with no hidden counterpart"
    for key, value in spec.hidden.items():
        assert key in visible and value != visible[key], f"hidden {key} equals the visible one"
    assert not set(spec.mistakes) & set(spec.hidden), "a catalogue of mistakes is no trial"
