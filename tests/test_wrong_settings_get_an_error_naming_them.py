"""Wrong settings, from the environment, the command line or the API, get one line (or a
TypeError/ValueError) naming what was wrong: never a traceback at import, a MemoryError, an
AttributeError from deep inside, or a silently different network."""
import os
import subprocess
import sys

import numpy as np
import pytest

import pynn
from pynn import ops


def run(*args, env=None, timeout=60):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1e3", "99999999999999999999999"])
def test_a_bad_thread_count_in_the_environment_is_one_warning_not_a_traceback(value):
    proc = run("-c", "import pynn; print(pynn.get_num_threads())", env={"PYNN_NUM_THREADS": value})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "PYNN_NUM_THREADS" in lines[0] and repr(value) in lines[0]
    assert int(proc.stdout) >= 1


def test_a_good_thread_count_in_the_environment_is_used_silently():
    proc = run("-c", "import pynn; print(pynn.get_num_threads())", env={"PYNN_NUM_THREADS": "1"})
    assert proc.returncode == 0 and proc.stderr == "" and proc.stdout.strip() == "1"


def test_an_architecture_too_large_for_memory_is_refused_before_allocating():
    # 784-3000000-10 on a 24 GB machine; wider where there is more memory
    memory = ops.physical_memory()
    width = max(3000000, memory // (16 * 795) + 1)
    if width > ops.MAX_WIDTH:
        pytest.skip("this machine's memory holds the widest layer a network takes")
    proc = run("-m", "pynn", "train", "--arch", f"784-{width}-10", "--epochs", "1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "GiB" in lines[0] and "Traceback" not in proc.stderr
    with pytest.raises(ValueError, match="memory"):
        pynn.Network([784, width, 10])


def test_more_layers_than_the_c_network_takes_are_refused_saying_so():
    with pytest.raises(ValueError, match=f"at most {ops.MAX_LAYERS}"):
        pynn.Network([3] * (ops.MAX_LAYERS + 2))
    net = pynn.Network([3] * (ops.MAX_LAYERS + 1))           # 64 layers: fine
    assert net.predict_proba(np.ones((1, 3), np.float32)).shape == (1, 3)


@pytest.mark.parametrize("sizes", [[784, 3.5, 10], [784, True, 10], [784, float("inf"), 10],
                                   [784, float("nan"), 10], [784, "30", 10], [784, 10 ** 30, 10],
                                   [784, ops.MAX_WIDTH + 1, 10], {"a": 1}])
def test_widths_that_are_not_whole_numbers_in_range_are_refused_not_dropped(sizes):
    # [784, 3.5, 10] used to become 784-10 without a word
    with pytest.raises(ValueError, match="sizes"):
        pynn.Network(sizes)


def test_an_object_that_is_no_optimiser_is_a_type_error_naming_it():
    net = pynn.Network([4, 3, 2])
    X, y = np.zeros((5, 4), np.float32), np.zeros(5, np.int64)
    for call in (lambda: net.fit(X, y, optimizer=object()),
                 lambda: net.train_epoch(X, y, optimizer="sgd"),
                 lambda: net.train_batch(X, net.targets(y, 5), optimizer=object())):
        with pytest.raises(TypeError, match="optimizer"):
            call()


def test_a_step_counter_beyond_int64_is_refused_naming_it():
    opt = pynn.Adam()
    with pytest.raises(ValueError, match="steps"):
        opt.steps = 2 ** 70
    with pytest.raises(ValueError, match="steps"):
        opt.load_state_dict({"steps": 2 ** 63, "state": []})
    with pytest.raises(TypeError, match="steps"):
        opt.steps = 3.0
    w = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="step"):
        ops.adam_update(w, w.copy(), w.copy(), w.copy(), 0.1, 0.9, 0.99, 1e-8, 0.0, 2 ** 70)
