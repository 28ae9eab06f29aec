"""Convolution and max pooling (csrc/ref/conv.c, csrc/fast/conv.c) through pynn.ops.

The readable and the fast kernels are both held to a float64 NumPy reference written here
(the convolution as one strided slice of the padded image per kernel tap, summed), and the
gradients also to central finite differences of that reference. The fast convolution is not
bit-equal to the readable one: its GEMM sums the K = C*KH*KW products in vector lanes and
K slices, with fused multiply-adds, where the readable one adds them one by one; so the two
are compared within a bound of float32 rounding over K terms. Pooling does no arithmetic, and
the fast and readable ones agree bit for bit. Every SIMD path this CPU runs is checked, on
one thread and on two (the fixtures ``kernels`` and ``threads`` of conftest.py).
"""
import numpy as np
import pytest

from pynn import ops
from pynn._pynn import ffi, lib

EPS32 = np.finfo(np.float32).eps

# (B, C, H, W, OC, KH, KW, stride, padding): the network's two layers (conv2 at a smaller
# batch), stride and padding variants, odd sizes, a batch of one, 1x1 kernels, a kernel as
# large as the padded image, padding wider than the kernel reaches, stride beyond the kernel;
# images of 256 positions or more, whose dweight sums each image as dot products (padded, with
# kernel rows split among the threads or with images in groups)
SHAPES = [
    (3, 1, 28, 28, 32, 5, 5, 1, 0),
    (4, 32, 12, 12, 64, 5, 5, 1, 0),
    (1, 3, 7, 9, 5, 3, 3, 1, 1),
    (2, 2, 11, 10, 3, 3, 2, 2, 1),
    (5, 4, 9, 7, 6, 3, 3, 3, 2),
    (2, 3, 6, 6, 7, 1, 1, 1, 0),
    (3, 2, 5, 4, 4, 7, 6, 1, 1),
    (2, 1, 4, 5, 2, 3, 3, 1, 4),
    (1, 5, 13, 13, 17, 4, 4, 5, 0),
    (7, 3, 1, 1, 2, 1, 1, 1, 0),
    (3, 2, 20, 19, 5, 3, 4, 1, 2),
    (2, 6, 18, 18, 7, 3, 3, 1, 1),
]
IDS = ["conv1", "conv2", "B1-pad1", "stride2-rect", "stride3-pad2", "1x1", "kernel-fills-padded",
       "pad-beyond-kernel", "stride-beyond-kernel", "1x1-image", "long-groups", "long-rows"]


# ---- the float64 reference ----

def taps(x, KH, KW, stride, padding, OH, OW):
    """For each kernel tap (i, j): the (B,C,OH,OW) view of the zero-padded x it reads."""
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    for i in range(KH):
        for j in range(KW):
            yield i, j, xp[:, :, i:i + stride * (OH - 1) + 1:stride, j:j + stride * (OW - 1) + 1:stride]


