"""Activation functions and their derivatives (csrc/ref/activations.c), element by element or,
for softmax, row by row.
"""
import math

from .._pynn import lib
from .checks import check_array, check_shape, check_status, output, ptr, wptr

LINEAR, SIGMOID, RELU, TANH, SOFTMAX = (lib.PYNN_LINEAR, lib.PYNN_SIGMOID, lib.PYNN_RELU,
                                        lib.PYNN_TANH, lib.PYNN_SOFTMAX)
ACTIVATIONS = {"linear": LINEAR, "sigmoid": SIGMOID, "relu": RELU, "tanh": TANH,
               "softmax": SOFTMAX}


def activation_kind(name):
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def _as_rows(x):
    """Softmax works on rows; a 1-D vector is one row."""
    return (1, x.shape[0]) if x.ndim == 1 else (x.shape[0], math.prod(x.shape[1:]))


def activation_forward(kind, x, out=None):
    """f(x) element by element (eq. 4), or softmax over each row: a new array or ``out``."""
    k = activation_kind(kind)
    check_array("x", x)
    if k == SOFTMAX and x.ndim not in (1, 2):
        raise ValueError(f"x must be a vector or a (B,n) matrix for softmax, got shape {x.shape}")
    y = output(out, x.shape, inputs=(x,))
    B, n = _as_rows(x) if x.ndim else (1, 1)
    check_status(lib.pynn_activation_forward(k, wptr(y), ptr(x), B, n), kind)
    return y


def activation_backward(kind, out, dout, dinp=None):
    """dL/dz from dL/da and a = f(z): dout times f'(z), written in terms of out."""
    k = activation_kind(kind)
    check_array("out", out)
    check_array("dout", dout)
    check_shape("dout", dout, out.shape)
    if k == SOFTMAX and out.ndim not in (1, 2):
        raise ValueError(f"out must be a vector or a (B,n) matrix for softmax, got shape {out.shape}")
    d = output(dinp, out.shape, "dinp", inputs=(out, dout))
    B, n = _as_rows(out) if out.ndim else (1, 1)
    check_status(lib.pynn_activation_backward(k, wptr(d), ptr(out), ptr(dout), B, n),
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
