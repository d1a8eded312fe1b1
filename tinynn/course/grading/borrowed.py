"""Borrowed code: what refuses a candidate that is, subclasses, copies or calls tinynn's reference.

``refuse_borrowed(name, candidate, references, bases)`` judges the candidate before its check runs:
it may not *be* a tinynn class or function, *subclass* one other than the exercise's allowed
bases (``tn.Layer``, ``tn.Loss``, ``tn.Optimizer``, ``tn.Schedule``; ``tn.Adam`` for AdamW), have
a method whose code comes from tinynn's files (the function itself, or rebuilt from its code
object), or be a verbatim paste of the reference's source (same instructions, names and
constants, adding up to at least ``MIN_COPY_STATEMENTS`` statements: a short honest function such
as ``return np.argmax(logits, axis=1)`` may equal a short reference).

``tripwires(functions)`` catches the last way while the check runs: the live reference's functions
are swapped for tripwires that record a call, however the student reached them, then restored.
"""
import ast
import contextlib
import dis
import inspect
import linecache
import sys
import textwrap
import types
from functools import lru_cache, partial
from pathlib import Path

from .fresh import PACKAGE_DIR, PRIVATE_PREFIX, ROOT, live_package, resolve

MIN_COPY_STATEMENTS = 8   # verbatim copies this long are pasted, not re-invented (_refuse_copies)


def _is_tinynn(obj):
    """Whether a class or function belongs to tinynn (the live package or a fresh copy)."""
    module = getattr(obj, "__module__", None) or ""
    return module == ROOT or module.startswith((f"{ROOT}.", PRIVATE_PREFIX))


@lru_cache(maxsize=None)
def _in_package(filename):
    """Whether a code object's file is one of tinynn's (the live package and the fresh copies
    share the files)."""
    try:
        return Path(filename).resolve().is_relative_to(PACKAGE_DIR)
    except (OSError, ValueError):
        return False


def _reference_functions(references, bases):
    """The functions of the references: a function itself, or those a reference class defines
    (in its own class and any tinynn class between it and the allowed bases)."""
    allowed = {cls for base in bases for cls in base.__mro__}
    functions = []
    for ref in references:
        if not inspect.isclass(ref):
            functions.append(ref)
            continue
        for cls in ref.__mro__:
            if cls not in allowed and _is_tinynn(cls):
                functions += [f for f in map(_function_of, vars(cls).values()) if f]
    return functions


def _key(cls):
    """(module, qualname) with a fresh copy's module named as the live one's."""
    return f"{ROOT}.{cls.__module__.partition('.')[2]}".rstrip("."), cls.__qualname__


def _function_of(value):
    """The Python function behind a class attribute (method, static/class method), or None."""
    value = getattr(value, "__func__", value)
    return value if inspect.isfunction(value) else None


def refuse_borrowed(name, candidate, references, bases):
    """The message refusing ``candidate`` (called ``name`` in the notebook), or None."""
    obj = candidate
    if inspect.ismethod(obj):
        obj = obj.__func__
    while isinstance(obj, partial):
        obj = obj.func
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        if callable(obj) and not hasattr(obj, "__dict__"):
            return None   # a builtin (e.g. numpy's): nothing of tinynn's to borrow
        obj = type(obj)   # an instance: judge its class
    kind = "class" if inspect.isclass(obj) else "function"
    if _is_tinynn(obj):
        return f"{name} is tinynn's {obj.__qualname__} — write your own {kind}"
    functions = [(name, obj)] if inspect.isfunction(obj) else []
    if inspect.isclass(obj):
        allowed = {_key(cls) for base in bases for cls in base.__mro__}
        hint = " or ".join(f"tn.{base.__name__}" for base in bases) or "no tinynn class"
        for cls in obj.__mro__[1:]:
            if _is_tinynn(cls) and _key(cls) not in allowed:
                return (f"{name} subclasses tinynn's {cls.__qualname__} — write your own "
                        f"(subclass {hint})")
        for cls in obj.__mro__:
            if not _is_tinynn(cls) and cls is not object:
                owner = name if cls is obj else cls.__qualname__
                functions += [(f"{owner}.{attr}", f) for attr, value in vars(cls).items()
                              if (f := _function_of(value))]
    for label, func in functions:
        code = func.__code__
        if _in_package(code.co_filename):
            how = "is" if _is_tinynn(func) else "is rebuilt from the code of"
            return f"{label} {how} tinynn's {_qualname(code)} — write your own"
    return _refuse_copies(functions, _reference_functions(references, bases))


