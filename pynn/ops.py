"""The one door into C: every call into the kernels goes through here, and so does every check.

A pointer only crosses into C after its array has been checked: a numpy array, float32,
C-contiguous (so rows are where C thinks they are), the shape the operation needs, writable
when C writes to it. A wrong argument raises TypeError (wrong type or dtype) or ValueError
(wrong shape, layout, empty where data is needed) naming it. Nothing is converted silently:
a float64 array passed where float32 is expected is an error, not a hidden copy.

The functions return new arrays; ``out=`` writes into a buffer the caller owns instead, which
the training loop uses so that no batch allocates.
"""
import os

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


def _out(out, shape, like_name="out"):
    """A new float32 array of ``shape``, or the caller's ``out`` after checking it."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    _array(like_name, out, writable=True)
    _shape(like_name, out, shape)
    return out


def _ptr(a):
    return ffi.cast("float *", ffi.from_buffer(a, require_writable=False)) if a.size else ffi.NULL


def _wptr(a):
    return ffi.cast("float *", ffi.from_buffer(a, require_writable=True)) if a.size else ffi.NULL


def _no_overlap(out, *inputs, name="out"):
    for inp in inputs:
        if np.shares_memory(out, inp):
            raise ValueError(f"{name} must not overlap an input")


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
    c = _out(out, (M, N))
    return gemm(a, b, c, 1.0, 0.0, trans_a, trans_b, reference)


def bias_forward(z, bias):
    """z (B,n) += bias (n), in place: the + b of z = W a + b for every sample."""
    _array("z", z, ndim=2, writable=True)
    _array("bias", bias, ndim=1)
    _shape("bias", bias, (z.shape[1],))
    _status(lib.pynn_bias_forward(_wptr(z), _ptr(bias), z.shape[0], z.shape[1]), "bias_forward")
    return z


def bias_backward(dz, out=None):
    """db = column sums of dz (B,n): every sample's dz reached b. Accumulates into ``out``."""
    _array("dz", dz, ndim=2)
    if out is None:
        out = np.zeros(dz.shape[1], dtype=np.float32)
    else:
        _array("out", out, ndim=1, writable=True)
        _shape("out", out, (dz.shape[1],))
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
        raise ValueError(f"softmax takes a vector or a (B,n) matrix, got shape {x.shape}")
    y = _out(out, x.shape)
    if y is not x:
        _no_overlap(y, x)
    B, n = _as_rows(x) if x.ndim else (1, 1)
    _status(lib.pynn_activation_forward(k, _wptr(y), _ptr(x), B, n), kind)
    return y


def activation_backward(kind, out, dout, dinp=None):
    """dL/dz from dL/da and a = f(z): dout times f'(z), written in terms of out."""
    k = _kind(kind)
    _array("out", out)
    _array("dout", dout)
    _shape("dout", dout, out.shape)
    d = _out(dinp, out.shape, "dinp")
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
    d = _out(out, (B, n), "out")
    _status(lib.pynn_quadratic_loss_backward(_wptr(d), _ptr(y), _ptr(t), B, n), "quadratic_loss_backward")
    return d


def softmax_cross_entropy(logits, t, probs=None):
    """Softmax and cross-entropy fused: returns (loss, probs). loss = -(1/B) sum t log p."""
    B, n = _loss_args(logits, t, "logits")
    p = _out(probs, (B, n), "probs")
    loss = ffi.new("double *")
    _status(lib.pynn_softmax_cross_entropy_forward(loss, _wptr(p), _ptr(logits), _ptr(t), B, n),
            "softmax_cross_entropy")
    return loss[0], p


def softmax_cross_entropy_backward(probs, t, out=None):
    """dL/dlogits = (p - t) / B for targets whose rows sum to 1."""
    B, n = _loss_args(probs, t, "probs")
    d = _out(out, (B, n))
    _status(lib.pynn_softmax_cross_entropy_backward(_wptr(d), _ptr(probs), _ptr(t), B, n),
            "softmax_cross_entropy_backward")
    return d


def sigmoid_cross_entropy(logits, t, probs=None):
    """Sigmoid outputs with per-unit cross-entropy, fused: returns (loss, probs)."""
    B, n = _loss_args(logits, t, "logits")
    p = _out(probs, (B, n), "probs")
    loss = ffi.new("double *")
    _status(lib.pynn_sigmoid_cross_entropy_forward(loss, _wptr(p), _ptr(logits), _ptr(t), B, n),
            "sigmoid_cross_entropy")
    return loss[0], p


def sigmoid_cross_entropy_backward(probs, t, out=None):
    """dL/dlogits = (sigma(z) - t) / B."""
    B, n = _loss_args(probs, t, "probs")
    d = _out(out, (B, n))
    _status(lib.pynn_sigmoid_cross_entropy_backward(_wptr(d), _ptr(probs), _ptr(t), B, n),
            "sigmoid_cross_entropy_backward")
    return d


# ---- optimiser updates ----

def _param_and_grad(w, dw, *state):
    _array("w", w, writable=True)
    _array("dw", dw)
    _shape("dw", dw, w.shape)
    for i, s in enumerate(state):
        _array(f"state[{i}]", s, writable=True)
        _shape(f"state[{i}]", s, w.shape)
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
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 1:
        raise ValueError(f"step must be an int >= 1, got {step!r}")
    _status(lib.pynn_adam_update(_wptr(w), _wptr(m), _wptr(v), _ptr(dw), n, _hyper("lr", lr),
                                 _hyper("beta1", beta1, 0.0, 1.0, True),
                                 _hyper("beta2", beta2, 0.0, 1.0, True),
                                 _hyper("eps", eps, 1e-30), _hyper("weight_decay", weight_decay),
                                 int(step)), "adam_update")


def _init_threads():
    env = os.environ.get("PYNN_NUM_THREADS")
    if env:
        try:
            set_num_threads(int(env))
        except ValueError:
            raise ValueError(f"PYNN_NUM_THREADS must be an integer from 1 to 1024, got {env!r}") from None



# ---- at the network's edges ----

def scale_u8(x, scale=1.0 / 255.0, out=None):
    """uint8 pixels to float32 values x * scale (default: 0..255 to 0..1)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array of uint8, got {type(x).__name__}")
    if x.dtype != np.uint8:
        raise TypeError(f"x must have dtype uint8, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous (use np.ascontiguousarray)")
    y = _out(out, x.shape)
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


_init_threads()
