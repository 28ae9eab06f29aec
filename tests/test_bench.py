"""pynn bench runs to the end and prints its tables, with or without PyTorch (timings are not
checked here: they are what the benchmark reports, never what a test asserts)."""
import argparse

import numpy as np
import pytest

from pynn import bench


def test_inference_section_runs_without_torch(monkeypatch, capsys):
    monkeypatch.setattr(bench, "optional_torch", lambda: None)
    assert bench.main(["--quick", "--sections", "infer", "--threads", "1"]) == 0
    text = capsys.readouterr().out
    assert "PyTorch: not installed" in text
    row = next(line for line in text.splitlines() if line.startswith("784-128-10"))
    pynn_us, one_us, c_us, dense_us, numpy_us, torch_us, thr, ratio, vs_torch = row.split()[1:10]
    assert (torch_us, thr, vs_torch) == ("-", "-", "-")
    # without PyTorch the ratio is numpy's time over pynn's, as printed: to the rounding of
    # the ratio (0.005) and of each time (0.05 us), whose share grows as a time shrinks
    p, n = float(pynn_us), float(numpy_us)
    slack = 0.0051 + (n / p) * (0.05 / p + 0.05 / n)
    assert float(ratio.rstrip("x")) == pytest.approx(n / p, abs=slack)
    # the shipped model is the convolutional network: named as such, never as dense widths
    assert "the shipped model is the convolutional network" in text
    assert "shipped 784-" not in text


@pytest.mark.parametrize("mnist", [True, False])
def test_inference_times_real_digits(monkeypatch, mnist):
    # MNIST's first test digits, or (without MNIST) digits drawn as the pad draws them: real
    # digits, with the blank paper whose blocks the first layer skips
    if not mnist:
        monkeypatch.setattr(bench, "mnist_arrays", lambda args: (None, "no MNIST here"))
    args = argparse.Namespace(data_dir=None)
    try:
        digits, source = bench.sample_digits(args)
    except Exception as e:           # no MNIST at hand: the other case covers the fallback
        pytest.skip(f"MNIST is not at hand: {e}")
    assert source.startswith("the first eight MNIST") == mnist and ("drawn" in source) == (not mnist)
    assert len(digits) == 8
    for x in digits:
        assert x.shape == (1, 784) and x.dtype == np.float32 and x.flags.c_contiguous
        assert 0.0 <= x.min() and x.max() <= 1.0
        blank = ~(x.reshape(49, 16) != 0).any(axis=1)
        assert 0.15 < blank.mean() < 0.8       # ink, and blocks without any
    assert len({x.tobytes() for x in digits}) == 8


def test_gemm_rows_measure_the_right_product(monkeypatch):
    # the prepared call the GEMM table times computes what numpy computes
    rng = np.random.default_rng(0)
    for name, M, N, K, ta, tb in bench.gemm_cases(quick=True)[:6]:
        fns = bench.gemm_fns(M, N, K, ta, tb, None, rng)
        got = fns[0]().copy()
        want = fns[1]()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(K))


def test_unknown_section_is_an_error(capsys):
    assert bench.main(["--sections", "gemm,nope"]) == 2
    err = capsys.readouterr().err
    assert "--sections" in err and "nope" in err


def test_pytorch_is_compared_at_its_faster_thread_count():
    class FakeTorch:                      # records the thread count each call ran on
        threads = 2

        def get_num_threads(self):
            return self.threads

        def set_num_threads(self, n):
            self.threads = n
    torch, seen = FakeTorch(), []
    fns = bench.torch_thread_counts(torch, lambda: seen.append(torch.threads))
    for f in fns:
        f()
    assert seen == [2, 1] and torch.threads == 2          # restored after the one-thread run
    assert bench.fastest_torch([3.0, 2.0], torch) == (2.0, "1")
    assert bench.fastest_torch([1.0, 2.0], torch) == (1.0, "2")
    assert bench.fastest_torch([], None) == (None, "-")
    torch.threads = 1
    assert len(bench.torch_thread_counts(torch, lambda: None)) == 1


def test_the_command_reruns_itself_with_openblas_threads_that_go_idle(monkeypatch):
    import argparse
    calls = []
    monkeypatch.setattr(bench.subprocess, "call", lambda argv, env: calls.append((argv, env)) or 0)
    monkeypatch.delenv("OPENBLAS_THREAD_TIMEOUT", raising=False)
    monkeypatch.setattr(bench.sys, "argv", ["pynn", "bench", "--quick", "--sections", "infer"])
    args = argparse.Namespace(quick=True, sections="infer", threads=None, epochs=2, data_dir=None)
    assert bench.cli(args) == 0
    (argv, env), = calls
    assert argv[1:] == ["-m", "pynn.bench", "--quick", "--sections", "infer"]
    assert env["OPENBLAS_THREAD_TIMEOUT"] == "24"
    monkeypatch.setenv("OPENBLAS_THREAD_TIMEOUT", "20")     # the user's own setting: run here
    monkeypatch.setattr(bench, "run", lambda a: 7)
    assert bench.cli(args) == 7 and len(calls) == 1


def test_the_conv_section_counts_a_training_steps_flops_and_runs(capsys):
    from pynn import Network
    net = Network(bench.CONV_ARCH, seed=0)
    forward = {"conv1": 24 * 24 * 32 * 25, "conv2": 8 * 8 * 64 * 32 * 25, "fc1": 1024 * 256,
               "fc2": 256 * 10}
    # the first layer makes no input gradient: 2 products of its size, the others 3
    want = 2 * (2 * forward["conv1"] + 3 * (forward["conv2"] + forward["fc1"] + forward["fc2"]))
    assert bench.training_flops(net) == want
    assert bench.main(["--quick", "--sections", "conv", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "Convolutional network" in out and "23.1 MFLOP a sample" in out
