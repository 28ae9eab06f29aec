"""Saving and loading networks: a .npz file of plain arrays, never a pickle.

The file holds a format version, the architecture (sizes, activation, output, loss, dropout) and the
parameters W0, b0, W1, b1, ... Loading checks all of it and refuses, with one line saying
what is wrong, a file that is truncated, corrupt, of an unknown version, holds pickled objects,
has parameters whose shapes do not fit the architecture, or holds NaN or Inf.

A file handed to pynn is hostile until checked, and reading it costs bounded memory and time:
only regular files are opened (a FIFO would block, /dev/zero never ends), each member's size
is checked against what the architecture needs before it is inflated (``Archive``), members
nobody asked for are refused, and JSON text is parsed with a bound on its length and nesting
(``parse_json``).

Writes go to a temporary file beside the target, flushed to disk, then renamed over it: a
process killed mid-save leaves the old file whole, and a Ctrl+C that arrives mid-save is held
until the file is written. Only a regular file is ever replaced (never a device, a directory
or a FIFO), and temporary files left by a killed save are removed by the next save to the
same path.
"""
import contextlib
import json
import math
import os
import signal
import stat
import struct
import tempfile
import threading
import time
import zipfile

import numpy as np

from . import ops
from .layers import Dropout, dense_stack, from_spec
from .network import HIDDEN, MAX_LAYER_LIST, Network, parse_sizes

try:
    import fcntl
except ImportError:            # Windows has none: there stale temporary files are left alone
    fcntl = None

FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)      # what load reads
MAX_JSON_CHARS = 1 << 20       # JSON text in a model file or checkpoint: settings, history
MAX_JSON_DEPTH = 32            # nesting; pynn writes at most 3 levels
MAX_HEADER = 1 << 16           # an .npy member's header (numpy's own limit is 10,000 bytes)
MAX_READ_ALL = 1 << 30         # read_npz: declared bytes of all members together
MAX_MEMBERS = 4096             # arrays in one .npz (a 64-layer network with Adam's state has 400)
STALE_TEMP_SECONDS = 60        # a temporary file older than this, and not being written, is left
                               # from a killed save
# arrays a model file may carry besides the network: the drawings the pad was taught with
# (pad/state.py), which ``load`` leaves unread
TAUGHT = ("taught_images", "taught_labels")


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


# ---- reading what is handed to pynn ----

