"""pynn study: the noise functions, k-NN and nearest centroid against numpy references, the
three implementations of the lang benchmark against each other, the resume logic, and every
study command's --quick run producing its tables (and plots when matplotlib is installed)."""
import csv
import glob
import json
import os
import sys
import threading
import time

import numpy as np
import pytest

import pynn
from pynn.checkpoint import load_checkpoint
from pynn.modelfile import load
from pynn.network import Network
from pynn.optim import SGD
from pynn.study import baselines, cluster, common, compare, lang, noise
from pynn.study.classic import KNearest, NearestCentroid
from pynn.study.sweep import configurations, parse_settings
from conftest import study


def digits(n=40, seed=0):
    """Synthetic digit-like images: a few bright strokes on a dark 28x28 field."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, 28, 28), dtype=np.float32)
    for i in range(n):
        r, c = rng.integers(6, 20, 2)
        X[i, r:r + 3, 5:23] = 1.0
        X[i, 5:23, c:c + 2] = 0.8
        X[i, 8:20, 8 + i % 8] = 0.6
    return X.reshape(n, 784)


# ---- noise ----

@pytest.mark.parametrize("name", list(noise.NOISES))
def test_noise_level_zero_is_identity_and_input_untouched(name):
    X = digits()
    before = X.copy()
    assert np.array_equal(noise.apply(name, X, 0, rng=1), X)
    out = noise.apply(name, X, 3, rng=1)
    assert np.array_equal(X, before)
    assert out.shape == X.shape and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6


@pytest.mark.parametrize("name", list(noise.NOISES))
def test_noise_effect_grows_with_level(name):
    X = digits(60)
    change = [np.abs(noise.apply(name, X, level, rng=3) - X).mean()
              for level in range(len(noise.LEVELS[name]))]
    assert change[0] == 0.0
    assert all(b > a for a, b in zip(change, change[1:])), change


@pytest.mark.parametrize("name", list(noise.NOISES))
def test_noise_is_seeded_and_keeps_the_layout(name):
    X = digits()
    a = noise.apply(name, X, 4, rng=7)
    assert np.array_equal(a, noise.apply(name, X, 4, rng=np.random.default_rng(7)))
    as_images = noise.apply(name, X.reshape(-1, 28, 28), 4, rng=7)
    assert as_images.shape == (len(X), 28, 28)
    assert np.array_equal(as_images.reshape(len(X), 784), a)
    if name in ("gaussian", "salt_pepper", "shift", "rotate", "occlude"):
        assert not np.array_equal(a, noise.apply(name, X, 4, rng=8))


def test_noise_known_values():
    img = np.zeros((1, 28, 28), dtype=np.float32)
    img[0, 10, 10] = 1.0
    moved = noise.shift(img, 2, rng=0)                        # exactly 2 px, bilinear
    rows, cols = np.nonzero(moved[0] > 1e-6)
    centre = np.array([(moved[0] * np.arange(28)[:, None]).sum(), (moved[0] * np.arange(28)).sum()])
    assert np.isclose(moved.sum(), 1.0, atol=1e-5)
    assert np.isclose(np.hypot(*(centre - 10)), 2.0, atol=1e-4)
    quarter = noise.rotate(img, 90, rng=0)[0]                 # (10,10) is (-3.5,-3.5) from centre
    assert quarter.max() == pytest.approx(1.0) and quarter[10, 10] == 0.0
    assert tuple(np.argwhere(quarter == quarter.max())[0]) in ((10, 17), (17, 10))
    thick = noise.thicken(img, 1)[0]
    assert thick.sum() == 5.0 and thick[9, 10] == thick[10, 11] == 1.0
    assert noise.thin(img, 1).sum() == 0.0
    blocked = noise.occlude(np.ones((50, 784), np.float32), 6, rng=0)
    assert np.all((blocked == 0).sum(axis=1) == 36)
    half = noise.salt_pepper(np.full((1, 784), 0.5, np.float32), 0.2, rng=0)
    assert 0.1 < np.mean(half != 0.5) < 0.3 and set(np.unique(half)) <= {0.0, 0.5, 1.0}


def test_noisy_test_set_is_the_same_for_every_caller():
    X = digits()
    a = noise.noisy_test_set("rotate", X, 3)
    assert np.array_equal(a, noise.noisy_test_set("rotate", X.copy(), 3))
    assert np.array_equal(a, noise.apply("rotate", X, 3, noise.TEST_SEED + 97 * 3))
    assert np.array_equal(noise.noisy_test_set("rotate", X, 0), X)


def test_noise_rejects_bad_input():
    with pytest.raises(TypeError, match="float32"):
        noise.gaussian(np.zeros((2, 784)), 0.1)
    with pytest.raises(ValueError, match="28x28"):
        noise.gaussian(np.zeros((2, 100), np.float32), 0.1)
    with pytest.raises(ValueError, match="level"):
        noise.apply("blur", digits(), 9)
    with pytest.raises(ValueError, match="noise must be one of"):
        noise.apply("fog", digits(), 1)
    with pytest.raises(ValueError, match="fraction"):
        noise.salt_pepper(digits(), 1.5)


# ---- label noise ----

@pytest.mark.parametrize("n", [1000, 37])
def test_wrong_labels_changes_exactly_the_share_each_to_another_class(n):
    y = np.random.default_rng(n).integers(0, 10, n)
    before = y.copy()
    for share in noise.LABEL_SHARES + [1.0]:
        wrong = noise.wrong_labels(y, share, rng=5)
        changed = wrong != y
        assert changed.sum() == round(share * n)          # exactly the share, never a no-op swap
        assert wrong.dtype == y.dtype and wrong.shape == y.shape
        assert wrong.min() >= 0 and wrong.max() <= 9
    assert np.array_equal(y, before)


def test_wrong_labels_are_seeded_and_nested():
    y = np.random.default_rng(0).integers(0, 10, 500)
    a = noise.wrong_labels(y, 0.3, rng=1)
    assert np.array_equal(a, noise.wrong_labels(y, 0.3, rng=np.random.default_rng(1)))
    assert not np.array_equal(a, noise.wrong_labels(y, 0.3, rng=2))
    assert np.array_equal(noise.wrong_labels(y, 0.3), noise.wrong_labels(y, 0.3, noise.LABEL_SEED))
    small, large = noise.wrong_labels(y, 0.1, rng=1), noise.wrong_labels(y, 0.4, rng=1)
    hit = small != y
    assert np.array_equal(large[hit], small[hit]) and (large != y).sum() == 200


def test_a_wrong_label_is_any_other_class_alike():
    y = np.repeat(np.arange(10), 3000)
    wrong = noise.wrong_labels(y, 1.0, rng=3)
    for c in (0, 4, 9):
        counts = np.bincount(wrong[y == c], minlength=10)
        assert counts[c] == 0
        others = np.delete(counts, c) / 3000
        assert np.all(np.abs(others - 1 / 9) < 0.025), others   # 1/9 within about 4 sigma


def test_wrong_labels_reject_bad_input():
    y = np.arange(10)
    with pytest.raises(ValueError, match="share"):
        noise.wrong_labels(y, 1.5)
    with pytest.raises(ValueError, match="share"):
        noise.wrong_labels(y, float("nan"))
    with pytest.raises(TypeError, match="integer labels"):
        noise.wrong_labels(y.astype(np.float32), 0.1)
    with pytest.raises(ValueError, match=r"labels must be in 0\.\.9"):
        noise.wrong_labels(np.array([0, 10]), 0.1)
    with pytest.raises(ValueError, match="n_classes"):
        noise.wrong_labels(y, 0.1, n_classes=1)


# ---- k-NN and nearest centroid against brute force ----

def reference_knn(Xtr, ytr, Xq, k):
    """Brute force in float64: sort every distance; majority vote, a tie to the nearest class."""
    d = ((Xq[:, None, :].astype(np.float64) - Xtr[None, :, :]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")[:, :k]
    preds = []
    for row in order:
        labels = list(ytr[row])
        counts = {c: labels.count(c) for c in labels}
        top = max(counts.values())
        preds.append(next(c for c in labels if counts[c] == top))
    return order, np.array(preds)


@pytest.mark.parametrize("k", [1, 3, 4, 7])
def test_knn_matches_brute_force(k):
    rng = np.random.default_rng(k)
    Xtr = rng.random((300, 20), dtype=np.float32)
    ytr = rng.integers(0, 5, 300)
    Xq = rng.random((60, 20), dtype=np.float32)
    knn = KNearest(k).fit(Xtr, ytr)
    order, preds = reference_knn(Xtr, ytr, Xq, k)
    assert np.array_equal(knn.neighbours(Xq), order)
    assert np.array_equal(knn.predict(Xq), preds)


def test_knn_chooses_k_on_validation_and_learns_by_storing():
    rng = np.random.default_rng(0)
    Xtr = rng.random((200, 10), dtype=np.float32)
    ytr = rng.integers(0, 3, 200)
    Xv, yv = rng.random((80, 10), dtype=np.float32), rng.integers(0, 3, 80)
    knn = KNearest().fit(Xtr, ytr)
    errors = knn.choose_k(Xv, yv, ks=(1, 3, 5))
    for k, e in errors.items():
        assert e == pytest.approx(np.mean(reference_knn(Xtr, ytr, Xv, k)[1] != yv))
    assert errors[knn.k] == min(errors.values())
    odd = np.full((1, 10), 5.0, np.float32)           # far from everything stored
    knn.k = 1
    knn.teach(odd, np.array([2]))
    assert knn.predict(odd + 0.01)[0] == 2
    with pytest.raises(ValueError, match="k must be"):
        KNearest(0)


def test_knn_taught_examples_count_like_stored_ones():
    rng = np.random.default_rng(2)
    Xtr, ytr = rng.random((200, 16), dtype=np.float32), rng.integers(0, 4, 200)
    Xnew, ynew = rng.random((30, 16), dtype=np.float32), rng.integers(0, 4, 30)
    Xq = rng.random((50, 16), dtype=np.float32)
    taught = KNearest(5).fit(Xtr, ytr)
    taught.remember(Xq, 5)
    before = taught.predict(Xq)
    assert np.array_equal(before, reference_knn(Xtr, ytr, Xq, 5)[1])
    taught.teach(Xnew, ynew)
    expect = reference_knn(np.vstack([Xtr, Xnew]), np.concatenate([ytr, ynew]), Xq, 5)[1]
    assert np.array_equal(taught.predict(Xq), expect)               # through the memo
    assert np.array_equal(taught.predict(Xq.copy()), expect)        # computed afresh


def test_nearest_centroid_matches_numpy_and_teaches_a_prototype():
    rng = np.random.default_rng(1)
    Xtr = rng.random((150, 12), dtype=np.float32)
    ytr = rng.integers(0, 4, 150)
    Xq = rng.random((40, 12), dtype=np.float32)
    model = NearestCentroid().fit(Xtr, ytr)
    means = np.stack([Xtr[ytr == c].mean(0) for c in range(4)]).astype(np.float64)
    expect = ((Xq[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert np.array_equal(model.predict(Xq), expect)
    odd = np.full((3, 12), 4.0, np.float32)
    model.teach(odd, np.array([1, 1, 1]))
    assert model.predict(odd)[0] == 1 and model.centroids.shape == (5, 12)


# ---- lang: three implementations of the same training step agree ----

def test_python_numpy_and_c_train_the_same_network():
    rng = np.random.default_rng(0)
    X = rng.random((20, 784), dtype=np.float32)
    y = rng.integers(0, 10, 20)
    net, W, b = lang.init_network()
    Wl, bl = [w.tolist() for w in W], [v.tolist() for v in b]
    lang.python_train(Wl, bl, [(list(map(float, X[i])), int(y[i])) for i in range(20)])
    Wn, bn = [w.astype(np.float64) for w in W], [v.astype(np.float64) for v in b]
    lang.numpy_train(Wn, bn, X.astype(np.float64), y)
    opt = SGD(lr=lang.LR)
    T = net.targets(y, 20)
    for s in range(0, 20, lang.BATCH):
        net.train_batch(X[s:s + lang.BATCH], T[s:s + lang.BATCH], opt)
    for layer in range(2):
        assert np.allclose(np.array(Wl[layer]), Wn[layer], atol=1e-9)
        assert np.allclose(net.weights[layer], Wn[layer], atol=1e-4)
        assert np.allclose(net.biases[layer], bn[layer], atol=1e-4)
    assert not np.allclose(net.weights[1], W[1])            # it did train


def test_python_gemm_is_the_matrix_product():
    A = [[1.0, 2.0], [3.0, 4.0]]
    B = [[5.0, 6.0], [7.0, 8.0]]
    assert lang.python_gemm(A, B) == [[19, 22], [43, 50]]     # the paper's eq. 10
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 7)), rng.random((7, 3))
    assert np.allclose(lang.python_gemm(a.tolist(), b.tolist()), a @ b)


# ---- configurations, schedules, resume ----

def test_configurations_and_settings():
    base = dict(common.BASE)
    settings = parse_settings(["hidden=30,100", "lr=0.1,0.2", "epochs=3"])
    assert settings == {"hidden": ["30", "100"], "lr": [0.1, 0.2], "epochs": [3]}
    grid = configurations("grid", base, {}, settings, 0, 0)
    assert len(grid) == 4 and all(c["epochs"] == 3 for c in grid)
    axes = configurations("axes", base, {}, settings, 0, 0)
    assert len(axes) == 4      # the base (hidden 100, lr 0.05), hidden 30, lr 0.1, lr 0.2
    assert {c["hidden"] for c in axes} == {"100", "30"}
    rand = configurations("random", base, {"hidden": ["1", "2", "3"], "l2": [0.0, 1e-4]}, {}, 5, 0)
    assert len(rand) == 5 and len({common.config_key(c) for c in rand}) == 5
    assert rand == configurations("random", base, {"hidden": ["1", "2", "3"], "l2": [0.0, 1e-4]}, {}, 5, 0)
    for bad in (["hidden"], ["depth=3"], ["lr=fast"]):
        with pytest.raises(ValueError):
            parse_settings(bad)


def test_a_config_names_a_dense_or_a_convolutional_network():
    assert common.architecture(dict(common.BASE, hidden="800-800")) == "784-800-800-10"
    assert common.architecture(dict(common.BASE, hidden="")) == "784-10"
    assert common.architecture(common.CONV) == "1x28x28-" + common.CONV_HIDDEN + "-10"
    dense = common.make_network(dict(common.BASE, hidden="30"))
    old = Network([784, 30, 10], "relu", "softmax", "cross_entropy", seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(dense.weights, old.weights))
    conv = common.make_network(dict(common.QUICK_CONV, dropout=0.5))
    kinds = [type(x).__name__ for x in conv.layers]
    assert kinds[:3] == ["Conv2d", "ReLU", "MaxPool2d"] and "Dropout" in kinds
    assert conv.predict(digits(3)).shape == (3,)
    with pytest.raises(ValueError, match="square images"):
        common.make_network(common.QUICK_CONV, n_in=700)


def test_result_files_written_before_the_later_columns_still_load(tmp_path):
    """A sweep.csv without the dropout column and a noise.csv without the net column: their
    rows read with the value the older runs had, and the next append rewrites the header."""
    from pynn.study import robustness, sweep
    old_sweep = [f for f in sweep.FIELDS if f != "dropout"]
    path = tmp_path / "sweep.csv"
    row = dict(common.BASE, key=common.config_key(common.BASE), val_error=0.1, train_seconds=1, curve="[0.1]")
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=old_sweep, extrasaction="ignore")
        w.writeheader()
        w.writerow(row)
    results = common.Results(str(path), sweep.FIELDS)
    assert results.rows()[0]["dropout"] == "0.0" and results.done() == {row["key"]}
    old_noise = [f for f in robustness.FIELDS if f != "net"]
    path = tmp_path / "noise.csv"
    with open(path, "w", newline="") as f:
        f.write(",".join(old_noise) + "\nclean,blur,0,0,0.1,2.0\n")
    results = common.Results(str(path), robustness.FIELDS, later=robustness.OLDER)
    assert results.done("net", "model") == {("dense", "clean")}
    results.append([dict(results.rows()[0], net="conv")])
    with open(path) as f:
        assert [r["net"] for r in csv.DictReader(f)] == ["dense", "conv"]


def test_learning_rate_schedules():
    c = dict(common.BASE, lr=0.1, epochs=9)
    assert [common.learning_rate(dict(c, schedule="constant"), e) for e in (0, 8)] == [0.1, 0.1]
    step = [common.learning_rate(dict(c, schedule="step"), e) for e in range(9)]
    assert step[0] == step[2] == 0.1 and step[3] == 0.05 and step[8] == 0.025
    cos = [common.learning_rate(dict(c, schedule="cosine"), e) for e in range(9)]
    assert cos[0] == pytest.approx(0.1) and all(b < a for a, b in zip(cos, cos[1:]))
    with pytest.raises(ValueError, match="schedule"):
        common.learning_rate(dict(c, schedule="wavy"), 0)


def small_problem():
    rng = np.random.default_rng(0)
    X = rng.random((400, 784), dtype=np.float32)
    y = (X[:, :392].sum(1) > X[:, 392:].sum(1)).astype(np.int64)
    return (X[:300], y[:300]), (X[300:], y[300:])


def test_training_resumes_from_its_checkpoint(tmp_path):
    train_xy, val_xy = small_problem()
    config = dict(common.BASE, hidden="8", epochs=4, batch=32, schedule="cosine", optimizer="adam",
                  lr=0.01)
    whole, curve, _ = common.train(config, train_xy, val_xy)

    class Stop(Exception):
        pass

    def stop_after_two(epoch, n, err):
        if epoch == 1:
            raise Stop
    ckpt = str(tmp_path / "run.checkpoint")          # the format of pynn train --checkpoint
    with pytest.raises(Stop):
        common.train(config, train_xy, val_xy, checkpoint=ckpt, progress=stop_after_two)
    assert load_checkpoint(ckpt).epoch == 1
    resumed, curve2, _ = common.train(config, train_xy, val_xy, checkpoint=ckpt)
    assert curve2 == curve and len(curve) == 4
    for a, b in zip(whole.weights + whole.biases, resumed.weights + resumed.biases):
        assert np.array_equal(a, b)
    # a damaged checkpoint is one line naming it, whatever part is damaged
    path = pynn.checkpoint.checkpoint_path(ckpt)
    good = pynn.modelfile.read_npz(path)
    for damage in ({"rng_state": np.array("{")}, {"rng_state": np.array('{"bit_generator": "MT19937"}')},
                   {"optimizer": np.array('{"kind": "Adam", "settings": {}, "steps": -4, "state": [2, 2, 2, 2]}')},
                   {"epoch": np.array(-7)}, {"history": np.array("[" * 100000 + "]" * 100000)}):
        np.savez(path, **{**good, **damage})
        with pytest.raises(pynn.ModelFileError) as e:
            common.train(config, train_xy, val_xy, checkpoint=ckpt)
        assert path in str(e.value) and "\n" not in str(e.value)


def test_results_file_skips_what_is_done(tmp_path):
    r = common.Results(str(tmp_path / "sub" / "r.csv"), ["key", "value"])
    assert r.done() == set() and r.rows() == []
    r.append([{"key": "a", "value": 1}])
    r.append([{"key": "b", "value": 2}, {"key": "c", "value": 3}])
    assert r.done() == {"a", "b", "c"}
    assert [row["value"] for row in r.rows()] == ["1", "2", "3"]
    with open(r.path) as f:
        assert f.read().count("key,value") == 1


# ---- the commands, --quick, on MNIST ----







def check_plots(out, names):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pytest.skip("matplotlib (the plots extra) is not installed: plots are not made")
    for name in names:
        with open(os.path.join(out, name), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_sweep_quick_and_resume(tmp_path, mnist_available, capsys):
    out = str(tmp_path / "sweep")
    assert study(["sweep", "--quick", "--out", out, "--set", "hidden=8,16", "--final", "2"]) == 0
    with open(os.path.join(out, "sweep.csv")) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and {r["hidden"] for r in rows} == {"8", "16"}
    for r in rows:
        assert 0 <= float(r["val_error"]) < 0.6 and len(json.loads(r["curve"])) == 2
    with open(os.path.join(out, "sweep_final.csv")) as f:
        final = list(csv.DictReader(f))
    assert len(final) == 2 and float(final[0]["val_error"]) <= float(final[1]["val_error"])
    assert os.path.exists(os.path.join(out, final[0]["model"]))
    md = open(os.path.join(out, "sweep.md")).read()
    assert "Made by: `" in md and "test_error" in md
    capsys.readouterr()
    # the rerun adds two configurations, trained in two spawned worker processes
    study(["sweep", "--quick", "--out", out, "--set", "hidden=8,16,4,6", "--final", "1",
           "--workers", "2"])
    assert "2 already in" in capsys.readouterr().out
    with open(os.path.join(out, "sweep.csv")) as f:
        again = list(csv.DictReader(f))
    assert again[:2] == rows and len(again) == 4
    assert {r["hidden"] for r in again[2:]} == {"4", "6"}
    capsys.readouterr()
    study(["sweep", "--quick", "--out", out, "--set", "hidden=8,16,4,6,2", "--report-only"])
    said = capsys.readouterr().out
    assert "4 already in" in said and "0 to run" in said
    assert len(open(os.path.join(out, "sweep.csv")).read().splitlines()) == 5
    check_plots(out, ["sweep_settings.png", "sweep_curves.png"])


def test_a_sweep_puts_a_conv_network_next_to_a_dense_one(tmp_path, mnist_available):
    out = str(tmp_path / "sweep")
    conv = common.QUICK_CONV["hidden"]
    assert study(["sweep", "--quick", "--out", out, "--search", "grid", "--set", f"hidden=8,{conv}",
                  "--set", "epochs=1", "--final", "2"]) == 0
    with open(os.path.join(out, "sweep_final.csv")) as f:
        final = {r["hidden"]: r for r in csv.DictReader(f)}
    assert set(final) == {"8", conv}
    net = load(os.path.join(out, final[conv]["model"]))
    assert type(net.layers[0]).__name__ == "Conv2d"
    assert float(final[conv]["test_error"]) < 0.5
    check_plots(out, ["sweep_settings.png"])


def test_sweep_without_matplotlib_writes_tables_and_says_so(tmp_path, mnist_available, monkeypatch):
    from pynn.study import sweep
    monkeypatch.setattr(sweep, "pyplot", lambda: None)
    out = str(tmp_path / "noplots")
    assert study(["sweep", "--quick", "--out", out, "--set", "hidden=4", "--set", "epochs=1"]) == 0
    md = open(os.path.join(out, "sweep.md")).read()
    assert "plots skipped: matplotlib is not installed" in md and "| 4 |" in md
    assert not any(f.endswith(".png") for f in os.listdir(out))


def test_noise_quick(tmp_path, mnist_available):
    out = str(tmp_path / "noise")
    assert study(["noise", "--quick", "--out", out, "--noises", "occlude"]) == 0
    with open(os.path.join(out, "noise.csv")) as f:
        rows = list(csv.DictReader(f))
    assert {(r["net"], r["model"]) for r in rows} == {(n, m) for n in ("dense", "conv")
                                                      for m in ("clean", "occlude")}
    for net in ("dense", "conv"):
        clean = {(r["noise"], int(r["level"])): float(r["error"]) for r in rows
                 if r["model"] == "clean" and r["net"] == net}
        assert len(clean) == 8 * 6
        assert clean[("occlude", 5)] > clean[("occlude", 0)]
    md = open(os.path.join(out, "noise.md")).read()
    assert "| occlude | dense | this noise |" in md and "| occlude | conv | this noise |" in md
    check_plots(out, ["noise_curves.png"])


def test_an_older_noise_csv_is_reported_and_resumed(tmp_path, mnist_available, capsys):
    """A noise.csv of dense rows only, without the net column, counts as the dense network's."""
    from pynn.study import robustness
    out = tmp_path / "noise"
    out.mkdir()
    lines = [",".join(f for f in robustness.FIELDS if f != "net")]
    for model, names in (("clean", list(noise.NOISES)), ("blur", ["blur"])):
        for name in names:
            lines += [f"{model},{name},{level},{a},0.{level + 1},1.0" for level, a in enumerate(noise.LEVELS[name])]
    (out / "noise.csv").write_text("\n".join(lines) + "\n")
    assert study(["noise", "--quick", "--out", str(out), "--noises", "blur", "--nets", "dense"]) == 0
    said = capsys.readouterr().out
    assert "2 already in" in said and "0 to train" in said
    assert "| blur | dense | this noise | 0 / 0.5 / 1 / 1.5 / 2 / 2.5 | 10.00% |" in (out / "noise.md").read_text()


