"""Dropout: the kernels against numpy, the network's gradients with a fixed mask against central
differences, prediction untouched by it, training with it, saving it, and the sweep's setting."""
import csv
import os

import numpy as np
import pytest

import pynn
from pynn import ops
from pynn.layers import Activation, Dropout, Linear, ReLU
from pynn.network import Network
from pynn.study import common

from conftest import separable_problem, study


# ---- the kernels ----

def draw(n, p, seed=1, stream=0):
    a = np.random.default_rng(0).normal(size=n).astype(np.float32)
    mask = np.empty_like(a)
    out = ops.dropout_forward(a.copy(), mask, p, seed, stream)
    return a, mask, out


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_mask_is_zero_or_the_inverse_keep_rate_and_drops_p(p):
    a, mask, out = draw(100_000, p)
    scale = np.float32(1.0) / np.float32(1.0 - np.float32(p))
    assert set(np.unique(mask)) == {np.float32(0.0), scale}
    assert abs(np.mean(mask == 0) - p) < 0.01
    np.testing.assert_array_equal(out, a * mask)


def test_same_seed_and_stream_give_the_same_mask_others_differ():
    _, m1, _ = draw(10_000, 0.5, seed=7, stream=3)
    _, m2, _ = draw(10_000, 0.5, seed=7, stream=3)
    _, m3, _ = draw(10_000, 0.5, seed=7, stream=4)
    _, m4, _ = draw(10_000, 0.5, seed=8, stream=3)
    np.testing.assert_array_equal(m1, m2)
    for other in (m3, m4):   # independent masks agree on about half of the units
        assert 0.4 < np.mean((m1 == 0) == (other == 0)) < 0.6


def test_masks_of_neighbouring_elements_are_not_correlated():
    _, mask, _ = draw(100_000, 0.5)
    dropped = (mask == 0).astype(np.float64)
    assert abs(np.corrcoef(dropped[:-1], dropped[1:])[0, 1]) < 0.02


def test_p_zero_is_the_identity():
    a, mask, out = draw(1000, 0.0)
    np.testing.assert_array_equal(mask, np.ones_like(mask))
    np.testing.assert_array_equal(out, a)


def test_backward_multiplies_by_the_mask():
    _, mask, _ = draw((40, 30), 0.3)
    d = np.random.default_rng(2).normal(size=(40, 30)).astype(np.float32)
    np.testing.assert_array_equal(ops.dropout_backward(d.copy(), mask), d * mask)


@pytest.mark.parametrize("p", [1.0, -0.1, float("nan"), 2.0])
def test_bad_p_is_rejected(p):
    with pytest.raises(ValueError, match="p"):
        draw(10, p)


def test_bad_arrays_are_rejected():
    a = np.zeros(10, np.float32)
    with pytest.raises(TypeError, match="a"):
        ops.dropout_forward(a.astype(np.float64), np.zeros(10, np.float32), 0.5, 0, 0)
    with pytest.raises(ValueError, match="mask"):
        ops.dropout_forward(a, np.zeros(11, np.float32), 0.5, 0, 0)
    with pytest.raises(ValueError, match="mask"):
        ops.dropout_forward(a, a, 0.5, 0, 0)
    with pytest.raises(ValueError, match="read-only"):
        ro = np.zeros(10, np.float32)
        ro.setflags(write=False)
        ops.dropout_forward(ro, np.zeros(10, np.float32), 0.5, 0, 0)
    with pytest.raises(ValueError, match="C-contiguous"):
        ops.dropout_backward(np.zeros((4, 4), np.float32).T, np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="seed"):
        ops.dropout_forward(a, np.zeros(10, np.float32), 0.5, -1, 0)


# ---- the network ----

def loss_with_mask(net, X, T, step):
    """The training loss with the masks of training step ``step`` (the stream is reused), and
    which hidden units are positive (a difference across a ReLU's kink is no derivative)."""
    net.dropout_step = step
    out = net.forward(X)
    hidden = [x for layer, x in zip(net.layers, net.layer_outputs()[1:]) if isinstance(layer, Activation)]
    return float(ops.softmax_cross_entropy(out, T)[0]), [a > 0 for a in hidden]


