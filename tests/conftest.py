"""Fixtures shared by the tests.

``mnist``: the real MNIST, loaded once per test session through pynn.datasets (so the first
session on a machine fetches it into the cache, ~/.cache/pynn). It is a named pair:

    (X_train, y_train), (X_test, y_test) = mnist
    X_train, y_train = mnist.train       # also mnist["train"]; uint8 (60000, 28, 28), (60000,)
    X_test, y_test = mnist.test          # also mnist["test"];  uint8 (10000, 28, 28), (10000,)

The arrays are read-only: a test that needs to change one copies it.
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