def test_label_noise_quick_with_a_dense_and_a_conv_network(tmp_path, mnist_available, capsys):
    out = str(tmp_path / "labels")
    assert study(["noise", "--quick", "--labels", "--shares", "0,0.5", "--out", out]) == 0
    with open(os.path.join(out, "labels.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [(r["net"], float(r["share"])) for r in rows] == [("dense", 0), ("dense", 0.5),
                                                             ("conv", 0), ("conv", 0.5)]
    n_train = common.QUICK_SIZES[0]
    assert [int(r["wrong"]) for r in rows] == [0, n_train // 2] * 2
    err = {(r["net"], float(r["share"])): float(r["error"]) for r in rows}
    for net in ("dense", "conv"):
        assert err[(net, 0)] < 0.3 and err[(net, 0.5)] > err[(net, 0)]
    assert rows[2]["hidden"] == common.QUICK_CONV["hidden"]
    md = open(os.path.join(out, "labels.md")).read()
    assert "| net | hidden | 0 | 0.5 | climb |" in md and "points" in md
    check_plots(out, ["labels.png"])
    capsys.readouterr()
    assert study(["noise", "--quick", "--labels", "--shares", "0,0.5", "--nets", "dense",
                  "--out", out]) == 0
    said = capsys.readouterr().out
    assert "2 models, 2 already in" in said and "0 to train" in said
    study(["noise", "--quick", "--labels", "--shares", "0", "--nets", "dense", "--epochs", "1",
           "--out", out])        # another config is another run: trained, and reported alone
    assert "1 to train" in capsys.readouterr().out
    assert "| net | hidden | 0 | climb |" in open(os.path.join(out, "labels.md")).read()
    with open(os.path.join(out, "labels.csv")) as f:
        assert [r["epochs"] for r in csv.DictReader(f)] == ["2", "2", "2", "2", "1"]
    with pytest.raises(SystemExit, match="--shares must be in 0..1"):
        study(["noise", "--quick", "--labels", "--shares", "0,2", "--out", out])
    with pytest.raises(SystemExit, match="unknown network 'rnn'"):
        study(["noise", "--quick", "--labels", "--nets", "rnn", "--out", out])


def compare_rows(out):
    with open(os.path.join(out, "compare.csv")) as f:
        return {r["method"]: r for r in csv.DictReader(f)}


def test_compare_quick(tmp_path, mnist_available):
    out = str(tmp_path / "compare")
    assert study(["compare", "--quick", "--out", out, "--methods", "centroid,knn,softmax,conv",
                  "--eval-n", "200"]) == 0
    rows = compare_rows(out)
    assert set(rows) == {"centroid", "knn", "softmax", "conv"}
    assert rows["conv"]["name"] == f"convolutional network (1x28x28-{common.QUICK_CONV['hidden']}-10)"
    assert float(rows["conv"]["test_error"]) < 0.3 and float(rows["conv"]["size_kb"]) > 0
    assert float(rows["knn"]["test_error"]) < float(rows["centroid"]["test_error"]) < 0.5
    for r in rows.values():
        adapt = json.loads(r["adapt"])
        assert set(adapt) == {"7 with a bar", "1 with base and flag"}
        for a in adapt.values():
            assert a["curve"][0][0] == 0
    md = open(os.path.join(out, "compare.md")).read()
    assert "k-nearest neighbours" in md and "Adaptivity" in md


needs_sklearn = pytest.mark.skipif(not baselines.available(),
                                   reason="scikit-learn (the sklearn extra) is not installed")


@needs_sklearn
def test_compare_quick_with_the_svm_and_the_forest(tmp_path, mnist_available, monkeypatch):
    monkeypatch.setattr(compare, "TEACH_COUNTS", [0, 2, 8])     # each lesson is a refit
    out = str(tmp_path / "compare")
    assert study(["compare", "--quick", "--out", out, "--methods", "centroid,svm,forest",
                  "--eval-n", "100"]) == 0
    rows = compare_rows(out)
    assert set(rows) == {"centroid", "svm", "forest"}
    for name in ("svm", "forest"):
        r = rows[name]
        assert float(r["test_error"]) < float(rows["centroid"]["test_error"])
        assert float(r["train_seconds"]) > 0 and float(r["infer_us_per_digit"]) > 0
        assert float(r["size_kb"]) > 0 and all(0 <= float(r[f"noise_{n}"]) <= 1 for n in noise.NOISES)
        for a in json.loads(r["adapt"]).values():
            assert [n for n, _, _ in a["curve"]] == compare.TEACH_COUNTS[:len(a["curve"])]
    md = open(os.path.join(out, "compare.md")).read()
    assert "SVM, RBF kernel (scikit-learn)" in md and "random forest (scikit-learn)" in md
    assert "refitting from scratch" in md


@needs_sklearn
def test_a_refitted_model_is_taught_by_refitting_with_the_examples_added():
    from sklearn.neighbors import KNeighborsClassifier
    rng = np.random.default_rng(3)
    X, y = rng.random((60, 8), dtype=np.float32), rng.integers(0, 3, 60)
    odd = np.full((2, 8), 5.0, np.float32)
    model = baselines.Refitted(KNeighborsClassifier(1)).fit(X, y)
    taught = compare.ClassicMethod(model).copy()
    taught.teach(odd, np.array([2, 2]))
    assert taught.predict(odd + 0.1).tolist() == [2, 2]
    expect = KNeighborsClassifier(1).fit(np.vstack([X, odd]), np.concatenate([y, [2, 2]]))
    assert np.array_equal(taught.predict(X[:20] + 0.3), expect.predict(X[:20] + 0.3))
    assert len(model.taught_y) == 0 and model.predict(odd + 0.1).tolist() != [2, 2]   # the original untouched


def test_compare_without_sklearn_runs_the_rest_or_says_what_is_missing(tmp_path, mnist_available,
                                                                        monkeypatch, capsys):
    monkeypatch.setattr(baselines, "available", lambda: False)
    with pytest.raises(SystemExit, match=r"the svm method needs scikit-learn.*\[sklearn\]"):
        study(["compare", "--quick", "--out", str(tmp_path / "a"), "--methods", "centroid,svm"])
    out = str(tmp_path / "b")
    monkeypatch.setattr(compare, "METHODS", ["centroid", "svm", "forest"])
    assert study(["compare", "--quick", "--out", out, "--eval-n", "50"]) == 0
    assert "SVM and the random forest are left out" in capsys.readouterr().out
    assert list(compare_rows(out)) == ["centroid"]
    assert "scikit-learn is not installed" in open(os.path.join(out, "compare.md")).read()


def test_lang_quick(tmp_path, mnist_available):
    out = str(tmp_path / "lang")
    assert study(["lang", "--quick", "--out", out]) == 0
    with open(os.path.join(out, "lang.csv")) as f:
        rows = list(csv.DictReader(f))
    epoch = ["pure Python", "NumPy", "C kernels (pynn)", "C kernels, one call an epoch"]
    assert [r["language"] for r in rows] == 2 * epoch + ["pure Python", "NumPy (its BLAS)", "C kernels (pynn)"]
    assert [r["work"] for r in rows] == ["epoch, batches of 10"] * 4 + ["epoch, batches of 100"] * 4 + ["GEMM"] * 3
    assert all(float(r["seconds"]) > 0 for r in rows)
    # 'times C' is over the one-call epoch for the epochs and the C product for the GEMM
    assert [float(r["times_c"]) for r in rows if r["language"].startswith("C kernels,")] == [1.0, 1.0]
    assert float(rows[-1]["times_c"]) == 1.0
    assert "extrapolated" in rows[0]["measured"]


def test_cli_help_lists_the_study_commands(capsys):
    for sub in ("sweep", "noise", "compare", "lang"):
        with pytest.raises(SystemExit) as e:
            study([sub, "--help"])
        assert e.value.code == 0
        text = capsys.readouterr().out
        assert "--quick" in text and "--workers" in text and "--data-dir" in text


def test_bad_setting_is_one_line_error(tmp_path):
    with pytest.raises(SystemExit, match="unknown setting 'depth'"):
        study(["sweep", "--quick", "--out", str(tmp_path), "--set", "depth=3"])


# ---- --dask: the sweep on a Dask cluster of two spawned worker processes ----

try:
    import distributed
except ImportError:
    distributed = None
needs_dask = pytest.mark.skipif(distributed is None,
                                reason="dask.distributed (the dask extra) is not installed")
if distributed is not None:
    import cloudpickle          # comes with distributed
    # the worker plugin below is defined here, and the workers cannot import this file
    cloudpickle.register_pickle_by_value(sys.modules[__name__])

TIMING_COLUMNS = {"train_seconds"}


@pytest.fixture(scope="module")
def dask_cluster(mnist_available):
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None) as c:
        yield c


def sweep_rows(out):
    with open(os.path.join(out, "sweep.csv")) as f:
        return {r["key"]: {k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in csv.DictReader(f)}


def weights(out, key):
    from pynn.study.sweep import model_path
    net = load(model_path(out, key))
    return net.weights + net.biases


def same_models(out_a, out_b, keys):
    for key in keys:
        for a, b in zip(weights(out_a, key), weights(out_b, key)):
            assert np.array_equal(a, b)


SWEEP = ["sweep", "--quick", "--search", "grid", "--final", "1", "--set", "epochs=1"]


@needs_dask
def test_the_workers_are_spawned_processes(dask_cluster):
    with distributed.Client(dask_cluster) as client:
        pids = client.run(os.getpid)
        methods = client.run(lambda: __import__("multiprocessing").get_start_method())
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()
    assert set(methods.values()) == {"spawn"}


@needs_dask
def test_a_sweep_on_the_cluster_gives_the_local_rows_and_resumes(tmp_path, dask_cluster, capsys):
    local, remote = str(tmp_path / "local"), str(tmp_path / "remote")
    assert study(SWEEP + ["--out", local, "--set", "hidden=4,6,8"]) == 0
    assert study(SWEEP + ["--out", remote, "--set", "hidden=4,6", "--dask", dask_cluster.scheduler_address]) == 0
    said = capsys.readouterr()
    assert "2 tasks to the scheduler" in said.out and "sweep: 100%" in said.err
    assert sweep_rows(remote) == {k: v for k, v in sweep_rows(local).items() if v["hidden"] in ("4", "6")}
    # a rerun with one more configuration runs only that one, on the cluster
    assert study(SWEEP + ["--out", remote, "--set", "hidden=4,6,8", "--dask", dask_cluster.scheduler_address]) == 0
    said = capsys.readouterr().out
    assert "2 already in" in said and "1 to run" in said and "1 tasks to the scheduler" in said
    assert sweep_rows(remote) == sweep_rows(local)
    same_models(local, remote, sweep_rows(local))
    assert os.path.exists(os.path.join(remote, "sweep.md"))


class DiesMidway(distributed.WorkerPlugin if distributed else object):
    """Ends its worker's process in the middle of a configuration: once the first task of the
    cluster is executing, it waits for a training checkpoint to appear (an epoch is done, more
    are to come) and exits. The marker file, made atomically, makes that once for all workers,
    the restarted one included."""

    name = "dies-midway"

    def __init__(self, marker, models):
        self.marker, self.models = marker, models

    def transition(self, key, start, finish, **kwargs):
        if finish != "executing":
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        threading.Thread(target=self.exit_at_checkpoint, args=(fd, str(key)), daemon=True).start()

    def exit_at_checkpoint(self, fd, key):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            found = glob.glob(os.path.join(self.models, "*.checkpoint", "checkpoint.npz"))
            if found:
                os.write(fd, f"{key} {os.path.basename(found[0])}".encode())
                os.close(fd)
                os._exit(1)
            time.sleep(0.002)


@needs_dask
def test_a_configuration_whose_worker_dies_runs_again_elsewhere(tmp_path, dask_cluster):
    local, remote = str(tmp_path / "local"), str(tmp_path / "remote")
    marker = str(tmp_path / "died")
    settings = ["--set", "hidden=5,7", "--set", "epochs=4"]
    with distributed.Client(dask_cluster) as client:
        before = set(client.run(os.getpid).values())
        client.register_plugin(DiesMidway(marker, os.path.join(remote, "models")))
        try:
            assert study(SWEEP + settings + ["--out", remote, "--dask", dask_cluster.scheduler_address]) == 0
        finally:
            client.unregister_worker_plugin(DiesMidway.name)
        client.wait_for_workers(2, timeout=60)
        after = set(client.run(os.getpid).values())
    with open(marker) as f:
        task, checkpoint = f.read().split()
    assert task.startswith("on_worker") and checkpoint == "checkpoint.npz"
    assert len(before - after) == 1                # one worker process died and was replaced
    assert study(SWEEP + settings + ["--out", local]) == 0
    assert sweep_rows(remote) == sweep_rows(local) and len(sweep_rows(local)) == 2
    same_models(local, remote, sweep_rows(local))


@needs_dask
def test_an_unreachable_scheduler_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    with pytest.raises(SystemExit, match="cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'"):
        study(SWEEP + ["--out", str(tmp_path), "--dask", "tcp://127.0.0.1:9"])


def test_dask_without_the_extra_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)       # import distributed fails
    with pytest.raises(SystemExit, match=r"--dask needs dask.distributed.*\[dask\]"):
        study(SWEEP + ["--out", str(tmp_path), "--dask", "tcp://127.0.0.1:9"])
