"""The IDX file format of MNIST (LeCun, Cortes & Burges), read and written.

An IDX file is a 4-byte magic number -- two zero bytes, a type code, the number of
dimensions -- then each dimension as a big-endian 32-bit count, then the values in C order,
big-endian. MNIST's images are type 0x08 (unsigned byte) with 3 dimensions (n, 28, 28), its
labels 0x08 with 1 dimension (n,). Files may be gzip-compressed (the name ends in .gz).

Every check names the file and what is wrong with it: a bad magic number, a header that ends
early, data shorter or longer than the header promises, a gzip stream cut short. Reading takes
bounded memory: only regular files are read, at most MAX_BYTES of data, and a gzip stream is
inflated piece by piece, refused as soon as its header declares more than that or the stream
holds more than its header declares.
"""
import math
import os
import struct
import zlib

import numpy as np

from .modelfile import open_regular

MAX_BYTES = 1 << 30      # decoded IDX data read at most (MNIST's largest file is 47 MB)
_PIECE = 1 << 20         # bytes inflated at a time

# type code -> big-endian numpy dtype, as the format defines them
TYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
         0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class IdxError(ValueError):
    """An IDX file that cannot be used; the message names the file and the problem."""


def read_bytes(path, max_bytes=MAX_BYTES):
    """The decoded content of ``path``: gunzipped if it ends in .gz (or starts like gzip).
    IdxError when it is not a regular file or holds more than ``max_bytes``."""
    path = os.fspath(path)
    with open_regular(path, IdxError) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise IdxError(f"{path}: {size} bytes, more than the {max_bytes} pynn reads")
            data = f.read(min(size, max_bytes) + 1)   # not a buffer of max_bytes: it may grow
        except OSError as e:
            raise IdxError(f"{path}: cannot be read ({e.strerror or e})") from None
    if len(data) > max_bytes:
        raise IdxError(f"{path}: more than the {max_bytes} bytes pynn reads")
    if path.endswith(".gz") or data[:2] == b"\x1f\x8b":
        data = gunzip(data, path, max_bytes, declared_size)
    return data


def declared_size(head):
    """The size of the IDX file whose first bytes are ``head``, as its header declares it, or
    None while ``head`` is too short to tell (or is no IDX header: ``parse`` says why)."""
    if len(head) < 4:
        return None
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0 or code not in TYPES or len(head) < 4 + 4 * ndim:
        return None
    shape = struct.unpack(f">{ndim}I", head[4:4 + 4 * ndim])
    return 4 + 4 * ndim + math.prod(shape) * TYPES[code].itemsize


def gunzip(data, name, max_bytes, declared=None):
    """The content of the gzip ``data`` (one or more members, zero padding after them, as
    gzip allows), inflated a piece at a time and refused (IdxError naming ``name``) as soon as
    it passes ``max_bytes``, or, when ``declared(first bytes)`` gives the size its own header
    declares, as soon as that is more than ``max_bytes`` or the content goes a piece past it
    (a few bytes too many are left for ``parse`` to count)."""
    out, rest, limit, slack = bytearray(), data, max_bytes, 0
    try:
        while True:
            inflate = zlib.decompressobj(wbits=31)      # a gzip member, its CRC checked
            while not inflate.eof:
                if not rest:
                    raise IdxError(f"{name}: the gzip stream is truncated")
                out += inflate.decompress(rest, _PIECE)
                rest = inflate.unconsumed_tail
                if declared is not None and limit == max_bytes:
                    size = declared(bytes(out[:4 + 4 * 255]))
                    if size is not None and size > max_bytes:
                        raise IdxError(f"{name}: its header declares {size} bytes, more than "
                                       f"the {max_bytes} pynn reads")
                    if size is not None:
                        limit, slack = size, _PIECE
                if len(out) > limit + slack:
                    raise IdxError(f"{name}: inflates to more than the {limit} bytes "
                                   + ("its header declares" if slack else "pynn reads"))
            rest = inflate.unused_data.lstrip(b"\0")
            if not rest:
                return bytes(out)
    except zlib.error as e:
        raise IdxError(f"{name}: not a valid gzip file ({e})") from None


def parse(data, name="IDX data"):
    """The array held by the IDX bytes ``data`` (native byte order); ``name`` is used in errors."""
    if len(data) < 4:
        raise IdxError(f"{name}: {len(data)} bytes, too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or code not in TYPES:
        raise IdxError(f"{name}: bad magic number 0x{data[:4].hex()} (an IDX file starts "
                       f"with 00 00, a type code (08 for bytes) and the number of dimensions)")
    if ndim == 0:
        raise IdxError(f"{name}: the header gives 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{name}: truncated in its header ({len(data)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = TYPES[code]
    expected = math.prod(shape) * dtype.itemsize     # exact: an int64 product could wrap to 0
    have = len(data) - header
    if have < expected:
        raise IdxError(f"{name}: truncated: dimensions {shape} need {expected} bytes of data, "
                       f"the file has {have}")
    if have > expected:
        raise IdxError(f"{name}: {have - expected} bytes after the data that dimensions "
                       f"{shape} describe (wrong count in the header?)")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    return array.astype(dtype.newbyteorder("="), copy=True).reshape(shape)


def read(path):
    """The array in the IDX file at ``path`` (raw or .gz)."""
    path = os.fspath(path)
    return parse(read_bytes(path), path)


def encode(array):
    """The IDX bytes of ``array`` (its dtype must be one the format has)."""
    array = np.asarray(array)
    for code, dtype in TYPES.items():
        if array.dtype.newbyteorder(">") == dtype or array.dtype == dtype:
            break
    else:
        raise TypeError(f"IDX has no type for {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"IDX holds 1 to 255 dimensions, got {array.ndim}")
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=dtype).tobytes()
