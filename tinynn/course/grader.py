"""Autograding a folder of submissions: ``python -m tinynn grade SUBMISSIONS --out grades.csv``.

    python -m tinynn grade submitted/ --source notebooks --out grades.csv --jobs 2 --timeout 600
    rows = grade_submissions("submitted", source="notebooks", jobs=2)   # -> [{"student": ...}, ...]
    write_csv(rows, "grades.csv")

**Where submissions are found.** One folder per student, holding the notebooks either directly
(``SUBMISSIONS/<student>/*.ipynb``) or one level down, in nbgrader's layout
(``submitted/<student>/<assignment>/*.ipynb``; SUBMISSIONS may be ``submitted/`` or the nbgrader
course folder holding it). A submitted notebook is matched by its file name to the course notebook
of the same name in ``--source``; the notebooks graded are the course notebooks with autograder
test cells that at least one student submitted. A ``.ipynb`` file that is not a course notebook is
skipped and named in that student's notes; other files (nbgrader's ``timestamp.txt``) are ignored.

**What is run.** The submission, with every locked cell (nbgrader metadata ``locked: true``, or an
autograder test cell, ``grade: true, solution: false``) replaced, by ``grade_id``, with the course
notebook's version, which holds the hidden tests; a locked cell the student deleted is put back
after the cell that precedes it in the course notebook (and the notes say so). This is what
``nbgrader autograde`` does. Every output is cleared first, so nothing stored in the file can count.
Each notebook runs in a fresh kernel (nbclient, errors allowed, a per-cell timeout), in a temporary
working folder, several at once; a kernel is shut down (its whole process group killed) when its
notebook ends, times out, kills its kernel, or when the grader is interrupted with Ctrl-C.

**What counts.** Only the structured verdict of the contract (DESIGN.md §5, tinynn.course.grading):
in each test cell, the last ``application/vnd.tinynn.verdict+json`` display whose ``exercise`` is
the cell's grade_id. A passed verdict earns the cell's points as the *course* notebook states them
(``metadata.nbgrader.points``); a failed one earns 0. Printed ✔ lines are never read.

**What is and is not guaranteed.** The test cells' code is the teacher's and the outputs are fresh,
so a student cannot edit, delete or pre-fill a test, and a verdict displayed by their own cells is
never read. But their code runs in the same kernel before the tests, so it *could* patch what the
tests use. Such patches are flagged by reading the student's cells outside the kernel (their code
cannot hide from it): assigning to or ``setattr`` on anything imported from tinynn, redefining a
name imported from tinynn (``check_layer``, ``grade``, ``tn``), touching ``sys.modules``, importing
``tinynn.course.grading``. This is a tripwire, not a proof: code built at run time (``exec``) gets
past it, so read the flagged and the surprising notebooks.

**The CSV** has one row per student (sorted): ``student``, one column per exercise
(``<notebook stem>:<grade_id>``, in notebook and cell order) with the points earned or why there
are none (``missing``, ``unreadable``, ``timeout``, ``kernel died``, ``not run``,
``error: NameError``, ``no verdict``), ``total``, ``max`` (the autograded points of the graded
notebooks) and ``notes`` (what went wrong, ``; ``-separated, empty when everything ran cleanly).
Cell numbers in the notes count every cell from 0 (as nbformat and ``python -m tinynn student`` do)
in the notebook as it was run, i.e. the one ``--feedback`` writes.
"""
import ast
import asyncio
import copy
import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..files import atomic_write
from .classroom import _python, make_student_notebook, notebooks_in

VERDICT = "application/vnd.tinynn.verdict+json"
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
EVALUE_CHARS = 200  # an exception's message is cut to this length in the notes


# ================================================================ the course notebooks
def _nbgrader(cell):
    return cell.metadata.get("nbgrader", {})


def _is_test(cell):
    """An autograder test cell: graded, not an answer."""
    return bool(_nbgrader(cell).get("grade")) and not _nbgrader(cell).get("solution")


def _is_locked(cell):
    return bool(_nbgrader(cell).get("locked")) or _is_test(cell)


