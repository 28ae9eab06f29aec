"""Convolution and max pooling (csrc/ref/conv.c: readable loops; csrc/fast/conv.c: unfolded
patches times the packed GEMM, on the thread pool).

Images are NCHW float32 arrays: x (B,C,H,W), a convolution's weight w (OC,C,KH,KW) and bias
b (OC,), its output (B,OC,OH,OW) with OH = (H + 2 padding - KH) // stride + 1 (likewise OW).
Max pooling takes k x k windows at stride k: (B,C,H,W) to (B,C,H//k,W//k). Gradients
accumulate into the arrays passed in (new ones start at zero), as the C kernels do.
"""
import numpy as np

from .._pynn import ffi, lib
from .checks import (check_array, check_shape, check_status, check_typed, no_overlap, output,
                     ptr, wptr)


INT32_MAX = 2 ** 31 - 1


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
    check_array("work", work, ndim=1, writable=True)
    no_overlap(work, *others, name="work")
    return work


def conv2d_forward(x, w, b=None, stride=1, padding=0, out=None, work=None, reference=False):
    """The convolution (B,OC,OH,OW) of x (B,C,H,W) with w (OC,C,KH,KW), plus b (OC,) if given:
    out[n,o,y,x'] = b[o] + sum over c,i,j of w[o,c,i,j] x[n,c, stride*y+i-padding, stride*x'+j-padding],
    zero outside the image. A new array, or ``out``; ``work`` a float32 array of
    conv2d_workspace() floats (made when None). ``reference=True`` runs the readable loops."""
    check_array("x", x, ndim=4)
    check_array("w", w, ndim=4)
    shape = conv2d_output_shape(x.shape, w.shape, stride, padding)
    inputs = (x, w)
    if b is not None:
        check_array("b", b, ndim=1)
        check_shape("b", b, (w.shape[0],))
        inputs += (b,)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    else:
        check_array("out", out, ndim=4, writable=True)
        check_shape("out", out, shape)
        no_overlap(out, *inputs)
    s = _conv_shape(x.shape, w.shape, stride, padding)
    bias = ptr(b) if b is not None else ffi.NULL
    if reference:
        rc = lib.pynn_conv2d_forward_ref(wptr(out), ptr(x), ptr(w), bias, s)
    else:
        work = _work(work, x.shape, w.shape, stride, padding, inputs + (out,))
        rc = lib.pynn_conv2d_forward(wptr(out), ptr(x), ptr(w), bias, s, wptr(work), work.size)
    check_status(rc, "conv2d_forward")
    return out


def _grad(name, g, shape, want, fill=0.0):
    """The gradient array ``name`` to write into: the caller's (checked), a new one when wanted
    (zeros, or uninitialised with ``fill`` None), or None when not."""
    if g is None:
        if not want:
            return None
        return np.zeros(shape, dtype=np.float32) if fill is not None else np.empty(shape, np.float32)
    check_array(name, g, ndim=len(shape), writable=True)
    check_shape(name, g, shape)
    return g


def conv2d_backward(dout, x, w, stride=1, padding=0, dx=None, dw=None, db=None, want_dx=True,
                    want_db=True, work=None, reference=False, accumulate=True):
    """The gradients of the convolution from dout = dL/dout (B,OC,OH,OW): returns (dx, dw, db),
    dL/dx (B,C,H,W), dL/dw (OC,C,KH,KW) and dL/db (OC,), each added into the array passed
    (new zeros when None), or with ``accumulate=False`` written over it (a training step's
    gradients: the fast kernel zeroes each image's dx as it reaches it). dx is None when
    ``want_dx`` is false and no dx is passed (the first layer needs none), db likewise with
    ``want_db``. x and w are the forward's inputs."""
    check_array("dout", dout, ndim=4)
    check_array("x", x, ndim=4)
    check_array("w", w, ndim=4)
    check_shape("dout", dout, conv2d_output_shape(x.shape, w.shape, stride, padding))
    fill = 0.0 if accumulate else None
    dx = _grad("dx", dx, x.shape, want_dx, fill)
    dw = _grad("dw", dw, w.shape, True, fill)
    db = _grad("db", db, (w.shape[0],), want_db, fill)
    outs = [(name, g) for name, g in (("dx", dx), ("dw", dw), ("db", db)) if g is not None]
    for i, (name, g) in enumerate(outs):
        no_overlap(g, dout, x, w, *(h for _, h in outs[i + 1:]), name=name)
    s = _conv_shape(x.shape, w.shape, stride, padding)
    args = (wptr(dx) if dx is not None else ffi.NULL, wptr(dw),
            wptr(db) if db is not None else ffi.NULL, ptr(dout), ptr(x), ptr(w), s)
    if reference:
        for _, g in outs if not accumulate else ():
            g.fill(0.0)
        rc = lib.pynn_conv2d_backward_ref(*args)
    else:
        work = _work(work, x.shape, w.shape, stride, padding,
                     (dout, x, w) + tuple(g for _, g in outs))
        rc = lib.pynn_conv2d_backward(*args, 0 if accumulate else 1, wptr(work), work.size)
    check_status(rc, "conv2d_backward")
    return dx, dw, db


