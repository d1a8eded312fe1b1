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

**What counts.** Only the structured verdict of the contract (docs/DESIGN.md §5, tinynn.course.grading):
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

    notebooks.py      the course notebooks, the submissions, the notebook assembled for a run
    static_checks.py  syntax errors and patches of tinynn, read without running the code
    run.py            kernels, scores, a whole run (GradingRun), ``python -m tinynn grade``
    output.py         the CSV, the feedback notebooks, the summary
"""
from .notebooks import Course, assemble, find_submissions, load_course
from .output import csv_rows, summary, write_csv, write_feedback
from .run import (VERDICT, GradingRun, Result, command, execute, grade_notebook,
                  grade_submissions, run_grading, score)
from .static_checks import static_notes

__all__ = ["grade_submissions", "run_grading", "write_csv", "write_feedback", "summary",
           "command", "GradingRun", "Result", "Course", "load_course", "find_submissions",
           "assemble", "static_notes", "execute", "score", "grade_notebook", "csv_rows", "VERDICT"]