def _refuse_copies(functions, references):
    """Refuse verbatim copies of the references' functions, if they add up to at least
    ``MIN_COPY_STATEMENTS`` statements. The exercises scaffold their answers, so an honest
    student may write a short reference function exactly (notebook 04's solution of
    ``MyMomentum.update`` is tinynn's six statements); eight statements equal in every
    instruction, name and constant (a pasted class brings its __init__ and helpers too) are a
    paste."""
    copies = [(label, ref) for label, func in functions for ref in references
              if _same_code(func.__code__, ref.__code__)]
    if sum(_statements(ref) for _, ref in copies) < MIN_COPY_STATEMENTS:
        return None
    labels, refs = (", ".join(names) for names in zip(*[(l, r.__qualname__) for l, r in copies]))
    verb = "is a copy" if len(copies) == 1 else "are copies"
    return f"{labels} {verb} of tinynn's {refs} — write your own"


def _same_code(a, b):
    """Same instructions with the same arguments (names, constants, nested functions), the
    docstring aside."""
    return _instructions(a) == _instructions(b)


def _instructions(code):
    """(operation, argument) of each instruction, jump targets as instruction numbers. A method
    call on a module (np.mean(...)) compiles to LOAD_ATTR in a file that imports the module and
    to LOAD_METHOD in a notebook cell that does not: both count as LOAD_ATTR (from Python 3.12
    the file's LOAD_ATTR is followed by a PUSH_NULL, which is not compared). Before Python 3.11
    a nested function or comprehension is made from its code and its qualified name, a constant
    that names the enclosing class ('Dense.forward.<locals>.<listcomp>'): only its last part
    counts, as from 3.11, where the name lives in the code."""
    every = list(dis.get_instructions(code))
    instructions = [i for i in every if i.opname not in ("CACHE", "PUSH_NULL")]
    number, compared = {}, 0   # a skipped instruction's number is the next compared one's
    for i in every:
        number[i.offset] = compared
        compared += i.opname not in ("CACHE", "PUSH_NULL")
    jumps = set(dis.hasjrel) | set(dis.hasjabs)
    result = []
    for i, following in zip(instructions, instructions[1:] + [None]):
        argument = i.argval
        if i.opcode in jumps:
            argument = number.get(argument)
        elif inspect.iscode(argument):
            argument = _instructions(argument)
        elif isinstance(argument, str) and following and following.opname == "MAKE_FUNCTION":
            argument = argument.rpartition(".")[2]
        result.append(("LOAD_ATTR" if i.opname == "LOAD_METHOD" else i.opname, argument))
    return result


