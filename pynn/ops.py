"""The one door into C: every call into the kernels goes through here, and so does every check.

A pointer only crosses into C after its array has been checked: a numpy array, float32,
C-contiguous (so rows are where C thinks they are), the shape the operation needs, writable
when C writes to it. A wrong argument raises TypeError (wrong type or dtype) or ValueError
(wrong shape, layout, empty where data is needed) naming it. Nothing is converted silently:
a float64 array passed where float32 is expected is an error, not a hidden copy.

The functions return new arrays; ``out=`` writes into a buffer the caller owns instead, which
the training loop uses so that no batch allocates.
"""
import itertools
import operator
import os
import sys
import threading

import numpy as np

from ._pynn import ffi, lib

LINEAR, SIGMOID, RELU, TANH, SOFTMAX = (lib.PYNN_LINEAR, lib.PYNN_SIGMOID, lib.PYNN_RELU,
                                        lib.PYNN_TANH, lib.PYNN_SOFTMAX)
ACTIVATIONS = {"linear": LINEAR, "sigmoid": SIGMOID, "relu": RELU, "tanh": TANH,
               "softmax": SOFTMAX}

_STATUS = {
    lib.PYNN_ERR_NULL: "a required array was missing",
    lib.PYNN_ERR_SIZE: "sizes are negative or do not agree",
    lib.PYNN_ERR_ARG: "an argument is out of range",
    lib.PYNN_ERR_OVERFLOW: "sizes are too large (the element count overflows)",
}


def _status(rc, what):
    if rc != lib.PYNN_OK:
        raise ValueError(f"{what}: {_STATUS.get(rc, f'C error code {rc}')}")


