"""Properties of the Network entry points: random architectures, inputs of every dtype, layout
and shape, labels of every kind, NaN and Inf. Each call gives the right answer (checked against
a float64 numpy forward pass) or raises TypeError/ValueError naming what is wrong; training on
data that makes the loss NaN raises FloatingPointError and keeps the last good weights.
Run in a child process by tests/test_properties.py."""
import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import pynn
from strategies import SETTINGS, close, values

np.seterr(all="ignore")

ACT = {"relu": lambda z: np.maximum(z, 0), "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
       "tanh": np.tanh, "linear": lambda z: z}


def reference_output(net, X):
    """The network's output in float64 numpy: z = a W^T + b, a = f(z), layer after layer."""
    a = np.asarray(X, dtype=np.float64).reshape(len(X), net.sizes[0])
    for i, (W, b) in enumerate(zip(net.weights, net.biases)):
        z = a @ W.astype(np.float64).T + b
        last = i == len(net.weights) - 1
        if last and net.output == "softmax":
            e = np.exp(z - z.max(axis=1, keepdims=True))
            a = e / e.sum(axis=1, keepdims=True)
        else:
            a = ACT[net.output if last else net.activation](z)
    return a


@st.composite
def networks(draw):
    sizes = draw(st.lists(st.integers(1, 6), min_size=2, max_size=4))
    output = draw(st.sampled_from(["softmax", "sigmoid", "linear"]))
    loss = "quadratic" if output == "linear" else draw(st.sampled_from(["cross_entropy", "quadratic"]))
    return pynn.Network(sizes, draw(st.sampled_from(sorted(ACT))), output, loss,
                        seed=draw(st.integers(0, 3)))


# the inputs a network gets: every dtype, layout and shape, judged afterwards
INPUT_KINDS = ["float32"] * 4 + ["uint8", "images", "vector", "strided", "reversed", "fortran",
                                 "readonly", "float64", "int64", "bool", "object", "wrong_width",
                                 "3d_wrong", "list", "none"]


@st.composite
def inputs(draw, n_in):
    kind = draw(st.sampled_from(INPUT_KINDS))
    n = draw(st.integers(0, 5))
    X = draw(values((n, n_in), special=draw(st.integers(0, 5)) == 0))
    if kind == "uint8":
        return np.abs(np.nan_to_num(X, posinf=255, neginf=0)).clip(0, 255).astype(np.uint8), True
    if kind == "images":            # (n, a, b) with a*b == n_in
        return X.reshape(n, 1, n_in), True
    if kind == "vector":
        return X[0] if n else X.reshape(n_in)[:0], n > 0
    if kind == "strided":
        return draw(values((n, 2 * n_in), special=False))[:, ::2], True
    if kind == "reversed":
        return X[::-1], True
    if kind == "fortran":
        return np.asfortranarray(X), True
    if kind == "readonly":
        X.flags.writeable = False
        return X, True
    if kind in ("float64", "int64", "bool", "object"):
        return np.nan_to_num(X).astype(kind), False
    if kind == "wrong_width":
        return draw(values((n, n_in + draw(st.integers(1, 3))), special=False)), False
    if kind == "3d_wrong":
        return X.reshape(n, n_in, 1)[:, :, [0, 0]], False
    if kind == "list":
        return X.tolist(), False
    if kind == "none":
        return None, False
    return X, True


def as_float_rows(net, X):
    X = np.asarray(X)
    X = X.reshape(-1, net.sizes[0])
    return X.astype(np.float64) / 255.0 if X.dtype == np.uint8 else X.astype(np.float64)


def refused(excinfo, names):
    err = excinfo.value
    assert isinstance(err, (TypeError, ValueError)), f"{type(err).__name__}: {err}"
    first = str(err).split()[0] if str(err) else ""
    assert first in names, f"the message {str(err)!r} does not begin with one of {names}"


@SETTINGS
@given(networks(), st.data())
def test_predict_proba_and_predict(net, data):
    X, ok = data.draw(inputs(net.sizes[0]))
    if not ok:
        with pytest.raises(Exception) as e:
            net.predict_proba(X)
        refused(e, ["X"])
        return
    rows = as_float_rows(net, X)
    out = net.predict_proba(X)
    assert out.dtype == np.float32 and out.shape == (len(rows), net.sizes[-1])
    expected = reference_output(net, rows)
    close(out, expected, rtol=1e-3, atol=1e-4)
    labels = net.predict(X)
    assert labels.shape == (len(rows),) and labels.dtype == np.int64
    for row, label in zip(out, labels):
        assert label == (-1 if np.isnan(row).any() else np.argmax(row))


LABEL_KINDS = ["int64", "int64", "uint8", "int32", "onehot", "out_of_range", "negative",
               "float64", "bool", "wrong_length", "2d_int", "onehot_float64", "list"]


@st.composite
def labels(draw, n, n_out):
    kind = draw(st.sampled_from(LABEL_KINDS))
    y = np.array(draw(st.lists(st.integers(0, n_out - 1), min_size=n, max_size=n)), dtype=np.int64)
    if kind in ("uint8", "int32"):
        return y.astype(kind), True
    if kind == "onehot":
        return np.eye(n_out, dtype=np.float32)[y], True
    if kind == "out_of_range":
        return (y + n_out) if n else y, n == 0
    if kind == "negative":
        return (y - n_out) if n else y, n == 0
    if kind in ("float64", "bool"):
        return y.astype(kind), False
    if kind == "wrong_length":
        return np.zeros(n + 1, dtype=np.int64), False
    if kind == "2d_int":
        return y.reshape(n, 1), False
    if kind == "onehot_float64":
        return np.eye(n_out)[y], False
    if kind == "list":
        return y.tolist(), False
    return y, True


