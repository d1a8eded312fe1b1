"""nbval's cell tags (nbval-ignore-output, nbval-skip, raises-exception) are how the course marks
test plumbing (docs/DESIGN.md §6): the student version keeps them on the same cells, and the
grader skips what nbval skips."""
import asyncio
import os
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tinynn.course.autograde.run import execute
from tinynn.course.classroom import make_student_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
TAGS = ("nbval-ignore-output", "nbval-skip", "raises-exception")


def tagged(nb):
    return [(i, tag) for i, cell in enumerate(nb.cells) for tag in cell.metadata.get("tags", [])
            if tag in TAGS]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.name)
def test_student_version_keeps_the_tags_on_the_same_cells(path):
    nb = nbformat.read(path, as_version=4)
    student = make_student_notebook(nb, path.name)
    assert len(student.cells) == len(nb.cells)
    assert tagged(student) == tagged(nb)


def test_the_grader_skips_what_nbval_skips():
    skipped = new_code_cell("raise SystemExit('a skipped cell ran')")
    skipped.metadata["tags"] = ["nbval-skip"]
    nb = new_notebook(cells=[new_code_cell("x = 1"), skipped, new_code_cell("print(x + 1)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    assert asyncio.run(execute(nb, timeout=60, env=dict(os.environ))) is None
    assert nb.cells[1].outputs == []
    assert nb.cells[2].outputs[0]["text"] == "2\n"
