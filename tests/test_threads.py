"""One threading system for all C: the image kernels (csrc/image/) run on pynn's own pool, as
the network's kernels do, with no OpenMP runtime in the extension.

Each image of a stack is computed by one thread, so the results must not depend on the thread
count; and a child forked after a parallel image kernel must run them again, which a child of a
process that had run an OpenMP region could not (libgomp's workers do not survive fork).
"""
import multiprocessing
import os

import numpy as np
import pytest

import pynn._pynn
from pynn import ops

N = 600      # images: enough work that more than one thread is asked for


def stack(seed=0):
    rng = np.random.default_rng(seed)
    images = (rng.random((N, 28, 28)) * (rng.random((N, 28, 28)) < 0.3)).astype(np.float32)
    mats = np.tile(np.array([1.0, 0.1, -1.0, -0.05, 1.0, 0.5], np.float32), (N, 1))
    mats += (0.05 * rng.standard_normal((N, 6))).astype(np.float32)
    dx, dy = (rng.standard_normal((2, N, 9, 9)) * 2.0).astype(np.float32)
    amount = np.linspace(-1.0, 1.0, N).astype(np.float32)
    field = (np.arange(N) % 7 - 1).astype(np.int64)                # -1: no field for that image
    noise = rng.random((6, 2, 9, 9), dtype=np.float32)
    return images, mats, dx, dy, amount, field, noise


def every_image_kernel(images, mats, dx, dy, amount, field, noise):
    return {
        "warp": ops.warp(images, mats),
        "warp with fields": ops.warp(images, mats, dx, dy),
        "gaussian_blur": ops.gaussian_blur(images, 1.5, gain=2.0),
        "stroke_width": ops.stroke_width(images, amount),
        "distort": ops.distort(images, mats, field, noise, 2.0, 3.0, amount),
    }


@pytest.fixture
def threads():
    before = ops.get_num_threads()
    yield ops.set_num_threads
    ops.set_num_threads(before)


def test_the_image_kernels_give_the_same_bits_on_any_number_of_threads(threads):
    data = stack()
    threads(1)
    alone = every_image_kernel(*data)
    for n in (2, 3, 5):
        threads(n)
        shared = every_image_kernel(*data)
        for name, expected in alone.items():
            assert shared[name].tobytes() == expected.tobytes(), f"{name} on {n} threads"
    # the kernels did work: a warp of non-blank images is not blank
    assert all(np.count_nonzero(a) > N for a in alone.values())


def test_the_extension_carries_no_openmp_runtime():
    with open(pynn._pynn.__file__, "rb") as f:
        binary = f.read()
    assert b"pynn_net_train" in binary                   # the extension itself
    assert b"GOMP_" not in binary and b"libgomp" not in binary and b"omp_get" not in binary


def _child_distorts(q, data):
    q.put(every_image_kernel(*data)["distort"].tobytes())


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_child_forked_after_a_parallel_image_kernel_runs_them_again(threads):
    data = stack(1)
    threads(2)
    expected = every_image_kernel(*data)["distort"]       # the parent's pool has run
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_distorts, args=(q, data))
    p.start()
    try:
        got = q.get(timeout=120)        # queue.Empty: the child hung (or died) before answering
        p.join(60)
        assert not p.is_alive(), "the forked child hung"
    finally:
        if p.is_alive():
            p.kill()
    assert got == expected.tobytes()