def _array(name, a, ndim=None, writable=False):
    """Check that ``a`` may cross into C as float32 data; return it unchanged."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of float32, got {type(a).__name__}")
    if a.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {a.dtype}")
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {a.shape}")
    if not a.flags.c_contiguous:
        raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
    if writable and not a.flags.writeable:
        raise ValueError(f"{name} is read-only, but the result is written into it")
    return a


def _shape(name, a, shape):
    if a.shape != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {a.shape}")


def _out(out, shape, like_name="out", inputs=(), same_ok=True, fill=None):
    """A new float32 array of ``shape`` (``fill``ed when given), or the caller's ``out`` after
    checking it against every input the kernel reads: it may be one of ``inputs`` exactly when
    ``same_ok`` (kernels that go element by element, or row by row), and otherwise must not
    share a byte with any of them. A write into part of an input would change values the kernel
    has yet to read: a silent wrong answer."""
    if out is None:
        if fill is None:
            return np.empty(shape, dtype=np.float32)
        return np.full(shape, fill, dtype=np.float32)
    _array(like_name, out, writable=True)
    _shape(like_name, out, shape)
    if same_ok:
        _same_or_apart(out, *inputs, name=like_name)
    else:
        _no_overlap(out, *inputs, name=like_name)
    return out


def _ptr(a):
    return ffi.cast("float *", ffi.from_buffer(a, require_writable=False)) if a.size else ffi.NULL


def _wptr(a):
    return ffi.cast("float *", ffi.from_buffer(a, require_writable=True)) if a.size else ffi.NULL


def _no_overlap(out, *inputs, name="out"):
    """``out`` shares no byte with any of ``inputs``. The arrays that cross into C are
    C-contiguous, so the bounds numpy compares cheaply are exactly the bytes they hold."""
    for inp in inputs:
        if inp is not None and np.may_share_memory(out, inp):
            raise ValueError(f"{name} must not overlap an input")


def _same_or_apart(out, *inputs, name="out"):
    """Kernels that go element by element (or row by row) may write over an input exactly, never
    over part of one: a shifted write would change an element the kernel has yet to read."""
    for inp in inputs:
        if inp is not None and np.may_share_memory(out, inp) and not (
                out.__array_interface__["data"][0] == inp.__array_interface__["data"][0]
                and out.shape == inp.shape and out.strides == inp.strides and out.dtype == inp.dtype):
            raise ValueError(f"{name} must be the same array as an input or not overlap it")


def _apart(written, read):
    """No two arrays of ``written`` (name -> array, all written by one C call) share a byte,
    and none shares one with an array of ``read``: one pass over them sorted by address, as
    a call over many arrays (a network's parameters and optimiser state) would otherwise
    compare every pair. The arrays are C-contiguous: each holds [start, start + nbytes)."""
    spans = sorted((a.__array_interface__["data"][0], a.nbytes, name, name in written)
                   for name, a in itertools.chain(written.items(), read.items()) if a.nbytes)
    reach = []                   # (end, name, written) of the spans started so far
    for start, size, name, writes in spans:
        for end, other, other_writes in reach:
            if end > start and (writes or other_writes):
                raise ValueError(f"{name} must not overlap {other}")
        reach = [r for r in reach if r[0] > start] + [(start + size, name, writes)]


# ---- machine ----

def set_num_threads(n):
    """Threads the parallel kernels use (default: all cores, or $PYNN_NUM_THREADS)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if not 1 <= n <= 1024:
        raise ValueError(f"n must be between 1 and 1024, got {n}")
    _status(lib.pynn_set_num_threads(int(n)), "set_num_threads")


def get_num_threads():
    return lib.pynn_get_num_threads()


MAX_LAYERS, MAX_WIDTH = lib.PYNN_MAX_LAYERS, lib.PYNN_MAX_WIDTH   # what the C network takes


def physical_memory():
    """Bytes of memory this machine has, or None where the system does not say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def cpu_features():
    """The SIMD path the kernels run on this CPU: 'avx512f', 'avx2' or 'generic'."""
    return ffi.string(lib.pynn_cpu_features()).decode()


# ---- matrix product ----

def gemm(a, b, c, alpha=1.0, beta=0.0, trans_a=False, trans_b=False, reference=False):
    """c = alpha * op(a) @ op(b) + beta * c, in place; op transposes when asked.

    a is (M,K), or (K,M) with trans_a; b is (K,N), or (N,K) with trans_b; c is (M,N).
    ``reference=True`` runs the readable triple loop instead of the fast kernel.
    """
    _array("a", a, ndim=2)
    _array("b", b, ndim=2)
    _array("c", c, ndim=2, writable=True)
    M, K = (a.shape[1], a.shape[0]) if trans_a else a.shape
    Kb, N = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if K != Kb:
        raise ValueError(f"inner dimensions differ: op(a) is {(M, K)}, op(b) is {(Kb, N)}")
    _shape("c", c, (M, N))
    _no_overlap(c, a, b, name="c")
    fn = lib.pynn_gemm_ref if reference else lib.pynn_gemm
    rc = fn(int(bool(trans_a)), int(bool(trans_b)), M, N, K, float(alpha),
            _ptr(a), a.shape[1], _ptr(b), b.shape[1], float(beta), _wptr(c), N)
    _status(rc, "gemm")
    return c


def matmul(a, b, trans_a=False, trans_b=False, out=None, reference=False):
    """op(a) @ op(b) as a new (M,N) float32 array (or into ``out``): eq. 5-9."""
    _array("a", a, ndim=2)
    _array("b", b, ndim=2)
    M = a.shape[1] if trans_a else a.shape[0]
    N = b.shape[0] if trans_b else b.shape[1]
    c = _out(out, (M, N), inputs=(a, b), same_ok=False)
    return gemm(a, b, c, 1.0, 0.0, trans_a, trans_b, reference)


def bias_forward(z, bias):
    """z (B,n) += bias (n), in place: the + b of z = W a + b for every sample."""
    _array("z", z, ndim=2, writable=True)
    _array("bias", bias, ndim=1)
    _shape("bias", bias, (z.shape[1],))
    _no_overlap(bias, z, name="bias")
    _status(lib.pynn_bias_forward(_wptr(z), _ptr(bias), z.shape[0], z.shape[1]), "bias_forward")
    return z


def bias_backward(dz, out=None):
    """db = column sums of dz (B,n): every sample's dz reached b. Accumulates into ``out``."""
    _array("dz", dz, ndim=2)
    out = _out(out, (dz.shape[1],), inputs=(dz,), same_ok=False, fill=0.0)
    _status(lib.pynn_bias_backward(_wptr(out), _ptr(dz), dz.shape[0], dz.shape[1]), "bias_backward")
    return out


# ---- activations ----

def _kind(name):
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def _as_rows(x):
    """Softmax works on rows; a 1-D vector is one row."""
    return (1, x.shape[0]) if x.ndim == 1 else (x.shape[0], int(np.prod(x.shape[1:])))


def activation_forward(kind, x, out=None):
    """f(x) element by element (eq. 4), or softmax over each row: a new array or ``out``."""
    k = _kind(kind)
    _array("x", x)
    if k == SOFTMAX and x.ndim not in (1, 2):
        raise ValueError(f"x must be a vector or a (B,n) matrix for softmax, got shape {x.shape}")
    y = _out(out, x.shape, inputs=(x,))
    B, n = _as_rows(x) if x.ndim else (1, 1)
    _status(lib.pynn_activation_forward(k, _wptr(y), _ptr(x), B, n), kind)
    return y


def activation_backward(kind, out, dout, dinp=None):
    """dL/dz from dL/da and a = f(z): dout times f'(z), written in terms of out."""
    k = _kind(kind)
    _array("out", out)
    _array("dout", dout)
    _shape("dout", dout, out.shape)
    if k == SOFTMAX and out.ndim not in (1, 2):
        raise ValueError(f"out must be a vector or a (B,n) matrix for softmax, got shape {out.shape}")
    d = _out(dinp, out.shape, "dinp", inputs=(out, dout))
    B, n = _as_rows(out) if out.ndim else (1, 1)
    _status(lib.pynn_activation_backward(k, _wptr(d), _ptr(out), _ptr(dout), B, n),
            f"{kind} backward")
    return d


def sigmoid(x, out=None):
    """sigma(x) = 1 / (1 + e^-x) (eq. 17), element by element."""
    return activation_forward("sigmoid", x, out)


def relu(x, out=None):
    """max(0, x), element by element."""
    return activation_forward("relu", x, out)


def tanh(x, out=None):
    return activation_forward("tanh", x, out)


def softmax(x, out=None):
    """e^(x_i) / sum_j e^(x_j) (eq. 23) over each row of a (B,n) matrix, or over a vector."""
    return activation_forward("softmax", x, out)


# ---- losses ----

def _loss_args(y, t, yname="y"):
    _array(yname, y, ndim=2)
    _array("t", t, ndim=2)
    _shape("t", t, y.shape)
    if y.shape[0] == 0:
        raise ValueError(f"{yname} is empty: a loss needs at least one sample")
    return y.shape


def quadratic_loss(y, t):
    """Eq. 22: (1/B) sum_i sum_j (t_ij - y_ij)^2 for outputs y (B,n) and targets t (B,n)."""
    B, n = _loss_args(y, t)
    loss = ffi.new("double *")
    _status(lib.pynn_quadratic_loss_forward(loss, _ptr(y), _ptr(t), B, n), "quadratic_loss")
    return loss[0]


def quadratic_loss_backward(y, t, out=None):
    """dL/dy = 2 (y - t) / B."""
    B, n = _loss_args(y, t)
    d = _out(out, (B, n), "out", inputs=(y, t))
    _status(lib.pynn_quadratic_loss_backward(_wptr(d), _ptr(y), _ptr(t), B, n), "quadratic_loss_backward")
    return d


def softmax_cross_entropy(logits, t, probs=None):
    """Softmax and cross-entropy fused: returns (loss, probs). loss = -(1/B) sum t log p."""
    B, n = _loss_args(logits, t, "logits")
    p = _out(probs, (B, n), "probs", inputs=(logits, t))
    loss = ffi.new("double *")
    _status(lib.pynn_softmax_cross_entropy_forward(loss, _wptr(p), _ptr(logits), _ptr(t), B, n),
            "softmax_cross_entropy")
    return loss[0], p


def softmax_cross_entropy_backward(probs, t, out=None):
    """dL/dlogits = (p - t) / B for targets whose rows sum to 1."""
    B, n = _loss_args(probs, t, "probs")
    d = _out(out, (B, n), inputs=(probs, t))
    _status(lib.pynn_softmax_cross_entropy_backward(_wptr(d), _ptr(probs), _ptr(t), B, n),
            "softmax_cross_entropy_backward")
    return d


def sigmoid_cross_entropy(logits, t, probs=None):
    """Sigmoid outputs with per-unit cross-entropy, fused: returns (loss, probs)."""
    B, n = _loss_args(logits, t, "logits")
    p = _out(probs, (B, n), "probs", inputs=(logits, t))
    loss = ffi.new("double *")
    _status(lib.pynn_sigmoid_cross_entropy_forward(loss, _wptr(p), _ptr(logits), _ptr(t), B, n),
            "sigmoid_cross_entropy")
    return loss[0], p


def sigmoid_cross_entropy_backward(probs, t, out=None):
    """dL/dlogits = (sigma(z) - t) / B."""
    B, n = _loss_args(probs, t, "probs")
    d = _out(out, (B, n), inputs=(probs, t))
    _status(lib.pynn_sigmoid_cross_entropy_backward(_wptr(d), _ptr(probs), _ptr(t), B, n),
            "sigmoid_cross_entropy_backward")
    return d


# ---- optimiser updates ----

def _param_and_grad(w, dw, *state):
    _array("w", w, writable=True)
    _array("dw", dw)
    _shape("dw", dw, w.shape)
    _same_or_apart(w, dw, name="w")
    for i, s in enumerate(state):
        _array(f"state[{i}]", s, writable=True)
        _shape(f"state[{i}]", s, w.shape)
        _no_overlap(s, w, *state[:i], name=f"state[{i}]")   # each written, so none may share
        _same_or_apart(s, dw, name=f"state[{i}]")
    return w.size


def _hyper(name, value, low=0.0, high=None, high_open=False):
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value) or value < low or (high is not None and (
            value >= high if high_open else value > high)):
        bound = f"in [{low}, {high}{')' if high_open else ']'}" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value}")
    return value


