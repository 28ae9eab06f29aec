"""The shipped network, pynn/models/default.npz: what it is and how well it reads."""
import os

import numpy as np
import pytest

import pynn
from pynn import drawn
from pynn.preprocess import strokes_to_mnist

MODEL = os.path.join(os.path.dirname(pynn.__file__), "models", "default.npz")


@pytest.fixture(scope="module")
def net():
    return pynn.load_default()


@pytest.fixture(scope="module")
def test_set(mnist):
    X, y = mnist.test
    return X.reshape(len(X), 784), y.astype(np.int64)


def test_it_is_a_small_digit_network(net):
    assert net.sizes[0] == 784 and net.sizes[-1] == 10
    assert net.output == "softmax" and any(isinstance(x, pynn.layers.ReLU) for x in net.layers)
    assert os.path.getsize(MODEL) < 2 * 1024 * 1024


def test_mnist_test_error_meets_the_rule_it_shipped_under(net, test_set):
    """A convolutional model ships only with an MNIST test error of 0.5% or less (docs/PAD.md,
    pynn study drawn); the dense model, shipped before any met that, has at most 1.6%."""
    X, y = test_set
    convolutional = any(isinstance(x, pynn.layers.Conv2d) for x in net.layers)
    assert 1 - net.accuracy(X, y) <= (0.005 if convolutional else 0.016)


def test_drawn_digits_are_read(net, mnist):
    """The first 500 test digits traced into strokes and drawn again, through the pad's path
    and through images drawn with thin and thick pens: read nearly as well as the originals
    (about 4-5% wrong where MNIST's own images are 1%; a drawing that lands off-centre or at the
    wrong size or weight would be misread far more often)."""
    X, y = mnist.test
    sets = drawn.drawn_sets(X[:500])
    for name, inputs in sets.items():
        assert 1 - net.accuracy(inputs, y[:500].astype(np.int64)) <= 0.07, name


def test_preprocessing_is_what_makes_small_corner_drawings_readable(net, mnist):
    """Digits drawn small in a corner of the field: read as they are, most are misread;
    through strokes_to_mnist, the same strokes are read as well as any."""
    X, y = mnist.test
    labels = y[:300].astype(np.int64)
    corner = [[(p - 14) * 0.6 + [20, 19] for p in s] for s in drawn.as_strokes(X[:300])]
    raw = np.stack([drawn.render(s, (28, 28), 2.6) for s in corner]).reshape(300, 784)
    prepared = np.stack([strokes_to_mnist(s) for s in corner]).reshape(300, 784)
    assert 1 - net.accuracy(raw, labels) > 0.5
    assert 1 - net.accuracy(prepared, labels) <= 0.07


def test_load_default_gives_a_fresh_copy_each_time(net):
    other = pynn.load_default()
    other.weights[0][:] = 0
    assert np.abs(pynn.load_default().weights[0]).max() > 0


def test_train_default_trains_on_distorted_digits(mnist):
    """The recipe behind the shipped model, in miniature: it learns, and it is reproducible."""
    from pynn.train_default import train
    X, y = mnist.train
    logs = []
    a = train(X[:3000], y[:3000], hidden=32, epochs=2, seed=1, log=logs.append)
    b = train(X[:3000], y[:3000], hidden=32, epochs=2, seed=1, log=lambda line: None)
    assert len(logs) == 2 and "epoch 2/2" in logs[1]
    np.testing.assert_array_equal(a.weights[0], b.weights[0])
    X_test, y_test = mnist.test
    assert a.accuracy(X_test[:1000].reshape(1000, 784), y_test[:1000].astype(np.int64)) > 0.6


def _options(words):
    """{option: value} of a command line's words (True for a flag without a value)."""
    out = {}
    for i, word in enumerate(words):
        if word.startswith("--"):
            nxt = words[i + 1] if i + 1 < len(words) else "--"
            out[word] = True if nxt.startswith("--") else nxt
    return out


def test_the_shipped_recipe_is_the_two_commands_study_md_gives(monkeypatch, tmp_path):
    import re
    from pynn import cli, train_default
    calls = []
    monkeypatch.setattr(train_default.cli, "main", lambda argv: calls.append(argv) or 0)
    assert train_default.train_conv(str(tmp_path / "m.npz"), seed=0) == 0
    study = open(os.path.join(os.path.dirname(__file__), "..", "docs", "STUDY.md")).read()
    section = study[study.index("### A convolutional network"):]
    written = re.findall(r"^pynn (train .*)$", section, re.M)[:2]
    assert len(calls) == len(written) == 2
    places = ("--checkpoint", "--out", "--init")          # file names differ, not the training
    for argv, line in zip(calls, written):
        cli.build_parser().parse_args(argv)                # pynn train takes them as they are
        ran, doc = _options(argv), _options(line.split())
        assert {k: v for k, v in ran.items() if k not in places} == \
               {k: v for k, v in doc.items() if k not in places}
    assert _options(calls[1])["--init"] == _options(calls[0])["--out"]
    assert _options(written[1].split())["--init"] == _options(written[0].split())["--out"]
