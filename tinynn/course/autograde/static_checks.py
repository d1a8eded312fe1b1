"""Reading a student's code without running it, for the notes of a grading run: syntax errors,
and code that patches tinynn (which the student's cells could do in the kernel before the hidden
tests run; see the package docstring). A tripwire, not a proof: code built at run time (``exec``)
gets past it."""
import ast

from ..classroom import _python


def static_notes(nb, student):
    """Notes on the student's code cells (indices ``student``), read without running them:
    syntax errors, and patches of tinynn (see tinynn.course.autograde's docstring). IPython
    magics and shell lines are blanked first; a cell magic (``%%bash``) is not Python and is
    skipped."""
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
