"""Convolutional networks: Conv2d and MaxPool2d join the list of layers, and everything a dense
network does (gradients, training, saving, checkpoints, one digit, teaching) works for them."""
import numpy as np
import pytest

import pynn
from pynn.checkpoint import load_checkpoint
from pynn.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Tanh
from pynn.network import Network
from conftest import float64_forward


def small_conv(seed=0, act=Tanh):
    return Network([Conv2d(2, 3, 3, padding=1), act(), MaxPool2d(2), Conv2d(3, 4, 2, stride=2),
                    act(), Flatten(), Linear(16, 5), act(), Linear(5, 3)],
                   input_shape=(2, 8, 8), seed=seed)


def images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2, 8, 8)).astype(np.float32)
    y = (X[:, 0].mean((1, 2)) > 0).astype(np.int64) + (X[:, 1, :4].mean((1, 2)) > 0)
    return X, y





def float64_loss(net, X, T):
    z = float64_forward(net, X)
    z = z - z.max(axis=1, keepdims=True)
    return -(T * (z - np.log(np.exp(z).sum(axis=1, keepdims=True)))).sum() / len(X)


def test_the_forward_pass_is_the_float64_one():
    X, _ = images()
    net = small_conv()
    p = np.exp(float64_forward(net, X))
    np.testing.assert_allclose(net.predict_proba(X), p / p.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_every_gradient_matches_central_differences():
    X, y = images()
    net = small_conv(seed=1)
    T = net.targets(y, len(X))
    grads = net.gradients(X, y)
    assert [g[0].shape for g in grads] == [(3, 2, 3, 3), (4, 3, 2, 2), (5, 16), (3, 5)]
    h, checked = 1e-3, 0
    for k, layer in enumerate(x for x in net.layers if x.params):
        for param, g in zip(layer.parameters(), grads[k]):
            for idx in list(np.ndindex(param.shape))[::4]:
                old = param[idx]
                param[idx] = old + h
                up = float64_loss(net, X, T)
                param[idx] = old - h
                down = float64_loss(net, X, T)
                param[idx] = old
                assert g[idx] == pytest.approx((up - down) / (2 * h), abs=2e-4, rel=2e-2), (k, idx)
                checked += 1
    assert checked > 40


def test_training_runs_conv_relu_pool_as_one_pass_with_the_bits_of_the_layers():
    """Network runs Conv2d, ReLU, MaxPool2d as one C pass in training and prediction
    (Conv2d.forward_relu_pool); ``forward`` with keep runs them one by one, so that
    layer_outputs has every output. Nothing is summed in another order but the first layer's
    weight gradients (summed over the windows the pooling chose alone, not over its zeros), so
    the two agree bit for bit elsewhere, there to rounding, and so do a step's weights."""
    import copy
    fused = Network([Conv2d(2, 4, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(4, 6, 2), ReLU(),
                     MaxPool2d(2), Flatten(), Linear(24, 5), ReLU(), Linear(5, 3)],
                    input_shape=(2, 10, 10), seed=3)
    layered = copy.deepcopy(fused)
    assert fused._conv_pools == {0: 2, 3: 2}
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 2, 10, 10)).astype(np.float32)
    y = rng.integers(0, 3, 7)
    T = layered.targets(y, 7)
    np.testing.assert_array_equal(fused.predict_proba(X), layered.forward(X, keep=False))
    opt_fused, opt_layered = pynn.SGD(lr=0.1, momentum=0.9), pynn.SGD(lr=0.1, momentum=0.9)
    for step in range(3):
        want = fused.gradients(X, y)
        layered.forward(X)
        grads = layered.backward(T)
        for i, (got, ref) in enumerate(zip(grads, want)):
            for g, r in zip(got, ref):
                if i == 0:
                    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-6)
                else:
                    np.testing.assert_array_equal(g, r)
        opt_layered.step(layered.parameters(), [g for pair in grads for g in pair])
        loss = fused.train_batch(X, T, opt_fused)
        assert loss == pytest.approx(layered.last_loss, rel=1e-5)
        for a, b in zip(fused.parameters(), layered.parameters()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        if step == 0:                     # one step from the same weights: equal but layer 0
            for a, b in zip(fused.parameters()[2:], layered.parameters()[2:]):
                np.testing.assert_array_equal(a, b)
        for mine, theirs in zip(layered.parameters(), fused.parameters()):
            mine[...] = theirs            # the same weights again for the next step
    with pytest.raises(RuntimeError, match="layer_outputs needs a forward"):
        fused.layer_outputs()          # a training step keeps no output of the fused layers
    assert len(layered.layer_outputs()) == 11


def test_a_convolutional_network_learns_saves_and_resumes(tmp_path):
    X, y = images(n=96, seed=2)
    net = small_conv(seed=3, act=ReLU)
    before = net.loss_value(X, y)
    whole = small_conv(seed=3, act=ReLU)
    whole.fit(X, y, epochs=4, batch_size=16, optimizer=pynn.SGD(lr=0.1, momentum=0.9))
    assert whole.loss_value(X, y) < before

    class Stop(Exception):
        pass

    def stop_after_two(epoch, history):
        if epoch == 1:
            raise Stop
    with pytest.raises(Stop):
        net.fit(X, y, epochs=4, batch_size=16, optimizer=pynn.SGD(lr=0.1, momentum=0.9),
                checkpoint=tmp_path / "ck", on_epoch_end=stop_after_two)
    ck = load_checkpoint(tmp_path / "ck")
    ck.net.fit(X, y, epochs=4, batch_size=16, optimizer=ck.optimizer, start_epoch=ck.epoch + 1,
               history=ck.history)
    for a, b in zip(whole.parameters(), ck.net.parameters()):
        np.testing.assert_array_equal(a, b)
    whole.save(tmp_path / "conv.npz")
    back = pynn.load(tmp_path / "conv.npz")
    assert repr(back) == repr(whole)
    np.testing.assert_array_equal(back.predict_proba(X), whole.predict_proba(X))
    for i in range(3):
        np.testing.assert_array_equal(back.predict_one(X[i]), whole.predict_proba(X[i:i + 1])[0])


def test_conv_layers_refuse_what_does_not_fit():
    with pytest.raises(ValueError, match="input_shape"):
        Network([Conv2d(1, 4, 5), Flatten(), Linear(4 * 24 * 24, 10)])
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2d\(3, 4, 5\)\).*3 channels"):
        Network([Conv2d(3, 4, 5), Flatten(), Linear(4 * 24 * 24, 10)], input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match="larger than the padded"):
        Network([Conv2d(1, 4, 9), Flatten(), Linear(4, 10)], input_shape=(1, 6, 6))
    with pytest.raises(ValueError, match="MaxPool2d"):
        Network([Conv2d(1, 4, 3), MaxPool2d(8), Flatten(), Linear(4, 10)], input_shape=(1, 6, 6))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="kernel_size"):
            Conv2d(1, 4, bad)
    with pytest.raises(ValueError, match="padding"):
        Conv2d(1, 4, 3, padding=-1)


