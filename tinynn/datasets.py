"""The course's real datasets, fetched once, verified, and cached in the data folder.

MNIST
    ``load_mnist()`` reads the cache folder ``<data_dir>/mnist/``: 60,000 training and 10,000 test
    digits as ``.npy`` files holding exactly the arrays it returns (float32 pixels in [0, 1], the
    uint8 pixel / 255, and int64 labels), plus ``SHA256SUMS``. The files are *memory-mapped*, not
    read: the arrays' memory is the operating system's page cache of the files, so every kernel on
    a machine (30 students on one JupyterHub) shares one copy instead of holding its own ~220 MB.
    When the cache is missing it is built from a source (``TINYNN_DATA_MIRROR``, then ``MIRRORS``)
    that holds either Nielsen's ``mnist.pkl.gz`` (looked for first) or the four official IDX
    files. Three rules keep this safe:

    * every file is verified against its published SHA-256 before anything opens it
      (``tinynn.download.fetch``);
    * the pickle is read by an unpickler that can only rebuild numpy arrays, nothing else;
    * every cache file is written to a temporary file and renamed into place, and
      ``SHA256SUMS`` is written last: without it there is no cache, and with it every file is
      complete. Each load checks every file against it, so a damaged cache is reported, never
      used.

Names
    ``load_names()`` returns the 32,033 lowercase first names of ``names.txt`` from Andrej
    Karpathy's makemore (MIT licence), the training set of the character-level language models
    of notebooks 13 and 14. The file is small and its SHA-256 is published, so the cache is the
    file itself, ``<data_dir>/names.txt``, checked at every load.

Importing this module never touches the network; only building a missing cache does.
"""
import functools
import gzip
import hashlib
import math
import pickle
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .download import MIRROR_ENV, data_folder, fetch, first_success, join, sha256, sources
from .errors import DataError
from .files import atomic_write

CACHE_NAME = "mnist"        # the cache folder in data_dir
SUMS_NAME = "SHA256SUMS"    # in the cache folder, in `sha256sum` format: `sha256sum -c` checks it
KEYS = ("x_train", "y_train", "x_test", "y_test")

# Michael Nielsen's pickle: ((x, y) train 50k, (x, y) validation 10k, (x, y) test 10k),
# x float32 of shape (n, 784) holding pixel/256, y int64. Train + validation = the official 60k.
PKL_NAME = "mnist.pkl.gz"
PKL_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"

