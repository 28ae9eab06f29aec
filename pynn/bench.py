"""pynn bench: pynn's speed next to numpy (OpenBLAS) and PyTorch, measured side by side in one run.

Four sections, each printed as a table with ratios (pynn's speed over the other's, > 1 means
pynn is faster):
  gemm   the matrix products of training a 784-H-10 network (forward z = a W^T, dW = delta^T a,
         dX = delta W for batches of 1, 10, 64, 256 and H of 128, 800), and 1024/2048 squares,
         with all threads and with one; and one row times each layer's W from Python,
         ops.matmul (checks included) against numpy's @
  train  samples/s of mini-batch training (ReLU, softmax cross-entropy, SGD with momentum,
         data in memory): 784-800-10 at batch 64 over whole MNIST epochs, with the test
         accuracy both reach, and 784-128-10 at batches of 1, 10, 64 and 256
  conv   the convolutional network 1x28x28-c32k5-pool2-c64k5-pool2-256-10: training samples/s
         at batch 64 and its GFLOP/s, and one digit through it
  infer  one digit (1,784) to probabilities, from Python: pynn's predict_proba (and
         predict_one, which returns the (10,) row), PyTorch, and numpy's two matrix products,
         on real digits (MNIST's test digits, or digits drawn as the pad draws them), whose
         blank blocks pynn's first layer skips; and pynn's C call on an input with none
Times are medians of blocks of calls the libraries take in turns (with a pause between, so
that no library's idle threads still spin while another runs), so a busy machine slows all of
them alike. PyTorch is optional (``pip install .[bench]``); without it its columns are blank.
"""
import argparse
import ctypes
import itertools
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

from . import ops
from .network import Network
from .optim import SGD

GEMM_BATCHES = (1, 10, 64, 256)
GEMM_HIDDEN = (128, 800)
TRAIN_SMALL = ((1, 3000), (10, 20000), (64, 60000), (256, 60000))   # (batch, samples timed)


# ---- the competitors ----

def optional_torch():
    """PyTorch, or None where it is not installed (its columns are then blank)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _openblas_threads(n):
    """Set OpenBLAS's thread count in this process (numpy's BLAS); False if it cannot be found."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower()}
    except OSError:
        return False
    for path in paths:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            fn = getattr(lib, name, None)
            if fn is not None:
                fn(ctypes.c_int(n))
                return True
    return False


def machine(torch, threads):
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas.get('name')} {blas.get('version')}"
    except Exception:   # older numpy: no dict form
        blas = "unknown BLAS"
    try:
        load = "load average {:.1f} {:.1f} {:.1f} (1, 5, 15 min)".format(*os.getloadavg())
    except OSError:
        load = "load average unknown"
    lines = [f"CPU: {cpu}, {os.cpu_count()} logical CPUs, {load}",
             f"pynn kernels: {ops.cpu_features()}, {threads} thread(s) for pynn, numpy's BLAS "
             f"and PyTorch",
             f"Python {platform.python_version()}, numpy {np.__version__} ({blas})",
             "PyTorch: " + (f"{torch.__version__}, {torch.get_num_threads()} thread(s)"
                            if torch else "not installed")]
    return "\n".join(lines)


# ---- timing ----

PAUSE = 0.1   # seconds between libraries: OpenBLAS's and OpenMP's idle threads spin for a while
# after a call, and would take the next library's second core


def interleaved(fns, budget, inner=1, rounds=3):
    """Median seconds per call of each function. The libraries take turns, ``rounds`` times,
    each turn a block of calls (``inner`` calls a sample) about budget / (rounds * libraries)
    long after a pause, so a busy moment of the machine falls on all of them alike and no
    library runs while another's idle threads still spin."""
    live = [f for f in fns if f is not None]
    samples = {id(f): [] for f in live}
    for f in live:           # warm up: caches, thread pools, lazy initialisation
        f()
    block = budget / (rounds * max(len(live), 1))
    for _ in range(rounds):
        for f in live:
            time.sleep(PAUSE)
            start, taken = time.perf_counter(), 0
            while True:          # at least two samples a block, so one hiccup is not the median
                t0 = time.perf_counter()
                for _ in range(inner):
                    f()
                t1 = time.perf_counter()
                samples[id(f)].append((t1 - t0) / inner)
                taken += 1
                if t1 - start >= block and taken >= 2:
                    break
    return [statistics.median(samples[id(f)]) if f is not None else None for f in fns]


