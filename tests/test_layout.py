"""Package layout (issue 13): the framework imports no course tooling, matplotlib or ipywidgets,
`import tinynn` is fast and light, and every layer class is part of the public API."""
import ast
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

import tinynn as tn

PACKAGE = Path(tn.__file__).resolve().parent
# The command line (`python -m tinynn student ...`) fronts both the framework and the course
# tooling, and imports the latter only inside the command that needs it.
FRONT_ENDS = {"__main__.py"}
FORBIDDEN = ("tinynn.course", "matplotlib", "ipywidgets")
HEAVY = ("matplotlib", "ipywidgets", "tqdm", "tinynn.course")


def framework_files():
    return sorted(path for path in PACKAGE.rglob("*.py")
                  if "course" not in path.relative_to(PACKAGE).parts[:-1]
                  and path.name not in FRONT_ENDS)


def imported_modules(path):
    """Every module an ``import`` statement in ``path`` names (relative ones made absolute)."""
    package = ".".join(("tinynn",) + path.relative_to(PACKAGE).parts[:-1])
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def test_framework_modules_import_no_course_tooling():
    files = framework_files()
    assert PACKAGE / "layers.py" in files and PACKAGE / "model.py" in files
    assert not any(path.name == "viz.py" for path in files)
    offenders = [(path.name, name) for path in files for name in imported_modules(path)
                 if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)]
    assert not offenders


def framework_imports(module):
    """Every tinynn module that ``module`` (e.g. "tinynn.model") imports, directly or through
    another tinynn module (the package's __init__, which imports everything, left out)."""
    seen, todo = set(), [module]
    while todo:
        path = PACKAGE / (todo.pop().split(".", 1)[1].replace(".", "/") + ".py")
        for name in imported_modules(path):
            if name.startswith("tinynn.") and name not in seen \
                    and (PACKAGE / (name.split(".", 1)[1].replace(".", "/") + ".py")).is_file():
                seen.add(name)
                todo.append(name)
    return seen


def test_the_training_loop_imports_no_downloader():
    """Model needs a split helper, not MNIST's mirrors, SHA-256 checks and cache (issue 22)."""
    imports = framework_imports("tinynn.model")
    assert {"tinynn.data", "tinynn.net", "tinynn.losses"} <= imports  # the closure is followed
    assert not imports & {"tinynn.datasets", "tinynn.download"}
    assert {"tinynn.download"} <= framework_imports("tinynn.datasets")


def test_import_tinynn_is_fast_and_light():
    # CPU time, not wall time: on a loaded machine (CI runs two workers on two cores) waiting
    # for a core is not the import's cost, and a wall-clock limit fails by chance there.
    code = ("import sys, time; start = time.process_time(); import tinynn; "
            "took = time.process_time() - start; "
            f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} "
            f"or m.startswith('tinynn.course')]; print(took, heavy)")
    best = None
    for _ in range(3):  # the fastest of three: a busy machine only ever adds time (caches)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, cwd=PACKAGE.parent).stdout.split(" ", 1)
        best = min(best or 1e9, float(out[0]))
        assert out[1].strip() == "[]", out[1]
    assert best < 0.3, f"import tinynn took {best:.3f} s of CPU time"


def layer_classes():
    import importlib
    names = [p.stem for p in framework_files() if p.stem not in ("__init__", "__main__")]
    for name in names:
        module = importlib.import_module(f"tinynn.{name}")
        for cls_name, cls in vars(module).items():
            if inspect.isclass(cls) and issubclass(cls, tn.Layer) and cls.__module__ == module.__name__ \
                    and not cls_name.startswith("_"):
                yield cls_name, cls


def test_every_layer_class_is_exported():
    found = dict(layer_classes())
    assert {"Dense", "Conv2D", "MaxPool2D", "AvgPool2D", "BatchNorm"} <= set(found)
    missing = [name for name, cls in found.items() if getattr(tn, name, None) is not cls]
    assert not missing



