"""The network as a whole: its gradients against central differences, its training, its
initialisation, and what it accepts as inputs and targets."""
import itertools

import numpy as np
import pytest

import pynn
from conftest import separable_problem

HIDDEN = ["sigmoid", "relu", "tanh", "linear"]
OUTPUT_LOSS = [("softmax", "quadratic"), ("sigmoid", "quadratic"), ("linear", "quadratic"),
               ("softmax", "cross_entropy"), ("sigmoid", "cross_entropy")]
SIZES = [5, 4, 3, 3]


# ---- a float64 numpy reference of the whole network ----

def f64(name, z):
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z


def reference_loss(params, X, T, activation, output, loss):
    """The loss of the network with parameters [W0, b0, W1, b1, ...] in float64, from the
    definitions (eq. 22 for quadratic; -sum t log p for cross-entropy), mean over samples."""
    a = X.astype(np.float64)
    L = len(params) // 2
    pre_hidden = []
    for layer in range(L):
        W, b = params[2 * layer], params[2 * layer + 1]
        z = a @ W.T + b
        if layer < L - 1:
            pre_hidden.append(z)
            a = f64(activation, z)
    B = X.shape[0]
    if loss == "quadratic":
        value = ((T - f64(output, z)) ** 2).sum() / B
    elif output == "softmax":
        logp = z - z.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        value = -(T * logp).sum() / B
    else:
        value = (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - T * z).sum() / B
    return value, pre_hidden


def make_problem(activation, output, loss, B=7, seed=0):
    rng = np.random.default_rng(seed)
    net = pynn.Network(SIZES, activation=activation, output=output, loss=loss, seed=seed)
    for b in net.biases:                      # nonzero biases, so db is tested too
        b[:] = rng.uniform(-0.5, 0.5, b.shape)
    X = rng.uniform(-1.5, 1.5, (B, SIZES[0])).astype(np.float32)
    if output == "softmax":                   # targets that are distributions (rows sum to 1)
        T = rng.dirichlet(np.ones(SIZES[-1]), B).astype(np.float32)
    else:
        T = rng.uniform(0, 1, (B, SIZES[-1])).astype(np.float32)
    return net, X, T


def params_of(net):
    return [p for pair in zip(net.weights, net.biases) for p in pair]


def numerical_gradients(params64, X, T, spec, h=1e-6):
    grads = []
    for p in params64:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            up = reference_loss(params64, X, T, *spec)[0]
            p[idx] = old - h
            down = reference_loss(params64, X, T, *spec)[0]
            p[idx] = old
            g[idx] = (up - down) / (2 * h)
        grads.append(g)
    return grads


@pytest.mark.parametrize("output,loss", OUTPUT_LOSS)
@pytest.mark.parametrize("activation", HIDDEN)
def test_gradients_match_central_differences(activation, output, loss):
    spec = (activation, output, loss)
    for seed in range(20):                    # the first problem with no ReLU kink near any z
        net, X, T = make_problem(*spec, seed=seed)
        params64 = [p.astype(np.float64) for p in params_of(net)]
        value, pre = reference_loss(params64, X, T, *spec)
        if activation != "relu" or min(np.abs(z).min() for z in pre) > 1e-3:
            break
    # the loss the network reports is the reference loss
    assert net.loss_value(X, T) == pytest.approx(value, rel=1e-5, abs=1e-7)
    # every dL/dW and dL/db against float64 central differences of the reference loss
    got = [g for pair in net.gradients(X, T) for g in pair]
    want = numerical_gradients(params64, X, T, spec)
    scale = max(np.abs(w).max() for w in want)
    assert scale > 1e-3                       # the check is not vacuous
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape and g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-5 * scale,
                                   err_msg=f"{'Wb'[i % 2]}{i // 2} of {spec}")


@pytest.mark.parametrize("activation,output,loss", [("tanh", "softmax", "cross_entropy"),
                                                    ("sigmoid", "sigmoid", "quadratic")])
def test_gradients_match_differences_of_the_networks_own_loss(activation, output, loss):
    """The same check in float32 with the network's own loss_value, for a few parameters:
    a step of 1e-2 keeps the float32 rounding (~1e-7 / 1e-2) far below the tolerance."""
    net, X, T = make_problem(activation, output, loss, seed=3)
    grads = [g.copy() for pair in net.gradients(X, T) for g in pair]
    h = 1e-2
    for p, g in zip(params_of(net), grads):
        for idx in list(np.ndindex(p.shape))[:4]:
            old = p[idx]
            p[idx] = old + h
            up = net.loss_value(X, T)
            p[idx] = old - h
            down = net.loss_value(X, T)
            p[idx] = old
            assert (up - down) / (2 * h) == pytest.approx(float(g[idx]), rel=2e-2, abs=2e-4)


def test_cross_entropy_with_linear_output_is_rejected():
    with pytest.raises(ValueError, match="cross_entropy"):
        pynn.Network([3, 2], activation="relu", output="linear", loss="cross_entropy")


