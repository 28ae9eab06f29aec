"""The network: a list of layers, each z = W a + b followed by a = f(z) (section 4.1.1).

``forward`` runs the layers in order and keeps every layer's output a, because the backward
pass needs them; ``backward`` walks the layers in reverse, turning the loss's gradient at the
output into dL/dW and dL/db for every layer (section 4.6, with matrices). All arithmetic runs
in the C kernels through pynn.ops; numpy only holds the arrays.

Shapes, with B samples in a batch: a layer's weights W are (n_out, n_in), its bias b (n_out,),
its input a (B, n_in) one sample per row, so a batch's z = a W^T + b is (B, n_out).
"""
import numpy as np

from . import ops
from .optim import SGD, Adam, Optimizer

HIDDEN = ("sigmoid", "relu", "tanh", "linear")
CHUNK = 4096        # samples per C call in fit when a callback reports progress
OUTPUTS = ("softmax", "sigmoid", "linear")
LOSSES = ("quadratic", "cross_entropy")
_ONE_DTYPES = (np.float32, np.uint8)       # inputs predict_one takes as they are
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


class Network:
    """A fully connected network: ``Network([784, 800, 10], "relu", "softmax", "cross_entropy")``.

    sizes      widths of the layers, input first (or "784-800-10")
    activation f of the hidden layers: sigmoid, relu, tanh or linear
    output     f of the last layer: softmax (probabilities), sigmoid (each unit in 0..1) or linear
    loss       quadratic (eq. 22) or cross_entropy (fused with the softmax or sigmoid output)
    seed       seeds the initial weights and the shuffling in ``fit``
    dropout    probability of dropping each hidden unit's activation in training (inverted
               dropout, csrc/dropout.c); never applied when predicting. 0 <= dropout < 1
    """

    def __init__(self, sizes, activation="relu", output="softmax", loss="cross_entropy", seed=0,
                 dropout=0.0):
        self.sizes = parse_sizes(sizes)
        self.activation = _choice("activation", activation, HIDDEN)
        self.output = _choice("output", output, OUTPUTS)
        self.loss = _choice("loss", loss, LOSSES)
        if loss == "cross_entropy" and output == "linear":
            raise ValueError("cross_entropy needs probabilities: use output='softmax' or 'sigmoid'")
        self.rng = np.random.default_rng(seed)
        self.weights, self.biases = [], []
        for i, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            f = self.activation if i < len(self.sizes) - 2 else self.output
            self.weights.append(ops.aligned_copy(self._init_weights(n_in, n_out, f)))
            self.biases.append(ops.aligned_copy(np.zeros(n_out, dtype=np.float32)))
        self._buffers = {}
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float, np.integer, np.floating)):
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        # the masks' seed, drawn after the weights (so dropout=0 leaves every draw as it was);
        # step numbers the training forwards, each of which draws its own masks
        self._dropout_seed = int(self.rng.integers(2 ** 63)) if self.dropout > 0 else 0
        self._dropout_step = 0

    def _init_weights(self, n_in, n_out, f):
        """He initialisation for ReLU (variance 2/n_in keeps the signal's size through layers
        that zero half their inputs); Xavier (Glorot) for the others."""
        if f == "relu":
            w = self.rng.normal(0.0, np.sqrt(2.0 / n_in), size=(n_out, n_in))
        else:
            limit = np.sqrt(6.0 / (n_in + n_out))
            w = self.rng.uniform(-limit, limit, size=(n_out, n_in))
        return w.astype(np.float32)

    # ---- the layers, forward and backward ----

    def _f(self, layer):
        return self.activation if layer < len(self.weights) - 1 else self.output

    def _fused_loss(self):
        """Cross-entropy is computed together with its output function (log-sum-exp)."""
        return self.loss == "cross_entropy"

    def _buffers_for(self, B):
        """Per-layer work arrays for batches of B, made once and reused: no batch allocates."""
        if B not in self._buffers or (self.dropout > 0 and "mask" not in self._buffers[B]):
            if len(self._buffers) > 4:
                self._buffers.clear()
            widths = self.sizes[1:]
            self._buffers[B] = {
                "a": [np.empty((B, n), dtype=np.float32) for n in widths],
                "delta": [np.empty((B, n), dtype=np.float32) for n in widths],
                "dA": [np.empty((B, n), dtype=np.float32) for n in self.sizes[1:-1]],
            }
            if self.dropout > 0:     # hidden outputs after dropout, and their masks
                self._buffers[B]["dropped"] = [np.empty((B, n), np.float32) for n in self.sizes[1:-1]]
                self._buffers[B]["mask"] = [np.empty((B, n), np.float32) for n in self.sizes[1:-1]]
        return self._buffers[B]

    def forward(self, X, keep=True, training=True):
        """Feed X (B, n_in) through every layer (eq. 13-16 with matrices); return the output (B, n_out).

        Layer l computes z = a W^T + b, then a = f(z), written over z in the same buffer. With
        cross-entropy the output layer keeps z (the logits): the loss applies its own
        softmax/sigmoid. ``keep`` keeps the activations for ``backward``.
        With dropout, a pass that keeps them (and ``training``) drops hidden units: each hidden
        a = f(z) stays as it is for f' in ``backward``, and a * mask goes on to the next layer;
        every such pass draws new masks (stream ``_dropout_step``, then counted up).
        """
        X = self._check_inputs(X)
        B = X.shape[0]
        bufs = self._buffers_for(B) if keep else {"a": [np.empty((B, n), dtype=np.float32)
                                                        for n in self.sizes[1:]]}
        drop = keep and training and self.dropout > 0
        a = X
        for layer, (W, b) in enumerate(zip(self.weights, self.biases)):
            z = bufs["a"][layer]
            ops.gemm(a, W, z, trans_b=True)              # z = a W^T   (B,n_in)(n_in,n_out)
            ops.bias_forward(z, b)                       # z += b
            last = layer == len(self.weights) - 1
            if not (last and keep and self._fused_loss()):
                ops.activation_forward(self._f(layer), z, out=z)   # a = f(z)
            a = z
            if drop and not last:
                a = bufs["dropped"][layer]
                np.copyto(a, z)
                ops.dropout_forward(a, bufs["mask"][layer], self.dropout, self._dropout_seed,
                                    self._dropout_step * len(self.weights) + layer)
        if keep:
            self._inputs = X
            self._acts = bufs["a"]
            self._dropped = bufs["dropped"] if drop else None
            self._masks = bufs["mask"] if drop else None
            self._dropout_step += drop
        return a

    def backward(self, T):
        """From targets T (B, n_out), the gradients of the loss for the batch last ``forward``ed.

        Returns [(dW, db), ...], one pair per layer, input side first. The output layer's delta
        (dL/dz) comes from the loss; then each layer, last to first (eq. 31-52 with matrices):
            dW = delta^T a_prev        (n_out, B)(B, n_in)
            db = sum of delta's rows
            dA_prev = delta W          (B, n_out)(n_out, n_in)
            delta_prev = dA_prev * f'(z_prev)
        """
        acts, X = self._acts, self._inputs
        B = X.shape[0]
        T = self.targets(T, B)
        bufs = self._buffers_for(B)
        L = len(self.weights)
        out_delta = bufs["delta"][L - 1]
        loss = self._output_delta(acts[L - 1], T, out_delta)
        grads = [None] * L
        delta = out_delta
        dropped = getattr(self, "_dropped", None)
        for layer in reversed(range(L)):
            a_prev = acts[layer - 1] if layer > 0 else X
            a_in = dropped[layer - 1] if dropped is not None and layer > 0 else a_prev
            dW = ops.matmul(delta, a_in, trans_a=True)           # (n_out, n_in)
            db = ops.bias_backward(delta)                        # (n_out,)
            grads[layer] = (dW, db)
            if layer > 0:
                dA = bufs["dA"][layer - 1]
                ops.gemm(delta, self.weights[layer], dA)         # dL/da_prev = delta W
                if dropped is not None:                          # through a_in = a_prev * mask
                    ops.dropout_backward(dA, self._masks[layer - 1])
                delta = bufs["delta"][layer - 1]
                ops.activation_backward(self.activation, a_prev, dA, dinp=delta)
        self.last_loss = loss
        return grads

    def _output_delta(self, out, T, delta):
        """dL/dz at the output layer, written into ``delta``; returns the batch's loss.

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
        """The list of (dW, db) for one batch, without changing the weights."""
        X = self._check_inputs(X)
        T = self.targets(y, X.shape[0])
        self.forward(X)
        return self.backward(T)

    def loss_value(self, X, y):
        """The loss (mean over the samples) of the network on X against y."""
        X = self._check_inputs(X)
        T = self.targets(y, X.shape[0])
        self.forward(X, training=False)
        out = self._acts[-1]
        if self.loss == "cross_entropy":
            fused = ops.softmax_cross_entropy if self.output == "softmax" else ops.sigmoid_cross_entropy
            return fused(out, T)[0]
        return ops.quadratic_loss(out, T)

    # ---- training ----

    def train_batch(self, X, T, optimizer):
        """One step of gradient descent on one batch: forward, backward, update. Returns the loss.

        A batch whose loss is NaN or Inf, or holds a NaN or Inf input, leaves the weights and
        the optimiser untouched and returns a loss that is not finite (``fit`` then stops
        there, with the weights of the batch before).

        With SGD or Adam the whole step is one C call (csrc/net.c) that does what ``forward``,
        ``backward`` and ``optimizer.step`` do, in the same order; another optimiser takes the
        layer-by-layer path.
        """
        spec = self._fused_optimizer(optimizer)
        if spec is None:
            self.forward(X)
            grads = self.backward(T)
            if not all(np.isfinite(g).all() for pair in grads for g in pair):
                self.last_loss = float("nan")        # a NaN/Inf input or overflow upstream
            if not np.isfinite(self.last_loss):
                return self.last_loss                # no step on a NaN or Inf loss
            params = [p for pair in zip(self.weights, self.biases) for p in pair]
            optimizer.step(params, [g for pair in grads for g in pair])
            return self.last_loss
        X = self._check_inputs(X)
        T = self.targets(T, X.shape[0])
        if X.shape[0] == 0:
            raise ValueError("X is empty: a training step needs at least one sample")
        losses = self._train_fused(X, T, None, X.shape[0], optimizer, spec)
        self.last_loss = float(losses[0])
        return self.last_loss

    def train_epoch(self, X, y, batch_size=32, optimizer=None, order=None):
        """One pass of mini-batch training over X in ``order`` (default: the rows in turn), all
        of it in one C call with SGD or Adam. Returns the mean loss over the samples.

        What ``fit`` runs each epoch, without its bookkeeping (no accuracy pass), for loops that
        do their own. Raises FloatingPointError when a batch's loss is not finite.
        """
        X = self._check_inputs(X)
        T = self.targets(y, X.shape[0])
        _count("batch_size", batch_size, least=1)
        if optimizer is None:
            optimizer = SGD(lr=0.1)
        if X.shape[0] == 0:
            raise ValueError("X holds no samples: training needs at least one")
        order = np.arange(X.shape[0]) if order is None else np.asarray(order, dtype=np.int64)
        return self._epoch(X, T, order, batch_size, optimizer, 0) / max(len(order), 1)

    def _epoch(self, X, T, order, batch_size, optimizer, epoch, callback=None):
        """Train on the batches of ``order``; returns the sum over batches of loss * batch size.

        With SGD or Adam the batches run in C, many per call: all of the epoch in one call, or,
        when a ``callback`` wants news, calls of whole batches covering about CHUNK samples
        each. The batches and steps are the same either way, so the weights are too; between
        calls the callback reports and Ctrl+C can land."""
        n = len(order)
        total, n_batches = 0.0, (n + batch_size - 1) // batch_size
        spec = self._fused_optimizer(optimizer)
        per_call = n_batches if callback is None or spec is None else max(1, CHUNK // batch_size)
        for first in range(0, n_batches, per_call):
            last = min(n_batches, first + per_call)
            if spec is not None:
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

    # ---- the fused C path ----

    def _fused(self, writing=True):
        """The C view of this network's weight arrays (pynn.ops.FusedNet), remade when the
        arrays are replaced; it reads and updates net.weights[i] and net.biases[i] themselves."""
        view = self.__dict__.get("_fused_view")
        if view is None or not view.matches(self.weights, self.biases, self.activation,
                                            self.output, self.loss, writing):
            view = self._fused_view = ops.FusedNet(self.weights, self.biases, self.activation,
                                                   self.output, self.loss)
        return view

    def __getstate__(self):
        """Copies and pickles hold the arrays, not the C view of them (made again on use)."""
        state = self.__dict__.copy()
        state.pop("_fused_view", None)
        state.pop("_one", None)
        return state

    def _fused_optimizer(self, optimizer):
        """(kind, settings, state) for an optimiser the C step implements; None for others, and
        for a network with dropout (the C step has none: the layer-by-layer path does it)."""
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a pynn optimiser (pynn.SGD, pynn.Adam or a "
                            f"subclass of pynn.Optimizer), got {type(optimizer).__name__}")
        if type(optimizer) not in (SGD, Adam) or self.dropout > 0:
            return None
        return optimizer.fused([p for pair in zip(self.weights, self.biases) for p in pair])

    def _train_fused(self, X, T, order, batch_size, optimizer, spec):
        kind, hyper, state = spec
        losses, optimizer.steps = self._fused().train(kind, hyper, state, optimizer.steps,
                                                      X, T, order, batch_size)
        return losses

    def fit(self, X, y, epochs=1, batch_size=32, optimizer=None, validation=None,
            shuffle=True, callback=None, on_epoch_end=None, start_epoch=0, history=None):
        """Train with mini-batch gradient descent; return the history.

        X: (n, n_in) float32 or uint8 (scaled to 0..1), or images (n, 28, 28).
        y: int labels (n,) or float32 targets (n, n_out).
        Each epoch shuffles with the network's seeded generator, so the same seed gives the
        same run. ``callback(epoch, batch, n_batches, loss)`` is called after every batch,
        ``on_epoch_end(epoch, history)`` after every epoch (checkpoints hook in there).
        History: a dict of lists, one entry per epoch: loss, accuracy, and val_loss,
        val_accuracy when ``validation=(X_val, y_val)`` is given. To resume a run, pass the
        saved ``history`` and ``start_epoch`` (with weights, optimiser and self.rng restored).
        """
        X = self._check_inputs(X)
        T = self.targets(y, X.shape[0])
        _count("batch_size", batch_size, least=1)
        _count("epochs", epochs, least=0)
        if optimizer is None:
            optimizer = SGD(lr=0.1)
        _count("start_epoch", start_epoch, least=0)
        for name, f in (("callback", callback), ("on_epoch_end", on_epoch_end)):
            if f is not None and not callable(f):
                raise TypeError(f"{name} must be a function, got {type(f).__name__}")
        if history is not None and not (isinstance(history, dict)
                                        and all(isinstance(v, list) for v in history.values())):
            raise TypeError(f"history must be a dict of lists (what fit returned), got {history!r:.60}")
        if validation is not None:
            if not (isinstance(validation, (tuple, list)) and len(validation) == 2):
                raise TypeError("validation must be a pair (X_val, y_val)")
            X_val, y_val = validation
            X_val = self._check_inputs(X_val)
            T_val = self.targets(y_val, X_val.shape[0])
        n = X.shape[0]
        if n == 0:
            raise ValueError("X holds no samples: training needs at least one")
        if history is None:
            history = {"loss": [], "accuracy": []}
            if validation is not None:
                history.update(val_loss=[], val_accuracy=[])
        for epoch in range(start_epoch, epochs):
            order = self.rng.permutation(n) if shuffle else np.arange(n)
            total = self._epoch(X, T, order, batch_size, optimizer, epoch, callback)
            history["loss"].append(total / n)
            history["accuracy"].append(self.accuracy(X, T))
            if validation is not None:
                history["val_loss"].append(self.loss_value(X_val, T_val))
                history["val_accuracy"].append(self.accuracy(X_val, T_val))
            if on_epoch_end is not None:
                on_epoch_end(epoch, history)
        return history

    # ---- using the network ----

    def predict_one(self, x):
        """The output for one sample, (n_out,) float32: x holds its n_in values in any shape
        ((784,), (1, 784), (28, 28)), float32, or uint8 scaled to 0..1; C-contiguous.

        One C call, with the buffers and weight pointers made on the first call and kept while
        net.weights and net.biases hold the same arrays (values may change). A lone call runs
        on one thread; calls that come back to back share the big layers among the threads.
        The first layer reads W only where x has ink: blocks of 16 inputs that are all zero
        are skipped (so a weight that is Inf or NaN against blank input does not make the
        output NaN, as it does in ``forward``); the bits are otherwise ``forward``'s.
        """
        one = self.__dict__.get("_one")
        if one is None or not one.current(self.weights, self.biases,
                                          (self.activation, self.output, self.loss)):
            one = self._one = ops.OneSample(self._fused(writing=False))
        return one.call(x)

    def predict_proba(self, X, batch_size=1024):
        """The output for every sample, (n, n_out) float32: probabilities for softmax (rows sum to 1)."""
        if (type(X) is np.ndarray and X.shape == (1, self.sizes[0]) and X.flags.c_contiguous
                and X.dtype in _ONE_DTYPES):
            return self.predict_one(X)[None]     # a digit (the pad's case): the lean path
        view = self._fused(writing=False)
        if not (type(X) is np.ndarray and X.dtype == np.float32 and X.ndim == 2
                and X.shape[1] == view.sizes[0] and X.flags.c_contiguous):
            X = self._check_inputs(X)                # the general case: shapes, uint8, images
        return view.predict(X, chunk=batch_size)

    def predict(self, X):
        """The most likely class of every sample, (n,) int64."""
        return ops.argmax_rows(self.predict_proba(X))

    def accuracy(self, X, y):
        """The fraction of samples whose most likely class is the label (or the target's argmax)."""
        X = self._check_inputs(X)
        T = self.targets(y, X.shape[0])
        labels = y if y.ndim == 1 else ops.argmax_rows(T)
        if X.shape[0] == 0:
            return float("nan")
        return float(np.count_nonzero(self.predict(X) == labels)) / X.shape[0]

    # ---- checking what comes in ----

    def _check_inputs(self, X):
        """X as a C-contiguous float32 (n, n_in) array; uint8 pixels are scaled to 0..1."""
        if not isinstance(X, np.ndarray):
            raise TypeError(f"X must be a numpy array, got {type(X).__name__}")
        n_in = self.sizes[0]
        if X.ndim == 1 and X.size == n_in:
            X = X.reshape(1, n_in)
        if X.ndim < 2 or int(np.prod(X.shape[1:])) != n_in:
            raise ValueError(f"X must have {n_in} values per sample, got shape {X.shape}")
        if X.dtype == np.uint8:
            X = ops.scale_u8(np.ascontiguousarray(X)).reshape(X.shape[0], n_in)
        elif X.dtype != np.float32:
            raise TypeError(f"X must be float32 or uint8, got {X.dtype}")
        return np.ascontiguousarray(X.reshape(X.shape[0], n_in))

    def targets(self, y, n):
        """Labels (n,) -> one-hot (n, n_out) float32; float targets (n, n_out) are checked and kept."""
        if not isinstance(y, np.ndarray):
            raise TypeError(f"y must be a numpy array, got {type(y).__name__}")
        n_out = self.sizes[-1]
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
        from .io import save
        save(self, path)

    def __repr__(self):
        arch = "-".join(str(s) for s in self.sizes)
        drop = f", dropout={self.dropout:g}" if self.dropout else ""
        return f"Network({arch}, {self.activation}, {self.output}, {self.loss}{drop})"
