"""The fast GEMM (csrc/fast/gemm_fast.c, gemm_kernels.c) against the readable one (csrc/ref/gemm.c).

Shapes are chosen to land on every edge of the blocking: sizes of 1, one either side of each
set's micro-tile (MR x NR = 8 x 48 for the portable and AVX-512 sets, 6 x 16 for AVX2, whose
half-width of 8 columns is an edge too), of the dot kernel's tile (4 x 6), of the K slice
(KC = 256), of the dot path's largest batch (256) and of the row block (1024, which AVX2's
slivers of 6 fill to 1020); primes; every transpose;
alpha and beta including beta = 0 over a C full of NaN (which must never be read); row strides
longer than the rows. Each SIMD path the CPU runs is checked, with one thread and with two
(the fixtures ``kernels`` and ``threads`` of conftest.py).
"""
import multiprocessing
import os

import numpy as np
import pytest

from pynn import ops
from pynn._pynn import ffi, lib

MR, NR, KC, DOT_MR, DOT_NR = 8, 48, 256, 4, 6
MR2, NR2 = 6, 16        # the AVX2 set's tile

# (M, N, K): the tile edges, the K slice, the dot path's limit, primes
SHAPES = [
    (1, 1, 1), (1, 1, 7), (2, 3, 1), (1, 128, 784), (MR - 1, NR - 1, 5), (MR, NR, KC),
    (MR + 1, NR + 1, KC + 1), (DOT_MR + 1, DOT_NR + 1, 17), (DOT_MR - 1, DOT_NR - 1, 15),
    (13, 97, 31), (64, 50, KC - 1), (10, 800, 33), (2 * MR + 3, 3 * NR + 5, 2 * KC + 3),
    (257, 20, 40), (256, 7, 16), (1030, 3, 5), (3, 1030, 9), (5, 7, 0), (0, 4, 3), (4, 0, 3),
    (1, 127, 9), (1, 129, 300), (2, 257, 33), (1, 784, 128),      # the gemv kernel's 128 columns
    (MR2 - 1, NR2 - 1, 3), (MR2, NR2, KC), (MR2 + 1, NR2 + 1, 9), (2 * MR2, 8, 4),
    (4, 9, 6), (3, 7, 2), (MR2 + 5, 2 * NR2 + 8, KC + 2), (1021, 17, 3),
]


def _ptr(a):
    return ffi.cast("float *", ffi.from_buffer(a)) if a.size else ffi.NULL


def run_both(ta, tb, M, N, K, alpha, beta, rng, pad=(0, 0, 0)):
    """C from pynn_gemm and from pynn_gemm_ref, with operands stored in wider arrays (row
    strides = width + pad) so leading dimensions differ from the row lengths."""
    ar, ac = (K, M) if ta else (M, K)
    br, bc = (N, K) if tb else (K, N)
    A = rng.standard_normal((ar, ac + pad[0])).astype(np.float32)
    B = rng.standard_normal((br, bc + pad[1])).astype(np.float32)
    C = rng.standard_normal((M, N + pad[2])).astype(np.float32)
    if beta == 0.0:
        C[:, :N] = np.nan            # beta = 0: C is written, never read
    outs = []
    for fn in (lib.pynn_gemm, lib.pynn_gemm_ref):
        c = C.copy()
        rc = fn(ta, tb, M, N, K, alpha, _ptr(A), A.shape[1], _ptr(B), B.shape[1], beta,
                _ptr(c), c.shape[1])
        assert rc == lib.PYNN_OK
        outs.append(c)
    fast, ref = outs
    # the columns past N belong to nobody: untouched
    np.testing.assert_array_equal(fast[:, N:], C[:, N:])
    opA = (A[:, :ac].T if ta else A[:, :ac]).astype(np.float64)
    opB = (B[:, :bc].T if tb else B[:, :bc]).astype(np.float64)
    scale = np.abs(alpha) * (np.abs(opA) @ np.abs(opB)) + (0 if beta == 0 else abs(beta) * np.abs(C[:, :N]))
    return fast[:, :N], ref[:, :N], scale


