import numpy as np

import pynn
from pynn import ops


def test_paper_matrix_product_eq_10_11():
    A = np.array([[1, 2], [3, 4]], dtype=np.float32)
    B = np.array([[5, 6], [7, 8]], dtype=np.float32)
    assert ops.matmul(A, B).tolist() == [[19, 22], [43, 50]]
    assert ops.matmul(B, A).tolist() == [[23, 34], [31, 46]]


def test_network_learns_a_separable_problem():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 20)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + 2 * (X[:, 2] > 0)
    net = pynn.Network([20, 32, 4], seed=0)
    net.fit(X, y, epochs=10, batch_size=32, optimizer=pynn.SGD(lr=0.05, momentum=0.9))
    assert net.accuracy(X, y) > 0.97
