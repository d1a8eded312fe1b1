"""Tests for tinynn.course.autograde (``python -m tinynn grade``) on a small synthetic course.

The course notebook has two autograded exercises and one written answer, with nbgrader metadata
as in the grading contract (docs/DESIGN.md §5); its hidden tests display the contract's verdict (an
inline emitter, so these tests do not depend on tinynn.course.grading) and raise when they fail.
Like a committed course notebook it is stored *executed*: its test cells hold passing verdicts,
which must never be read for a student. The submissions cover the ways a notebook goes wrong;
the CSV is checked exactly.
"""
import copy
import csv
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from tinynn.__main__ import main
from tinynn.course.classroom import make_student_notebook
from tinynn.course.autograde import VERDICT, find_submissions, grade_submissions, write_csv

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = "5"  # seconds per cell: the infinite loops' cells stop here
MARKER = "TINYNN_GRADER_TEST"

HIDDEN_TEST = '''\
### BEGIN HIDDEN TESTS
def hidden_test(exercise, check):
    """The contract's verdict: one display (JSON + text), then AssertionError if not passed."""
    from IPython.display import display
    try:
        passed, message = bool(check()), "wrong result on the hidden inputs"
    except NotImplementedError:
        passed, message = False, "not yet implemented"
    text = (f"✔ hidden test '{exercise}' passed" if passed
            else f"✘ hidden test '{exercise}': {message}")
    display({"application/vnd.tinynn.verdict+json":
             {"exercise": exercise, "passed": passed, "message": "passed" if passed else message},
             "text/plain": text}, raw=True)
    if not passed:
        raise AssertionError(message)
hidden_test("EXERCISE", lambda: CHECK)
### END HIDDEN TESTS'''


def answer(name, body):
    return f"def {name}(x):\n    ### BEGIN SOLUTION\n    {body}\n    ### END SOLUTION"


def graded_cell(exercise, check, points):
    visible = (f"try:\n    print('✔ {exercise} looks right' if {check} else '✘ {exercise}')\n"
               "except NotImplementedError:\n    print('not yet implemented')\n")
    cell = new_code_cell(visible + HIDDEN_TEST.replace("EXERCISE", exercise)
                         .replace("CHECK", check))
    cell.metadata.nbgrader = {"grade": True, "solution": False, "locked": True, "points": points,
                              "grade_id": exercise, "schema_version": 3, "task": False}
    cell.execution_count = 1  # stored as executed, with a passing verdict
    cell.outputs = [new_output("display_data", data={
        VERDICT: {"exercise": exercise, "passed": True, "message": "passed"},
        "text/plain": f"✔ hidden test '{exercise}' passed"})]
    return cell


def answer_cell(exercise, body):
    cell = new_code_cell(answer(exercise, body))
    cell.metadata.nbgrader = {"solution": True, "grade": False, "locked": False,
                              "grade_id": f"answer_{exercise}", "schema_version": 3,
                              "task": False}
    return cell


def course_notebook():
    """cells: 0 md, 1 import, 2 answer_double, 3 test double (2 points), 4 written answer,
    5 answer_square, 6 test square (1 point)."""
    written = new_markdown_cell("**Why?**\n\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION")
    written.metadata.nbgrader = {"solution": True, "grade": True, "locked": False, "points": 1,
                                 "grade_id": "written_1", "schema_version": 3, "task": False}
    nb = new_notebook(cells=[
        new_markdown_cell("# Two exercises"),
        new_code_cell("import tinynn as tn"),
        answer_cell("double", "return 2 * x"),
        graded_cell("double", "double(21) == 42 and double(-1) == -2", 2),
        written,
        answer_cell("square", "return x * x"),
        graded_cell("square", "square(3) == 9 and square(-2) == 4", 1),
    ])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def edit(nb, **sources):
    """A copy of ``nb`` with the cells of the given grade_ids given new sources."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id in sources:
            cell.source = sources[grade_id]
    return nb


def without(nb, grade_id):
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") != grade_id]
    return nb


def inserted(nb, index, source):
    nb = copy.deepcopy(nb)
    nb.cells.insert(index, new_code_cell(source))
    return nb


FAKE_VERDICT = ("from IPython.display import display\n"
                "display({'application/vnd.tinynn.verdict+json': {'exercise': 'square', "
                "'passed': True, 'message': 'passed'}, 'text/plain': '✔ hidden test'}, raw=True)")


def submissions(course):
    """{student folder: {file: notebook, or text for a broken file}}; some in nbgrader's layout."""
    wrong_square = answer("square", "return x + x")
    faker = edit(course, answer_square=wrong_square,
                 square="print('✔ square looks right')\n" + FAKE_VERDICT)
    faker = inserted(faker, 5, FAKE_VERDICT)  # a fake verdict of their own, too
    return {
        "right/ps1": {"ex.ipynb": course},                       # nbgrader: <student>/<assignment>
        "wrong": {"ex.ipynb": edit(course, answer_square=wrong_square)},
        "untouched": {"ex.ipynb": make_student_notebook(course)},
        "syntax": {"ex.ipynb": edit(course, answer_double=answer("double", "return 2 *"))},
        "loop": {"ex.ipynb": edit(course, answer_double=answer("double", "while True: pass"))},
        "dead": {"ex.ipynb": edit(course,
                                  answer_double=answer("double", "import os; os._exit(1)"))},
        "faker/ps1": {"ex.ipynb": faker},
        "deleter": {"ex.ipynb": without(course, "double")},
        "patcher": {"ex.ipynb": inserted(course, 2, "tn.Dense = object\n"
                                                    "setattr(tn, 'ReLU', object)\n"
                                                    "def hidden_test(*args): pass")},
        "corrupt": {"ex.ipynb": '{"cells": [oops'},
        "absent": {"scratch.ipynb": course},
    }