@pytest.mark.parametrize("kwargs,word", [
    ({"activation": "softmax"}, "activation"), ({"output": "relu"}, "output"),
    ({"loss": "hinge"}, "loss"), ({"sizes": [784]}, "sizes"), ({"sizes": [3, 0, 2]}, "sizes"),
    ({"sizes": "784-x-10"}, "784-x-10")])
def test_bad_architecture_is_rejected(kwargs, word):
    args = {"sizes": [3, 2], **kwargs}
    with pytest.raises(ValueError, match=word):
        pynn.Network(**args)


# ---- training solves a small problem, with each optimiser ----




OPTIMIZERS = {"sgd": lambda: pynn.SGD(lr=0.1), "momentum": lambda: pynn.SGD(lr=0.02, momentum=0.9),
              "adam": lambda: pynn.Adam(lr=0.005)}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_training_solves_a_separable_problem(name):
    """10 epochs on 4,000 samples reach >97% on them and >94% on 2,000 unseen ones
    (measured: about 98.5% and 96% for each optimiser)."""
    X, y = separable_problem(4000, seed=0)
    X_test, y_test = separable_problem(2000, seed=1)
    net = pynn.Network([20, 32, 4], seed=0)
    before = net.loss_value(X, y)
    history = net.fit(X, y, epochs=10, batch_size=32, optimizer=OPTIMIZERS[name]())
    assert len(history["loss"]) == 10
    assert history["loss"][-1] < 0.2 * before
    assert net.accuracy(X, y) > 0.97
    assert net.accuracy(X_test, y_test) > 0.94      # it generalises, not memorises


@pytest.mark.parametrize("output,loss", OUTPUT_LOSS)
def test_training_reports_the_loss_of_the_batch(output, loss):
    """With lr = 0 and one batch holding every sample, the epoch's loss in the history is the
    loss of the untouched network (training computes it along the way, in place)."""
    net, X, T = make_problem("tanh", output, loss)
    before = net.loss_value(X, T)
    history = net.fit(X, T, epochs=1, batch_size=len(X), optimizer=pynn.SGD(lr=0.0), shuffle=False)
    assert history["loss"][0] == pytest.approx(before, rel=1e-6)
    assert net.loss_value(X, T) == before


def test_quadratic_loss_with_sigmoid_units_learns_too():
    """The paper's own set-up: sigmoid units, the quadratic loss (eq. 17, 22) and plain
    gradient descent (section 4.3). Measured: about 98.5% on the training set."""
    X, y = separable_problem(4000, seed=0)
    X_test, y_test = separable_problem(2000, seed=1)
    net = pynn.Network([20, 32, 4], activation="sigmoid", output="sigmoid", loss="quadratic", seed=0)
    net.fit(X, y, epochs=10, batch_size=16, optimizer=pynn.SGD(lr=0.5))
    assert net.accuracy(X, y) > 0.95
    assert net.accuracy(X_test, y_test) > 0.95


# ---- the network's shape and initialisation ----

def test_repr_names_the_architecture():
    net = pynn.Network([784, 800, 10], activation="relu", output="softmax", loss="cross_entropy")
    assert repr(net) == str(net) == ("Network([Linear(784, 800), ReLU(), Linear(800, 10)], "
                                     "output=softmax, loss=cross_entropy)")
    assert str(pynn.Network("5-4-3", "tanh", "sigmoid", "quadratic")) == \
        "Network([Linear(5, 4), Tanh(), Linear(4, 3)], output=sigmoid, loss=quadratic)"


def test_weights_are_n_out_by_n_in():
    net = pynn.Network([7, 5, 3, 2])
    assert [W.shape for W in net.weights] == [(5, 7), (3, 5), (2, 3)]
    assert [b.shape for b in net.biases] == [(5,), (3,), (2,)]
    assert all(p.dtype == np.float32 and p.flags.c_contiguous for p in params_of(net))
    assert all((b == 0).all() for b in net.biases)


def test_he_initialisation_for_relu():
    net = pynn.Network([784, 800, 10], activation="relu", output="softmax", seed=1)
    W = net.weights[0].astype(np.float64)                # 627,200 draws
    assert abs(W.mean()) < 0.01 * np.sqrt(2 / 784)
    assert W.std() == pytest.approx(np.sqrt(2 / 784), rel=0.01)    # variance 2/n_in


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "linear"])
def test_xavier_initialisation_for_the_others(activation):
    net = pynn.Network([784, 800, 10], activation=activation, output="softmax", seed=1)
    for W, (n_in, n_out) in zip(net.weights, [(784, 800), (800, 10)]):
        limit = np.sqrt(6 / (n_in + n_out))              # uniform on [-limit, limit]
        W = W.astype(np.float64)
        assert np.abs(W).max() <= limit
        assert np.abs(W).max() > 0.99 * limit
        assert W.std() == pytest.approx(limit / np.sqrt(3), rel=0.03)
        assert abs(W.mean()) < 0.05 * limit


