"""The matrix product and the bias (csrc/ref/gemm.c, csrc/fast/gemm_fast.c): z = W a + b for a batch of rows."""
import numpy as np

from .._pynn import ffi, lib
from .checks import F32, check_array, check_shape, check_status, no_overlap, output, ptr, wptr


def gemm(a, b, c, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, reference=False):
    """c = alpha * op(a) @ op(b) + beta * c, in place; op transposes when asked.

    a is (M,K), or (K,M) with trans_a; b is (K,N), or (N,K) with trans_b; c is (M,N).
    ``reference=True`` runs the readable triple loop instead of the fast kernel.
    """
    check_array("c", c, ndim=2, writable=True)
    return _product(a, b, c, "c", float(alpha), float(beta), trans_a, trans_b, reference)


def matmul(a, b, trans_a=False, trans_b=False, out=None, reference=False):
    """op(a) @ op(b) as a new (M,N) float32 array (or into ``out``): eq. 5-9.

    A script calls it once a digit, so the plain product (no transpose, a new output) takes
    the fewest steps: two float32 ndarrays whose shapes unpack as (M,K) and (K,N) and whose
    pointers ``ffi.from_buffer`` makes, which it refuses for an array that is not C-contiguous
    (the buffer protocol's plain request). Every other call, and every fault, goes the long way
    of ``_product``, which names what was wrong."""
    if (type(a) is _ndarray and type(b) is _ndarray and a.dtype is F32 and b.dtype is F32
            and out is None and not (trans_a or trans_b or reference)):
        try:
            M, K = a.shape
            Kb, N = b.shape
            pa, pb = _from_buffer(_FLOATS, a), _from_buffer(_FLOATS, b)
        except (ValueError, BufferError):
            pass
        else:
            if K == Kb and M and N:
                c = _empty((M, N), F32)
                rc = _matmul(M, N, K, pa, pb, _from_buffer(_FLOATS, c))
                if rc:
                    check_status(rc, "gemm")
                return c
    return _product(a, b, out, "out", 1.0, 0.0, trans_a, trans_b, reference)


# the names the short ways above use, each bound once (a lookup is a sizeable part of a call)
_ndarray, _empty = np.ndarray, np.empty
_from_buffer, _FLOATS, _matmul = ffi.from_buffer, ffi.typeof("float[]"), lib.pynn_matmul


def _product(a, b, c, c_name, alpha, beta, trans_a, trans_b, reference):
    """The checks and the C call of gemm and matmul; c None makes a new output.

    The checks take the fewest steps (gemm may be called once a digit too): a and b both at
    once in the common case (float32, 2-D, C-contiguous; one by one, naming the fault,
    otherwise), then their inner sizes; a new output needs no check, a given one is checked as
    ``output`` checks any (writable, shape, apart from a and b). A product with no element
    returns before any pointer is made; with K = 0, a and b hold no data and C reads none."""
    if not (type(a) is np.ndarray and type(b) is np.ndarray and a.dtype is F32
            and b.dtype is F32 and a.ndim == 2 and b.ndim == 2 and a.flags.c_contiguous
            and b.flags.c_contiguous):
        check_array("a", a, ndim=2)
        check_array("b", b, ndim=2)
    M, K = (a.shape[1], a.shape[0]) if trans_a else a.shape
    Kb, N = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if K != Kb:
        raise ValueError(f"inner dimensions differ: op(a) is {(M, K)}, op(b) is {(Kb, N)}")
    if c is None:
        c = np.empty((M, N), F32)
    else:
        output(c, (M, N), like_name=c_name, inputs=(a, b), same_ok=False)
    if M == 0 or N == 0:
        return c
    rc = (lib.pynn_gemm_ref if reference else lib.pynn_gemm)(
        1 if trans_a else 0, 1 if trans_b else 0, M, N, K, alpha,
        _from_buffer(_FLOATS, a), a.shape[1], _from_buffer(_FLOATS, b), b.shape[1], beta,
        _from_buffer(_FLOATS, c), N)
    if rc:
        check_status(rc, "gemm")
    return c


def bias_forward(z, bias):
    """z (B,n) += bias (n), in place: the + b of z = W a + b for every sample."""
    check_array("z", z, ndim=2, writable=True)
    check_array("bias", bias, ndim=1)
    check_shape("bias", bias, (z.shape[1],))
    no_overlap(bias, z, name="bias")
    check_status(lib.pynn_bias_forward(wptr(z), ptr(bias), z.shape[0], z.shape[1]), "bias_forward")
    return z


def bias_backward(dz, out=None):
    """db = column sums of dz (B,n): every sample's dz reached b. Accumulates into ``out``."""
    check_array("dz", dz, ndim=2)
    out = output(out, (dz.shape[1],), inputs=(dz,), same_ok=False, fill=0.0)
    check_status(lib.pynn_bias_backward(wptr(out), ptr(dz), dz.shape[0], dz.shape[1]),
                 "bias_backward")
    return out


class GemmCall:
    """``gemm(a, b, c, ...)`` prepared once and run many times: the arrays are checked (and the
    product computed) when it is made, their pointers kept, so each call is one C call, as in
    the fused network step. For loops over the same buffers, such as ``pynn bench``."""

    def __init__(self, a, b, c, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
        gemm(a, b, c, alpha, beta, trans_a, trans_b)
        M, N = c.shape
        K = a.shape[0] if trans_a else a.shape[1]
        self._arrays = (a, b, c)
        self._args = (int(bool(trans_a)), int(bool(trans_b)), M, N, K, float(alpha), ptr(a),
                      a.shape[1], ptr(b), b.shape[1], float(beta), wptr(c), N)

    def __call__(self):
        check_status(lib.pynn_gemm(*self._args), "gemm")
        return self._arrays[2]
