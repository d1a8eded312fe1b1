"""Writing files safely: a crash, a full disk or a Ctrl-C mid-write never leaves a half file."""
import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_write(path, mode="wb"):
    """``with atomic_write(path) as f: ...`` writes to a temporary file in the same folder,
    then renames it over ``path`` (an atomic step): readers see the old file or the complete
    new one, never a mix. On any error the temporary file is removed and ``path`` is untouched.
    The file gets mode 0644 (mkstemp makes it private; a shared classroom cache must be
    readable)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
