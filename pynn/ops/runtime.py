"""The machine the kernels run on (csrc/runtime.c): threads, the SIMD kernel set, memory, and
the network sizes C takes.
"""
import os
import sys

import numpy as np

from .._pynn import ffi, lib
from .checks import check_status

MAX_LAYERS, MAX_WIDTH = lib.PYNN_MAX_LAYERS, lib.PYNN_MAX_WIDTH   # what the C network takes
KERNEL_SETS = ("auto", "avx512f", "avx2", "generic")
CACHE_LINE = 64


def set_num_threads(n):
    """Threads the parallel kernels use (default: all cores, or $PYNN_NUM_THREADS)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if not 1 <= n <= 1024:
        raise ValueError(f"n must be between 1 and 1024, got {n}")
    check_status(lib.pynn_set_num_threads(int(n)), "set_num_threads")


def get_num_threads():
    return lib.pynn_get_num_threads()


def share_every_job(on):
    """With ``on`` true, every job the kernels can split is split among the threads, however
    small; by default a job too small to pay for waking a thread runs on one. For tests: results
    must not depend on the thread count, and this shows it for the small products (a narrow
    layer, one digit) that the default never splits."""
    check_status(lib.pynn_share_every_job(1 if on else 0), "share_every_job")


def physical_memory():
    """Bytes of memory this machine has, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cpu_features():
    """The SIMD path the kernels run on this CPU: 'avx512f', 'avx2' or 'generic'."""
    return ffi.string(lib.pynn_cpu_features()).decode()


def select_kernels(name="auto"):
    """Run the fast kernels on one SIMD path ("avx512f", "avx2", "generic"), or on the widest
    this CPU runs ("auto", the default). Tests use it to check every path against the reference."""
    if name not in KERNEL_SETS:
        raise ValueError(f"kernel set must be one of {', '.join(KERNEL_SETS)}, got {name!r}")
    if lib.pynn_kernels_select(name.encode()) != lib.PYNN_OK:
        raise ValueError(f"this CPU cannot run the {name} kernels")


def aligned_copy(a):
    """A C-contiguous float32 copy of ``a`` whose data starts on a 64-byte cache line. The
    network's weights are made this way: a digit's first layer reads W in blocks of 16 floats,
    and a block on one cache line costs one line from L2 where a block across two costs two."""
    a = np.asarray(a, dtype=np.float32)
    buf = np.empty(a.size + CACHE_LINE // 4, dtype=np.float32)
    start = (-buf.ctypes.data % CACHE_LINE) // 4
    out = buf[start:start + a.size].reshape(a.shape)
    out[...] = a
    return out


def _init_threads():
    """$PYNN_NUM_THREADS, when set, is the kernels' thread count. A value that is not one is
    ignored with one line on stderr: a typo in the environment must not stop every command
    (and every import of pynn) with a traceback."""
    env = os.environ.get("PYNN_NUM_THREADS")
    if env is None or not env.strip():
        return
    try:
        set_num_threads(int(env))
    except ValueError:
        sys.stderr.write(f"pynn: ignoring PYNN_NUM_THREADS={env!r}: not an integer from 1 to "
                         f"1024; using {get_num_threads()} threads\n")


_init_threads()