def conv64(x, w, b, stride, padding):
    """out[n,o,y,x] = b[o] + sum over c,i,j of w[o,c,i,j] xpad[n,c, stride*y+i, stride*x+j]"""
    x, w = x.astype(np.float64), w.astype(np.float64)
    B, _, H, W = x.shape
    OC, _, KH, KW = w.shape
    OH, OW = (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1
    out = np.zeros((B, OC, OH, OW))
    for i, j, view in taps(x, KH, KW, stride, padding, OH, OW):
        out += np.einsum("bcyx,oc->boyx", view, w[:, :, i, j])
    return out + (0.0 if b is None else b.astype(np.float64)[None, :, None, None])


def conv64_backward(dout, x, w, stride, padding):
    """(dx, dw, db) of conv64: each tap's view got w * view, so dw += dout . view and the
    padded dx gets w^T dout at the places the view read."""
    dout, x, w = dout.astype(np.float64), x.astype(np.float64), w.astype(np.float64)
    B, C, H, W = x.shape
    OC, _, KH, KW = w.shape
    OH, OW = dout.shape[2:]
    dxp = np.zeros((B, C, H + 2 * padding, W + 2 * padding))
    dw = np.zeros(w.shape)
    for i, j, view in taps(x, KH, KW, stride, padding, OH, OW):
        dw[:, :, i, j] = np.einsum("boyx,bcyx->oc", dout, view)
        dxp[:, :, i:i + stride * (OH - 1) + 1:stride, j:j + stride * (OW - 1) + 1:stride] += \
            np.einsum("boyx,oc->bcyx", dout, w[:, :, i, j])
    return dxp[:, :, padding:padding + H, padding:padding + W], dw, dout.sum(axis=(0, 2, 3))


def pool64(x, k):
    """(out, argmax) of k x k max pooling, by explicit loops; the first of equals wins"""
    B, C, H, W = x.shape
    out = np.zeros((B, C, H // k, W // k))
    argmax = np.zeros(out.shape, dtype=np.int64)
    for n, c, y, xx in np.ndindex(*out.shape):
        window = x[n, c, k * y:k * y + k, k * xx:k * xx + k]
        i, j = np.unravel_index(np.argmax(window), window.shape)   # first of equals
        out[n, c, y, xx] = window[i, j]
        argmax[n, c, y, xx] = (k * y + i) * W + k * xx + j
    return out, argmax


def make(shape, seed):
    B, C, H, W, OC, KH, KW, stride, padding = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((B, C, H, W)).astype(np.float32)
    w = rng.standard_normal((OC, C, KH, KW)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    OH, OW = (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1
    dout = rng.standard_normal((B, OC, OH, OW)).astype(np.float32)
    return x, w, b, dout, stride, padding


def assert_within(got, want, scale, terms, what):
    """|got - want| within float32 rounding of a sum of `terms` products of size `scale`"""
    tol = 4 * (terms + 2) * EPS32 * scale + 1e-30
    err = np.abs(got.astype(np.float64) - want)
    assert np.all(err <= tol), f"{what}: off by {np.max(err / tol):.2f} of the bound"


# ---- the convolution ----

@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_both_convolutions_match_the_float64_reference_forward_and_backward(kernels, threads, shape):
    x, w, b, dout, stride, padding = make(shape, sum(shape))
    K = w[0].size
    want = conv64(x, w, b, stride, padding)
    scale = conv64(np.abs(x), np.abs(w), np.abs(b), stride, padding)
    dx64, dw64, db64 = conv64_backward(dout, x, w, stride, padding)
    dx_scale, dw_scale, _ = conv64_backward(np.abs(dout), np.abs(x), np.abs(w), stride, padding)
    n_sum = dout[:, 0].size                       # dw and db sum over every output position
    for reference in (True, False):
        what = "readable" if reference else "fast"
        out = ops.conv2d_forward(x, w, b, stride, padding, reference=reference)
        assert_within(out, want, scale, K, f"{what} forward")
        dx, dw, db = ops.conv2d_backward(dout, x, w, stride, padding, reference=reference)
        assert_within(dx, dx64, dx_scale, w.shape[0] * K, f"{what} dx")
        assert_within(dw, dw64, dw_scale, n_sum, f"{what} dw")
        assert_within(db, db64, np.abs(dout).sum(axis=(0, 2, 3)), n_sum, f"{what} db")


# (B, C, H, W, OC, KH, KW): convolutions of stride 1 and no padding whose output rows are 8
# wide, which the forward reads straight from the image where the kernel set can: a row
# of 8 left over after the 16-wide tiles (P = 40), a tile of rows short of the kernel's 6
# (OC 7, 13), sums longer than one K slice (C*KH*KW = 400, 800), a batch of one (each image
# shared by the threads), output rows of 16 and 24
READ_FROM_IMAGE = [(3, 16, 9, 12, 7, 5, 5), (1, 32, 12, 12, 13, 5, 5), (2, 3, 6, 18, 5, 3, 3),
                   (2, 1, 28, 28, 32, 5, 5), (5, 2, 10, 10, 9, 3, 3)]


@pytest.mark.parametrize("shape", READ_FROM_IMAGE)
@pytest.mark.parametrize("pooled", [False, True], ids=["conv", "conv-relu-pool"])
def test_a_forward_read_from_the_image_gives_the_bits_of_the_unfolded_one(kernels, threads, shape,
                                                                          pooled):
    """Widened by one column, the image's output rows are no longer whole vectors of 8, so
    the forward unfolds its patches; each output's sum is the same, lane by lane, so the
    first OW columns of that output are the bits of the narrower image's."""
    B, C, H, W, OC, KH, KW = shape
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal((B, C, H, W)).astype(np.float32)
    w = rng.standard_normal((OC, C, KH, KW)).astype(np.float32)
    b = rng.standard_normal(OC).astype(np.float32)
    wide = np.concatenate([x, rng.standard_normal((B, C, H, 1)).astype(np.float32)], axis=3)
    OW = W - KW + 1
    assert OW % 8 == 0 and (OW + 1) % 8
    got, want = ops.conv2d_forward(x, w, b), ops.conv2d_forward(wide, w, b)[..., :OW]
    np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
    assert_within(got, conv64(x, w, b, 1, 0), conv64(np.abs(x), np.abs(w), np.abs(b), 1, 0),
                  w[0].size, "forward")
    if pooled:      # the fused pass pools the same bits (H - KH + 1 even: whole windows)
        out, _ = ops.conv2d_relu_pool_forward(x, w, b, 2)
        relu = np.maximum(got, 0)
        OH = relu.shape[2] // 2 * 2
        pooled_want = relu[:, :, :OH].reshape(B, OC, OH // 2, 2, OW // 2, 2).max(axis=(3, 5))
        np.testing.assert_array_equal(out, pooled_want)


# (B, C, H, W, OC, KH, KW, stride): convolutions without padding whose weight gradient the
# kernel set may read from the images (16 kernel rows or more): output channels short of a
# 16-wide tile (OC 7, 17), taps short of a 6-row tile (C*KH*KW = 100, 80), stride 2 and 3,
# positions whose slices of 256 end inside an image (P = 49, 36) and a batch whose last slice
# is short, one image; and output rows of whole vectors of 8, whose dx the kernel adds to the
# image in place: 8 positions left over after the 16-wide tiles (P = 40), rows of 16
DW_FROM_IMAGE = [(5, 4, 11, 11, 17, 5, 5, 1), (3, 16, 9, 10, 7, 1, 5, 1), (4, 8, 13, 13, 9, 2, 5, 2),
                 (6, 6, 19, 17, 20, 3, 3, 3), (1, 32, 12, 12, 64, 5, 5, 1),
                 (2, 4, 9, 12, 5, 5, 5, 1), (3, 3, 6, 20, 7, 3, 5, 1)]


@pytest.mark.parametrize("shape", DW_FROM_IMAGE)
def test_gradients_read_from_or_added_to_the_images_match_the_reference_on_any_thread_count(
        kernels, shape):
    B, C, H, W, OC, KH, KW, stride = shape
    x, w, b, dout, stride, padding = make((B, C, H, W, OC, KH, KW, stride, 0), sum(shape))
    dx64, dw64, db64 = conv64_backward(dout, x, w, stride, 0)
    _, dw_scale, _ = conv64_backward(np.abs(dout), np.abs(x), np.abs(w), stride, 0)
    before = ops.get_num_threads()
    got = []
    try:
        for n in (1, 2, 3):
            ops.set_num_threads(n)
            dw0 = np.random.default_rng(1).standard_normal(w.shape).astype(np.float32)
            dx, dw, db = ops.conv2d_backward(dout, x, w, stride, 0, dw=dw0.copy())
            assert_within(dw - dw0, dw64, dw_scale + np.abs(dw0), dout[:, 0].size, "dw")
            assert_within(dx, dx64, conv64_backward(np.abs(dout), np.abs(x), np.abs(w), stride, 0)[0],
                          w.shape[0] * w[0].size, "dx")
            got.append((dw - dw0, dx))
    finally:
        ops.set_num_threads(before)
    for dw, dx in got[1:]:
        np.testing.assert_array_equal(dw.view(np.int32), got[0][0].view(np.int32))
        np.testing.assert_array_equal(dx.view(np.int32), got[0][1].view(np.int32))


@pytest.mark.parametrize("shape", SHAPES, ids=IDS)
def test_the_fast_convolution_stays_within_rounding_of_the_readable_one(kernels, shape):
    x, w, b, dout, stride, padding = make(shape, 7)
    K = w[0].size
    scale = conv64(np.abs(x), np.abs(w), np.abs(b), stride, padding)
    fast = ops.conv2d_forward(x, w, b, stride, padding)
    ref = ops.conv2d_forward(x, w, b, stride, padding, reference=True)
    assert_within(fast, ref.astype(np.float64), 2 * scale, K, "forward")
    dx_scale, dw_scale, _ = conv64_backward(np.abs(dout), np.abs(x), np.abs(w), stride, padding)
    got = ops.conv2d_backward(dout, x, w, stride, padding)
    ref = ops.conv2d_backward(dout, x, w, stride, padding, reference=True)
    assert_within(got[0], ref[0].astype(np.float64), 2 * dx_scale, w.shape[0] * K, "dx")
    assert_within(got[1], ref[1].astype(np.float64), 2 * dw_scale, dout[:, 0].size, "dw")


@pytest.mark.parametrize("shape", [(2, 2, 5, 6, 3, 3, 3, 1, 1), (1, 3, 7, 6, 2, 3, 2, 2, 0),
                                   (2, 1, 4, 4, 2, 5, 5, 1, 2)], ids=["pad1", "stride2", "pad2"])
def test_the_gradients_match_central_finite_differences(shape):
    # the loss L = sum(dout * conv(x, w, b)) in float64: its numerical derivative in each
    # element of x, w and b against the C kernels' dx, dw, db
    x, w, b, dout, stride, padding = make(shape, 3)
    x64, w64, b64, d64 = (a.astype(np.float64) for a in (x, w, b, dout))

    def loss(xv, wv, bv):
        return np.sum(d64 * conv64(xv, wv, bv, stride, padding))

    h = 1e-6
    numeric = []
    for which, arr in enumerate((x64, w64, b64)):
        grad = np.zeros(arr.shape)
        for idx in np.ndindex(*arr.shape):
            args = [x64.copy(), w64.copy(), b64.copy()]
            args[which][idx] += h
            up = loss(*args)
            args[which][idx] -= 2 * h
            grad[idx] = (up - loss(*args)) / (2 * h)
        numeric.append(grad)
    for reference in (True, False):
        got = ops.conv2d_backward(dout, x, w, stride, padding, reference=reference)
        for name, g, n in zip(("dx", "dw", "db"), got, numeric):
            np.testing.assert_allclose(g, n, rtol=1e-4, atol=1e-4, err_msg=name)


@pytest.mark.parametrize("shape", [(5, 6, 12, 12, 20, 5, 5, 1, 2), (11, 1, 14, 14, 8, 5, 5, 1, 0)],
                         ids=["split-by-taps", "split-by-images"])
def test_the_fast_convolution_gives_the_same_bits_on_any_thread_count(shape):
    # a kernel of few rows (the second shape) splits dweight by images, not by taps
    x, w, b, dout, stride, padding = make(shape, 11)
    before = ops.get_num_threads()
    got = []
    try:
        for nt in (1, 2, 3):
            ops.set_num_threads(nt)
            got.append((ops.conv2d_forward(x, w, b, stride, padding),
                        *ops.conv2d_backward(dout, x, w, stride, padding)))
    finally:
        ops.set_num_threads(before)
    for other in got[1:]:
        for a, c in zip(got[0], other):
            np.testing.assert_array_equal(a, c)


def test_a_batch_of_one_gives_the_bits_of_its_row_in_a_batch():
    # a lone image shares its product among the threads; in a batch, each thread takes images
    x, w, b, dout, stride, padding = make((4, 32, 12, 12, 64, 5, 5, 1, 0), 5)
    batch = ops.conv2d_forward(x, w, b)
    for n in range(len(x)):
        np.testing.assert_array_equal(ops.conv2d_forward(x[n:n + 1], w, b), batch[n:n + 1])


def test_the_gradients_accumulate_into_the_arrays_passed():
    x, w, b, dout, stride, padding = make((2, 3, 8, 7, 4, 3, 3, 1, 1), 4)
    for reference in (True, False):
        once = ops.conv2d_backward(dout, x, w, stride, padding, reference=reference)
        start = [np.full(g.shape, 0.5, np.float32) for g in once]
        got = ops.conv2d_backward(dout, x, w, stride, padding, *start, reference=reference)
        for g, s, o in zip(got, start, once):
            assert g is s
            np.testing.assert_allclose(g, 0.5 + o, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("shape", [(3, 32, 12, 12, 64, 5, 5, 1, 0), (2, 3, 8, 7, 4, 3, 3, 1, 1),
                                   (0, 2, 6, 6, 3, 3, 3, 1, 0)],
                         ids=["folded-as-it-comes", "through-dcol", "no-image"])
def test_gradients_written_over_garbage_are_the_bits_of_gradients_added_to_zeros(shape):
    x, w, b, dout, stride, padding = make(shape, 8)
    before = ops.get_num_threads()
    try:
        for reference, n in ((True, 1), (False, 1), (False, 2), (False, 3)):
            ops.set_num_threads(n)
            zeros = ops.conv2d_backward(dout, x, w, stride, padding, reference=reference)
            garbage = [np.full(g.shape, np.nan, np.float32) for g in zeros]
            got = ops.conv2d_backward(dout, x, w, stride, padding, *garbage, reference=reference,
                                      accumulate=False)
            for g, z, mine in zip(got, zeros, garbage):
                assert g is mine
                np.testing.assert_array_equal(g.view(np.int32), z.view(np.int32))
    finally:
        ops.set_num_threads(before)


def test_the_first_layer_skips_dx_and_a_layer_without_bias_skips_db():
    x, w, b, dout, stride, padding = make((3, 1, 10, 10, 4, 5, 5, 1, 0), 6)
    for reference in (True, False):
        dx, dw, db = ops.conv2d_backward(dout, x, w, want_dx=False, want_db=False,
                                         reference=reference)
        assert dx is None and db is None
        np.testing.assert_array_equal(dw, ops.conv2d_backward(dout, x, w, reference=reference)[1])
        out = ops.conv2d_forward(x, w, None, reference=reference)
        np.testing.assert_allclose(out, conv64(x, w, None, 1, 0), rtol=1e-5, atol=1e-5)


def test_an_empty_batch_gives_empty_results():
    x = np.zeros((0, 2, 6, 6), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    for reference in (True, False):
        assert ops.conv2d_forward(x, w, reference=reference).shape == (0, 3, 4, 4)
        dx, dw, db = ops.conv2d_backward(np.zeros((0, 3, 4, 4), np.float32), x, w,
                                         reference=reference)
        assert dx.shape == x.shape and not dw.any() and not db.any()


def test_a_workspace_of_one_threads_share_runs_on_one_thread_and_less_is_refused():
    x, w, b, dout, stride, padding = make((4, 3, 9, 9, 5, 3, 3, 1, 0), 8)
    before = ops.get_num_threads()
    try:
        ops.set_num_threads(1)
        one = ops.conv2d_workspace(x.shape, w.shape)
        ops.set_num_threads(2)
        assert ops.conv2d_workspace(x.shape, w.shape) > one
        want = ops.conv2d_forward(x, w, b)
        work = np.empty(one, np.float32)
        np.testing.assert_array_equal(ops.conv2d_forward(x, w, b, work=work), want)
        np.testing.assert_array_equal(ops.conv2d_backward(dout, x, w, work=work)[1],
                                      ops.conv2d_backward(dout, x, w)[1])
        with pytest.raises(ValueError, match="sizes"):
            ops.conv2d_forward(x, w, b, work=work[:-1])
        with pytest.raises(ValueError, match="sizes"):
            ops.conv2d_backward(dout, x, w, work=work[:-1])
    finally:
        ops.set_num_threads(before)


# ---- max pooling ----

@pytest.mark.parametrize("shape,k", [((2, 3, 8, 8), 2), ((3, 2, 7, 9), 2), ((1, 1, 9, 10), 3),
                                     ((2, 4, 5, 5), 5), ((4, 32, 24, 24), 2), ((2, 2, 6, 4), 1)],
                         ids=["even", "odd-floor", "k3", "k-is-the-image", "network", "k1"])
def test_both_poolings_match_the_float64_reference_and_each_other(kernels, threads, shape, k):
    rng = np.random.default_rng(k + sum(shape))
    # few distinct values, so that windows hold ties: the first of equals must win
    x = rng.integers(-3, 4, size=shape).astype(np.float32)
    want, want_argmax = pool64(x, k)
    dout = rng.standard_normal(want.shape).astype(np.float32)
    dx64 = np.zeros(shape)
    planes = dx64.reshape(shape[0] * shape[1], -1)
    for q, (am, d) in enumerate(zip(want_argmax.reshape(len(planes), -1),
                                    dout.reshape(len(planes), -1))):
        np.add.at(planes[q], am, d)
    got = []
    for reference in (True, False):
        out, argmax = ops.maxpool2d_forward(x, k, reference=reference)
        assert argmax.dtype == np.int32
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(argmax, want_argmax)
        dx = ops.maxpool2d_backward(dout, argmax, shape, k, reference=reference)
        np.testing.assert_array_equal(dx, dx64.astype(np.float32))
        got.append((out, argmax, dx))
    for a, c in zip(*got):
        np.testing.assert_array_equal(a, c)


def test_pooling_passes_a_nan_on_and_the_gradient_accumulates():
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    x[0, 0, 1, 0] = np.nan
    x[0, 1, 2, 3] = np.nan
    x[0, 1, 3, 3] = np.nan
    for reference in (True, False):
        out, argmax = ops.maxpool2d_forward(x, 2, reference=reference)
        assert np.isnan(out[0, 0, 0, 0]) and argmax[0, 0, 0, 0] == 4
        assert np.isnan(out[0, 1, 1, 1]) and argmax[0, 1, 1, 1] == 11   # the first NaN
        assert out[0, 0, 1, 1] == 15 and argmax[0, 0, 1, 1] == 15
        dx = np.full(x.shape, 1.0, np.float32)
        ops.maxpool2d_backward(np.full(out.shape, 2.0, np.float32), argmax, x.shape, 2, dx,
                               reference=reference)
        assert dx.sum() == 32 + 2 * out.size and dx[0, 0, 1, 0] == 3.0


def test_nans_and_ties_pool_alike_eight_windows_at_a_time_and_one_at_a_time(kernels):
    """Rows of 18 windows (8 + 8 + 2) and 17 (8 + 8 + 1, an odd column left out), holding ties,
    infinities and NaNs: the fast pooling gives the readable one's values and argmax."""
    rng = np.random.default_rng(13)
    for shape in ((2, 3, 6, 36), (1, 2, 7, 35)):
        x = rng.integers(-2, 3, size=shape).astype(np.float32)
        x[rng.random(shape) < 0.08] = np.nan
        x[rng.random(shape) < 0.03] = np.inf
        x[rng.random(shape) < 0.03] = -np.inf
        want, want_am = ops.maxpool2d_forward(x, 2, reference=True)
        got, got_am = ops.maxpool2d_forward(x, 2)
        np.testing.assert_array_equal(got.view(np.int32), want.view(np.int32))
        np.testing.assert_array_equal(got_am, want_am)


# ---- a first layer's backward through ReLU and pooling, to the weights alone ----

# (B, C, H, W, OC, KH, KW, stride, padding), k: the MNIST network's first layer (more chosen
# windows a channel than one chunk of the list holds), rows of taps in groups of 8 (no
# padding, KW <= 8: 5, 6, 8, 9 = 8 + 1, 16 rows), strides, k = 3, odd sizes; the readable
# loops' cases: padding, a row wider than 8
FIRST_LAYERS = [((5, 1, 28, 28, 32, 5, 5, 1, 0), 2), ((3, 2, 13, 11, 5, 3, 4, 2, 0), 2),
                ((2, 1, 17, 19, 3, 8, 8, 1, 0), 3), ((3, 2, 10, 9, 4, 3, 3, 1, 1), 2),
                ((2, 3, 9, 9, 3, 3, 3, 1, 0), 2), ((2, 1, 12, 14, 3, 3, 9, 1, 0), 2),
                ((2, 2, 12, 12, 3, 8, 8, 1, 0), 2), ((0, 1, 8, 8, 3, 3, 3, 1, 0), 2)]


def relu_pool_case(shape, k, seed):
    x, w, b, _, stride, padding = make(shape, seed)
    out, argmax = ops.conv2d_relu_pool_forward(x, w, b, k, stride, padding)
    dout = np.random.default_rng(seed + 1).standard_normal(out.shape).astype(np.float32)
    return x, w, b, out, argmax, dout, stride, padding


@pytest.mark.parametrize("shape,k", FIRST_LAYERS)
def test_the_first_layers_weight_gradients_through_relu_and_pooling(kernels, shape, k):
    """Against the float64 sums over every position (the pooling's zeros included), the
    ReLU and pooling backward followed by the convolution's within rounding, and the readable
    loops bit for bit on 1, 2 and 3 threads."""
    x, w, b, out, argmax, dout, stride, padding = relu_pool_case(shape, k, sum(shape))
    conv_shape = ops.conv2d_output_shape(x.shape, w.shape, stride, padding)
    dz = ops.relu_maxpool2d_backward(dout, out, argmax, conv_shape, k)
    _, dw64, db64 = conv64_backward(dz, x, w, stride, padding)
    _, dw_scale, _ = conv64_backward(np.abs(dz), np.abs(x), np.abs(w), stride, padding)
    _, dw_layers, db_layers = ops.conv2d_backward(dz, x, w, stride, padding, want_dx=False)
    ref = ops.conv2d_relu_pool_backward_weights(dout, out, argmax, x, w, k, stride, padding,
                                                reference=True)
    assert_within(ref[0], dw64, dw_scale, dz[:, 0].size, "dw")
    np.testing.assert_allclose(ref[1], db64, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref[0], dw_layers, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ref[1], db_layers, rtol=1e-4, atol=1e-5)
    before = ops.get_num_threads()
    try:
        for n in (1, 2, 3):
            ops.set_num_threads(n)
            dw = np.full(w.shape, np.nan, np.float32)       # written, not added to
            db = np.full(w.shape[0], np.nan, np.float32)
            got = ops.conv2d_relu_pool_backward_weights(dout, out, argmax, x, w, k, stride,
                                                        padding, dw=dw, db=db)
            assert got[0] is dw and got[1] is db
            np.testing.assert_array_equal(dw.view(np.int32), ref[0].view(np.int32))
            np.testing.assert_array_equal(db.view(np.int32), ref[1].view(np.int32))
    finally:
        ops.set_num_threads(before)


def test_only_the_chosen_windows_reach_the_weights():
    """An Inf where no window chose gives no NaN (the pooling's zeros are skipped, not
    multiplied), a NaN in dout where out > 0 reaches every weight, and one where out <= 0
    (ReLU passed nothing back) reaches none."""
    x, w, b, out, argmax, dout, stride, padding = relu_pool_case((2, 1, 12, 12, 3, 3, 3, 1, 0),
                                                                 2, 4)
    chosen = np.zeros(x.shape, bool)
    for bb, o, wy, wx in np.ndindex(*out.shape):      # the pixels some chosen window read
        if out[bb, o, wy, wx] > 0:
            y, xx = divmod(int(argmax[bb, o, wy, wx]), 10)
            chosen[bb, 0, y:y + 3, xx:xx + 3] = True
    assert not chosen.all()
    x[~chosen] = np.inf
    for reference in (True, False):
        dw, db = ops.conv2d_relu_pool_backward_weights(dout, out, argmax, x, w, 2,
                                                       reference=reference)
        assert np.isfinite(dw).all() and np.isfinite(db).all()
        d = dout.copy()
        d[1, 2][out[1, 2] <= 0] = np.nan
        assert np.array_equal(ops.conv2d_relu_pool_backward_weights(d, out, argmax, x, w, 2)[0], dw)
        d[1, 2][out[1, 2] > 0] = np.nan
        dw_nan, db_nan = ops.conv2d_relu_pool_backward_weights(d, out, argmax, x, w, 2,
                                                               reference=reference)
        assert np.isnan(dw_nan[2]).all() and np.isnan(db_nan[2])
        np.testing.assert_array_equal(dw_nan[:2], dw[:2])


def test_the_first_layers_backward_refuses_what_it_must():
    x, w, b, out, argmax, dout, stride, padding = relu_pool_case((2, 1, 12, 12, 3, 3, 3, 1, 0),
                                                                 2, 5)
    bwd = ops.conv2d_relu_pool_backward_weights
    with pytest.raises(ValueError, match="dout must have shape"):
        bwd(dout[:, :2].copy(), out, argmax, x, w, 2)
    with pytest.raises(ValueError, match="out must have shape"):
        bwd(dout, out[:1].copy(), argmax, x, w, 2)
    with pytest.raises(TypeError, match="argmax must have dtype int32"):
        bwd(dout, out, argmax.astype(np.int64), x, w, 2)
    with pytest.raises(ValueError, match="dw must not overlap"):
        bwd(dout, out, argmax, x, w, 2, dw=x.reshape(-1)[:w.size].reshape(w.shape))
    for reference in (True, False):
        for where in ((0, 0, 0, 0), (1, 2, 4, 4)):
            wrong = argmax.copy()
            wrong[where] = wrong[where] + 2                  # the next window's pixel
            dw = np.full(w.shape, 5.0, np.float32)
            with pytest.raises(ValueError, match="outside its own pooling window"):
                bwd(dout, out, wrong, x, w, 2, dw=dw, reference=reference)
            assert (dw == 5.0).all(), "nothing is written when an index is wrong"


# ---- bad arguments ----

def conv_args():
    x, w, b, dout, _, _ = make((2, 3, 8, 8, 4, 3, 3, 1, 0), 9)
    return x, w, b, dout


@pytest.mark.parametrize("change,error,match", [
    (lambda a: a.update(x=a["x"].astype(np.float64)), TypeError, "x must have dtype float32"),
    (lambda a: a.update(w=a["w"].tolist()), TypeError, "w must be a numpy array"),
    (lambda a: a.update(x=a["x"][:, :, :, ::-1]), ValueError, "x must be C-contiguous"),
    (lambda a: a.update(x=a["x"][0]), ValueError, "x must be 4-D"),
    (lambda a: a.update(w=a["w"][:, :2].copy()), ValueError, "input channels"),
    (lambda a: a.update(b=a["b"][:3].copy()), ValueError, "b must have shape"),
    (lambda a: a.update(w=np.zeros((4, 3, 9, 9), np.float32)), ValueError, "larger than the padded"),
    (lambda a: a.update(stride=0), ValueError, "stride must be at least 1"),
    (lambda a: a.update(stride=True), TypeError, "stride must be an int"),
    (lambda a: a.update(padding=-1), ValueError, "padding must be at least 0"),
    (lambda a: a.update(padding=1.0), TypeError, "padding must be an int"),
    (lambda a: a.update(out=np.zeros((2, 4, 5, 5), np.float32)), ValueError, "out must have shape"),
    (lambda a: a.update(out=np.zeros((2, 4, 6, 6))), TypeError, "out must have dtype"),
    (lambda a: a.update(work=np.zeros((4, 100), np.float32)), ValueError, "work must be 1-D"),
])
def test_bad_forward_arguments_are_refused_by_name(change, error, match):
    x, w, b, _ = conv_args()
    args = dict(x=x, w=w, b=b, stride=1, padding=0)
    change(args)
    with pytest.raises(error, match=match):
        ops.conv2d_forward(**args)


def test_outputs_that_overlap_inputs_are_refused():
    x, w, b, dout = conv_args()
    buf = np.zeros(x.size + 1000, np.float32)
    xs = buf[:x.size].reshape(x.shape)
    xs[...] = x
    with pytest.raises(ValueError, match="out must not overlap"):
        ops.conv2d_forward(xs, w, b, out=buf[8:8 + dout.size].reshape(dout.shape))
    with pytest.raises(ValueError, match="work must not overlap"):
        ops.conv2d_forward(x, w, b, work=w.reshape(-1))
    with pytest.raises(ValueError, match="dx must not overlap"):
        ops.conv2d_backward(dout, x, w, dx=x)
    dw = np.zeros(w.size + 8, np.float32)
    with pytest.raises(ValueError, match="dw must not overlap"):
        ops.conv2d_backward(dout, x, w, dw=dw[:w.size].reshape(w.shape), db=dw[w.size - 2:w.size + 2])
    with pytest.raises(ValueError, match="dout must have shape"):
        ops.conv2d_backward(dout[:, :, 1:].copy(), x, w)
    with pytest.raises(ValueError, match="dw is read-only"):
        ro = np.zeros(w.shape, np.float32)
        ro.setflags(write=False)
        ops.conv2d_backward(dout, x, w, dw=ro)


def test_bad_pooling_arguments_are_refused_by_name():
    x = np.zeros((2, 3, 6, 6), np.float32)
    out, argmax = ops.maxpool2d_forward(x, 2)
    dout = np.zeros(out.shape, np.float32)
    with pytest.raises(ValueError, match="larger than the input"):
        ops.maxpool2d_forward(x, 7)
    with pytest.raises(ValueError, match="k must be at least 1"):
        ops.maxpool2d_forward(x, 0)
    with pytest.raises(TypeError, match="k must be an int"):
        ops.maxpool2d_forward(x, 2.0)
    with pytest.raises(TypeError, match="argmax must have dtype int32"):
        ops.maxpool2d_backward(dout, argmax.astype(np.int64), x.shape, 2)
    with pytest.raises(ValueError, match="argmax must have shape"):
        ops.maxpool2d_backward(dout, argmax[:, :2].copy(), x.shape, 2)
    with pytest.raises(ValueError, match="dout must have shape"):
        ops.maxpool2d_backward(dout, argmax, x.shape, 3)
    with pytest.raises(ValueError, match="argmax must not overlap"):
        ops.maxpool2d_forward(x, 2, argmax=x.view(np.int32).reshape(-1)[:54].reshape(2, 3, 3, 3))
    for reference in (True, False):
        for bad in (-1, 36, 2):   # before its plane, past it, in the wrong window
            wrong = argmax.copy()
            wrong[1, 2, 2, 2] = bad
            dx = np.zeros(x.shape, np.float32)
            with pytest.raises(ValueError, match="outside its own pooling window"):
                ops.maxpool2d_backward(dout + 1, wrong, x.shape, 2, dx, reference=reference)
            assert not dx.any(), "nothing is written when an index is wrong"


@pytest.mark.parametrize("where", [(0, 0, 0), (1, 5, 7), (0, 16, 8), (1, 9, 17)],
                         ids=["first", "in-a-run-of-8", "a-second-run", "past-the-runs"])
def test_a_wrong_argmax_is_found_wherever_it_lies_before_anything_is_written(kernels, where):
    """Windows are checked eight at a time where the kernel set has SIMD, one at a time past
    the last run of eight in a row (OW 18 = 8 + 8 + 2; the last odd row and column unpooled)."""
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 3, 35, 37)).astype(np.float32)
    out, argmax = ops.maxpool2d_forward(x, 2)
    dout = np.ones(out.shape, np.float32)
    ops.maxpool2d_backward(dout, argmax, x.shape, 2)          # the right ones pass
    ops.relu_maxpool2d_backward(dout, out, argmax, x.shape, 2)
    c, y, xo = where
    top = 2 * y * 37 + 2 * xo                                 # the window's top left pixel
    for bad in (top - 1, top + 2, top + 37 - 1, top + 2 * 37, top + 38 + 37, -2 ** 31,
                2 ** 31 - 1, 35 * 37):
        wrong = argmax.copy()
        wrong[1, c, y, xo] = bad
        for backward in (lambda dx: ops.maxpool2d_backward(dout, wrong, x.shape, 2, dx),
                         lambda dx: ops.relu_maxpool2d_backward(dout, out, wrong, x.shape, 2, dx)):
            dx = np.full(x.shape, 5.0, np.float32)
            with pytest.raises(ValueError, match="outside its own pooling window"):
                backward(dx)
            assert (dx == 5.0).all(), bad


def test_the_c_kernels_refuse_null_pointers_and_bad_sizes_themselves():
    x, w, b, dout = conv_args()
    p = lambda a: ffi.cast("float *", ffi.from_buffer(a))   # noqa: E731
    out = np.zeros(dout.shape, np.float32)
    work = np.zeros(ops.conv2d_workspace(x.shape, w.shape), np.float32)

    def shape(**change):
        s = dict(B=2, C=3, H=8, W=8, OC=4, KH=3, KW=3, stride=1, pad=0)
        s.update(change)
        return ffi.new("struct pynn_conv2d_shape *", s)

    for fwd in (lambda o, i, s: lib.pynn_conv2d_forward_ref(o, i, p(w), p(b), s),
                lambda o, i, s: lib.pynn_conv2d_forward(o, i, p(w), p(b), s, p(work), work.size)):
        assert fwd(p(out), p(x), shape()) == lib.PYNN_OK
        assert fwd(ffi.NULL, p(x), shape()) == lib.PYNN_ERR_NULL
        assert fwd(p(out), ffi.NULL, shape()) == lib.PYNN_ERR_NULL
        assert fwd(p(out), p(x), ffi.NULL) == lib.PYNN_ERR_NULL
        assert fwd(p(out), p(x), shape(B=-1)) == lib.PYNN_ERR_SIZE
        assert fwd(p(out), p(x), shape(C=0)) == lib.PYNN_ERR_SIZE
        assert fwd(p(out), p(x), shape(KH=9)) == lib.PYNN_ERR_SIZE
        assert fwd(p(out), p(x), shape(stride=0)) == lib.PYNN_ERR_ARG
        assert fwd(p(out), p(x), shape(pad=-1)) == lib.PYNN_ERR_ARG
        assert fwd(p(out), p(x), shape(pad=2 ** 62)) == lib.PYNN_ERR_OVERFLOW
        assert fwd(p(out), p(x), shape(B=2 ** 40, H=2 ** 20, W=2 ** 20)) == lib.PYNN_ERR_OVERFLOW
    assert lib.pynn_conv2d_forward(p(out), p(x), p(w), p(b), shape(), ffi.NULL, 0) == lib.PYNN_ERR_NULL
    assert lib.pynn_conv2d_forward(p(out), p(x), p(w), p(b), shape(), p(work), -1) == lib.PYNN_ERR_SIZE
    assert lib.pynn_conv2d_workspace(shape(KW=20)) < 0
    dw = np.zeros(w.shape, np.float32)
    assert lib.pynn_conv2d_backward(ffi.NULL, p(dw), ffi.NULL, p(dout), p(x), ffi.NULL, shape(),
                                    0, p(work), work.size) == lib.PYNN_OK
    for bwd in (lambda *a: lib.pynn_conv2d_backward_ref(*a),
                lambda *a: lib.pynn_conv2d_backward(*a, 0, p(work), work.size)):
        assert bwd(ffi.NULL, ffi.NULL, ffi.NULL, p(dout), p(x), p(w), shape()) == lib.PYNN_ERR_NULL
        assert bwd(p(x.copy()), p(dw), ffi.NULL, p(dout), p(x), ffi.NULL, shape()) == lib.PYNN_ERR_NULL
    o = np.zeros((2, 3, 4, 4), np.float32)
    am = np.zeros(o.shape, np.int32)
    ip = ffi.cast("int32_t *", ffi.from_buffer(am))
    for fn in (lib.pynn_maxpool2d_forward_ref, lib.pynn_maxpool2d_forward):
        assert fn(p(o), ip, p(x), 2, 3, 8, 8, 2) == lib.PYNN_OK
        assert fn(p(o), ffi.NULL, p(x), 2, 3, 8, 8, 2) == lib.PYNN_ERR_NULL
        assert fn(p(o), ip, p(x), 2, 3, 8, 8, 0) == lib.PYNN_ERR_ARG
        assert fn(p(o), ip, p(x), 2, 3, 8, 8, 9) == lib.PYNN_ERR_SIZE
        assert fn(p(o), ip, p(x), -2, 3, 8, 8, 2) == lib.PYNN_ERR_SIZE
        assert fn(p(o), ip, p(x), 1, 1, 2 ** 16, 2 ** 16, 2) == lib.PYNN_ERR_OVERFLOW
    for fn in (lib.pynn_maxpool2d_backward_ref, lib.pynn_maxpool2d_backward):
        assert fn(ffi.NULL, p(o), ip, 2, 3, 8, 8, 2) == lib.PYNN_ERR_NULL
        assert fn(p(x.copy()), p(o), ip, 2, 3, 8, 8, -1) == lib.PYNN_ERR_ARG


# ---- a convolution, ReLU and pooling in one pass ----

def relu_pool_of_the_three_calls(x, w, b, stride, padding, k):
    """What the layers compute one call at a time: conv2d_forward, ReLU over it, pooling."""
    z = ops.conv2d_forward(x, w, b, stride, padding)
    ops.activation_forward("relu", z, out=z)
    out, argmax = ops.maxpool2d_forward(z, k)
    return z, out, argmax


# (B, C, H, W, OC, KH, KW, stride, padding), k: the network's two layers, a batch of one
# (each image shared by the threads), padding and stride, pooling that leaves rows out, k = 3
FUSED = [((5, 1, 28, 28, 32, 5, 5, 1, 0), 2), ((4, 32, 12, 12, 64, 5, 5, 1, 0), 2),
         ((1, 3, 9, 9, 4, 3, 3, 1, 1), 2), ((3, 2, 11, 10, 5, 3, 2, 2, 1), 2),
         ((2, 3, 13, 12, 6, 2, 2, 1, 0), 3)]
FUSED_IDS = ["conv1", "conv2", "B1-pad1", "stride2-odd", "k3"]


@pytest.mark.parametrize("shape,k", FUSED, ids=FUSED_IDS)
@pytest.mark.parametrize("shared", [False, True], ids=["default", "every-job-shared"])
def test_the_fused_convolution_relu_and_pooling_give_the_bits_of_the_three_calls(
        kernels, threads, shape, k, shared):
    x, w, b, _, stride, padding = make(shape, 3 + k)
    ops.share_every_job(shared)
    try:
        z, want, want_argmax = relu_pool_of_the_three_calls(x, w, b, stride, padding, k)
        out, argmax = ops.conv2d_relu_pool_forward(x, w, b, k, stride, padding)
        np.testing.assert_array_equal(out, want)
        np.testing.assert_array_equal(argmax, want_argmax)
        dout = np.random.default_rng(k).standard_normal(out.shape).astype(np.float32)
        dout.reshape(-1)[::7] = -0.0                     # the sign of a zero comes through too
        dz = ops.maxpool2d_backward(dout, argmax, z.shape, k)
        ops.activation_backward("relu", z, dz, dinp=dz)
        got = ops.relu_maxpool2d_backward(dout, out, argmax, z.shape, k,
                                          dx=np.full(z.shape, np.nan, np.float32))
        np.testing.assert_array_equal(got.view(np.int32), dz.view(np.int32))
    finally:
        ops.share_every_job(False)


@pytest.mark.parametrize("shape,k", FUSED, ids=FUSED_IDS)
def test_the_fused_pass_matches_the_float64_reference(shape, k):
    x, w, b, _, stride, padding = make(shape, 11)
    z64 = np.maximum(conv64(x, w, b, stride, padding), 0.0)
    scale = conv64(np.abs(x), np.abs(w), np.abs(b), stride, padding)
    want, _ = pool64(z64, k)
    out, argmax = ops.conv2d_relu_pool_forward(x, w, b, k, stride, padding)
    pooled_scale, _ = pool64(scale, k)
    assert_within(out, want, pooled_scale, w[0].size, "pooled")    # max moves no more than its inputs
    B, OC, OH, OW = z64.shape
    chosen = np.take_along_axis(z64.reshape(B, OC, -1), argmax.reshape(B, OC, -1), axis=2)
    assert_within(out, chosen.reshape(out.shape), pooled_scale, w[0].size, "the argmax's value")
    dout = np.random.default_rng(1).standard_normal(out.shape)
    dz64 = np.zeros((B * OC, OH * OW))
    for q, (am, d, o) in enumerate(zip(argmax.reshape(B * OC, -1), dout.reshape(B * OC, -1),
                                       out.reshape(B * OC, -1))):
        dz64[q, am] = np.where(o > 0, d, 0.0)
    got = ops.relu_maxpool2d_backward(dout.astype(np.float32), out, argmax, z64.shape, k)
    np.testing.assert_array_equal(got, dz64.reshape(z64.shape).astype(np.float32))


def test_the_fused_pass_refuses_bad_arguments_by_name():
    x, w, b, _ = conv_args()                    # conv output (2,4,6,6)
    out, argmax = ops.conv2d_relu_pool_forward(x, w, b, 2)
    assert out.shape == argmax.shape == (2, 4, 3, 3)
    dout = np.ones(out.shape, np.float32)
    with pytest.raises(ValueError, match="larger than the input"):
        ops.conv2d_relu_pool_forward(x, w, b, 7)
    with pytest.raises(ValueError, match="b must have shape"):
        ops.conv2d_relu_pool_forward(x, w, b[:3].copy(), 2)
    with pytest.raises(TypeError, match="b must be a numpy array"):
        ops.conv2d_relu_pool_forward(x, w, None, 2)
    with pytest.raises(ValueError, match="out must have shape"):
        ops.conv2d_relu_pool_forward(x, w, b, 2, out=np.zeros((2, 4, 6, 6), np.float32))
    with pytest.raises(TypeError, match="argmax must have dtype int32"):
        ops.conv2d_relu_pool_forward(x, w, b, 2, argmax=argmax.astype(np.int64))
    with pytest.raises(ValueError, match="work must not overlap"):
        ops.conv2d_relu_pool_forward(x, w, b, 2, work=x.reshape(-1))
    with pytest.raises(ValueError, match="out must not overlap"):
        ops.conv2d_relu_pool_forward(x, w, b, 2, out=x.reshape(-1)[:out.size].reshape(out.shape))
    with pytest.raises(ValueError, match="out must have shape"):
        ops.relu_maxpool2d_backward(dout, out[:, :2].copy(), argmax, (2, 4, 6, 6), 2)
    buf = np.ones(2 * 4 * 6 * 6, np.float32)
    with pytest.raises(ValueError, match="dx must not overlap"):
        ops.relu_maxpool2d_backward(buf[:dout.size].reshape(dout.shape), out, argmax,
                                    (2, 4, 6, 6), 2, dx=buf.reshape(2, 4, 6, 6))
    for bad in (-1, 36, 2):       # before its plane, past it, in the wrong window
        wrong = argmax.copy()
        wrong[1, 2, 2, 2] = bad
        dx = np.full((2, 4, 6, 6), 5.0, np.float32)
        with pytest.raises(ValueError, match="outside its own pooling window"):
            ops.relu_maxpool2d_backward(dout, out, wrong, dx.shape, 2, dx)
        assert (dx == 5.0).all(), "nothing is written when an index is wrong"
    p = lambda a: ffi.cast("float *", ffi.from_buffer(a))   # noqa: E731
    ip = ffi.cast("int32_t *", ffi.from_buffer(argmax))
    s = ffi.new("struct pynn_conv2d_shape *", dict(B=2, C=3, H=8, W=8, OC=4, KH=3, KW=3,
                                                   stride=1, pad=0))
    work = np.zeros(ops.conv2d_relu_pool_workspace(x.shape, w.shape), np.float32)
    fwd = lib.pynn_conv2d_relu_pool_forward
    assert fwd(p(out), ip, p(x), p(w), p(b), s, 2, p(work), work.size) == lib.PYNN_OK
    assert fwd(p(out), ffi.NULL, p(x), p(w), p(b), s, 2, p(work), work.size) == lib.PYNN_ERR_NULL
    assert fwd(p(out), ip, p(x), p(w), p(b), s, 0, p(work), work.size) == lib.PYNN_ERR_ARG
    assert fwd(p(out), ip, p(x), p(w), p(b), s, 7, p(work), work.size) == lib.PYNN_ERR_SIZE
    assert fwd(p(out), ip, p(x), p(w), p(b), s, 2, p(work), 10) == lib.PYNN_ERR_SIZE
    dx = np.zeros((2, 4, 6, 6), np.float32)
    bwd = lib.pynn_relu_maxpool2d_backward
    assert bwd(p(dx), p(dout), p(out), ip, 2, 4, 6, 6, 2) == lib.PYNN_OK
    assert bwd(p(dx), p(dout), ffi.NULL, ip, 2, 4, 6, 6, 2) == lib.PYNN_ERR_NULL
    assert bwd(p(dx), p(dout), p(out), ffi.NULL, 2, 4, 6, 6, 2) == lib.PYNN_ERR_NULL
    assert bwd(p(dx), p(dout), p(out), ip, 2, 4, 6, 6, 0) == lib.PYNN_ERR_ARG
