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
