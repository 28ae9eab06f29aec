"""The fast paths (csrc/fast/net*.c): a whole network's forward pass or training run in one C call
(FusedNet), and one sample's forward with everything but the input prepared once (OneSample);
one image through a convolutional network in one C call (OneImage, csrc/fast/conv_one.c).
"""
import itertools
import operator
import threading

import numpy as np

from .._pynn import ffi, lib
from .activations import activation_kind
from .checks import (F32, apart, check_array, check_shape, check_status, hyperparameter, i64ptr,
                     no_overlap, ptr, wptr)
from .optim import OPTIMIZER_KINDS, optimizer_struct

LOSS_KINDS = {"quadratic": lib.PYNN_LOSS_QUADRATIC, "cross_entropy": lib.PYNN_LOSS_CROSS_ENTROPY}
_U8 = np.dtype(np.uint8)
_U8_SCALE = float(np.float32(1.0 / 255.0))      # what scale_u8 uses by default
_LAYOUT = operator.attrgetter("shape", "strides", "dtype")


def input_pointers(x, n_in, what):
    """(float pointer, uint8 pointer, scale) for one sample x of n_in values, checked: any
    shape, C-contiguous, float32 (the uint8 pointer NULL) or uint8 scaled to 0..1 (the float
    pointer NULL). ``what`` names the sample in the errors."""
    if type(x) is not np.ndarray:
        if not isinstance(x, np.ndarray):
            raise TypeError(f"x must be a numpy array of float32 or uint8, got {type(x).__name__}")
        x = x.view(np.ndarray)              # a subclass: its data, as a plain array
    if x.size != n_in:
        raise ValueError(f"x must hold {n_in} values (one {what}), got shape {x.shape}")
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous (use np.ascontiguousarray)")
    dt = x.dtype
    if dt is F32 or dt == F32:
        return ffi.from_buffer("float[]", x), ffi.NULL, 0.0
    if dt == _U8:
        return ffi.NULL, ffi.from_buffer("uint8_t[]", x), _U8_SCALE
    raise TypeError(f"x must have dtype float32 or uint8, got {dt}")


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
            check_array(f"weights[{i}]", W, ndim=2)
            check_array(f"biases[{i}]", b, ndim=1)
            if sizes[-1] is not None and W.shape[1] != sizes[-1]:
                raise ValueError(f"weights[{i}] must have {sizes[-1]} columns, got shape {W.shape}")
            check_shape(f"biases[{i}]", b, (W.shape[0],))
            sizes[-1:] = [W.shape[1], W.shape[0]]
        if any(s == 0 for s in sizes):
            raise ValueError(f"every layer needs at least one unit, got widths {sizes}")
        self.sizes = sizes
        self.kinds = (hidden, output, loss)
        self._arrays = tuple(weights) + tuple(biases)
        self._layouts = tuple((a.shape, a.strides) for a in self._arrays)
        self._sizes = ffi.new("int64_t[]", sizes)
        # writable pointers for training, which checks writability first (inference only reads)
        self._W = ffi.new("float *[]", [ptr(W) for W in weights])
        self._b = ffi.new("float *[]", [ptr(b) for b in biases])
        self.c = ffi.new("struct pynn_net *", {
            "n_layers": len(weights), "sizes": self._sizes, "W": self._W, "b": self._b,
            "hidden": activation_kind(hidden), "output": activation_kind(output),
            "loss": LOSS_KINDS[loss]})
        if lib.pynn_net_workspace(self.c, 1, 1) < 0:
            raise ValueError(f"no fused path for hidden={hidden!r}, output={output!r}, loss={loss!r}")
        self._work = {}        # (rows, training) -> free workspaces

    def matches(self, weights, biases, hidden, output, loss, writing=True):
        """True while the owner's arrays are still the ones this view points into, with the
        shape, strides and dtype it was made for (and still writable, unless ``writing`` is
        False: inference only reads them). Their data cannot move unseen: the view holds a
        reference, so numpy refuses to resize them in place, a resize forced with
        refcheck=False changes the shape, and strides set in place are compared here."""
        arrays = self._arrays
        if (self.kinds != (hidden, output, loss) or len(weights) + len(biases) != len(arrays)
                or not all(map(operator.is_, itertools.chain(weights, biases), arrays))):
            return False
        for a, (shape, strides) in zip(self._arrays, self._layouts):
            if a.shape != shape or a.strides != strides or a.dtype is not F32:
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
            return buf, wptr(buf), buf.size

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
        if type(X) is not np.ndarray or X.dtype is not F32 or X.ndim != 2 or not X.flags.c_contiguous:
            check_array("X", X, ndim=2)
        n = X.shape[0]
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have {self.sizes[0]} columns, got shape {X.shape}")
        out = np.empty((n, self.sizes[-1]), dtype=np.float32)
        if n == 0:
            return out
        rows = n if n < chunk else max(1, int(chunk))
        work = self._take(rows, 0)
        rc = lib.pynn_net_forward(self.c, ptr(X), ffi.NULL, 0.0, n, wptr(out), work[1], work[2])
        self._give(rows, 0, work)
        check_status(rc, "net_forward")
        return out

    def forward(self, X, out, chunk=1024):
        """out (n, n_out) = the network's output for X (n, n_in), probabilities for softmax."""
        check_array("X", X, ndim=2)
        n = X.shape[0]
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have {self.sizes[0]} columns, got shape {X.shape}")
        check_array("out", out, ndim=2, writable=True)
        check_shape("out", out, (n, self.sizes[-1]))
        no_overlap(out, X)
        if n == 0:
            return out
        rows = min(n, max(1, int(chunk)))
        work = self._take(rows, 0)
        rc = lib.pynn_net_forward(self.c, ptr(X), ffi.NULL, 0.0, n, wptr(out), work[1], work[2])
        self._give(rows, 0, work)
        check_status(rc, "net_forward")
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
            check_array("X", X, ndim=2)
        elif X.ndim != 2 or not X.flags.c_contiguous:
            raise ValueError(f"a uint8 X must be a C-contiguous 2-D array, got shape {X.shape}")
        scale = hyperparameter("scale", _U8_SCALE if scale is None else scale, -np.inf) if u8 else 0.0
        check_array("T", T, ndim=2)
        n = X.shape[0]
        if X.shape[1] != self.sizes[0]:
            raise ValueError(f"X must have {self.sizes[0]} columns, got shape {X.shape}")
        check_shape("T", T, (n, self.sizes[-1]))
        L = len(self._arrays) // 2
        for i, a in enumerate(self._arrays):
            check_array(f"weights[{i}]" if i < L else f"biases[{i - L}]", a, writable=True)
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
        X_ptr, T_ptr = ptr(X, "uint8_t[]" if u8 else "float[]"), ptr(T)
        # every array this call touches, as (pointer, bytes, name, written): none written may
        # share memory with another (the pointers are at hand: cheaper than asking numpy)
        spans = [(X_ptr, X.nbytes, "X", False), (T_ptr, T.nbytes, "T", False)]
        spans += [(p, a.nbytes, f"parameter {i}", True) for i, (p, a) in
                  enumerate(zip(itertools.chain(*zip(self._W, self._b)), params))]
        opt, keep = optimizer_struct(kind, hyper, params, state, steps, spans)
        apart(spans)
        n_batches = (n_order + batch - 1) // batch
        losses = np.zeros(n_batches, dtype=np.float64)
        done = ffi.new("int64_t *")
        work = self._take(batch, 1)
        rc = lib.pynn_net_train(self.c, opt, ffi.NULL if u8 else X_ptr, X_ptr if u8 else ffi.NULL,
                                scale, T_ptr, n,
                                ffi.NULL if order is None else i64ptr(order), n_order, batch,
                                wptr(losses, "double[]"), done, work[1], work[2])
        self._give(batch, 1, work)
        check_status(rc, "net_train")
        return losses[:done[0]], int(opt.step)


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
        self.result = np.empty(view.sizes[-1], dtype=np.float32)   # what C writes
        self._work = np.empty(lib.pynn_net_workspace(view.c, 1, 0), dtype=np.float32)
        self._args = (view.c, wptr(self.result), wptr(self._work), self._work.size)
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
        n_in, result, lock = self.n_in, self.result, self._lock
        forward = lib.pynn_net_forward_one

        def call(x):
            """A new (n_out,) float32 array: the network's output for x (uint8 scaled to 0..1)."""
            xf, xu, scale = input_pointers(x, n_in, "sample")
            lock.acquire()                       # C runs without the GIL: one caller at a time
            try:                                 # in the buffers
                rc = forward(net, xf, xu, scale, out, work, work_len)
                y = result.copy()
            finally:
                lock.release()
            if rc:
                check_status(rc, "net_forward_one")
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
        args = ((net, ptr(x), ffi.NULL, 0.0, out, work, work_len) if x.dtype == F32 else
                (net, ffi.NULL, ptr(x, "uint8_t[]"), _U8_SCALE, out, work, work_len))
        return lambda: lib.pynn_net_forward_one(*args)


