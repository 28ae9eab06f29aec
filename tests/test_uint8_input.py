"""The fused network reads uint8 input as it is stored (pixels, scaled per batch in C).

pynn_net_train and pynn_net_forward take X (floats) or X_u8 with a scale, exactly one of the
two. A run on uint8 rows must give the very bits of the same run on the floats
ops.scale_u8 makes of them, on every path (the small one, the general one, rows in turn or
shuffled, one thread or two), and must not need a float copy of the data set.
"""
import tracemalloc

import numpy as np
import pytest

from pynn import ops
from pynn._pynn import ffi, lib

KINDS = {"sgd": 0, "momentum": 1, "adam": 2}
HYPER = dict(lr=0.02, momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=1e-4)


def digits(n, n_in=784, seed=0):
    """uint8 rows, mostly blank with some ink, as MNIST's are; and one-hot targets"""
    rng = np.random.default_rng(seed)
    X = (rng.integers(0, 256, (n, n_in)) * (rng.random((n, n_in)) < 0.25)).astype(np.uint8)
    T = np.eye(10, dtype=np.float32)[rng.integers(0, 10, n)]
    return X, T


def fresh(sizes, kind, hidden="relu", output="softmax", loss="cross_entropy", seed=1):
    rng = np.random.default_rng(seed)
    Ws = [(0.05 * rng.standard_normal((o, i))).astype(np.float32) for i, o in zip(sizes, sizes[1:])]
    bs = [(0.01 * rng.standard_normal(o)).astype(np.float32) for o in sizes[1:]]
    state = [[np.zeros_like(p) for _ in range(KINDS[kind])] for pair in zip(Ws, bs) for p in pair]
    return ops.FusedNet(Ws, bs, hidden, output, loss), Ws + bs, state


