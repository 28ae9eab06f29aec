"""The seed paper's own worked examples (sections 3 and 4), computed by pynn and held to the
numbers printed in the paper. Equation numbers are the paper's (see docs/MATH.md)."""
import math

import numpy as np
import pytest

import pynn
from pynn import ops

A = np.array([[1, 2], [3, 4]], dtype=np.float32)   # eq. 10
B = np.array([[5, 6], [7, 8]], dtype=np.float32)


@pytest.mark.parametrize("reference", [False, True], ids=["fast", "reference"])
def test_matrix_product_is_not_commutative_eq_10_11(reference):
    # eq. 11: A.B = [[1*5 + 2*7, 1*6 + 2*8], [3*5 + 4*7, 3*6 + 4*8]], B.A likewise
    assert ops.matmul(A, B, reference=reference).tolist() == [[19, 22], [43, 50]]
    assert ops.matmul(B, A, reference=reference).tolist() == [[23, 34], [31, 46]]


def test_matrix_product_shape_eq_5_9():
    # (3x2)(2x3) is 3x3 and c_11 = a_11 b_11 + a_12 b_21 (eq. 5); (2x3)(3x2) is 2x2
    a = np.arange(1, 7, dtype=np.float32).reshape(3, 2)
    b = np.arange(7, 13, dtype=np.float32).reshape(2, 3)
    c = ops.matmul(a, b)
    assert c.shape == (3, 3)
    assert c[0, 0] == a[0, 0] * b[0, 0] + a[0, 1] * b[1, 0]
    assert ops.matmul(b, a).shape == (2, 2)


def test_transpose_eq_12():
    # op(A) = A^T: A^T.B computed by the kernel equals the product of the transposed matrix
    assert ops.matmul(A, B, trans_a=True).tolist() == [[26, 30], [38, 44]]
    assert ops.matmul(A, B, trans_b=True).tolist() == [[17, 23], [39, 53]]


def test_feedforward_of_the_1_1_1_network_eq_13_17():
    # a1 = x, a2 = s(w1 a1 + b1), a3 = s(w2 a2 + b2), y = a3, with s the sigmoid of eq. 17
    net = pynn.Network([1, 1, 1], activation="sigmoid", output="sigmoid", loss="quadratic")
    w1, b1, w2, b2, x = 0.7, -0.3, -1.2, 0.4, 0.9
    net.weights[0][0, 0], net.biases[0][0] = w1, b1
    net.weights[1][0, 0], net.biases[1][0] = w2, b2
    s = lambda v: 1.0 / (1.0 + math.exp(-v))
    expected = s(w2 * s(w1 * x + b1) + b2)
    y = net.predict_proba(np.array([[x]], dtype=np.float32))
    assert y.shape == (1, 1)
    assert y[0, 0] == pytest.approx(expected, rel=1e-6)


# eq. 18: the model's prediction for an image of a 2, and the one-hot right answer
Y_PRED = [0.12, 0.03, 0.25, 0.07, 0.18, 0.09, 0.04, 0.11, 0.06, 0.05]
DIGIT = 2
# eq. 19-21 by hand: the squares of (0 - 0.12), (0 - 0.03), (1 - 0.25), ..., (0 - 0.05)
#   0.0144 + 0.0009 + 0.5625 + 0.0049 + 0.0324 + 0.0081 + 0.0016 + 0.0121 + 0.0036 + 0.0025
L_EQ_21 = 0.643


def test_quadratic_loss_of_one_sample_eq_19_21():
    y = np.array([Y_PRED], dtype=np.float32)
    t = np.zeros((1, 10), dtype=np.float32)
    t[0, DIGIT] = 1.0
    assert ops.quadratic_loss(y, t) == pytest.approx(L_EQ_21, abs=1e-6)


def test_quadratic_loss_through_a_network_eq_21():
    # A linear 1-10 network with zero weights outputs its bias: set the bias to eq. 18's
    # prediction and the network's loss against the label 2 must be eq. 21's number.
    net = pynn.Network([1, 10], activation="linear", output="linear", loss="quadratic")
    net.weights[0][:] = 0.0
    net.biases[0][:] = Y_PRED
    X = np.ones((1, 1), dtype=np.float32)
    assert net.loss_value(X, np.array([DIGIT])) == pytest.approx(L_EQ_21, abs=1e-6)


