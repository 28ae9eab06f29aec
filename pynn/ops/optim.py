"""The optimisers' update steps (csrc/ref/optim.c), in place on a parameter and its state."""
import numpy as np

from .._pynn import lib
from .checks import (check_array, check_shape, check_status, hyperparameter, no_overlap,
                     ptr, same_or_apart, wptr)


def _param_and_grad(w, dw, *state):
    check_array("w", w, writable=True)
    check_array("dw", dw)
    check_shape("dw", dw, w.shape)
    same_or_apart(w, dw, name="w")
    for i, s in enumerate(state):
        check_array(f"state[{i}]", s, writable=True)
        check_shape(f"state[{i}]", s, w.shape)
        no_overlap(s, w, *state[:i], name=f"state[{i}]")   # each written, so none may share
        same_or_apart(s, dw, name=f"state[{i}]")
    return w.size


def sgd_update(w, dw, lr, weight_decay=0.0):
    """w <- w - lr * (dw + weight_decay * w), in place (section 4.3)."""
    n = _param_and_grad(w, dw)
    check_status(lib.pynn_sgd_update(wptr(w), ptr(dw), n, hyperparameter("lr", lr),
                                     hyperparameter("weight_decay", weight_decay)), "sgd_update")


def momentum_update(w, vel, dw, lr, momentum, weight_decay=0.0):
    """vel <- momentum * vel + dw (+ decay); w <- w - lr * vel, in place."""
    n = _param_and_grad(w, dw, vel)
    check_status(lib.pynn_momentum_update(wptr(w), wptr(vel), ptr(dw), n, hyperparameter("lr", lr),
                                          hyperparameter("momentum", momentum, 0.0, 1.0, True),
                                          hyperparameter("weight_decay", weight_decay)),
                 "momentum_update")


def adam_update(w, m, v, dw, lr, beta1, beta2, eps, weight_decay, step):
    """One Adam step, in place; ``step`` counts from 1."""
    n = _param_and_grad(w, dw, m, v)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 1 <= step < 2 ** 63:
        raise ValueError(f"step must be an int in [1, 2**63), got {step!r}")
    check_status(lib.pynn_adam_update(wptr(w), wptr(m), wptr(v), ptr(dw), n, hyperparameter("lr", lr),
                                      hyperparameter("beta1", beta1, 0.0, 1.0, True),
                                      hyperparameter("beta2", beta2, 0.0, 1.0, True),
                                      hyperparameter("eps", eps, 1e-30),
                                      hyperparameter("weight_decay", weight_decay),
                                      int(step)), "adam_update")