@dataclass
class Course:
    """One course notebook: its test cells ``[(grade_id, points)]`` in cell order, the locked
    cells by grade_id, the student version's text of each locked cell, and how many answers are
    graded by hand (nbgrader: solution and grade)."""
    path: Path
    nb: object
    tests: list
    locked: dict
    student_text: dict
    written: int

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
            nb = _read(nbformat, path)
        except Exception as e:  # nbformat raises several unrelated types for a broken file
            raise ConfigError(f"grade: {path} is not a readable notebook "
                              f"({type(e).__name__}: {e})") from None
        tests, locked = [], {}
        for index, cell in enumerate(nb.cells):
            if _is_locked(cell):
                grade_id = _nbgrader(cell).get("grade_id")
                if not grade_id:
                    raise ConfigError(f"grade: {path}, cell {index} is locked but has no "
                                      "nbgrader grade_id")
                locked[grade_id] = cell
                if _is_test(cell):
                    tests.append((grade_id, _nbgrader(cell).get("points", 0)))
        if tests:
            student = make_student_notebook(nb, name=str(path))
            student_text = {_nbgrader(c).get("grade_id"): c.source for c in student.cells
                            if _is_locked(c)}
            written = sum(bool(_nbgrader(c).get("solution")) and bool(_nbgrader(c).get("grade"))
                          for c in nb.cells)
            course[path.name] = Course(path, nb, tests, locked, student_text, written)
    if not course:
        raise ConfigError(f"grade: no notebook in {source} has autograder test cells (nbgrader "
                          "metadata 'grade: true, solution: false'); is --source the folder of the "
                          "course notebooks?")
    return course


def _read(nbformat, path):
    with warnings.catch_warnings():  # e.g. cells without ids: nbformat fixes them silently
        warnings.simplefilter("ignore")
        return nbformat.read(path, as_version=4)


# ================================================================ the submissions
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


# ================================================================ one notebook: prepare
def assemble(submitted, course):
    """``(notebook to run, indices of the student's cells in it, notes)``.

    Every locked cell of the submission is replaced by the course's version (matched by grade_id;
    a repeated one is dropped), a locked cell missing from the submission is put back after the
    cell that precedes it in the course notebook, and every output is cleared."""
    nb = copy.deepcopy(submitted)
    cells, theirs, edited, repeated = [], [], [], []
    for index, cell in enumerate(nb.cells):
        grade_id = _nbgrader(cell).get("grade_id")
        if grade_id not in course.locked:
            cells.append(cell)
            theirs.append(cell)
        elif any(_nbgrader(c).get("grade_id") == grade_id for c in cells):
            repeated.append(f"the locked cell '{grade_id}' was repeated (cell {index}): run once")
        else:
            if cell.source.strip() not in (course.student_text[grade_id].strip(),
                                           course.locked[grade_id].source.strip()):
                edited.append(grade_id)
            cells.append(copy.deepcopy(course.locked[grade_id]))
    restored, anchor = [], -1  # anchor: the index after which a missing locked cell goes back
    for cell in course.nb.cells:
        grade_id = _nbgrader(cell).get("grade_id")
        where = next((i for i, c in enumerate(cells)
                      if grade_id and _nbgrader(c).get("grade_id") == grade_id), None)
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
    index = {_nbgrader(c).get("grade_id"): i for i, c in enumerate(cells) if _is_locked(c)}
    notes = repeated + [f"cell {index[g]} (locked '{g}') was edited: the original was run"
                        for g in edited]
    notes += [f"cell {index[g]} (locked '{g}') was deleted: put back" for g in restored]
    student = {i for i, c in enumerate(cells) if any(c is t for t in theirs)}
    return nb, student, notes


