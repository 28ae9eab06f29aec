"""The fused C network step (csrc/fast/net*.c) against the readable Python path.

The reference is what a student would write with the layer-by-layer methods: for each batch,
``net.gradients`` (forward then backward) and ``optimizer.step``. ``fit``, ``train_epoch`` and
``train_batch`` run the whole step in C; they must land on the same weights, for every hidden
activation, output, loss and optimiser, give the same answers run after run, and read the very
arrays in ``net.weights`` / ``net.biases``.
"""
import copy
import pickle

import numpy as np
import pytest

import pynn
from pynn import ops
from pynn.optim import SGD, Adam
from conftest import COMBOS, OPTIMIZERS, assert_same_weights, reference_fit




def data(n=150, n_in=12, n_out=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(np.float32)
    y = (np.abs(X[:, :n_out]).argmax(axis=1)).astype(np.int64)
    return X, y








@pytest.mark.parametrize("opt", sorted(OPTIMIZERS))
@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_fused_fit_lands_on_the_weights_of_the_python_path(hidden, output, loss, opt):
    X, y = data()
    sizes = [12, 9, 7, 5]
    fused = pynn.Network(sizes, hidden, output, loss, seed=4)
    ref = pynn.Network(sizes, hidden, output, loss, seed=4)
    o_fused, o_ref = OPTIMIZERS[opt](), OPTIMIZERS[opt]()
    history = fused.fit(X, y, epochs=2, batch_size=16, optimizer=o_fused)
    reference_fit(ref, X, y, 2, 16, o_ref)
    assert_same_weights(fused, ref)
    assert o_fused.steps == o_ref.steps == 2 * 10
    for s_f, s_r in zip(o_fused.state, o_ref.state):
        for a, b in zip(s_f, s_r):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert len(history["loss"]) == 2 and np.isfinite(history["loss"]).all()


@pytest.mark.parametrize("B", [1, 5, 64])
def test_train_batch_matches_gradients_then_step(B):
    X, y = data(n=64, n_in=30, n_out=10)
    fused, ref = pynn.Network([30, 40, 10], seed=1), pynn.Network([30, 40, 10], seed=1)
    o_f, o_r = SGD(lr=0.1, momentum=0.5), SGD(lr=0.1, momentum=0.5)
    for k in range(3):
        Xb, yb = X[:B], y[(k * 7) % 5:(k * 7) % 5 + B] if B <= 59 else y[:B]
        loss = fused.train_batch(Xb, fused.targets(yb, B), o_f)
        grads = ref.gradients(Xb, yb)
        ref_loss = ref.last_loss
        params = [p for pair in zip(ref.weights, ref.biases) for p in pair]
        o_r.step(params, [g for pair in grads for g in pair])
        assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert_same_weights(fused, ref)


@pytest.mark.parametrize("sizes", [[784, 300, 10], [200, 520, 10]])
def test_a_large_network_on_two_threads_matches_and_repeats(sizes):
    # big enough for the pool and the packed GEMM path, batches of 64: 784-300-10, whose
    # threads split dW's columns, and 200-520-10, whose dW has more rows than columns and
    # splits its rows
    rng = np.random.default_rng(3)
    X = rng.random((256, sizes[0]), dtype=np.float32)
    y = rng.integers(0, 10, 256)
    before = ops.get_num_threads()
    runs = []
    try:
        for nt in (2, 2, 1):
            ops.set_num_threads(nt)
            net = pynn.Network(sizes, seed=0)
            net.fit(X, y, epochs=1, batch_size=64, optimizer=SGD(lr=0.05, momentum=0.9))
            runs.append(net)
        ops.set_num_threads(2)
        ref = pynn.Network(sizes, seed=0)
        reference_fit(ref, X, y, 1, 64, SGD(lr=0.05, momentum=0.9))
    finally:
        ops.set_num_threads(before)
    for other in runs[1:]:            # same thread count, and even another one: same bits
        for a, b in zip(runs[0].weights + runs[0].biases, other.weights + other.biases):
            np.testing.assert_array_equal(a, b)
    assert_same_weights(runs[0], ref)


def test_callback_path_matches_and_is_called_every_batch():
    X, y = data()
    calls = []
    a, b = pynn.Network([12, 8, 5], seed=2), pynn.Network([12, 8, 5], seed=2)
    a.fit(X, y, epochs=2, batch_size=32, optimizer=SGD(lr=0.1),
          callback=lambda *args: calls.append(args))
    b.fit(X, y, epochs=2, batch_size=32, optimizer=SGD(lr=0.1))
    assert [c[:3] for c in calls] == [(e, k, 5) for e in range(2) for k in range(5)]
    assert_same_weights(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("chunk", [1, 50, 64, 10_000])
def test_progress_callback_runs_c_in_chunks_of_whole_batches_with_the_same_result(monkeypatch, chunk):
    from pynn import network
    monkeypatch.setattr(network, "CHUNK", chunk)
    X, y = data()
    calls, chunks = [], []
    a, b = pynn.Network([12, 8, 5], seed=2), pynn.Network([12, 8, 5], seed=2)
    b.fit(X, y, epochs=2, batch_size=16, optimizer=Adam(lr=0.01))
    real = ops.FusedNet.train          # the C call: count the samples each one trains on
    monkeypatch.setattr(ops.FusedNet, "train", lambda self, kind, hyper, state, steps, X, T,
                        order, *rest: (chunks.append(len(order)),
                                       real(self, kind, hyper, state, steps, X, T, order, *rest))[1])
    a.fit(X, y, epochs=2, batch_size=16, optimizer=Adam(lr=0.01),
          callback=lambda *args: calls.append(args))
    n_batches = -(-len(X) // 16)
    assert [c[:3] for c in calls] == [(e, k, n_batches) for e in range(2) for k in range(n_batches)]
    per_call = max(1, chunk // 16) * 16
    assert chunks == 2 * [min(per_call, len(X) - i) for i in range(0, len(X), per_call)]
    assert_same_weights(a, b, rtol=0, atol=0)


def test_train_epoch_is_fit_without_the_bookkeeping():
    X, y = data()
    a, b = pynn.Network([12, 8, 5], seed=2), pynn.Network([12, 8, 5], seed=2)
    h = a.fit(X, y, epochs=1, batch_size=10, optimizer=Adam(lr=0.01))
    loss = b.train_epoch(X, y, 10, Adam(lr=0.01), order=b.rng.permutation(len(X)))
    assert loss == pytest.approx(h["loss"][0], rel=1e-12)
    assert_same_weights(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="batch_size"):
        b.train_epoch(X, y, 0)


def test_the_fused_path_reads_the_arrays_the_user_changes():
    X, y = data()
    net = pynn.Network([12, 8, 5], seed=0)
    net.predict_proba(X[:3])
    net.weights[0][:] = 0.0                          # changed in place
    net.biases[1][:] = np.arange(5, dtype=np.float32)
    p = net.predict_proba(X[:3])
    np.testing.assert_allclose(p, np.tile(ops.softmax(net.biases[1].copy()), (3, 1)), rtol=1e-6)
    net.weights[1] = np.zeros((5, 8), np.float32)     # replaced by another array
    net.biases[1] = np.zeros(5, np.float32)
    np.testing.assert_allclose(net.predict_proba(X[:2]), 0.2, rtol=1e-6)
    net.biases[0][:] = 1.0                            # hidden units all on
    net.train_batch(X[:4], y[:4], SGD(lr=0.1))
    assert np.any(net.weights[1] != 0.0)              # the new array was trained
    net.weights[0] = np.zeros((8, 12), np.float64)
    with pytest.raises(TypeError, match=r"weights\[0\]"):
        net.predict_proba(X[:1])


@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_predict_proba_is_the_forward_pass(hidden, output, loss):
    X, _ = data(n=300)
    net = pynn.Network([12, 20, 5], hidden, output, loss, seed=1)
    want = net.forward(X, keep=False)
    np.testing.assert_allclose(net.predict_proba(X), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.predict_proba(X, batch_size=7), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(net.predict_proba(X[0]), want[:1], rtol=1e-5, atol=1e-5)
    assert net.predict_proba(X[:0]).shape == (0, 5)


def test_a_diverging_run_names_epoch_and_batch():
    X, y = data()
    X = X * 1e18
    for callback in (None, lambda *a: None):         # the one-call epoch and the batch loop
        net = pynn.Network([12, 8, 5], "linear", "linear", "quadratic", seed=0)
        with pytest.raises(FloatingPointError, match=r"in epoch 1, batch \d+"):
            net.fit(X, y, epochs=2, batch_size=16, optimizer=SGD(lr=1.0), callback=callback)
        for w in net.weights + net.biases:          # the last good batch's weights
            assert np.isfinite(w).all()


@pytest.mark.parametrize("optimizer", [SGD(lr=0.1, momentum=0.9), Adam(lr=0.01)],
                         ids=["momentum", "adam"])
def test_a_batch_with_a_nan_input_takes_no_step(optimizer):
    X, y = data(n=8)
    X[3, 2] = np.nan
    for opt in (optimizer, type("Mine", (type(optimizer),), {})(lr=0.1)):  # fused, then Python
        net = pynn.Network([12, 8, 5], seed=0)
        net.train_batch(X[:2], y[:2], opt)
        before, steps = [w.copy() for w in net.weights + net.biases], opt.steps
        assert not np.isfinite(net.train_batch(X[:4], y[:4], opt))
        assert opt.steps == steps
        for w, b in zip(net.weights + net.biases, before):
            np.testing.assert_array_equal(w, b)


def test_other_optimisers_take_the_python_path():
    class Halved(SGD):                               # a user's own optimiser
        def step(self, params, grads):
            super().step(params, [g * np.float32(0.5) for g in grads])
    X, y = data()
    a, b = pynn.Network([12, 8, 5], seed=0), pynn.Network([12, 8, 5], seed=0)
    a.fit(X, y, epochs=1, batch_size=16, optimizer=Halved(lr=0.1))
    b.fit(X, y, epochs=1, batch_size=16, optimizer=SGD(lr=0.05))
    assert_same_weights(a, b)


def test_fused_net_checks_what_crosses():
    W0, b0 = np.zeros((4, 3), np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"biases\[0\]"):
        ops.FusedNet([W0], [np.zeros(5, np.float32)], "relu", "softmax", "cross_entropy")
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        ops.FusedNet([W0, np.zeros((2, 5), np.float32)], [b0, np.zeros(2, np.float32)],
                     "relu", "softmax", "cross_entropy")
    view = ops.FusedNet([W0], [b0], "relu", "softmax", "cross_entropy")
    X = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError, match="out"):
        view.forward(X, np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="order"):
        view.train("sgd", {"lr": 0.1}, [[], []], 0, X, np.zeros((2, 4), np.float32),
                   np.array([0, 2]), 1)
    with pytest.raises(ValueError, match="state"):
        view.train("momentum", {"lr": 0.1}, [[], []], 0, X, np.zeros((2, 4), np.float32), None, 1)


def test_a_trained_network_still_copies_and_pickles():
    import copy
    import pickle
    X, y = data()
    net = pynn.Network([12, 8, 5], seed=0)
    net.fit(X, y, epochs=1, optimizer=SGD(lr=0.1, momentum=0.9))
    p = net.predict_proba(X)
    for twin in (copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        np.testing.assert_array_equal(twin.predict_proba(X), p)
        twin.weights[0][:] = 0.0                     # its own arrays, not the original's
        assert not np.array_equal(twin.predict_proba(X), p)
    np.testing.assert_array_equal(net.predict_proba(X), p)


def test_batches_bigger_than_a_k_slice_match_too():
    # B > 256 rows: dW no longer fits one K slice of the packed product and goes through the
    # gradient buffer instead of straight into the step
    X, y = data(n=600, n_in=20, n_out=5)
    for opt in ("momentum", "adam"):
        a, b = pynn.Network([20, 30, 5], seed=1), pynn.Network([20, 30, 5], seed=1)
        o_a, o_b = OPTIMIZERS[opt](), OPTIMIZERS[opt]()
        a.fit(X, y, epochs=1, batch_size=300, optimizer=o_a)
        reference_fit(b, X, y, 1, 300, o_b)
        assert_same_weights(a, b)
        assert o_a.steps == o_b.steps == 2


@pytest.mark.parametrize("kernels", [k for k in ("avx512f", "avx2", "generic")
                                     if ops.lib.pynn_kernels_select(k.encode()) == 0])
def test_every_kernel_set_trains_to_the_reference(kernels):
    ops.select_kernels(kernels)
    try:
        X, y = data(n=200, n_in=40, n_out=10)
        for opt in sorted(OPTIMIZERS):
            a = pynn.Network([40, 50, 10], seed=5)
            b = pynn.Network([40, 50, 10], seed=5)
            o_a, o_b = OPTIMIZERS[opt](), OPTIMIZERS[opt]()
            a.fit(X, y, epochs=2, batch_size=9, optimizer=o_a)
            reference_fit(b, X, y, 2, 9, o_b)
            assert_same_weights(a, b)
    finally:
        ops.select_kernels("auto")


@pytest.mark.parametrize("sizes,batch", [([784, 40, 300, 10], 200), ([784, 300, 40, 10], 64)])
def test_deeper_networks_on_two_threads_match_and_repeat(sizes, batch):
    # layers whose products split W among the threads differently (a narrow one splits rows),
    # where the step must wait for the other thread's delta W, and layers where it need not
    rng = np.random.default_rng(0)
    X = rng.random((400, 784), dtype=np.float32)
    y = rng.integers(0, 10, 400)
    before = ops.get_num_threads()
    try:
        ops.set_num_threads(2)
        a, b, c = (pynn.Network(sizes, seed=0) for _ in range(3))
        a.fit(X, y, epochs=1, batch_size=batch, optimizer=SGD(lr=0.05, momentum=0.9))
        c.fit(X, y, epochs=1, batch_size=batch, optimizer=SGD(lr=0.05, momentum=0.9))
        reference_fit(b, X, y, 1, batch, SGD(lr=0.05, momentum=0.9))
    finally:
        ops.set_num_threads(before)
    assert_same_weights(a, b)
    for p, q in zip(a.weights + a.biases, c.weights + c.biases):
        np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("sizes", [[784, 5, 10], [784, 9, 10], [784, 20, 9, 10], [784, 70, 10]])
def test_narrow_networks_give_the_same_bits_on_any_thread_count(sizes, kernels, every_job_shared):
    # every product split among the threads, however small: a layer at most 16 wide (its
    # backward runs the narrow gemv kernels, whose rows the threads split) and the small path
    # (batches of 16 and fewer) must train to the bits of one thread, dense and uint8 input alike
    rng = np.random.default_rng(1)
    X = rng.random((150, 784), dtype=np.float32)
    y = rng.integers(0, 10, 150)
    for X_in, batch in ((X, 32), ((X * 255).astype(np.uint8), 24), (X, 10)):
        runs = []
        for nt in (1, 2, 3):
            ops.set_num_threads(nt)
            net = pynn.Network(sizes, seed=0)
            net.fit(X_in, y, epochs=1, batch_size=batch, optimizer=SGD(lr=0.05, momentum=0.9))
            runs.append(net.weights + net.biases + [net.predict_proba(X[:7]), net.predict_one(X[3])])
        for other in runs[1:]:
            for p, q in zip(runs[0], other):
                np.testing.assert_array_equal(p, q)


# ---- one sample in one C call: Network.predict_one (and predict_proba of one row) ----

KERNEL_SETS = [k for k in ("avx512f", "avx2", "generic") if ops.lib.pynn_kernels_select(k.encode()) == 0]
ops.select_kernels("auto")


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("hidden,output,loss", COMBOS)
def test_predict_one_is_the_forward_pass(hidden, output, loss, kernels):
    # widths off the kernels' multiples of 6 and 16, and three layers so the work buffers
    # take turns; the batch path and this one run the same kernel, so the bits agree
    rng = np.random.default_rng(2)
    net = pynn.Network([37, 23, 13, 7], hidden, output, loss, seed=3)
    X = rng.standard_normal((5, 37)).astype(np.float32)
    ops.select_kernels(kernels)
    try:
        want = net.forward(X, keep=False)
        for i in range(len(X)):
            got = net.predict_one(X[i])
            assert got.shape == (7,) and got.dtype == np.float32
            np.testing.assert_array_equal(got, want[i])
            np.testing.assert_array_equal(net.predict_one(X[i:i + 1]), want[i])
            np.testing.assert_array_equal(net.predict_proba(X[i:i + 1]), want[i:i + 1])
    finally:
        ops.select_kernels("auto")


def test_predict_one_takes_digits_as_pixels_or_images():
    rng = np.random.default_rng(0)
    net = pynn.Network([784, 30, 10], seed=0)
    img = rng.integers(0, 256, (28, 28), dtype=np.uint8)
    want = net.forward(img.reshape(1, 784), keep=False)[0]       # uint8 scaled to 0..1
    np.testing.assert_array_equal(net.predict_one(img), want)
    np.testing.assert_array_equal(net.predict_one(img.reshape(1, 784)), want)
    np.testing.assert_array_equal(net.predict_proba(img.reshape(1, 784)), want[None])
    f = (img / np.float32(255)).astype(np.float32)
    np.testing.assert_array_equal(net.predict_one(f), net.forward(f.reshape(1, -1), keep=False)[0])
    f.flags.writeable = False                                     # only read
    assert net.predict_one(f).shape == (10,)
    a, b = net.predict_one(f), net.predict_one(img)
    assert not np.shares_memory(a, b)                             # each call a new array
    assert np.isclose(a.sum(), 1.0, atol=1e-6)


def test_predict_one_checks_its_argument():
    net = pynn.Network([12, 8, 5], seed=0)
    x = np.ones(12, np.float32)
    with pytest.raises(TypeError, match="x must be a numpy array"):
        net.predict_one([1.0] * 12)
    with pytest.raises(TypeError, match="x must have dtype float32 or uint8, got float64"):
        net.predict_one(x.astype(np.float64))
    with pytest.raises(TypeError, match="x must have dtype float32 or uint8, got int32"):
        net.predict_one(x.astype(np.int32))
    with pytest.raises(TypeError, match="x must have dtype"):
        net.predict_one(x.astype(">f4"))                          # not the C side's byte order
    with pytest.raises(ValueError, match="x must hold 12 values"):
        net.predict_one(np.ones(11, np.float32))
    with pytest.raises(ValueError, match="x must hold 12 values"):
        net.predict_one(np.ones((2, 12), np.float32))             # two samples: predict_proba
    with pytest.raises(ValueError, match="C-contiguous"):
        net.predict_one(np.ones(24, np.float32)[::2])
    with pytest.raises(ValueError, match="C-contiguous"):
        net.predict_one(np.ones((12, 2), np.uint8)[:, 0])

    class Sub(np.ndarray):
        pass
    np.testing.assert_array_equal(net.predict_one(x.view(Sub)), net.predict_one(x))
    # predict_proba of one row that the lean path does not take goes the general way
    np.testing.assert_allclose(net.predict_proba(np.ones((1, 24), np.float32)[:, ::2]),
                               net.predict_one(x)[None], rtol=1e-6)
    np.testing.assert_allclose(net.predict_proba(np.ones((1, 12), np.float64).astype(np.float32)),
                               net.predict_one(x)[None], rtol=1e-6)
    with pytest.raises(ValueError, match="X must have 12 values"):
        net.predict_proba(np.ones((1, 11), np.float32))


def test_predict_one_notices_changed_and_replaced_weights():
    rng = np.random.default_rng(1)
    net = pynn.Network([12, 8, 5], seed=0)
    x = rng.standard_normal(12).astype(np.float32)

    def check():
        np.testing.assert_array_equal(net.predict_one(x), net.forward(x[None], keep=False)[0])

    check()
    net.weights[0][:] *= 2.0                                      # changed in place
    net.biases[1][:] = np.arange(5, dtype=np.float32)
    check()
    net.weights[1] = rng.standard_normal((5, 8)).astype(np.float32)   # replaced
    check()
    net.biases = [b + 1.0 for b in net.biases]                    # the whole list replaced
    check()
    net.weights = [w.copy() for w in net.weights]
    check()
    net.train_batch(x[None], np.array([3]), SGD(lr=0.5))          # trained in C, in place
    check()
    net.activation = "tanh"                                       # the kinds are read again
    check()
    net.weights[1] = np.asfortranarray(net.weights[1])            # a layout C cannot read
    with pytest.raises(ValueError, match=r"weights\[1\] must be C-contiguous"):
        net.predict_one(x)
    net.weights[1] = np.ascontiguousarray(net.weights[1])
    check()
    net.weights[0].shape = (12, 8)                                # reshaped in place
    with pytest.raises(ValueError, match=r"biases\[0\] must have shape \(12,\)"):
        net.predict_one(x)
    net.weights[0].shape = (8, 12)
    check()
    net.weights[0].dtype = np.int32                               # reinterpreted in place
    with pytest.raises(TypeError, match=r"weights\[0\] must have dtype float32"):
        net.predict_one(x)
    net.weights[0].dtype = np.float32
    check()
    with pytest.raises(ValueError, match="cannot resize"):
        net.weights[0].resize((20, 20))                           # the data cannot move away
    twin = pickle.loads(pickle.dumps(net))                        # caches are not pickled
    np.testing.assert_array_equal(twin.predict_one(x), net.predict_one(x))
    assert "_one" not in copy.copy(net).__getstate__()


def test_the_prepared_c_call_bench_times_is_predict_one():
    net = pynn.Network([40, 17, 10], seed=2)
    for x in (np.linspace(0, 1, 40, dtype=np.float32), np.arange(40, dtype=np.uint8)):
        want = net.predict_one(x)
        net.predict_one(np.zeros(40, np.float32))
        one = net.one_sample()
        call = one.prepared(x)
        one.result[:] = np.nan
        assert call() == 0
        np.testing.assert_array_equal(one.result, want)


def _blank_blocks(rng, n, keep):
    """n values in blocks of 16 (the last one short when n is not a multiple), each block
    kept with probability keep and otherwise blank: zeros, with a few negative zeros"""
    x = rng.standard_normal(n).astype(np.float32)
    for p in range(0, n, 16):
        if rng.random() >= keep:
            x[p:p + 16] = 0.0
            x[p:p + 16:3] = -0.0
    return x


@pytest.mark.parametrize("kernels", KERNEL_SETS)
@pytest.mark.parametrize("sizes", [[37, 23, 13, 7], [784, 131, 10], [48, 6, 3]])
def test_a_digit_with_blank_blocks_keeps_the_bits(sizes, kernels, every_job_shared):
    # the first layer reads W only over the blocks of 16 inputs that hold a value; a zero adds
    # exactly nothing, so every output is the batch forward's, bit for bit: blocks blank at
    # the start, in the middle and in the short last block, all blank, one lit, none blank;
    # on any thread count, each thread's part of the rows in one call of the kernel
    rng = np.random.default_rng(11)
    n = sizes[0]
    X = [_blank_blocks(rng, n, keep) for keep in (0.2, 0.5, 0.8) for _ in range(4)]
    X += [np.zeros(n, np.float32), -np.zeros(n, np.float32)]
    for p in range(0, n, 16):
        x = np.zeros(n, np.float32)
        x[p + (n - p - 1) % 16 if p + 16 > n else p + 15] = 0.5     # the block's last value
        X.append(x)
    X = np.array(X)
    ops.select_kernels(kernels)
    try:
        for nt in (1, 2, 3):
            ops.set_num_threads(nt)
            net = pynn.Network(sizes, seed=4)
            net.biases[0][:] = rng.standard_normal(sizes[1]).astype(np.float32)
            want = net.forward(X, keep=False)
            got = np.array([net.predict_one(x) for x in X])     # back to back: a stream
            np.testing.assert_array_equal(got, want)
            pixels = (np.abs(X) * 255).clip(0, 255).astype(np.uint8)
            got = np.array([net.predict_one(x) for x in pixels])
            np.testing.assert_array_equal(got, net.forward(pixels, keep=False))
    finally:
        ops.select_kernels("auto")


def test_a_blank_input_block_contributes_nothing_even_against_a_weight_that_is_not_finite():
    # 0 * inf is NaN in IEEE arithmetic, and the batch forward, which multiplies every input,
    # says so; predict_one skips a blank block of 16 inputs, so it counts a blank pixel as
    # contributing nothing (the loaders and the training refuse weights that are not finite,
    # so only a weight set by hand can be one)
    net = pynn.Network([64, 8, 3], seed=0)
    x = np.zeros(64, np.float32)
    x[40:48] = 1.0                                     # block 2 lit, blocks 0, 1, 3 blank
    net.weights[0][2, 5] = np.inf                      # against blank pixel 5
    assert np.isnan(net.forward(x[None], keep=False)).all()
    got = net.predict_one(x)
    net.weights[0][2, 5] = 0.0
    np.testing.assert_array_equal(got, net.predict_one(x))
    net.weights[0][2, 41] = np.inf                     # against a lit pixel: as the batch path
    np.testing.assert_array_equal(net.predict_one(x), net.forward(x[None], keep=False)[0])


def test_weights_start_on_a_cache_line(tmp_path):
    # made and loaded (a checkpoint loads the same way), the parameters start on 64-byte lines
    # (a digit's first layer reads W in blocks of 16 floats, one line each when aligned)
    net = pynn.Network([784, 30, 10], seed=0)
    net.save(tmp_path / "m.npz")
    for n in (net, pynn.load(tmp_path / "m.npz"), pynn.load_default()):
        assert all(a.ctypes.data % 64 == 0 and a.flags.c_contiguous and a.dtype == np.float32
                   for a in n.weights + n.biases)
    np.testing.assert_array_equal(pynn.load(tmp_path / "m.npz").weights[0], net.weights[0])


@pytest.mark.parametrize("sizes", [[784, 128, 10], [300, 400, 300, 10], [784, 131, 10]])
def test_a_stream_of_digits_shares_the_layers_and_keeps_the_bits(sizes):
    # calls that come back to back split each big layer's units between the threads (a lone
    # call stays on one); every output is the batch forward's, bit for bit
    rng = np.random.default_rng(7)
    X = rng.random((40, sizes[0]), dtype=np.float32)
    before = ops.get_num_threads()
    try:
        for nt in (2, 1):
            ops.set_num_threads(nt)
            net = pynn.Network(sizes, seed=1)
            want = net.forward(X, keep=False)
            got = [net.predict_one(x) for x in X]          # back to back: a stream
            np.testing.assert_array_equal(np.array(got), want)
    finally:
        ops.set_num_threads(before)
