"""What every call into C checks first, and the one way pointers to arrays are made.

An array crosses into C only as a numpy array of float32, C-contiguous (so rows are where C
thinks they are), of the shape the call needs, writable when C writes to it; an output shares
no byte with an input the kernel has yet to read. A C status code other than PYNN_OK becomes a
ValueError naming the call.
"""
import numpy as np

from .._pynn import ffi, lib

F32 = np.dtype(np.float32)

_STATUS = {
    lib.PYNN_ERR_NULL: "a required array was missing",
    lib.PYNN_ERR_SIZE: "sizes are negative or do not agree",
    lib.PYNN_ERR_ARG: "an argument is out of range",
    lib.PYNN_ERR_OVERFLOW: "sizes are too large (the element count overflows)",
}


def check_status(rc, what):
    if rc != lib.PYNN_OK:
        raise ValueError(f"{what}: {_STATUS.get(rc, f'C error code {rc}')}")


def check_array(name, a, ndim=None, writable=False):
    """Check that ``a`` may cross into C as float32 data; return it unchanged."""
    if (type(a) is np.ndarray and a.dtype is F32 and (ndim is None or a.ndim == ndim)
            and a.flags.c_contiguous and (not writable or a.flags.writeable)):
        return a                 # the common case, in the fewest steps; the rest name the fault
    check_typed(name, a, F32, writable)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    return a


def check_typed(name, a, dtype, writable=False):
    """Check that ``a`` may cross into C as C-contiguous data of ``dtype`` (uint8 pixels,
    int32 indices); return it unchanged."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of {np.dtype(dtype)}, got {type(a).__name__}")
    if a.dtype != dtype:
        raise TypeError(f"{name} must have dtype {np.dtype(dtype)}, got {a.dtype}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name} is read-only, but the result is written into it")
    return a


def check_shape(name, a, shape):
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")


def output(out, shape, like_name="out", inputs=(), same_ok=True, fill=None):
    """A new float32 array of ``shape`` (``fill``ed when given), or the caller's ``out`` after
    checking it against every input the kernel reads: it may be one of ``inputs`` exactly when
    ``same_ok`` (kernels that go element by element, or row by row), and otherwise must not
    share a byte with any of them. A write into part of an input would change values the kernel
    has yet to read: a silent wrong answer."""
    if out is None:
        if fill is None:
            return np.empty(shape, dtype=np.float32)
        return np.full(shape, fill, dtype=np.float32)
    check_array(like_name, out, writable=True)
    check_shape(like_name, out, shape)
    if same_ok:
        same_or_apart(out, *inputs, name=like_name)
    else:
        no_overlap(out, *inputs, name=like_name)
    return out


def ptr(a, ctype="float[]"):
    """The pointer C reads ``a`` through (a checked, C-contiguous array of ``ctype``'s items),
    or NULL for an empty one. The pointer keeps ``a`` alive."""
    return ffi.from_buffer(ctype, a) if a.size else ffi.NULL


def wptr(a, ctype="float[]"):
    """The pointer C writes ``a`` through, as ``ptr``; refuses an array that is read-only."""
    return ffi.from_buffer(ctype, a, require_writable=True) if a.size else ffi.NULL


def i64ptr(a):
    return ptr(a, "int64_t[]")


def no_overlap(out, *inputs, name="out"):
    """``out`` shares no byte with any of ``inputs``. The arrays that cross into C are
    C-contiguous, so the bounds numpy compares cheaply are exactly the bytes they hold."""
    for inp in inputs:
        if inp is not None and np.may_share_memory(out, inp):
            raise ValueError(f"{name} must not overlap an input")


def same_or_apart(out, *inputs, name="out"):
    """Kernels that go element by element (or row by row) may write over an input exactly, never
    over part of one: a shifted write would change an element the kernel has yet to read."""
    for inp in inputs:
        if inp is not None and inp is not out and np.may_share_memory(out, inp) and not (
                out.__array_interface__["data"][0] == inp.__array_interface__["data"][0]
                and out.shape == inp.shape and out.strides == inp.strides and out.dtype == inp.dtype):
            raise ValueError(f"{name} must be the same array as an input or not overlap it")


def apart(spans):
    """No span that one C call writes shares a byte with another span it reads or writes.
    spans: (pointer, bytes, name, written) of C-contiguous arrays, each [start, start + bytes).
    One pass over them sorted by address, as a call over many arrays (a network's parameters
    and optimiser state) would otherwise compare every pair: a span overlaps an earlier one
    exactly when it starts before the furthest end reached so far."""
    spans = sorted((int(ffi.cast("uintptr_t", p)), size, name, writes)
                   for p, size, name, writes in spans if size)
    any_end, any_name, written_end, written_name = 0, None, 0, None
    for start, size, name, writes in spans:
        if start < written_end or (writes and start < any_end):
            raise ValueError(f"{name} must not overlap "
                             f"{written_name if start < written_end else any_name}")
        if start + size > any_end:
            any_end, any_name = start + size, name
        if writes and start + size > written_end:
            written_end, written_name = start + size, name


def hyperparameter(name, value, low=0.0, high=None, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < low or (high is not None and (
            value >= high if high_open else value > high)):
        bound = f"in [{low}, {high}{')' if high_open else ']'}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value