# ================================================================ one notebook: read the code
def static_notes(nb, student):
    """Notes on the student's code cells (indices ``student``), read without running them:
    syntax errors, and patches of tinynn (see the module docstring). IPython magics and shell
    lines are blanked first; a cell magic (``%%bash``) is not Python and is skipped."""
    trees, notes = {}, []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or cell.source.lstrip().startswith("%%"):
            continue
        try:
            trees[index] = ast.parse(_python(cell.source))
        except SyntaxError as e:
            if index in student:
                notes.append(f"syntax error in cell {index}, line {e.lineno}: {e.msg}")
    bound = {"tn", "tinynn"} | {name for tree in trees.values() for name in _tinynn_names(tree)}
    for index in sorted(student & trees.keys()):
        notes += [f"suspicious: cell {index} {what}" for what in _patches(trees[index], bound)]
    return notes


def _tinynn_names(tree):
    """Names an ``import`` binds to tinynn or to something from it."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "tinynn":
                    yield alias.asname or "tinynn"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "tinynn":
            yield from (alias.asname or alias.name for alias in node.names)


def _patches(tree, bound):
    """What in ``tree`` reassigns or patches tinynn (names in ``bound``), in plain words."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete)):
            targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
            for target in _unpack(targets):
                if isinstance(target, ast.Name) and target.id in bound:
                    yield f"redefines {target.id}"
                elif not isinstance(target, ast.Name) and _root(target) in bound:
                    yield f"assigns {ast.unparse(target)}"
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if node.name in bound:
                yield f"redefines {node.name}"
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            if node.func.id in ("setattr", "delattr") and node.args \
                    and _root(node.args[0]) in bound:
                yield f"calls {node.func.id} on {ast.unparse(node.args[0])}"
        elif isinstance(node, ast.Attribute) and ast.unparse(node) == "sys.modules":
            yield "uses sys.modules"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [f"{node.module}.{a.name}" for a in node.names])
            if any(n.startswith("tinynn.course.grading") for n in names):
                yield "imports tinynn.course.grading"


def _unpack(targets):
    for target in targets:
        if isinstance(target, (ast.Tuple, ast.List)):
            yield from _unpack(target.elts)
        else:
            yield target.value if isinstance(target, ast.Starred) else target