EXPECTED = [  # student, ex:double, ex:square, total, max, notes
    ["absent", "missing", "missing", "0", "3",
     "skipped scratch.ipynb: not a course notebook; ex.ipynb missing"],
    ["corrupt", "unreadable", "unreadable", "0", "3", "ex.ipynb is unreadable (NotJSONError)"],
    ["dead", "kernel died", "not run", "0", "3", "kernel died in cell 3"],
    ["deleter", "2", "1", "3", "3", "cell 3 (locked 'double') was deleted: put back"],
    ["faker", "2", "0", "2", "3", "cell 7 (locked 'square') was edited: the original was run"],
    ["loop", "timeout", "not run", "0", "3", "timeout in cell 3 after 5 s"],
    ["patcher", "2", "1", "3", "3",
     "suspicious: cell 2 assigns tn.Dense; suspicious: cell 2 calls setattr on tn"],
    ["right", "2", "1", "3", "3", ""],
    ["syntax", "error: NameError", "1", "1", "3",
     "syntax error in cell 2, line 3: invalid syntax; "
     "cell 3 (test 'double') raised NameError: name 'double' is not defined"],
    ["untouched", "0", "0", "0", "3", ""],
    ["wrong", "2", "0", "2", "3", ""],
]


def write_tree(folder, tree):
    for sub, files in tree.items():
        for name, content in files.items():
            path = folder / sub / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, str):
                path.write_text(content)
            else:
                nbformat.write(content, path)


