"""Optimisers: how a gradient becomes a step (section 4.3 and its refinements).

An optimiser holds its hyperparameters and, per parameter array, whatever state it keeps
between steps (momentum's velocity, Adam's two running means). The arithmetic runs in C
(csrc/ref/optim.c) through pynn.ops.
"""
import math

import numpy as np

from . import ops

SCHEDULES = ("constant", "step", "cosine")


def scheduled_lr(schedule, lr, epoch, epochs):
    """The learning rate for ``epoch`` (from 0) of ``epochs``: constant; step (halved after
    every third of the run); or cosine (from lr down to 0 along a half cosine, so the last
    epochs take small steps that settle the weights into a minimum)."""
    if schedule == "constant":
        return lr
    if schedule == "step":
        return lr * 0.5 ** (epoch // max(1, math.ceil(epochs / 3)))
    if schedule == "cosine":
        return lr * 0.5 * (1 + math.cos(math.pi * epoch / max(1, epochs)))
    raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")


class Optimizer:
    """Base: ``step(params, grads)`` updates each parameter array in place, one at a time
    through ``_update(i, param, grad)``, which a kind of its own defines (SGD and Adam step
    every array in one C call instead)."""

    def __init__(self, lr, weight_decay=0.0):
        self.lr = ops.hyperparameter("lr", lr)
        self.weight_decay = ops.hyperparameter("weight_decay", weight_decay)
        self.state = []      # one list of state arrays per parameter array
        self.steps = 0

    @property
    def steps(self):
        """Steps taken so far (Adam's bias correction counts them): an int in [0, 2**63)."""
        return self._steps

    @steps.setter
    def steps(self, value):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(f"steps must be an int, got {type(value).__name__}")
        if not 0 <= value < 2 ** 63:
            raise ValueError(f"steps must be in [0, 2**63), got {value}")
        self._steps = int(value)

    def _ensure_state(self, params, count):
        if len(self.state) != len(params) or any(
                s.shape != p.shape for st, p in zip(self.state, params) for s in st):
            self.state = [[np.zeros_like(p) for _ in range(count)] for p in params]

    def step(self, params, grads):
        """Update each parameter array in place with its gradient."""
        if len(params) != len(grads):
            raise ValueError(f"{len(params)} parameter arrays but {len(grads)} gradients")
        self.steps += 1
        for i, (p, g) in enumerate(zip(params, grads)):
            self._update(i, p, g)

    def step_if_finite(self, params, grads):
        """``step``, unless a gradient holds a NaN or an Inf: then nothing changes. Returns
        whether it stepped. The training loop's step: SGD and Adam check and step in one C
        call; a kind of its own (or one whose ``step`` is its own) checks here first."""
        if type(self).step in (SGD.step, Adam.step):
            return self._step_in_c(params, grads, check_finite=True)
        if not all(np.isfinite(g).all() for g in grads):
            return False
        self.step(params, grads)
        return True

    def _step_in_c(self, params, grads, check_finite=False):
        """``step`` for the kinds C knows (``fused``): every array in one call on the threads,
        the bits of the update one array at a time. Returns whether every gradient was finite."""
        kind, hyper, state = self.fused(params)
        call = self.__dict__.get("_call")
        if call is None or not call.same(kind, params, state):
            call = self._call = ops.OptimizerStep(kind, params, state)
        finite, self.steps = call(hyper, grads, self.steps, check_finite)
        return finite

    def __getstate__(self):
        """What pickling and copying keep: everything but the prepared C call (made again)."""
        state = dict(self.__dict__)
        state.pop("_call", None)
        return state

    def state_dict(self):
        """The optimiser's settings and state, as arrays and numbers (for checkpoints)."""
        return {"steps": self.steps, "state": [list(s) for s in self.state]}

    def load_state_dict(self, d):
        self.steps = d["steps"]
        self.state = [[np.array(a, dtype=np.float32) for a in s] for s in d["state"]]


class SGD(Optimizer):
    """Stochastic gradient descent: W <- W - lr * dL/dW, with optional momentum and L2 decay."""

    def __init__(self, lr=0.1, momentum=0.0, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.momentum = ops.hyperparameter("momentum", momentum, 0.0, 1.0, high_open=True)

    def step(self, params, grads):
        self._step_in_c(params, grads)

    def fused(self, params):
        """What the fused C training step needs: (kind, settings, state per parameter array)."""
        self._ensure_state(params, 1 if self.momentum > 0 else 0)
        kind = "momentum" if self.momentum > 0 else "sgd"
        return kind, {"lr": self.lr, "momentum": self.momentum,
                      "weight_decay": self.weight_decay}, self.state

    def __repr__(self):
        extra = f", momentum={self.momentum}" if self.momentum else ""
        extra += f", weight_decay={self.weight_decay}" if self.weight_decay else ""
        return f"SGD(lr={self.lr}{extra})"


class Adam(Optimizer):
    """Adam: steps scaled per parameter by running estimates of the gradient's mean and size."""

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.beta1 = ops.hyperparameter("beta1", beta1, 0.0, 1.0, high_open=True)
        self.beta2 = ops.hyperparameter("beta2", beta2, 0.0, 1.0, high_open=True)
        self.eps = ops.hyperparameter("eps", eps, 1e-30)

    def step(self, params, grads):
        self._step_in_c(params, grads)

    def fused(self, params):
        """What the fused C training step needs: (kind, settings, state per parameter array)."""
        self._ensure_state(params, 2)
        return "adam", {"lr": self.lr, "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps,
                        "weight_decay": self.weight_decay}, self.state

    def __repr__(self):
        return f"Adam(lr={self.lr}, beta1={self.beta1}, beta2={self.beta2})"