def dropped(net):
    """For each Dropout layer of the last training forward: which of the units that reached it
    nonzero it set to zero (the units that reached it as zero tell nothing)."""
    outs = net.layer_outputs()
    return [outs[i + 1][outs[i] != 0] == 0 for i, layer in enumerate(net.layers)
            if isinstance(layer, Dropout)]


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_gradients_with_dropout_match_central_differences(activation):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(9, 6)).astype(np.float32)
    y = rng.integers(0, 3, 9)
    net = Network([6, 7, 5, 3], activation, "softmax", "cross_entropy", seed=2, dropout=0.4)
    T = net.targets(y, 9)
    step = net.dropout_step
    grads = net.gradients(X, y)
    assert net.dropout_step == step + 1
    loss_with_mask(net, X, T, step)
    assert 0 < np.mean(dropped(net)[0]) < 1             # some units dropped, some kept
    h, checked = 3e-3, 0
    for layer, (W, b) in enumerate(zip(net.weights, net.biases)):
        for param, g in ((W, grads[layer][0]), (b, grads[layer][1])):
            for idx in list(np.ndindex(param.shape))[::3]:
                old = param[idx]
                param[idx] = old + h
                up, signs_up = loss_with_mask(net, X, T, step)
                param[idx] = old - h
                down, signs_down = loss_with_mask(net, X, T, step)
                param[idx] = old
                if activation == "relu" and any((u != d).any() for u, d in zip(signs_up, signs_down)):
                    continue
                checked += 1
                assert g[idx] == pytest.approx((up - down) / (2 * h), abs=2e-4, rel=2e-2), (layer, idx)
    assert checked > 30


def test_prediction_ignores_dropout():
    X, y = separable_problem(300, seed=0)
    net = Network([20, 16, 16, 4], "tanh", seed=0, dropout=0.5)
    plain = Network([20, 16, 16, 4], "tanh", seed=5)
    plain.weights = [w.copy() for w in net.weights]
    plain.biases = [b.copy() for b in net.biases]
    net.fit(X, y, epochs=1)                              # draws masks; predicting must not
    plain.weights = [w.copy() for w in net.weights]
    plain.biases = [b.copy() for b in net.biases]
    for f in ("predict_proba", "predict"):
        np.testing.assert_array_equal(getattr(net, f)(X), getattr(plain, f)(X))
        np.testing.assert_array_equal(getattr(net, f)(X), getattr(net, f)(X))
    np.testing.assert_array_equal(net.predict_one(X[0]), plain.predict_one(X[0]))
    np.testing.assert_allclose(net.forward(X, keep=False), plain.forward(X, keep=False), rtol=1e-5)
    assert net.loss_value(X, y) == pytest.approx(plain.loss_value(X, y), rel=1e-6)


def test_training_forward_drops_units_and_keeps_the_expected_size():
    X, _ = separable_problem(2000, seed=0)
    net = Network([20, 64, 4], "relu", seed=0, dropout=0.5)
    net.forward(X)
    assert [type(x) for x in net.layers] == [Linear, ReLU, Dropout, Linear]
    hidden, after = net.layer_outputs()[2:4]
    assert abs(np.mean(dropped(net)[0]) - 0.5) < 0.02
    kept = after != 0        # each unit dropped (0) or kept and scaled by 1/(1-p) = 2
    np.testing.assert_array_equal(after[~kept], 0.0)
    np.testing.assert_allclose(after[kept], 2 * hidden[kept], rtol=1e-6)
    assert after.mean() == pytest.approx(hidden.mean(), rel=0.05)   # inverted: 1/(1-p)


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), "0.5", True])
def test_bad_dropout_is_rejected(value):
    with pytest.raises(ValueError, match="dropout"):
        Network([4, 3, 2], dropout=value)


def test_dropout_zero_changes_nothing():
    X, y = separable_problem(500, seed=0)
    a, b = Network([20, 16, 4], seed=0), Network([20, 16, 4], seed=0, dropout=0.0)
    a.fit(X, y, epochs=2)
    b.fit(X, y, epochs=2)
    for wa, wb in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(wa, wb)
    assert repr(b) == "Network([Linear(20, 16), ReLU(), Linear(16, 4)], output=softmax, loss=cross_entropy)"
    assert "ReLU(), Dropout(0.5), Linear(16, 4)" in repr(Network([20, 16, 4], dropout=0.5))


@pytest.mark.parametrize("make_opt", [lambda: pynn.SGD(lr=0.02, momentum=0.9),
                                      lambda: pynn.Adam(lr=0.005)])
