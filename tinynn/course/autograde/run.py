"""Running a grading: each assembled notebook in its own kernel (``execute``), its test cells'
verdicts turned into points (``score``), many notebooks at once (``run_grading``), and the
command ``python -m tinynn grade``."""
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from ..classroom import notebooks_in
from .notebooks import (Course, assemble, cell_nbgrader, find_submissions, is_test_cell,
                        load_course, read_notebook)
from .output import csv_rows, summary, write_csv, write_feedback
from .static_checks import static_notes

VERDICT = "application/vnd.tinynn.verdict+json"
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SKIP_TAG = "nbval-skip"  # a cell the course's notebook tests (nbval) do not run
EVALUE_CHARS = 200  # an exception's message is cut to this length in the notes


async def execute(nb, timeout, env):
    """Run ``nb`` in place in a fresh kernel, in a temporary working folder, errors allowed,
    cells tagged ``nbval-skip`` left out.
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
                if SKIP_TAG in cell.metadata.get("tags", []):
                    continue  # what the notebook tests skip, the grading skips too
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


def score(nb, course, stopped):
    """``({grade_id: points or reason}, {grade_id: verdict message}, notes)`` from the executed
    notebook's test cells."""
    values, messages, notes = {}, {}, []
    where = {cell_nbgrader(c).get("grade_id"): i for i, c in enumerate(nb.cells) if is_test_cell(c)}
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
        submitted = read_notebook(nbformat, path)
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


@dataclass
class GradingRun:
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
    """grade_submissions, returning the whole GradingRun (for the summary); ``progress`` shows a
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
    rows = csv_rows(students, graded, results, notes)
    return GradingRun(rows, results, graded, skipped, time.perf_counter() - start, jobs)


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


def command(args):
    """``python -m tinynn grade``: exit code 0, 2 for bad arguments, 130 on Ctrl-C."""
    out = Path(args.out)
    try:
        if not out.parent.is_dir():
            raise ConfigError(f"grade: --out {out}: the folder {out.parent} does not exist")
        run = run_grading(args.submissions, args.source, args.jobs, args.timeout,
                             args.feedback, progress=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: every kernel was shut down; no grades written", file=sys.stderr)
        return 130
    write_csv(run.rows, out)
    print(summary(run, out))
    return 0
