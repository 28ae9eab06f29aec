"""The layer kinds a network is a list of, named as PyTorch users know them.

Each layer is a forward/backward pair over arrays its network owns (the network makes every
buffer once per batch size and hands them in; a layer allocates nothing per batch):

    forward(x, out, tape)              out = the layer applied to x
    backward(x, out, dout, dinp, tape) from dL/dout, the gradients of the layer's parameters
                                       (returned, in the order of ``params``) and, when dinp is
                                       not None, dL/dx written into dinp

x and out are a batch, one sample per leading row: (B, n) for dense layers. ``tape`` is a dict
the network keeps for this layer and this batch size, for whatever else backward needs (the
dropout mask). A layer whose ``inplace`` is True may be given out = x, and then backward reads
only out (an activation's derivative is written in terms of its output).
"""
import re

import numpy as np

from . import ops


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class Layer:
    """What every layer has: no parameters, and an output the shape of its input."""
    params = ()         # names of the parameter attributes, in the order gradients come back
    inplace = False     # forward may write its output over its input

    def output_shape(self, shape):
        """The shape of one sample's output, given one sample's input shape."""
        return tuple(shape)

    def parameters(self):
        return [getattr(self, name) for name in self.params]

    def param_shapes(self):
        """The shape of each parameter, by name, before any is made."""
        return {}

    def spec(self):
        """What rebuilds the layer (its kind and constructor arguments): what a model file keeps."""
        return {"type": type(self).__name__}

    def __repr__(self):
        return f"{type(self).__name__}()"


class Linear(Layer):
    """z = a W^T + b (eq. 13 with a batch): W is (n_out, n_in), b (n_out,); a (B, n_in) one
    sample per row, z (B, n_out). The weights are made by the network that holds the layer
    (He or Xavier, by the activation that follows), or given as arrays."""
    params = ("W", "b")

    def __init__(self, n_in, n_out, W=None, b=None):
        self.n_in = _positive_int("n_in", n_in)
        self.n_out = _positive_int("n_out", n_out)
        self.W, self.b = W, b

    def output_shape(self, shape):
        if tuple(shape) != (self.n_in,):
            raise ValueError(f"{self!r} takes {self.n_in} values per sample, got shape {tuple(shape)}"
                             + (" (put a Flatten() before it)" if len(shape) > 1 else ""))
        return (self.n_out,)

    def init(self, rng, activation):
        """He initialisation before ReLU (variance 2/n_in keeps the signal's size through layers
        that zero half their inputs); Xavier (Glorot) before the others."""
        if activation == "relu":
            W = rng.normal(0.0, np.sqrt(2.0 / self.n_in), size=(self.n_out, self.n_in))
        else:
            limit = np.sqrt(6.0 / (self.n_in + self.n_out))
            W = rng.uniform(-limit, limit, size=(self.n_out, self.n_in))
        self.W = ops.aligned_copy(W.astype(np.float32))
        self.b = ops.aligned_copy(np.zeros(self.n_out, dtype=np.float32))

    def forward(self, x, out, tape):
        ops.gemm(x, self.W, out, trans_b=True)      # z = a W^T    (B,n_in)(n_in,n_out)
        ops.bias_forward(out, self.b)               # z += b

    def backward(self, x, out, dout, dinp, tape):
        """In the forward pass z = a W^T + b, so dW = delta^T a, db = the column sums of delta,
        and dL/da = delta W (eq. 31-52 with matrices, delta = dL/dz)."""
        dW = ops.matmul(dout, x, trans_a=True)      # (n_out,B)(B,n_in)
        db = ops.bias_backward(dout)
        if dinp is not None:
            ops.gemm(dout, self.W, dinp)            # (B,n_out)(n_out,n_in)
        return [dW, db]

    def param_shapes(self):
        return {"W": (self.n_out, self.n_in), "b": (self.n_out,)}

    def spec(self):
        return {"type": "Linear", "n_in": self.n_in, "n_out": self.n_out}

    def __repr__(self):
        return f"Linear({self.n_in}, {self.n_out})"


class Activation(Layer):
    """a = f(z) element by element (eq. 4); its derivative is written in terms of a."""
    kind = "linear"
    inplace = True

    def forward(self, x, out, tape):
        ops.activation_forward(self.kind, x, out=out)

    def backward(self, x, out, dout, dinp, tape):
        """dL/dz = dL/da * f'(z), with f'(z) from a: a(1-a) for the sigmoid, 1 - a^2 for tanh,
        1 where a > 0 for ReLU."""
        if dinp is not None:
            ops.activation_backward(self.kind, out, dout, dinp=dinp)
        return []