@pytest.fixture
def threads():
    before = ops.get_num_threads()
    yield ops.set_num_threads
    ops.set_num_threads(before)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("sizes,batch,kind,output,loss", [
    ([784, 100, 10], 1, "sgd", "softmax", "cross_entropy"),          # the small path
    ([784, 150, 10], 10, "adam", "softmax", "cross_entropy"),
    ([784, 70, 10], 7, "momentum", "sigmoid", "quadratic"),
    ([784, 300, 10], 100, "sgd", "softmax", "cross_entropy"),        # the general path
    ([784, 64, 32, 10], 64, "adam", "sigmoid", "cross_entropy"),
    ([784, 40, 10], 300, "momentum", "softmax", "quadratic"),        # batch > one K slice
])
@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("scale", [1 / 255, 0.01])
def test_training_on_uint8_rows_gives_the_bits_of_training_on_their_scaled_floats(
        threads, n_threads, sizes, batch, kind, output, loss, shuffled, scale):
    threads(n_threads)
    X_u8, T = digits(330)
    X = ops.scale_u8(X_u8, scale)
    order = np.random.default_rng(2).permutation(330).astype(np.int64) if shuffled else None
    runs = []
    for x in (X, X_u8):
        net, params, state = fresh(sizes, kind, output=output, loss=loss)
        losses, steps = net.train(kind, HYPER, state, 3, x, T, order, batch, scale=scale)
        runs.append((losses, steps, params, state))
    (l_f, s_f, p_f, st_f), (l_u, s_u, p_u, st_u) = runs
    assert s_f == s_u == 3 + -(-330 // batch)
    assert l_f.tobytes() == l_u.tobytes()
    for a, b in zip(p_f + [x for s in st_f for x in s], p_u + [x for s in st_u for x in s]):
        assert a.tobytes() == b.tobytes()
    assert not np.array_equal(p_u[0], fresh(sizes, kind)[1][0])     # training did change W0


def forward(net, x, out, chunk, scale=1 / 255):
    """lib.pynn_net_forward on float or uint8 rows, with a workspace of `chunk` rows"""
    work = np.empty(lib.pynn_net_workspace(net.c, chunk, 0), dtype=np.float32)
    u8 = x.dtype == np.uint8
    x_ptr = ffi.cast("uint8_t *" if u8 else "float *", ffi.from_buffer(x))
    return lib.pynn_net_forward(net.c, ffi.NULL if u8 else x_ptr, x_ptr if u8 else ffi.NULL,
                                scale, len(x), ffi.cast("float *", ffi.from_buffer(out)),
                                ffi.cast("float *", ffi.from_buffer(work)), work.size)


@pytest.mark.parametrize("n_threads", [1, 2])
@pytest.mark.parametrize("sizes,output", [([784, 10], "softmax"), ([784, 200, 10], "sigmoid"),
                                          ([784, 300, 60, 10], "softmax")])
@pytest.mark.parametrize("chunk", [1, 37, 1000])
def test_the_forward_pass_on_uint8_rows_gives_the_bits_of_their_scaled_floats(
        threads, n_threads, sizes, output, chunk):
    threads(n_threads)
    X_u8, _ = digits(300, seed=3)
    net = fresh(sizes, "sgd", hidden="tanh", output=output)[0]
    out_f, out_u = (np.full((300, 10), np.nan, np.float32) for _ in range(2))
    assert forward(net, ops.scale_u8(X_u8), out_f, chunk) == lib.PYNN_OK
    assert forward(net, X_u8, out_u, chunk) == lib.PYNN_OK
    assert out_u.tobytes() == out_f.tobytes()
    assert np.isfinite(out_u).all()
    if output == "softmax":
        np.testing.assert_allclose(out_u.sum(axis=1), 1.0, rtol=1e-5)


def test_the_c_calls_take_exactly_one_of_the_float_and_the_uint8_input():
    X_u8, T = digits(20)
    X = ops.scale_u8(X_u8)
    net, params, state = fresh([784, 30, 10], "sgd")
    work = np.empty(lib.pynn_net_workspace(net.c, 20, 1), dtype=np.float32)
    opt = ffi.new("struct pynn_optimizer *", {"kind": 0, "lr": 0.1, "eps": 1.0})
    losses, done = np.zeros(1), ffi.new("int64_t *")
    f = ffi.cast("float *", ffi.from_buffer(X))
    u = ffi.cast("uint8_t *", ffi.from_buffer(X_u8))
    t = ffi.cast("float *", ffi.from_buffer(T))
    w = ffi.cast("float *", ffi.from_buffer(work))
    out = np.empty((20, 10), np.float32)
    o = ffi.cast("float *", ffi.from_buffer(out))

    def train(x, x_u8):
        return lib.pynn_net_train(net.c, opt, x, x_u8, 1 / 255, t, 20, ffi.NULL, 20, 20,
                                  ffi.cast("double *", ffi.from_buffer(losses)), done, w, work.size)

    def forward(x, x_u8):
        return lib.pynn_net_forward(net.c, x, x_u8, 1 / 255, 20, o, w, work.size)

    before = [p.copy() for p in params]
    assert train(f, u) == lib.PYNN_ERR_NULL
    assert train(ffi.NULL, ffi.NULL) == lib.PYNN_ERR_NULL
    assert all(np.array_equal(a, b) for a, b in zip(before, params))     # nothing was touched
    assert forward(f, u) == forward(ffi.NULL, ffi.NULL) == lib.PYNN_ERR_NULL
    assert train(ffi.NULL, u) == lib.PYNN_OK and done[0] == 1
    assert not np.array_equal(before[0], params[0])                       # one step was taken
    assert forward(ffi.NULL, u) == lib.PYNN_OK and np.isfinite(out).all()


def test_fused_train_checks_a_uint8_input():
    X_u8, T = digits(40)
    net, _, state = fresh([784, 20, 10], "sgd")
    with pytest.raises(ValueError, match="784 columns"):
        net.train("sgd", HYPER, state, 0, X_u8[:, :700].copy(), T, None, 8)
    with pytest.raises(ValueError, match="C-contiguous"):
        net.train("sgd", HYPER, state, 0, np.asfortranarray(X_u8), T, None, 8)
    with pytest.raises(ValueError, match="2-D"):
        net.train("sgd", HYPER, state, 0, X_u8.reshape(40, 28, 28), T, None, 8)
    with pytest.raises(ValueError, match="scale"):
        net.train("sgd", HYPER, state, 0, X_u8, T, None, 8, scale=float("nan"))
    with pytest.raises(TypeError, match="float32"):
        net.train("sgd", HYPER, state, 0, X_u8.astype(np.int16), T, None, 8)


def test_training_on_uint8_rows_makes_no_float_copy_of_them():
    X_u8, T = digits(20_000, seed=4)              # 15.7 MB as stored; 62.7 MB as float32
    net, _, state = fresh([784, 32, 10], "sgd")
    order = np.random.default_rng(5).permutation(len(X_u8)).astype(np.int64)
    net.train("sgd", HYPER, state, 0, X_u8, T, order, 100)      # workspace made and kept
    tracemalloc.start()
    try:
        losses, _ = net.train("sgd", HYPER, state, 0, X_u8, T, order, 100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(losses) == 200 and np.isfinite(losses).all()
    assert peak < 2_000_000, f"training allocated {peak} bytes"
