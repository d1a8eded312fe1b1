"""Tests for tinynn.datasets and tinynn.download: MNIST and names, fetched, verified, cached.

These tests never touch the internet: the public mirror list is emptied and any socket that is
not loopback fails the test. Downloads are served by a loopback HTTP server the tests start.
"""
import functools
import gzip
import hashlib
import os
import pickle
import shutil
import socket
import struct
import threading
import warnings
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

import tinynn.datasets as datasets
import tinynn.download as download
from tinynn.errors import DataError

MIRROR_ENV, DATA_DIR_ENV = "TINYNN_DATA_MIRROR", "TINYNN_DATA_DIR"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
# Official MNIST class counts (train, test): Nielsen's train + validation must reproduce them.
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
CACHE_FILES = ["SHA256SUMS", "x_test.npy", "x_train.npy", "y_test.npy", "y_train.npy"]


def _real_data_folder():
    """Folder with the real mnist.pkl.gz: $TINYNN_DATA_MIRROR if a folder, else ../shared/data."""
    candidates = [os.environ.get(MIRROR_ENV, ""),
                  Path(__file__).resolve().parents[2] / "shared" / "data"]
    for folder in candidates:
        if folder and (Path(folder) / datasets.PKL_NAME).is_file():
            return Path(folder)
    return None


REAL_DATA = _real_data_folder()  # read before the fixtures below clear the environment
needs_real_mnist = pytest.mark.skipif(
    REAL_DATA is None,
    reason="real MNIST not found: put mnist.pkl.gz in ../shared/data or point TINYNN_DATA_MIRROR "
           "at a folder holding it")


# --------------------------------------------------------------------------- fixtures, helpers

@pytest.fixture(autouse=True, scope="module")
def offline():
    """No public mirrors, no ambient data env vars, and no sockets except loopback."""
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise AssertionError(f"a test tried to reach the network: {address}")
        return real_connect(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in LOOPBACK:
            raise AssertionError(f"a test tried to resolve {host}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets, "MIRRORS", ())
        mp.setattr(datasets, "NAMES_MIRRORS", ())
        mp.setattr(socket.socket, "connect", connect)
        mp.setattr(socket, "getaddrinfo", getaddrinfo)
        mp.delenv(MIRROR_ENV, raising=False)
        mp.delenv(DATA_DIR_ENV, raising=False)
        yield


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _LyingHandler(_QuietHandler):
    """Promises 1000 more bytes than it sends, like a connection cut mid-download."""

    def do_GET(self):
        body = Path(self.directory, self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + 1000))
        self.end_headers()
        self.wfile.write(body)


class _Server:
    """A ThreadingHTTPServer on 127.0.0.1 (free port) serving ``folder`` from a thread."""

    def __init__(self, folder, handler=_QuietHandler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                         functools.partial(handler, directory=str(folder)))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True,
                                       kwargs={"poll_interval": 0.02})  # quick shutdown
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def stop(self):
        if self.thread.is_alive():
            self.httpd.shutdown()
            self.thread.join()
            self.httpd.server_close()


@pytest.fixture
def serve():
    """``serve(folder, handler=...)`` starts a loopback server; all are shut down afterwards."""
    servers = []

    def start(folder, handler=_QuietHandler):
        servers.append(_Server(folder, handler))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _write_idx(path, array):
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), compresslevel=1))


def _idx_mirror(folder, arrays):
    """Write arrays as the four IDX files; return the IDX_FILES table with their checksums."""
    table = {}
    for key, (name, _) in datasets.IDX_FILES.items():
        _write_idx(folder / name, arrays[key])
        table[key] = (name, _sha256(folder / name))
    return table


def _fake_mnist():
    """Full-size, MNIST-shaped arrays that compress well (each image is one grey level)."""
    def images(n):
        return np.broadcast_to((np.arange(n) % 251).astype(np.uint8)[:, None, None],
                               (n, 28, 28)).copy()
    return {"x_train": images(60000), "y_train": (np.arange(60000) % 10).astype(np.uint8),
            "x_test": images(10000), "y_test": (np.arange(10000) % 10).astype(np.uint8)}