@SETTINGS
@given(networks(), st.data())
def test_fit_and_evaluate(net, data):
    X, x_ok = data.draw(inputs(net.sizes[0]))
    n = len(as_float_rows(net, X)) if x_ok else 3
    y, y_ok = data.draw(labels(n, net.sizes[-1]))
    batch_size = data.draw(st.sampled_from([1, 2, 32, 0, -1, 2.5, True]))
    epochs = data.draw(st.sampled_from([1, 2, 0, -1, 1.0]))
    bs_ok = isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1
    ep_ok = isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 0
    opt = data.draw(st.sampled_from(["sgd", "momentum", "adam"]))
    optimizer = {"sgd": pynn.SGD(lr=0.05), "momentum": pynn.SGD(lr=0.05, momentum=0.9),
                 "adam": pynn.Adam(lr=0.01)}[opt]
    if not (x_ok and y_ok and bs_ok and ep_ok):
        with pytest.raises(Exception) as e:
            net.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer)
        refused(e, ["X", "y", "labels", "targets", "batch_size", "epochs"])
        return
    rows = as_float_rows(net, X)
    if n == 0:
        with pytest.raises(ValueError) as e:
            net.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer)
        refused(e, ["X"])
        return
    before = [w.copy() for w in net.weights + net.biases]
    try:
        history = net.fit(X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer)
    except FloatingPointError as e:
        # only non-finite data may do this, and the weights stay finite (the last good ones)
        assert not np.isfinite(rows).all() or not np.isfinite(np.asarray(y, dtype=np.float64)).all(), e
        assert "epoch" in str(e) and "batch" in str(e) and "learning rate" in str(e)
        for w in net.weights + net.biases:
            assert np.isfinite(w).all(), "the weights at the error are not the last good ones"
        return
    assert len(history["loss"]) == epochs
    assert all(np.isfinite(history["loss"]))
    if epochs == 0:
        assert all(np.array_equal(a, b) for a, b in zip(before, net.weights + net.biases))
    acc = net.accuracy(X, y)
    assert 0.0 <= acc <= 1.0
    loss = net.loss_value(X, y)
    if np.isfinite(rows).all():
        assert np.isfinite(loss) and loss >= 0.0
    else:              # NaN or Inf in: whatever the arithmetic gives (sigmoid(inf) is 1), no error
        assert isinstance(loss, float)


@SETTINGS
@given(networks(), st.data())
def test_nan_in_a_batch_keeps_the_weights_from_before_that_batch(net, data):
    # Clean data, except one sample that makes the loss NaN: fit stops at that batch, names
    # the epoch and batch, and the weights are those after the last good batch.
    n, batch_size = data.draw(st.integers(2, 12)), data.draw(st.integers(1, 4))
    X = data.draw(values((n, net.sizes[0]), special=False))
    bad = data.draw(st.integers(0, n - 1))
    X[bad, data.draw(st.integers(0, net.sizes[0] - 1))] = data.draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    y = np.zeros(n, dtype=np.int64)
    opt = data.draw(st.sampled_from([pynn.SGD(lr=0.01), pynn.SGD(lr=0.01, momentum=0.5),
                                     pynn.Adam(lr=0.01)]))
    # where the bad sample lands: replay the shuffle with a copy of the generator
    replay = np.random.Generator(type(net.rng.bit_generator)())
    replay.bit_generator.state = net.rng.bit_generator.state
    perm = replay.permutation(n)
    bad_batch = int(np.where(perm == bad)[0][0]) // batch_size
    good = perm[:bad_batch * batch_size]
    twin = pynn.Network(net.sizes, net.activation, net.output, net.loss)
    twin.weights = [w.copy() for w in net.weights]
    twin.biases = [b.copy() for b in net.biases]
    twin_opt = type(opt)(**{k: getattr(opt, k) for k in ("lr", "momentum") if hasattr(opt, k)})
    if len(good):
        twin.fit(X[good], y[good], epochs=1, batch_size=batch_size, optimizer=twin_opt, shuffle=False)
    try:
        net.fit(X, y, epochs=1, batch_size=batch_size, optimizer=opt)
    except FloatingPointError as e:
        event("stopped at the bad batch")
        assert f"epoch 1, batch {bad_batch + 1}" in str(e), str(e)
        assert "learning rate" in str(e)
    else:
        event("the Inf was harmless")   # relu of -Inf is 0: nothing to check
        return
    for got, want in zip(net.weights + net.biases, twin.weights + twin.biases):
        assert np.array_equal(got, want), "the weights at the error are not those before the bad batch"


sizes_junk = st.one_of(
    st.lists(st.integers(-2, 6), min_size=0, max_size=4),
    st.sampled_from(["784-30-10", "3-x-2", "", "2", [2.5, 3], [True, 2], None, 7,
                     [2 ** 40, 2 ** 40], [3, 2 ** 62, 2], [2 ** 33, 2 ** 31]]))


@SETTINGS
@given(sizes_junk, st.sampled_from(["relu", "sigmoid", "softmax", "gelu", None]),
       st.sampled_from(["softmax", "sigmoid", "linear", "relu"]),
       st.sampled_from(["cross_entropy", "quadratic", "hinge"]))
def test_construction(sizes, activation, output, loss):
    try:
        net = pynn.Network(sizes, activation, output, loss)
    except (TypeError, ValueError) as e:
        first = str(e).split()[0]
        assert first in ("sizes", "architecture", "activation", "output", "loss", "cross_entropy",
                         "layer"), str(e)
        return
    assert all(w.shape == (o, i) for w, i, o in zip(net.weights, net.sizes, net.sizes[1:]))
    assert repr(net).startswith("Network(")
