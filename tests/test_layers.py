"""The network as a list of layers: the shorthand and the list are the same network, a list the
fast paths do not cover runs layer by layer correctly, inputs come in any sample shape, and
one network answers several threads at once."""
import threading
import warnings

import numpy as np
import pytest

import pynn
from pynn import modelfile, ops
from pynn.layers import Dropout, Flatten, Linear, ReLU, Sigmoid, Tanh
from pynn.network import Network


def problem(n=64, n_in=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, n_in)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    return X, y % classes


def test_the_shorthand_builds_the_list_it_stands_for():
    net = Network([12, 9, 7, 3], "tanh", dropout=0.25)
    assert [type(x) for x in net.layers] == [Linear, Tanh, Dropout, Linear, Tanh, Dropout, Linear]
    assert net.sizes == [12, 9, 7, 3] and net.activation == "tanh" and net.dropout == 0.25
    assert repr(net) == ("Network([Linear(12, 9), Tanh(), Dropout(0.25), Linear(9, 7), Tanh(), "
                         "Dropout(0.25), Linear(7, 3)], output=softmax, loss=cross_entropy)")


@pytest.mark.parametrize("hidden,cls", [("relu", ReLU), ("sigmoid", Sigmoid), ("tanh", Tanh)])
def test_a_list_of_layers_trains_bit_for_bit_as_the_shorthand(hidden, cls):
    X, y = problem()
    a = Network([12, 9, 3], hidden, seed=4)
    b = Network([Linear(12, 9), cls(), Linear(9, 3)], seed=4)
    for W, V in zip(a.weights, b.weights):
        np.testing.assert_array_equal(W, V)
    ha = a.fit(X, y, epochs=2, batch_size=10, optimizer=pynn.SGD(lr=0.1, momentum=0.9))
    hb = b.fit(X, y, epochs=2, batch_size=10, optimizer=pynn.SGD(lr=0.1, momentum=0.9))
    assert ha == hb
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def float64_loss(layers, X, T):
    """Cross-entropy of softmax over a float64 run of the layers (the reference)."""
    a = X.astype(np.float64)
    for layer in layers:
        if isinstance(layer, Linear):
            a = a @ layer.W.astype(np.float64).T + layer.b
        elif isinstance(layer, ReLU):
            a = np.maximum(a, 0)
        elif isinstance(layer, Tanh):
            a = np.tanh(a)
        elif isinstance(layer, Sigmoid):
            a = 1 / (1 + np.exp(-a))
    a = a - a.max(axis=1, keepdims=True)
    logp = a - np.log(np.exp(a).sum(axis=1, keepdims=True))
    return -(T * logp).sum() / len(X)


def test_a_mixed_list_runs_layer_by_layer_with_the_right_gradients():
    X, y = problem(n=16, seed=1)
    # smooth activations (a difference across ReLU's kink is no derivative), mixed
    net = Network([Linear(12, 8), Tanh(), Linear(8, 6), Sigmoid(), Linear(6, 5), Linear(5, 3)],
                  seed=2)
    assert net.activation is None and not net.uses_fused_step(pynn.SGD(lr=0.1))
    T = net.targets(y, len(X))
    grads = net.gradients(X, y)
    assert net.loss_value(X, y) == pytest.approx(float64_loss(net.layers, X, T), rel=1e-5)
    h = 1e-3
    for k, layer in enumerate(x for x in net.layers if isinstance(x, Linear)):
        for param, g in zip(layer.parameters(), grads[k]):
            for idx in list(np.ndindex(param.shape))[::5]:
                old = param[idx]
                param[idx] = old + h
                up = float64_loss(net.layers, X, T)
                param[idx] = old - h
                down = float64_loss(net.layers, X, T)
                param[idx] = old
                assert g[idx] == pytest.approx((up - down) / (2 * h), abs=3e-4, rel=2e-2), (k, idx)
    before = net.loss_value(X, y)
    net.fit(X, y, epochs=20, batch_size=8, optimizer=pynn.SGD(lr=0.3, momentum=0.9))
    assert net.loss_value(X, y) < before / 2


def test_inputs_come_in_any_shape_of_one_sample():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    net = Network([Flatten(), Linear(784, 16), ReLU(), Linear(16, 10)], input_shape=(1, 28, 28))
    assert net.activation == "relu"                 # a leading Flatten keeps the fast path
    want = net.predict_proba(images.reshape(5, 784))
    for X in (images, images.reshape(5, 1, 28, 28), ops.scale_u8(images),
              ops.scale_u8(images).reshape(5, 1, 28, 28)):
        np.testing.assert_array_equal(net.predict_proba(X), want)
    np.testing.assert_array_equal(net.predict_one(images[0]), want[0])
    with pytest.raises(ValueError, match=r"784 values per sample \(1x28x28\)"):
        net.predict(np.zeros((5, 27, 28), np.float32))
    with pytest.raises(TypeError, match="float32 or uint8"):
        net.predict(np.zeros((5, 784), np.float64))


def test_a_layer_that_cannot_take_its_input_is_named():
    with pytest.raises(ValueError, match=r"layer 2 \(Linear\(50, 10\)\).*takes 50 values"):
        Network([Linear(784, 40), ReLU(), Linear(50, 10)])
    with pytest.raises(ValueError, match="Flatten"):
        Network([Linear(784, 10)], input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="at least one layer with weights"):
        Network([ReLU()], input_shape=(4,))
    with pytest.raises(TypeError, match="pynn.layers"):
        Network([Linear(4, 3), "relu"])
    layer = ReLU()
    with pytest.raises(ValueError, match="twice"):
        Network([Linear(4, 3), layer, Linear(3, 3), layer, Linear(3, 2)])