@pytest.fixture(scope="module")
def fake_idx(tmp_path_factory):
    """A folder mirror with full-size fake IDX files: (folder, checksum table, arrays)."""
    folder = tmp_path_factory.mktemp("idx-mirror")
    arrays = _fake_mnist()
    return folder, _idx_mirror(folder, arrays), arrays


def _nielsen_pickle(path, splits):
    """Write ``splits`` [(pixels uint8 (n, 784), labels)] * 3 the way Nielsen did: x = pixel / 256.

    (Python 3's protocol 2 would spell bytes as ``_codecs.encode`` calls, which the restricted
    unpickler rightly refuses; Nielsen's Python 2 file and protocols >= 3 need no such call.)
    """
    obj = tuple(((k / 256).astype(np.float32), y.astype(np.int64)) for k, y in splits)
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def _assert_mnist_shapes(train, test, flatten=True):
    for (x, y), n in ((train, 60000), (test, 10000)):
        assert x.shape == ((n, 784) if flatten else (n, 28, 28))
        assert x.dtype == np.float32 and y.dtype == np.int64 and y.shape == (n,)
        assert x.min() == 0.0 and x.max() <= 1.0


# --------------------------------------------------------------------------- real MNIST

@pytest.fixture(scope="module")
def real_cache(tmp_path_factory):
    """Build a cache from the real mnist.pkl.gz served over loopback HTTP (conversion #1)."""
    if REAL_DATA is None:
        pytest.skip("real MNIST not found (see needs_real_mnist)")
    folder = tmp_path_factory.mktemp("real-cache")
    server = _Server(REAL_DATA)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv(MIRROR_ENV, server.url)
            result = datasets.load_mnist(folder, progress=True)
    finally:
        server.stop()
    return folder, result


@needs_real_mnist
def test_real_mnist_over_http(real_cache):
    folder, (train, test) = real_cache
    _assert_mnist_shapes(train, test)
    assert train[0].max() == 1.0
    assert np.bincount(train[1]).tolist() == TRAIN_COUNTS
    assert np.bincount(test[1]).tolist() == TEST_COUNTS
    assert train[1][:3].tolist() == [5, 0, 4] and test[1][:3].tolist() == [7, 2, 1]
    # pixels are exact k/255 values (uint8 pixels in the sources)
    assert np.array_equal(train[0][:500] * 255, np.rint(train[0][:500] * 255))
    assert os.listdir(folder) == ["mnist"]  # the raw download is gone
    assert sorted(os.listdir(folder / "mnist")) == CACHE_FILES


@needs_real_mnist
def test_real_mnist_second_call_reads_cache_offline(real_cache, monkeypatch):
    folder, (train, test) = real_cache
    monkeypatch.setenv(DATA_DIR_ENV, str(folder))  # also exercises the default data_dir
    monkeypatch.setattr(download, "_open", lambda source: pytest.fail(f"fetched {source}"))
    (x, y), (xt, yt) = datasets.load_mnist()
    assert np.array_equal(x, train[0]) and np.array_equal(yt, test[1])


@needs_real_mnist
def test_real_mnist_from_folder_mirror(real_cache, tmp_path, monkeypatch):
    """Conversion #2: a folder mirror gives the same cache as the HTTP one."""
    _, (train, test) = real_cache
    monkeypatch.setenv(MIRROR_ENV, str(REAL_DATA))
    (x, y), (xt, yt) = datasets.load_mnist(tmp_path, flatten=False, progress=False)
    _assert_mnist_shapes((x, y), (xt, yt), flatten=False)
    assert np.array_equal(x.reshape(60000, 784), train[0]) and np.array_equal(y, train[1])
    assert np.array_equal(xt.reshape(10000, 784), test[0]) and np.array_equal(yt, test[1])


# --------------------------------------------------------------------------- IDX format

@pytest.mark.parametrize("shape", [(3,), (4, 2, 5), (1, 28, 28)])
def test_read_idx_roundtrip(tmp_path, shape):
    array = np.arange(np.prod(shape)).reshape(shape).astype(np.uint8)
    _write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(datasets._read_idx(tmp_path / "a.gz", ndim=len(shape)), array)


