"""Determinism: the same seed and the same thread count give the same weights, bit for bit, in
separate processes; the thread count comes from PYNN_NUM_THREADS or pynn.set_num_threads and
defaults to the cores this process may run on."""
import os
import subprocess
import sys
import textwrap

import pytest

TRAIN = textwrap.dedent("""
    import hashlib, sys
    import numpy as np
    import pynn
    if len(sys.argv) > 1:
        pynn.set_num_threads(int(sys.argv[1]))
    rng = np.random.default_rng(7)
    X = rng.random((1500, 784), dtype=np.float32)       # big enough for the threaded kernels
    y = rng.integers(0, 10, size=1500)
    net = pynn.Network([784, 96, 10], seed=3)
    net.fit(X, y, epochs=2, batch_size=64, optimizer=pynn.SGD(lr=0.05, momentum=0.9))
    digest = hashlib.sha256(b"".join(a.tobytes() for a in net.weights + net.biases)).hexdigest()
    print(pynn.get_num_threads(), digest)
""")


def child(code, threads=None, args=()):
    env = {k: v for k, v in os.environ.items() if k != "PYNN_NUM_THREADS"}
    if threads is not None:
        env["PYNN_NUM_THREADS"] = str(threads)
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=env, timeout=300)


def trained(threads=None, args=()):
    proc = child(TRAIN, threads, args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    used, digest = proc.stdout.split()
    return int(used), digest


@pytest.mark.parametrize("threads", [1, 2])
def test_same_seed_and_threads_give_the_same_weights_in_separate_processes(threads):
    first, second = trained(threads), trained(threads)
    assert first[0] == threads
    assert first == second


def test_set_num_threads_is_the_same_as_the_environment_variable():
    assert trained(args=("2",)) == trained(threads=2)


def test_the_default_is_the_cores_this_process_may_use():
    proc = child("import pynn; print(pynn.get_num_threads())")
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("value", ["0", "abc", "-3", "5000"])
def test_a_bad_thread_count_in_the_environment_is_a_clear_warning(value):
    proc = child("import pynn", threads=value)
    assert proc.returncode == 0
    assert "ignoring PYNN_NUM_THREADS" in proc.stderr.strip().splitlines()[-1]


def test_the_thread_count_does_not_change_the_weights_either():
    # each output element of a product is summed by one thread, in a fixed order, so the split
    # of the work among threads leaves the bits alone (the SIMD path, by contrast, does not)
    assert trained(1)[1] == trained(2)[1]