def _ratio(mine, others):
    """pynn's speed over the faster other (times: smaller is faster)."""
    best = min((t for t in others if t), default=None)
    return f"{best / mine:5.2f}x" if best and mine else "   - "


def _fmt(v, width=8, digits=1):
    return f"{v:{width}.{digits}f}" if v is not None else " " * (width - 1) + "-"


def _inner(seconds_per_call):
    return max(1, min(1000, int(2e-3 / max(seconds_per_call, 1e-9))))


# ---- gemm ----

def gemm_cases(quick):
    cases = []
    for H in GEMM_HIDDEN:
        for B in GEMM_BATCHES:
            cases.append((f"z = a W^T   a {B}x784, W {H}x784", B, H, 784, False, True))
            cases.append((f"dW = d^T a  d {B}x{H}, a {B}x784", H, 784, B, True, False))
            cases.append((f"dX = d W    d {B}x{H}, W {H}x784", B, 784, H, False, False))
    cases.append(("square 1024", 1024, 1024, 1024, False, False))
    if not quick:
        cases.append(("square 2048", 2048, 2048, 2048, False, False))
    return cases


def gemm_fns(M, N, K, ta, tb, torch, rng):
    """The calls a GEMM row times, on random operands of op(A) (M,K), op(B) (K,N): pynn's
    prepared call, numpy's matmul and PyTorch's (None without it), all writing the same output array."""
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)
    c = np.empty((M, N), np.float32)
    # pynn: the kernel through ops.GemmCall, arrays checked once as the fused network step does
    call = ops.GemmCall(a, b, c, trans_a=ta, trans_b=tb)
    an, bn = (a.T if ta else a), (b.T if tb else b)
    fns = [call, lambda: np.matmul(an, bn, out=c)]
    if torch is not None:
        at, bt, ct = torch.from_numpy(an), torch.from_numpy(bn), torch.from_numpy(c)
        fns.append(lambda: torch.matmul(at, bt, out=ct))
    else:
        fns.append(None)
    return fns


def bench_gemm(args, torch, out):
    rng = np.random.default_rng(0)
    budget = 0.08 if args.quick else 0.25
    modes = [(f"{args.threads} thread(s)", args.threads)]
    if args.threads > 1 and not args.quick:
        modes.append(("one thread", 1))
    for title, nt in modes:
        ops.set_num_threads(nt)
        single = nt == 1
        blas_ok = _openblas_threads(nt)
        if torch is not None:
            torch.set_num_threads(nt)
        out(f"\nGEMM, {title} (GFLOP/s; ratio = pynn / the faster of numpy and PyTorch)"
            + ("" if blas_ok or not single else "  [numpy's thread count could not be set]"))
        out(f"{'product':38s} {'pynn':>8s} {'numpy':>8s} {'torch':>8s} {'ratio':>7s}")
        for name, M, N, K, ta, tb in gemm_cases(args.quick):
            fns = gemm_fns(M, N, K, ta, tb, torch, rng)
            t0 = time.perf_counter()
            fns[0]()
            inner = _inner(time.perf_counter() - t0)
            times = interleaved(fns, budget, inner, rounds=2 if args.quick else 3)
            flops = 2.0 * M * N * K
            gf = [flops / t / 1e9 if t else None for t in times]
            out(f"{name:38s} {_fmt(gf[0])} {_fmt(gf[1])} {_fmt(gf[2])} {_ratio(times[0], times[1:]):>7s}")
        bench_one_row(out, budget, rounds=2 if args.quick else 3)
    ops.set_num_threads(args.threads)
    _openblas_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)


MATMUL_ONE_ROW = ((784, 128), (128, 10), (784, 800), (800, 10))   # (K, N) of a layer's W


