"""The course notebooks as committed: executed in order, listed in the course README, and shaped
like lessons. (nbval itself re-runs every notebook and compares outputs; these checks catch what
it cannot: stale or out-of-order outputs and a course list that drifted.)"""
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COURSE = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def code_cells(path):
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return [c for c in cells if c["cell_type"] == "code" and "".join(c["source"]).strip()]


def test_the_course_exists():
    assert len(COURSE) >= 8, f"expected notebooks 00-07 at least, found {[p.name for p in COURSE]}"
    numbers = [int(p.name[:2]) for p in COURSE]
    assert numbers == list(range(len(COURSE))), f"notebook numbers must run 00, 01, ...: {numbers}"


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_committed_as_restart_and_run_all(path):
    counts = [c["execution_count"] for c in code_cells(path)]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} — re-run it with Restart & Run All and save")


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_listed_in_course_readme(path):
    readme = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    assert path.name in readme, f"{path.name} is missing from notebooks/README.md"


def test_course_readme_lists_only_existing_notebooks():
    readme = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"\d\d_[\w]+\.ipynb", readme))
    missing = listed - {p.name for p in COURSE}
    assert not missing, f"notebooks/README.md lists notebooks that do not exist: {sorted(missing)}"


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_shaped_like_a_lesson(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    text = "\n".join("".join(c["source"]) for c in nb["cells"])
    assert "### BEGIN SOLUTION" in text and "### END SOLUTION" in text, \
        f"{path.name}: needs at least one exercise in solution markers"
    assert "tinynn.course.exercises" in text or "check_" in text, f"{path.name}: exercise without a check"
    assert re.search(r"summary", text, re.IGNORECASE), f"{path.name}: needs a summary"
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3"


# ------------------------------------------------------------------ portable outputs (docs/DESIGN.md §6)
IGNORE = "nbval-ignore-output"  # nbval's cell tag: the student never reads test plumbing
# Output that is volatile by nature and teaches no number: it may leave the comparison unchecked.
UNCHECKED_REASONS = ("download bar", "timings", "widget view")


def ignored_cells(path):
    cells = code_cells(path)
    for i, cell in enumerate(cells):
        if IGNORE in cell["metadata"].get("tags", []):
            yield cell, cells[i + 1] if i + 1 < len(cells) else None


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_no_test_plumbing_in_the_cells_a_student_reads(path):
    """nbval's markers are cell tags (nbval-ignore-output, nbval-skip, raises-exception), never
    '# NBVAL_...' comment lines in the code a student reads."""
    for cell in code_cells(path):
        assert "NBVAL" not in "".join(cell["source"]), (
            f"{path.name}: {''.join(cell['source'])[:60]!r}: use the cell tag, not a comment")


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_no_cell_shows_a_bare_true_or_false(path):
    """A verdict is a line that says what held (expect, check_*); a lone `True` under it is
    noise a student has to puzzle over."""
    for cell in code_cells(path):
        for out in cell.get("outputs", []):
            shown = "".join(out.get("data", {}).get("text/plain", "")) if "data" in out else ""
            assert shown not in ("True", "False"), (
                f"{path.name}: {''.join(cell['source'])[-60:]!r} shows a bare {shown}")


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_every_ignored_output_is_explained_and_checked(path):
    """A cell whose output leaves the exact comparison says why in its metadata ('volatile');
    unless the output is volatile by nature (a download bar, timings, a widget view), the next
    cell checks what it teaches with expect(...), in a compared cell, so a false lesson still
    fails the test."""
    for cell, following in ignored_cells(path):
        first = "".join(cell["source"]).splitlines()[:1]
        reason = cell["metadata"].get("volatile", "")
        assert reason, f"{path.name}: ignored cell {first} does not say why (metadata 'volatile')"
        if "checked below" in reason:
            source = "".join(following["source"]) if following else ""
            assert "expect(" in source and IGNORE not in following["metadata"].get("tags", []), (
                f"{path.name}: ignored cell {first} promises a check below, but the next cell "
                f"has no expect(...) that nbval compares")
        else:
            assert any(kind in reason for kind in UNCHECKED_REASONS), (
                f"{path.name}: {reason!r}: output that teaches something must be checked below")


def _accidental_code_blocks(markdown):
    import mistune
    html = mistune.html(markdown)
    fenced = len(re.findall(r"^\s*(```|~~~)", markdown, re.MULTILINE)) // 2
    return html.count("<pre>") - fenced


def test_the_code_block_detector_sees_an_indented_paragraph():
    assert _accidental_code_blocks("        # Title\n\n        Some text\n") == 1
    assert _accidental_code_blocks("# Title\n\n```\ncode\n```\n\n- a list\n    continued\n") == 0


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.name)
def test_no_markdown_renders_as_a_code_block_by_accident(path):
    """Markdown indented by 4+ spaces renders as monospace code in JupyterLab: a title, learning
    goals and LaTeX shown as raw text. Code blocks in prose must be fenced (```)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            assert _accidental_code_blocks(text) <= 0, (
                f"{path.name} cell {i} renders indented text as code: {text[:80]!r}")