def assert_close(fast, ref, scale, K):
    tol = 4 * (K + 2) * np.finfo(np.float32).eps * scale + 1e-30
    assert np.all(np.isfinite(fast)), "NaN from C leaked into a beta = 0 product"
    assert np.all(np.abs(fast - ref) <= tol), np.max(np.abs(fast - ref) / np.maximum(tol, 1e-30))


@pytest.mark.parametrize("trans", [(0, 0), (0, 1), (1, 0), (1, 1)], ids=["NN", "NT", "TN", "TT"])
@pytest.mark.parametrize("M,N,K", SHAPES)
def test_fast_matches_reference_on_every_edge(kernels, threads, trans, M, N, K):
    rng = np.random.default_rng(M * 10007 + N * 101 + K)
    for alpha, beta in ((1.0, 0.0), (-0.5, 1.5)):
        fast, ref, scale = run_both(*trans, M, N, K, alpha, beta, rng)
        assert_close(fast, ref, scale, K)


@pytest.mark.parametrize("trans", [(0, 0), (0, 1), (1, 0), (1, 1)], ids=["NN", "NT", "TN", "TT"])
def test_leading_dimensions_longer_than_rows(kernels, trans):
    rng = np.random.default_rng(5)
    for M, N, K in ((9, 49, 257), (5, 7, 3), (70, 100, 20), (1, 10, 801), (2, 37, 9),
                    (7, 10, 33)):
        fast, ref, scale = run_both(*trans, M, N, K, 0.75, 0.5, rng, pad=(3, 5, 2))
        assert_close(fast, ref, scale, K)
        fast, ref, scale = run_both(*trans, M, N, K, 1.0, 0.0, rng, pad=(1, 16, 7))
        assert_close(fast, ref, scale, K)


# one or two rows of C, and sums of few products: the gemv kernel (B stored (K,N)), its
# narrow form (N <= 16, the output layer's ten, which takes batches too), and the dot path's
# one-row kernel (B stored (N,K)); widths either side of a vector (8, 16) and of the narrow
# form, K from 1 past 4 (the kernels take four rows of B at a time) and the network's 784 and
# 800
ONE_ROW_SHAPES = [(M, N, K) for M in (1, 2) for N in (1, 5, 8, 9, 10, 16, 17, 23, 129)
                  for K in (1, 2, 3, 4, 5, 13, 784, 800)]
ONE_ROW_SHAPES += [(M, N, K) for M in (3, 6, 64) for N in (1, 7, 8, 10, 16, 17) for K in (1, 3, 9, 800)]


@pytest.mark.parametrize("trans", [(0, 0), (0, 1), (1, 0), (1, 1)], ids=["NN", "NT", "TN", "TT"])
def test_one_row_products_match_float64_numpy(kernels, trans):
    ta, tb = trans
    rng = np.random.default_rng(12)
    for M, N, K in ONE_ROW_SHAPES:
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        opA = (a.T if ta else a).astype(np.float64)
        opB = (b.T if tb else b).astype(np.float64)
        for alpha, beta in ((1.0, 0.0), (-0.5, 1.5)):
            c0 = rng.standard_normal((M, N)).astype(np.float32)
            c = np.full((M, N), np.nan, np.float32) if beta == 0.0 else c0.copy()
            ops.gemm(a, b, c, alpha=alpha, beta=beta, trans_a=ta, trans_b=tb)
            want = alpha * (opA @ opB) + beta * c0.astype(np.float64)
            scale = abs(alpha) * (np.abs(opA) @ np.abs(opB)) + abs(beta) * np.abs(c0)
            assert_close(c, want, scale, K)


