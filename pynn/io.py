"""Saving and loading networks: a .npz file of plain arrays, never a pickle.

The file holds a format version, the architecture (the list of layers, each its kind and
arguments, and the output function, loss and input shape) and the parameters W0, b0, W1, b1, ...
of the layers that have them, input side first. Files of format version 1, whose architecture
is the widths of dense layers and one activation, load as the layers those stand for. Loading checks all of it and refuses, with one line saying
what is wrong, a file that is truncated, corrupt, of an unknown version, holds pickled objects,
has parameters whose shapes do not fit the architecture, or holds NaN or Inf.

Writes go to a temporary file beside the target, flushed to disk, then renamed over it: a
process killed mid-save leaves the old file whole, and a Ctrl+C that arrives mid-save is held
until the file is written.
"""
import contextlib
import json
import os
import signal
import tempfile
import threading
import zipfile

import numpy as np

FORMAT_VERSION = 2
FORMAT_VERSIONS = (1, 2)      # what load reads


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and the problem."""


@contextlib.contextmanager
def ctrl_c_held():
    """Ctrl+C held back until the block is done, then raised as usual (KeyboardInterrupt).
    numpy writes a .npz through zipfile, and a KeyboardInterrupt inside its writer comes out
    as zipfile's ValueError about an open handle: a traceback where ``pynn train`` would have
    saved its state and said how to resume. Only where Python's own handler is in place, in
    the main thread (the only one signals reach)."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    arrived = []
    signal.signal(signal.SIGINT, lambda signum, frame: arrived.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if arrived:
        raise KeyboardInterrupt


def atomic_write(path, write):
    """Call ``write(fileobj)`` on a temporary file in path's directory, fsync it, rename it to
    path; a Ctrl+C meanwhile is raised once the file is in place (ctrl_c_held)."""
    with ctrl_c_held():
        _atomic_write(path, write)


def _atomic_write(path, write):
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        umask = os.umask(0o022)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)   # mkstemp makes 0600; a saved file gets the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
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
    for k, layer in enumerate(net._param_layers):
        for name, a in zip(layer.params, layer.parameters()):
            arrays[f"{name}{k}"] = a
    return arrays


def save(net, path, extra=None):
    """Write ``net`` to ``path`` (.npz) atomically. ``extra``: more named arrays to store."""
    arrays = network_arrays(net)
    arrays.update(extra or {})
    atomic_write(path, lambda f: np.savez(f, **arrays))


def read_npz(path):
    """All arrays of an .npz file as a dict, refusing pickles; ModelFileError on any damage."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ModelFileError(f"{path}: holds one bare array (.npy), not a model's .npz archive")
        with data:
            return {k: data[k] for k in data.files}
    except ModelFileError:
        raise
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ModelFileError(f"{path}: holds pickled objects, which pynn never loads") from None
        raise ModelFileError(f"{path}: not a valid model file ({e})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as e:
        raise ModelFileError(f"{path}: truncated or corrupt ({e.__class__.__name__}: {e})") from None
    except Exception as e:   # a damaged archive fails in many ways (an unknown compression, zlib)
        reason = " ".join(f"{e.__class__.__name__}: {e}".split())
        raise ModelFileError(f"{path}: truncated or corrupt ({reason})") from None


def network_from_arrays(arrays, path="model"):
    """Rebuild a Network from the arrays ``save`` wrote, checking each one."""
    from . import ops
    from .layers import dense_stack, from_spec
    from .network import Network, parse_sizes
    if "format_version" not in arrays or "architecture" not in arrays:
        raise ModelFileError(f"{path}: not a pynn model (no format_version/architecture)")
    try:
        version = int(arrays["format_version"])
    except (TypeError, ValueError, OverflowError):
        raise ModelFileError(f"{path}: format_version is not a number") from None
    if version not in FORMAT_VERSIONS:
        raise ModelFileError(f"{path}: format version {version} is not supported "
                             f"(this pynn reads versions {', '.join(map(str, FORMAT_VERSIONS))})")
    try:
        arch = json.loads(str(arrays["architecture"]))
        if not isinstance(arch, dict):
            raise ValueError("not a JSON object")
        if version == 1:
            # widths and one activation; files written before dropout existed have none
            layers = dense_stack(parse_sizes(arch["sizes"]), arch["activation"],
                                 float(arch.get("dropout", 0.0)))
            if arch["activation"] not in ("sigmoid", "relu", "tanh", "linear"):
                raise ValueError(f"unknown activation {arch['activation']!r}")
            input_shape, activation = None, arch["activation"]
        else:
            if not isinstance(arch.get("layers"), list):
                raise ValueError("no list of layers")
            layers = [from_spec(spec) for spec in arch["layers"]]
            input_shape, activation = arch["input_shape"], "relu"
        # the shapes every parameter must have, known before any is made or read: a damaged
        # architecture must not make the network allocate layers far larger than the file
        shell = Network.__new__(Network)
        shell.layers, shell.input_shape = layers, Network._check_input_shape(
            input_shape if input_shape is not None else (layers[0].n_in,))
        shell._trace_shapes()
        expected = {}
        for k, layer in enumerate(x for x in layers if x.params):
            for name, shape in layer.param_shapes().items():
                expected[f"{name}{k}"] = shape
    except (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as e:
        raise ModelFileError(f"{path}: bad architecture ({e})") from None
    for name, shape in expected.items():
        if name not in arrays:
            raise ModelFileError(f"{path}: parameter {name} is missing")
        a = arrays[name]
        if a.dtype != np.float32 or a.shape != shape:
            raise ModelFileError(f"{path}: {name} is {a.dtype} {a.shape}, "
                                 f"the architecture needs float32 {shape}")
        if not np.isfinite(a).all():
            raise ModelFileError(f"{path}: {name} holds NaN or Inf")
    k = 0
    for layer in layers:
        if layer.params:
            for name in layer.params:
                setattr(layer, name, ops.aligned_copy(arrays[f"{name}{k}"]))
            k += 1
    try:
        return Network(layers, activation, arch["output"], arch["loss"], input_shape=input_shape)
    except (ValueError, KeyError, TypeError) as e:
        raise ModelFileError(f"{path}: bad architecture ({e})") from None


def load(path):
    """The Network saved at ``path``: a .npz file, or an .onnx file (pynn.onnx_io.from_onnx)."""
    if os.fspath(path).lower().endswith(".onnx"):
        from .onnx_io import from_onnx
        return from_onnx(path)
    return network_from_arrays(read_npz(path), os.fspath(path))
