"""The network: a list of layers (pynn.layers), run in order forward and in reverse backward.

``forward`` runs the layers in order and keeps every layer's output, because the backward pass
needs them; ``backward`` walks the layers in reverse, turning the loss's gradient at the
output into dL/dW and dL/db for every layer with parameters (section 4.6, with matrices). All
arithmetic runs in the C kernels through pynn.ops; numpy only holds the arrays.

Shapes, with B samples in a batch: a batch is an array with one sample per leading row, (B,
n_in) for a dense network, (B, C, H, W) inside a convolutional one. A dense layer's weights W
are (n_out, n_in), its bias b (n_out,), so a batch's z = a W^T + b is (B, n_out).

A network of dense layers with one hidden activation (what ``Network([784, 800, 10])``
builds) also runs whole in one C call (csrc/fast/): ``fit``, ``predict`` and ``predict_one``
choose that path by themselves and give the same numbers as the layer-by-layer one.
"""
import itertools
import math

import numpy as np

from . import ops
from .layers import (ACTIVATIONS, Activation, Conv2d, Dropout, Flatten, Layer, Linear,
                     MaxPool2d, ReLU, dense_stack, from_arch, names_images)
from .optim import SGD, Adam, scheduled_lr

HIDDEN = ("sigmoid", "relu", "tanh", "linear")
CHUNK = 4096        # samples per C call in fit when a callback reports progress
OUTPUTS = ("softmax", "sigmoid", "linear")
LOSSES = ("quadratic", "cross_entropy")
_ONE_DTYPES = (np.float32, np.uint8)       # inputs predict_one takes as they are
MAX_LAYER_LIST = 4 * ops.MAX_LAYERS   # a layer with weights, its activation, dropout, more
BYTES_PER_PARAMETER = 16      # the float32 weight, its gradient and an optimiser's two states


def _choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _count(name, value, least):
    """Check a whole-number setting such as batch_size or epochs."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        kind = "positive" if least == 1 else "non-negative"
        raise ValueError(f"{name} must be a {kind} integer, got {value!r}")


def _width(s):
    """One layer width as an int: an integer, or a float with an integer value (JSON's 784.0);
    never a bool, a fraction, NaN or Infinity."""
    if isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)):
        return int(s)
    if isinstance(s, (float, np.floating)) and np.isfinite(s) and float(s).is_integer():
        return int(s)
    raise ValueError(f"sizes must be whole numbers, got {s!r}")


def parse_sizes(sizes, check_memory=True):
    """[784, 800, 10] or "784-800-10" -> a list of layer widths, checked: at most
    ops.MAX_LAYERS layers of at most ops.MAX_WIDTH units, and (``check_memory``) parameters
    whose training fits in this machine's memory, said before anything is allocated."""
    if isinstance(sizes, str):
        try:
            sizes = [int(s) for s in sizes.split("-")]
        except ValueError:
            raise ValueError(f"architecture {sizes!r} must be widths joined by '-', like 784-800-10") from None
    if not isinstance(sizes, (list, tuple, np.ndarray)):
        raise ValueError(f"sizes must be a list of layer widths, got {type(sizes).__name__}")
    sizes = [_width(s) for s in sizes]
    if len(sizes) < 2 or any(s < 1 for s in sizes):
        raise ValueError(f"sizes needs an input and an output width, all >= 1; got {sizes}")
    if len(sizes) - 1 > ops.MAX_LAYERS:
        raise ValueError(f"sizes give {len(sizes) - 1} layers; a network has at most {ops.MAX_LAYERS}")
    if max(sizes) > ops.MAX_WIDTH:
        raise ValueError(f"sizes ask for a layer of {max(sizes)} units, wider than the "
                         f"{ops.MAX_WIDTH} a network takes")
    need = BYTES_PER_PARAMETER * sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes, sizes[1:]))
    have = ops.physical_memory() if check_memory else None
    if have and need > have:
        raise ValueError(f"sizes {'-'.join(map(str, sizes))}: training it takes about "
                         f"{need / 2 ** 30:.1f} GiB (weights, gradients, optimiser state), "
                         f"more than this machine's {have / 2 ** 30:.1f} GiB of memory")
    return sizes


class _Params(list):
    """``net.weights`` / ``net.biases``: the dense layers' arrays as a list; setting an item
    sets that layer's array."""

    def __init__(self, layers, name):
        super().__init__(getattr(layer, name) for layer in layers)
        self._layers, self._name = layers, name

    def __setitem__(self, i, value):
        super().__setitem__(i, value)
        setattr(self._layers[i], self._name, value)


class _Tape:
    """The buffers of one forward and backward pass over batches of B: every layer's output,
    every layer's input gradient, and each layer's own notes (``tape`` of pynn.layers)."""

    def __init__(self, net, B):
        self.B = B
        shapes = net._shapes
        self.outs, self.dins = [], []
        own = False          # an activation writes over its input only where that is ours
        for i, layer in enumerate(net.layers):
            if isinstance(layer, Flatten) or (layer.inplace and own):
                self.outs.append(None)
            else:
                self.outs.append(np.empty((B, *shapes[i + 1]), np.float32))
                own = True
        self.shapes = shapes
        self.dins = [None] * len(net.layers)     # made by the first backward pass: predicting
        self.delta = np.empty((B, *shapes[-1]), np.float32)   # needs none
        self.notes = [{} for _ in net.layers]
        self.xs = None
        self.fused = {}