def sgd_update(w, dw, lr, weight_decay=0.0):
    """w <- w - lr * (dw + weight_decay * w), in place (section 4.3)."""
    n = _param_and_grad(w, dw)
    _status(lib.pynn_sgd_update(_wptr(w), _ptr(dw), n, _hyper("lr", lr),
                                _hyper("weight_decay", weight_decay)), "sgd_update")


def momentum_update(w, vel, dw, lr, momentum, weight_decay=0.0):
    """vel <- momentum * vel + dw (+ decay); w <- w - lr * vel, in place."""
    n = _param_and_grad(w, dw, vel)
    _status(lib.pynn_momentum_update(_wptr(w), _wptr(vel), _ptr(dw), n, _hyper("lr", lr),
                                     _hyper("momentum", momentum, 0.0, 1.0, True),
                                     _hyper("weight_decay", weight_decay)), "momentum_update")


def adam_update(w, m, v, dw, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step, in place; ``step`` counts from 1."""
    n = _param_and_grad(w, dw, m, v)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 1 <= step < 2 ** 63:
        raise ValueError(f"step must be an int in [1, 2**63), got {step!r}")
    _status(lib.pynn_adam_update(_wptr(w), _wptr(m), _wptr(v), _ptr(dw), n, _hyper("lr", lr),
                                 _hyper("beta1", beta1, 0.0, 1.0, True),
                                 _hyper("beta2", beta2, 0.0, 1.0, True),
                                 _hyper("eps", eps, 1e-30), _hyper("weight_decay", weight_decay),
                                 int(step)), "adam_update")


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



# ---- at the network's edges ----

def scale_u8(x, scale=1.0 / 255.0, out=None):
    """uint8 pixels to float32 values x * scale (default: 0..255 to 0..1)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array of uint8, got {type(x).__name__}")
    if x.dtype != np.uint8:
        raise TypeError(f"x must have dtype uint8, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous (use np.ascontiguousarray)")
    y = _out(out, x.shape, inputs=(x,), same_ok=False)
    src = ffi.cast("uint8_t *", ffi.from_buffer(x)) if x.size else ffi.NULL
    _status(lib.pynn_scale_u8(_wptr(y), src, x.size, _hyper("scale", scale, -np.inf)), "scale_u8")
    return y


def argmax_rows(x):
    """The column of each row's largest value, as int64 (B,); -1 for a row holding NaN."""
    _array("x", x, ndim=2)
    if x.shape[1] == 0 and x.shape[0] > 0:
        raise ValueError("x has no columns: there is no largest value")
    out = np.empty(x.shape[0], dtype=np.int64)
    dst = ffi.cast("int64_t *", ffi.from_buffer(out, require_writable=True)) if out.size else ffi.NULL
    _status(lib.pynn_argmax_rows(dst, _ptr(x), x.shape[0], x.shape[1]), "argmax_rows")
    return out


# ---- drawings to MNIST's form (preprocess.c) and distortions for training (augment.c) ----

def _finite(name, a):
    if not np.isfinite(a).all():
        raise ValueError(f"{name} holds NaN or Inf")


def _stack(name, a):
    """An (n,H,W) float32 image stack, checked; returns its shape."""
    _array(name, a, ndim=3)
    return a.shape


def raster_strokes(canvas, xy, lengths, scale=1.0, off_x=0.0, off_y=0.0, radius=1.0):
    """Draw strokes into ``canvas`` (H,W) in place, keeping the brighter value at each pixel.

    xy (P,2) holds the (x,y) points of all strokes one after another, lengths (S,) int64 how
    many belong to each. A point lands at (x*scale + off_x, y*scale + off_y) canvas pixels; a
    stroke is every point within ``radius`` of its polyline, edges anti-aliased over a pixel.
    """
    _array("canvas", canvas, ndim=2, writable=True)
    _array("xy", xy, ndim=2)
    if xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (P, 2), got {xy.shape}")
    _finite("xy", xy)
    if not isinstance(lengths, np.ndarray) or lengths.dtype != np.int64 or lengths.ndim != 1:
        raise TypeError("lengths must be a 1-D int64 numpy array")
    lengths = np.ascontiguousarray(lengths)
    if lengths.size and (lengths.min() < 0 or int(lengths.sum()) != xy.shape[0]):
        raise ValueError(f"lengths must be >= 0 and add up to the {xy.shape[0]} points in xy")
    if not lengths.size and xy.shape[0]:
        raise ValueError(f"lengths is empty but xy holds {xy.shape[0]} points")
    _no_overlap(canvas, xy, lengths, name="canvas")
    lens = ffi.cast("int64_t *", ffi.from_buffer(lengths)) if lengths.size else ffi.NULL
    rc = lib.pynn_raster_strokes(_wptr(canvas), canvas.shape[0], canvas.shape[1], _ptr(xy), lens,
                                 lengths.size, _hyper("scale", scale, -np.inf),
                                 _hyper("off_x", off_x, -np.inf), _hyper("off_y", off_y, -np.inf),
                                 _hyper("radius", radius))
    _status(rc, "raster_strokes")
    return canvas


def resample_area(inp, shape, y0=0.0, x0=0.0, sy=1.0, sx=1.0, gain=1.0, out=None):
    """An image of ``shape`` (h,w) whose pixel (i,j) is ``gain`` times the mean of ``inp`` (H,W)
    over the rectangle [y0 + i*sy, y0 + (i+1)*sy) x [x0 + j*sx, x0 + (j+1)*sx), inp being 0
    outside itself: area averaging, which anti-aliases when it shrinks."""
    _array("inp", inp, ndim=2)
    h, w = (int(v) for v in shape)
    if h < 0 or w < 0:
        raise ValueError(f"shape must not be negative, got {tuple(shape)}")
    out = _out(out, (h, w), inputs=(inp,), same_ok=False)
    rc = lib.pynn_resample_area(_wptr(out), h, w, _ptr(inp), inp.shape[0], inp.shape[1],
                                _hyper("y0", y0, -np.inf), _hyper("x0", x0, -np.inf),
                                _hyper("sy", sy, 1e-30), _hyper("sx", sx, 1e-30),
                                _hyper("gain", gain, -np.inf))
    _status(rc, "resample_area")
    return out


def ink_moments(img):
    """(mass, cy, cx, edge) of an image (H,W): its sum, its centre of mass in pixel units
    (pixel (r,c)'s centre is (r+0.5, c+0.5)), and the summed gradient magnitude (the length
    of the ink's outline, so 2*mass/edge is a stroke's width)."""
    _array("img", img, ndim=2)
    m = np.zeros(4, dtype=np.float64)
    _status(lib.pynn_ink_moments(ffi.cast("double *", ffi.from_buffer(m, require_writable=True)),
                                 _ptr(img), img.shape[0], img.shape[1]), "ink_moments")
    return tuple(float(v) for v in m)


def ink_bbox(img, threshold=0.0):
    """(r0, r1, c0, c1): rows r0..r1-1 and columns c0..c1-1 hold every value of img (H,W)
    above ``threshold``; None when none is."""
    _array("img", img, ndim=2)
    box = np.zeros(4, dtype=np.int64)
    _status(lib.pynn_ink_bbox(ffi.cast("int64_t *", ffi.from_buffer(box, require_writable=True)),
                              _ptr(img), img.shape[0], img.shape[1],
                              _hyper("threshold", threshold, -np.inf)), "ink_bbox")
    return None if box[1] == 0 else tuple(int(v) for v in box)


def stroke_width(images, amount, out=None):
    """Images (n,H,W) with strokes widened (amount > 0, up to 2 pixels at 1) or narrowed
    (amount < 0): each image blended with its 3x3 grey dilation or erosion. amount: (n,) in [-1,1]."""
    n, H, W = _stack("images", images)
    _array("amount", amount, ndim=1)
    _shape("amount", amount, (n,))
    if n and not (np.abs(amount) <= 1.0).all():
        raise ValueError("amount must lie in [-1, 1]")
    out = _out(out, images.shape, inputs=(images, amount), same_ok=False)
    _status(lib.pynn_stroke_width(_wptr(out), _ptr(images), n, H, W, _ptr(amount)), "stroke_width")
    return out


def warp(images, mats, dx=None, dy=None, out=None):
    """Images (n,H,W) warped: out_k at pixel centre (y,x) is images_k, bilinearly, at
    u = m0*x + m1*y + m2 + dx_k(y,x), v = m3*x + m4*y + m5 + dy_k(y,x), with m = mats[k] (n,6)
    (pixel units, y down), 0 outside. dx, dy: (n,fh,fw) displacement fields, or both None; a
    coarser field than the image is read bilinearly at the pixel's place in it."""
    n, H, W = _stack("images", images)
    _array("mats", mats, ndim=2)
    _shape("mats", mats, (n, 6))
    _finite("mats", mats)
    if (dx is None) != (dy is None):
        raise ValueError("dx and dy go together: give both displacement fields or neither")
    fh = fw = 0
    if dx is not None:
        _array("dx", dx, ndim=3)
        if dx.shape[0] != n or min(dx.shape) < 1:
            raise ValueError(f"dx must have shape ({n}, fh, fw) with fh, fw >= 1, got {dx.shape}")
        _array("dy", dy, ndim=3)
        _shape("dy", dy, dx.shape)
        _finite("dx", dx)
        _finite("dy", dy)
        fh, fw = dx.shape[1:]
    out = _out(out, images.shape, inputs=(images, mats, dx, dy), same_ok=False)
    rc = lib.pynn_warp(_wptr(out), _ptr(images), n, H, W, _ptr(mats),
                       ffi.NULL if dx is None else _ptr(dx), ffi.NULL if dy is None else _ptr(dy),
                       fh, fw)
    _status(rc, "warp")
    return out


def gaussian_blur(images, sigma, gain=1.0, out=None):
    """Images (n,H,W) convolved with a Gaussian of standard deviation ``sigma`` pixels (cut at
    3 sigma, at most 64 pixels) and multiplied by ``gain``, 0 outside each image."""
    n, H, W = _stack("images", images)
    out = _out(out, images.shape, inputs=(images,), same_ok=False)
    tmp = np.empty_like(images)
    _status(lib.pynn_gaussian_blur(_wptr(out), _wptr(tmp), _ptr(images), n, H, W,
                                   _hyper("sigma", sigma), _hyper("gain", gain, -np.inf)),
            "gaussian_blur")
    return out



# ---- fast paths: the kernel set, and a whole network in one call (csrc/fast/net*.c) ----

LOSS_KINDS = {"quadratic": lib.PYNN_LOSS_QUADRATIC, "cross_entropy": lib.PYNN_LOSS_CROSS_ENTROPY}
OPTIMIZER_KINDS = {"sgd": lib.PYNN_OPT_SGD, "momentum": lib.PYNN_OPT_MOMENTUM,
                   "adam": lib.PYNN_OPT_ADAM}
KERNEL_SETS = ("auto", "avx512f", "avx2", "generic")


CACHE_LINE = 64


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


def select_kernels(name="auto"):
    """Run the fast kernels on one SIMD path ("avx512f", "avx2", "generic"), or on the widest
    this CPU runs ("auto", the default). Tests use it to check every path against the reference."""
    if name not in KERNEL_SETS:
        raise ValueError(f"kernel set must be one of {', '.join(KERNEL_SETS)}, got {name!r}")
    if lib.pynn_kernels_select(name.encode()) != lib.PYNN_OK:
        raise ValueError(f"this CPU cannot run the {name} kernels")


_F32 = np.dtype(np.float32)


def _i64(a):
    return ffi.cast("int64_t *", ffi.from_buffer(a)) if a.size else ffi.NULL


class GemmCall:
    """``gemm(a, b, c, ...)`` prepared once and run many times: the arrays are checked (and the
    product computed) when it is made, their pointers kept, so each call is one C call, as in
    the fused network step. For loops over the same buffers, such as ``pynn bench``."""

    def __init__(self, a, b, c, alpha=1.0, beta=0.0, trans_a=False, trans_b=False):
        gemm(a, b, c, alpha, beta, trans_a, trans_b)
        M, N = c.shape
        K = a.shape[0] if trans_a else a.shape[1]
        self._arrays = (a, b, c)
        self._args = (int(bool(trans_a)), int(bool(trans_b)), M, N, K, float(alpha), _ptr(a),
                      a.shape[1], _ptr(b), b.shape[1], float(beta), _wptr(c), N)

    def __call__(self):
        _status(lib.pynn_gemm(*self._args), "gemm")
        return self._arrays[2]


class FusedNet:
    """The C view of a network: pointers to the very weight and bias arrays its owner keeps.

    Made once per network and reused while ``matches`` says the owner still holds the same
    arrays (same objects, shapes, dtype, layout), so a digit's forward pass costs one check and
    one C call. Workspaces are numpy arrays kept per batch size: no call allocates for C.
    """

    def __init__(self, weights, biases, hidden, output, loss):
        weights, biases = list(weights), list(biases)
        if not weights or len(weights) != len(biases):
            raise ValueError(f"need one bias per weight matrix, got {len(weights)} and {len(biases)}")
        sizes = [None]
        for i, (W, b) in enumerate(zip(weights, biases)):
            _array(f"weights[{i}]", W, ndim=2)
            _array(f"biases[{i}]", b, ndim=1)
            if sizes[-1] is not None and W.shape[1] != sizes[-1]:
                raise ValueError(f"weights[{i}] must have {sizes[-1]} columns, got shape {W.shape}")
            _shape(f"biases[{i}]", b, (W.shape[0],))
            sizes[-1:] = [W.shape[1], W.shape[0]]
        if any(s == 0 for s in sizes):
            raise ValueError(f"every layer needs at least one unit, got widths {sizes}")
        self.sizes = sizes
        self.kinds = (hidden, output, loss)
        self._arrays = tuple(weights) + tuple(biases)
        self._shapes = tuple(a.shape for a in self._arrays)
        self._sizes = ffi.new("int64_t[]", sizes)
        # writable pointers for training, which checks writability first (inference only reads)
        self._W = ffi.new("float *[]", [_ptr(W) for W in weights])
        self._b = ffi.new("float *[]", [_ptr(b) for b in biases])
        self.c = ffi.new("struct pynn_net *", {
            "n_layers": len(weights), "sizes": self._sizes, "W": self._W, "b": self._b,
            "hidden": _kind(hidden), "output": _kind(output), "loss": LOSS_KINDS[loss]})
        if lib.pynn_net_workspace(self.c, 1, 1) < 0:
            raise ValueError(f"no fused path for hidden={hidden!r}, output={output!r}, loss={loss!r}")
        self._work = {}        # (rows, training) -> free workspaces

    def matches(self, weights, biases, hidden, output, loss, writing=True):
        """True while the owner's arrays are still the ones this view points into, unchanged
        (and still writable, unless ``writing`` is False: inference only reads them)."""
        arrays = self._arrays
        if (self.kinds != (hidden, output, loss) or len(weights) + len(biases) != len(arrays)
                or not all(map(operator.is_, itertools.chain(weights, biases), arrays))):
            return False
        for a, shape in zip(self._arrays, self._shapes):
            if a.shape != shape or a.dtype is not _F32:
                return False
            if writing and not (a.flags.c_contiguous and a.flags.writeable):
                return False
        return True

    def _take(self, rows, training):
        """A workspace for ``rows`` rows and its pointer, this call's alone: calls from several
        threads each take their own (list.pop and append are atomic), and give it back after."""
        try:
            return self._work[(rows, training)].pop()
        except (KeyError, IndexError):
            buf = np.empty(lib.pynn_net_workspace(self.c, rows, training), dtype=np.float32)
            return buf, ffi.from_buffer("float[]", buf, require_writable=True), buf.size

    def _give(self, rows, training, work):
        free = self._work.get((rows, training))
        if free is None:
            if len(self._work) > 8:
                self._work = {}
            free = self._work[(rows, training)] = []
        if len(free) < 4:
            free.append(work)

    def predict(self, X, chunk=1024):
        """A new (n, n_out) array of the network's outputs for X (n, n_in): ``forward`` with
        the checks a digit-at-a-time caller can afford (the output is fresh, so cannot overlap)."""
        if type(X) is not np.ndarray or X.dtype is not _F32 or X.ndim != 2 or not X.flags.c_contiguous:
            _array("X", X, ndim=2)
        n = X.shape[0]
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have {self.sizes[0]} columns, got shape {X.shape}")
        out = np.empty((n, self.sizes[-1]), dtype=np.float32)
        if n == 0:
            return out
        rows = n if n < chunk else max(1, int(chunk))
        work = self._take(rows, 0)
        rc = lib.pynn_net_forward(self.c, ffi.from_buffer("float[]", X), ffi.NULL, 0.0, n,
                                  ffi.from_buffer("float[]", out, require_writable=True),
                                  work[1], work[2])
        self._give(rows, 0, work)
        _status(rc, "net_forward")
        return out

    def forward(self, X, out, chunk=1024):
        """out (n, n_out) = the network's output for X (n, n_in), probabilities for softmax."""
        _array("X", X, ndim=2)
        n = X.shape[0]
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have {self.sizes[0]} columns, got shape {X.shape}")
        _array("out", out, ndim=2, writable=True)
        _shape("out", out, (n, self.sizes[-1]))
        _no_overlap(out, X)
        if n == 0:
            return out
        rows = min(n, max(1, int(chunk)))
        work = self._take(rows, 0)
        rc = lib.pynn_net_forward(self.c, _ptr(X), ffi.NULL, 0.0, n, _wptr(out), work[1], work[2])
        self._give(rows, 0, work)
        _status(rc, "net_forward")
        return out

    def train(self, kind, hyper, state, steps, X, T, order, batch, scale=None):
        """Batches of ``batch`` rows of X and T taken in ``order`` (int64 indices, or None for
        the rows in turn), each a forward, backward and optimiser step in C. X may be uint8,
        read as X * scale (default 1/255, as scale_u8), each batch's rows scaled in C: the
        bits of training on scale_u8(X, scale), with no float copy of the set.

        kind: "sgd", "momentum" or "adam"; hyper: its settings (lr, momentum, beta1, beta2, eps,
        weight_decay); state: per parameter array (W0, b0, W1, ...) the list of its state
        arrays; steps: steps taken before. Returns (losses of the batches run, steps after);
        fewer losses than batches means the last one was not finite.
        """
        u8 = isinstance(X, np.ndarray) and X.dtype == _U8
        if not u8:
            _array("X", X, ndim=2)
        elif X.ndim != 2 or not X.flags.c_contiguous:
            raise ValueError(f"a uint8 X must be a C-contiguous 2-D array, got shape {X.shape}")
        scale = _hyper("scale", _U8_SCALE if scale is None else scale, -np.inf) if u8 else 0.0
        _array("T", T, ndim=2)
        n = X.shape[0]
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have {self.sizes[0]} columns, got shape {X.shape}")
        _shape("T", T, (n, self.sizes[-1]))
        L = len(self._arrays) // 2
        for i, a in enumerate(self._arrays):
            _array(f"weights[{i}]" if i < L else f"biases[{i - L}]", a, writable=True)
        if order is None:
            n_order = n
        else:
            if not isinstance(order, np.ndarray) or order.dtype != np.int64 or order.ndim != 1:
                raise TypeError("order must be a 1-D int64 numpy array")
            order = np.ascontiguousarray(order)
            n_order = order.size
            if n_order and (order.min() < 0 or order.max() >= n):
                raise ValueError(f"order must index rows 0..{n - 1}")
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
            raise ValueError(f"batch must be a positive integer, got {batch!r}")
        batch = int(min(batch, max(n_order, 1)))
        params = self._arrays[:len(self._arrays) // 2]
        params = [p for pair in zip(params, self._arrays[len(params):]) for p in pair]
        need = {"sgd": 0, "momentum": 1, "adam": 2}[kind]
        if len(state) != len(params) or any(len(s) < need for s in state):
            raise ValueError(f"{kind} needs {need} state arrays for each of {len(params)} parameters")
        slots = []
        for j in range(need):
            ptrs = []
            for i, (p, s) in enumerate(zip(params, state)):
                _array(f"state[{i}][{j}]", s[j], writable=True)
                _shape(f"state[{i}][{j}]", s[j], p.shape)
                ptrs.append(_wptr(s[j]))
            slots.append(ffi.new("float *[]", ptrs))
        written = {f"parameter {i}": p for i, p in enumerate(params)}
        written.update((f"state[{i}][{j}]", s[j]) for j in range(need) for i, s in enumerate(state))
        _apart(written, {"X": X, "T": T})
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps < 2 ** 63:
            raise ValueError(f"steps must be an int in [0, 2**63), got {steps!r}")
        opt = ffi.new("struct pynn_optimizer *", {
            "kind": OPTIMIZER_KINDS[kind], "lr": hyper.get("lr", 0.0),
            "momentum": hyper.get("momentum", 0.0), "beta1": hyper.get("beta1", 0.0),
            "beta2": hyper.get("beta2", 0.0), "eps": hyper.get("eps", 1.0),
            "weight_decay": hyper.get("weight_decay", 0.0), "step": int(steps),
            "state1": slots[0] if need > 0 else ffi.NULL,
            "state2": slots[1] if need > 1 else ffi.NULL})
        n_batches = (n_order + batch - 1) // batch
        losses = np.zeros(n_batches, dtype=np.float64)
        done = ffi.new("int64_t *")
        work = self._take(batch, 1)
        x_u8 = ffi.cast("uint8_t *", ffi.from_buffer(X)) if u8 and X.size else ffi.NULL
        rc = lib.pynn_net_train(self.c, opt, ffi.NULL if u8 else _ptr(X), x_u8, scale, _ptr(T), n,
                                ffi.NULL if order is None else _i64(order), n_order, batch,
                                ffi.cast("double *", ffi.from_buffer(losses, require_writable=True))
                                if n_batches else ffi.NULL, done, work[1], work[2])
        self._give(batch, 1, work)
        _status(rc, "net_train")
        return losses[:done[0]], int(opt.step)


# ---- every distortion in one pass (augment.c) ----

DISTORT_MAX = lib.PYNN_DISTORT_MAX


def distort(images, mats, field=None, noise=None, sigma=0.0, gain=0.0, amount=None, out=None):
    """Images (n,H,W), H and W at most DISTORT_MAX (64), each warped as ``warp`` does by its
    affine map mats[k] plus, where field[k] >= 0, the elastic field gain * gaussian_blur(2 *
    noise[field[k]] - 1, sigma) (dx the first of the pair, dy the second) on the (fh, fw) grid,
    then its stroke width changed by amount[k] as ``stroke_width`` does; all in one pass.
    field: (n,) int64 in [-1, m), or None for no fields; noise: (m, 2, fh, fw) uniform in [0,1];
    amount: (n,) in [-1,1], or None to leave the stroke width alone."""
    n, H, W = _stack("images", images)
    if H > DISTORT_MAX or W > DISTORT_MAX:
        raise ValueError(f"images must be at most {DISTORT_MAX}x{DISTORT_MAX} for distort, got "
                         f"{H}x{W} (warp, gaussian_blur and stroke_width take any size)")
    _array("mats", mats, ndim=2)
    _shape("mats", mats, (n, 6))
    _finite("mats", mats)
    m = fh = fw = 0
    fptr = nptr = ffi.NULL
    if (field is None) != (noise is None):
        raise ValueError("field and noise go together: give both or neither")
    if field is not None:
        _array("noise", noise, ndim=4)
        m, two, fh, fw = noise.shape
        if two != 2 or fh < 1 or fw < 1 or fh > DISTORT_MAX or fw > DISTORT_MAX:
            raise ValueError(f"noise must have shape (m, 2, fh, fw) with 1 <= fh, fw <= "
                             f"{DISTORT_MAX}, got {noise.shape}")
        if not isinstance(field, np.ndarray) or field.dtype != np.int64 or field.shape != (n,):
            raise TypeError(f"field must be an int64 numpy array of shape ({n},)")
        field = np.ascontiguousarray(field)
        if n and (field.min() < -1 or field.max() >= m):
            raise ValueError(f"field must hold -1 or an index of noise's {m} fields")
        fptr = ffi.cast("int64_t *", ffi.from_buffer(field))
        nptr = _ptr(noise)
    if amount is not None:
        _array("amount", amount, ndim=1)
        _shape("amount", amount, (n,))
        if n and not (np.abs(amount) <= 1.0).all():
            raise ValueError("amount must lie in [-1, 1]")
    out = _out(out, images.shape, inputs=(images, mats, noise, amount), same_ok=False)
    rc = lib.pynn_distort(_wptr(out), _ptr(images), n, H, W, _ptr(mats), fptr, nptr, m, fh, fw,
                          _hyper("sigma", sigma), _hyper("gain", gain, -np.inf),
                          ffi.NULL if amount is None else _ptr(amount))
    if rc == lib.PYNN_ERR_ARG:
        raise ValueError("noise must lie in [0, 1] (uniform random numbers)")
    _status(rc, "distort")
    return out


# ---- one sample in one C call (csrc/fast/net_one.c): the pad's digit ----

_U8 = np.dtype(np.uint8)
_U8_SCALE = float(np.float32(1.0 / 255.0))      # what scale_u8 uses by default
_LAYOUT = operator.attrgetter("shape", "strides", "dtype")


class OneSample:
    """``FusedNet``'s forward for one sample, with everything but the input prepared once.

    The output and work buffers and their pointers are made here; each call checks the input
    (a C-contiguous float32 or uint8 array of n_in values, any shape) and the arrays the view
    points into (``current``), makes the input's pointer, and runs one C call.

    ``current`` and ``call`` (what calling it runs) are the pad's per-digit Python, a few
    microseconds beside a C call of about two: they are closures over what they use, so that
    each name they read is a local rather than an attribute or a global.
    """

    def __init__(self, view):
        self.view = view
        self.kinds = view.kinds
        self.n_in = view.sizes[0]
        self._arrays = view._arrays
        self._out = np.empty(view.sizes[-1], dtype=np.float32)
        self._work = np.empty(lib.pynn_net_workspace(view.c, 1, 0), dtype=np.float32)
        self._args = (view.c, _wptr(self._out), _wptr(self._work), self._work.size)
        self._lock = threading.Lock()
        self.current = self._make_current()
        self.call = self._make_call()

    def _make_current(self):
        arrays0, layers, kinds0 = self._arrays, len(self._arrays) // 2, self.kinds
        layout0, is_, layout = tuple(map(_LAYOUT, arrays0)), operator.is_, _LAYOUT
        W0, b0 = arrays0[:layers], arrays0[layers:]

        def current(linears, kinds):
            """True while the dense layers ``linears`` hold the very arrays the view points
            into (their W and b), with the shape, strides and dtype it was made for. Their data
            cannot move unseen: the view holds a reference, so numpy refuses to resize them in
            place, and a resize forced with refcheck=False changes the shape. (The layouts cost
            the most, a new tuple each, so they come last.)"""
            if len(linears) != layers or kinds != kinds0:
                return False
            weights = [x.W for x in linears]
            biases = [x.b for x in linears]
            return (all(map(is_, weights, W0)) and all(map(is_, biases, b0))
                    and tuple(map(layout, weights + biases)) == layout0)
        return current

    def _make_call(self):
        net, out, work, work_len = self._args
        n_in, result, lock = self.n_in, self._out, self._lock
        forward, from_buffer, null, ndarray = lib.pynn_net_forward_one, ffi.from_buffer, ffi.NULL, np.ndarray
        f32, u8, u8_scale = _F32, _U8, _U8_SCALE

        def call(x):
            """A new (n_out,) float32 array: the network's output for x (uint8 scaled to 0..1)."""
            if type(x) is not ndarray:
                if not isinstance(x, ndarray):
                    raise TypeError(f"x must be a numpy array of float32 or uint8, got {type(x).__name__}")
                x = x.view(ndarray)              # a subclass: its data, as a plain array
            if x.size != n_in:
                raise ValueError(f"x must hold {n_in} values (one sample), got shape {x.shape}")
            if not x.flags.c_contiguous:
                raise ValueError("x must be C-contiguous (use np.ascontiguousarray)")
            dt = x.dtype
            if dt is f32 or dt == f32:
                xf, xu, scale = from_buffer("float[]", x), null, 0.0
            elif dt == u8:
                xf, xu, scale = null, from_buffer("uint8_t[]", x), u8_scale
            else:
                raise TypeError(f"x must have dtype float32 or uint8, got {dt}")
            lock.acquire()                       # C runs without the GIL: one caller at a time
            try:                                 # in the buffers
                rc = forward(net, xf, xu, scale, out, work, work_len)
                y = result.copy()
            finally:
                lock.release()
            if rc:
                _status(rc, "net_forward_one")
            return y
        return call

    def __call__(self, x):
        """A new (n_out,) float32 array: the network's output for x (uint8 scaled to 0..1)."""
        return self.call(x)

    def prepared(self, x):
        """The C call for ``x`` alone, its pointer made once (x checked by one call first):
        what ``pynn bench`` times to tell the C part from the Python around it."""
        self(x)
        net, out, work, work_len = self._args
        args = ((net, ffi.from_buffer("float[]", x), ffi.NULL, 0.0, out, work, work_len)
                if x.dtype == _F32 else
                (net, ffi.NULL, ffi.from_buffer("uint8_t[]", x), _U8_SCALE, out, work, work_len))
        return lambda: lib.pynn_net_forward_one(*args)


# ---- dropout (csrc/ref/dropout.c) ----

def _u64(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2 ** 64:
        raise ValueError(f"{name} must be an int in [0, 2**64), got {value!r}")
    return int(value)


def dropout_forward(a, mask, p, seed, stream):
    """Inverted dropout in place: mask = 1/(1-p) for kept units, 0 for dropped (probability p),
    drawn from (seed, stream) alone; a *= mask. a and mask: float32 arrays of one shape."""
    _array("a", a, writable=True)
    _array("mask", mask, writable=True)
    _shape("mask", mask, a.shape)
    _no_overlap(mask, a, name="mask")
    p = _hyper("p", p, 0.0, 1.0, True)
    _status(lib.pynn_dropout_forward(_wptr(a), _wptr(mask), a.size, p, _u64("seed", seed),
                                     _u64("stream", stream)), "dropout_forward")
    return a


def dropout_backward(da, mask):
    """da *= mask in place: the gradient through the units dropout_forward kept."""
    _array("da", da, writable=True)
    _array("mask", mask)
    _shape("mask", mask, da.shape)
    _no_overlap(da, mask, name="da")
    _status(lib.pynn_dropout_backward(_wptr(da), _ptr(mask), da.size), "dropout_backward")
    return da


_init_threads()


# ---- convolution and pooling (csrc/ref/conv.c, csrc/fast/conv.c) ----
#
# Images are NCHW float32 arrays: x (B,C,H,W), a convolution's weight w (OC,C,KH,KW) and bias
# b (OC,), its output (B,OC,OH,OW) with OH = (H + 2 padding - KH) // stride + 1 (likewise OW).
# Max pooling takes k x k windows at stride k: (B,C,H,W) to (B,C,H//k,W//k). Gradients
# accumulate into the arrays passed in (new ones start at zero), as the C kernels do.

def _size_arg(name, value, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low:
        raise ValueError(f"{name} must be at least {low}, got {value}")
    return int(value)


def conv2d_output_shape(x_shape, w_shape, stride=1, padding=0):
    """(B,OC,OH,OW): the shape of the convolution of an x of ``x_shape`` (B,C,H,W) with a weight
    of ``w_shape`` (OC,C,KH,KW); ValueError when they do not fit together."""
    stride, padding = _size_arg("stride", stride, 1), _size_arg("padding", padding, 0)
    if len(x_shape) != 4:
        raise ValueError(f"x must be 4-D (B,C,H,W), got shape {tuple(x_shape)}")
    if len(w_shape) != 4:
        raise ValueError(f"w must be 4-D (OC,C,KH,KW), got shape {tuple(w_shape)}")
    B, C, H, W = x_shape
    OC, Cw, KH, KW = w_shape
    if min(C, H, W) < 1 or min(OC, KH, KW) < 1:
        raise ValueError(f"x {tuple(x_shape)} and w {tuple(w_shape)} must have no empty axis "
                         "but the batch")
    if Cw != C:
        raise ValueError(f"w has {Cw} input channels (axis 1), x has {C} (axis 1)")
    if H + 2 * padding < KH or W + 2 * padding < KW:
        raise ValueError(f"the kernel ({KH}x{KW}) is larger than the padded input "
                         f"({H + 2 * padding}x{W + 2 * padding})")
    return B, OC, (H + 2 * padding - KH) // stride + 1, (W + 2 * padding - KW) // stride + 1


def _conv_shape(x_shape, w_shape, stride, padding):
    B, C, H, W = x_shape
    OC, _, KH, KW = w_shape
    return ffi.new("struct pynn_conv2d_shape *", dict(B=B, C=C, H=H, W=W, OC=OC, KH=KH, KW=KW,
                                                      stride=stride, pad=padding))


def conv2d_workspace(x_shape, w_shape, stride=1, padding=0):
    """Floats of workspace the fast convolution needs at these shapes on the threads set now
    (a smaller one runs on fewer threads): the size of a ``work`` array to keep and pass."""
    conv2d_output_shape(x_shape, w_shape, stride, padding)
    n = lib.pynn_conv2d_workspace(_conv_shape(x_shape, w_shape, stride, padding))
    if n < 0:
        raise ValueError(f"x {tuple(x_shape)} and w {tuple(w_shape)} are too large")
    return n


def _work(work, x_shape, w_shape, stride, padding, others):
    if work is None:
        return np.empty(conv2d_workspace(x_shape, w_shape, stride, padding), dtype=np.float32)
    _array("work", work, ndim=1, writable=True)
    _no_overlap(work, *others, name="work")
    return work


def conv2d_forward(x, w, b=None, stride=1, padding=0, out=None, work=None, reference=False):
    """The convolution (B,OC,OH,OW) of x (B,C,H,W) with w (OC,C,KH,KW), plus b (OC,) if given:
    out[n,o,y,x'] = b[o] + sum over c,i,j of w[o,c,i,j] x[n,c, stride*y+i-padding, stride*x'+j-padding],
    zero outside the image. A new array, or ``out``; ``work`` a float32 array of
    conv2d_workspace() floats (made when None). ``reference=True`` runs the readable loops."""
    _array("x", x, ndim=4)
    _array("w", w, ndim=4)
    shape = conv2d_output_shape(x.shape, w.shape, stride, padding)
    inputs = (x, w)
    if b is not None:
        _array("b", b, ndim=1)
        _shape("b", b, (w.shape[0],))
        inputs += (b,)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    else:
        _array("out", out, ndim=4, writable=True)
        _shape("out", out, shape)
        _no_overlap(out, *inputs)
    s = _conv_shape(x.shape, w.shape, stride, padding)
    bias = _ptr(b) if b is not None else ffi.NULL
    if reference:
        rc = lib.pynn_conv2d_forward_ref(_wptr(out), _ptr(x), _ptr(w), bias, s)
    else:
        work = _work(work, x.shape, w.shape, stride, padding, inputs + (out,))
        rc = lib.pynn_conv2d_forward(_wptr(out), _ptr(x), _ptr(w), bias, s, _wptr(work), work.size)
    _status(rc, "conv2d_forward")
    return out


def _grad(name, g, shape, want):
    """The gradient array ``name`` to accumulate into: the caller's (checked), a new zero one
    when wanted, or None when not."""
    if g is None:
        return np.zeros(shape, dtype=np.float32) if want else None
    _array(name, g, ndim=len(shape), writable=True)
    _shape(name, g, shape)
    return g


def conv2d_backward(dout, x, w, stride=1, padding=0, dx=None, dw=None, db=None, want_dx=True,
                    want_db=True, work=None, reference=False):
    """The gradients of the convolution from dout = dL/dout (B,OC,OH,OW): returns (dx, dw, db),
    dL/dx (B,C,H,W), dL/dw (OC,C,KH,KW) and dL/db (OC,), each added into the array passed
    (new zeros when None). dx is None when ``want_dx`` is false and no dx is passed (the first
    layer needs none), db likewise with ``want_db``. x and w are the forward's inputs."""
    _array("dout", dout, ndim=4)
    _array("x", x, ndim=4)
    _array("w", w, ndim=4)
    _shape("dout", dout, conv2d_output_shape(x.shape, w.shape, stride, padding))
    dx = _grad("dx", dx, x.shape, want_dx)
    dw = _grad("dw", dw, w.shape, True)
    db = _grad("db", db, (w.shape[0],), want_db)
    outs = [(name, g) for name, g in (("dx", dx), ("dw", dw), ("db", db)) if g is not None]
    for i, (name, g) in enumerate(outs):
        _no_overlap(g, dout, x, w, *(h for _, h in outs[i + 1:]), name=name)
    s = _conv_shape(x.shape, w.shape, stride, padding)
    args = (_wptr(dx) if dx is not None else ffi.NULL, _wptr(dw),
            _wptr(db) if db is not None else ffi.NULL, _ptr(dout), _ptr(x), _ptr(w), s)
    if reference:
        rc = lib.pynn_conv2d_backward_ref(*args)
    else:
        work = _work(work, x.shape, w.shape, stride, padding,
                     (dout, x, w) + tuple(g for _, g in outs))
        rc = lib.pynn_conv2d_backward(*args, _wptr(work), work.size)
    _status(rc, "conv2d_backward")
    return dx, dw, db


def _pool_shape(x_shape, k):
    k = _size_arg("k", k, 1)
    if len(x_shape) != 4:
        raise ValueError(f"x must be 4-D (B,C,H,W), got shape {tuple(x_shape)}")
    B, C, H, W = x_shape
    if H < k or W < k:
        raise ValueError(f"the pooling window ({k}x{k}) is larger than the input ({H}x{W})")
    if H * W > np.iinfo(np.int32).max:
        raise ValueError(f"an input plane of {H}x{W} is too large for int32 indices")
    return k, (B, C, H // k, W // k)


def _argmax_array(argmax, shape, writable=False):
    if not isinstance(argmax, np.ndarray):
        raise TypeError(f"argmax must be a numpy array of int32, got {type(argmax).__name__}")
    if argmax.dtype != np.int32:
        raise TypeError(f"argmax must have dtype int32, got {argmax.dtype}")
    if not argmax.flags.c_contiguous:
        raise ValueError("argmax must be C-contiguous (use np.ascontiguousarray)")
    if writable and not argmax.flags.writeable:
        raise ValueError("argmax is read-only, but the result is written into it")
    _shape("argmax", argmax, shape)
    return ffi.cast("int32_t *", ffi.from_buffer(argmax, require_writable=writable)) \
        if argmax.size else ffi.NULL


def maxpool2d_forward(x, k, out=None, argmax=None, reference=False):
    """Max pooling of x (B,C,H,W) over k x k windows at stride k: returns (out, argmax), out
    (B,C,H//k,W//k) the largest value of each window (NaN if it holds one) and argmax, int32 of
    the same shape, where it came from as h*W + w within its (H,W) plane (the first of equals).
    Rows and columns past the last whole window are left out."""
    _array("x", x, ndim=4)
    k, shape = _pool_shape(x.shape, k)
    out = _out(out, shape)
    _no_overlap(out, x)
    if argmax is None:
        argmax = np.empty(shape, dtype=np.int32)
    am = _argmax_array(argmax, shape, writable=True)
    _no_overlap(argmax, x, out, name="argmax")
    fn = lib.pynn_maxpool2d_forward_ref if reference else lib.pynn_maxpool2d_forward
    _status(fn(_wptr(out), am, _ptr(x), *x.shape, k), "maxpool2d_forward")
    return out, argmax


def maxpool2d_backward(dout, argmax, x_shape, k, dx=None, reference=False):
    """dL/dx (``x_shape``) of max pooling from dout (B,C,H//k,W//k): each dout goes to the input
    element its window's argmax names, added into ``dx`` (new zeros when None)."""
    k, shape = _pool_shape(tuple(x_shape), k)
    _array("dout", dout, ndim=4)
    _shape("dout", dout, shape)
    am = _argmax_array(argmax, shape)
    dx = _grad("dx", dx, tuple(x_shape), True)
    _no_overlap(dx, dout, argmax, name="dx")
    fn = lib.pynn_maxpool2d_backward_ref if reference else lib.pynn_maxpool2d_backward
    rc = fn(_wptr(dx), _ptr(dout), am, *dx.shape, k)
    if rc == lib.PYNN_ERR_ARG:
        raise ValueError("argmax holds an index outside its own pooling window")
    _status(rc, "maxpool2d_backward")
    return dx