class ReLU(Activation):
    kind = "relu"


class Sigmoid(Activation):
    kind = "sigmoid"


class Tanh(Activation):
    kind = "tanh"


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


class Dropout(Layer):
    """Inverted dropout (csrc/ref/dropout.c): in training each value is kept with probability 1-p
    and scaled by 1/(1-p), so nothing changes when predicting; the mask comes from the
    network's dropout seed and a stream number, so a run repeats bit for bit."""

    def __init__(self, p=0.5):
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)):
            raise ValueError(f"dropout must be a number in [0, 1), got {p!r}")
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x, out, tape):
        """out = x * mask, the mask drawn from (tape["seed"], tape["stream"]) and kept."""
        mask = tape.get("mask")
        if mask is None or mask.shape != x.shape:
            mask = tape["mask"] = np.empty(x.shape, dtype=np.float32)
        np.copyto(out, x)
        ops.dropout_forward(out, mask, self.p, tape["seed"], tape["stream"])

    def backward(self, x, out, dout, dinp, tape):
        """In the forward pass out = x * mask, so dL/dx = dL/dout * mask."""
        if dinp is not None:
            np.copyto(dinp, dout)
            ops.dropout_backward(dinp, tape["mask"])
        return []

    def spec(self):
        return {"type": "Dropout", "p": self.p}

    def __repr__(self):
        return f"Dropout({self.p:g})"


class Flatten(Layer):
    """(B, C, H, W) -> (B, C*H*W): the same numbers, one row a sample (the network hands in
    out as a view of x, so there is nothing to do)."""

    def output_shape(self, shape):
        return (int(np.prod(shape, dtype=np.int64)),)

    def forward(self, x, out, tape):
        if out.ctypes.data != x.ctypes.data:
            np.copyto(out, x.reshape(out.shape))

    def backward(self, x, out, dout, dinp, tape):
        if dinp is not None and dinp.ctypes.data != dout.ctypes.data:
            np.copyto(dinp.reshape(dout.shape), dout)
        return []


