"""The optimisers' update steps, in place on parameters and their state: one array at a time
(csrc/ref/optim.c), or all of a network's arrays in one call on the thread pool
(csrc/fast/optim.c)."""
import numpy as np

from .._pynn import ffi, lib
from .checks import (apart, check_array, check_shape, check_status, hyperparameter, no_overlap,
                     ptr, same_or_apart, wptr)

OPTIMIZER_KINDS = {"sgd": lib.PYNN_OPT_SGD, "momentum": lib.PYNN_OPT_MOMENTUM,
                   "adam": lib.PYNN_OPT_ADAM}
STATE_ARRAYS = {"sgd": 0, "momentum": 1, "adam": 2}    # state arrays per parameter array


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


def optimizer_struct(kind, hyper, params, state, steps, spans):
    """The C view of an optimiser over ``params``: (struct pynn_optimizer *, what keeps its
    pointer tables alive). kind: "sgd", "momentum" or "adam"; hyper: its settings (lr,
    momentum, beta1, beta2, eps, weight_decay); state: per parameter array the list of its
    state arrays; steps: steps taken before. Each state array is checked against its
    parameter, and its span (pointer, bytes, name, written) added to ``spans`` for ``apart``."""
    if kind not in STATE_ARRAYS:
        raise ValueError(f"kind must be one of {', '.join(STATE_ARRAYS)}; got {kind!r}")
    need = STATE_ARRAYS[kind]
    for name, low, high in (("lr", 0.0, None), ("weight_decay", 0.0, None),
                            ("momentum", 0.0, 1.0), ("beta1", 0.0, 1.0), ("beta2", 0.0, 1.0),
                            ("eps", 1e-30, None)):
        if name in hyper:
            hyperparameter(name, hyper[name], low, high, high_open=high is not None)
    if len(state) != len(params) or any(len(s) < need for s in state):
        raise ValueError(f"{kind} needs {need} state arrays for each of {len(params)} parameters")
    slots = []
    for j in range(need):
        ptrs = []
        for i, (p, s) in enumerate(zip(params, state)):
            check_array(f"state[{i}][{j}]", s[j], writable=True)
            check_shape(f"state[{i}][{j}]", s[j], p.shape)
            ptrs.append(wptr(s[j]))
            spans.append((ptrs[-1], s[j].nbytes, f"state[{i}][{j}]", True))
        slots.append(ffi.new("float *[]", ptrs))
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps < 2 ** 63:
        raise ValueError(f"steps must be an int in [0, 2**63), got {steps!r}")
    opt = ffi.new("struct pynn_optimizer *", {
        "kind": OPTIMIZER_KINDS[kind], "lr": hyper.get("lr", 0.0),
        "momentum": hyper.get("momentum", 0.0), "beta1": hyper.get("beta1", 0.0),
        "beta2": hyper.get("beta2", 0.0), "eps": hyper.get("eps", 1.0),
        "weight_decay": hyper.get("weight_decay", 0.0), "step": int(steps),
        "state1": slots[0] if need > 0 else ffi.NULL,
        "state2": slots[1] if need > 1 else ffi.NULL})
    return opt, slots


def optimizer_step(kind, hyper, params, grads, state, steps, check_finite=False):
    """One step of the optimiser ``kind`` (as ``optimizer_struct``) over every parameter array
    in one C call, shared among the threads: the bits of one ``*_update`` call per array.
    Returns (whether every gradient was finite, steps after). With ``check_finite``, a
    gradient holding a NaN or Inf leaves everything as it was (steps included)."""
    if len(params) != len(grads):
        raise ValueError(f"{len(params)} parameter arrays but {len(grads)} gradients")
    spans, w_ptrs, g_ptrs, sizes = [], [], [], []
    for i, (p, g) in enumerate(zip(params, grads)):
        check_array(f"params[{i}]", p, writable=True)
        check_array(f"grads[{i}]", g)
        check_shape(f"grads[{i}]", g, p.shape)
        w_ptrs.append(wptr(p))
        g_ptrs.append(ptr(g))
        sizes.append(p.size)
        spans.append((w_ptrs[-1], p.nbytes, f"params[{i}]", True))
        if g is not p:           # an array that is its own gradient is read where it is written
            spans.append((g_ptrs[-1], g.nbytes, f"grads[{i}]", False))
    opt, keep = optimizer_struct(kind, hyper, params, state, steps, spans)
    apart(spans)
    finite = ffi.new("int *")
    check_status(lib.pynn_optimizer_step(opt, ffi.new("float *[]", w_ptrs),
                                         ffi.new("float *[]", g_ptrs),
                                         ffi.new("int64_t[]", sizes), len(sizes),
                                         1 if check_finite else 0, finite), "optimizer_step")
    return bool(finite[0]), int(opt.step)