def test_a_list_of_layers_saves_and_loads_as_it_was(tmp_path):
    X, y = problem()
    net = Network([Linear(12, 8), Tanh(), Dropout(0.2), Linear(8, 6), ReLU(), Linear(6, 3)],
                  output="sigmoid", loss="quadratic", seed=3)
    net.fit(X, y, epochs=2, batch_size=16, optimizer=pynn.Adam(lr=0.01))
    net.save(tmp_path / "m.npz")
    back = pynn.load(tmp_path / "m.npz")
    assert repr(back) == repr(net)
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))


def test_a_file_of_the_first_format_loads_and_predicts_the_same(tmp_path):
    import json
    X, y = problem()
    net = Network([12, 9, 3], "tanh", seed=0)
    net.fit(X, y, epochs=1, optimizer=pynn.SGD(lr=0.1))
    arrays = {"format_version": np.array(1), "architecture": np.array(json.dumps(
        {"sizes": [12, 9, 3], "activation": "tanh", "output": "softmax", "loss": "cross_entropy"})),
        "W0": net.weights[0], "b0": net.biases[0], "W1": net.weights[1], "b1": net.biases[1]}
    np.savez(tmp_path / "old.npz", **arrays)
    back = pynn.load(tmp_path / "old.npz")
    assert repr(back) == repr(net)
    np.testing.assert_array_equal(back.predict(X), net.predict(X))


@pytest.mark.parametrize("layers", ["dense", "mixed"])
def test_one_network_answers_several_threads_at_once(layers):
    """Each call takes its own buffers: threads reading one network with the same batch size
    get what one thread alone gets."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 100)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    if layers == "dense":
        net = Network([100, 300, 10], seed=1)
    else:
        net = Network([Linear(100, 300), Tanh(), Linear(300, 50), ReLU(), Linear(50, 10)], seed=1)
    batches = [X[i::4].copy() for i in range(4)]
    labels = [y[i::4].copy() for i in range(4)]
    want = [(net.predict_proba(b), net.predict(b), net.loss_value(b, t), net.gradients(b, t))
            for b, t in zip(batches, labels)]
    wrong = []

    def reader(k):
        b, t = batches[k % 4], labels[k % 4]
        p, c, loss, grads = want[k % 4]
        for _ in range(40):
            ok = (np.array_equal(net.predict_proba(b), p) and np.array_equal(net.predict(b), c)
                  and net.loss_value(b, t) == loss
                  and all(np.array_equal(g, h) for pair, pair2 in zip(net.gradients(b, t), grads)
                          for g, h in zip(pair, pair2)))
            if not ok:
                wrong.append(k)
    threads = [threading.Thread(target=reader, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_model_files_name_every_layer(tmp_path):
    net = Network([Flatten(), Linear(784, 8), Sigmoid(), Linear(8, 10)], input_shape=(1, 28, 28))
    import json
    arch = json.loads(str(modelfile.network_arrays(net)["architecture"]))
    assert arch["input_shape"] == [1, 28, 28]
    assert [spec["type"] for spec in arch["layers"]] == ["Flatten", "Linear", "Sigmoid", "Linear"]


@pytest.mark.parametrize("batch,callback", [(10, False), (64, True), (7, False)])
def test_pixels_train_as_their_scaled_floats_bit_for_bit(batch, callback):
    """fit reads uint8 digits as stored, scaling a chunk of batches at a time: the same batches
    and steps as training on the whole set scaled first."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(9000, 8, 8), dtype=np.uint8)
    y = (images.reshape(9000, 64)[:, :32].sum(1) > images.reshape(9000, 64)[:, 32:].sum(1)).astype(np.int64)
    a, b = Network([64, 20, 2], seed=1), Network([64, 20, 2], seed=1)
    news = [] if callback else None
    cb = (lambda *args: news.append(args)) if callback else None
    ha = a.fit(images, y, epochs=2, batch_size=batch, optimizer=pynn.SGD(lr=0.05, momentum=0.9),
               callback=cb)
    hb = b.fit(ops.scale_u8(images).reshape(9000, 64), y, epochs=2, batch_size=batch,
               optimizer=pynn.SGD(lr=0.05, momentum=0.9))
    assert ha == hb
    for W, V in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(W, V)
    np.testing.assert_array_equal(a.predict_proba(images, batch_size=1000),
                                  a.predict_proba(ops.scale_u8(images).reshape(9000, 64)))


def test_weights_whose_layout_changes_in_place_are_seen_before_a_pointer_is_used():
    """The fast paths keep pointers into the layers' arrays; strides or a shape set in place
    (or a forced resize) must send them back to check, never read a stale layout."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 12)).astype(np.float32)
    net = Network([12, 8, 3], seed=0)
    want = net.predict_proba(X)
    W = net.weights[0]
    flipped = W[::-1]                             # the same memory, rows the other way
    net.weights[0] = flipped                      # a view that is not C-contiguous
    with pytest.raises(ValueError, match="C-contiguous"):
        net.predict_proba(X)
    net.weights[0] = W
    np.testing.assert_array_equal(net.predict_proba(X), want)
    W.shape = (4, 24)                             # reshaped in place: the layer no longer fits
    with pytest.raises(ValueError):
        net.predict_proba(X)
    W.shape = (8, 12)
    np.testing.assert_array_equal(net.predict_proba(X), want)
    np.testing.assert_array_equal(net.predict_one(X[0]), want[0])
    with warnings.catch_warnings():               # setting strides is deprecated, yet possible
        warnings.simplefilter("ignore", DeprecationWarning)
        W.strides = (4, 32)                       # the same shape, read column by column
    with pytest.raises(ValueError, match="C-contiguous"):
        net.predict_proba(X)
    with pytest.raises(ValueError, match="C-contiguous"):
        net.predict_one(X[0])