def bench_one_row(out, budget, rounds):
    """One row times each weight matrix of 784-128-10 and 784-800-10, as a script calls it:
    ``ops.matmul`` with its checks and a new output, against numpy's ``@``."""
    rng = np.random.default_rng(0)
    out(f"{'one row from Python (us a call)':38s} {'matmul':>8s} {'numpy @':>8s} {'':>8s} "
        f"{'ratio':>7s}")
    for K, N in MATMUL_ONE_ROW:
        a = rng.standard_normal((1, K)).astype(np.float32)
        b = rng.standard_normal((K, N)).astype(np.float32)
        fns = [lambda: ops.matmul(a, b), lambda: a @ b]
        t0 = time.perf_counter()
        fns[0]()
        times = interleaved(fns, budget, _inner(time.perf_counter() - t0), rounds)
        out(f"{f'a 1x{K} @ W {K}x{N}':38s} {_fmt(times[0] * 1e6)} {_fmt(times[1] * 1e6)} "
            f"{'':8s} {_ratio(times[0], times[1:]):>7s}")


# ---- training ----

def mnist_arrays(args):
    """(X_train float32 (60000,784), y_train, X_test, y_test), or None if MNIST is not at hand."""
    from . import datasets
    try:
        Xtr, ytr = datasets.mnist("train", data_dir=args.data_dir)
        Xte, yte = datasets.mnist("test", data_dir=args.data_dir)
    except Exception as e:  # no data and no network: the section says so and goes on
        return None, str(e)
    scale = lambda X: ops.scale_u8(np.ascontiguousarray(X.reshape(len(X), 784)))
    return (scale(Xtr), ytr.astype(np.int64), scale(Xte), yte.astype(np.int64)), None


class TorchMLP:
    """The same network in PyTorch: Linear-ReLU-Linear, cross-entropy, SGD with momentum."""

    def __init__(self, torch, sizes, lr, momentum, seed=0):
        torch.manual_seed(seed)
        self.torch = torch
        self.model = torch.nn.Sequential(torch.nn.Linear(sizes[0], sizes[1]), torch.nn.ReLU(),
                                         torch.nn.Linear(sizes[1], sizes[2]))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum)
        self.loss = torch.nn.CrossEntropyLoss()

    def epoch(self, X, y, batch, order=None):
        """One pass over the rows of X in `order` (a LongTensor of row numbers; default: a
        fresh permutation), batch by batch."""
        torch = self.torch
        perm = torch.randperm(len(X)) if order is None else order
        for k in range(0, len(perm), batch):
            idx = perm[k:k + batch]
            self.opt.zero_grad()
            self.loss(self.model(X[idx]), y[idx]).backward()
            self.opt.step()

    def accuracy(self, X, y):
        with self.torch.no_grad():
            return float((self.model(X).argmax(1) == y).float().mean())


