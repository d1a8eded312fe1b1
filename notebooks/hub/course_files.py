"""Give a student their own copy of the course, then start their Jupyter server.

JupyterHub runs this *as the student*, at every start of their server (``c.Spawner.cmd`` in
``jupyterhub_config.py``)::

    python course_files.py COURSE DEST -- jupyterhub-singleuser [the spawner's arguments...]

It copies every file of COURSE (the student notebooks the teacher wrote once with
``python -m tinynn student notebooks/ --out COURSE``) into DEST (``~`` is the student's home)
**unless DEST already has a file of that name**. So the first login brings the whole course, a
later one only the notebooks released since, and a student's own work is never overwritten. To
start a notebook afresh, a student deletes or renames it and restarts their server
(File > Hub Control Panel > Stop My Server, then Start).

Then it *becomes* the server (``os.execvp``): same process, so the spawner that started it
watches and stops the server itself.
"""
import os
import shutil
import sys
import tempfile
from pathlib import Path


def copy_missing(course, dest):
    """Copy each file under ``course`` to the same place under ``dest`` if nothing is there yet;
    return the paths written."""
    course, dest = Path(course), Path(dest).expanduser()
    written = []
    for src in sorted(p for p in course.rglob("*") if p.is_file()):
        target = dest / src.relative_to(course)
        if target.exists():
            continue                         # the student's copy: theirs, edited or not
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_atomically(src, target)
        written.append(target)
    return written


def copy_atomically(src, target):
    """Copy ``src`` to ``target`` so that ``target`` is never half a notebook: write a temporary
    file in the same folder, then rename it over ``target`` (one atomic step); on any error the
    temporary file is removed and ``target`` is untouched. The copy gets mode 0644 (readable,
    as a copied file would be; mkstemp makes it private)."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with open(src, "rb") as f, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(f, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv):
    if len(argv) < 4 or argv[2] != "--":
        sys.exit(__doc__)
    course, dest, command = argv[0], argv[1], argv[3:]
    for path in copy_missing(course, dest):
        print(f"course_files: new {path}", file=sys.stderr)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