def _statements(func):
    """How many statements ``func``'s body holds, nested ones (an if's, an inner function's)
    included and the docstring not, read from tinynn's source file."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return 0
    definition = tree.body[0]
    body = definition.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return sum(isinstance(node, ast.stmt) for stmt in body for node in ast.walk(stmt))


# ================================================================ tripwires on the live reference
HOOK = "__tinynn_grading_tripwire__"


def live_functions(paths, base_paths):
    """The live package's reference functions at ``paths`` (module, qualname) (those whose code
    is genuinely tinynn's: a reference the student replaced has no tripwire, its replacement is
    judged as a candidate)."""
    live = live_package()
    functions = []
    for path in paths:
        try:
            references = [resolve(live, path)]
            bases = [resolve(live, base) for base in base_paths]
        except (AttributeError, ImportError):
            continue
        functions += [f for f in _reference_functions(references, bases)
                      if _in_package(f.__code__.co_filename) and _is_tinynn(f)]
    return list({id(f): f for f in functions}.values())


@contextlib.contextmanager
def tripwires(functions):
    """While the block runs, each function's code is replaced by a tripwire that records
    (caller's code, function's qualname) in the yielded list and then runs the original, so the
    call is seen however the student reached the function (attribute, alias, super()).
    Restored in ``finally``."""
    calls, originals, hooked = [], [], []

    def tripwire(index, args, kwargs):
        func, original = originals[index]
        frame = sys._getframe(2)          # 0 here, 1 the tripwire code, 2 its caller
        while frame is not None and _in_package(frame.f_code.co_filename):
            frame = frame.f_back          # tinynn's own frames (e.g. a base class) lead there
        calls.append((frame.f_code if frame else None, func.__qualname__))
        return original(*args, **kwargs)

    try:
        for index, func in enumerate(functions):
            original = types.FunctionType(func.__code__, func.__globals__, func.__name__,
                                          func.__defaults__, func.__closure__)
            original.__kwdefaults__ = func.__kwdefaults__
            originals.append((func, original))
            if HOOK not in func.__globals__:
                func.__globals__[HOOK] = tripwire
                hooked.append(func.__globals__)
            func.__code__ = _tripwire_code(func.__code__, index)
        yield calls
    finally:
        for func, original in originals:
            func.__code__ = original.__code__
        for namespace in hooked:
            namespace.pop(HOOK, None)


def _tripwire_code(code, index):
    """Code that calls the hook with (index, args, kwargs), with ``code``'s free variables (a
    function's code can only be swapped for code with as many, e.g. super()'s __class__)."""
    free = code.co_freevars
    source = "\n".join([
        "def outer():",
        *(f"    {name} = None" for name in free),
        "    def tripwire(*args, **kwargs):",
        f"        {', '.join(free)}" if free else "        pass",
        f"        return {HOOK}({index}, args, kwargs)",
        "    return tripwire"])
    namespace = {}
    exec(compile(source, "<tinynn tripwire>", "exec"), namespace)
    names = {"co_name": code.co_name}
    if hasattr(code, "co_qualname"):   # Python 3.11+
        names["co_qualname"] = code.co_qualname
    return namespace["outer"]().__code__.replace(**names)


def student_name(code, names, candidates):
    """Name the student's code that made a call: its qualname, or the candidate's notebook name
    for a function candidate (a lambda or an alias has an unhelpful qualname)."""
    if code is None:
        return " and ".join(names)
    for name, candidate in zip(names, candidates):
        if getattr(candidate, "__code__", None) is code:
            return name
        prefix = f"{getattr(candidate, '__qualname__', '')}."
        if inspect.isclass(candidate) and _qualname(code).startswith(prefix):
            return name + _qualname(code)[len(prefix) - 1:]
    return _qualname(code)


# ================================================================ qualified names of code
SCOPES = {ast.Lambda: "<lambda>", ast.ListComp: "<listcomp>", ast.SetComp: "<setcomp>",
          ast.DictComp: "<dictcomp>", ast.GeneratorExp: "<genexpr>"}  # unnamed code's names


def _qualname(code):
    """The qualified name of a function's code, e.g. 'Dense.forward'. Python 3.11+ keeps it in
    the code (co_qualname); before, it is read from the source (a file, or a notebook cell that
    IPython keeps in linecache): the definition named co_name at line co_firstlineno."""
    if hasattr(code, "co_qualname"):
        return code.co_qualname
    try:
        tree = ast.parse("".join(linecache.getlines(code.co_filename)))
    except (SyntaxError, ValueError):
        return code.co_name
    return _definitions(tree).get((code.co_firstlineno, code.co_name), code.co_name)


def _definitions(node, prefix=""):
    """{(first line, code name): qualified name} of the scopes in ``node`` (a function's first
    line is its first decorator's)."""
    found = {}
    for child in ast.iter_child_nodes(node):
        inner = prefix
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                or type(child) in SCOPES:
            name = getattr(child, "name", None) or SCOPES[type(child)]
            first = min([child.lineno, *(d.lineno for d in getattr(child, "decorator_list", []))])
            found[first, name] = prefix + name
            inner = prefix + name + ("." if isinstance(child, ast.ClassDef) else ".<locals>.")
        found.update(_definitions(child, inner))
    return found