def test_teaching_moves_a_convolutional_network_too():
    from pynn import adapt
    rng = np.random.default_rng(0)
    net = Network([Conv2d(1, 4, 5), ReLU(), MaxPool2d(2), Flatten(), Linear(4 * 12 * 12, 10)],
                  input_shape=(1, 28, 28), seed=0)
    drawing = np.zeros((28, 28), np.float32)
    drawing[4:24, 13:15] = 1.0                    # a stroke, taught as a 7
    adapt.teach(net, drawing.reshape(1, 784), np.array([7]), rng=rng)
    assert net.predict_one(drawing).argmax() == 7


def test_the_fused_training_gives_the_same_weights_on_one_thread_and_on_two(every_job_shared):
    rng = np.random.default_rng(5)
    X = rng.random((40, 1, 14, 14), dtype=np.float32)
    y = rng.integers(0, 10, 40)
    weights = []
    for threads in (1, 2):
        pynn.set_num_threads(threads)
        net = Network("1x14x14-c8k3-pool2-c6k2p1-pool2-16-10", seed=2)
        assert len(net._conv_pools) == 2
        net.fit(X, y, epochs=2, batch_size=8, optimizer=pynn.SGD(lr=0.05, momentum=0.9),
                score=False)
        weights.append(net.parameters())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