class Conv2d(Layer):
    """A convolution: out[b,o] = bias[o] + the sum over input channels c of weight[o,c]
    slid over x[b,c] (a cross-correlation, as every framework computes it), with a stride
    and zero padding. x is (B,C,H,W), W (OC,C,KH,KW), b (OC,), out (B,OC,OH,OW) with
    OH = (H + 2 padding - KH) // stride + 1. csrc/ref/conv.c has the loops; csrc/fast/conv.c
    unfolds the patches and multiplies them with the packed GEMM."""
    params = ("W", "b")

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, W=None, b=None):
        self.in_channels = _positive_int("in_channels", in_channels)
        self.out_channels = _positive_int("out_channels", out_channels)
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.stride = _positive_int("stride", stride)
        if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        self.padding = int(padding)
        self.W, self.b = W, b

    def output_shape(self, shape):
        if len(shape) != 3 or shape[0] != self.in_channels:
            raise ValueError(f"{self!r} takes images of {self.in_channels} channels (C,H,W), "
                             f"got shape {tuple(shape)}")
        k, p, s = self.kernel_size, self.padding, self.stride
        _, H, W = shape
        if H + 2 * p < k or W + 2 * p < k:
            raise ValueError(f"{self!r}: the kernel is larger than the padded {H}x{W} image")
        return (self.out_channels, (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1)

    def param_shapes(self):
        k = self.kernel_size
        return {"W": (self.out_channels, self.in_channels, k, k), "b": (self.out_channels,)}

    def init(self, rng, activation):
        """He initialisation before ReLU, Xavier before the others, counting a unit's inputs
        as C*KH*KW (fan in) and its outputs as OC*KH*KW (fan out)."""
        k = self.kernel_size
        fan_in, fan_out = self.in_channels * k * k, self.out_channels * k * k
        shape = self.param_shapes()["W"]
        if activation == "relu":
            W = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
        else:
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            W = rng.uniform(-limit, limit, size=shape)
        self.W = ops.aligned_copy(W.astype(np.float32))
        self.b = ops.aligned_copy(np.zeros(self.out_channels, dtype=np.float32))

    def _work(self, x, tape, pooled=False):
        """The workspace kept in ``tape``, sized again only when the shapes, the thread count
        or the kind of pass change (a smaller one would run on fewer threads)."""
        key = (x.shape, self.W.shape, ops.get_num_threads())
        if tape.get(("work_for", pooled)) != key:    # forward (pooled) and backward in turns
            size = ops.conv2d_workspace(x.shape, self.W.shape, self.stride, self.padding)
            if pooled:
                size = max(size, ops.conv2d_relu_pool_workspace(x.shape, self.W.shape,
                                                                self.stride, self.padding))
            work = tape.get("work")
            if work is None or work.size < size:
                tape["work"] = np.empty(size, dtype=np.float32)
            tape[("work_for", pooled)] = key
        return tape["work"]

    def forward(self, x, out, tape):
        ops.conv2d_forward(x, self.W, self.b, self.stride, self.padding, out=out,
                           work=self._work(x, tape))

    def backward(self, x, out, dout, dinp, tape):
        """In the forward pass out[b,o,y,x'] += W[o,c,i,j] x[b,c,y*s+i-p,x'*s+j-p], so
        dW[o,c,i,j] += dout[b,o,y,x'] times that x, db[o] += dout[b,o,y,x'], and that x's
        gradient += W[o,c,i,j] dout[b,o,y,x']: every product of the forward, read backwards."""
        _, dW, db = ops.conv2d_backward(dout, x, self.W, self.stride, self.padding, dx=dinp,
                                        want_dx=dinp is not None, work=self._work(x, tape),
                                        accumulate=False)
        return [dW, db]

    def forward_relu_pool(self, x, k, out, tape):
        """``forward``, then ReLU, then MaxPool2d(k), in one pass that never writes the
        convolution's whole output: out is the pooling's output; where each window's maximum
        came from is kept in ``tape``."""
        argmax = tape.get("argmax")
        if argmax is None or argmax.shape != out.shape:
            argmax = tape["argmax"] = np.empty(out.shape, dtype=np.int32)
        ops.conv2d_relu_pool_forward(x, self.W, self.b, k, self.stride, self.padding, out=out,
                                     argmax=argmax, work=self._work(x, tape, pooled=True))

    def backward_relu_pool(self, x, out, dout, dinp, k, tape):
        """The backward of ``forward_relu_pool`` from dL/dout of the pooling: the gradient at
        the convolution's output is dout at each window's argmax where out > 0 (ReLU's
        derivative), zero elsewhere; then ``backward``. A first layer (dinp None) takes only
        the weights' gradients, summed over the chosen windows alone."""
        if dinp is None:          # a first layer: straight to the weights, window by window
            dW, db = ops.conv2d_relu_pool_backward_weights(dout, out, tape["argmax"], x, self.W, k,
                                                           self.stride, self.padding)
            return [dW, db]
        shape = (x.shape[0], *self.output_shape(x.shape[1:]))
        dz = tape.get("dz")
        if dz is None or dz.shape != shape:
            dz = tape["dz"] = np.empty(shape, dtype=np.float32)
        ops.relu_maxpool2d_backward(dout, out, tape["argmax"], shape, k, dx=dz)
        return self.backward(x, None, dz, dinp, tape)

    def spec(self):
        return {"type": "Conv2d", "in_channels": self.in_channels,
                "out_channels": self.out_channels, "kernel_size": self.kernel_size,
                "stride": self.stride, "padding": self.padding}

    def __repr__(self):
        extra = (f", stride={self.stride}" if self.stride != 1 else "") + \
                (f", padding={self.padding}" if self.padding else "")
        return f"Conv2d({self.in_channels}, {self.out_channels}, {self.kernel_size}{extra})"


class MaxPool2d(Layer):
    """Max pooling over k x k windows at stride k: each window's largest value (rows and
    columns past the last whole window are left out). x (B,C,H,W) -> (B,C,H//k,W//k)."""

    def __init__(self, kernel_size):
        self.kernel_size = _positive_int("kernel_size", kernel_size)

    def output_shape(self, shape):
        k = self.kernel_size
        if len(shape) != 3 or shape[1] < k or shape[2] < k:
            raise ValueError(f"{self!r} takes images (C,H,W) of at least {k}x{k}, got shape "
                             f"{tuple(shape)}")
        return (shape[0], shape[1] // k, shape[2] // k)

    def forward(self, x, out, tape):
        """out = the window's maximum, and where it was (argmax) for backward."""
        argmax = tape.get("argmax")
        if argmax is None or argmax.shape != out.shape:
            argmax = tape["argmax"] = np.empty(out.shape, dtype=np.int32)
        ops.maxpool2d_forward(x, self.kernel_size, out=out, argmax=argmax)

    def backward(self, x, out, dout, dinp, tape):
        """Only the element each window chose moved its output: the gradient goes there alone."""
        if dinp is not None:
            dinp.fill(0.0)
            ops.maxpool2d_backward(dout, tape["argmax"], x.shape, self.kernel_size, dx=dinp)
        return []

    def spec(self):
        return {"type": "MaxPool2d", "kernel_size": self.kernel_size}

    def __repr__(self):
        return f"MaxPool2d({self.kernel_size})"


def dense_stack(sizes, activation, dropout=0.0):
    """The layers ``Network([784, 800, 10], activation)`` stands for: Linear layers of those
    widths, each hidden one followed by its activation (none for "linear") and, with dropout,
    a Dropout layer."""
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(n_in, n_out))
        if i < len(sizes) - 2:
            if activation != "linear":
                layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(Dropout(dropout))
    return layers


ARCH_HELP = ("layers joined by '-', input first: widths of dense layers (784-800-10), or an "
             "image CxHxW (or HxW) followed by cOkK[sS][pP] (a Conv2d of O channels, kernel K, "
             "stride S, padding P), poolK (a MaxPool2d) and dense widths, e.g. "
             "1x28x28-c32k5-pool2-c64k5-pool2-256-10; every layer but the last is followed by "
             "the activation")
_CONV = re.compile(r"c(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?")
_POOL = re.compile(r"pool(\d+)")


def names_images(text):
    """Whether an architecture string is of the image grammar (an input CxHxW or HxW, or a
    convolution or pooling part) rather than widths alone."""
    tokens = text.strip().lower().split("-")
    return bool(re.fullmatch(r"\d+x\d+(x\d+)?", tokens[0])) or any(
        _CONV.fullmatch(t) or _POOL.fullmatch(t) for t in tokens)


def from_arch(text, activation="relu", dropout=0.0):
    """The layers and input shape a convolutional architecture string names (ARCH_HELP):
    "1x28x28-c32k5-pool2-c64k5-pool2-256-10" -> ([Conv2d(1, 32, 5), ReLU(), MaxPool2d(2), ...,
    Flatten(), Linear(1024, 256), ReLU(), Dropout (with dropout), Linear(256, 10)], (1, 28, 28))."""
    tokens = text.strip().lower().split("-")
    try:
        shape = tuple(int(v) for v in tokens[0].split("x"))
    except ValueError:
        raise ValueError(f"architecture {text!r}: the first part must be the input, like "
                         f"1x28x28 or 784, got {tokens[0]!r}") from None
    if len(shape) == 2:
        shape = (1, *shape)
    if len(shape) not in (1, 3) or min(shape) < 1:
        raise ValueError(f"architecture {text!r}: the input must be CxHxW, HxW or a width")
    if len(tokens) < 2 or not tokens[-1].isdigit():
        raise ValueError(f"architecture {text!r}: it must end with the output's width, like -10")
    act = ACTIVATIONS.get(activation)
    layers, now = [], shape
    for i, token in enumerate(tokens[1:], start=1):
        last = i == len(tokens) - 1
        conv, pool = _CONV.fullmatch(token), _POOL.fullmatch(token)
        if conv and len(now) == 3:
            out, k, stride, pad = (int(g) if g is not None else d
                                   for g, d in zip(conv.groups(), (0, 0, 1, 0)))
            layers.append(Conv2d(now[0], out, k, stride, pad))
        elif pool and len(now) == 3:
            layers.append(MaxPool2d(int(pool.group(1))))
        elif token.isdigit():
            if len(now) == 3:
                layers.append(Flatten())
                now = layers[-1].output_shape(now)
            layers.append(Linear(now[0], int(token)))
        else:
            where = "after the dense layers" if len(now) == 1 else "here"
            raise ValueError(f"architecture {text!r}: {token!r} is not a layer {where} "
                             f"({ARCH_HELP})")
        try:
            now = layers[-1].output_shape(now)
        except ValueError as e:
            raise ValueError(f"architecture {text!r} at {token!r}: {e}") from None
        if not last and not isinstance(layers[-1], MaxPool2d):
            if act is not None:
                layers.append(act())
            if dropout > 0 and isinstance(layers[-2 if act else -1], Linear):
                layers.append(Dropout(dropout))
    return layers, shape


KINDS = {cls.__name__: cls for cls in (Linear, Conv2d, MaxPool2d, ReLU, Sigmoid, Tanh,
                                               Dropout, Flatten)}


def from_spec(spec):
    """The layer a ``spec()`` describes; ValueError naming what does not fit."""
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        kind = spec.get("type") if isinstance(spec, dict) else spec
        raise ValueError(f"unknown layer {kind!r} (known: {', '.join(KINDS)})")
    args = {k: v for k, v in spec.items() if k != "type"}
    for k, v in args.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"layer {spec['type']}: {k} must be a number, got {v!r}")
    try:
        return KINDS[spec["type"]](**args)
    except TypeError as e:
        raise ValueError(f"layer {spec['type']}: {e}") from None