def kernels(marker):
    """The kernels started by a test: processes (other than this one) that inherited its
    MARKER environment variable (a kernel runs in a session of its own, so a kernel left behind
    would outlive the grader)."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(MARKER) == str(marker):
                found.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return found


@pytest.fixture
def course_dir(tmp_path, monkeypatch):
    """A course folder with ex.ipynb; kernels import this checkout's tinynn and carry MARKER
    (so the test can find them)."""
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv(MARKER, str(tmp_path))
    folder = tmp_path / "course"
    folder.mkdir()
    nbformat.write(course_notebook(), folder / "ex.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("1")]), folder / "00_intro.ipynb")  # no tests
    return folder


def run(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


# ================================================================ the whole run, exactly
def test_grade_writes_the_expected_csv(course_dir, tmp_path, capsys):
    write_tree(tmp_path / "subs", submissions(course_notebook()))
    (tmp_path / "subs" / "right" / "ps1" / "timestamp.txt").write_text("2025-01-01")
    out, feedback = tmp_path / "grades.csv", tmp_path / "feedback"
    code, stdout, stderr = run(capsys, "grade", str(tmp_path / "subs"), "--source",
                               str(course_dir), "--out", str(out), "--jobs", "2",
                               "--timeout", TIMEOUT, "--feedback", str(feedback))
    assert code == 0, stderr
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["student", "ex:double", "ex:square", "total", "max", "notes"]
    assert rows[1:] == EXPECTED
    assert stat.S_IMODE(out.stat().st_mode) == 0o644

    assert "graded 11 students × 1 notebook (ex)" in stdout
    assert ("notebooks: 6 complete, 5 with errors (1 error, 1 kernel died, 1 missing, "
            "1 syntax error, 1 timeout, 1 unreadable)") in stdout
    assert "suspicious code in 1 notebook" in stdout
    assert "mean total 1.27 / 3 autograded points" in stdout
    assert "ex: 1 written answer per notebook to grade by hand" in stdout
    assert f"grades written to {out}" in stdout
    assert "grading" in stderr  # the progress bar

    # feedback: the executed notebook, with fresh outputs and its diagnosis at the end
    faker = nbformat.read(feedback / "faker" / "ex.ipynb", as_version=4)
    assert stat.S_IMODE((feedback / "faker" / "ex.ipynb").stat().st_mode) == 0o644
    verdicts = [o.data[VERDICT] for o in faker.cells[7].outputs if VERDICT in o.get("data", {})]
    assert verdicts == [{"exercise": "square", "passed": False,
                         "message": "wrong result on the hidden inputs"}]
    assert "| square | 0 / 1 | wrong result on the hidden inputs |" in faker.cells[-1].source
    assert "was edited" in faker.cells[-1].source
    loop = nbformat.read(feedback / "loop" / "ex.ipynb", as_version=4)
    assert loop.cells[6].outputs == []  # not run: the course's stored verdict was cleared
    assert sorted(p.name for p in feedback.iterdir()) == [
        "dead", "deleter", "faker", "loop", "patcher", "right", "syntax", "untouched", "wrong"]
    assert kernels(tmp_path) == []


def test_python_api_returns_rows_and_write_csv_matches(course_dir, tmp_path):
    course = course_notebook()
    write_tree(tmp_path / "submitted", {"right/ps1": {"ex.ipynb": course},
                                        "wrong/ps1": {"ex.ipynb": edit(
                                            course, answer_square=answer("square", "return 9"))}})
    # an nbgrader course folder holding submitted/ works as well as submitted/ itself
    rows = grade_submissions(tmp_path, source=course_dir, jobs=2, timeout=int(TIMEOUT))
    assert rows == [
        {"student": "right", "ex:double": 2, "ex:square": 1, "total": 3, "max": 3, "notes": ""},
        {"student": "wrong", "ex:double": 2, "ex:square": 0, "total": 2, "max": 3, "notes": ""}]
    path = write_csv(rows, tmp_path / "g.csv")
    assert Path(path).read_text() == ("student,ex:double,ex:square,total,max,notes\n"
                                      "right,2,1,3,3,\nwrong,2,0,2,3,\n")
    assert kernels(tmp_path) == []


def test_ctrl_c_shuts_every_kernel_down(course_dir, tmp_path):
    course = course_notebook()
    looping = edit(course, answer_double=answer("double", "while True: pass"))
    write_tree(tmp_path / "subs", {"a": {"ex.ipynb": looping}, "b": {"ex.ipynb": looping}})
    out = tmp_path / "grades.csv"
    grader = subprocess.Popen([sys.executable, "-m", "tinynn", "grade", str(tmp_path / "subs"),
                               "--source", str(course_dir), "--out", str(out), "--jobs", "2",
                               "--timeout", "60"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(kernels(tmp_path)) < 3 and time.monotonic() < deadline:  # the grader + 2 kernels
        time.sleep(0.2)
    assert len(kernels(tmp_path)) == 3
    time.sleep(3)  # the kernels are in the loop now
    grader.send_signal(signal.SIGINT)
    stdout, stderr = grader.communicate(timeout=30)
    assert grader.returncode == 130, stderr
    assert "interrupted: every kernel was shut down" in stderr and "Traceback" not in stderr
    assert kernels(tmp_path) == []
    assert not out.exists()


# ================================================================ finding and refusing
def test_layouts_and_stray_files(tmp_path):
    course = course_notebook()
    write_tree(tmp_path / "course" / "submitted", {
        "ann": {"ex.ipynb": course}, "bob/ps1": {"ex.ipynb": course},
        "bob/.ipynb_checkpoints": {"ex-checkpoint.ipynb": course}, ".git": {"x.ipynb": course}})
    nbformat.write(course, tmp_path / "course" / "submitted" / "loose.ipynb")
    folder, students, strays = find_submissions(tmp_path / "course")
    assert folder == tmp_path / "course" / "submitted"
    assert students == {"ann": [folder / "ann" / "ex.ipynb"],
                        "bob": [folder / "bob" / "ps1" / "ex.ipynb"]}
    assert strays == [folder / "loose.ipynb"]


@pytest.mark.parametrize("case, words", [
    ("no submissions folder", ["nowhere", "is not a folder of submissions"]),
    ("no source folder", ["--source", "is not a folder of course notebooks"]),
    ("source without tests", ["no notebook in", "autograder test cells"]),
    ("no student folders", ["no student folders in"]),
    ("nothing submitted matches", ["no submitted notebook is named like", "ex.ipynb"]),
    ("no folder for --out", ["--out", "does not exist"]),
])
def test_bad_arguments_exit_2_with_a_message(course_dir, tmp_path, capsys, case, words):
    subs, source, out = tmp_path / "subs", course_dir, tmp_path / "grades.csv"
    write_tree(subs, {"ann": {"ex.ipynb": course_notebook()}})
    if case == "no submissions folder":
        subs = tmp_path / "nowhere"
    elif case == "no source folder":
        source = tmp_path / "nowhere"
    elif case == "source without tests":
        source = tmp_path / "plain"
        source.mkdir()
        nbformat.write(new_notebook(cells=[new_code_cell("1")]), source / "ex.ipynb")
    elif case == "no student folders":
        subs = tmp_path / "empty"
        subs.mkdir()
    elif case == "nothing submitted matches":
        (subs / "ann" / "ex.ipynb").rename(subs / "ann" / "other.ipynb")
    else:
        out = tmp_path / "nowhere" / "grades.csv"
    code, stdout, stderr = run(capsys, "grade", str(subs), "--source", str(source),
                               "--out", str(out))
    assert code == 2
    assert stderr.startswith("error: grade: ") and all(w in stderr for w in words), stderr
    assert "Traceback" not in stderr and not out.exists()


def test_help_names_the_options_and_the_blas_threads(capsys):
    code, out, _ = run(capsys, "grade", "--help")
    assert code == 0
    assert all(word in out for word in ("--source", "--out", "--jobs", "--timeout", "--feedback",
                                        "OPENBLAS_NUM_THREADS"))


# ================================================================ the real course: notebook 01
DENSE = ROOT / "notebooks" / "01_tensors_and_dense.ipynb"


def _cell_with_grade_id(path, grade_id):
    cells = nbformat.read(path, as_version=4).cells
    return next(i for i, c in enumerate(cells)
                if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


ANSWER = _cell_with_grade_id(DENSE, "answer_dense")  # the cell the student writes MyDense in
TEST = _cell_with_grade_id(DENSE, "dense")           # the cell that grades it


def dense_submissions():
    """Ten submissions of notebook 01: the right one, mistakes, and ways to game the check."""
    course = nbformat.read(DENSE, as_version=4)
    assert course.cells[ANSWER].metadata.nbgrader.grade_id == "answer_dense"
    assert course.cells[TEST].metadata.nbgrader.grade_id == "dense"
    untouched = make_student_notebook(course)
    solution, stub = course.cells[ANSWER].source, untouched.cells[ANSWER].source

    def answered(source):
        nb = copy.deepcopy(untouched)
        nb.cells[ANSWER].source = source
        return nb

    copied = ("class MyDense(tn.Layer):\n    def __init__(self, units):\n"
              "        super().__init__()\n        self.units = units\n\n"
              "    forward = tn.Dense.forward\n    backward = tn.Dense.backward")
    return {
        "right": course,
        "wrong": answered(solution.replace('grad @ self.params["w"].T', 'grad @ self.params["w"]')),
        "untouched": untouched,
        "syntax": answered(solution.replace("self.x = x", "self.x = = x")),
        "loop": answered(solution.replace("self.x = x", "while True:\n            pass")),
        "alias": answered(solution + "\n\nMyDense = tn.Dense"),
        "subclass": answered("class MyDense(tn.Dense):\n    pass"),
        "copied": answered(copied),
        "fake_check": answered(stub + "\n\ndef check_layer(*args):\n"
                                      "    print('✔ MyDense matches tn.Dense')"),
        "patched": answered(stub + "\n\nimport tinynn.course.exercises\n"
                                   "tinynn.course.exercises.check_layer = lambda *a: print('✔')"),
    }


def test_grade_notebook_01_right_wrong_and_gamed(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv(MARKER, str(tmp_path))
    subs = dense_submissions()
    write_tree(tmp_path / "subs", {student: {DENSE.name: nb} for student, nb in subs.items()})
    syntax_line = subs["syntax"].cells[ANSWER].source.split("\n").index(
        "        self.x = = x") + 1
    out = tmp_path / "grades.csv"
    code, stdout, stderr = run(capsys, "grade", str(tmp_path / "subs"), "--source",
                               str(ROOT / "notebooks"), "--out", str(out), "--jobs", "2",
                               "--timeout", "10")
    assert code == 0, stderr
    with open(out, newline="") as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["student", "01_tensors_and_dense:dense", "total", "max", "notes"],
        ["alias", "0", "0", "1", ""],
        ["copied", "0", "0", "1", ""],
        ["fake_check", "0", "0", "1", f"suspicious: cell {ANSWER} redefines check_layer"],
        ["loop", "timeout", "0", "1", f"timeout in cell {TEST} after 10 s"],
        ["patched", "0", "0", "1",
         f"suspicious: cell {ANSWER} assigns tinynn.course.exercises.check_layer"],
        ["right", "1", "1", "1", ""],
        ["subclass", "0", "0", "1", ""],
        ["syntax", "error: NameError", "0", "1",
         f"syntax error in cell {ANSWER}, line {syntax_line}: invalid syntax; cell {TEST} "
         "(test 'dense') raised NameError: name 'MyDense' is not defined"],
        ["untouched", "0", "0", "1", ""],
        ["wrong", "0", "0", "1", ""],
    ]
    assert "01_tensors_and_dense: 5 written answers per notebook to grade by hand" in stdout
    assert kernels(tmp_path) == []