class Network:
    """A network of layers: ``Network([Linear(784, 800), ReLU(), Linear(800, 10)])``, or the
    shorthand ``Network([784, 800, 10], activation="relu")`` that builds that list.

    layers     a list of pynn.layers, or the widths of dense layers, input first ("784-800-10")
    activation with widths: f of the hidden layers, sigmoid, relu, tanh or linear
    output     f after the last layer: softmax (probabilities), sigmoid (each unit in 0..1) or linear
    loss       quadratic (eq. 22) or cross_entropy (fused with the softmax or sigmoid output)
    seed       seeds the initial weights and the shuffling in ``fit``
    dropout    with widths: inverted dropout of the hidden units in training (a Dropout layer
               after every hidden activation), 0 <= dropout < 1
    input_shape  one sample's shape, e.g. (1, 28, 28) for a convolutional network; inputs of
               any shape with that many values per sample are taken
    """

    def __init__(self, layers=None, activation="relu", output="softmax", loss="cross_entropy",
                 seed=0, dropout=0.0, input_shape=None, sizes=None):
        if sizes is not None:                  # the shorthand's older keyword
            if layers is not None:
                raise TypeError("give layers or sizes, not both")
            layers = sizes
        self.output = _choice("output", output, OUTPUTS)
        self.loss = _choice("loss", loss, LOSSES)
        if loss == "cross_entropy" and output == "linear":
            raise ValueError("cross_entropy needs probabilities: use output='softmax' or 'sigmoid'")
        if isinstance(layers, str) and names_images(layers):
            _choice("activation", activation, HIDDEN)  # "1x28x28-c32k5-pool2-256-10"
            layers, input_shape = from_arch(layers, activation, Dropout(dropout).p)
        elif not (isinstance(layers, (list, tuple)) and any(isinstance(x, Layer) for x in layers)):
            _choice("activation", activation, HIDDEN)  # widths: the shorthand for dense layers
            Dropout(dropout)                           # checks the probability
            layers = dense_stack(parse_sizes(layers), activation, float(dropout))
        bad = [x for x in layers if not isinstance(x, Layer)]
        if bad:
            raise TypeError(f"layers must all be pynn.layers (or all widths), got {bad[0]!r}")
        if len(layers) > MAX_LAYER_LIST:
            raise ValueError(f"a network has at most {MAX_LAYER_LIST} layers, got {len(layers)}")
        if len(set(map(id, layers))) != len(layers):
            raise ValueError("a layer object appears twice in the list: make one per place")
        self.layers = list(layers)
        first = next((x for x in self.layers if x.params), None)
        if first is None:
            raise ValueError("a network needs at least one layer with weights (Linear, Conv2d)")
        if input_shape is None:
            if not isinstance(first, Linear):
                raise ValueError("give input_shape (one sample's shape, e.g. (1, 28, 28)): "
                                 "the first layer with weights is not Linear")
            input_shape = (first.n_in,)
        self.input_shape = self.check_input_shape(input_shape)
        self._shapes = self._trace_shapes()
        self._check_size()
        self.rng = np.random.default_rng(seed)
        for i, layer in enumerate(self.layers):
            if layer.params and any(p is None for p in layer.parameters()):
                layer.init(self.rng, self._next_activation(i))
        self._seed_dropout()
        self._free = {}
        self._tape = None
        self._plan(activation if activation in HIDDEN else "relu")

    def _seed_dropout(self):
        # the masks' seed, drawn after the weights (so dropout=0 leaves every draw as it was);
        # step numbers the training forwards, each of which draws its own masks
        has_dropout = any(isinstance(x, Dropout) for x in self.layers)
        self.dropout_seed = int(self.rng.integers(2 ** 63)) if has_dropout else 0
        self.dropout_step = 0

    def reseed(self, seed):
        """Seed the shuffling, the dropout masks and every later draw from ``seed``, leaving
        the weights as they are: a loaded network trained on (fine-tuning) then trains the
        same way every time."""
        self.rng = np.random.default_rng(seed)
        self._seed_dropout()

    @staticmethod
    def check_input_shape(shape):
        try:
            shape = tuple(int(s) for s in shape if not isinstance(s, bool))
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"input_shape must be a tuple of positive integers, got {shape!r}") from None
        if not shape or any(s < 1 for s in shape) or len(shape) > 3:
            raise ValueError(f"input_shape must be 1 to 3 positive integers, got {shape!r}")
        return shape

    @staticmethod
    def trace(layers, input_shape):
        """One sample's shape before and after every layer; a layer that cannot take its input
        says so, naming where it stands."""
        shapes = [tuple(input_shape)]
        for i, layer in enumerate(layers):
            try:
                shapes.append(tuple(layer.output_shape(shapes[-1])))
            except ValueError as e:
                raise ValueError(f"layer {i} ({layer!r}): {e}") from None
        return shapes

    def _trace_shapes(self):
        return self.trace(self.layers, self.input_shape)

    def _check_size(self):
        """Refuse, before anything is allocated, parameters whose training would not fit in
        this machine's memory."""
        count = sum(int(np.prod(shape, dtype=np.float64)) for layer in self.layers
                    for shape in layer.param_shapes().values())
        need = BYTES_PER_PARAMETER * count
        have = ops.physical_memory()
        if have and need > have:
            raise ValueError(f"the layers have {count} parameters: training them takes about "
                             f"{need / 2 ** 30:.1f} GiB (weights, gradients, optimiser state), "
                             f"more than this machine's {have / 2 ** 30:.1f} GiB of memory")

    def _next_activation(self, i):
        """The activation that follows layer i (the output's after the last), which decides
        how its weights start."""
        for layer in self.layers[i + 1:]:
            if layer.params:
                return "linear"
            if isinstance(layer, Activation):
                return layer.kind
        return self.output

    def _plan(self, activation="relu"):
        """Which fast path this layer list allows. The one-call C network needs dense layers
        (after an optional Flatten) with the same hidden activation, or none, between every
        two of them (``_hidden``: which), and, to train, no dropout (``_fusable``).
        ``activation`` names the hidden activation where there is no hidden layer."""
        self._linears = [x for x in self.layers if isinstance(x, Linear)]
        self._param_layers = [x for x in self.layers if x.params]
        self._conv_pools = _conv_pools(self.layers)
        self._view = self._one = None
        self._hidden = None
        self._fusable = False
        body = self.layers[1:] if isinstance(self.layers[0], Flatten) else self.layers
        if len(self.input_shape) > 1 and body is self.layers:
            return
        has_dropout = any(isinstance(x, Dropout) for x in body)
        body = [x for x in body if not isinstance(x, Dropout)]
        kinds, i = [], 0
        while i < len(body) and isinstance(body[i], Linear):
            if i + 1 == len(body):
                if len(set(kinds)) <= 1:
                    self._hidden = kinds[0] if kinds else activation
                    self._fusable = not has_dropout
                return
            nxt = body[i + 1]
            if isinstance(nxt, Linear):
                kinds.append("linear")
                i += 1
            elif type(nxt) in ACTIVATIONS.values():
                kinds.append(nxt.kind)
                i += 2
            else:
                return

    # ---- what the network is ----

    @property
    def weights(self):
        """The weight matrices W (n_out, n_in) of the dense layers, input side first."""
        return _Params(self._linears, "W")

    @weights.setter
    def weights(self, arrays):
        self._set_params("W", arrays)

    @property
    def biases(self):
        return _Params(self._linears, "b")

    @biases.setter
    def biases(self, arrays):
        self._set_params("b", arrays)

    def _set_params(self, name, arrays):
        arrays = list(arrays)
        if len(arrays) != len(self._linears):
            raise ValueError(f"the network has {len(self._linears)} dense layers, got {len(arrays)} arrays")
        for layer, a in zip(self._linears, arrays):
            setattr(layer, name, a)

    def parameters(self):
        """Every parameter array, in the order the optimisers keep their state: W0, b0, W1, ..."""
        return [p for layer in self._param_layers for p in layer.parameters()]

    @property
    def sizes(self):
        """The input's width, then the width of every layer with weights' output."""
        widths = [int(np.prod(self.input_shape))]
        for i, layer in enumerate(self.layers):
            if layer.params:
                widths.append(int(np.prod(self._shapes[i + 1])))
        return widths

    @property
    def activation(self):
        """The hidden activation of a dense network (None where the layers mix them)."""
        return self._hidden

    @activation.setter
    def activation(self, kind):
        """Change every hidden activation of a dense network."""
        _choice("activation", kind, HIDDEN)
        if self._hidden is None:
            raise ValueError("activation can be set only on a dense network with one hidden activation")
        sizes = self.sizes
        fresh = dense_stack(sizes, kind, self.dropout)
        for new, old in zip((x for x in fresh if isinstance(x, Linear)), self._linears):
            new.W, new.b = old.W, old.b
        self.layers = fresh
        self._shapes = self._trace_shapes()
        self._free = {}
        self._plan()

    @property
    def dropout(self):
        """The probability of the network's Dropout layers (0.0 if it has none)."""
        return max((x.p for x in self.layers if isinstance(x, Dropout)), default=0.0)

    @property
    def n_in(self):
        return math.prod(self.input_shape)

    @property
    def n_out(self):
        return math.prod(self._shapes[-1])

    def __repr__(self):
        layers = ", ".join(map(repr, self.layers))
        shape = f", input_shape={self.input_shape}" if len(self.input_shape) > 1 else ""
        return f"Network([{layers}], output={self.output}, loss={self.loss}{shape})"

    def __getstate__(self):
        """Copies and pickles hold the arrays, not the C views of them (made again on use)."""
        state = self.__dict__.copy()
        for name in ("_view", "_one", "_tape"):
            state.pop(name, None)
        state["_free"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._view = self._one = self._tape = None
        self._conv_pools = _conv_pools(self.layers)

    # ---- the layers, forward and backward ----

    def _fused_loss(self):
        """Cross-entropy is computed together with its output function (log-sum-exp)."""
        return self.loss == "cross_entropy"

    def _take_tape(self, B):
        """Buffers for a pass over B samples, each pass its own: two threads never share one."""
        free = self._free.get(B)
        try:
            return free.pop()
        except (AttributeError, IndexError):
            return _Tape(self, B)

    def _give_tape(self, tape):
        if len(self._free) > 4 and tape.B not in self._free:
            self._free = {}
        free = self._free.setdefault(tape.B, [])
        if len(free) < 4:
            free.append(tape)

    def _run(self, X, tape, training, keep_logits, fuse=True):
        """X (B, n_in) through every layer into ``tape``; returns the output. With
        ``keep_logits`` the output function is left to the loss (cross-entropy's fused one).
        With ``fuse`` each Conv2d, ReLU, MaxPool2d runs as one pass (Conv2d.forward_relu_pool:
        the same bits), and the tape holds no output of the first two."""
        B = X.shape[0]
        x = X.reshape(B, *self.input_shape)
        xs = [x]
        L = sum(1 for layer in self.layers if layer.params)
        fused = self._conv_pools if fuse else {}
        seen, i = -1, 0
        while i < len(self.layers):
            layer = self.layers[i]
            if layer.params:
                seen += 1
            if i in fused:
                out = tape.outs[i + 2]
                layer.forward_relu_pool(x, fused[i], out, tape.notes[i])
                xs += [None, None, out]
                x, i = out, i + 3
                continue
            if isinstance(layer, Dropout) and not training:
                out = x                              # predicting: dropout is the identity
            elif isinstance(layer, Flatten) and tape.outs[i] is None:
                out = x.reshape(B, *self._shapes[i + 1])    # a view: nothing to run
            else:
                out = tape.outs[i]
                if out is None:           # in place over x
                    out = x if x.shape[1:] == self._shapes[i + 1] else x.reshape(B, *self._shapes[i + 1])
                if isinstance(layer, Dropout):
                    note = tape.notes[i]
                    note["seed"] = self.dropout_seed
                    note["stream"] = self.dropout_step * L + seen
                layer.forward(x, out, tape.notes[i])
            xs.append(out)
            x = out
            i += 1
        if not keep_logits and self.output != "linear":
            ops.activation_forward(self.output, x, out=x)
        if training:
            self.dropout_step += any(isinstance(layer, Dropout) for layer in self.layers)
        tape.xs = xs
        tape.training = training
        tape.fused = fused
        return x

    def _back(self, tape, T):
        """The gradients for the pass in ``tape`` against targets T: [(dW, db), ...] for the
        layers with parameters, input side first, and the loss."""
        xs = tape.xs
        out = xs[-1].reshape(tape.B, -1)
        delta = tape.delta.reshape(tape.B, -1)
        loss = self._output_delta(out, T, delta)
        dout = tape.delta
        grads = []
        inside = {j for first in tape.fused for j in (first, first + 1)}
        for i in reversed(range(len(self.layers))):
            layer = self.layers[i]
            if i in inside or (isinstance(layer, Dropout) and not tape.training):
                continue                      # a fused pass's first layers: done at its last
            if isinstance(layer, Flatten):    # the same numbers in the input's shape
                dout = dout.reshape((tape.B, *tape.shapes[i]))
                continue
            first = i - 2 if i - 2 in tape.fused else i      # the layer whose input dinp is
            dinp = tape.dins[first]
            if dinp is None and first > 0:
                dinp = tape.dins[first] = np.empty((tape.B, *tape.shapes[first]), np.float32)
            dout = dout.reshape(xs[i + 1].shape)
            if first != i:
                layer = self.layers[first]
                g = layer.backward_relu_pool(xs[first], xs[i + 1], dout, dinp, tape.fused[first],
                                             tape.notes[first])
            else:
                g = layer.backward(xs[i], xs[i + 1], dout, dinp, tape.notes[i])
            if layer.params:
                grads.append(tuple(g))
            dout = dinp
        grads.reverse()
        return grads, loss

    def forward(self, X, keep=True, training=True):
        """Feed X through every layer; return the output (B, n_out).

        Each layer writes its output into a buffer of the network's (an activation over its
        input's). With cross-entropy and ``keep`` the output stays the logits z: the loss
        applies its own softmax/sigmoid. ``keep`` keeps the layers' outputs for ``backward``;
        with it (and ``training``) Dropout layers drop units, each pass with new masks.
        """
        X = self.check_inputs(X)
        B = X.shape[0]
        if not keep:
            tape = _Tape(self, B)
            out = self._run(X, tape, False, False)
            return out.reshape(B, -1)
        return self._keep(X, training, fuse=False)

    def _keep(self, X, training, fuse):
        """``forward`` of checked inputs X, keeping the pass for ``backward``."""
        if self._tape is not None:
            self._give_tape(self._tape)
        self._tape = tape = self._take_tape(X.shape[0])
        return self._run(X, tape, training, self._fused_loss(), fuse).reshape(X.shape[0], -1)

    def layer_outputs(self):
        """What the layers computed in the last ``forward`` that kept them (keep=True, the
        default): [input, output of layers[0], output of layers[1], ...], each with the batch
        first; the hidden activations, and after a Dropout layer the units it kept (zeros where
        it dropped). They are the network's own buffers, which the next pass overwrites; an
        activation writes over its input's buffer, so a layer's output before an activation
        holds the activated values; with cross-entropy the last is the logits z."""
        if self._tape is None or self._tape.fused:
            raise RuntimeError("layer_outputs needs a forward(X) with keep=True first")
        return list(self._tape.xs)

    def backward(self, T):
        """From targets T (B, n_out), the gradients of the loss for the batch last ``forward``ed.

        Returns [(dW, db), ...], one pair per layer with parameters, input side first. The
        output's delta (dL/dz) comes from the loss; then each layer, last to first, turns the
        gradient of its output into its parameters' gradients and its input's (for a dense
        layer, eq. 31-52 with matrices):
            dW = delta^T a_prev        (n_out, B)(B, n_in)
            db = sum of delta's rows
            dA_prev = delta W          (B, n_out)(n_out, n_in)
            delta_prev = dA_prev * f'(z_prev)
        """
        tape = self._tape
        if tape is None:
            raise RuntimeError("backward needs a forward(X) with keep=True first")
        T = self.targets(T, tape.B)
        grads, self.last_loss = self._back(tape, T)
        return grads

    def _output_delta(self, out, T, delta):
        """dL/dz at the output, written into ``delta``; returns the batch's loss.

        cross_entropy: ``out`` holds the logits z; the fused loss gives delta = (p - t)/B.
        quadratic: dL/da = 2(a - t)/B, then through the output function's derivative.
        """
        if self.loss == "cross_entropy":
            fused = ops.softmax_cross_entropy if self.output == "softmax" else ops.sigmoid_cross_entropy
            fused_back = (ops.softmax_cross_entropy_backward if self.output == "softmax"
                          else ops.sigmoid_cross_entropy_backward)
            loss, probs = fused(out, T, probs=out)                  # out: logits -> probabilities
            fused_back(probs, T, out=delta)
            return loss
        loss = ops.quadratic_loss(out, T)
        ops.quadratic_loss_backward(out, T, out=delta)
        ops.activation_backward(self.output, out, delta, dinp=delta)
        return loss

    def gradients(self, X, y):
        """The list of (dW, db) for one batch, without changing the weights (dropout off)."""
        X = self.check_inputs(X)
        T = self.targets(y, X.shape[0])
        tape = self._take_tape(X.shape[0])
        try:
            self._run(X, tape, True, self._fused_loss())
            grads, self.last_loss = self._back(tape, T)
        finally:
            self._give_tape(tape)
        return [tuple(g.copy() for g in pair) for pair in grads]

    def loss_value(self, X, y):
        """The loss (mean over the samples) of the network on X against y."""
        X = self.check_inputs(X)
        T = self.targets(y, X.shape[0])
        tape = self._take_tape(X.shape[0])
        try:
            out = self._run(X, tape, False, self._fused_loss()).reshape(X.shape[0], -1)
            if self.loss == "cross_entropy":
                fused = ops.softmax_cross_entropy if self.output == "softmax" else ops.sigmoid_cross_entropy
                return fused(out, T)[0]
            return ops.quadratic_loss(out, T)
        finally:
            self._give_tape(tape)

    # ---- training ----

    def train_batch(self, X, T, optimizer):
        """One step of gradient descent on one batch: forward, backward, update. Returns the loss.

        A batch whose loss is NaN or Inf, or holds a NaN or Inf input, leaves the weights and
        the optimiser untouched and returns a loss that is not finite (``fit`` then stops
        there, with the weights of the batch before).

        With SGD or Adam on a network the one-call C step covers, the whole step is one C call
        (csrc/fast/) that does what ``forward``, ``backward`` and ``optimizer.step`` do, in the
        same order; otherwise the layers run one by one.
        """
        spec = self._fused_optimizer(optimizer)
        if spec is None:
            self._keep(self.check_inputs(X), True, fuse=True)
            grads = self.backward(T)
            if not np.isfinite(self.last_loss):
                return self.last_loss                # no step on a NaN or Inf loss
            if not optimizer.step_if_finite(self.parameters(), [g for pair in grads for g in pair]):
                self.last_loss = float("nan")        # a NaN/Inf input or overflow upstream
            return self.last_loss
        X = self.check_inputs(X)
        T = self.targets(T, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("X is empty: a training step needs at least one sample")
        losses = self._train_fused(X, T, None, X.shape[0], optimizer, spec)
        self.last_loss = float(losses[0])
        return self.last_loss

    def uses_fused_step(self, optimizer):
        """Whether training with ``optimizer`` runs each step as one C call (csrc/fast/), which
        ``fit``, ``train_epoch`` and ``train_batch`` choose for SGD or Adam on a network of
        dense layers and the activations that call covers, without dropout; otherwise the
        layers run one by one."""
        return self._fused_optimizer(optimizer) is not None

    def train_epoch(self, X, y, batch_size=32, optimizer=None, order=None):
        """One pass of mini-batch training over X in ``order`` (default: the rows in turn), all
        of it in one C call where the fast path applies. Returns the mean loss over the samples.

        What ``fit`` runs each epoch, without its bookkeeping (no accuracy pass), for timing
        loops. Raises FloatingPointError when a batch's loss is not finite.
        """
        X = self.as_stored(X)
        T = self.targets(y, X.shape[0])
        _count("batch_size", batch_size, least=1)
        if optimizer is None:
            optimizer = SGD(lr=0.1)
        _check_optimizer(optimizer)
        if X.shape[0] == 0:
            raise ValueError("X holds no samples: training needs at least one")
        order = np.arange(X.shape[0]) if order is None else np.asarray(order, dtype=np.int64)
        return self._epoch(X, T, order, batch_size, optimizer, 0) / max(len(order), 1)

    def _epoch(self, X, T, order, batch_size, optimizer, epoch, callback=None):
        """Train on the batches of ``order``; returns the sum over batches of loss * batch size.

        On the fast path the batches run in C, many per call: all of the epoch in one call, or,
        when a ``callback`` wants news, calls of whole batches covering about CHUNK samples
        each. The batches and steps are the same either way, so the weights are too; between
        calls the callback reports and Ctrl+C can land."""
        n = len(order)
        total, n_batches = 0.0, (n + batch_size - 1) // batch_size
        spec = self._fused_optimizer(optimizer)
        per_call = n_batches if callback is None or spec is None else max(1, CHUNK // batch_size)
        for first in range(0, n_batches, per_call):
            last = min(n_batches, first + per_call)
            if spec is not None:     # uint8 X is scaled in C, a batch at a time
                chunk = order[first * batch_size:last * batch_size]
                losses = self._train_fused(X, T, chunk, batch_size, optimizer, spec)
            for k in range(first, last):
                size = min(batch_size, n - k * batch_size)
                if spec is not None:
                    loss = float(losses[k - first])  # a short list ends on the non-finite loss
                else:
                    idx = order[k * batch_size:(k + 1) * batch_size]
                    loss = self.train_batch(X[idx], T[idx], optimizer)
                if not np.isfinite(loss):
                    raise FloatingPointError(
                        f"loss became {loss} in epoch {epoch + 1}, batch {k + 1}: "
                        f"try a lower learning rate")
                total += loss * size
                if callback is not None:
                    callback(epoch, k, n_batches, loss)
        return total

    def fit(self, X, y, epochs=1, batch_size=32, optimizer=None, validation=None,
            shuffle=True, callback=None, on_epoch_end=None, start_epoch=0, history=None,
            transform=None, transform_rng=None, schedule=None, checkpoint=None, run=None,
            score=True):
        """Train with mini-batch gradient descent; return the history. The one training loop:
        ``pynn train``, the study, teaching and the default model's training all run here.

        X: (n, n_in) float32 or uint8 (scaled to 0..1), or images (n, 28, 28) / (n, 1, 28, 28).
        y: int labels (n,) or float32 targets (n, n_out).
        shuffle: True shuffles every epoch with the network's seeded generator (so the same
          seed gives the same run), False keeps the order, a numpy Generator shuffles with it.
        transform: ``transform(X, rng)`` gives each epoch's inputs afresh (distortions, noise),
          X as images (n, H, W); an ``augment.Augmenter``, say. With ``transform_rng`` its draws
          come from that generator and the next epoch's inputs are made on a second thread
          while this one trains; without, from the network's generator, before the shuffle.
        schedule: the learning rate of each epoch: "constant", "step" or "cosine" from the
          optimiser's rate, or a function epoch -> rate.
        callback(epoch, batch, n_batches, loss) after every batch; on_epoch_end(epoch,
          history) after every epoch; when it returns True, training stops there.
        checkpoint: a directory; after every epoch the whole state is written there
          (pynn.checkpoint, with ``run``, a dict of the run's settings), the same format
          ``pynn train --checkpoint`` writes and ``--resume`` reads.
        score: False leaves out the accuracy pass over the training set each epoch.
        History: a dict of lists, one entry per epoch: loss, accuracy, and val_loss,
        val_accuracy when ``validation=(X_val, y_val)`` is given. To resume a run, pass the
        saved ``history`` and ``start_epoch`` (with weights, optimiser and self.rng restored),
        or use ``pynn.checkpoint.resume``.
        """
        images = X
        X = self.as_stored(X)
        T = self.targets(y, X.shape[0])
        _count("batch_size", batch_size, least=1)
        _count("epochs", epochs, least=0)
        _count("start_epoch", start_epoch, least=0)
        if optimizer is None:
            optimizer = SGD(lr=0.1)
        _check_optimizer(optimizer)
        lr_of = _schedule(schedule, optimizer.lr, epochs)
        for name, f in (("callback", callback), ("on_epoch_end", on_epoch_end),
                        ("transform", transform)):
            if f is not None and not callable(f):
                raise TypeError(f"{name} must be a function, got {type(f).__name__}")
        if history is not None and not (isinstance(history, dict)
                                        and all(isinstance(v, list) for v in history.values())):
            raise TypeError(f"history must be a dict of lists (what fit returned), got {history!r:.60}")
        if validation is not None:
            if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
                raise TypeError("validation must be a pair (X_val, y_val)")
            X_val, y_val = validation
            X_val = self.check_inputs(X_val)
            T_val = self.targets(y_val, X_val.shape[0])
        n = X.shape[0]
        if n == 0:
            raise ValueError("X holds no samples: training needs at least one")
        if history is None:
            history = {"loss": [], "accuracy": []} if score else {"loss": []}
            if validation is not None:
                history.update(val_loss=[], val_accuracy=[])
        if isinstance(shuffle, np.random.Generator):
            order_rng = shuffle
        elif shuffle:
            order_rng = self.rng
        else:
            order_rng = None
        inputs = _epochs_of_inputs(self, images, X, transform, transform_rng, start_epoch, epochs)
        for epoch, Xe in zip(range(start_epoch, epochs), inputs):
            if lr_of is not None:
                optimizer.lr = lr_of(epoch)
            order = order_rng.permutation(n) if order_rng is not None else np.arange(n)
            total = self._epoch(Xe, T, order, batch_size, optimizer, epoch, callback)
            history["loss"].append(total / n)
            if score:
                history.setdefault("accuracy", []).append(self.accuracy(X, T))
            if validation is not None:
                history["val_loss"].append(self.loss_value(X_val, T_val))
                history["val_accuracy"].append(self.accuracy(X_val, T_val))
            try:
                stop = on_epoch_end is not None and on_epoch_end(epoch, history) is True
            finally:               # the epoch is done even when on_epoch_end raises
                if checkpoint is not None:
                    from .checkpoint import save_checkpoint
                    save_checkpoint(checkpoint, self, optimizer, epoch, history, run)
            if stop:
                break
        return history

    # ---- the fast paths ----

    def _fused(self, writing=True):
        """The C view of this network's weight arrays (pynn.ops.FusedNet), remade when the
        arrays are replaced; it reads and updates the layers' arrays themselves."""
        view = self._view
        weights = [x.W for x in self._linears]
        biases = [x.b for x in self._linears]
        if view is None or not view.matches(weights, biases, self._hidden, self.output,
                                            self.loss, writing):
            view = self._view = ops.FusedNet(weights, biases, self._hidden, self.output, self.loss)
        return view

    def _fused_optimizer(self, optimizer):
        """(kind, settings, state) for an optimiser the C step implements on a network it
        covers; None for others (the layers then run one by one)."""
        _check_optimizer(optimizer)
        if type(optimizer) not in (SGD, Adam) or not self._fusable:
            return None
        return optimizer.fused(self.parameters())

    def _train_fused(self, X, T, order, batch_size, optimizer, spec):
        kind, hyper, state = spec
        losses, optimizer.steps = self._fused().train(kind, hyper, state, optimizer.steps,
                                                      X, T, order, batch_size)
        return losses

    # ---- using the network ----

    def predict_one(self, x):
        """The output for one sample, (n_out,) float32: x holds its n_in values in any shape
        ((784,), (1, 784), (28, 28)), float32, or uint8 scaled to 0..1; C-contiguous.

        On a dense network, one C call, with the buffers and weight pointers made on the first
        call and kept while the layers hold the same arrays (values may change). A lone call
        runs on one thread; calls that come back to back share the big layers among the
        threads. The first layer reads W only where x has ink: blocks of 16 inputs that are
        all zero are skipped (so a weight that is Inf or NaN against blank input does not make
        the output NaN, as it does in ``forward``); the bits are otherwise ``forward``'s.

        On a network of convolutions (stride 1), poolings and dense layers, also one C call
        (pynn.ops.OneImage), its parts shared among the threads: the numbers of the layer
        path to float32 rounding (it sums in another order). Other layer lists run the layers.
        """
        if self._hidden is None:
            one = self._image_sample()
            if one is not None:
                return one.call(x)
            return self.predict_proba(np.asarray(x).reshape(1, -1) if isinstance(x, np.ndarray)
                                      else x)[0]
        return self.one_sample().call(x)

    def _image_steps(self):
        """The layers as pynn.ops.OneImage's steps, each convolution and dense layer with the
        activation that follows it (dropout is the identity when predicting); None where the
        one-call path does not cover them (a stride other than 1, an activation elsewhere, an
        output of more than one axis)."""
        if len(self.input_shape) != 3 or len(self._shapes[-1]) != 1:
            return None
        layers = [x for x in self.layers if not isinstance(x, (Dropout, Flatten))]
        steps = []
        for i, layer in enumerate(layers):
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            act = nxt.kind if type(nxt) in ACTIVATIONS.values() else "linear"
            if isinstance(layer, Conv2d) and layer.stride == 1:
                steps.append(("conv", layer.W, layer.b, layer.padding, act))
            elif isinstance(layer, Linear):
                steps.append(("dense", layer.W, layer.b, act))
            elif isinstance(layer, MaxPool2d):
                steps.append(("pool", layer.kernel_size))
            elif not (isinstance(layer, Activation) and i > 0
                      and isinstance(layers[i - 1], (Conv2d, Linear))):
                return None
        return steps

    def _image_sample(self):
        """The session ``predict_one`` runs on a convolutional network (pynn.ops.OneImage: one
        C call per image), made again when the layers' arrays are replaced; None where its
        layers are not ones it covers."""
        one = self._one
        if one is not None and one.current(self._param_layers):
            return one
        steps = self._image_steps()
        if steps is None:
            return None
        try:
            one = self._one = ops.OneImage(steps, self.input_shape, self.output)
        except ValueError:             # images too large for it: the layer path serves
            return None
        return one

    def one_sample(self):
        """The session ``predict_one`` runs on a dense network (pynn.ops.OneSample: one C call
        per sample, its buffers made once), made again when the layers' arrays are replaced;
        None for a network without the fused path. ``pynn bench`` times its prepared call."""
        if self._hidden is None:
            return None
        one = self._one
        if one is None or not one.current(self._linears, (self._hidden, self.output, self.loss)):
            one = self._one = ops.OneSample(self._fused(writing=False))
        return one

    def predict_proba(self, X, batch_size=1024):
        """The output for every sample, (n, n_out) float32: probabilities for softmax (rows sum to 1)."""
        if self._hidden is not None:
            if (type(X) is np.ndarray and X.shape == (1, self._linears[0].n_in)
                    and X.flags.c_contiguous and X.dtype in _ONE_DTYPES):
                return self.predict_one(X)[None]     # a digit (the pad's case): the lean path
            view = self._fused(writing=False)
            if not (type(X) is np.ndarray and X.dtype == np.float32 and X.ndim == 2
                    and X.shape[1] == view.sizes[0] and X.flags.c_contiguous):
                X = self.as_stored(X)                # the general case: shapes, uint8, images
            if X.dtype == np.float32:
                return view.predict(X, chunk=batch_size)
        X = self.as_stored(X)
        _count("batch_size", batch_size, least=1)
        out = np.empty((X.shape[0], self.n_out), dtype=np.float32)
        for start in range(0, X.shape[0], batch_size):
            part = X[start:start + batch_size]
            if part.dtype == np.uint8:
                part = ops.scale_u8(part)
            if self._hidden is not None:
                out[start:start + part.shape[0]] = view.predict(part, chunk=batch_size)
                continue
            tape = self._take_tape(part.shape[0])
            try:
                out[start:start + part.shape[0]] = self._run(part, tape, False, False).reshape(part.shape[0], -1)
            finally:
                self._give_tape(tape)
        return out

    def predict(self, X):
        """The most likely class of every sample, (n,) int64."""
        return ops.argmax_rows(self.predict_proba(X))

    def accuracy(self, X, y):
        """The fraction of samples whose most likely class is the label (or the target's argmax)."""
        X = self.as_stored(X)
        T = self.targets(y, X.shape[0])
        labels = y if y.ndim == 1 else ops.argmax_rows(T)
        if X.shape[0] == 0:
            return float("nan")
        return float(np.count_nonzero(self.predict(X) == labels)) / X.shape[0]

    # ---- checking what comes in ----

    def as_stored(self, X):
        """X as a C-contiguous (n, n_in) array of its own dtype, float32 or uint8 (pixels):
        any shape with n_in values per sample ((n, 784), (n, 28, 28), (n, 1, 28, 28), or one
        sample alone). Training and prediction scale uint8 a batch at a time, so a data set is
        never copied whole as float32."""
        if not isinstance(X, np.ndarray):
            raise TypeError(f"X must be a numpy array, got {type(X).__name__}")
        n_in = self.n_in
        if X.shape == self.input_shape or (X.ndim == 1 and X.size == n_in):
            X = X.reshape(1, n_in)
        if X.ndim < 2 or math.prod(X.shape[1:]) != n_in:
            want = "x".join(map(str, self.input_shape))
            raise ValueError(f"X must have {n_in} values per sample ({want}), got shape {X.shape}")
        if X.dtype != np.float32 and X.dtype != np.uint8:
            raise TypeError(f"X must be float32 or uint8, got {X.dtype}")
        return np.ascontiguousarray(X.reshape(X.shape[0], n_in))

    def check_inputs(self, X):
        """X as a C-contiguous float32 (n, n_in) array (``as_stored``; uint8 pixels are scaled
        to 0..1)."""
        X = self.as_stored(X)
        return ops.scale_u8(X) if X.dtype == np.uint8 else X


    def targets(self, y, n):
        """Labels (n,) -> one-hot (n, n_out) float32; float targets (n, n_out) are checked and kept."""
        if not isinstance(y, np.ndarray):
            raise TypeError(f"y must be a numpy array, got {type(y).__name__}")
        n_out = self.n_out
        if y.ndim == 1 and np.issubdtype(y.dtype, np.integer):
            if y.shape[0] != n:
                raise ValueError(f"y has {y.shape[0]} labels but X has {n} samples")
            if n and (y.min() < 0 or y.max() >= n_out):
                raise ValueError(f"labels must be in 0..{n_out - 1}, got {y.min()}..{y.max()}")
            T = np.zeros((n, n_out), dtype=np.float32)
            T[np.arange(n), y] = 1.0
            return T
        if y.ndim == 2 and y.dtype == np.float32:
            if y.shape != (n, n_out):
                raise ValueError(f"targets must have shape {(n, n_out)}, got {y.shape}")
            return np.ascontiguousarray(y)
        raise TypeError(f"y must be int labels (n,) or float32 targets (n, {n_out}); "
                        f"got {y.dtype} with shape {y.shape}")

    # ---- saving ----

    def save(self, path):
        """Write the network to ``path`` (pynn.modelfile.save: atomic, plain arrays)."""
        from .modelfile import save     # here: modelfile builds Networks, so it imports this module
        save(self, path)

    def to_onnx(self, path):
        """Write the network to ``path`` as an ONNX graph (pynn.onnx_io; the onnx extra)."""
        from .onnx_io import to_onnx
        to_onnx(self, path)


def _conv_pools(layers):
    """{i: k} for each Conv2d at i followed by ReLU and MaxPool2d(k): the passes that run as
    one (Conv2d.forward_relu_pool)."""
    return {i: layers[i + 2].kernel_size for i in range(len(layers) - 2)
            if isinstance(layers[i], Conv2d) and type(layers[i + 1]) is ReLU
            and isinstance(layers[i + 2], MaxPool2d)}


def _check_optimizer(optimizer):
    from .optim import Optimizer
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer must be a pynn optimiser (pynn.SGD, pynn.Adam), "
                        f"got {type(optimizer).__name__}")


def _schedule(schedule, lr, epochs):
    """epoch -> learning rate for ``fit``'s schedule argument (None: leave the rate alone)."""
    if schedule is None:
        return None
    if callable(schedule):
        return schedule
    scheduled_lr(schedule, lr, 0, max(epochs, 1))          # checks the name
    return lambda epoch: scheduled_lr(schedule, lr, epoch, epochs)


def _epochs_of_inputs(net, images, X, transform, rng, start, epochs):
    """Each epoch's training inputs: X itself, or ``transform``'s fresh copy of ``images`` (as
    fit was given them), checked like any input."""
    if transform is None:
        return itertools.repeat(X)
    if rng is None:                # drawn from the network's generator, before each shuffle
        return (net.check_inputs(transform(images, net.rng)) for _ in range(start, epochs))
    from .augment import distorted_epochs
    return (net.check_inputs(e) for e in distorted_epochs(images, rng, epochs - start, transform))
