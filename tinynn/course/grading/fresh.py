"""A fresh private copy of tinynn, loaded from the package's files, for the hidden tests.

A hidden test takes both the reference (e.g. ``Dense``) and the check (e.g. ``check_layer``) from
this copy, so patching ``tinynn.Dense``, ``tinynn.course.exercises.check_layer`` or a notebook's
``check_layer`` changes nothing. The copy shares one module with the live package,
``tinynn.random`` (the generator, no reference code), so a dropout or initialiser that draws from
the notebook's ``tn.random.rng()`` draws the numbers the check expects.
"""
import contextlib
import importlib
import importlib.util
import itertools
import sys
from pathlib import Path

ROOT = __name__.partition(".")[0]                     # "tinynn": the live package's name
PACKAGE_DIR = Path(__file__).resolve().parents[2]     # the tinynn package on disk
PRIVATE_PREFIX = f"_{ROOT}_grading_"                  # module names of the fresh copies
_loads = itertools.count()


@contextlib.contextmanager
def fresh_tinynn():
    """Load a private copy of the tinynn package from its files; yield (package, exercises).

    The copy lives under a private module name while the ``with`` block runs (its functions
    import lazily, so it must stay importable), and is removed from ``sys.modules`` afterwards.
    Its ``random`` module is the live ``tinynn.random``: one generator for both copies."""
    name = f"{PRIVATE_PREFIX}{next(_loads)}"
    live_random = importlib.import_module(f"{ROOT}.random")
    spec = importlib.util.spec_from_file_location(
        name, PACKAGE_DIR / "__init__.py", submodule_search_locations=[str(PACKAGE_DIR)])
    package = importlib.util.module_from_spec(spec)
    package.random = live_random
    sys.modules[name], sys.modules[f"{name}.random"] = package, live_random
    try:
        spec.loader.exec_module(package)
        yield package, importlib.import_module(f"{name}.course.exercises")
    finally:
        for key in [k for k in sys.modules if k == name or k.startswith(f"{name}.")]:
            del sys.modules[key]


def live_package():
    """The tinynn the notebook imported."""
    return sys.modules.get(ROOT) or importlib.import_module(ROOT)


def resolve(package, path):
    """``package``'s object at ``path`` = (module, qualname), e.g. ("net", "Net.forward")."""
    module, qualname = path
    obj = importlib.import_module(f"{package.__name__}.{module}")
    for attr in qualname.split("."):
        obj = getattr(obj, attr)
    return obj
