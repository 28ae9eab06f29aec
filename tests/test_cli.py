"""The pynn command, run as a user runs it: ``python -m pynn ...`` in a subprocess."""
import gzip
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn import datasets, idx  # noqa: F401  (pynn.datasets is used as an attribute)

FASHION = "/usr/share/datasets/fashion-mnist"      # Debian's dataset-fashion-mnist


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pynn", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def ok(*args, cwd=None):
    result = run(*args, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", [[], ["fetch"], ["train"], ["eval"], ["predict"]])
def test_every_command_has_help(command):
    out = ok(*command, "--help")
    assert out.startswith("usage: pynn " + " ".join(command))
    for option in {"train": ["--arch", "--optimizer", "--l2", "--val", "--limit", "--data-dir", "--out"],
                   "eval": ["MODEL", "--data-dir"], "predict": ["MODEL", "IMAGE"]}.get(
                       command[0] if command else "", []):
        assert option in out


def test_fetch_says_where_mnist_is(mnist):
    out = ok("fetch", "mnist")
    where = pynn.datasets.cache_dir()
    for name in pynn.datasets.SHA256:
        assert f"{where}/{name}" in out
    assert out.splitlines()[-1] == f"MNIST is in {where} (verified against its SHA-256 digests)"


@pytest.fixture(scope="module")
def trained(mnist, tmp_path_factory):
    """A small network trained by ``pynn train`` on the first 3000 digits; (path, stdout)."""
    path = tmp_path_factory.mktemp("cli") / "small.npz"
    out = ok("train", "--arch", "784-64-10", "--limit", 3000, "--val", 500, "--epochs", 3,
             "--batch-size", 32, "--lr", 0.05, "--seed", 1, "--out", path)
    return path, out


def test_train_reports_each_epoch_and_the_test_error(trained, mnist):
    path, out = trained
    assert "Network([Linear(784, 64), ReLU(), Linear(64, 10)], output=softmax, loss=cross_entropy)" in out
    assert "on 2500 digits, 500 held out for validation" in out
    epochs = re.findall(r"^epoch (\d)/3  loss ([\d.]+)  train error [\d.]+%  val error ([\d.]+)%  [\d.]+ s$",
                        out, re.M)
    assert [e[0] for e in epochs] == ["1", "2", "3"]
    assert float(epochs[-1][1]) < float(epochs[0][1])          # it learned
    net = pynn.load(path)
    assert net.sizes == [784, 64, 10]
    X, y = mnist.test
    wrong = int(np.count_nonzero(net.predict(X) != y))
    assert f"test error {100 * wrong / len(y):.2f}% ({wrong} of 10000 wrong)" in out
    assert wrong < 1500                                          # a real network, if small


def test_eval_reports_what_the_model_does(trained, mnist):
    path, _ = trained
    out = ok("eval", path)
    net = pynn.load(path)
    X, y = mnist.test
    predicted = net.predict(X)
    wrong = int(np.count_nonzero(predicted != y))
    assert f"test error {100 * wrong / len(y):.2f}% ({wrong} of 10000 wrong)" in out
    counts = np.zeros((10, 10), dtype=int)
    np.add.at(counts, (y, predicted), 1)
    rows = out.split("confusion matrix")[1].splitlines()[2:12]
    shown = np.array([[int(v) for v in row.split()[1:]] for row in rows])
    np.testing.assert_array_equal(shown, counts)
    for c in range(10):
        assert re.search(rf"^\s+{c}\s+{counts[c, c]}\s+{counts[c].sum()}\s+"
                         rf"{100 * counts[c, c] / counts[c].sum():.2f}%$", out, re.M)
    np.fill_diagonal(counts, 0)
    t, p = np.unravel_index(np.argmax(counts), counts.shape)
    first = out.split("most confused (true -> predicted):")[1].splitlines()[1]
    assert first.strip() == f"{t} -> {p}: {counts[t, p]} times"


def image_files(directory, digit):
    """One MNIST digit (uint8 28x28) saved 4x larger in several files and polarities."""
    from PIL import Image
    big = np.kron(digit, np.ones((4, 4), dtype=np.uint8))        # 112x112, ink bright
    paths = {}
    paths["dark-on-light.png"] = 255 - big
    Image.fromarray(255 - big).save(directory / "dark-on-light.png")
    paths["light-on-dark.pgm"] = big
    (directory / "light-on-dark.pgm").write_bytes(b"P5\n# a comment\n112 112\n255\n" + big.tobytes())
    ascii_pgm = "P2 112 112 255\n" + "\n".join(" ".join(map(str, row)) for row in 255 - big)
    (directory / "ascii.pgm").write_text(ascii_pgm)
    rgba = np.zeros((112, 112, 4), dtype=np.uint8)               # black strokes on transparency
    rgba[:, :, 3] = big
    Image.fromarray(rgba, "RGBA").save(directory / "transparent.png")
    return [directory / name for name in ("dark-on-light.png", "light-on-dark.pgm", "ascii.pgm",
                                          "transparent.png")]


def test_predict_reads_images_of_either_polarity(trained, mnist, tmp_path):
    from pynn.preprocess import to_mnist
    path, _ = trained
    digit = np.array(mnist.test[0][0])
    files = image_files(tmp_path, digit)
    out = ok("predict", path, *files).splitlines()
    assert len(out) == 2 * len(files)
    net = pynn.load(path)
    expected = net.predict_proba(to_mnist(np.kron(digit, np.ones((4, 4))).astype(np.float32) / 255)
                                 .reshape(1, -1))[0]
    for i, f in enumerate(files):
        answer = re.fullmatch(rf"{re.escape(str(f))}: (\d) \(([\d.]+)%\)", out[2 * i])
        probs = [float(p) for _, p in re.findall(r"(\d):([\d.]+)", out[2 * i + 1])]
        assert answer and len(probs) == 10, out
        assert int(answer.group(1)) == int(np.argmax(expected)) == int(np.argmax(probs))
        np.testing.assert_allclose(probs, expected, atol=2e-3)


def test_train_on_any_idx_directory(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("test", 50)):
        labels = rng.integers(0, 3, size=n, dtype=np.uint8)
        images = np.zeros((n, 6, 6), dtype=np.uint8)
        images[np.arange(n), labels * 2, :] = 255                # the class is the lit row
        for name, a in zip(pynn.datasets.FILES[split], (images, labels)):
            (tmp_path / (name + ".gz")).write_bytes(gzip.compress(idx.encode(a)))
    out = ok("train", "--dataset", "idx", "--data-dir", tmp_path, "--arch", "36-8-3", "--epochs", 20,
             "--batch-size", 10, "--out", tmp_path / "m.npz")
    assert "test error 0.00% (0 of 50 wrong)" in out
    assert "test error 0.00%" in ok("eval", tmp_path / "m.npz", "--dataset", "idx", "--data-dir", tmp_path)


def test_train_with_dropout_saves_it_with_the_model(tmp_path):
    test_train_on_any_idx_directory(tmp_path)
    ok("train", "--dataset", "idx", "--data-dir", tmp_path, "--arch", "36-8-3", "--epochs", 2,
       "--dropout", "0.25", "--out", tmp_path / "d.npz")
    assert pynn.load(tmp_path / "d.npz").dropout == 0.25


@pytest.mark.skipif(not os.path.isdir(FASHION), reason="dataset-fashion-mnist is not installed")
def test_fashion_mnist_trains_with_the_same_command(tmp_path):
    out = ok("train", "--dataset", "idx", "--data-dir", FASHION, "--arch", "784-32-10", "--limit", 3000,
             "--epochs", 1, "--out", tmp_path / "fashion.npz")
    error = float(re.search(r"test error ([\d.]+)%", out).group(1))
    assert error < 40


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    (d / "corrupt.npz").write_bytes(b"PK\x03\x04" + os.urandom(200))
    (d / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 50)
    (d / "short.pgm").write_bytes(b"P5 10 10 255\n" + b"\x00" * 20)
    data = d / "cut"
    data.mkdir()
    for name in pynn.datasets.FILES["train"] + pynn.datasets.FILES["test"]:
        shape = (5, 28, 28) if "images" in name else (5,)
        (data / name).write_bytes(idx.encode(np.zeros(shape, dtype=np.uint8))[:-3])
    other = d / "other"
    other.mkdir()
    for name in pynn.datasets.FILES["train"] + pynn.datasets.FILES["test"]:
        shape = (5, 28, 28) if "images" in name else (5,)
        (other / name).write_bytes(idx.encode(np.zeros(shape, dtype=np.uint8)))
    return d


@pytest.mark.parametrize("args, says", [
    (["eval", "{d}/missing.npz"], "missing.npz: no such file"),
    (["eval", "{d}/corrupt.npz"], "corrupt.npz: "),
    (["train", "--arch", "784-x-10"], "argument --arch: architecture '784-x-10' must be widths"),
    (["train", "--arch", "784"], "needs an input and an output"),
    (["train", "--arch", "100-10", "--limit", "100"], "the network takes 100 inputs but the training images have 784"),
    (["train", "--lr", "-1", "--limit", "100"], "argument --lr: must be a finite number at least 0"),
    (["train", "--dropout", "1", "--limit", "100"], "argument --dropout: must be a finite number in [0, 1)"),
    (["train", "--epochs", "two"], "argument --epochs: 'two' is not an integer"),
    (["train", "--val", "100", "--limit", "100"], "--val 100 leaves nothing to train on"),
    (["train", "--dataset", "idx"], "--dataset idx needs --data-dir"),
    (["train", "--dataset", "idx", "--data-dir", "{d}/cut"], "truncated"),
    (["train", "--data-dir", "{d}/other"], "add --dataset idx"),
    (["train", "--dataset", "idx", "--data-dir", "{d}/nowhere"], "nowhere: no such directory"),
    (["eval", "{model}", "--data-dir", "{d}/nowhere"], "nowhere: no such directory"),
    (["predict", "{model}", "{d}/missing.png"], "missing.png: no such file"),
    (["predict", "{model}", "{d}/garbage.png"], "garbage.png: not an image"),
    (["predict", "{model}", "{d}/short.pgm"], "short.pgm: PGM data truncated"),
    (["predict", "{d}/corrupt.npz", "{d}/short.pgm"], "corrupt.npz: "),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
])
def test_user_errors_are_one_line(args, says, bad_files, trained, tmp_path):
    args = [a.format(d=bad_files, model=trained[0]) for a in args]
    result = run(*args, "--out", tmp_path / "m.npz") if args[0] == "train" else run(*args)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pynn") and says in lines[0], result.stderr
    assert not (tmp_path / "m.npz").exists()


def test_init_goes_on_from_a_saved_model_the_same_way_every_time(mnist, tmp_path):
    first = tmp_path / "first.npz"
    ok("train", "--arch", "784-30-10", "--limit", 2000, "--epochs", 1, "--out", first)
    start = pynn.load(first)
    same = tmp_path / "same.npz"
    ok("train", "--init", first, "--epochs", 0, "--limit", 2000, "--out", same)
    for a, b in zip(pynn.load(same).weights, start.weights):
        np.testing.assert_array_equal(a, b)
    runs = []
    for name in ("a.npz", "b.npz"):
        out = ok("train", "--init", first, "--augment", "mild", "--lr", 0.01, "--epochs", 1,
                 "--limit", 2000, "--seed", 3, "--out", tmp_path / name)
        assert "Linear(784, 30)" in out
        runs.append(pynn.load(tmp_path / name))
    for a, b, c in zip(runs[0].weights, runs[1].weights, start.weights):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    bad = run("train", "--init", first, "--arch", "784-20-10", "--out", tmp_path / "c.npz")
    assert bad.returncode != 0 and "drop --arch" in bad.stderr and "Traceback" not in bad.stderr


def test_train_takes_a_convolutional_architecture_and_the_model_works_everywhere(mnist, tmp_path):
    path = tmp_path / "conv.npz"
    out = ok("train", "--arch", "1x28x28-c4k5-pool2-c8k3s2-32-10", "--limit", 2000, "--epochs", 2,
             "--augment", "--checkpoint", tmp_path / "ck", "--out", path)
    assert "Conv2d(1, 4, 5), ReLU(), MaxPool2d(2), Conv2d(4, 8, 3, stride=2)" in out
    error = float(re.search(r"test error ([\d.]+)%", out).group(1))
    assert error < 60                                  # 2,000 digits, 2 epochs: far from chance
    assert "test error" in ok("eval", path)
    resumed = ok("train", "--resume", tmp_path / "ck", "--out", tmp_path / "more.npz")
    assert "resuming" in resumed and "test error" in resumed
    bad = run("train", "--arch", "1x28x28-c4k40-10")
    assert bad.returncode != 0 and "kernel is larger" in bad.stderr and "Traceback" not in bad.stderr