def test_quadratic_loss_is_a_mean_over_samples_eq_22():
    # eq. 22: sum over the 10 units, mean over the N samples. Three samples whose losses are
    # 0.643, 0 (a perfect answer) and 2 (two units wrong by 1) average to 2.643 / 3.
    y = np.zeros((3, 10), dtype=np.float32)
    t = np.zeros((3, 10), dtype=np.float32)
    y[0], t[0, DIGIT] = Y_PRED, 1.0
    y[1, 5] = t[1, 5] = 1.0
    y[2, 0], t[2, 1] = 1.0, 1.0
    assert ops.quadratic_loss(y, t) == pytest.approx((L_EQ_21 + 0.0 + 2.0) / 3, abs=1e-6)


def test_softmax_example_eq_24():
    p = ops.softmax(np.array([2.0, 1.0, 0.1], dtype=np.float32))
    assert np.round(p.astype(np.float64), 3).tolist() == [0.659, 0.242, 0.099]
    e = [math.exp(2.0), math.exp(1.0), math.exp(0.1)]     # eq. 24's middle column
    assert p.tolist() == pytest.approx([v / sum(e) for v in e], rel=1e-6)
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-6)


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def closed_form_gradients(x, t, w1, b1, w2, b2):
    """Section 4.6.1: y = s(w1 x + b1) w2 + b2 (eq. 27), L = (y - t)^2 (eq. 29), t the paper's y-hat."""
    z1 = w1 * x + b1
    y = sigmoid(z1) * w2 + b2
    ds = sigmoid(z1) * (1.0 - sigmoid(z1))      # s'(z) = s(z)(1 - s(z))
    return {
        "b2": 2 * (y - t),                      # eq. 36
        "w2": 2 * (y - t) * sigmoid(z1),        # eq. 41
        "b1": 2 * (y - t) * w2 * ds,            # eq. 47
        "w1": 2 * (y - t) * w2 * x * ds,        # eq. 52
        "loss": (y - t) ** 2,                   # eq. 29-30
    }


@pytest.mark.parametrize("x, t, w1, b1, w2, b2", [
    (1.0, 0.0, 0.5, 0.1, -0.3, 0.2),
    (0.8, 1.0, -1.5, 0.7, 2.0, -0.4),
    (-2.0, 0.3, 0.25, -1.0, 1.3, 0.05),
    (3.0, -1.0, 1.1, 0.0, -0.7, 0.9),
    (0.0, 2.5, 2.0, 2.0, 0.6, -1.2),
])
def test_backpropagation_example_eq_27_52(x, t, w1, b1, w2, b2):
    net = pynn.Network([1, 1, 1], activation="sigmoid", output="linear", loss="quadratic")
    net.weights[0][0, 0], net.biases[0][0] = w1, b1
    net.weights[1][0, 0], net.biases[1][0] = w2, b2
    X = np.array([[x]], dtype=np.float32)
    T = np.array([[t]], dtype=np.float32)
    # float32 versions of the parameters, so the closed forms see what the network sees
    p = {k: float(np.float32(v)) for k, v in dict(x=x, t=t, w1=w1, b1=b1, w2=w2, b2=b2).items()}
    want = closed_form_gradients(**p)
    (dW1, db1), (dW2, db2) = net.gradients(X, T)
    assert dW1.shape == (1, 1) and db1.shape == (1,) and dW2.shape == (1, 1) and db2.shape == (1,)
    got = {"w1": dW1[0, 0], "b1": db1[0], "w2": dW2[0, 0], "b2": db2[0]}
    for name in ("b2", "w2", "b1", "w1"):
        assert float(got[name]) == pytest.approx(want[name], rel=1e-5, abs=1e-6), name
    assert net.loss_value(X, T) == pytest.approx(want["loss"], rel=1e-5, abs=1e-7)
