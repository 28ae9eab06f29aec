"""pynn study gradcost: the paper's nudging (central differences, section 4.6) finds the gradient
backpropagation finds, leaves the network as it was, and the command's quick run writes its
table with the passes each way takes."""
import csv
import os

import numpy as np
import pytest

from pynn.study import gradcost
from conftest import study


def test_pick_takes_every_parameter_when_the_sample_covers_them():
    everything = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    assert gradcost.pick([3, 2], None, np.random.default_rng(0)) == everything
    assert gradcost.pick([3, 2], 5, np.random.default_rng(0)) == everything
    assert gradcost.pick([3, 2], 50, np.random.default_rng(0)) == everything


def test_pick_draws_an_equal_share_from_every_array_without_repeats():
    sizes = [1000, 10, 50_000, 4]
    picks = gradcost.pick(sizes, 100, np.random.default_rng(0))
    assert len(picks) == len(set(picks)) == 100
    counts = [sum(1 for a, _ in picks if a == k) for k in range(4)]
    assert counts == [43, 10, 43, 4]      # the small arrays whole, the rest shared equally
    assert all(0 <= i < sizes[a] for a, i in picks)


def test_difference_is_relative_to_the_largest_entry_and_to_the_length():
    nudged, backprop = np.array([1.0, 0.5, 0.0]), np.array([1.0, 0.4, 0.0])
    largest, length = gradcost.difference(nudged, backprop)
    assert largest == pytest.approx(0.1)
    assert length == pytest.approx(0.1 / np.sqrt(1.16))
    assert gradcost.difference(np.zeros(3), np.zeros(3)) == (0.0, 0.0)


@pytest.mark.parametrize("arch, activation, output, loss, h, tol", [
    ([6, 5, 3], "sigmoid", "sigmoid", "quadratic", 1e-2, 1e-3),
    ("1x8x8-c3k3-pool2-4-3", "relu", "softmax", "cross_entropy", 1e-3, 1e-2),
])
def test_nudging_finds_the_gradient_backpropagation_finds_and_puts_every_parameter_back(
        arch, activation, output, loss, h, tol):
    net = gradcost.network(arch, activation, output, loss, seed=3)
    assert all(np.all(b != 0) for b in net.parameters() if b.ndim == 1)   # off the ReLU's kink
    rng = np.random.default_rng(0)
    X = rng.random((4, net.n_in), dtype=np.float32)
    T = net.targets(np.array([0, 1, 2, 1]), 4)
    before = [p.copy() for p in net.parameters()]
    picks = gradcost.pick([p.size for p in before], None, rng)
    nudged = gradcost.nudged_gradient(net, X, T, picks, h)
    assert all(np.array_equal(p, q) for p, q in zip(net.parameters(), before))
    backprop = gradcost.backprop_gradient(net, X, T, picks)
    assert np.abs(backprop).max() > 1e-2          # a gradient worth comparing
    largest, length = gradcost.difference(nudged, backprop)
    assert largest < tol and length < tol


def number(text):
    return float(text.replace(",", ""))


def test_gradcost_quick_writes_both_ways_with_their_passes(tmp_path, mnist_available):
    out = str(tmp_path / "gradcost")
    assert study(["gradcost", "--quick", "--out", out]) == 0
    with open(os.path.join(out, "gradcost.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["way"] for r in rows] == ["nudging (central differences)", "backpropagation"] * 2
    for nudge, back in zip(rows[::2], rows[1::2]):
        n = int(number(nudge["parameters"]))
        assert nudge["network"] == back["network"]
        assert nudge["passes"] == f"{2 * n:,} forward" and back["passes"] == "1 forward + 1 backward"
        assert number(nudge["seconds"]) > number(back["seconds"]) > 0
        assert back["times_backprop"] == "1"
        assert "extrapolated" in nudge["measured"]                 # the quick run samples
        assert float(nudge["largest_difference"]) < 1e-2
    assert number(rows[0]["parameters"]) == 784 * 30 + 30 + 30 * 10 + 10
    with open(os.path.join(out, "gradcost.md")) as f:
        text = f.read()
    assert text.startswith("# The cost of a gradient\n\nMade by: `") and "| backpropagation |" in text


def test_gradcost_refuses_a_batch_it_cannot_take(tmp_path, mnist_available):
    with pytest.raises(SystemExit, match="--batch must be between 1 and"):
        study(["gradcost", "--quick", "--out", str(tmp_path), "--batch", "0"])
    with pytest.raises(SystemExit, match="--sample must be at least 1"):
        study(["gradcost", "--quick", "--out", str(tmp_path), "--sample", "0"])


def test_the_study_command_lists_gradcost_and_its_help_names_its_settings(capsys):
    with pytest.raises(SystemExit) as e:
        study(["--help"])
    assert e.value.code == 0 and "gradcost" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        study(["gradcost", "--help"])
    text = capsys.readouterr().out
    assert e.value.code == 0 and "--batch" in text and "--sample" in text and "--quick" in text
