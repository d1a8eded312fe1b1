"""Fetching a data file safely: where it comes from, where it goes, and proof it is the right one.

Every dataset of the course (``tinynn.datasets``) is published with the SHA-256 of its files, and
is fetched the same way:

* **Sources** are tried in order: first the folder or URL named by the environment variable
  ``TINYNN_DATA_MIRROR`` (an offline classroom copy), then the dataset's public mirrors.
* **Verify before use**: a file is streamed into ``<name>.part`` and hashed as its bytes arrive;
  only when the SHA-256 equals the published value is it renamed to its real name. A mismatch
  (tampering, a cut connection) deletes it, so nothing ever opens unverified data.
* **The data folder** (``default_data_dir()``) holds the verified, converted caches.

Importing this module never touches the network; ``urllib`` and ``http`` load only for a fetch.
"""
import hashlib
import os
import urllib.parse
from pathlib import Path

from .errors import DataError
from .progress import progress_bar

DATA_DIR_ENV = "TINYNN_DATA_DIR"
MIRROR_ENV = "TINYNN_DATA_MIRROR"
TIMEOUT = 30  # seconds a download may stall before we give up on that source


def default_data_dir():
    """Where the dataset caches live when no ``data_dir`` is given.

    ``$TINYNN_DATA_DIR`` if set; else the ``data/`` folder of a tinynn source checkout;
    else ``~/.cache/tinynn``.
    """
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    repo = Path(__file__).resolve().parent.parent
    if (repo / "data").is_dir() and (repo / "pyproject.toml").is_file():
        return repo / "data"
    return Path.home() / ".cache" / "tinynn"


def data_folder(data_dir):
    """``data_dir`` as a Path, or ``default_data_dir()`` when it is None."""
    return default_data_dir() if data_dir is None else Path(data_dir).expanduser()


def sources(public):
    """``(label, base)`` for every place to look, the local mirror ($TINYNN_DATA_MIRROR) first,
    then each base of ``public``. A base is a folder or an http(s):// or file:// URL."""
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    local = [(f"{MIRROR_ENV}={mirror}", mirror)] if mirror else []
    return local + [(base, base) for base in public]


def first_success(attempts, what, advice):
    """The result of the first of ``attempts``, ``(label, function)`` pairs tried in turn, that
    returns. A DataError or OSError (no route, 404, timeout, a failed check, disk trouble) moves
    on to the next; when every one fails, DataError says what could not be done, why for each
    source, and ``advice``."""
    failures = []
    for label, attempt in attempts:
        try:
            return attempt()
        except (DataError, OSError) as err:
            failures.append(f"{label}: {err}")
    raise DataError(f"Could not {what}. Sources tried:\n  - " + "\n  - ".join(failures)
                    + f"\n{advice}")


def sha256(path):
    """SHA-256 of a file, read in 1 MB chunks (through the page cache, not into memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def join(base, name):
    """The file ``name`` inside the folder or URL ``base``."""
    if _is_url(base):
        return base.rstrip("/") + "/" + name
    return str(Path(base).expanduser() / name)


def fetch(source, dest, expected_sha256, progress=False):
    """Copy ``source`` (URL or path) to ``dest`` only if its SHA-256 equals ``expected_sha256``.

    The bytes go to ``dest.part``, hashed as they arrive; only a verified file is renamed to
    ``dest``, so nothing ever opens unverified data. On any failure the partial file is deleted
    and DataError says what went wrong.
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    what_to_do = (f"Run again to re-download it, or set {MIRROR_ENV} to a folder or URL that "
                  f"holds a good copy of {dest.name}.")
    try:
        actual = _download(source, part, dest.name, progress, what_to_do)
        if actual != expected_sha256:
            raise DataError(f"{dest.name} from {source} failed its SHA-256 check (expected "
                            f"{expected_sha256}, got {actual}): it is corrupted, truncated or "
                            f"tampered with, and was deleted. {what_to_do}")
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return dest


def _is_url(source):
    return urllib.parse.urlsplit(str(source)).scheme in ("http", "https", "file")


def _open(source):
    """An open binary stream for a URL or a local path, and its size in bytes (None if unknown)."""
    if _is_url(source):
        import urllib.request  # lazy: pulls in http and ssl, which `import tinynn` should not pay for
        request = urllib.request.Request(source, headers={"User-Agent": "tinynn"})
        response = urllib.request.urlopen(request, timeout=TIMEOUT)
        length = response.headers.get("Content-Length")
        return response, int(length) if length else None
    f = open(source, "rb")
    return f, os.fstat(f.fileno()).st_size


def _download(source, out_path, name, progress, what_to_do):
    """Stream ``source`` into ``out_path`` and return the SHA-256 of the bytes received."""
    import http.client  # lazy, see _open
    digest, received = hashlib.sha256(), 0
    try:
        stream, size = _open(source)
        with stream, open(out_path, "wb") as out:
            bar = progress_bar(total=size, description=name, unit="B", enabled=progress)
            try:
                for chunk in iter(lambda: stream.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
            finally:
                bar.close()
    except (OSError, http.client.HTTPException) as err:  # no route, 404, timeout, cut connection
        raise DataError(f"could not fetch {source}: {err}") from err
    if size is not None and received != size:
        raise DataError(f"{source} is truncated: got {received} of {size} bytes; the partial "
                        f"file was deleted. {what_to_do}")
    return digest.hexdigest()