def top_level_imports(source):
    """The top-level package of every absolute import in a piece of Python source."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level:
            yield node.module.split(".")[0]


def project():
    """pyproject.toml's [project] table (tomllib from Python 3.11, pytest's tomli before)."""
    try:
        import tomllib
    except ImportError:
        tomllib = pytest.importorskip("tomli")
    return tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["project"]


def requirement_names(requirements):
    """The distribution names of requirement lines ('numpy>=1.24' -> 'numpy'), comments skipped."""
    return {re.split(r"[<>=!\[ ;]", line.strip())[0].lower() for line in requirements
            if line.strip() and not line.lstrip().startswith(("#", "-"))}


def test_the_course_extra_installs_what_the_notebooks_and_course_tooling_import():
    """`pip install "tinynn[course]"` is enough to run every notebook, `tinynn student` and
    `tinynn grade` (issue 14: 07 used to fail at cell 1 for want of threadpoolctl)."""
    import nbformat
    if not hasattr(sys, "stdlib_module_names"):
        pytest.skip("Python 3.9 has no list of its standard library's modules")

    declared = requirement_names(project()["dependencies"]
                                 + project()["optional-dependencies"]["course"])
    imported = set()
    for path in sorted(PACKAGE.glob("course/*.py")):
        imported.update(top_level_imports(path.read_text(encoding="utf-8")))
    for path in sorted((PACKAGE.parent / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":  # IPython magics and shell lines are not Python
                imported.update(top_level_imports("\n".join(
                    line for line in cell.source.split("\n")
                    if not line.lstrip().startswith(("%", "!")))))
    distribution = {"IPython": "ipykernel"}  # import name -> the requirement that installs it
    missing = sorted(name for name in imported - set(sys.stdlib_module_names) - {"tinynn"}
                     if distribution.get(name, name).lower() not in declared)
    assert not missing, f"imported but not in the [course] extra: {missing}"


def test_pytorch_is_a_test_only_requirement():
    """PyTorch, the tests' independent reference, is pinned in requirements-test.txt (the
    version of its CPU wheel: unpinned, pip pulls a multi-GB CUDA build) and required by nothing
    a student installs: not tinynn, its course extra, nor requirements.txt."""
    root = PACKAGE.parent
    test_only = (root / "requirements-test.txt").read_text().splitlines()
    assert "torch==2.13.0" in [line.split(";")[0].strip() for line in test_only]
    student = (root / "requirements.txt").read_text().splitlines() + project()["dependencies"] \
        + [r for extra in project().get("optional-dependencies", {}).values() for r in extra]
    assert "torch" not in requirement_names(student)


def test_readme_and_the_design_doc_name_every_framework_module_and_course_package():
    """The README's file table and docs/DESIGN.md match the tree: each module of tinynn/ is named
    in both, each package of tinynn/course/ too, and every "DESIGN §N" the code cites exists."""
    root = Path(__file__).resolve().parent.parent
    readme = (root / "README.md").read_text(encoding="utf-8")
    design = (root / "docs" / "DESIGN.md").read_text(encoding="utf-8")
    modules = [p.stem for p in (root / "tinynn").glob("*.py") if not p.stem.startswith("__")]
    assert [m for m in modules if f"{m}.py" not in readme] == []
    assert [m for m in modules if not re.search(rf"\b{m}\b", design)] == []
    packages = [p.name for p in (root / "tinynn" / "course").iterdir()
                if (p / "__init__.py").exists()]
    assert [p for p in packages if f"{p}/" not in readme or f"{p}/" not in design] == []
    sections = set(re.findall(r"^## (\d+)\.", design, re.MULTILINE))
    cited = set()
    for path in [*root.glob("tinynn/**/*.py"), *root.glob("tests/**/*.py"), root / ".ci" / "run"]:
        cited |= set(re.findall(r"DESIGN(?:\.md)? §(\d+)", path.read_text(encoding="utf-8")))
    assert cited and cited <= sections