STEP_KINDS = {"conv": lib.PYNN_STEP_CONV, "pool": lib.PYNN_STEP_POOL, "dense": lib.PYNN_STEP_DENSE}


class OneImage:
    """One image through a network of convolutions, max poolings and dense layers in one C
    call (csrc/fast/conv_one.c): ``OneSample``'s job for a convolutional network.

    ``steps`` lists the layers as ("conv", W, b, padding, act), ("pool", k) and
    ("dense", W, b, act), act the activation that follows (a name), for images of
    ``input_shape`` (C,H,W); ``output`` is the output function. The C view points into the
    very W and b arrays given (their values may change between calls; ``current`` tells
    whether a layer list still holds these arrays). Each call takes a workspace of its own
    from a free list and gives it back, so calls from several threads never share one.
    """

    def __init__(self, steps, input_shape, output):
        C, H, W = (int(v) for v in input_shape)
        self.n_in = C * H * W
        weights, biases, specs = [], [], []
        for i, step in enumerate(steps):
            kind = step[0]
            spec = {"kind": STEP_KINDS[kind], "C": C, "H": H, "W": W, "act": lib.PYNN_LINEAR}
            if kind == "pool":
                spec["K"] = k = int(step[1])
                C, H, W = C, H // k, W // k
            else:
                Wt, b, act = step[1], step[2], step[-1]
                check_array(f"steps[{i}] weight", Wt, ndim=4 if kind == "conv" else 2)
                check_array(f"steps[{i}] bias", b, ndim=1)
                check_shape(f"steps[{i}] bias", b, (Wt.shape[0],))
                weights.append(Wt)
                biases.append(b)
                spec.update(OC=Wt.shape[0], act=activation_kind(act), weight=ptr(Wt), bias=ptr(b))
                if kind == "conv":
                    pad = int(step[3])
                    if Wt.shape[1] != C or Wt.shape[2] != Wt.shape[3]:
                        raise ValueError(f"steps[{i}]: a conv weight must be (OC,{C},K,K), got {Wt.shape}")
                    spec.update(K=Wt.shape[2], pad=pad)
                    C, H, W = Wt.shape[0], H + 2 * pad - Wt.shape[2] + 1, W + 2 * pad - Wt.shape[2] + 1
                else:
                    check_shape(f"steps[{i}] weight", Wt, (Wt.shape[0], C * H * W))
                    C, H, W = Wt.shape[0], 1, 1
            specs.append(spec)
        self.n_out = C * H * W
        self._steps = ffi.new("struct pynn_step[]", specs)
        self._work_len = lib.pynn_steps_workspace(self._steps, len(specs))
        if self._work_len < 0:
            raise ValueError(f"the layers do not fit together for images of {tuple(input_shape)}")
        self._weights, self._biases = tuple(weights), tuple(biases)
        self._layouts = tuple(map(_LAYOUT, self._weights + self._biases))
        self.call = self._make_call(len(specs), activation_kind(output))

    def current(self, layers):
        """True while ``layers`` (those with parameters, in order) hold the very W and b arrays
        the view points into, with the shape, strides and dtype it was made for. (Their data
        cannot move unseen: the view holds a reference, so numpy refuses to resize them in
        place, and a resize forced with refcheck=False changes the shape.)"""
        if len(layers) != len(self._weights):
            return False
        for layer, W, b in zip(layers, self._weights, self._biases):
            if layer.W is not W or layer.b is not b:
                return False
        return tuple(map(_LAYOUT, self._weights + self._biases)) == self._layouts

    def _make_call(self, n, output):
        steps, n_in, n_out, work_len = self._steps, self.n_in, self.n_out, self._work_len
        forward, empty, f32 = lib.pynn_steps_forward_one, np.empty, F32
        free = []                  # workspaces: (array, its pointer, the output, its pointer)

        def call(x):
            """A new (n_out,) float32 array: the network's output for the image x (any shape
            of n_in values, C-contiguous; float32, or uint8 scaled to 0..1)."""
            xf, xu, scale = input_pointers(x, n_in, "image")
            try:
                work = free.pop()                # atomic: each call its own workspace
            except IndexError:
                buf, out = empty(work_len, dtype=f32), empty(n_out, dtype=f32)
                work = (buf, wptr(buf), out, wptr(out))
            rc = forward(steps, n, output, xf, xu, scale, work[3], work[1], work_len)
            y = work[2].copy()
            if len(free) < 4:
                free.append(work)
            if rc:
                check_status(rc, "steps_forward_one")
            return y
        return call

    def __call__(self, x):
        """A new (n_out,) float32 array: the network's output for the image x (any shape of
        n_in values, C-contiguous; float32, or uint8 scaled to 0..1)."""
        return self.call(x)
