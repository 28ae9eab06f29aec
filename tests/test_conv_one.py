"""One image through a convolutional network in one C call (csrc/fast/conv_one.c, pynn.ops.OneImage):
what ``predict_one`` runs on a network of convolutions, poolings and dense layers.

It sums in another order than the layer-by-layer path (``predict_proba``), so the two agree to
float32 rounding, and both agree with the float64 reference of test_conv_network.py; on every
kernel set this CPU runs and on one thread and two (the fixtures ``kernels`` and ``threads``).
"""
import threading

import numpy as np
import pytest

from pynn import ops
from pynn.layers import Conv2d, Dropout, Flatten, Linear, MaxPool2d, ReLU, Sigmoid, Tanh
from pynn.network import Network
from conftest import float64_forward

ARCH = "1x28x28-c32k5-pool2-c64k5-pool2-256-10"


def float64_proba(net, X):
    z = float64_forward(net, X.reshape(len(X), *net.input_shape))
    p = np.exp(z - z.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True)


def roughen(net, seed):
    """Weights and biases of every sign and size (a fresh network's biases are all zero)."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if layer.params:
            layer.W *= rng.uniform(0.5, 2.0, size=layer.W.shape).astype(np.float32)
            layer.b[...] = rng.normal(0, 0.1, size=layer.b.shape).astype(np.float32)


def test_the_issues_network_gives_predict_probas_numbers_on_real_digits(mnist, kernels, threads):
    X, _ = mnist.test
    net = Network(ARCH, seed=0)
    roughen(net, 1)
    digits = X[:12]
    one = np.stack([net.predict_one(x) for x in digits])
    assert isinstance(net._image_sample(), ops.OneImage)       # the one-call path ran
    layers = net.predict_proba(digits)
    np.testing.assert_allclose(one, layers, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(one, float64_proba(net, ops.scale_u8(digits)), rtol=1e-4, atol=1e-6)
    floats = ops.scale_u8(digits)                  # float32 input, any shape of 784 values
    for x, row in zip(floats, one):
        np.testing.assert_array_equal(net.predict_one(x.reshape(1, 1, 28, 28)), row)
        np.testing.assert_array_equal(net.predict_one(x.ravel()), row)


# layer lists beside the issue's: padding, other activations, poolings of 3 and 1, a pooling
# after a pooling, a convolution without one, sizes that fill neither a tile's 6 channels nor
# its 8 positions, dropout, a convolution as the last layer, a linear output
NETWORKS = {
    "pad-tanh-pool3": ([Conv2d(2, 7, 3, padding=2), Tanh(), MaxPool2d(3), Flatten(),
                        Linear(7 * 4 * 5, 5)], (2, 11, 13), "softmax"),
    "sigmoid-unpooled-odd": ([Conv2d(1, 5, 4), Sigmoid(), Conv2d(5, 13, 3, padding=1), ReLU(),
                              MaxPool2d(2), MaxPool2d(1), Flatten(), Dropout(0.3), Linear(13 * 4 * 5, 9),
                              Tanh(), Linear(9, 4)], (1, 12, 13), "sigmoid"),
    "pool-then-pool-linear-conv": ([MaxPool2d(2), Conv2d(3, 8, 2), MaxPool2d(2), Conv2d(8, 3, 3),
                                    Flatten()], (3, 20, 20), "linear"),
    "wide-rows": ([Conv2d(1, 6, 3), ReLU(), MaxPool2d(2), Flatten(), Linear(6 * 9 * 19, 3)],
                  (1, 20, 40), "softmax"),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_other_layer_lists_give_the_float64_numbers_too(name, kernels, threads):
    layers, shape, output = NETWORKS[name]
    net = Network(layers, input_shape=shape, output=output, seed=2,
                  loss="quadratic" if output == "linear" else "cross_entropy")
    roughen(net, 3)
    X = np.random.default_rng(4).normal(size=(5, *shape)).astype(np.float32)
    one = np.stack([net.predict_one(x) for x in X])
    assert isinstance(net._image_sample(), ops.OneImage)
    np.testing.assert_allclose(one, net.predict_proba(X), rtol=2e-5, atol=1e-6)
    z = float64_forward(net, X)
    if output == "softmax":
        z = np.exp(z - z.max(1, keepdims=True))
        z /= z.sum(1, keepdims=True)
    elif output == "sigmoid":
        z = 1 / (1 + np.exp(-z))
    np.testing.assert_allclose(one, z, rtol=1e-4, atol=1e-5)


def predict_on_thread_counts(net, X, counts=(1, 2, 3)):
    before = ops.get_num_threads()
    try:
        runs = []
        for nt in counts:
            ops.set_num_threads(nt)
            runs.append(np.array([net.predict_one(x) for x in X for _ in range(3)]))
    finally:
        ops.set_num_threads(before)
    return runs


def test_the_bits_do_not_depend_on_the_thread_count(kernels):
    net = Network(ARCH, seed=0)
    roughen(net, 7)
    X = np.random.default_rng(8).random((4, 28, 28), dtype=np.float32)
    runs = predict_on_thread_counts(net, X)
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])


@pytest.mark.parametrize("name", ["issue"] + list(NETWORKS))
def test_the_bits_do_not_depend_on_the_thread_count_when_every_step_is_cut(name, kernels,
                                                                          every_job_shared):
    # every convolution and dense layer split among the threads, however small: channel blocks
    # of 3 to 6, dense layers of a four and a row, rows with a tail of a vector and less
    if name == "issue":
        net, shape = Network(ARCH, seed=0), (1, 28, 28)
    else:
        layers, shape, output = NETWORKS[name]
        net = Network(layers, input_shape=shape, output=output, seed=2,
                      loss="quadratic" if output == "linear" else "cross_entropy")
    roughen(net, 9)
    X = np.random.default_rng(10).normal(size=(3, *shape)).astype(np.float32)
    runs = predict_on_thread_counts(net, X)
    for run in runs[1:]:
        np.testing.assert_array_equal(run, runs[0])


def test_a_stride_other_than_one_takes_the_layer_path():
    net = Network([Conv2d(1, 4, 3, stride=2), ReLU(), Flatten(), Linear(4 * 4 * 4, 3)],
                  input_shape=(1, 9, 9), seed=0)
    x = np.random.default_rng(0).random((1, 9, 9), dtype=np.float32)
    assert net._image_sample() is None
    np.testing.assert_array_equal(net.predict_one(x), net.predict_proba(x[None])[0])


def test_weights_changed_in_place_or_replaced_are_read_as_they_are_now():
    net = Network(ARCH, seed=0)
    x = np.random.default_rng(5).random((28, 28), dtype=np.float32)
    first = net.predict_one(x)
    conv = net.layers[3]
    conv.W *= -1.5                                 # in place: the same arrays, new values
    changed = net.predict_one(x)
    np.testing.assert_allclose(changed, net.predict_proba(x[None])[0], rtol=2e-5, atol=1e-6)
    assert not np.allclose(changed, first)
    conv.W = ops.aligned_copy(conv.W * -1)        # replaced: a new view of the new array
    np.testing.assert_allclose(net.predict_one(x), net.predict_proba(x[None])[0], rtol=2e-5, atol=1e-6)
    assert not np.allclose(net.predict_one(x), changed)


def test_calls_from_several_threads_each_get_their_own_answer():
    net = Network(ARCH, seed=0)
    rng = np.random.default_rng(6)
    X = rng.random((8, 28, 28), dtype=np.float32)
    want = net.predict_proba(X)
    got, errors = {}, []

    def worker(t):
        try:
            for rep in range(20):
                i = (t + rep) % len(X)
                got[(t, rep)] = (i, net.predict_one(X[i]))
        except Exception as e:           # reported below: a thread's failure must fail the test
            errors.append(e)
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(got) == 80
    for i, y in got.values():
        np.testing.assert_allclose(y, want[i], rtol=2e-5, atol=1e-6)


def test_a_nan_pixel_gives_nan_where_the_layer_path_does():
    net = Network(ARCH, seed=0)
    x = np.zeros((28, 28), np.float32)
    x[10, 10] = np.nan
    one, layers = net.predict_one(x), net.predict_proba(x[None])[0]
    assert np.isnan(one).all() and np.isnan(layers).all()


@pytest.mark.parametrize("bad, error, match", [
    (np.zeros(783, np.float32), ValueError, "784 values"),
    (np.zeros((28, 28), np.float64), TypeError, "float32 or uint8"),
    (np.zeros((28, 28), np.int32), TypeError, "float32 or uint8"),
    (np.zeros((28, 56), np.float32)[:, ::2], ValueError, "C-contiguous"),
    ([0.0] * 784, TypeError, "numpy array"),
    (None, TypeError, "numpy array"),
])
def test_bad_input_is_refused_by_name(bad, error, match):
    net = Network(ARCH, seed=0)
    with pytest.raises(error, match=match):
        net.predict_one(bad)


def conv_steps(shape=(1, 6, 6), oc=4, k=3):
    """A two-step C network (a convolution of `oc` k x k kernels, then a 2x2 pooling) and its
    weights, for the tests of the C call itself."""
    W = np.ones((oc, shape[0], k, k), np.float32)
    b = np.zeros(oc, np.float32)
    C, H, Wd = shape
    steps = ops.fast.ffi.new("struct pynn_step[]", [
        {"kind": ops.lib.PYNN_STEP_CONV, "act": ops.lib.PYNN_RELU, "C": C, "H": H, "W": Wd,
         "OC": oc, "K": k, "pad": 0, "weight": ops.fast.ffi.from_buffer("float[]", W),
         "bias": ops.fast.ffi.from_buffer("float[]", b)},
        {"kind": ops.lib.PYNN_STEP_POOL, "C": oc, "H": H - k + 1, "W": Wd - k + 1, "K": 2}])
    return steps, (W, b)


def test_the_c_call_refuses_bad_steps_and_buffers_itself():
    ffi, lib = ops.fast.ffi, ops.lib
    steps, keep = conv_steps()
    n = lib.pynn_steps_workspace(steps, 2)
    assert n > 0
    x, out = np.ones(36, np.float32), np.zeros(16, np.float32)
    work = np.zeros(n, np.float32)
    args = lambda: (steps, 2, lib.PYNN_LINEAR, ffi.from_buffer("float[]", x), ffi.NULL, 0.0,
                    ffi.from_buffer("float[]", out), ffi.from_buffer("float[]", work), n)
    assert lib.pynn_steps_forward_one(*args()) == lib.PYNN_OK
    np.testing.assert_array_equal(out, 9.0)       # nine taps of ones on ones
    a = list(args())
    for i, value, rc in [(0, ffi.NULL, lib.PYNN_ERR_NULL), (1, 0, lib.PYNN_ERR_SIZE),
                         (1, -1, lib.PYNN_ERR_SIZE), (2, 99, lib.PYNN_ERR_ARG),
                         (3, ffi.NULL, lib.PYNN_ERR_NULL), (6, ffi.NULL, lib.PYNN_ERR_NULL),
                         (8, n - 1, lib.PYNN_ERR_SIZE), (8, -1, lib.PYNN_ERR_SIZE)]:
        call = a.copy()
        call[i] = value
        assert lib.pynn_steps_forward_one(*call) == rc, (i, value)
    both = a.copy()
    both[4] = ffi.from_buffer("uint8_t[]", np.ones(36, np.uint8))    # x and x_u8 both given
    assert lib.pynn_steps_forward_one(*both) == lib.PYNN_ERR_NULL
    for field, value, rc in [("H", 7, lib.PYNN_ERR_SIZE), ("K", 9, lib.PYNN_ERR_SIZE),
                             ("kind", 7, lib.PYNN_ERR_ARG), ("act", lib.PYNN_SOFTMAX, lib.PYNN_ERR_ARG),
                             ("pad", -1, lib.PYNN_ERR_SIZE), ("OC", 0, lib.PYNN_ERR_SIZE)]:
        bad, keep2 = conv_steps()
        setattr(bad[0], field, value)
        assert lib.pynn_steps_workspace(bad, 2) == -1, field
        assert lib.pynn_steps_forward_one(bad, 2, lib.PYNN_LINEAR, *a[3:]) == rc, field
    bad, keep2 = conv_steps()
    bad[1].C = 5                                   # the pooling's input is not the conv's output
    assert lib.pynn_steps_workspace(bad, 2) == -1
    bad[1].C, bad[0].weight = 4, ffi.NULL
    assert lib.pynn_steps_forward_one(bad, 2, lib.PYNN_LINEAR, *a[3:]) == lib.PYNN_ERR_NULL
    huge, keep3 = conv_steps(shape=(1, 2 ** 20, 2 ** 20))
    assert lib.pynn_steps_workspace(huge, 2) == -1