@pytest.mark.parametrize("magic", [b"\x00\x00\x08\x01", b"\x00\x00\x0d\x03", b"\x01\x02\x08\x03"])
def test_read_idx_bad_magic(tmp_path, magic):
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(magic + struct.pack(">3I", 1, 2, 2) + bytes(4)))
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: bad magic number"):
        datasets._read_idx(path, ndim=3)


@pytest.mark.parametrize("payload", [bytes(3), bytes(5)])
def test_read_idx_size_mismatch(tmp_path, payload):
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + struct.pack(">I", 4) + payload))
    with pytest.raises(DataError, match="header promises"):
        datasets._read_idx(path, ndim=1)


def test_read_idx_not_gzip(tmp_path):
    (tmp_path / "x.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="not a valid gzip"):
        datasets._read_idx(tmp_path / "x.gz", ndim=1)


def test_small_idx_over_http_with_injected_checksums(tmp_path, serve, monkeypatch):
    mirror, work = tmp_path / "mirror", tmp_path / "work"
    mirror.mkdir()
    work.mkdir()
    arrays = {"x_train": np.arange(3 * 784).reshape(3, 28, 28) % 256, "y_train": np.arange(3),
              "x_test": np.ones((2, 28, 28)), "y_test": np.array([9, 8])}
    monkeypatch.setattr(datasets, "IDX_FILES", _idx_mirror(mirror, arrays))
    got = datasets._from_idx(serve(mirror).url, work, progress=False)
    for key, array in arrays.items():
        assert got[key].dtype == np.uint8 and np.array_equal(got[key], array)


def test_small_idx_mirror_is_rejected_as_not_mnist(tmp_path, monkeypatch):
    """Valid IDX files of the wrong size never become a cache."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = {"x_train": np.zeros((3, 28, 28)), "y_train": np.arange(3),
              "x_test": np.zeros((2, 28, 28)), "y_test": np.arange(2)}
    monkeypatch.setattr(datasets, "IDX_FILES", _idx_mirror(mirror, arrays))
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    with pytest.raises(DataError, match=r"x_train should be uint8 of shape \(60000, 28, 28\)"):
        datasets.load_mnist(tmp_path / "cache")
    assert os.listdir(tmp_path / "cache") == []


def test_full_size_idx_mirror_over_http(tmp_path, serve, fake_idx, monkeypatch):
    folder, table, arrays = fake_idx
    monkeypatch.setattr(datasets, "IDX_FILES", table)
    monkeypatch.setenv(MIRROR_ENV, serve(folder).url + "/")
    (x, y), (xt, yt) = datasets.load_mnist(tmp_path, progress=False)
    _assert_mnist_shapes((x, y), (xt, yt))
    assert np.array_equal(x, arrays["x_train"].reshape(60000, 784) / np.float32(255))
    assert np.array_equal(yt, arrays["y_test"])
    assert os.listdir(tmp_path) == ["mnist"]


# --------------------------------------------------------------------------- fetch + verify

@pytest.mark.parametrize("kind", ["http", "file-url", "path"])
def test_fetch_verifies_and_copies(tmp_path, serve, kind):
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "blob.gz"
    src.write_bytes(os.urandom(3_000_000))
    source = {"http": lambda: serve(src.parent).url + "/blob.gz",
              "file-url": src.as_uri, "path": lambda: str(src)}[kind]()
    dest = download.fetch(source, tmp_path / "blob.gz", _sha256(src), progress=True)
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(os.listdir(tmp_path)) == ["blob.gz", "src"]


def _assert_rejected(err, tmp_path, name):
    message = str(err.value)
    assert name in message and MIRROR_ENV in message and "re-download" in message
    assert not (tmp_path / name).exists() and not (tmp_path / (name + ".part")).exists()


@pytest.mark.parametrize("damage", ["one byte changed", "truncated"])
def test_fetch_rejects_damaged_file(tmp_path, serve, damage):
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "t10k-labels-idx1-ubyte.gz"
    good = os.urandom(10_000)
    bad = good[:5000] + bytes([good[5000] ^ 1]) + good[5001:] if damage == "one byte changed" \
        else good[:7000]
    src.write_bytes(bad)
    expected = hashlib.sha256(good).hexdigest()
    with pytest.raises(DataError) as err:
        download.fetch(serve(src.parent).url + "/" + src.name, tmp_path / src.name, expected)
    assert expected in str(err.value) and hashlib.sha256(bad).hexdigest() in str(err.value)
    _assert_rejected(err, tmp_path, src.name)


def test_fetch_rejects_cut_connection(tmp_path, serve):
    (tmp_path / "src").mkdir()
    src = tmp_path / "src" / "mnist.pkl.gz"
    src.write_bytes(os.urandom(10_000))
    url = serve(src.parent, _LyingHandler).url + "/mnist.pkl.gz"
    with pytest.raises(DataError, match="truncated: got 10000 of 11000 bytes") as err:
        download.fetch(url, tmp_path / "mnist.pkl.gz", _sha256(src))
    _assert_rejected(err, tmp_path, "mnist.pkl.gz")


def test_tampered_idx_mirror_leaves_no_cache(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    arrays = {"x_train": np.zeros((3, 28, 28)), "y_train": np.arange(3),
              "x_test": np.zeros((2, 28, 28)), "y_test": np.arange(2)}
    monkeypatch.setattr(datasets, "IDX_FILES", _idx_mirror(mirror, arrays))
    labels = mirror / "train-labels-idx1-ubyte.gz"
    raw = bytearray(labels.read_bytes())
    raw[-3] ^= 0xFF
    labels.write_bytes(bytes(raw))
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    with pytest.raises(DataError) as err:
        datasets.load_mnist(tmp_path / "cache")
    message = str(err.value)
    assert "train-labels-idx1-ubyte.gz" in message and "failed its SHA-256 check" in message
    assert datasets.IDX_FILES["y_train"][1] in message and "python -m tinynn data" in message
    assert os.listdir(tmp_path / "cache") == []


def test_all_sources_fail_reports_each(tmp_path, serve, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    server = serve(empty)
    monkeypatch.setattr(datasets, "MIRRORS", ((server.url, ("pkl", "idx")),))
    monkeypatch.setenv(MIRROR_ENV, str(empty))
    with pytest.raises(DataError) as err:
        datasets.ensure_mnist(tmp_path / "cache", progress=False)
    message = str(err.value)
    assert message.count("[pkl]") == 2 and message.count("[idx]") == 2
    assert f"{MIRROR_ENV}={empty}" in message and "404" in message
    assert "No such file" in message and "python -m tinynn data" in message
    assert os.listdir(tmp_path / "cache") == []


def test_falls_back_to_the_next_source(tmp_path, fake_idx, monkeypatch):
    folder, table, _ = fake_idx
    monkeypatch.setattr(datasets, "IDX_FILES", table)
    monkeypatch.setattr(datasets, "MIRRORS", ((str(folder), ("idx",)),))
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "missing"))
    path = datasets.ensure_mnist(tmp_path / "cache", progress=False)
    assert path == tmp_path / "cache" / "mnist" and sorted(os.listdir(path)) == CACHE_FILES


# --------------------------------------------------------------------------- the pickle

class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"echo pwned > {self.marker}",)


class _EvalEvil:
    def __reduce__(self):
        return eval, ("1 + 1",)


def test_nielsen_pickle_converts_exactly(tmp_path):
    gen = np.random.default_rng(0)
    splits = [(gen.integers(0, 256, (n, 784)), gen.integers(0, 10, n)) for n in (5, 3, 4)]
    splits[0][0][0, :2] = [0, 255]
    _nielsen_pickle(tmp_path / "mnist.pkl.gz", splits)
    arrays = datasets._read_pkl(tmp_path / "mnist.pkl.gz")
    assert arrays["x_train"].dtype == np.uint8 and arrays["x_train"].shape == (8, 28, 28)
    assert np.array_equal(arrays["x_train"].reshape(8, 784),
                          np.concatenate([splits[0][0], splits[1][0]]))
    assert np.array_equal(arrays["y_train"], np.concatenate([splits[0][1], splits[1][1]]))
    assert np.array_equal(arrays["x_test"].reshape(4, 784), splits[2][0])


def test_nielsen_pickle_out_of_range_pixels(tmp_path):
    splits = [(np.full((2, 784), 256), np.zeros(2))] * 3  # 256/256 = 1.0 is not a uint8 pixel
    _nielsen_pickle(tmp_path / "mnist.pkl.gz", splits)
    with pytest.raises(DataError, match="outside"):
        datasets._read_pkl(tmp_path / "mnist.pkl.gz")


def test_pickle_with_wrong_layout(tmp_path):
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump({"x": [1, 2]}, f, protocol=2)
    with pytest.raises(DataError, match="layout of Nielsen"):
        datasets._read_pkl(tmp_path / "mnist.pkl.gz")


@pytest.mark.parametrize("evil", ["os.system", "eval"])
def test_malicious_pickle_is_refused(tmp_path, monkeypatch, evil):
    marker = tmp_path / "marker"
    payload = _Evil(marker) if evil == "os.system" else _EvalEvil()
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as f:
        pickle.dump(((payload, 1), 2, 3), f)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="refusing to unpickle"):
        datasets._read_pkl(tmp_path / "mnist.pkl.gz")
    assert not marker.exists()


def test_malicious_pickle_with_valid_checksum_end_to_end(tmp_path, serve, monkeypatch):
    """Even if a bad pickle matched the expected hash, nothing but arrays would be built."""
    mirror, marker = tmp_path / "mirror", tmp_path / "marker"
    mirror.mkdir()
    with gzip.open(mirror / "mnist.pkl.gz", "wb") as f:
        pickle.dump(_Evil(marker), f)
    monkeypatch.setattr(datasets, "PKL_SHA256", _sha256(mirror / "mnist.pkl.gz"))
    monkeypatch.setenv(MIRROR_ENV, serve(mirror).url)
    with pytest.raises(DataError, match=r"refusing to unpickle (posix|nt|os)\.system"):
        datasets.load_mnist(tmp_path / "cache")
    assert not marker.exists() and os.listdir(tmp_path / "cache") == []


def test_tampered_pickle_in_folder_mirror(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "mnist.pkl.gz").write_bytes(b"\x1f\x8b" + os.urandom(1000))
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    with pytest.raises(DataError) as err:
        datasets.load_mnist(tmp_path / "cache")
    assert datasets.PKL_SHA256 in str(err.value) and "mnist.pkl.gz" in str(err.value)
    assert os.listdir(tmp_path / "cache") == []


# --------------------------------------------------------------------------- the cache

def test_interrupted_conversion_leaves_no_cache(tmp_path, fake_idx, monkeypatch):
    folder, table, arrays = fake_idx
    monkeypatch.setattr(datasets, "IDX_FILES", table)
    monkeypatch.setenv(MIRROR_ENV, str(folder))
    real_save, calls = np.save, []

    def save_then_crash(file, array, **kwargs):
        calls.append(array)
        if len(calls) == 2:  # the first file is written, the second interrupted halfway
            file.write(b"\x93NUMPY half an array")
            raise KeyboardInterrupt  # e.g. the student pressed Ctrl-C / the kernel was interrupted
        real_save(file, array, **kwargs)

    monkeypatch.setattr(datasets.np, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        datasets.load_mnist(tmp_path)
    assert os.listdir(tmp_path) == ["mnist"]
    assert os.listdir(tmp_path / "mnist") == ["x_train.npy"]  # complete; no SHA256SUMS: no cache
    monkeypatch.setattr(datasets.np, "save", real_save)
    (x, _), (_, y) = datasets.load_mnist(tmp_path, flatten=False)  # so the next load builds it
    assert np.array_equal(x * 255, arrays["x_train"]) and np.array_equal(y, arrays["y_test"])


@pytest.fixture(scope="module")
def fake_cache(tmp_path_factory):
    """A valid cache folder of the fake MNIST, written once the way tinynn writes it."""
    folder = tmp_path_factory.mktemp("fake-cache") / "mnist"
    datasets._write_cache(folder, datasets._as_cached(_fake_mnist()))
    return folder


def _replace(folder, key, array, allow_pickle=False):
    """Put ``array`` in the cache as ``key`` and update its line of SHA256SUMS to match."""
    np.save(folder / f"{key}.npy", array, allow_pickle=allow_pickle)
    sums = (folder / "SHA256SUMS").read_text().splitlines()
    line = f"{_sha256(folder / f'{key}.npy')}  {key}.npy"
    (folder / "SHA256SUMS").write_text(
        "\n".join(line if old.endswith(f" {key}.npy") else old for old in sums) + "\n")


def _flip_one_byte(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 1
    path.write_bytes(bytes(raw))


DAMAGE = {  # how to damage a copy of the fake cache, and what the message then says
    "one byte changed": (lambda f: _flip_one_byte(f / "x_test.npy"),
                         "x_test.npy does not match its SHA-256"),
    "garbage": (lambda f: (f / "y_train.npy").write_bytes(b"not an npy file"),
                "y_train.npy does not match its SHA-256"),
    "missing file": (lambda f: (f / "x_train.npy").unlink(), "x_train.npy"),
    "garbled SHA256SUMS": (lambda f: (f / "SHA256SUMS").write_text("junk\n"),
                           "not enough values"),
    "wrong shapes": (lambda f: _replace(f, "x_test", np.zeros((10000, 28, 27), np.float32)),
                     r"x_test should be float32 of shape (10000, 28, 28)"),
    "uint8 pixels": (lambda f: _replace(f, "x_train", _fake_mnist()["x_train"]),
                     "x_train should be float32"),
    "object array": (lambda f: _replace(f, "y_test", np.array([None] * 10000), allow_pickle=True),
                     "Python objects"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_damaged_cache_is_reported(tmp_path, fake_cache, damage):
    make, why = DAMAGE[damage]
    make(shutil.copytree(fake_cache, tmp_path / "mnist"))
    with pytest.raises(DataError) as err:
        datasets.load_mnist(tmp_path)
    message = str(err.value)
    assert str(tmp_path / "mnist") in message and "damaged" in message and why in message
    assert "Delete it" in message and "python -m tinynn data" in message


def test_arrays_share_the_cache_pages_and_writes_stay_private(tmp_path, fake_cache):
    """The point of the memory-mapped cache: loading copies nothing into the process (its
    anonymous memory, which no other process can share, hardly grows, though every pixel is
    read), and writing to a returned array changes neither the file nor the next load."""
    rollup = Path("/proc/self/smaps_rollup")
    if not rollup.is_file():
        pytest.skip("needs Linux's /proc/self/smaps_rollup to measure memory")

    def anonymous_mb():
        line = next(line for line in rollup.read_text().splitlines() if line.startswith("Anon"))
        return int(line.split()[1]) / 1024

    shutil.copytree(fake_cache, tmp_path / "mnist")
    before = anonymous_mb()
    (x, y), (xt, yt) = datasets.load_mnist(tmp_path)
    assert x.max() == 250 / 255 and xt.sum() > 0 and np.bincount(y).tolist() == [6000] * 10
    grown = anonymous_mb() - before
    assert (x.nbytes + xt.nbytes) / 2**20 > 200 and grown < 20, f"{grown:.0f} MB copied"
    assert x.flags.writeable  # as before: the arrays may be changed, e.g. normalised in place
    x[0] = 1.0
    (again, _), _ = datasets.load_mnist(tmp_path)
    assert again[0].max() == 0.0 and x[0].min() == 1.0


def test_ensure_mnist_rebuilds_damaged_cache(tmp_path, fake_idx, monkeypatch):
    folder, table, arrays = fake_idx
    monkeypatch.setattr(datasets, "IDX_FILES", table)
    monkeypatch.setenv(MIRROR_ENV, str(folder))
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "SHA256SUMS").write_bytes(b"junk")
    with pytest.warns(UserWarning, match="damaged"):
        path = datasets.ensure_mnist(tmp_path, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert datasets.ensure_mnist(tmp_path, progress=False) == path  # valid now: no rebuild
    x_train = np.load(path / "x_train.npy", allow_pickle=False)
    assert np.array_equal(x_train * 255, arrays["x_train"])
    assert os.listdir(tmp_path) == ["mnist"] and sorted(os.listdir(path)) == CACHE_FILES
    assert {(f.stat().st_mode & 0o777) for f in path.iterdir()} == {0o644}  # others may read


def test_default_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "here"))
    assert download.default_data_dir() == tmp_path / "here"
    monkeypatch.delenv(DATA_DIR_ENV)
    repo = Path(download.__file__).resolve().parent.parent
    if (repo / "data").is_dir() and (repo / "pyproject.toml").is_file():
        assert download.default_data_dir() == repo / "data"
    monkeypatch.setattr(download, "__file__",
                        str(tmp_path / "site-packages" / "tinynn" / "download.py"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert download.default_data_dir() == tmp_path / "home" / ".cache" / "tinynn"


# --------------------------------------------------------------------------- names

NAMES = ["emma", "olivia", "ava", "isabella"]


def _names_mirror(folder, monkeypatch, names=NAMES):
    """A folder holding a small names.txt whose SHA-256 is declared the published one."""
    folder.mkdir(exist_ok=True)
    (folder / "names.txt").write_bytes("".join(n + "\n" for n in names).encode())
    monkeypatch.setattr(datasets, "NAMES_SHA256", _sha256(folder / "names.txt"))
    return folder


def test_real_names_from_the_folder_mirror(tmp_path, monkeypatch):
    """The real names.txt of makemore, as published: 32,033 lowercase names (32,032 line breaks:
    the last line has none; `wc -l` says 32032), checked by the
    SHA-256 in tinynn (no test override)."""
    if REAL_DATA is None or not (REAL_DATA / "names.txt").is_file():
        pytest.skip("names.txt not found beside mnist.pkl.gz (see needs_real_mnist)")
    monkeypatch.setenv(MIRROR_ENV, str(REAL_DATA))
    names = datasets.load_names(tmp_path, progress=False)
    assert len(names) == 32033 and names[:3] == ["emma", "olivia", "ava"]
    assert all(name.isalpha() and name.islower() and name.isascii() for name in names)
    assert (tmp_path / "names.txt").read_bytes() == (REAL_DATA / "names.txt").read_bytes()


def test_names_over_http_then_from_the_cache(tmp_path, serve, monkeypatch):
    mirror = _names_mirror(tmp_path / "mirror", monkeypatch)
    monkeypatch.setenv(MIRROR_ENV, serve(mirror).url)
    assert datasets.load_names(tmp_path / "cache", progress=True) == NAMES
    assert os.listdir(tmp_path / "cache") == ["names.txt"]  # no partial or temporary files
    monkeypatch.setattr(download, "_open", lambda source: pytest.fail(f"fetched {source}"))
    assert datasets.load_names(tmp_path / "cache") == NAMES


def test_tampered_names_are_refused_and_never_cached(tmp_path, monkeypatch):
    mirror = _names_mirror(tmp_path / "mirror", monkeypatch)
    (mirror / "names.txt").write_bytes(b"emma\nolivia\nava\nisabelle\n")  # one letter changed
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    with pytest.raises(DataError) as err:
        datasets.load_names(tmp_path / "cache")
    message = str(err.value)
    assert "failed its SHA-256 check" in message and datasets.NAMES_SHA256 in message
    assert "Could not fetch names.txt" in message and MIRROR_ENV in message
    assert os.listdir(tmp_path / "cache") == []


def test_names_fall_back_to_the_public_mirrors(tmp_path, monkeypatch):
    mirror = _names_mirror(tmp_path / "public", monkeypatch)
    monkeypatch.setattr(datasets, "NAMES_MIRRORS", (str(tmp_path / "gone"), str(mirror)))
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "missing"))
    assert datasets.load_names(tmp_path / "cache") == NAMES


def test_a_damaged_names_cache_is_fetched_again(tmp_path, monkeypatch):
    mirror = _names_mirror(tmp_path / "mirror", monkeypatch)
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "names.txt").write_bytes(b"emma\n")  # cut short
    with pytest.warns(UserWarning, match="does not match its SHA-256"):
        assert datasets.load_names(tmp_path / "cache") == NAMES
    assert (tmp_path / "cache" / "names.txt").read_bytes() == (mirror / "names.txt").read_bytes()
