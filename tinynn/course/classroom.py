"""Classroom mode: student notebooks generated from the course notebooks.

The course notebooks hold the solutions between nbgrader's markers, each on a line of its own:

    def forward(self, x, training=True):
        ### BEGIN SOLUTION
        self.x = x
        return x @ self.params["w"] + self.params["b"]
        ### END SOLUTION

The student version replaces every such block with a stub, indented like the BEGIN marker, so the
code stays valid Python (in a Markdown cell the stub is "YOUR ANSWER HERE"):

    def forward(self, x, training=True):
        # YOUR CODE HERE
        raise NotImplementedError()

Blocks between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are removed entirely, and all
outputs and execution counts are cleared. The markers are nbgrader's, so a teacher may run
``nbgrader generate_assignment`` on the same notebooks instead (see notebooks/TEACHING.md).

    python -m tinynn student notebooks/ --out student/
    write_student_notebooks("notebooks", "student")   # -> ["student/00_overview.ipynb", ...]

Only ``*.ipynb`` files are written. Malformed markers (unbalanced, nested, or text after a marker)
stop the whole run with a ConfigError naming the file, cell and line, and nothing is written.
"""
import copy
import re
from pathlib import Path

from ..errors import ConfigError
from ..files import atomic_write

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")
TEXT_STUB = ("YOUR ANSWER HERE",)

# marker -> (kind, True for begin / False for end)
MARKERS = {BEGIN_SOLUTION: ("solution", True), END_SOLUTION: ("solution", False),
           BEGIN_HIDDEN: ("hidden tests", True), END_HIDDEN: ("hidden tests", False)}
# A code comment that looks like a marker but is not exactly one ("## BEGIN SOLUTION",
# "### BEGIN SOLUTION: Dense"): nbgrader would silently ignore it and leak the solution.
MARKER_LIKE = re.compile(r"^\s*#+\s*(BEGIN|END)\s+(SOLUTION|HIDDEN\s+TESTS)\b", re.IGNORECASE)


def make_student_notebook(nb, name="notebook"):
    """The student version of a notebook (a new nbformat NotebookNode; ``nb`` is not changed):
    solutions replaced by stubs, hidden tests removed, outputs cleared. Raises ConfigError on
    malformed markers or when a stub would leave a code cell that no longer compiles."""
    student = copy.deepcopy(nb)
    for index, cell in enumerate(student.cells):
        where = f"{name}, cell {index}"
        if cell.cell_type in ("code", "markdown"):
            source = _strip(cell.source, cell.cell_type, where)
            if cell.cell_type == "code":
                _check_compiles(cell.source, source, where)
            cell.source = source
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)  # run timestamps
        _lock(cell)
    student.metadata.pop("widgets", None)      # saved widget state belongs to cleared outputs
    student.metadata.pop("celltoolbar", None)  # as nbgrader does
    return student


def _lock(cell):
    """As nbgrader's release does: answer cells cannot be deleted, test cells neither deleted nor
    edited (JupyterLab honours both flags)."""
    meta = cell.metadata.get("nbgrader", {})
    if meta.get("solution") or meta.get("grade"):
        cell.metadata["deletable"] = False
    if meta.get("grade") and not meta.get("solution"):
        cell.metadata["editable"] = False


def _strip(source, cell_type, where):
    """Cell source with solution blocks stubbed and hidden tests removed (checked line by line)."""
    lines, open_block = [], None  # open_block: (kind, line number of its BEGIN)
    for number, line in enumerate(source.split("\n"), 1):
        marker = line.strip()
        if marker not in MARKERS:
            if cell_type == "code" and MARKER_LIKE.search(line):
                raise ConfigError(f"{where}, line {number}: {marker!r} looks like a marker but is "
                                  f"not one; a marker stands alone on its line, exactly as "
                                  f"{' / '.join(MARKERS)}")
            if open_block is None:
                lines.append(line)
            continue
        kind, begins = MARKERS[marker]
        if begins and open_block:
            raise ConfigError(f"{where}, line {number}: {marker!r} inside the {open_block[0]} "
                              f"block opened on line {open_block[1]}; blocks cannot be nested (is "
                              "that block's END marker missing or misspelled?)")
        if not begins and (open_block is None or open_block[0] != kind):
            inside = (f" (inside the {open_block[0]} block of line {open_block[1]})"
                      if open_block else "")
            raise ConfigError(f"{where}, line {number}: {marker!r} without a matching "
                              f"'### BEGIN {kind.upper()}' before it{inside}")
        if begins:
            open_block = (kind, number)
            if kind == "solution":
                indent = line[:len(line) - len(line.lstrip())]
                stub = CODE_STUB if cell_type == "code" else TEXT_STUB
                lines.extend(indent + stub_line for stub_line in stub)
        else:
            open_block = None
    if open_block:
        raise ConfigError(f"{where}, line {open_block[1]}: '### BEGIN {open_block[0].upper()}' is "
                          f"never closed; add '### END {open_block[0].upper()}' in the same cell")
    return "\n".join(lines)


def _python(source):
    """Cell source with IPython magics and shell lines (% and !) blanked, for compile()."""
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.split("\n"))


def _check_compiles(original, student, where):
    """A stub must leave valid Python wherever the original was valid Python."""
    if original == student:
        return
    try:
        compile(_python(original), where, "exec")
    except SyntaxError:
        return  # not plain Python (e.g. a cell magic): nothing to promise
    try:
        compile(_python(student), where, "exec")
    except SyntaxError as e:
        raise ConfigError(f"{where}: the student version does not compile ({e.msg}, line "
                          f"{e.lineno}); indent the '### BEGIN SOLUTION' marker like the code it "
                          f"replaces") from None


def notebooks_in(src):
    """The course notebooks: ``src`` itself if it is a notebook, else ``src/*.ipynb`` sorted."""
    src = Path(src)
    if src.is_file():
        return [src]
    if not src.is_dir():
        raise ConfigError(f"student: {src} is neither a notebook nor a folder")
    return sorted(src.glob("*.ipynb"))


def write_student_notebooks(src_dir, out_dir):
    """Write the student version of every notebook in ``src_dir`` (or of one notebook) into
    ``out_dir``, under the same names. Returns the written paths (strings).

    All notebooks are converted and checked first; on any ConfigError nothing is written. Each file
    is written to a temporary name and then renamed, so a reader never sees half a notebook."""
    import nbformat  # lazily: the core does not need it

    paths = notebooks_in(src_dir)
    if not paths:
        raise ConfigError(f"student: no .ipynb notebooks in {src_dir}")
    out_dir = Path(out_dir)
    for path in paths:
        if out_dir.resolve() == path.parent.resolve():
            raise ConfigError(f"student: --out {out_dir} is the folder of the course notebooks; "
                              "pick another folder so the solutions are not overwritten")
    students = []
    for path in paths:
        try:
            nb = nbformat.read(path, as_version=4)
        except Exception as e:  # nbformat raises several unrelated types for a broken file
            raise ConfigError(f"{path}: not a readable notebook ({type(e).__name__}: "
                              f"{e})") from None
        students.append((out_dir / path.name, make_student_notebook(nb, name=str(path))))
    out_dir.mkdir(parents=True, exist_ok=True)
    for target, nb in students:
        _write_atomic(nbformat, nb, target)
    return [str(target) for target, _ in students]


def _write_atomic(nbformat, nb, target):
    with atomic_write(target, "w") as f:  # readable by all (0644): students share a hub
        nbformat.write(nb, f)
