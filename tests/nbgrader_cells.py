"""The nbgrader metadata a course notebook must carry, derived from its markers and the exercise
specs: what tests/test_classroom.py holds every committed notebook to (nbgrader reads the
committed metadata itself; tinynn never needs to derive it)."""
import re

from tinynn.course.classroom import BEGIN_HIDDEN, BEGIN_SOLUTION, END_HIDDEN
from tinynn.course.exercises import registry
from tinynn.errors import ConfigError

# The check cells: a cell calling the visible check of an exercise's spec is that exercise's
# autograder test.
CHECK_NAMES = sorted({spec.check_name for spec in registry().values()})
CHECK_CALL = re.compile(rf"\b({'|'.join(CHECK_NAMES)})\(")
GRADE_CALL = re.compile(r"^\s*grade\(\"(\w+)\"", re.MULTILINE)  # in a hidden-test block


def is_check_cell(cell):
    return cell.cell_type == "code" and bool(CHECK_CALL.search(cell.source))


def nbgrader_metadata(nb, name="notebook"):
    """The nbgrader metadata every cell of a course notebook should carry, derived from its
    markers, as a list (one dict or None per cell). Committed notebooks carry exactly this (a test
    checks it), so ``nbgrader generate_assignment`` accepts them as they are:

    * a code cell with a solution block: an *autograded answer*, grade_id ``answer_<exercise>``
      (the exercise of the test cell after it);
    * a Markdown cell with a solution block: a *manually graded answer*, 1 point, ``written_<n>``;
    * a check cell (it calls ``check_*``): a locked *autograder test*, 1 point; its hidden-test
      block calls ``grade("<exercise>", ...)`` and that exercise id is its grade_id. Every check
      cell needs that hidden test (ConfigError otherwise): the visible check never raises, so
      without it nbgrader could not tell a right answer from a wrong one."""
    def meta(grade_id, solution, grade, locked, points=None):
        m = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3,
             "solution": solution, "task": False}
        if points is not None:
            m["points"] = points
        return m

    metas, written, pending = [None] * len(nb.cells), 0, []
    for index, cell in enumerate(nb.cells):
        has_solution = any(line.strip() == BEGIN_SOLUTION for line in cell.source.split("\n"))
        if cell.cell_type == "markdown" and has_solution:
            written += 1
            metas[index] = meta(f"written_{written}", True, True, False, points=1)
        elif cell.cell_type == "code" and has_solution:
            pending.append(index)
        elif is_check_cell(cell):
            found = GRADE_CALL.findall(cell.source)
            if len(found) != 1:
                raise ConfigError(f"{name}, cell {index}: a check cell needs one hidden test "
                                  f"'grade(\"<exercise>\", ...)' between {BEGIN_HIDDEN!r} and "
                                  f"{END_HIDDEN!r}, found {len(found)}")
            metas[index] = meta(found[0], False, True, True, points=1)
            for k, answer in enumerate(pending):  # answer_dense, answer_dense_2, ...
                suffix = f"_{k + 1}" if k else ""
                metas[answer] = meta(f"answer_{found[0]}{suffix}", True, False, False)
            pending = []
    if pending:
        raise ConfigError(f"{name}, cell {pending[0]}: an exercise without a check cell after it")
    return metas
