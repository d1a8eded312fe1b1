"""notebooks/hub/course_files.py, the script that gives each JupyterHub student their copy of the
course: it copies only what is missing, never half a file, and needs nothing from tinynn (the
hub's deployment scripts do not import framework internals). The whole hub is tests/test_hub.py."""
import ast
import importlib.util
import stat
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "notebooks" / "hub" / "course_files.py"


@pytest.fixture(scope="module")
def course_files():
    spec = importlib.util.spec_from_file_location("course_files", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_imports_nothing_from_tinynn():
    tree = ast.parse(SCRIPT.read_text())
    modules = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names]
    modules += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    assert modules and not [m for m in modules if m.split(".")[0] == "tinynn"]


def test_copies_what_is_missing_and_never_overwrites_a_students_file(course_files, tmp_path):
    course, home = tmp_path / "course", tmp_path / "home"
    (course / "week2").mkdir(parents=True)
    (course / "01.ipynb").write_text("course 01")
    (course / "week2" / "02.ipynb").write_text("course 02")
    home.mkdir()
    (home / "01.ipynb").write_text("my work")
    written = course_files.copy_missing(course, home)
    assert written == [home / "week2" / "02.ipynb"]
    assert (home / "01.ipynb").read_text() == "my work"
    assert (home / "week2" / "02.ipynb").read_text() == "course 02"
    assert stat.S_IMODE((home / "week2" / "02.ipynb").stat().st_mode) == 0o644
    assert course_files.copy_missing(course, home) == []


def test_a_failed_copy_leaves_neither_the_target_nor_a_temporary_file(course_files, tmp_path,
                                                                      monkeypatch):
    src, target = tmp_path / "a.ipynb", tmp_path / "out" / "a.ipynb"
    src.write_bytes(b"x" * 100_000)
    target.parent.mkdir()

    def disk_full(source, destination):
        destination.write(source.read(10))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(course_files.shutil, "copyfileobj", disk_full)
    with pytest.raises(OSError, match="No space left"):
        course_files.copy_atomically(src, target)
    assert list(target.parent.iterdir()) == []