def _file_kind(mode):
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path, error=ModelFileError):
    """``path`` opened for reading in binary, or ``error`` (one line) unless it is a regular
    file: a FIFO would block the open or the read forever, a device such as /dev/zero never
    ends, a directory holds no data. The open itself does not block (O_NONBLOCK), and the kind
    is checked on the open descriptor, so a file swapped in between changes nothing."""
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as e:
        raise error(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(f"{path}: {_file_kind(mode)}, not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path, max_bytes, error=ModelFileError, what="file"):
    """The bytes of the regular file ``path``, or ``error`` when it is not one (open_regular)
    or holds more than ``max_bytes``: read with that bound, whatever its size claims."""
    with open_regular(path, error) as f:
        try:
            # a buffer as large as the file says it is (max_bytes may be far more), one byte
            # beyond to see whether it grew past the bound
            data = f.read(min(os.fstat(f.fileno()).st_size, max_bytes) + 1)
        except OSError as e:
            raise error(f"{os.fspath(path)}: cannot be read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise error(f"{os.fspath(path)}: more than {max_bytes} bytes, larger than any {what} pynn reads")
    return data


def parse_json(text, max_chars=MAX_JSON_CHARS, max_depth=MAX_JSON_DEPTH):
    """The value of the JSON ``text``; ValueError (saying why) when it is longer than
    ``max_chars``, nested deeper than ``max_depth``, or not JSON. Callers add the file's name."""
    if not isinstance(text, str):
        raise ValueError(f"not text but {type(text).__name__}")
    if len(text) > max_chars:
        raise ValueError(f"{len(text)} characters of JSON, more than {max_chars}")
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"JSON nested deeper than {max_depth} levels") from None
    except ValueError as e:
        raise ValueError(f"not JSON ({e})") from None
    stack = [(value, 1)]
    while stack:             # a walk, not a recursion: the depth is what is being checked
        item, depth = stack.pop()
        if isinstance(item, (list, dict)):
            if depth > max_depth:
                raise ValueError(f"JSON nested deeper than {max_depth} levels")
            stack.extend((v, depth + 1) for v in (item.values() if isinstance(item, dict) else item))
    return value


class Archive:
    """An .npz file opened for reading one member at a time, each checked before it is
    inflated: its declared size against the shape the caller expects (or a bound), then its
    .npy header's dtype and shape, and no pickled objects. Every problem is a ModelFileError
    naming the file.

        with Archive(path) as z:
            arch = z.json("architecture")
            W0 = z.array("W0", np.float32, (800, 784))
            z.refuse_others(names_read)
    """

    def __init__(self, path):
        self.path = os.fspath(path)
        self._file = open_regular(self.path)
        try:
            head = self._file.read(6)
            self._file.seek(0)
            if head.startswith(b"\x93NUMPY"):
                raise ModelFileError(f"{self.path}: holds one bare array (.npy), not a model's .npz archive")
            if head[:1] == b"\x80":
                raise ModelFileError(f"{self.path}: holds a pickle, which pynn never loads")
            self._check_directory()
            self._zip = zipfile.ZipFile(self._file)
            self.members = {}
            for info in self._zip.infolist():
                name = info.filename[:-4]
                if not info.filename.endswith(".npy") or name in self.members:
                    raise ModelFileError(f"{self.path}: holds {info.filename!r}, which is no "
                                         f"array of a pynn file")
                self.members[name] = info
        except BaseException as e:
            self._file.close()
            if isinstance(e, ModelFileError) or not isinstance(e, Exception):
                raise
            raise self._damaged(e) from None

    def _check_directory(self):
        """Refuse an archive whose end record declares more than MAX_MEMBERS members, or a
        central directory larger than theirs could be, before zipfile reads every entry of it
        (200,000 empty members take seconds and 100 MB). zipfile itself judges the rest."""
        f = self._file
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - (22 + 65535)))          # the end record, after it a comment
        tail = f.read()
        f.seek(0)
        end = tail.rfind(b"PK\x05\x06")
        if end < 0 or len(tail) - end < 22:
            return
        count, directory = struct.unpack("<HI", tail[end + 10:end + 16])
        if count > MAX_MEMBERS or directory > MAX_MEMBERS * 512:
            raise ModelFileError(f"{self.path}: its zip directory declares {count} members in "
                                 f"{directory} bytes, more than a pynn file has ({MAX_MEMBERS})")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self._file.close()

    def __contains__(self, name):
        return name in self.members

    def _damaged(self, e, name=None):
        reason = " ".join(f"{e.__class__.__name__}: {e}".split())
        where = f" in {name}" if name else ""
        return ModelFileError(f"{self.path}: truncated or corrupt{where} ({reason})")

    def refuse_others(self, names):
        """Refuse the file if it holds a member not in ``names``: nothing is inflated that
        no one asked for."""
        others = sorted(set(self.members) - set(names))
        if others:
            shown = ", ".join(others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
            raise ModelFileError(f"{self.path}: holds arrays nobody asked for ({shown})")

    def array(self, name, dtype=None, shape=None, max_bytes=MAX_HEADER):
        """Member ``name`` as a new writable array. With ``dtype`` and ``shape`` it must be
        exactly that, and its declared size may not exceed what they need; without, it may
        hold at most ``max_bytes``."""
        info = self.members.get(name)
        if info is None:
            raise ModelFileError(f"{self.path}: {name} is missing")
        if shape is not None:
            max_bytes = MAX_HEADER + math.prod(shape) * np.dtype(dtype).itemsize
        if info.file_size > max_bytes:
            raise ModelFileError(f"{self.path}: {name} would inflate to {info.file_size} bytes, "
                                 f"more than the {max_bytes} it can need")
        try:
            with self._zip.open(info) as f:
                got_shape, fortran, got_dtype = self._header(f, name)
                if shape is not None and (got_dtype != dtype or got_shape != tuple(shape)):
                    raise ModelFileError(f"{self.path}: {name} is {got_dtype} {got_shape}, "
                                         f"the architecture needs {np.dtype(dtype)} {tuple(shape)}")
                count = math.prod(got_shape)
                nbytes = count * got_dtype.itemsize
                if f.tell() + nbytes != info.file_size:
                    raise ModelFileError(f"{self.path}: {name}'s header says {got_dtype} {got_shape}, "
                                         f"which is not the size it has")
                data = bytearray(nbytes)
                if f.readinto(data) != nbytes or f.read(1):
                    raise ModelFileError(f"{self.path}: {name} is truncated")
        except ModelFileError:
            raise
        except Exception as e:   # a damaged archive fails in many ways (zlib, CRC, headers)
            raise self._damaged(e, name) from None
        a = np.frombuffer(data, dtype=got_dtype, count=count)
        return a.reshape(got_shape[::-1]).T if fortran else a.reshape(got_shape)

    def _header(self, f, name):
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise ModelFileError(f"{self.path}: {name} is .npy version {version}, which pynn does not read")
        if dtype.hasobject:
            raise ModelFileError(f"{self.path}: holds pickled objects, which pynn never loads")
        return shape, fortran, dtype

    def text(self, name, max_chars=MAX_JSON_CHARS):
        """Member ``name``, a string (a 0-d unicode array) of at most ``max_chars``."""
        a = self.array(name, max_bytes=MAX_HEADER + 4 * max_chars)
        if a.shape != () or a.dtype.kind != "U":
            raise ModelFileError(f"{self.path}: {name} is {a.dtype} {a.shape}, not text")
        return str(a)

    def json(self, name, max_chars=MAX_JSON_CHARS, max_depth=MAX_JSON_DEPTH):
        """Member ``name`` parsed as JSON, within the bounds of ``parse_json``."""
        try:
            return parse_json(self.text(name, max_chars), max_chars, max_depth)
        except ValueError as e:
            if isinstance(e, ModelFileError):
                raise
            raise ModelFileError(f"{self.path}: {name} cannot be read ({e})") from None

    def integer(self, name):
        """Member ``name``, one whole number."""
        a = self.array(name)
        if a.shape != () or a.dtype.kind not in "iu":
            raise ModelFileError(f"{self.path}: {name} is {a.dtype} {a.shape}, not a whole number")
        return int(a)


class Terminated(KeyboardInterrupt):
    """SIGTERM (what ``kill`` and service managers send), raised where Ctrl+C would be, so a
    stopped ``pynn train`` saves its state alike (raise_terminated is its handler)."""


def raise_terminated(signum, frame):
    raise Terminated


@contextlib.contextmanager
def ctrl_c_held():
    """Ctrl+C (and SIGTERM, where raise_terminated takes it) held back until the block is done,
    then raised as usual. numpy writes a .npz through zipfile, and a KeyboardInterrupt inside
    its writer comes out as zipfile's ValueError about an open handle: a traceback where
    ``pynn train`` would have saved its state and said how to resume. Only where Python's own
    handler is in place, in the main thread (the only one signals reach)."""
    raising = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: raise_terminated}
    held = {s: h for s, h in raising.items() if signal.getsignal(s) is h}
    if threading.current_thread() is not threading.main_thread() or not held:
        yield
        return
    arrived = []
    for s in held:
        signal.signal(s, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        for s, handler in held.items():
            signal.signal(s, handler)
    if arrived:
        raise Terminated if arrived[0] == signal.SIGTERM else KeyboardInterrupt


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file in path's directory, fsync it, rename it to
    path; a Ctrl+C meanwhile is raised once the file is in place (ctrl_c_held). Refused
    (ModelFileError) when path is something other than a regular file: the rename would put
    a file where a device, a directory or a FIFO was."""
    with ctrl_c_held():
        _atomic_write(path, write)


def refuse_unless_regular_or_absent(path):
    """ModelFileError when ``path`` names no file (it ends in a slash), or exists and is not a
    regular file (through symbolic links: /dev/null by another name is still a device)."""
    path = os.fspath(path)
    if not os.path.basename(path):
        raise ModelFileError(f"{path!r}: names no file to write")
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise ModelFileError(f"{path}: cannot be written ({e.strerror or e})") from None
    if not stat.S_ISREG(mode):
        raise ModelFileError(f"{path}: {_file_kind(mode)}, not a regular file; pynn only "
                             f"writes over regular files")


def _temp_prefix(path):
    return "." + os.path.basename(path) + "."


def remove_stale_temps(path, older_than=None):
    """Remove the temporary files a killed save to ``path`` left beside it: those named as
    ``atomic_write`` names them for this path, regular files, unchanged for ``older_than``
    seconds (default STALE_TEMP_SECONDS), and not locked by a save still writing (each holds
    a lock on its temporary file). Returns how many were removed."""
    if fcntl is None:
        return 0
    older_than = STALE_TEMP_SECONDS if older_than is None else older_than
    directory = os.path.dirname(os.path.abspath(path))
    prefix, now, removed = _temp_prefix(path), time.time(), 0
    try:
        names = [n for n in os.listdir(directory) if n.startswith(prefix) and n.endswith(".tmp")
                 and len(n) == len(prefix) + 8 + 4]          # mkstemp's 8 random characters
    except OSError:
        return 0
    for name in names:
        temp = os.path.join(directory, name)
        try:
            fd = os.open(temp, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or now - st.st_mtime < older_than:
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # a save still writing holds it
            os.unlink(temp)
            removed += 1
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def _atomic_write(path, write):
    path = os.fspath(path)
    refuse_unless_regular_or_absent(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=directory)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)     # tells remove_stale_temps this one is live
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)   # mkstemp makes 0600; a saved file gets the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            refuse_unless_regular_or_absent(path)   # as it is now, after a long write
            os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:   # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def network_arrays(net):
    arrays = {"format_version": np.array(FORMAT_VERSION, dtype=np.int64),
              "architecture": np.array(json.dumps({
                  "layers": [layer.spec() for layer in net.layers],
                  "input_shape": list(net.input_shape),
                  "output": net.output, "loss": net.loss}))}
    for k, layer in enumerate(x for x in net.layers if x.params):
        for name, a in zip(layer.params, layer.parameters()):
            arrays[f"{name}{k}"] = a
    return arrays


def save(net, path, extra=None):
    """Write ``net`` to ``path`` (.npz) atomically. ``extra``: more named arrays to store,
    under names of their own. A network holding NaN or Inf is refused (ValueError): its file
    would not load, and writing it would replace one that does."""
    arrays = network_arrays(net)
    for name, a in arrays.items():
        if name[0] in "Wb" and not np.isfinite(a).all():
            raise ValueError(f"{name} holds NaN or Inf: a file of it would not load, so "
                             f"{os.fspath(path)} is left as it was")
    clash = sorted(set(arrays) & set(extra or {}))
    if clash:
        raise ValueError(f"extra arrays may not take the network's names ({', '.join(clash)})")
    arrays.update(extra or {})
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_npz(path, max_bytes=MAX_READ_ALL, names=None):
    """The arrays of an .npz file as a dict, refusing pickles, non-regular files and archives
    declaring more than ``max_bytes`` in all; ModelFileError on any damage. With ``names``,
    exactly those arrays, and a file holding any other is refused unread."""
    with Archive(path) as z:
        if names is not None:
            have, want = set(z.members), set(names)
            if have != want:
                extra, missing = sorted(have - want), sorted(want - have)
                said = "; ".join(s for s in (extra and f"it holds {', '.join(extra)}, which it should not",
                                             missing and f"it lacks {', '.join(missing)}") if s)
                raise ModelFileError(f"{z.path}: {said}")
        declared = sum(info.file_size for info in z.members.values())
        if declared > max_bytes:
            raise ModelFileError(f"{z.path}: its arrays would inflate to {declared} bytes, more "
                                 f"than the {max_bytes} read at once")
        return {name: z.array(name, max_bytes=max_bytes) for name in z.members}


def _check_version(version, path):
    if version not in FORMAT_VERSIONS:
        raise ModelFileError(f"{path}: format version {version} is not supported "
                             f"(this pynn reads versions {', '.join(map(str, FORMAT_VERSIONS))})")


def _parse_architecture(text, path):
    try:
        arch = parse_json(text)
    except ValueError as e:
        raise ModelFileError(f"{path}: bad architecture ({e})") from None
    if not isinstance(arch, dict):
        raise ModelFileError(f"{path}: bad architecture (not a JSON object)")
    return arch


def _architecture(arch, path, version):
    """(layers, input shape, activation, the parameters' names and shapes) of a parsed
    architecture: format 1 names widths and one activation (the layers those stand for),
    format 2 the layers themselves. The shapes are known before any parameter is made or read,
    so a damaged architecture cannot make the network allocate layers far larger than the file;
    the memory a network needs is not checked (the file's size bounds it)."""
    try:
        if version == 1:
            if arch["activation"] not in HIDDEN:
                raise ValueError(f"unknown activation {arch['activation']!r}")
            # files written before dropout existed have none: 0.0
            layers = dense_stack(parse_sizes(arch["sizes"], check_memory=False),
                                 arch["activation"], Dropout(arch.get("dropout", 0.0)).p)
            input_shape, activation = (layers[0].n_in,), arch["activation"]
        else:
            specs = arch["layers"]
            if not isinstance(specs, list) or not 1 <= len(specs) <= MAX_LAYER_LIST:
                raise ValueError(f"layers must be a list of 1 to {MAX_LAYER_LIST} layers")
            layers = [from_spec(spec) for spec in specs]
            input_shape, activation = arch["input_shape"], "relu"
            if not isinstance(input_shape, list):
                raise ValueError("input_shape must be a list")
        Network.trace(layers, Network.check_input_shape(input_shape))
        shapes = [(f"{name}{k}", tuple(shape))
                  for k, layer in enumerate(x for x in layers if x.params)
                  for name, shape in layer.param_shapes().items()]
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"{path}: bad architecture ({e})") from None
    return layers, tuple(input_shape), activation, shapes


def _network(arch, built, parameters, path):
    """The Network of a parsed architecture with its parameters (name -> array, checked)."""
    layers, input_shape, activation, shapes = built
    names = iter(name for name, _ in shapes)
    for layer in layers:
        for attr in layer.params:
            name = next(names)
            a = parameters[name]
            if not np.isfinite(a).all():
                raise ModelFileError(f"{path}: {name} holds NaN or Inf")
            setattr(layer, attr, ops.aligned_copy(a))
    try:
        return Network(layers, activation, arch["output"], arch["loss"], input_shape=input_shape)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"{path}: bad architecture ({e})") from None


def read_network(z, extra=()):
    """The Network in the open Archive ``z``: its version and architecture first, then (the
    file holding nothing but those, the parameters and the ``extra`` names) each parameter,
    inflated only when its declared size is what the architecture needs."""
    if "format_version" not in z or "architecture" not in z:
        raise ModelFileError(f"{z.path}: not a pynn model (no format_version/architecture)")
    version = z.integer("format_version")
    _check_version(version, z.path)
    arch = _parse_architecture(z.text("architecture"), z.path)
    built = _architecture(arch, z.path, version)
    shapes = built[3]
    for name, _ in shapes:
        if name not in z:
            raise ModelFileError(f"{z.path}: parameter {name} is missing")
    if "checkpoint_version" in z and "checkpoint_version" not in extra:
        raise ModelFileError(f"{z.path}: a checkpoint, not a model (pynn train --resume DIR "
                             f"goes on from it; pynn.checkpoint.load_checkpoint reads it)")
    z.refuse_others(["format_version", "architecture", *(name for name, _ in shapes), *extra])
    parameters = {name: z.array(name, np.float32, shape) for name, shape in shapes}
    return _network(arch, built, parameters, z.path)


def network_from_arrays(arrays, path="model"):
    """Rebuild a Network from the arrays ``save`` wrote (a dict, as ``read_npz`` gives),
    checking each one."""
    if "format_version" not in arrays or "architecture" not in arrays:
        raise ModelFileError(f"{path}: not a pynn model (no format_version/architecture)")
    try:
        version = int(arrays["format_version"])
    except (TypeError, ValueError):
        raise ModelFileError(f"{path}: format_version is not a number") from None
    _check_version(version, path)
    arch = _parse_architecture(str(arrays["architecture"]), path)
    built = _architecture(arch, path, version)
    shapes = built[3]
    # the parameters' shapes are checked before the network is made: a damaged architecture
    # must not make it allocate layers far larger than the file
    for name, shape in shapes:
        if name not in arrays:
            raise ModelFileError(f"{path}: parameter {name} is missing")
        if arrays[name].dtype != np.float32 or arrays[name].shape != shape:
            raise ModelFileError(f"{path}: {name} is {arrays[name].dtype} {arrays[name].shape}, "
                                 f"the architecture needs float32 {shape}")
    return _network(arch, built, arrays, path)


def load(path, extra=TAUGHT):
    """The Network saved at ``path``: an .onnx file (pynn.onnx_io.from_onnx), or a .npz file,
    which may hold nothing else but the arrays named in ``extra`` (by default the pad's taught
    drawings), which are left unread."""
    if os.fspath(path).lower().endswith(".onnx"):
        from .onnx_io import from_onnx
        return from_onnx(path)
    with Archive(path) as z:
        return read_network(z, extra)
