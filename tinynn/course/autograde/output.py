"""What a grading run writes: the CSV rows (one per student) and file, the feedback notebooks,
and the plain-words summary printed at the end."""
import copy
import csv
from pathlib import Path

from ...files import atomic_write


def csv_rows(students, graded, results, notes):
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


def summary(run, csv_path=None):
    """The plain-words end of a run: how many notebooks ran cleanly, what went wrong by kind,
    the mean total, the answers left to grade by hand, skipped files, where the CSV is."""
    results, graded = run.results, run.graded
    students = len(run.rows)
    kinds = {}
    for result in results:
        for kind in result.kinds:
            kinds[kind] = kinds.get(kind, 0) + 1
    broken = sum(bool(r.kinds) for r in results)
    maximum = run.rows[0]["max"] if run.rows else 0
    mean = sum(row["total"] for row in run.rows) / max(students, 1)
    lines = [f"graded {students} student{'s' * (students != 1)} × {len(graded)} notebook"
             f"{'s' * (len(graded) != 1)} ({', '.join(c.stem for c in graded)}) in "
             f"{run.seconds:.1f} s, {run.jobs} kernel{'s' * (run.jobs != 1)} at a time",
             f"notebooks: {len(results) - broken} complete, {broken} with errors"
             + (f" ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})" if kinds else "")]
    suspicious = sum(r.suspicious for r in results)
    if suspicious:
        lines.append(f"suspicious code in {suspicious} notebook{'s' * (suspicious != 1)}: "
                     "read them (see notes)")
    lines.append(f"mean total {mean:.2f} / {maximum:g} autograded points")
    lines += [f"{c.stem}: {c.hand_graded_answers} written answer"
              f"{'s' * (c.hand_graded_answers != 1)} per notebook to grade by hand (not in the CSV)"
              for c in graded if c.hand_graded_answers]
    if run.skipped:
        lines.append(f"skipped {len(run.skipped)} notebook{'s' * (len(run.skipped) != 1)}"
                     f" that {'are' if len(run.skipped) != 1 else 'is'} not a course notebook"
                     f" or not in a student folder: {', '.join(run.skipped)}")
    if csv_path:
        lines.append(f"grades written to {csv_path}")
    return "\n".join(lines)