def test_fit_with_dropout_learns_and_is_reproducible(make_opt):
    X, y = separable_problem(4000, seed=0)
    X_test, y_test = separable_problem(2000, seed=1)
    runs = []
    for _ in range(2):
        net = Network([20, 64, 4], seed=0, dropout=0.3)
        assert not net.uses_fused_step(make_opt())          # the layer path, which drops
        history = net.fit(X, y, epochs=8, batch_size=32, optimizer=make_opt())
        runs.append(net)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert net.accuracy(X_test, y_test) > 0.93
    for wa, wb in zip(runs[0].weights, runs[1].weights):
        np.testing.assert_array_equal(wa, wb)
    other = Network([20, 64, 4], seed=1, dropout=0.3)
    other.fit(X, y, epochs=1, batch_size=32, optimizer=make_opt())
    assert not np.array_equal(other.weights[0], runs[0].weights[0])


def test_train_batch_with_dropout_takes_the_layer_path():
    X, y = separable_problem(64, seed=0)
    net = Network([20, 16, 4], seed=0, dropout=0.5)
    before = net.dropout_step
    loss = net.train_batch(X, y, pynn.SGD(lr=0.1))
    assert np.isfinite(loss) and net.dropout_step == before + 1


def test_save_and_load_keep_dropout(tmp_path):
    net = Network([20, 8, 4], "sigmoid", seed=0, dropout=0.25)
    net.save(tmp_path / "m.npz")
    back = pynn.modelfile.load(tmp_path / "m.npz")
    assert back.dropout == 0.25 and repr(back) == repr(net)
    for wa, wb in zip(net.weights + net.biases, back.weights + back.biases):
        np.testing.assert_array_equal(wa, wb)


def test_a_file_without_dropout_loads_as_zero(tmp_path):
    import json
    arrays = pynn.modelfile.network_arrays(Network([5, 3, 2], seed=0))
    arrays["format_version"] = np.array(1)        # the first format's architecture
    arrays["architecture"] = np.array(json.dumps(
        {"sizes": [5, 3, 2], "activation": "relu", "output": "softmax", "loss": "cross_entropy"}))
    np.savez(tmp_path / "old.npz", **arrays)
    assert pynn.modelfile.load(tmp_path / "old.npz").dropout == 0.0


def test_checkpoint_resumes_the_masks(tmp_path):
    from pynn import checkpoint
    X, y = separable_problem(200, seed=0)
    net, opt = Network([20, 8, 4], seed=0, dropout=0.5), pynn.SGD(lr=0.1)
    net.fit(X, y, epochs=1, optimizer=opt)
    checkpoint.save_checkpoint(tmp_path, net, opt, 0, {})
    back = checkpoint.load_checkpoint(tmp_path).net
    assert (back.dropout_seed, back.dropout_step) == (net.dropout_seed, net.dropout_step)


# ---- the sweep ----

def test_config_keys_of_older_runs_still_match():
    old = {k: v for k, v in common.BASE.items() if k != "dropout"}
    assert common.config_key(dict(old, dropout=0.0)) == common.config_key(old)
    assert common.config_key(dict(old, dropout=0.5)) != common.config_key(old)
    assert common.make_network(dict(common.BASE, dropout=0.2)).dropout == 0.2
    assert common.make_network(old).dropout == 0.0


def test_an_older_csv_reads_with_dropout_zero_and_grows_a_column(tmp_path):
    path = str(tmp_path / "r.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "hidden"])
        w.writerow(["k1", "8"])
    results = common.Results(path, ["key", "hidden", "dropout"])
    assert results.rows() == [{"key": "k1", "hidden": "8", "dropout": "0.0"}]
    results.append([{"key": "k2", "hidden": "16", "dropout": 0.5}])
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows == [{"key": "k1", "hidden": "8", "dropout": "0.0"},
                    {"key": "k2", "hidden": "16", "dropout": "0.5"}]


def test_sweep_quick_with_dropout(tmp_path, mnist_available, capsys):  # noqa: F811
    out = str(tmp_path / "sweep")
    assert study(["sweep", "--quick", "--out", out, "--search", "grid",
                  "--set", "dropout=0.0,0.5", "--set", "epochs=1", "--final", "2"]) == 0
    with open(os.path.join(out, "sweep.csv")) as f:
        rows = list(csv.DictReader(f))
    assert sorted(float(r["dropout"]) for r in rows) == [0.0, 0.5]
    assert all(0 <= float(r["val_error"]) < 0.9 for r in rows)
    models = os.path.join(out, "models")
    assert {pynn.modelfile.load(os.path.join(models, f)).dropout for f in os.listdir(models)} == {0.0, 0.5}
    assert "dropout" in open(os.path.join(out, "sweep.md")).read()
    capsys.readouterr()
    study(["sweep", "--quick", "--out", out, "--search", "grid",
           "--set", "dropout=0.0,0.5", "--set", "epochs=1", "--report-only"])
    assert "2 already in" in capsys.readouterr().out
