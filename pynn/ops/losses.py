"""Losses and their gradients with respect to the outputs (csrc/ref/losses.c), over a batch (B,n)."""
from .._pynn import ffi, lib
from .checks import check_array, check_shape, check_status, output, ptr, wptr


def _loss_args(y, t, yname="y"):
    check_array(yname, y, ndim=2)
    check_array("t", t, ndim=2)
    check_shape("t", t, y.shape)
    if y.shape[0] == 0:
        raise ValueError(f"{yname} is empty: a loss needs at least one sample")
    return y.shape


def quadratic_loss(y, t):
    """Eq. 22: (1/B) sum_i sum_j (t_ij - y_ij)^2 for outputs y (B,n) and targets t (B,n)."""
    B, n = _loss_args(y, t)
    loss = ffi.new("double *")
    check_status(lib.pynn_quadratic_loss_forward(loss, ptr(y), ptr(t), B, n), "quadratic_loss")
    return loss[0]


def quadratic_loss_backward(y, t, out=None):
    """dL/dy = 2 (y - t) / B."""
    B, n = _loss_args(y, t)
    d = output(out, (B, n), "out", inputs=(y, t))
    check_status(lib.pynn_quadratic_loss_backward(wptr(d), ptr(y), ptr(t), B, n),
                 "quadratic_loss_backward")
    return d


def softmax_cross_entropy(logits, t, probs=None):
    """Softmax and cross-entropy fused: returns (loss, probs). loss = -(1/B) sum t log p."""
    B, n = _loss_args(logits, t, "logits")
    p = output(probs, (B, n), "probs", inputs=(logits, t))
    loss = ffi.new("double *")
    check_status(lib.pynn_softmax_cross_entropy_forward(loss, wptr(p), ptr(logits), ptr(t), B, n),
                 "softmax_cross_entropy")
    return loss[0], p


def softmax_cross_entropy_backward(probs, t, out=None):
    """dL/dlogits = (p - t) / B for targets whose rows sum to 1."""
    B, n = _loss_args(probs, t, "probs")
    d = output(out, (B, n), inputs=(probs, t))
    check_status(lib.pynn_softmax_cross_entropy_backward(wptr(d), ptr(probs), ptr(t), B, n),
                 "softmax_cross_entropy_backward")
    return d


def sigmoid_cross_entropy(logits, t, probs=None):
    """Sigmoid outputs with per-unit cross-entropy, fused: returns (loss, probs)."""
    B, n = _loss_args(logits, t, "logits")
    p = output(probs, (B, n), "probs", inputs=(logits, t))
    loss = ffi.new("double *")
    check_status(lib.pynn_sigmoid_cross_entropy_forward(loss, wptr(p), ptr(logits), ptr(t), B, n),
                 "sigmoid_cross_entropy")
    return loss[0], p


def sigmoid_cross_entropy_backward(probs, t, out=None):
    """dL/dlogits = (sigma(z) - t) / B."""
    B, n = _loss_args(probs, t, "probs")
    d = output(out, (B, n), inputs=(probs, t))
    check_status(lib.pynn_sigmoid_cross_entropy_backward(wptr(d), ptr(probs), ptr(t), B, n),
                 "sigmoid_cross_entropy_backward")
    return d