# The official IDX files (LeCun, Cortes, Burges), by the cache key they become.
# SHA-256 as listed in tensorflow-datasets (url_checksums/mnist.txt) and torchvision.
IDX_FILES = {
    "x_train": ("train-images-idx3-ubyte.gz",
                "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
    "y_train": ("train-labels-idx1-ubyte.gz",
                "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
    "x_test": ("t10k-images-idx3-ubyte.gz",
               "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
    "y_test": ("t10k-labels-idx1-ubyte.gz",
               "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
}

# Public MNIST mirrors, tried in order after TINYNN_DATA_MIRROR: (base URL, formats it holds).
MIRRORS = (
    ("https://raw.githubusercontent.com/mnielsen/neural-networks-and-deep-learning/master/data",
     ("pkl",)),
    ("https://storage.googleapis.com/cvdf-datasets/mnist", ("idx",)),
    ("https://ossci-datasets.s3.amazonaws.com/mnist", ("idx",)),
)

# makemore's names.txt at commit 988aa59: 32,033 lowercase names, one a line (the last one without
# a line break, so `wc -l` counts 32,032), MIT licence.
NAMES_NAME = "names.txt"
NAMES_SHA256 = "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d"
# Public mirrors, tried in order after TINYNN_DATA_MIRROR. The SHA-256 check refuses any
# version but that commit's, whichever mirror it comes from.
NAMES_MIRRORS = ("https://raw.githubusercontent.com/karpathy/makemore/988aa59",
                 "https://raw.githubusercontent.com/karpathy/makemore/master")

_SIZES = {"train": 60000, "test": 10000}


def ensure_mnist(data_dir=None, progress=True):
    """Make sure a valid MNIST cache exists (fetch and convert it if needed); return its folder.

    A damaged cache is rebuilt. ``python -m tinynn data`` calls this to seed a machine once,
    after which every notebook runs offline.
    """
    path = _cache_path(data_dir)
    if (path / SUMS_NAME).exists():
        try:
            _read_cache(path)
            return path
        except DataError as err:
            warnings.warn(f"{err} Rebuilding it now.", stacklevel=2)
    _build_cache(path, progress)
    return path


def load_mnist(data_dir=None, flatten=True, progress=True):
    """The MNIST digits as ``(x_train, y_train), (x_test, y_test)``.

    x is float32 in [0, 1] (uint8 pixel / 255) with shape (n, 784), or (n, 28, 28) when
    ``flatten=False``; y is int64 class indices 0..9. n is 60,000 for train and 10,000 for test.
    The first call may download about 17 MB (with a progress bar unless ``progress=False``);
    later calls only check and map the cache.

    The arrays are copy-on-write maps of the cache files: reading them shares the machine's one
    copy in memory; writing to one (``x_train[0] = 0``) is allowed and gives this process a
    private copy of just the pages written, never changing the files or other kernels' data.
    """
    path = _cache_path(data_dir)
    if not (path / SUMS_NAME).exists():
        _build_cache(path, progress)
    arrays = _read_cache(path)

    def images(key):
        x = arrays[key]
        return x.reshape(len(x), -1) if flatten else x  # a view: still the shared pages

    return (images("x_train"), arrays["y_train"]), (images("x_test"), arrays["y_test"])


def load_names(data_dir=None, progress=True):
    """The 32,033 names of makemore's ``names.txt`` as a list of str: ``["emma", "olivia", ...]``.

    Each is lowercase a-z, in the file's order. The first call fetches the file (228 kB) from
    ``$TINYNN_DATA_MIRROR`` or ``NAMES_MIRRORS`` into ``<data_dir>/names.txt`` (a progress bar
    unless ``progress=False``). Every call checks the bytes it reads against the published
    SHA-256 before using them, and fetches the file again, with a warning, if it is damaged.
    """
    path = data_folder(data_dir) / NAMES_NAME
    if path.exists():
        raw = path.read_bytes()
        if hashlib.sha256(raw).hexdigest() == NAMES_SHA256:
            return raw.decode("ascii").splitlines()
        warnings.warn(f"{path} does not match its SHA-256 (damaged or changed); fetching it "
                      f"again.", stacklevel=2)
    _fetch_names(path, progress)
    return load_names(data_dir, progress=False)


def _fetch_names(path, progress):
    """Fetch ``names.txt`` from the first source that has a verified copy, into ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def attempt(base):
        # A private folder per fetch: two kernels fetching at once never share a partial file.
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as work:
            verified = fetch(join(base, NAMES_NAME), Path(work) / NAMES_NAME, NAMES_SHA256,
                             progress)
            verified.replace(path)  # a rename: readers see no file or the whole verified one

    first_success([(label, functools.partial(attempt, base))
                   for label, base in sources(NAMES_MIRRORS)],
                  f"fetch {NAMES_NAME} into {path.parent}",
                  f"Check your internet connection, or set {MIRROR_ENV} to a folder or URL that "
                  f"holds {NAMES_NAME}.")


# --------------------------------------------------------------------------- the MNIST cache

def _cache_path(data_dir):
    return data_folder(data_dir) / CACHE_NAME


def _check_mnist(arrays, pixels=np.uint8):
    """Raise DataError unless ``arrays`` is MNIST: ``pixels``-typed images, labels 0..9.

    Sources give uint8 pixels; the cache holds float32 ones (``_as_cached``)."""
    if sorted(arrays) != sorted(KEYS):
        raise DataError(f"expected arrays x_train, y_train, x_test, y_test, found {sorted(arrays)}")
    for split, n in _SIZES.items():
        x, y = arrays["x_" + split], arrays["y_" + split]
        if x.shape != (n, 28, 28) or x.dtype != pixels:
            raise DataError(f"x_{split} should be {np.dtype(pixels)} of shape {(n, 28, 28)}, "
                            f"got {x.dtype} of shape {x.shape}")
        if y.shape != (n,) or y.dtype.kind not in "ui" or y.min() < 0 or y.max() > 9:
            raise DataError(f"y_{split} should hold {n} integer labels in 0..9, "
                            f"got {y.dtype} of shape {y.shape}")


def _as_cached(arrays):
    """Source arrays (checked, uint8 pixels) -> the arrays ``load_mnist`` returns, as cached:
    pixels float32 ``pixel / 255`` (0 -> 0.0, 255 -> 1.0), labels int64."""
    def scaled(x):
        x = x.astype(np.float32)
        x /= 255
        return x
    return {key: scaled(a) if key.startswith("x") else a.astype(np.int64)
            for key, a in arrays.items()}


def _read_sums(path):
    """``SHA256SUMS`` as {file name: hex digest}."""
    sums = {}
    for line in path.read_text(encoding="ascii").splitlines():
        digest, name = line.split(maxsplit=1)
        sums[name.lstrip("*")] = digest
    return sums


def _read_cache(path):
    """Check every cache file against ``SHA256SUMS`` and map it copy-on-write (``mmap_mode="c"``:
    the file is opened read-only, so a shared read-only cache folder works); check the arrays.
    A damaged cache raises DataError."""
    try:
        sums = _read_sums(path / SUMS_NAME)
        arrays = {}
        for key in KEYS:
            file = path / f"{key}.npy"
            if sha256(file) != sums.get(file.name):
                raise DataError(f"{file.name} does not match its SHA-256 in {SUMS_NAME}")
            # view: a plain ndarray (not np.memmap) that keeps the map alive
            arrays[key] = np.load(file, mmap_mode="c", allow_pickle=False).view(np.ndarray)
        _check_mnist(arrays, pixels=np.float32)
    except Exception as err:
        raise DataError(f"The MNIST cache {path} is damaged ({err}). Delete it, or run "
                        f"`python -m tinynn data` to rebuild it.") from err
    return arrays


def _write_cache(path, arrays):
    """Write the cache folder: each ``.npy`` atomically, then ``SHA256SUMS``, which makes it valid.

    Interrupted, it leaves no half-written file and no ``SHA256SUMS``, so the next load builds
    the cache again. Two kernels building at once write identical bytes, so it does not matter
    whose file ends up in place."""
    path.mkdir(exist_ok=True)
    sums = []
    for key, array in arrays.items():
        with atomic_write(path / f"{key}.npy") as f:
            np.save(f, array, allow_pickle=False)
        sums.append(f"{sha256(path / f'{key}.npy')}  {key}.npy\n")
    with atomic_write(path / SUMS_NAME, "w") as f:
        f.writelines(sums)


def _build_cache(path, progress):
    """Try every source and format in turn until one yields valid MNIST, then write the cache."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def attempt(base, fmt):
        # Raw downloads live in a private temporary folder that is always removed.
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".download-") as work:
            arrays = _FORMATS[fmt](base, Path(work), progress)
            _check_mnist(arrays)
        return arrays

    arrays = first_success(
        [(f"{label} [{fmt}]", functools.partial(attempt, base, fmt))
         for label, base, formats in _mnist_sources() for fmt in formats],
        f"build the MNIST cache {path}",
        f"Check your internet connection, or set {MIRROR_ENV} to a folder or URL that holds "
        f"{PKL_NAME} or the four IDX .gz files, then run `python -m tinynn data`.")
    _write_cache(path, _as_cached(arrays))


def _mnist_sources():
    """(label, base, formats) for every MNIST source; the local mirror may hold either format."""
    formats = dict(MIRRORS)
    return [(label, base, formats.get(base, ("pkl", "idx")))
            for label, base in sources([base for base, _ in MIRRORS])]


# --------------------------------------------------------------------------- the two MNIST formats

_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array rebuilder, whatever module holds it


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that can rebuild numpy arrays and nothing else.

    A pickle is a little program: it may name *any* importable callable (``os.system``...) and
    call it. ``find_class`` is where names get resolved, so we allow only the three that array
    reconstruction needs and refuse the rest.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy < 2 spelling
        ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy >= 2 spelling
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"refusing to unpickle {module}.{name}: only numpy arrays are "
                            f"allowed in an MNIST pickle") from None


def _pixels(x, where):
    """Nielsen stores pixel/256 as float32; ``rint(x * 256)`` recovers the uint8 pixel exactly."""
    k = np.rint(x * 256)
    if k.min() < 0 or k.max() > 255:
        raise DataError(f"{where}: values outside [0, 255/256], not MNIST pixels")
    return k.astype(np.uint8).reshape(len(k), 28, 28)


def _read_pkl(path):
    """Nielsen's ``mnist.pkl.gz`` -> cache arrays (train + validation = the 60k training set)."""
    try:
        with gzip.open(path, "rb") as f:
            # Written by Python 2: its byte strings decode as latin1, as numpy expects.
            (xa, ya), (xb, yb), (xt, yt) = _NumpyOnlyUnpickler(f, encoding="latin1").load()
        x_train, x_test = np.concatenate([xa, xb]), np.asarray(xt)
        arrays = {"x_train": _pixels(x_train, path.name), "y_train": np.concatenate([ya, yb]),
                  "x_test": _pixels(x_test, path.name), "y_test": np.asarray(yt)}
    except DataError:
        raise
    except Exception as err:
        raise DataError(f"{path.name} is not in the layout of Nielsen's MNIST pickle ({err})") \
            from err
    return arrays


def _read_idx(path, ndim):
    """Parse a gzipped IDX file of uint8 data with ``ndim`` dimensions.

    Layout: two zero bytes, a type code (0x08 = uint8), the number of dimensions, each size as a
    big-endian uint32, then the data in C order.
    """
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:
        raise DataError(f"{path.name} is not a valid gzip file ({err})") from err
    magic, header = bytes([0, 0, 0x08, ndim]), 4 + 4 * ndim
    if raw[:4] != magic:
        raise DataError(f"{path.name}: bad magic number 0x{raw[:4].hex()} (expected "
                        f"0x{magic.hex()}: uint8 data in {ndim} dimensions)")
    if len(raw) < header:
        raise DataError(f"{path.name}: the header is cut short")
    shape = tuple(int(n) for n in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if len(raw) - header != math.prod(shape):
        raise DataError(f"{path.name}: the header promises {shape} = {math.prod(shape)} bytes "
                        f"of data, the file holds {len(raw) - header}")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def _from_pkl(base, work, progress):
    return _read_pkl(fetch(join(base, PKL_NAME), work / PKL_NAME, PKL_SHA256, progress))


def _from_idx(base, work, progress):
    return {key: _read_idx(fetch(join(base, name), work / name, sha256, progress),
                           ndim=3 if key.startswith("x") else 1)
            for key, (name, sha256) in IDX_FILES.items()}


_FORMATS = {"pkl": _from_pkl, "idx": _from_idx}
