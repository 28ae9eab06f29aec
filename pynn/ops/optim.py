"""The optimisers' update steps, in place on parameters and their state: one array at a time
(csrc/ref/optim.c), or all of a network's arrays in one call on the thread pool
(csrc/fast/optim.c)."""
import bisect
import operator

import numpy as np

from .._pynn import ffi, lib
from .checks import (apart, check_array, check_shape, check_status, hyperparameter, no_overlap,
                     ptr, same_or_apart, wptr)

OPTIMIZER_KINDS = {"sgd": lib.PYNN_OPT_SGD, "momentum": lib.PYNN_OPT_MOMENTUM,
                   "adam": lib.PYNN_OPT_ADAM}
STATE_ARRAYS = {"sgd": 0, "momentum": 1, "adam": 2}    # state arrays per parameter array
_LAYOUT = operator.attrgetter("shape", "strides", "dtype")


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


HYPER = (("lr", 0.0, None), ("weight_decay", 0.0, None), ("momentum", 0.0, 1.0),
         ("beta1", 0.0, 1.0), ("beta2", 0.0, 1.0), ("eps", 1e-30, None))


def set_hyper(opt, hyper, steps):
    """The settings ``hyper`` (lr, momentum, beta1, beta2, eps, weight_decay; those the kind
    has) and the steps taken before, checked and written into the struct ``opt``."""
    for name, low, high in HYPER:
        if name in hyper:
            setattr(opt, name, hyperparameter(name, hyper[name], low, high,
                                              high_open=high is not None))
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or not 0 <= steps < 2 ** 63:
        raise ValueError(f"steps must be an int in [0, 2**63), got {steps!r}")
    opt.step = int(steps)


def optimizer_struct(kind, hyper, params, state, steps, spans):
    """The C view of an optimiser over ``params``: (struct pynn_optimizer *, what keeps its
    pointer tables and the state arrays' buffers alive). kind: "sgd", "momentum" or "adam"; hyper: its settings (as
    ``set_hyper``); state: per parameter array the list of its state arrays; steps: steps taken
    before. Each state array is checked against its parameter, and its span (pointer, bytes,
    name, written) added to ``spans`` for ``apart``."""
    if kind not in STATE_ARRAYS:
        raise ValueError(f"kind must be one of {', '.join(STATE_ARRAYS)}; got {kind!r}")
    need = STATE_ARRAYS[kind]
    if len(state) != len(params) or any(len(s) < need for s in state):
        raise ValueError(f"{kind} needs {need} state arrays for each of {len(params)} parameters")
    slots, exports = [], []
    for j in range(need):
        ptrs = []
        exports.append(ptrs)
        for i, (p, s) in enumerate(zip(params, state)):
            check_array(f"state[{i}][{j}]", s[j], writable=True)
            check_shape(f"state[{i}][{j}]", s[j], p.shape)
            ptrs.append(wptr(s[j]))
            spans.append((ptrs[-1], s[j].nbytes, f"state[{i}][{j}]", True))
        slots.append(ffi.new("float *[]", ptrs))
    opt = ffi.new("struct pynn_optimizer *", {
        "kind": OPTIMIZER_KINDS[kind], "eps": 1.0,
        "state1": slots[0] if need > 0 else ffi.NULL,
        "state2": slots[1] if need > 1 else ffi.NULL})
    set_hyper(opt, hyper, steps)
    return opt, (slots, exports)


class OptimizerStep:
    """``optimizer_step`` prepared for one set of parameter and state arrays, to be taken step
    after step with new gradients: the arrays are checked, and their pointer tables made, once.
    Each call checks that it is given the very same arrays with the layout they had (``same``)
    and checks the gradients, as ``optimizer_step`` does."""

    def __init__(self, kind, params, state):
        spans, w_ptrs = [], []
        for i, p in enumerate(params):
            check_array(f"params[{i}]", p, writable=True)
            w_ptrs.append(wptr(p))
            spans.append((w_ptrs[-1], p.nbytes, f"params[{i}]", True))
        self._opt, self._keep = optimizer_struct(kind, {}, params, state, 0, spans)
        apart(spans)
        self.kind = kind
        self._params = tuple(params)
        self._state = tuple(tuple(s[:STATE_ARRAYS[kind]]) for s in state)
        self._arrays = self._params + tuple(a for s in self._state for a in s)
        self._layouts = tuple(map(_LAYOUT, self._arrays))
        # what the call writes, apart (checked above), sorted: a gradient is then placed among
        # them by bisection instead of sorting every span again each call
        written = sorted((int(ffi.cast("uintptr_t", p)), n, name) for p, n, name, _ in spans if n)
        self._starts = [start for start, _, _ in written]
        self._ends = [start + n for start, n, _ in written]
        self._names = [name for _, _, name in written]
        self._w, self._exports = ffi.new("float *[]", w_ptrs), w_ptrs   # kept: no resize
        self._g = ffi.new("float *[]", len(params))
        self._n = ffi.new("int64_t[]", [p.size for p in params])
        self._finite = ffi.new("int *")

    def same(self, kind, params, state):
        """Whether this step is prepared for these arrays, as they are now (still writable)."""
        return (kind == self.kind and len(params) == len(self._params)
                and len(state) == len(self._state)
                and all(map(operator.is_, params, self._params))
                and all(all(map(operator.is_, s, mine)) for s, mine in zip(state, self._state))
                and tuple(map(_LAYOUT, self._arrays)) == self._layouts
                and all(a.flags.writeable for a in self._arrays))

    def _apart(self, start, nbytes, name):
        """[start, start + nbytes) shares no byte with an array the call writes: it could only
        overlap the last one starting at or before it, or the next."""
        k = bisect.bisect_right(self._starts, start)
        if k and self._ends[k - 1] > start:
            raise ValueError(f"{name} must not overlap {self._names[k - 1]}")
        if k < len(self._starts) and self._starts[k] < start + nbytes:
            raise ValueError(f"{name} must not overlap {self._names[k]}")

    def __call__(self, hyper, grads, steps, check_finite=False):
        """Returns (whether every gradient was finite, steps after)."""
        params = self._params
        if len(grads) != len(params):
            raise ValueError(f"{len(params)} parameter arrays but {len(grads)} gradients")
        keep = []
        for i, (p, g) in enumerate(zip(params, grads)):
            check_array(f"grads[{i}]", g)
            check_shape(f"grads[{i}]", g, p.shape)
            keep.append(ptr(g))
            self._g[i] = keep[-1]
            if g.size and g is not p:    # an array that is its own gradient: read where written
                self._apart(int(ffi.cast("uintptr_t", keep[-1])), g.nbytes, f"grads[{i}]")
        set_hyper(self._opt, hyper, steps)
        check_status(lib.pynn_optimizer_step(self._opt, self._w, self._g, self._n, len(params),
                                             1 if check_finite else 0, self._finite),
                     "optimizer_step")
        return bool(self._finite[0]), int(self._opt.step)


def optimizer_step(kind, hyper, params, grads, state, steps, check_finite=False):
    """One step of the optimiser ``kind`` (as ``optimizer_struct``) over every parameter array
    in one C call, shared among the threads: the bits of one ``*_update`` call per array.
    Returns (whether every gradient was finite, steps after). With ``check_finite``, a
    gradient holding a NaN or Inf leaves everything as it was (steps included)."""
    return OptimizerStep(kind, params, state)(hyper, grads, steps, check_finite)