def test_same_seed_gives_same_weights():
    a, b, c = (pynn.Network([20, 16, 4], seed=s) for s in (7, 7, 8))
    assert all(np.array_equal(x, y) for x, y in zip(params_of(a), params_of(b)))
    assert not np.array_equal(a.weights[0], c.weights[0])


# ---- inputs and targets ----

def test_int_labels_and_one_hot_targets_give_the_same_gradients():
    for output, loss in OUTPUT_LOSS:
        net, X, _ = make_problem("relu", output, loss)
        labels = np.array([0, 2, 1, 1, 0, 2, 2])
        one_hot = np.eye(3, dtype=np.float32)[labels]
        g_labels = [g.copy() for pair in net.gradients(X, labels) for g in pair]
        g_one_hot = [g.copy() for pair in net.gradients(X, one_hot) for g in pair]
        for a, b in zip(g_labels, g_one_hot):
            assert np.array_equal(a, b), (output, loss)
        assert net.loss_value(X, labels) == net.loss_value(X, one_hot)


def test_uint8_inputs_are_scaled_to_0_1():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (9, 4, 4), dtype=np.uint8)
    pixels[0, 0, 0], pixels[0, 0, 1] = 0, 255
    net = pynn.Network([16, 8, 3], seed=0)
    scaled = pixels.reshape(9, 16).astype(np.float32) * np.float32(1 / 255)
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert np.array_equal(net.predict_proba(pixels), net.predict_proba(scaled))
    labels = np.arange(9) % 3
    for (dW, db), (dW2, db2) in zip(net.gradients(pixels, labels), net.gradients(scaled, labels)):
        assert np.array_equal(dW, dW2) and np.array_equal(db, db2)


def test_predict_gives_the_most_probable_class():
    net, X, _ = make_problem("tanh", "softmax", "cross_entropy")
    p = net.predict_proba(X)
    np.testing.assert_allclose(p.astype(np.float64).sum(axis=1), 1.0, atol=1e-6)
    assert net.predict(X).tolist() == np.argmax(p, axis=1).tolist()
    # a single sample as a vector is one row
    assert net.predict_proba(X[0]).shape == (1, 3)


@pytest.mark.parametrize("X,y,exc,word", [
    (np.zeros((4, 5), np.float64), np.zeros(4, np.int64), TypeError, "float32"),
    (np.zeros((4, 6), np.float32), np.zeros(4, np.int64), ValueError, "5 values"),
    ([[0.0] * 5], np.zeros(1, np.int64), TypeError, "numpy"),
    (np.zeros((4, 5), np.float32), np.array([0, 1, 3, 0]), ValueError, "labels"),
    (np.zeros((4, 5), np.float32), np.array([0, 1, -1, 0]), ValueError, "labels"),
    (np.zeros((4, 5), np.float32), np.zeros(3, np.int64), ValueError, "3 labels"),
    (np.zeros((4, 5), np.float32), np.zeros((4, 2), np.float32), ValueError, "targets"),
    (np.zeros((4, 5), np.float32), np.zeros((4, 3), np.float64), TypeError, "float32"),
])
def test_bad_inputs_and_targets_are_rejected(X, y, exc, word):
    net = pynn.Network(SIZES)
    with pytest.raises(exc, match=word):
        net.gradients(X, y)


def test_gradients_leave_the_weights_alone():
    net, X, T = make_problem("relu", "softmax", "cross_entropy")
    before = [p.copy() for p in params_of(net)]
    net.gradients(X, T)
    net.loss_value(X, T)
    assert all(np.array_equal(a, b) for a, b in zip(before, params_of(net)))


def test_gradient_is_a_mean_over_the_batch():
    """Doubling the batch by repeating it leaves the loss and every gradient unchanged."""
    for output, loss in OUTPUT_LOSS:
        net, X, T = make_problem("sigmoid", output, loss)
        g1 = [g.copy() for pair in net.gradients(X, T) for g in pair]
        l1 = net.loss_value(X, T)
        X2, T2 = np.concatenate([X, X]), np.concatenate([T, T])
        g2 = [g.copy() for pair in net.gradients(X2, T2) for g in pair]
        assert net.loss_value(X2, T2) == pytest.approx(l1, rel=1e-6)
        for a, b in zip(g1, g2):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_all_combinations_are_covered():
    """The gradient check above runs every valid (activation, output, loss)."""
    valid = [(a, o, l) for a, o, l in itertools.product(HIDDEN, ["softmax", "sigmoid", "linear"],
                                                        ["quadratic", "cross_entropy"])
             if not (o == "linear" and l == "cross_entropy")]
    assert sorted(valid) == sorted((a, o, l) for a in HIDDEN for o, l in OUTPUT_LOSS)