def bench_train(args, torch, out):
    data, why = mnist_arrays(args)
    if data is None:
        out(f"\nTraining: skipped, MNIST is not available ({why})")
        return
    Xtr, ytr, Xte, yte = data
    lr, momentum = 0.05, 0.9
    if torch is not None:
        torch.set_flush_denormal(True)     # PyTorch's faster mode on x86
        tX, ty = torch.from_numpy(Xtr), torch.from_numpy(ytr)
        tXe, tye = torch.from_numpy(Xte), torch.from_numpy(yte)

    epochs = 1 if args.quick else args.epochs
    out(f"\nTraining 784-800-10 at batch 64, {epochs} epoch(s) of MNIST's 60,000 "
        f"(ReLU, softmax cross-entropy, SGD lr={lr} momentum={momentum}; PyTorch with "
        f"flush-denormal on); samples/s of the training loop, test accuracy after it")
    net = Network([784, 800, 10], seed=0)
    opt = SGD(lr=lr, momentum=momentum)
    tm = TorchMLP(torch, [784, 800, 10], lr, momentum) if torch is not None else None
    rates = [[], []]
    # each epoch in parts, the libraries taking turns part by part, so that a busy spell of the
    # shared machine (seconds long) falls on both alike; both take the same batches, gathered
    # from the whole training set
    n_batches = -(-len(Xtr) // 64)
    parts = 3 if args.quick else 6
    bounds = [(n_batches * k // parts * 64, min(len(Xtr), n_batches * (k + 1) // parts * 64))
              for k in range(parts)]
    for _ in range(epochs):
        order = net.rng.permutation(len(Xtr))
        for a, b in bounds:
            time.sleep(PAUSE)
            t0 = time.perf_counter()
            net.train_epoch(Xtr, ytr, 64, opt, order=order[a:b])
            rates[0].append((b - a) / (time.perf_counter() - t0))
            if tm is not None:
                idx = torch.from_numpy(order[a:b])
                time.sleep(PAUSE)
                t0 = time.perf_counter()
                tm.epoch(tX, ty, 64, order=idx)
                rates[1].append((b - a) / (time.perf_counter() - t0))
    acc = [net.accuracy(Xte, yte), tm.accuracy(tXe, tye) if tm else None]
    rate = [statistics.median(r) if r else None for r in rates]
    out(f"{'':20s} {'samples/s':>10s} {'test acc':>9s}")
    out(f"{'pynn':20s} {rate[0]:10.0f} {acc[0]:9.4f}")
    if tm is not None:
        out(f"{'PyTorch':20s} {rate[1]:10.0f} {acc[1]:9.4f}")
        out(f"{'ratio':20s} {rate[0] / rate[1]:9.2f}x")

    out("\nTraining 784-128-10, samples/s by batch size (same loss and optimiser; PyTorch at "
        "the faster of its thread counts, shown as thr)")
    out(f"{'batch':>6s} {'samples':>8s} {'pynn':>10s} {'torch':>10s} {'thr':>4s} {'ratio':>7s}")
    for batch, n in TRAIN_SMALL:
        n = min(n, len(Xtr)) // (4 if args.quick else 1)
        net = Network([784, 128, 10], seed=0)
        opt = SGD(lr=lr if batch > 1 else 0.01, momentum=momentum)
        fns = [lambda: net.train_epoch(Xtr[:n], ytr[:n], batch, opt,
                                       order=net.rng.permutation(n))]
        if torch is not None:
            tm = TorchMLP(torch, [784, 128, 10], lr, momentum)
            fns += torch_thread_counts(torch, lambda: tm.epoch(tX[:n], ty[:n], batch))
        times = interleaved(fns, 0.0, rounds=1 if args.quick else 3)
        best, thr = fastest_torch(times[1:], torch)
        rate = [n / t if t else None for t in (times[0], best)]
        out(f"{batch:6d} {n:8d} {_fmt(rate[0], 10, 0)} {_fmt(rate[1], 10, 0)} {thr:>4s} "
            f"{_ratio(times[0], [best]):>7s}")


def torch_thread_counts(torch, fn):
    """fn on PyTorch's thread count, and (when that is more than one) on one thread: for
    small problems PyTorch's own threads can cost more than they give, and the comparison is
    with its faster setting."""
    n = torch.get_num_threads()
    if n <= 1:
        return [fn]

    def on_one():
        torch.set_num_threads(1)
        try:
            return fn()
        finally:
            torch.set_num_threads(n)
    return [fn, on_one]


def fastest_torch(times, torch):
    """(the smallest of the PyTorch times, its thread count as text) for torch_thread_counts."""
    if torch is None or not times or times[0] is None:
        return None, "-"
    counts = [torch.get_num_threads(), 1][:len(times)]
    i = min(range(len(times)), key=lambda k: times[k])
    return times[i], str(counts[i])


# ---- inference ----

def _numpy_forward(W1, b1, W2, b2):
    def forward(x):
        h = np.maximum(x @ W1.T + b1, 0.0)
        z = h @ W2.T + b2
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return forward


def sample_digits(args):
    """(eight digits as (1,784) float32 rows, where they come from): the first eight MNIST test
    digits scaled as the loaders scale them, or, when MNIST is not at hand, eight digits drawn
    from strokes the way the pad draws them"""
    data, _ = mnist_arrays(args)
    if data is not None:
        X = data[2][:8]
        return [np.ascontiguousarray(X[i:i + 1]) for i in range(8)], "the first eight MNIST test digits"
    from .preprocess import strokes_to_mnist
    t = np.linspace(0.0, 2.0 * np.pi, 60)
    line = lambda *p: np.array(p, dtype=np.float64)
    strokes = [[np.c_[100 + 60 * np.cos(t), 100 + 90 * np.sin(t)]], [line([100, 10], [100, 190])],
               [line([40, 30], [100, 10], [160, 40], [40, 190], [170, 190])],
               [line([40, 20], [160, 20], [100, 100], [160, 150], [40, 190])],
               [line([120, 10], [40, 130], [170, 130]), line([130, 60], [130, 190])],
               [line([160, 10], [50, 10], [40, 90], [150, 110], [140, 190], [40, 180])],
               [np.c_[100 + 60 * np.cos(t), 140 + 50 * np.sin(t)], line([40, 140], [120, 10])],
               [line([40, 20], [160, 20], [80, 190])]]
    return ([strokes_to_mnist(s).reshape(1, 784) for s in strokes],
            "eight digits drawn from strokes as the pad draws them (MNIST is not at hand)")


def _turns(fn, items):
    """fn called on the items in turn, one a call"""
    it = itertools.cycle(items)
    return lambda: fn(next(it))


def bench_infer(args, torch, out):
    from . import load_default
    digits, source = sample_digits(args)
    dense = np.random.default_rng(0).random((1, 784), dtype=np.float32)
    out(f"\nOne digit (1,784) to probabilities, from Python: {source} in turn (microseconds a "
        "call; pynn: predict_proba, one: predict_one, C: its C call alone, C dense: the C call "
        "for an input with no blank pixels, which the first layer cannot skip; torch at the "
        "faster of its thread counts, shown as thr; ratio = the faster of numpy and PyTorch / "
        "pynn, vs torch = PyTorch / pynn)")
    out(f"{'network':24s} {'pynn':>8s} {'one':>8s} {'C':>6s} {'C dense':>8s} {'numpy':>8s} "
        f"{'torch':>8s} {'thr':>4s} {'ratio':>7s} {'vs torch':>8s}")
    nets = [("784-128-10", Network([784, 128, 10], seed=0)),
            ("784-800-10", Network([784, 800, 10], seed=0))]
    try:
        shipped = load_default()
        if shipped.activation is not None and len(shipped.weights) == 2:   # dense, one hidden layer
            nets.append((f"shipped {'-'.join(map(str, shipped.sizes))}", shipped))
        else:       # the conv section's network is the shipped one's architecture
            out("(the shipped model is the convolutional network: one digit through it is in the "
                "conv section)")
    except Exception as e:
        out(f"(the shipped model could not be loaded: {e})")
    budget = 0.2 if args.quick else 1.0
    for name, net in nets:
        if len(net.weights) != 2 or net.activation != "relu" or net.output != "softmax":
            out(f"{name:24s} (not a one-hidden-layer ReLU/softmax network: skipped)")
            continue
        W1, W2 = net.weights
        b1, b2 = net.biases
        one = net.one_sample()
        calls = [one.prepared(x) for x in digits]
        fns = [_turns(net.predict_proba, digits), _turns(net.predict_one, digits),
               _turns(lambda call: call(), calls), one.prepared(dense),
               _turns(_numpy_forward(W1, b1, W2, b2), digits)]
        if torch is not None:
            model = torch.nn.Sequential(torch.nn.Linear(784, W1.shape[0]), torch.nn.ReLU(),
                                        torch.nn.Linear(W1.shape[0], W2.shape[0]))
            with torch.no_grad():
                for layer, W, b in ((model[0], W1, b1), (model[2], W2, b2)):
                    layer.weight.copy_(torch.from_numpy(W))
                    layer.bias.copy_(torch.from_numpy(b))

            def torch_forward(xt, model=model):
                with torch.no_grad():
                    return torch.softmax(model(xt), dim=1)
            fns += torch_thread_counts(torch, _turns(torch_forward,
                                                      [torch.from_numpy(x) for x in digits]))
        times = interleaved(fns, budget, inner=20, rounds=2 if args.quick else 3)
        best, thr = fastest_torch(times[5:], torch)
        us = [t * 1e6 if t else None for t in times[:5] + [best]]
        out(f"{name:24s} {_fmt(us[0])} {_fmt(us[1])} {_fmt(us[2], 6)} {_fmt(us[3])} "
            f"{_fmt(us[4])} {_fmt(us[5])} {thr:>4s} {_ratio(times[0], [times[4], best]):>7s} "
            f"{_ratio(times[0], [best]):>8s}")


# ---- convolutional network ----

CONV_ARCH = "1x28x28-c32k5-pool2-c64k5-pool2-256-10"


def training_flops(net):
    """Floating-point operations of one sample's training step: 2 per multiply-add of the
    forward, and as many again for each gradient the backward makes (weights; input, except
    at the first layer)."""
    from .layers import Conv2d, Linear
    flops = 0
    shapes = Network.trace(net.layers, net.input_shape)
    for i, layer in enumerate(net.layers):
        if isinstance(layer, (Conv2d, Linear)):
            macs = int(np.prod(shapes[i + 1])) * int(np.prod(layer.W.shape[1:]))
            flops += 2 * macs * (2 if i == 0 else 3)
    return flops


class TorchConv:
    """The same convolutional network in PyTorch, started from pynn's weights."""

    def __init__(self, torch, net, lr, momentum):
        nn = torch.nn
        self.torch = torch
        self.model = nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(32, 64, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                   nn.Linear(1024, 256), nn.ReLU(), nn.Linear(256, 10))
        weighted = [m for m in self.model if hasattr(m, "weight")]
        with torch.no_grad():
            for m, layer in zip(weighted, (x for x in net.layers if x.params)):
                m.weight.copy_(torch.from_numpy(layer.W))
                m.bias.copy_(torch.from_numpy(layer.b))
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum)
        self.loss = nn.CrossEntropyLoss()

    def train(self, X, y, batch, order):
        for k in range(0, len(order), batch):
            idx = order[k:k + batch]
            self.opt.zero_grad()
            self.loss(self.model(X[idx]), y[idx]).backward()
            self.opt.step()

    def predict(self, x):
        with self.torch.no_grad():
            return self.torch.softmax(self.model(x), dim=1)


def bench_conv(args, torch, out):
    """Training the convolutional network of issue 13 at batch 64, and one digit through it."""
    data, why = mnist_arrays(args)
    if data is None:
        out(f"\nConvolutional network: skipped, MNIST is not available ({why})")
        return
    Xtr, ytr, Xte, _ = data
    lr, momentum, batch = 0.05, 0.9, 64
    net = Network(CONV_ARCH, seed=0)
    opt = SGD(lr=lr, momentum=momentum)
    images = Xtr.reshape(-1, 1, 28, 28)
    flops = training_flops(net)
    # the practical peak: pynn's own product of two 1024 squares, on the same threads
    a = np.random.default_rng(0).random((1024, 1024), dtype=np.float32)
    square = ops.GemmCall(a, a, np.empty_like(a))
    peak = 2 * 1024 ** 3 / interleaved([square], 0.5, rounds=3)[0] / 1e9
    n = 64 * (20 if args.quick else 60)
    parts = 2 if args.quick else 4
    out(f"\nConvolutional network {CONV_ARCH} (ReLU, softmax cross-entropy, SGD lr={lr} "
        f"momentum={momentum}), training at batch {batch}: samples/s over {parts} turns of "
        f"{n} MNIST digits each; {flops / 1e6:.1f} MFLOP a sample; GFLOP/s against pynn's "
        f"1024x1024 product on the same threads ({peak:.0f} GFLOP/s)")
    tm = TorchConv(torch, net, lr, momentum) if torch is not None else None
    rng = np.random.default_rng(1)
    rates = [[], []]
    for _ in range(parts):
        order = rng.permutation(len(Xtr))[:n]
        X, y = images[order], ytr[order]      # gathered outside both timings
        time.sleep(PAUSE)
        t0 = time.perf_counter()
        net.fit(X, y, epochs=1, batch_size=batch, optimizer=opt, shuffle=False, score=False)
        rates[0].append(n / (time.perf_counter() - t0))
        if tm is not None:
            time.sleep(PAUSE)
            tX, ty = torch.from_numpy(X), torch.from_numpy(y)
            t0 = time.perf_counter()
            tm.train(tX, ty, batch, torch.arange(n))
            rates[1].append(n / (time.perf_counter() - t0))
    rate = [statistics.median(r) if r else None for r in rates]
    out(f"{'':20s} {'samples/s':>10s} {'GFLOP/s':>8s} {'of peak':>8s}")
    for name, r in zip(("pynn", "PyTorch"), rate):
        if r is not None:
            out(f"{name:20s} {r:10.0f} {r * flops / 1e9:8.1f} {r * flops / 1e9 / peak:7.0%}")
    if rate[1]:
        out(f"{'ratio':20s} {rate[0] / rate[1]:9.2f}x")

    out("\nOne digit through the convolutional network, from Python (microseconds a call; "
        "pynn: predict_one; torch at the faster of its thread counts, shown as thr)")
    digits = [np.ascontiguousarray(Xte[i].reshape(1, 1, 28, 28)) for i in range(8)]
    fns = [_turns(net.predict_one, digits)]
    if torch is not None:
        fns += torch_thread_counts(torch, _turns(tm.predict, [torch.from_numpy(x) for x in digits]))
    times = interleaved(fns, 0.2 if args.quick else 1.0, inner=5, rounds=2 if args.quick else 3)
    best, thr = fastest_torch(times[1:], torch)
    out(f"{'pynn':>10s} {'torch':>10s} {'thr':>4s} {'ratio':>7s}")
    out(f"{_fmt(times[0] * 1e6, 10)} {_fmt(best * 1e6 if best else None, 10)} {thr:>4s} "
        f"{_ratio(times[0], [best]):>7s}")


# ---- command line ----

SECTIONS = {"gemm": bench_gemm, "train": bench_train, "infer": bench_infer, "conv": bench_conv}


def add_arguments(p):
    p.add_argument("--quick", action="store_true",
                   help="a short run (about a fifth of the time): fewer repeats and samples")
    p.add_argument("--sections", default="gemm,train,infer,conv",
                   help="comma-separated sections to run: gemm, train, infer, conv (default all)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for pynn and PyTorch (default: pynn's, all cores)")
    p.add_argument("--epochs", type=int, default=2,
                   help="MNIST epochs of the 784-800-10 training comparison (default 2)")
    p.add_argument("--data-dir", default=None, help="where MNIST's files are (default: the cache)")


def run(args, out=print):
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown or not sections:
        raise ValueError(f"--sections takes {', '.join(SECTIONS)}; got {args.sections!r}")
    if args.threads is None:
        args.threads = ops.get_num_threads()
    if args.threads < 1 or args.epochs < 1:
        raise ValueError("--threads and --epochs must be at least 1")
    torch = optional_torch()
    ops.set_num_threads(args.threads)
    _openblas_threads(args.threads)
    if torch is not None:
        torch.set_num_threads(args.threads)
    out("command: " + _command_line())
    out(machine(torch, args.threads))
    start = time.perf_counter()
    for s in sections:
        SECTIONS[s](args, torch, out)
    out(f"\n(took {time.perf_counter() - start:.0f} s)")
    return 0


def _command_line():
    """The command as the user typed it: `pynn bench ...`, also from the child process that
    `pynn bench` starts (python -m pynn.bench ..., with the options it was given)."""
    given = sys.argv[1:]
    return "pynn " + " ".join(given if given[:1] == ["bench"] else ["bench"] + given)


def _cmd(args):
    try:
        return run(args)
    except ValueError as e:
        print(f"pynn bench: error: {e}", file=sys.stderr)
        return 2


# OpenBLAS's idle threads keep spinning (yielding) for about 2^28 cycles after a call: long
# enough to outlast the pause before the next library's block and take its second core (pynn's
# two-thread products ran at half speed after numpy's). Idle for 2^24 cycles, a few ms, they
# still stay awake from one call of a block to the next.
BLAS_IDLE = ("OPENBLAS_THREAD_TIMEOUT", "24")


def cli(args):
    """`pynn bench`: run in a fresh process whose OpenBLAS threads go to sleep between the
    libraries' turns (the variable must be set before numpy loads), unless the caller set it."""
    if BLAS_IDLE[0] in os.environ:
        return _cmd(args)
    if sys.argv[1:2] == ["bench"]:      # as typed, so that the child prints the same command
        options = sys.argv[2:]
    else:
        options = ["--sections", args.sections, "--epochs", str(args.epochs)]
        options += ["--quick"] if args.quick else []
        options += ["--threads", str(args.threads)] if args.threads is not None else []
        options += ["--data-dir", args.data_dir] if args.data_dir is not None else []
    argv = [sys.executable, "-m", "pynn.bench"] + options
    return subprocess.call(argv, env=dict(os.environ, **{BLAS_IDLE[0]: BLAS_IDLE[1]}))


def register(subparsers):
    p = subparsers.add_parser("bench", help="measure pynn's speed next to numpy and PyTorch",
                              description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=cli)
    return p


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pynn bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return _cmd(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
