"""The inputs of a grading run: the course notebooks (``load_course``: their test cells, locked
cells and points), the students' submitted notebooks (``find_submissions``), and the notebook
actually run for one submission (``assemble``: the student's cells with the course's locked
cells put back)."""
import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ..classroom import make_student_notebook, notebooks_in


def cell_nbgrader(cell):
    """The cell's nbgrader metadata (grade_id, grade, solution, locked, points), or {}."""
    return cell.metadata.get("nbgrader", {})


def is_test_cell(cell):
    """An autograder test cell: graded, not an answer."""
    return bool(cell_nbgrader(cell).get("grade")) and not cell_nbgrader(cell).get("solution")


def is_locked_cell(cell):
    """A cell the student may not change: locked in nbgrader, or an autograder test cell."""
    return bool(cell_nbgrader(cell).get("locked")) or is_test_cell(cell)


@dataclass
class Course:
    """One course notebook: its test cells ``[(grade_id, points)]`` in cell order, the locked
    cells by grade_id, the student version's text of each locked cell, and how many answers are
    graded by hand (nbgrader: solution and grade; the CSV leaves them to the teacher)."""
    path: Path
    nb: object
    tests: list
    locked: dict
    student_text: dict
    hand_graded_answers: int

    @property
    def stem(self):
        return self.path.stem


def load_course(source):
    """The course notebooks in ``source`` that have autograder test cells, by file name.
    Raises ConfigError if there is no such folder, a notebook is unreadable, or none has tests."""
    import nbformat

    if not Path(source).is_dir():
        raise ConfigError(f"grade: --source {source} is not a folder of course notebooks")
    course = {}
    for path in notebooks_in(source):
        try:
            nb = read_notebook(nbformat, path)
        except Exception as e:  # nbformat raises several unrelated types for a broken file
            raise ConfigError(f"grade: {path} is not a readable notebook "
                              f"({type(e).__name__}: {e})") from None
        tests, locked = [], {}
        for index, cell in enumerate(nb.cells):
            if is_locked_cell(cell):
                grade_id = cell_nbgrader(cell).get("grade_id")
                if not grade_id:
                    raise ConfigError(f"grade: {path}, cell {index} is locked but has no "
                                      "nbgrader grade_id")
                locked[grade_id] = cell
                if is_test_cell(cell):
                    tests.append((grade_id, cell_nbgrader(cell).get("points", 0)))
        if tests:
            student = make_student_notebook(nb, name=str(path))
            student_text = {cell_nbgrader(c).get("grade_id"): c.source for c in student.cells
                            if is_locked_cell(c)}
            by_hand = sum(bool(cell_nbgrader(c).get("solution"))
                          and bool(cell_nbgrader(c).get("grade")) for c in nb.cells)
            course[path.name] = Course(path, nb, tests, locked, student_text, by_hand)
    if not course:
        raise ConfigError(f"grade: no notebook in {source} has autograder test cells (nbgrader "
                          "metadata 'grade: true, solution: false'); is --source the folder of the "
                          "course notebooks?")
    return course


def read_notebook(nbformat, path):
    with warnings.catch_warnings():  # e.g. cells without ids: nbformat fixes them silently
        warnings.simplefilter("ignore")
        return nbformat.read(path, as_version=4)


def find_submissions(submissions):
    """``(folder, {student: [notebook paths]}, [stray notebooks])``: every student folder of
    ``submissions`` with the ``.ipynb`` files in it and in its subfolders (nbgrader's assignment
    folders); stray notebooks lie outside any student folder. Hidden folders are skipped."""
    folder = Path(submissions)
    if not folder.is_dir():
        raise ConfigError(f"grade: {submissions} is not a folder of submissions")
    if (folder / "submitted").is_dir():  # an nbgrader course folder
        folder = folder / "submitted"
    students = {}
    for student in sorted(p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name)):
        students[student.name] = sorted(p for p in [*student.glob("*.ipynb"),
                                                    *student.glob("*/*.ipynb")]
                                        if not any(map(_hidden, p.relative_to(student).parts)))
    if not students:
        raise ConfigError(f"grade: no student folders in {submissions} (expected "
                          "SUBMISSIONS/<student>/*.ipynb or "
                          "submitted/<student>/<assignment>/*.ipynb)")
    return folder, students, sorted(folder.glob("*.ipynb"))


def _hidden(name):
    return name.startswith(".")  # .ipynb_checkpoints, .git


def assemble(submitted, course):
    """``(notebook to run, indices of the student's cells in it, notes)``.

    Every locked cell of the submission is replaced by the course's version (matched by grade_id;
    a repeated one is dropped), a locked cell missing from the submission is put back after the
    cell that precedes it in the course notebook, and every output is cleared."""
    nb = copy.deepcopy(submitted)
    cells, theirs, edited, repeated = [], [], [], []
    for index, cell in enumerate(nb.cells):
        grade_id = cell_nbgrader(cell).get("grade_id")
        if grade_id not in course.locked:
            cells.append(cell)
            theirs.append(cell)
        elif any(cell_nbgrader(c).get("grade_id") == grade_id for c in cells):
            repeated.append(f"the locked cell '{grade_id}' was repeated (cell {index}): run once")
        else:
            if cell.source.strip() not in (course.student_text[grade_id].strip(),
                                           course.locked[grade_id].source.strip()):
                edited.append(grade_id)
            cells.append(copy.deepcopy(course.locked[grade_id]))
    restored, anchor = [], -1  # anchor: the index after which a missing locked cell goes back
    for cell in course.nb.cells:
        grade_id = cell_nbgrader(cell).get("grade_id")
        where = next((i for i, c in enumerate(cells)
                      if grade_id and cell_nbgrader(c).get("grade_id") == grade_id), None)
        if where is not None:
            anchor = where
        elif grade_id in course.locked:
            anchor += 1
            cells.insert(anchor, copy.deepcopy(cell))
            restored.append(grade_id)
    for cell in cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    nb.cells = cells
    for key in ("kernelspec", "language_info"):  # run with the course's kernel
        if key in course.nb.metadata:
            nb.metadata[key] = copy.deepcopy(course.nb.metadata[key])
    index = {cell_nbgrader(c).get("grade_id"): i for i, c in enumerate(cells) if is_locked_cell(c)}
    notes = repeated + [f"cell {index[g]} (locked '{g}') was edited: the original was run"
                        for g in edited]
    notes += [f"cell {index[g]} (locked '{g}') was deleted: put back" for g in restored]
    student = {i for i, c in enumerate(cells) if any(c is t for t in theirs)}
    return nb, student, notes