def _root(node):
    """The name an attribute or subscript chain starts from (``tn`` for ``tn.Dense.forward``)."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


# ================================================================ one notebook: run
async def execute(nb, timeout, env):
    """Run ``nb`` in place in a fresh kernel, in a temporary working folder, errors allowed.
    Returns ``None``, or ``(what, cell index)`` for the cell that stopped the run: "timeout"
    (no reply within ``timeout`` s) or "kernel died". The kernel is always shut down."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    name = nb.metadata.get("kernelspec", {}).get("name", "python3")
    client = NotebookClient(nb, timeout=timeout, allow_errors=True, kernel_name=name)
    client.km = client.create_kernel_manager()
    with tempfile.TemporaryDirectory(prefix="tinynn-grade-") as cwd:
        try:
            # the kernel's own stdout/stderr (log lines) stay out of the grader's terminal
            await client.async_start_new_kernel(cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
            await client.async_start_new_kernel_client()
            for index, cell in enumerate(nb.cells):
                try:
                    await client.async_execute_cell(
                        cell, index, execution_count=client.code_cells_executed + 1)
                except CellTimeoutError:
                    return "timeout", index
                except DeadKernelError:
                    # nbclient also says so when the wait is cancelled (Ctrl-C): pass that on
                    _raise_if_cancelled()
                    return "kernel died", index
        finally:
            if client.kc is not None:
                client.kc.stop_channels()
            if client.km.has_kernel:
                await client.km.shutdown_kernel(now=True)  # SIGKILL to its process group
    return None


def _raise_if_cancelled():
    task = asyncio.current_task()
    if getattr(task, "cancelling", lambda: 0)():
        raise asyncio.CancelledError()


# ================================================================ one notebook: score
def score(nb, course, stopped):
    """``({grade_id: points or reason}, {grade_id: verdict message}, notes)`` from the executed
    notebook's test cells."""
    values, messages, notes = {}, {}, []
    where = {_nbgrader(c).get("grade_id"): i for i, c in enumerate(nb.cells) if _is_test(c)}
    for grade_id, points in course.tests:
        index = where[grade_id]
        if stopped and index >= stopped[1]:
            values[grade_id] = stopped[0] if index == stopped[1] else "not run"
            continue
        outputs = nb.cells[index].outputs
        verdicts = [o.data[VERDICT] for o in outputs if o.output_type == "display_data"
                    and isinstance(o.get("data", {}).get(VERDICT), dict)
                    and o.data[VERDICT].get("exercise") == grade_id]
        errors = [o for o in outputs if o.output_type == "error"]
        if verdicts:
            values[grade_id] = points if verdicts[-1].get("passed") is True else 0
            messages[grade_id] = str(verdicts[-1].get("message", ""))
        elif errors:
            values[grade_id] = f"error: {errors[0].ename}"
            notes.append(f"cell {index} (test '{grade_id}') raised {errors[0].ename}: "
                         f"{errors[0].evalue[:EVALUE_CHARS]}")
        else:
            values[grade_id] = "no verdict"
            notes.append(f"cell {index} (test '{grade_id}') displayed no verdict")
    return values, messages, notes


@dataclass
class Result:
    """One student's notebook: points or reasons per test, the verdicts' messages, notes, and
    the problems by kind (for the summary); ``nb`` is the executed notebook (None if it could
    not be run)."""
    student: str
    course: Course
    values: dict = field(default_factory=dict)
    messages: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    kinds: list = field(default_factory=list)
    suspicious: bool = False
    nb: object = None


async def grade_notebook(student, path, course, timeout, env):
    """Grade one submitted notebook; never raises (except on Ctrl-C): what goes wrong becomes
    the reason in its cells and a note."""
    import nbformat

    result = Result(student, course)
    try:
        submitted = _read(nbformat, path)
        nb, theirs, notes = assemble(submitted, course)
    except Exception as e:
        return _failed(result, "unreadable", f"{path.name} is unreadable ({type(e).__name__})")
    try:
        static = static_notes(nb, theirs)
        stopped = await execute(nb, timeout, env)
        values, messages, failures = score(nb, course, stopped)
    except Exception as e:  # a kernel that does not start, a notebook nbclient cannot handle
        return _failed(result, "could not run", f"could not run {path.name} "
                                                f"({type(e).__name__}: {e})")
    result.values, result.messages, result.nb = values, messages, nb
    result.notes = notes + static
    result.kinds = sorted({"syntax error" for n in static if n.startswith("syntax error")})
    result.suspicious = any(n.startswith("suspicious") for n in static)
    if stopped:
        result.notes.append(f"{stopped[0]} in cell {stopped[1]}"
                            + (f" after {timeout} s" if stopped[0] == "timeout" else ""))
        result.kinds.append(stopped[0])
    result.notes += failures
    stops = ("timeout", "kernel died", "not run")  # counted once, as the run's stop, above
    result.kinds += sorted({v.split(":")[0] for v in values.values()
                            if isinstance(v, str) and v not in stops})
    return result


def _failed(result, reason, note):
    result.values = {grade_id: reason for grade_id, _ in result.course.tests}
    result.notes, result.kinds = [note], [reason]
    return result


def missing(student, course):
    return _failed(Result(student, course), "missing", f"{course.path.name} missing")


# ================================================================ a folder of submissions
@dataclass
class Report:
    """What a grading run found: the CSV rows, every notebook's Result, the course notebooks
    graded, the files skipped, the run's duration and number of parallel kernels."""
    rows: list
    results: list
    graded: list
    skipped: list
    seconds: float
    jobs: int


def grade_submissions(submissions, source="notebooks", jobs=None, timeout=600, feedback=None):
    """Grade every student's notebooks in ``submissions``; returns the CSV rows, one dict per
    student (sorted): ``{"student": ..., "<stem>:<grade_id>": points or reason, ...,
    "total": ..., "max": ..., "notes": "..."}``. ``jobs`` kernels run at once (default: the
    number of cores), ``timeout`` is per cell in seconds, ``feedback`` a folder for the executed
    notebooks. Raises ConfigError for a missing folder or a course without tests."""
    return run_grading(submissions, source, jobs, timeout, feedback).rows


def run_grading(submissions, source="notebooks", jobs=None, timeout=600, feedback=None,
                progress=False):
    """grade_submissions, returning the whole Report (for the summary); ``progress`` shows a
    tqdm bar on stderr."""
    start = time.perf_counter()
    course = load_course(source)
    names = {path.name for path in notebooks_in(source)}
    root, students, strays = find_submissions(submissions)
    submitted = {path.name for paths in students.values() for path in paths}
    graded = [course[name] for name in sorted(course) if name in submitted]
    if not graded:
        raise ConfigError(f"grade: no submitted notebook is named like a course notebook with "
                          f"tests in {source} ({', '.join(sorted(course))})")
    skipped = [str(path) for path in strays]
    todo, notes = [], {student: [] for student in students}
    for student, paths in students.items():
        chosen = {}
        for path in paths:
            shown = path.relative_to(root / student)
            if path.name in chosen:
                notes[student].append(f"skipped {shown}: a second copy of {path.name}")
            elif path.name in course and course[path.name] in graded:
                chosen[path.name] = path
            elif path.name not in names:
                notes[student].append(f"skipped {shown}: not a course notebook")
                skipped.append(str(path))
        todo += [(student, chosen[c.path.name], c) for c in graded if c.path.name in chosen]
    jobs = jobs or (len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                    else os.cpu_count())
    results = asyncio.run(_run_all(todo, jobs, timeout, _kernel_env(jobs), progress))
    found = {(r.student, r.course.path.name): r for r in results}
    results = [found.get((student, c.path.name)) or missing(student, c)
               for student in students for c in graded]
    if feedback:
        write_feedback(results, feedback)
    rows = _rows(students, graded, results, notes)
    return Report(rows, results, graded, skipped, time.perf_counter() - start, jobs)


def _kernel_env(jobs):
    """The kernels' environment: ours, with one BLAS/OpenMP thread each when several kernels
    run at once (two kernels each starting a thread per core would fight over the cores)."""
    env = dict(os.environ)
    if jobs > 1:
        env.update(dict.fromkeys(BLAS_THREADS, "1"))
    return env


async def _run_all(todo, jobs, timeout, env, progress):
    """Grade ``todo`` ([(student, path, course)]) with at most ``jobs`` kernels at once. Ctrl-C
    cancels every notebook (each shuts its kernel down) and raises KeyboardInterrupt."""
    from tqdm import tqdm

    slots = asyncio.Semaphore(jobs)
    bar = tqdm(total=len(todo), desc="grading", unit="notebook", file=sys.stderr,
               disable=not progress)

    async def one(student, path, course):
        async with slots:
            result = await grade_notebook(student, path, course, timeout, env)
        bar.update()
        return result

    loop, main = asyncio.get_running_loop(), asyncio.current_task()
    try:
        loop.add_signal_handler(signal.SIGINT, main.cancel)
    except (RuntimeError, NotImplementedError):  # not the main thread, or Windows
        pass
    try:
        return await asyncio.gather(*(one(*task) for task in todo))
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None
    finally:
        bar.close()
        try:
            loop.remove_signal_handler(signal.SIGINT)
        except (RuntimeError, NotImplementedError):
            pass


# ================================================================ the CSV, feedback and summary
def _rows(students, graded, results, notes):
    """One row per student: points or reasons per exercise, total, max, notes."""
    maximum = sum(points for course in graded for _, points in course.tests)
    by_student = {}
    for result in results:
        by_student.setdefault(result.student, []).append(result)
    rows = []
    for student in students:
        row, row_notes = {"student": student}, list(notes[student])
        for result in by_student[student]:
            for grade_id, _ in result.course.tests:
                row[f"{result.course.stem}:{grade_id}"] = result.values[grade_id]
            prefix = f"{result.course.stem}: " if len(graded) > 1 else ""
            row_notes += [prefix + note for note in result.notes]
        earned = [v for k, v in row.items() if k != "student" and not isinstance(v, str)]
        row.update(total=sum(earned), max=maximum, notes="; ".join(row_notes))
        rows.append(row)
    return rows


def write_csv(rows, path):
    """Write the rows (from grade_submissions) to ``path`` atomically (mode 0644); numbers
    are written as short as they are exact (``1``, ``0.5``)."""
    fields = list(rows[0]) if rows else ["student", "total", "max", "notes"]
    with atomic_write(path, "w") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(fields)
        for row in rows:
            writer.writerow([value if isinstance(value, str) else f"{value:g}"
                             for value in (row[name] for name in fields)])
    return str(path)


def write_feedback(results, folder):
    """Each executed notebook to ``folder/<student>/<notebook>.ipynb`` (0644), with a last
    Markdown cell saying what each test earned, its verdict, and what went wrong."""
    import nbformat
    from nbformat.v4 import new_markdown_cell

    for result in results:
        if result.nb is None:
            continue
        lines = ["## Autograded by `python -m tinynn grade`", "", "| test | points | verdict |",
                 "|---|---|---|"]
        for grade_id, points in result.course.tests:
            value = result.values[grade_id]
            shown = value if isinstance(value, str) else f"{value:g}"
            verdict = result.messages.get(grade_id, "").replace("|", "\\|")  # a table cell
            lines.append(f"| {grade_id} | {shown} / {points:g} | {verdict} |")
        lines += ["", *(f"- {note}" for note in result.notes)]
        nb = copy.deepcopy(result.nb)
        nb.cells.append(new_markdown_cell("\n".join(lines)))
        target = Path(folder) / result.student / result.course.path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, "w") as f:
            nbformat.write(nb, f)


