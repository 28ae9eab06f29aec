"""Fixtures shared by the tests.

``mnist``: the real MNIST, loaded once per test session through pynn.datasets (so the first
session on a machine fetches it into the cache, ~/.cache/pynn). It is a named pair:

    (X_train, y_train), (X_test, y_test) = mnist
    X_train, y_train = mnist.train       # also mnist["train"]; uint8 (60000, 28, 28), (60000,)
    X_test, y_test = mnist.test          # also mnist["test"];  uint8 (10000, 28, 28), (10000,)

The arrays are read-only: a test that needs to change one copies it.

``kernels``: runs the test once on each SIMD kernel set this CPU runs (pynn.ops.select_kernels),
``threads``: once on one thread and once on two.
``every_job_shared``: every job the kernels can split is split among the threads, however
small (pynn.ops.share_every_job), for the length of the test.
"""
from typing import NamedTuple

import pytest


class MNIST(NamedTuple):
    train: tuple
    test: tuple

    def __getitem__(self, key):
        return getattr(self, key) if isinstance(key, str) else tuple.__getitem__(self, key)


@pytest.fixture(scope="session")
def mnist():
    from pynn import datasets
    splits = []
    for split in ("train", "test"):
        images, labels = datasets.mnist(split)
        for a in (images, labels):
            a.setflags(write=False)
        splits.append((images, labels))
    return MNIST(*splits)


def _kernel_sets():
    from pynn._pynn import lib
    sets = [k for k in ("avx512f", "avx2", "generic") if lib.pynn_kernels_select(k.encode()) == 0]
    lib.pynn_kernels_select(b"auto")
    return sets


@pytest.fixture(params=_kernel_sets())
def kernels(request):
    from pynn import ops
    ops.select_kernels(request.param)
    yield request.param
    ops.select_kernels("auto")


@pytest.fixture(params=[1, 2])
def threads(request):
    from pynn import ops
    before = ops.get_num_threads()
    ops.set_num_threads(request.param)
    yield request.param
    ops.set_num_threads(before)


@pytest.fixture
def every_job_shared():
    from pynn import ops
    before = ops.get_num_threads()
    ops.share_every_job(True)
    yield
    ops.share_every_job(False)
    ops.set_num_threads(before)
