"""Inverted dropout (csrc/ref/dropout.c), its mask drawn from a seed and a stream alone."""
import numpy as np

from .._pynn import lib
from .checks import check_array, check_shape, check_status, hyperparameter, no_overlap, ptr, wptr


def _u64(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2 ** 64:
        raise ValueError(f"{name} must be an int in [0, 2**64), got {value!r}")
    return int(value)


def dropout_forward(a, mask, p, seed, stream):
    """Inverted dropout in place: mask = 1/(1-p) for kept units, 0 for dropped (probability p),
    drawn from (seed, stream) alone; a *= mask. a and mask: float32 arrays of one shape."""
    check_array("a", a, writable=True)
    check_array("mask", mask, writable=True)
    check_shape("mask", mask, a.shape)
    no_overlap(mask, a, name="mask")
    p = hyperparameter("p", p, 0.0, 1.0, True)
    check_status(lib.pynn_dropout_forward(wptr(a), wptr(mask), a.size, p, _u64("seed", seed),
                                          _u64("stream", stream)), "dropout_forward")
    return a


def dropout_backward(da, mask):
    """da *= mask in place: the gradient through the units dropout_forward kept."""
    check_array("da", da, writable=True)
    check_array("mask", mask)
    check_shape("mask", mask, da.shape)
    no_overlap(da, mask, name="da")
    check_status(lib.pynn_dropout_backward(wptr(da), ptr(mask), da.size), "dropout_backward")
    return da