def _pool_shape(x_shape, k):
    k = _size_arg("k", k, 1)
    if len(x_shape) != 4:
        raise ValueError(f"x must be 4-D (B,C,H,W), got shape {tuple(x_shape)}")
    B, C, H, W = x_shape
    if H < k or W < k:
        raise ValueError(f"the pooling window ({k}x{k}) is larger than the input ({H}x{W})")
    if H * W > INT32_MAX:
        raise ValueError(f"an input plane of {H}x{W} is too large for int32 indices")
    return k, (B, C, H // k, W // k)


def _argmax_array(argmax, shape, writable=False):
    check_typed("argmax", argmax, np.int32, writable)
    check_shape("argmax", argmax, shape)
    return (wptr if writable else ptr)(argmax, "int32_t[]")


def maxpool2d_forward(x, k, out=None, argmax=None, reference=False):
    """Max pooling of x (B,C,H,W) over k x k windows at stride k: returns (out, argmax), out
    (B,C,H//k,W//k) the largest value of each window (NaN if it holds one) and argmax, int32 of
    the same shape, where it came from as h*W + w within its (H,W) plane (the first of equals).
    Rows and columns past the last whole window are left out."""
    check_array("x", x, ndim=4)
    k, shape = _pool_shape(x.shape, k)
    out = output(out, shape)
    no_overlap(out, x)
    if argmax is None:
        argmax = np.empty(shape, dtype=np.int32)
    am = _argmax_array(argmax, shape, writable=True)
    no_overlap(argmax, x, out, name="argmax")
    fn = lib.pynn_maxpool2d_forward_ref if reference else lib.pynn_maxpool2d_forward
    check_status(fn(wptr(out), am, ptr(x), *x.shape, k), "maxpool2d_forward")
    return out, argmax


def maxpool2d_backward(dout, argmax, x_shape, k, dx=None, reference=False):
    """dL/dx (``x_shape``) of max pooling from dout (B,C,H//k,W//k): each dout goes to the input
    element its window's argmax names, added into ``dx`` (new zeros when None)."""
    k, shape = _pool_shape(tuple(x_shape), k)
    check_array("dout", dout, ndim=4)
    check_shape("dout", dout, shape)
    am = _argmax_array(argmax, shape)
    dx = _grad("dx", dx, tuple(x_shape), True)
    no_overlap(dx, dout, argmax, name="dx")
    fn = lib.pynn_maxpool2d_backward_ref if reference else lib.pynn_maxpool2d_backward
    rc = fn(wptr(dx), ptr(dout), am, *dx.shape, k)
    if rc == lib.PYNN_ERR_ARG:
        raise ValueError("argmax holds an index outside its own pooling window")
    check_status(rc, "maxpool2d_backward")
    return dx


def conv2d_relu_pool_workspace(x_shape, w_shape, stride=1, padding=0):
    """Floats of workspace ``conv2d_relu_pool_forward`` needs at these shapes on the threads set
    now (a smaller one runs on fewer threads)."""
    conv2d_output_shape(x_shape, w_shape, stride, padding)
    n = lib.pynn_conv2d_relu_pool_workspace(_conv_shape(x_shape, w_shape, stride, padding))
    if n < 0:
        raise ValueError(f"x {tuple(x_shape)} and w {tuple(w_shape)} are too large")
    return n


def conv2d_relu_pool_forward(x, w, b, k, stride=1, padding=0, out=None, argmax=None, work=None):
    """A network's Conv2d, ReLU and MaxPool2d(k) in one pass: returns (out, argmax), what
    ``maxpool2d_forward`` gives for relu(conv2d_forward(x, w, b, stride, padding)), bit for
    bit, without the convolution's whole output. argmax (int32) indexes the convolution's
    output planes (OH,OW); ``work`` a float32 array of conv2d_relu_pool_workspace() floats."""
    check_array("x", x, ndim=4)
    check_array("w", w, ndim=4)
    check_array("b", b, ndim=1)
    check_shape("b", b, (w.shape[0],))
    conv = conv2d_output_shape(x.shape, w.shape, stride, padding)
    k, shape = _pool_shape(conv, k)
    out = output(out, shape)
    no_overlap(out, x, w, b)
    if argmax is None:
        argmax = np.empty(shape, dtype=np.int32)
    am = _argmax_array(argmax, shape, writable=True)
    no_overlap(argmax, x, w, b, out, name="argmax")
    if work is None:
        work = np.empty(conv2d_relu_pool_workspace(x.shape, w.shape, stride, padding), np.float32)
    check_array("work", work, ndim=1, writable=True)
    no_overlap(work, x, w, b, out, argmax, name="work")
    rc = lib.pynn_conv2d_relu_pool_forward(wptr(out), am, ptr(x), ptr(w), ptr(b),
                                           _conv_shape(x.shape, w.shape, stride, padding), k,
                                           wptr(work), work.size)
    check_status(rc, "conv2d_relu_pool_forward")
    return out, argmax


def relu_maxpool2d_backward(dout, out, argmax, x_shape, k, dx=None):
    """dL/dx (``x_shape``) of out = maxpool(relu(x)) from dout (B,C,H//k,W//k): each dout goes to
    the element its window's argmax names where out > 0, and everything else is zero. Written
    into ``dx`` (not added: it replaces what was there), new when None; the bits of
    ``maxpool2d_backward`` into zeros followed by ReLU's backward."""
    k, shape = _pool_shape(tuple(x_shape), k)
    check_array("dout", dout, ndim=4)
    check_shape("dout", dout, shape)
    check_array("out", out, ndim=4)
    check_shape("out", out, shape)
    am = _argmax_array(argmax, shape)
    dx = output(dx, tuple(x_shape), "dx")
    no_overlap(dx, dout, out, argmax, name="dx")
    rc = lib.pynn_relu_maxpool2d_backward(wptr(dx), ptr(dout), ptr(out), am, *dx.shape, k)
    if rc == lib.PYNN_ERR_ARG:
        raise ValueError("argmax holds an index outside its own pooling window")
    check_status(rc, "relu_maxpool2d_backward")
    return dx


def conv2d_relu_pool_backward_weights(dout, out, argmax, x, w, k, stride=1, padding=0, dw=None,
                                      db=None, want_db=True, reference=False):
    """The backward of ``conv2d_relu_pool_forward`` to the weights alone, for a first layer
    (no dx): returns (dw, db), written into the arrays passed (new when None; db None when
    ``want_db`` is false and none is passed). Only the outputs the windows chose, where
    out > 0, carry a gradient, so the sums run over the windows, never over the pooling's
    zeros: the sums of ``relu_maxpool2d_backward`` then ``conv2d_backward``, but for an Inf
    in x where no window chose (no 0 * Inf). ``reference=True`` runs the readable loops."""
    check_array("dout", dout, ndim=4)
    check_array("out", out, ndim=4)
    check_array("x", x, ndim=4)
    check_array("w", w, ndim=4)
    conv = conv2d_output_shape(x.shape, w.shape, stride, padding)
    k, shape = _pool_shape(conv, k)
    check_shape("dout", dout, shape)
    check_shape("out", out, shape)
    am = _argmax_array(argmax, shape)
    dw = _grad("dw", dw, w.shape, True, None)
    db = _grad("db", db, (w.shape[0],), want_db, None)
    no_overlap(dw, dout, out, argmax, x, w, db, name="dw")
    if db is not None:
        no_overlap(db, dout, out, argmax, x, w, name="db")
    fn = (lib.pynn_conv2d_relu_pool_backward_weights_ref if reference
          else lib.pynn_conv2d_relu_pool_backward_weights)
    rc = fn(wptr(dw), wptr(db) if db is not None else ffi.NULL, ptr(dout), ptr(out), am, ptr(x),
            _conv_shape(x.shape, w.shape, stride, padding), k)
    if rc == lib.PYNN_ERR_ARG:
        raise ValueError("argmax holds an index outside its own pooling window")
    check_status(rc, "conv2d_relu_pool_backward_weights")
    return dw, db
