"""Tests for tinynn.course.classroom: student notebooks generated from the course notebooks.

The first part uses small synthetic notebooks; the second runs over every course notebook in
notebooks/: its student version contains no solution code, the committed solution version's
checks pass, and its nbgrader metadata is the derived one. (That the student version executes top
to bottom, each check saying "not yet implemented", is tested by nbgrader's autograde of it in
tests/test_nbgrader.py.)
"""
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tinynn.course.classroom import make_student_notebook, write_student_notebooks
from tinynn.errors import ConfigError

from nbgrader_cells import is_check_cell, nbgrader_metadata

ROOT = Path(__file__).resolve().parents[1]
COURSE = sorted((ROOT / "notebooks").glob("*.ipynb"))

DENSE_CELL = '''\
class MyDense(tn.Layer):
    def forward(self, x, training=True):
        if "w" not in self.params:
            self.build(x)
        ### BEGIN SOLUTION
        self.x = x
        return x @ self.params["w"]
        ### END SOLUTION

    def backward(self, grad):
        ### BEGIN SOLUTION
        self.grads["w"] = self.x.T @ grad
        return grad @ self.params["w"].T
        ### END SOLUTION
'''


def notebook(*sources, outputs=True):
    """A notebook with one cell per source (markdown if it starts with '#! md'), executed-looking."""
    cells = []
    for count, source in enumerate(sources, 1):
        if source.startswith("#! md\n"):
            cells.append(new_markdown_cell(source.removeprefix("#! md\n")))
            continue
        cell = new_code_cell(source, execution_count=count if outputs else None)
        if outputs:
            cell.outputs = [new_output("stream", name="stdout", text="solution output\n")]
            cell.metadata["execution"] = {"iopub.status.idle": "2025-01-01T00:00:00Z"}
        cells.append(cell)
    nb = new_notebook(cells=cells)
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def python_source(source):
    """Code cell source without IPython magics / shell lines, for compile()."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))


def write(folder, name, nb):
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)
    return folder / name


# ================================================================ the transformation
def test_solution_blocks_become_indented_stubs():
    student = make_student_notebook(notebook(DENSE_CELL))
    source = student.cells[0].source
    assert "self.x = x" not in source and "x.T @ grad" not in source
    assert source.count("        # YOUR CODE HERE\n        raise NotImplementedError()") == 2
    assert 'if "w" not in self.params:\n            self.build(x)' in source  # the rest is kept
    compile(source, "student", "exec")


def test_top_level_block_keeps_its_own_indentation():
    source = "x = 1\n### BEGIN SOLUTION\ny = x + 1\n### END SOLUTION\nprint(x)"
    student = make_student_notebook(notebook(source)).cells[0].source
    assert student == "x = 1\n# YOUR CODE HERE\nraise NotImplementedError()\nprint(x)"


def test_hidden_tests_are_removed_and_markdown_answers_stubbed():
    nb = notebook("check(f)\n### BEGIN HIDDEN TESTS\nassert f(2) == 4\n### END HIDDEN TESTS\n",
                  "#! md\nWhy?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION")
    student = make_student_notebook(nb)
    assert student.cells[0].source == "check(f)\n"
    assert student.cells[1].source == "Why?\nYOUR ANSWER HERE"


def test_outputs_counts_and_run_metadata_are_cleared_and_the_original_is_untouched():
    nb = notebook(DENSE_CELL, "print(1)")
    student = make_student_notebook(nb)
    for cell in student.cells:
        assert cell.outputs == [] and cell.execution_count is None
        assert "execution" not in cell.metadata
    assert "widgets" not in student.metadata
    nbformat.validate(student)
    assert nb.cells[0].outputs and "### BEGIN SOLUTION" in nb.cells[0].source  # not modified


def test_magics_are_left_alone():
    source = "%matplotlib inline\n!ls\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION"
    student = make_student_notebook(notebook(source)).cells[0].source
    assert student.startswith("%matplotlib inline\n!ls\n# YOUR CODE HERE")


MALFORMED = [
    ("### BEGIN SOLUTION\nx = 1\n", "line 1", "never closed"),
    ("x = 1\n### END SOLUTION\n", "line 2", "without a matching"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n", "line 2", "nested"),
    ("### BEGIN SOLUTION\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION\n",
     "line 2", "nested"),
    ("### BEGIN SOLUTION\nx = 1\n### END HIDDEN TESTS\n", "line 3", "without a matching"),
    ("## BEGIN SOLUTION\nx = 1\n## END SOLUTION\n", "line 1", "looks like a marker"),
    ("### BEGIN SOLUTION (Dense)\nx = 1\n### END SOLUTION\n", "line 1", "looks like a marker"),
    ("def f():\n### BEGIN SOLUTION\n    return 1\n### END SOLUTION\n", "cell 1", "does not compile"),
]


@pytest.mark.parametrize("source, where, what", MALFORMED)
def test_malformed_markers_are_refused_with_file_cell_and_line(tmp_path, source, where, what):
    good = write(tmp_path / "course", "01_good.ipynb", notebook(DENSE_CELL))
    write(tmp_path / "course", "02_bad.ipynb", notebook("print('fine')", source))
    out = tmp_path / "student"
    with pytest.raises(ConfigError) as info:
        write_student_notebooks(tmp_path / "course", out)
    message = str(info.value)
    assert "02_bad.ipynb" in message and where in message and what in message
    assert not out.exists()  # nothing written, not even the good notebook
    assert good.read_text()  # and the sources are untouched


def test_writes_every_notebook_and_returns_the_paths(tmp_path):
    write(tmp_path / "course", "01_a.ipynb", notebook(DENSE_CELL))
    write(tmp_path / "course", "02_b.ipynb", notebook("print(2)"))
    (tmp_path / "course" / "notes.txt").write_text("not a notebook")
    out = tmp_path / "student"
    written = write_student_notebooks(tmp_path / "course", out)
    assert written == [str(out / "01_a.ipynb"), str(out / "02_b.ipynb")]
    assert sorted(p.name for p in out.iterdir()) == ["01_a.ipynb", "02_b.ipynb"]  # only notebooks, no temp files
    student = nbformat.read(out / "01_a.ipynb", as_version=4)
    nbformat.validate(student)
    assert "raise NotImplementedError()" in student.cells[0].source
    # readable by everyone (issue 14: they were 0600, unreadable for others on a shared hub)
    assert {oct(path.stat().st_mode & 0o777) for path in out.iterdir()} == {"0o644"}
    assert write_student_notebooks(tmp_path / "course" / "02_b.ipynb", tmp_path / "one") == \
        [str(tmp_path / "one" / "02_b.ipynb")]


def test_refuses_to_overwrite_the_course(tmp_path):
    path = write(tmp_path / "course", "01_a.ipynb", notebook(DENSE_CELL))
    with pytest.raises(ConfigError, match="pick another folder"):
        write_student_notebooks(tmp_path / "course", tmp_path / "course")
    assert "### BEGIN SOLUTION" in path.read_text()


def test_refuses_an_empty_or_missing_source(tmp_path):
    with pytest.raises(ConfigError, match="no .ipynb"):
        write_student_notebooks(tmp_path, tmp_path / "out")
    with pytest.raises(ConfigError, match="neither"):
        write_student_notebooks(tmp_path / "missing", tmp_path / "out")


# ================================================================ the course notebooks
def solution_blocks(source):
    """The text of every solution block in a cell source."""
    blocks, current = [], None
    for line in source.split("\n"):
        if line.strip() == "### BEGIN SOLUTION":
            current = []
        elif line.strip() == "### END SOLUTION":
            blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def outputs_text(cell):
    parts = []
    for output in cell.get("outputs", []):
        parts.append(output.get("text", ""))
        parts.append(str(output.get("data", {}).get("text/plain", "")))
        parts.extend(output.get("traceback", []))
    return "".join(parts)


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    if not COURSE:
        pytest.skip("no course notebooks yet")
    out = tmp_path_factory.mktemp("student")
    write_student_notebooks(ROOT / "notebooks", out)
    return out


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_student_version_has_no_solution_code(student_dir, path):
    solution = nbformat.read(path, as_version=4)
    student = nbformat.read(student_dir / path.name, as_version=4)
    assert len(student.cells) == len(solution.cells)
    for index, (ours, theirs) in enumerate(zip(student.cells, solution.cells)):
        assert "BEGIN SOLUTION" not in ours.source and "HIDDEN TESTS" not in ours.source
        for block in solution_blocks(theirs.source):
            assert block.strip() not in ours.source, f"cell {index} still holds its solution"
        if ours.cell_type == "code":
            assert ours.outputs == [] and ours.execution_count is None
            compile(python_source(ours.source), f"{path.name} cell {index}", "exec")


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_solution_version_checks_all_pass(path):
    nb = nbformat.read(path, as_version=4)
    checks = [cell for cell in nb.cells if is_check_cell(cell)]
    has_exercise = any(solution_blocks(cell.source) for cell in nb.cells)
    assert checks or not has_exercise, "an exercise without a check after it"
    for cell in checks:
        text = outputs_text(cell)
        assert "✔" in text and "✘" not in text and "not yet implemented" not in text, \
            f"check cell {cell.source!r} printed:\n{text}"


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_committed_nbgrader_metadata_is_the_derived_one(path):
    """Each notebook carries exactly the nbgrader metadata its markers imply (answer cells,
    locked 1-point test cells with a hidden grade(...) call, manually graded written answers)."""
    nb = nbformat.read(path, as_version=4)
    derived = nbgrader_metadata(nb, path.name)
    assert [c.metadata.get("nbgrader") for c in nb.cells] == derived
    assert any(derived), "a course notebook without exercises"


def test_nbgrader_metadata_names_a_check_cell_without_its_hidden_test():
    nb = notebook("def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION",
                  "check_function(f, g, 1)")
    with pytest.raises(ConfigError, match="cell 1: a check cell needs one hidden test"):
        nbgrader_metadata(nb)
    nb.cells[1].source += "\n### BEGIN HIDDEN TESTS\ngrade(\"f\", f)\n### END HIDDEN TESTS"
    answer, test = nbgrader_metadata(nb)
    assert (answer["grade_id"], answer["solution"], answer["grade"]) == ("answer_f", True, False)
    assert (test["grade_id"], test["locked"], test["points"]) == ("f", True, 1)
    with pytest.raises(ConfigError, match="cell 0: an exercise without a check cell"):
        nbgrader_metadata(notebook("def f(x):\n    ### BEGIN SOLUTION\n    return x\n"
                                   "    ### END SOLUTION"))
