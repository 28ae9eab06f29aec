"""Learning-rate schedules: the numbers, and that `pynn train --schedule` really uses them."""
import math
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn.optim import scheduled_lr


def test_the_schedules_give_their_rates():
    assert [scheduled_lr("constant", 0.1, e, 6) for e in range(6)] == [0.1] * 6
    assert [scheduled_lr("step", 0.4, e, 6) for e in range(6)] == [0.4, 0.4, 0.2, 0.2, 0.1, 0.1]
    cosine = [scheduled_lr("cosine", 0.2, e, 4) for e in range(5)]
    assert cosine == pytest.approx([0.2, 0.1 + 0.1 * math.cos(math.pi / 4), 0.1,
                                    0.1 - 0.1 * math.cos(math.pi / 4), 0.0])
    with pytest.raises(ValueError, match="schedule must be one of"):
        scheduled_lr("linear", 0.1, 0, 3)


def train(tmp_path, name, *extra):
    from conftest import TRAIN_ARGS, write_digits
    write_digits(tmp_path)
    args = [a for a in TRAIN_ARGS if a not in ("--schedule", "cosine")]
    run = subprocess.run([sys.executable, "-m", "pynn", "train", *args, "--data-dir", str(tmp_path),
                          "--epochs", "2", "--out", name, *extra],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    return pynn.load(tmp_path / name)


def test_pynn_train_follows_the_schedule(tmp_path):
    constant = train(tmp_path, "constant.npz")
    same = train(tmp_path, "same.npz", "--schedule", "constant")
    cosine = train(tmp_path, "cosine.npz", "--schedule", "cosine")
    assert all(np.array_equal(a, b) for a, b in zip(constant.weights, same.weights))
    assert not all(np.array_equal(a, b) for a, b in zip(constant.weights, cosine.weights))


def test_a_bad_schedule_is_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "pynn", "train", "--schedule", "linear"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "invalid choice: 'linear'" in run.stderr
