"""Fixtures shared by the tests.

``mnist``: the real MNIST, loaded once per test session through pynn.datasets (so the first
session on a machine fetches it into the cache, ~/.cache/pynn). It is a named pair:

    (X_train, y_train), (X_test, y_test) = mnist
    X_train, y_train = mnist.train       # also mnist["train"]; uint8 (60000, 28, 28), (60000,)
    X_test, y_test = mnist.test          # also mnist["test"];  uint8 (10000, 28, 28), (10000,)

The arrays are read-only: a test that needs to change one copies it.

``kernels``: runs the test once on each SIMD kernel set this CPU runs (pynn.ops.select_kernels),
``threads``: once on one thread and once on two.
``every_job_shared``: every job the kernels can split is split among the threads, however
small (pynn.ops.share_every_job), for the length of the test.
``mnist_available``: skips the test where MNIST cannot be had.

Helpers that several test files use live here too, imported as ``from conftest import ...``:
``study(argv)`` runs ``pynn study``; ``float64_forward`` is a layer list's float64 reference;
``separable_problem`` and ``write_digits`` make small data sets; ``COMBOS``, ``OPTIMIZERS``,
``reference_fit`` and ``assert_same_weights`` hold the fused training step to the layer path.
"""
import argparse
import itertools
from typing import NamedTuple

import numpy as np
import pytest

from pynn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sigmoid, Tanh
from pynn.network import HIDDEN, LOSSES, OUTPUTS
from pynn.optim import SGD, Adam


class MNIST(NamedTuple):
    train: tuple
    test: tuple

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


@pytest.fixture(scope="session")
def mnist():
    from pynn import datasets
    splits = []
    for split in ("train", "test"):
        images, labels = datasets.mnist(split)
        for a in (images, labels):
            a.setflags(write=False)
        splits.append((images, labels))
    return MNIST(*splits)


def _kernel_sets():
    from pynn._pynn import lib
    sets = [k for k in ("avx512f", "avx2", "generic") if lib.pynn_kernels_select(k.encode()) == 0]
    lib.pynn_kernels_select(b"auto")
    return sets


@pytest.fixture(params=_kernel_sets())
def kernels(request):
    from pynn import ops
    ops.select_kernels(request.param)
    yield request.param
    ops.select_kernels("auto")


@pytest.fixture(params=[1, 2])
def threads(request):
    from pynn import ops
    before = ops.get_num_threads()
    ops.set_num_threads(request.param)
    yield request.param
    ops.set_num_threads(before)


@pytest.fixture
def every_job_shared():
    from pynn import ops
    before = ops.get_num_threads()
    ops.share_every_job(True)
    yield
    ops.share_every_job(False)
    ops.set_num_threads(before)


@pytest.fixture(scope="session")
def mnist_available():
    from pynn import datasets
    try:
        datasets.mnist("test")
    except Exception as e:      # no cache and no way to fetch it here
        pytest.skip(f"MNIST is not available: {e}")


# ---- helpers ----

def study(argv):
    """``pynn study ARGV...`` in this process; returns its exit status."""
    from pynn.study import register
    parser = argparse.ArgumentParser(prog="pynn")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["study", *argv])
    return args.func(args)


def float64_forward(net, X):
    """The network in float64 with plain loops over the kernel (the reference)."""
    a = X.astype(np.float64)
    for layer in net.layers:
        if isinstance(layer, Conv2d):
            W, b = layer.W.astype(np.float64), layer.b.astype(np.float64)
            p, s, k = layer.padding, layer.stride, layer.kernel_size
            a = np.pad(a, ((0, 0), (0, 0), (p, p), (p, p)))
            B, C, H, Wd = a.shape
            OH, OW = (H - k) // s + 1, (Wd - k) // s + 1
            out = np.zeros((B, W.shape[0], OH, OW))
            for i in range(k):
                for j in range(k):
                    patch = a[:, :, i:i + s * OH:s, j:j + s * OW:s]      # (B,C,OH,OW)
                    out += np.einsum("bchw,oc->bohw", patch, W[:, :, i, j])
            a = out + b[None, :, None, None]
        elif isinstance(layer, MaxPool2d):
            k = layer.kernel_size
            B, C, H, Wd = a.shape
            a = a[:, :, :H // k * k, :Wd // k * k].reshape(B, C, H // k, k, Wd // k, k).max((3, 5))
        elif isinstance(layer, Flatten):
            a = a.reshape(len(a), -1)
        elif isinstance(layer, Linear):
            a = a @ layer.W.astype(np.float64).T + layer.b
        elif isinstance(layer, Tanh):
            a = np.tanh(a)
        elif isinstance(layer, ReLU):
            a = np.maximum(a, 0)
        elif isinstance(layer, Sigmoid):
            a = 1 / (1 + np.exp(-a))
    return a


def separable_problem(n, seed):
    """Four classes from two half-plane tests on 20 Gaussian features."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 20)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + 2 * (X[:, 2] > 0)
    return X, y


def write_digits(directory, n_train=1200, n_test=100):
    """A small IDX data set in MNIST's layout: noisy bars whose position is the class."""
    from pynn.idx import encode
    rng = np.random.default_rng(3)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, size=n).astype(np.uint8)
        images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(labels):
            images[i, 2 + 2 * c:4 + 2 * c, 4:24] = 255
        (directory / f"{split}-images-idx3-ubyte").write_bytes(encode(images))
        (directory / f"{split}-labels-idx1-ubyte").write_bytes(encode(labels))


# `pynn train` on write_digits' data: long enough to be interrupted and resumed
TRAIN_ARGS = ["--dataset", "idx", "--arch", "784-24-10", "--epochs", "40", "--batch-size", "20",
              "--optimizer", "adam", "--schedule", "cosine", "--seed", "5"]


# every hidden activation, output and loss the fused step covers, and its optimisers
COMBOS = [(h, o, l) for h, o, l in itertools.product(HIDDEN, OUTPUTS, LOSSES)
          if not (l == "cross_entropy" and o == "linear")]
OPTIMIZERS = {
    "sgd": lambda: SGD(lr=0.05, weight_decay=0.01),
    "momentum": lambda: SGD(lr=0.03, momentum=0.9, weight_decay=0.001),
    "adam": lambda: Adam(lr=0.005, weight_decay=0.001),
}


def reference_fit(net, X, y, epochs, batch_size, optimizer):
    """Mini-batch training the layer-by-layer way, batches drawn as fit draws them."""
    T = net.targets(y, len(X))
    for _ in range(epochs):
        order = net.rng.permutation(len(X))
        for k in range(0, len(X), batch_size):
            idx = order[k:k + batch_size]
            grads = net.gradients(X[idx], T[idx])
            params = [p for pair in zip(net.weights, net.biases) for p in pair]
            optimizer.step(params, [g for pair in grads for g in pair])


def assert_same_weights(a, b, rtol=1e-5, atol=1e-6):
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_allclose(wa, wb, rtol=rtol, atol=atol)
