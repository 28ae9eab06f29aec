"""Small batches through one hidden layer (csrc/fast/net_small.c, the small path): each thread
owns a run of hidden units for the whole call, and the output layer is summed from fixed blocks
of them.

It must land on the weights of the readable layer-by-layer path, and give the same bits on one
thread as on two, for widths whose blocks split unevenly among the threads.
"""
import numpy as np
import pytest

import pynn
from pynn import ops
from pynn.optim import SGD, Adam

from conftest import COMBOS, OPTIMIZERS, assert_same_weights, reference_fit

# 300-200-10: four blocks of hidden units (64, 64, 64, 8), enough arithmetic a step for two threads
SIZES = [300, 200, 10]


def data(n=96, n_in=300, n_out=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, n_in), dtype=np.float32)
    y = rng.integers(0, n_out, n)
    return X, y


def on_threads(nt, fn):
    before = ops.get_num_threads()
    ops.set_num_threads(nt)
    try:
        return fn()
    finally:
        ops.set_num_threads(before)


@pytest.mark.parametrize("batch", [1, 5, 16])
@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
def test_small_batches_land_on_the_python_path_on_one_thread_and_two(batch, opt):
    X, y = data(n=40)
    ref = pynn.Network(SIZES, seed=3)
    o_ref = OPTIMIZERS[opt]()
    reference_fit(ref, X, y, 1, batch, o_ref)
    runs = []
    for nt in (1, 2):
        net = pynn.Network(SIZES, seed=3)
        o = OPTIMIZERS[opt]()
        history = on_threads(nt, lambda: net.fit(X, y, epochs=1, batch_size=batch, optimizer=o))
        assert o.steps == o_ref.steps == -(-40 // batch)
        assert np.isfinite(history["loss"]).all()
        assert_same_weights(net, ref, rtol=1e-4, atol=1e-5)
        for s, s_ref in zip(o.state, o_ref.state):
            for a, b in zip(s, s_ref):
                np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
        runs.append(net)
    for a, b in zip(runs[0].weights + runs[0].biases, runs[1].weights + runs[1].biases):
        np.testing.assert_array_equal(a, b)        # the thread count changes no bit


@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_every_activation_output_and_loss(hidden, output, loss):
    X, y = data(n=24)
    ref = pynn.Network(SIZES, hidden, output, loss, seed=1)
    reference_fit(ref, X, y, 1, 4, SGD(lr=0.005, momentum=0.5))
    for nt in (1, 2):
        net = pynn.Network(SIZES, hidden, output, loss, seed=1)
        on_threads(nt, lambda: net.fit(X, y, epochs=1, batch_size=4,
                                       optimizer=SGD(lr=0.005, momentum=0.5)))
        assert_same_weights(net, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sizes", [[7, 1, 3], [300, 64, 10], [300, 65, 10], [17, 130, 64]])
def test_widths_at_the_edges_of_blocks_and_kernels(sizes):
    # one hidden unit; exactly one block; one unit past it; the widest output the path takes
    X, y = data(n=30, n_in=sizes[0], n_out=sizes[2], seed=2)
    ref = pynn.Network(sizes, seed=0)
    reference_fit(ref, X, y, 1, 3, Adam(lr=0.01))
    for nt in (1, 2):
        net = pynn.Network(sizes, seed=0)
        on_threads(nt, lambda: net.fit(X, y, epochs=1, batch_size=3, optimizer=Adam(lr=0.01)))
        assert_same_weights(net, ref, rtol=1e-4, atol=1e-5)


def test_one_batch_in_place_and_unshuffled_rows():
    # train_batch: the rows are read where they lie (no gathering), one row or several
    X, y = data(n=16)
    for B in (1, 7, 16):
        a, b = pynn.Network(SIZES, seed=4), pynn.Network(SIZES, seed=4)
        o_a, o_b = SGD(lr=0.1, momentum=0.9), SGD(lr=0.1, momentum=0.9)
        for _ in range(3):
            loss = on_threads(2, lambda: a.train_batch(X[:B], a.targets(y[:B], B), o_a))
            grads = b.gradients(X[:B], y[:B])
            assert loss == pytest.approx(b.last_loss, rel=1e-5)
            o_b.step([p for pair in zip(b.weights, b.biases) for p in pair],
                     [g for pair in grads for g in pair])
        assert_same_weights(a, b, rtol=1e-4, atol=1e-5)


def test_a_nan_row_stops_the_run_without_a_step_on_two_threads():
    X, y = data(n=40)
    X[13, 100] = np.nan                             # batch 13 of batches of one
    net = pynn.Network(SIZES, seed=0)
    opt = Adam(lr=0.01)
    with pytest.raises(FloatingPointError, match=r"batch 14"):
        on_threads(2, lambda: net.fit(X, y, epochs=1, batch_size=1, optimizer=opt,
                                      shuffle=False))
    ref = pynn.Network(SIZES, seed=0)
    o_ref = Adam(lr=0.01)
    reference_fit_rows(ref, X[:13], y[:13], o_ref)
    assert opt.steps == o_ref.steps == 13
    assert_same_weights(net, ref, rtol=1e-4, atol=1e-5)


def reference_fit_rows(net, X, y, optimizer):
    for i in range(len(X)):
        grads = net.gradients(X[i:i + 1], y[i:i + 1])
        optimizer.step([p for pair in zip(net.weights, net.biases) for p in pair],
                       [g for pair in grads for g in pair])


def test_jobs_of_every_kind_in_quick_succession_give_the_one_thread_bits():
    # one-digit calls (parts any thread may claim), small-batch steps (threads that meet at
    # barriers) and products back to back: a worker that lags behind a parts job must never
    # run the next job twice or with the wrong fields
    X, y = data(n=64)
    rng = np.random.default_rng(5)
    A, B = rng.random((64, 300), dtype=np.float32), rng.random((300, 200), dtype=np.float32)
    C = np.empty((64, 200), np.float32)

    def run():
        net = pynn.Network(SIZES, seed=6)
        opt = SGD(lr=0.05, momentum=0.9)
        seen = []
        for i in range(60):
            seen.append(net.predict_one(X[i]))
            rows = slice(i % 59, i % 59 + 5)
            seen.append(np.float32(net.train_batch(X[rows], net.targets(y[rows], 5), opt)))
            seen.append(ops.gemm(A, B, C).copy())
        return seen, net

    (two, net2), (one, net1) = on_threads(2, run), on_threads(1, run)
    for a, b in zip(two, one):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(net2.weights + net2.biases, net1.weights + net1.biases):
        np.testing.assert_array_equal(a, b)