def summary(report, csv_path=None):
    """The plain-words end of a run: how many notebooks ran cleanly, what went wrong by kind,
    the mean total, the answers left to grade by hand, skipped files, where the CSV is."""
    results, graded = report.results, report.graded
    students = len(report.rows)
    kinds = {}
    for result in results:
        for kind in result.kinds:
            kinds[kind] = kinds.get(kind, 0) + 1
    broken = sum(bool(r.kinds) for r in results)
    maximum = report.rows[0]["max"] if report.rows else 0
    mean = sum(row["total"] for row in report.rows) / max(students, 1)
    lines = [f"graded {students} student{'s' * (students != 1)} × {len(graded)} notebook"
             f"{'s' * (len(graded) != 1)} ({', '.join(c.stem for c in graded)}) in "
             f"{report.seconds:.1f} s, {report.jobs} kernel{'s' * (report.jobs != 1)} at a time",
             f"notebooks: {len(results) - broken} complete, {broken} with errors"
             + (f" ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})" if kinds else "")]
    suspicious = sum(r.suspicious for r in results)
    if suspicious:
        lines.append(f"suspicious code in {suspicious} notebook{'s' * (suspicious != 1)}: "
                     "read them (see notes)")
    lines.append(f"mean total {mean:.2f} / {maximum:g} autograded points")
    lines += [f"{c.stem}: {c.written} written answer{'s' * (c.written != 1)} per notebook to "
              "grade by hand (not in the CSV)" for c in graded if c.written]
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)} notebook{'s' * (len(report.skipped) != 1)}"
                     f" that {'are' if len(report.skipped) != 1 else 'is'} not a course notebook"
                     f" or not in a student folder: {', '.join(report.skipped)}")
    if csv_path:
        lines.append(f"grades written to {csv_path}")
    return "\n".join(lines)


def command(args):
    """``python -m tinynn grade``: exit code 0, 2 for bad arguments, 130 on Ctrl-C."""
    out = Path(args.out)
    try:
        if not out.parent.is_dir():
            raise ConfigError(f"grade: --out {out}: the folder {out.parent} does not exist")
        report = run_grading(args.submissions, args.source, args.jobs, args.timeout,
                             args.feedback, progress=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every kernel was shut down; no grades written", file=sys.stderr)
        return 130
    write_csv(report.rows, out)
    print(summary(report, out))
    return 0