def test_one_row_bits_do_not_depend_on_where_the_arrays_lie(kernels, threads, every_job_shared):
    # the one-row kernel sums eight rows or more in a buffer, peels the columns before B's
    # first 32-byte boundary, and takes rows wider than the buffer in pieces: wherever B and c
    # start (every float offset within a line), in one piece or several, split between threads
    # or not, each column is the same chain of multiply-adds; fewer rows (K = 5) go in place
    rng = np.random.default_rng(14)
    for N, K in ((128, 37), (800, 9), (1030, 9), (2100, 10), (13, 11), (1030, 5)):
        a = rng.standard_normal((1, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        c0 = rng.standard_normal((1, N)).astype(np.float32)
        base = np.empty(K * N + 16, np.float32)
        cbase = np.empty(N + 16, np.float32)
        want = {}
        for off in range(8):
            B = base[off:off + K * N].reshape(K, N)
            B[...] = b
            for alpha, beta in ((1.0, 0.0), (0.5, -2.0)):
                c = cbase[off + 3:off + 3 + N].reshape(1, N)
                c[...] = np.nan if beta == 0.0 else c0
                ops.gemm(a, B, c, alpha=alpha, beta=beta)
                if off == 0:
                    opA, opB = a.astype(np.float64), b.astype(np.float64)
                    exact = alpha * (opA @ opB) + beta * c0.astype(np.float64)
                    scale = abs(alpha) * (np.abs(opA) @ np.abs(opB)) + abs(beta) * np.abs(c0)
                    assert_close(c, exact, scale, K)
                    want[beta] = c.copy()
                np.testing.assert_array_equal(c, want[beta], err_msg=f"B at float {off}, N={N}")


def test_a_column_has_the_same_bits_in_a_narrow_row_as_in_a_wide_one(kernels, threads):
    # a row of C of at most 128 columns keeps its sums in registers, one vector of them
    # partial when the width is not a multiple of 8; a wider row keeps them in a buffer on the
    # stack: either way each column is the same chain of multiply-adds. op(a) is a column of
    # a (trans_a), so a's values lie three floats apart. Widths from 17 up (16 or fewer take
    # the narrow kernel, whose sums differ in the last bits); 600 splits between two threads
    # into pieces wider than 128
    rng = np.random.default_rng(15)
    for K in (8, 9, 37, 784):
        a = rng.standard_normal((K, 3)).astype(np.float32)
        wide = rng.standard_normal((K, 600)).astype(np.float32)
        c0 = rng.standard_normal((1, 600)).astype(np.float32)
        for alpha, beta in ((1.0, 0.0), (0.5, -2.0)):
            cw = np.full_like(c0, np.nan) if beta == 0.0 else c0.copy()
            assert lib.pynn_gemm(1, 0, 1, 600, K, alpha, _ptr(a), 3, _ptr(wide), 600, beta,
                                 _ptr(cw), 600) == lib.PYNN_OK
            for N in (17, 23, 24, 63, 64, 65, 100, 120, 127, 128):
                b = np.ascontiguousarray(wide[:, :N])
                c = np.full((1, N), np.nan, np.float32) if beta == 0.0 else c0[:, :N].copy()
                assert lib.pynn_gemm(1, 0, 1, N, K, alpha, _ptr(a), 3, _ptr(b), N, beta,
                                     _ptr(c), N) == lib.PYNN_OK
                np.testing.assert_array_equal(c, cw[:, :N], err_msg=f"N={N}, K={K}")


def test_a_row_alone_has_the_bits_it_has_in_a_batch(kernels):
    # z = a W^T for one digit takes the one-row dot kernel, a batch the 4 x 6 one: the same sums
    rng = np.random.default_rng(13)
    for N, K in ((800, 784), (10, 800), (7, 13)):
        a = rng.standard_normal((5, K)).astype(np.float32)
        W = rng.standard_normal((N, K)).astype(np.float32)
        batch = ops.matmul(a, W, trans_b=True)
        for i in range(5):
            np.testing.assert_array_equal(ops.matmul(a[i:i + 1], W, trans_b=True), batch[i:i + 1])


def test_empty_sum_scales_c():
    # K = 0: C = beta * C, and beta = 0 gives zeros even over NaN
    a, b = np.zeros((3, 0), np.float32), np.zeros((0, 5), np.float32)
    c = np.full((3, 5), 2.0, np.float32)
    ops.gemm(a, b, c, beta=0.5)
    np.testing.assert_array_equal(c, 1.0)
    c[:] = np.nan
    ops.gemm(a, b, c, beta=0.0)
    np.testing.assert_array_equal(c, 0.0)


@pytest.mark.parametrize("M,N,K,ta,tb", [(64, 800, 784, 0, 1), (800, 784, 64, 1, 0),
                                         (64, 784, 800, 0, 0), (300, 260, 270, 1, 1)])
def test_network_shapes_against_numpy_float64(M, N, K, ta, tb):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    c = ops.matmul(a, b, trans_a=ta, trans_b=tb)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    np.testing.assert_allclose(c, want, rtol=1e-4, atol=1e-4 * np.sqrt(K))


def test_results_do_not_depend_on_the_thread_count():
    rng = np.random.default_rng(2)
    before = ops.get_num_threads()
    try:
        # the one row times a W of 4.4 MB: large enough to be split among threads by default
        for M, N, K, ta, tb in ((64, 800, 784, 0, 1), (800, 784, 64, 1, 0), (333, 517, 300, 0, 0),
                                (1100, 60, 70, 1, 1), (1, 1100, 1000, 0, 0)):
            a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
            b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
            got = []
            for nt in (1, 2, 3, 2):
                ops.set_num_threads(nt)
                got.append(ops.matmul(a, b, trans_a=ta, trans_b=tb))
            for g in got[1:]:
                np.testing.assert_array_equal(g, got[0])
    finally:
        ops.set_num_threads(before)


def test_small_products_do_not_depend_on_the_thread_count(kernels, every_job_shared):
    # products too small for the pool by default, split anyway: one-row products cut between
    # columns, and narrow ones (the gemv kernels) between rows, must give the bits of one thread
    rng = np.random.default_rng(4)
    for M, N, K, ta, tb in ((1, 20, 40, 0, 0), (2, 33, 10, 1, 0), (1, 70, 3, 0, 0),
                            (32, 5, 10, 0, 0), (24, 10, 7, 0, 0), (17, 16, 40, 0, 0),
                            (33, 70, 2, 0, 0), (70, 5, 40, 0, 1), (7, 17, 10, 1, 1)):
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
        got = []
        for nt in (1, 2, 3):
            ops.set_num_threads(nt)
            got.append(ops.matmul(a, b, trans_a=ta, trans_b=tb))
        for g in got[1:]:
            np.testing.assert_array_equal(g, got[0], err_msg=f"{M}x{K} @ {K}x{N} ({ta}, {tb})")


def test_unknown_or_unsupported_kernel_set_is_refused():
    with pytest.raises(ValueError, match="kernel set"):
        ops.select_kernels("sse9")
    assert lib.pynn_kernels_select(b"no-such-set") == lib.PYNN_ERR_ARG
    assert ops.cpu_features() in ("avx512f", "avx2", "generic")


def _child_product(q):
    a = np.ones((300, 400), np.float32)
    q.put(float(ops.matmul(a, a, trans_b=True)[0, 0]))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_a_working_pool():
    # the parent's pool has run (two threads); the child has none of its workers and must
    # start its own rather than wait for them
    before = ops.get_num_threads()
    ops.set_num_threads(2)
    try:
        a = np.ones((300, 400), np.float32)
        ops.matmul(a, a, trans_b=True)
        ctx = multiprocessing.get_context("fork")
        q = ctx.Queue()
        p = ctx.Process(target=_child_product, args=(q,))
        p.start()
        p.join(60)
        alive = p.is_alive()
        if alive:
            p.kill()
        assert not alive, "the forked child hung in the thread pool"
        assert q.get(timeout=5) == 400.0
    finally:
        ops.set_num_threads(before)
