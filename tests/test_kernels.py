"""Every C kernel (through pynn.ops) against a float64 numpy reference.

float32 results are held to error bounds that scale with the work done: a dot product of K
terms may be off by about K rounding errors of its largest terms, so the GEMM tolerance is
K * eps32 * (|alpha| |A||B| + |beta| |C|), element by element. Sizes are chosen to miss every
block size a fast kernel may use (1, primes, 2^k +- 1).
"""
import re

import numpy as np
import pytest

from pynn import ops

EPS32 = float(np.finfo(np.float32).eps)
SIZES = [1, 2, 3, 5, 7, 13, 17, 31, 33, 63, 65, 127, 129, 257]


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


# ---- GEMM ----

# (M, N, K): every size on each axis with the others small, square odd and prime sizes,
# shapes the network uses (a batch of 64 through 784-800-10), and the largest sizes together.
GEMM_SHAPES = sorted(set(
    [(s, 3, 5) for s in SIZES] + [(5, s, 3) for s in SIZES] + [(3, 5, s) for s in SIZES]
    + [(s, s, s) for s in SIZES if s <= 65]
    + [(1, 1, 1), (1, 257, 1), (257, 1, 1), (1, 1, 257), (17, 31, 13), (63, 129, 65),
       (129, 33, 127), (65, 127, 257), (257, 129, 65), (64, 800, 784), (64, 10, 800),
       (10, 800, 64), (257, 257, 257)]))
TRANS = [(False, False), (False, True), (True, False), (True, True)]


def gemm_reference(a, b, c, alpha, beta, trans_a, trans_b):
    """float64 C = alpha op(A) op(B) + beta C, and the error bound float32 may reach."""
    opa = a.T.astype(np.float64) if trans_a else a.astype(np.float64)
    opb = b.T.astype(np.float64) if trans_b else b.astype(np.float64)
    K = opa.shape[1]
    c0 = np.zeros_like(c, dtype=np.float64) if beta == 0 else c.astype(np.float64)
    want = alpha * (opa @ opb) + beta * c0
    scale = abs(alpha) * (np.abs(opa) @ np.abs(opb)) + abs(beta) * np.abs(c0)
    return want, (K + 4) * EPS32 * scale + 1e-30


def gemm_case(rng, M, N, K, trans_a, trans_b, scale=1.0):
    a = rand(rng, *((K, M) if trans_a else (M, K)), scale=scale)
    b = rand(rng, *((N, K) if trans_b else (K, N)), scale=scale)
    return a, b


def check_gemm(M, N, K, trans_a, trans_b, alpha, beta, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    a, b = gemm_case(rng, M, N, K, trans_a, trans_b, scale)
    c_init = rand(rng, M, N, scale=scale) if beta != 0 else np.full((M, N), np.nan, np.float32)
    want, tol = gemm_reference(a, b, c_init, alpha, beta, trans_a, trans_b)
    for reference in (True, False):
        c = c_init.copy()
        out = ops.gemm(a, b, c, alpha=alpha, beta=beta, trans_a=trans_a, trans_b=trans_b,
                       reference=reference)
        assert out is c
        err = np.abs(c.astype(np.float64) - want)
        kind = "reference" if reference else "fast"
        assert np.isfinite(c).all(), f"{kind} GEMM {M}x{N}x{K}: non-finite output"
        assert (err <= tol).all(), (
            f"{kind} GEMM {M}x{N}x{K} trans={trans_a, trans_b} alpha={alpha} beta={beta}: "
            f"max error {err.max():.3g}, max allowed there {tol.flat[np.argmax(err - tol)]:.3g}")


@pytest.mark.parametrize("M,N,K", GEMM_SHAPES, ids=lambda v: str(v))
def test_gemm_matches_float64_on_odd_shapes(M, N, K):
    for i, (ta, tb) in enumerate(TRANS):
        check_gemm(M, N, K, ta, tb, alpha=1.0, beta=0.0, seed=M * 10007 + N * 101 + K + i)


@pytest.mark.parametrize("alpha,beta", [(1.0, 1.0), (-0.5, 2.0), (2.5, -1.0), (0.0, 0.5),
                                        (1.0, 0.0), (-3.0, 0.0)])
@pytest.mark.parametrize("trans_a,trans_b", TRANS)
@pytest.mark.parametrize("M,N,K", [(1, 1, 1), (7, 13, 5), (33, 17, 65), (129, 63, 31)])
def test_gemm_alpha_beta_and_transposes(M, N, K, trans_a, trans_b, alpha, beta):
    # beta == 0 fills C with NaN first: C must be written, never read, so no NaN may leak
    check_gemm(M, N, K, trans_a, trans_b, alpha, beta, seed=M + N + K)


@pytest.mark.parametrize("trans_a,trans_b", TRANS)
def test_gemm_large_values(trans_a, trans_b):
    # entries near 1e15: products near 1e30, sums of 127 of them still far from float32's max
    check_gemm(65, 33, 127, trans_a, trans_b, alpha=1.0, beta=1.0, seed=5, scale=1e15)


@pytest.mark.parametrize("reference", [False, True])
def test_gemm_with_no_inner_dimension_scales_c(reference):
    # K = 0: the product is empty, so C = beta * C (and all zeros when beta = 0)
    a = np.empty((4, 0), np.float32)
    b = np.empty((0, 3), np.float32)
    c = np.full((4, 3), 2.0, np.float32)
    ops.gemm(a, b, c, alpha=1.0, beta=0.5, reference=reference)
    assert (c == 1.0).all()
    c[:] = np.nan
    ops.gemm(a, b, c, alpha=1.0, beta=0.0, reference=reference)
    assert (c == 0.0).all()


def test_gemm_same_result_with_one_and_two_threads():
    rng = np.random.default_rng(3)
    a, b = rand(rng, 257, 129), rand(rng, 129, 65)
    before = ops.get_num_threads()
    try:
        ops.set_num_threads(1)
        one = ops.matmul(a, b)
        ops.set_num_threads(2)
        two = ops.matmul(a, b)
    finally:
        ops.set_num_threads(before)
    want, tol = gemm_reference(a, b, one, 1.0, 0.0, False, False)
    assert (np.abs(one - want) <= tol).all() and (np.abs(two - want) <= tol).all()


def test_matmul_writes_into_out():
    rng = np.random.default_rng(4)
    a, b = rand(rng, 5, 7), rand(rng, 3, 7)
    out = np.full((5, 3), np.nan, np.float32)
    assert ops.matmul(a, b, trans_b=True, out=out) is out
    np.testing.assert_allclose(out, a.astype(np.float64) @ b.T, rtol=1e-5, atol=1e-5)


# ---- bias ----

@pytest.mark.parametrize("B,n", [(1, 1), (7, 13), (64, 257), (129, 10)])
def test_bias_forward_and_backward(B, n):
    rng = np.random.default_rng(B * n)
    z, bias, dz = rand(rng, B, n), rand(rng, n), rand(rng, B, n)
    want = z.astype(np.float64) + bias
    assert ops.bias_forward(z, bias) is z
    np.testing.assert_allclose(z, want, rtol=1e-6, atol=1e-6)
    db = ops.bias_backward(dz)                     # db = column sums of dz
    tol = (B + 2) * EPS32 * np.abs(dz).sum(axis=0)
    assert (np.abs(db - dz.astype(np.float64).sum(axis=0)) <= tol).all()
    acc = np.ones(n, np.float32)                   # gradients accumulate: out += sums
    ops.bias_backward(dz, out=acc)
    assert (np.abs(acc - (1.0 + dz.astype(np.float64).sum(axis=0))) <= tol + 2 * EPS32).all()


# ---- activations ----

def np_sigmoid(x):
    with np.errstate(over="ignore"):      # e^1000 is inf in float64 too; 1/(1+inf) is the 0 we want
        return 1.0 / (1.0 + np.exp(-x))


ELEMENTWISE = {
    # name: (f in float64, f' written in terms of the output y)
    "sigmoid": (np_sigmoid, lambda y: y * (1.0 - y)),
    "relu": (lambda x: np.maximum(x, 0.0), lambda y: (y > 0).astype(np.float64)),
    "tanh": (np.tanh, lambda y: 1.0 - y * y),
    "linear": (lambda x: x, lambda y: np.ones_like(y)),
}


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
@pytest.mark.parametrize("shape", [(1,), (1, 1), (7, 13), (3, 5, 2), (129, 33)])
def test_elementwise_activations_forward_backward(name, shape):
    f, df = ELEMENTWISE[name]
    rng = np.random.default_rng(len(shape) * 31 + shape[-1])
    x = rand(rng, *shape, scale=3.0)
    y = ops.activation_forward(name, x)
    assert y.shape == x.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, f(x.astype(np.float64)), rtol=2e-6, atol=1e-7)
    dout = rand(rng, *shape)
    # f' from the float64 output of the float64 forward: an independent reference
    y64 = f(x.astype(np.float64))
    dinp = ops.activation_backward(name, y, dout)
    np.testing.assert_allclose(dinp, dout * df(y64), rtol=1e-5, atol=1e-6)


def test_named_activation_wrappers_and_in_place():
    x = np.linspace(-4, 4, 17, dtype=np.float32)
    np.testing.assert_allclose(ops.sigmoid(x), np_sigmoid(x.astype(np.float64)), rtol=2e-6)
    np.testing.assert_allclose(ops.relu(x), np.maximum(x, 0))
    np.testing.assert_allclose(ops.tanh(x), np.tanh(x.astype(np.float64)), rtol=2e-6, atol=1e-7)
    want = np.tanh(x.astype(np.float64))
    assert ops.tanh(x, out=x) is x                  # out may be the input itself
    np.testing.assert_allclose(x, want, rtol=2e-6, atol=1e-7)


def test_activations_at_extreme_inputs():
    x = np.array([-1e30, -1000.0, -88.0, -20.0, 0.0, 20.0, 88.0, 1000.0, 1e30], np.float32)
    s = ops.sigmoid(x)
    assert np.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    np.testing.assert_allclose(s, np_sigmoid(x.astype(np.float64)), rtol=1e-6, atol=1e-30)
    t = ops.tanh(x)
    assert np.isfinite(t).all()
    np.testing.assert_allclose(t, np.tanh(x.astype(np.float64)), rtol=1e-6)
    assert ops.relu(x).tolist() == np.maximum(x, 0).tolist()
    # sigmoid' and tanh' at saturation are 0, never NaN
    assert np.isfinite(ops.activation_backward("sigmoid", s, np.ones_like(s))).all()
    assert np.isfinite(ops.activation_backward("tanh", t, np.ones_like(t))).all()


def test_relu_keeps_nan():
    y = ops.relu(np.array([np.nan, -1.0, 1.0], np.float32))
    assert np.isnan(y[0]) and y[1] == 0.0 and y[2] == 1.0


def np_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("B,n", [(1, 1), (1, 3), (7, 10), (33, 17), (5, 257)])
def test_softmax_forward_backward(B, n):
    rng = np.random.default_rng(B + n)
    z = rand(rng, B, n, scale=4.0)
    p = ops.softmax(z)
    p64 = np_softmax(z.astype(np.float64))
    np.testing.assert_allclose(p, p64, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(p.astype(np.float64).sum(axis=1), 1.0, atol=1e-5)
    # backward: the Jacobian dp_i/dz_j = p_i (delta_ij - p_j), applied row by row
    dout = rand(rng, B, n)
    want = np.stack([(np.diag(pr) - np.outer(pr, pr)) @ dr for pr, dr in zip(p64, dout)])
    got = ops.activation_backward("softmax", p, dout)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_softmax_is_stable_for_large_inputs():
    z = np.array([[1000.0, 0.0, -1000.0], [1000.0, 1000.0, 1000.0], [-1000.0, -999.0, -1e30],
                  [3e38, 0.0, -3e38]], np.float32)
    p = ops.softmax(z)
    assert np.isfinite(p).all()
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(p[1], [1 / 3] * 3, rtol=1e-6)
    np.testing.assert_allclose(p[2], np_softmax(np.array([-1000.0, -999.0, -1e30])), rtol=1e-6)
    np.testing.assert_allclose(p[3], [1.0, 0.0, 0.0], atol=1e-7)
    # a vector is one row
    np.testing.assert_allclose(ops.softmax(np.array([1000.0, 0.0], np.float32)), [1.0, 0.0])


# ---- losses ----

def one_hot(labels, n):
    t = np.zeros((len(labels), n), np.float32)
    t[np.arange(len(labels)), labels] = 1.0
    return t


@pytest.mark.parametrize("B,n", [(1, 1), (1, 10), (7, 3), (64, 10), (129, 17)])
def test_quadratic_loss_and_gradient(B, n):
    rng = np.random.default_rng(B * 7 + n)
    y, t = rand(rng, B, n), rand(rng, B, n)
    y64, t64 = y.astype(np.float64), t.astype(np.float64)
    # eq. 22: summed over the units, averaged over the samples
    assert ops.quadratic_loss(y, t) == pytest.approx(((t64 - y64) ** 2).sum() / B, rel=1e-12)
    np.testing.assert_allclose(ops.quadratic_loss_backward(y, t), 2 * (y64 - t64) / B,
                               rtol=1e-6, atol=1e-7)


def np_log_softmax(z):
    m = z.max(axis=1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=1, keepdims=True))


@pytest.mark.parametrize("B,n", [(1, 2), (7, 10), (64, 10), (33, 257)])
@pytest.mark.parametrize("soft", [False, True], ids=["one-hot", "soft"])
def test_softmax_cross_entropy_and_gradient(B, n, soft):
    rng = np.random.default_rng(B + 3 * n + soft)
    z = rand(rng, B, n, scale=3.0)
    t = np_softmax(rng.standard_normal((B, n))).astype(np.float32) if soft else \
        one_hot(rng.integers(0, n, B), n)
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    loss, p = ops.softmax_cross_entropy(z, t)
    assert loss == pytest.approx(-(t64 * np_log_softmax(z64)).sum() / B, rel=1e-6)
    np.testing.assert_allclose(p, np_softmax(z64), rtol=1e-5, atol=1e-7)
    # d/dz of -sum t log softmax(z) is p * sum(t) - t; p - t for rows that sum to 1
    want = (np_softmax(z64) * t64.sum(axis=1, keepdims=True) - t64) / B
    np.testing.assert_allclose(ops.softmax_cross_entropy_backward(p, t), want, rtol=1e-4, atol=1e-7)
    # the same gradient by central differences of the float64 loss
    h = 1e-6
    i, j = B // 2, n // 2
    zp, zm = z64.copy(), z64.copy()
    zp[i, j] += h
    zm[i, j] -= h
    num = (-(t64 * np_log_softmax(zp)).sum() + (t64 * np_log_softmax(zm)).sum()) / B / (2 * h)
    assert want[i, j] == pytest.approx(num, rel=1e-5, abs=1e-9)


def test_softmax_cross_entropy_is_finite_for_huge_logits():
    z = np.array([[1e4, -1e4, 0.0], [3e38, -3e38, 0.0]], np.float32)
    t = one_hot([1, 1], 3)
    loss, p = ops.softmax_cross_entropy(z, t)
    # -log softmax(z)_1 = logsumexp(z) - z_1 = 1e4 - (-1e4), and 6e38 for the second row
    assert np.isfinite(loss)
    assert loss == pytest.approx((2e4 + 6e38) / 2, rel=1e-6)
    d = ops.softmax_cross_entropy_backward(p, t)
    assert np.isfinite(p).all() and np.isfinite(d).all()
    np.testing.assert_allclose(d, [[0.5, -0.5, 0.0], [0.5, -0.5, 0.0]], atol=1e-7)


@pytest.mark.parametrize("fused", ["softmax_cross_entropy", "sigmoid_cross_entropy"])
def test_fused_losses_may_write_probs_over_the_logits(fused):
    # the network passes probs=logits to save a buffer: the loss must read z before p replaces it
    rng = np.random.default_rng(11)
    z = rand(rng, 9, 10, scale=3.0)
    t = one_hot(rng.integers(0, 10, 9), 10)
    loss, p = getattr(ops, fused)(z.copy(), t)
    zz = z.copy()
    loss_in_place, p_in_place = getattr(ops, fused)(zz, t, probs=zz)
    assert p_in_place is zz
    assert loss_in_place == loss
    assert np.array_equal(p_in_place, p)


def np_sigmoid_ce(z, t):
    return (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - t * z).sum() / z.shape[0]


@pytest.mark.parametrize("B,n", [(1, 1), (7, 10), (65, 13)])
def test_sigmoid_cross_entropy_and_gradient(B, n):
    rng = np.random.default_rng(B * n + 1)
    z = rand(rng, B, n, scale=3.0)
    t = rng.uniform(0, 1, (B, n)).astype(np.float32)
    z64, t64 = z.astype(np.float64), t.astype(np.float64)
    loss, p = ops.sigmoid_cross_entropy(z, t)
    # -[t log s(z) + (1 - t) log(1 - s(z))], summed over units, mean over samples
    s = np_sigmoid(z64)
    assert loss == pytest.approx(-(t64 * np.log(s) + (1 - t64) * np.log(1 - s)).sum() / B, rel=1e-6)
    assert loss == pytest.approx(np_sigmoid_ce(z64, t64), rel=1e-6)
    np.testing.assert_allclose(p, s, rtol=2e-6)
    np.testing.assert_allclose(ops.sigmoid_cross_entropy_backward(p, t), (s - t64) / B,
                               rtol=1e-5, atol=1e-7)


def test_sigmoid_cross_entropy_is_finite_for_huge_logits():
    z = np.array([[1e4, -1e4, 100.0, -100.0]], np.float32)
    t = np.array([[0.0, 1.0, 1.0, 0.0]], np.float32)
    loss, p = ops.sigmoid_cross_entropy(z, t)
    assert np.isfinite(loss) and loss == pytest.approx(2e4, rel=1e-6)
    np.testing.assert_allclose(ops.sigmoid_cross_entropy_backward(p, t), [[1, -1, 0, 0]], atol=1e-7)


# ---- optimiser updates, several steps against float64 ----

def run_steps(update, reference, n_state, steps=5, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    w = rand(rng, n)
    state = [np.zeros(n, np.float32) for _ in range(n_state)]
    w64, state64 = w.astype(np.float64), [np.zeros(n) for _ in range(n_state)]
    for k in range(1, steps + 1):
        dw = rand(rng, n)
        update(w, state, dw, k)
        w64 = reference(w64, state64, dw.astype(np.float64), k)
    np.testing.assert_allclose(w, w64, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(w, rand(np.random.default_rng(seed), n))   # it did move


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_sgd_update(wd):
    def ref(w, s, dw, k):
        return w - 0.1 * (dw + wd * w)
    run_steps(lambda w, s, dw, k: ops.sgd_update(w, dw, 0.1, wd), ref, 0)


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_momentum_update(wd):
    def ref(w, s, dw, k):
        s[0] = 0.9 * s[0] + dw + wd * w
        return w - 0.05 * s[0]
    run_steps(lambda w, s, dw, k: ops.momentum_update(w, s[0], dw, 0.05, 0.9, wd), ref, 1)


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_adam_update(wd):
    lr, b1, b2, eps = 1e-2, 0.9, 0.999, 1e-8

    def ref(w, s, dw, k):
        g = dw + wd * w
        s[0] = b1 * s[0] + (1 - b1) * g
        s[1] = b2 * s[1] + (1 - b2) * g * g
        m_hat, v_hat = s[0] / (1 - b1 ** k), s[1] / (1 - b2 ** k)
        return w - lr * m_hat / (np.sqrt(v_hat) + eps)
    run_steps(lambda w, s, dw, k: ops.adam_update(w, s[0], s[1], dw, lr, b1, b2, eps, wd, k),
              ref, 2, steps=10)


def test_optimizer_classes_match_the_update_rules():
    """pynn.SGD and pynn.Adam step every parameter array with its own state."""
    import pynn
    rng = np.random.default_rng(9)
    for opt, ref_state in ((pynn.SGD(lr=0.1), 0), (pynn.SGD(lr=0.1, momentum=0.8, weight_decay=0.01), 1),
                           (pynn.Adam(lr=0.01, weight_decay=0.001), 2)):
        params = [rand(rng, 4, 3), rand(rng, 4)]
        ref = [p.astype(np.float64) for p in params]
        st = [[np.zeros(p.shape) for _ in range(ref_state)] for p in params]
        for k in range(1, 4):
            grads = [rand(rng, *p.shape) for p in params]
            opt.step(params, grads)
            for i, g in enumerate(grads):
                g = g + opt.weight_decay * ref[i]
                if isinstance(opt, pynn.Adam):
                    st[i][0] = opt.beta1 * st[i][0] + (1 - opt.beta1) * g
                    st[i][1] = opt.beta2 * st[i][1] + (1 - opt.beta2) * g * g
                    ref[i] = ref[i] - opt.lr * (st[i][0] / (1 - opt.beta1 ** k)) / (
                        np.sqrt(st[i][1] / (1 - opt.beta2 ** k)) + opt.eps)
                elif ref_state:
                    st[i][0] = opt.momentum * st[i][0] + g
                    ref[i] = ref[i] - opt.lr * st[i][0]
                else:
                    ref[i] = ref[i] - opt.lr * g
        for p, r in zip(params, ref):
            np.testing.assert_allclose(p, r, rtol=1e-5, atol=1e-6, err_msg=repr(opt))


# ---- one optimiser step over many arrays (csrc/fast/optim.c) ----

STEP_KINDS = [("sgd", {"lr": 0.1, "weight_decay": 0.01}),
              ("momentum", {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.01}),
              ("adam", {"lr": 1e-2, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                        "weight_decay": 0.001})]
# runs of 16 cut across arrays on any thread count: odd sizes, one element, an empty array
STEP_SHAPES = [(33, 17), (1,), (0,), (16,), (257,), (5, 31)]


def update_one_array(kind, hyper, p, s, g, step):
    if kind == "sgd":
        ops.sgd_update(p, g, hyper["lr"], hyper["weight_decay"])
    elif kind == "momentum":
        ops.momentum_update(p, s[0], g, hyper["lr"], hyper["momentum"], hyper["weight_decay"])
    else:
        ops.adam_update(p, s[0], s[1], g, hyper["lr"], hyper["beta1"], hyper["beta2"],
                        hyper["eps"], hyper["weight_decay"], step)


def step_arrays(kind, rng):
    params = [rand(rng, *s) for s in STEP_SHAPES]
    state = [[rand(rng, *s, scale=0.1) ** 2 for _ in range(ops.STATE_ARRAYS[kind])]
             for s in STEP_SHAPES]
    return params, state


def bits(arrays):
    return [a.view(np.uint32).copy() for a in arrays]


@pytest.mark.parametrize("kind,hyper", STEP_KINDS)
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_one_call_step_gives_the_bits_of_one_update_per_array(kind, hyper, n_threads,
                                                              every_job_shared):
    ops.set_num_threads(n_threads)
    rng = np.random.default_rng(5)
    params, state = step_arrays(kind, rng)
    mine = [p.copy() for p in params]
    my_state = [[s.copy() for s in st] for st in state]
    steps = 0
    for k in range(1, 4):
        grads = [rand(rng, *s) for s in STEP_SHAPES]
        for p, st, g in zip(params, state, grads):
            update_one_array(kind, hyper, p, st, g, k)
        finite, steps = ops.optimizer_step(kind, hyper, mine, grads, my_state, steps,
                                           check_finite=True)
        assert finite and steps == k
    flat = [s for st in state for s in st]
    my_flat = [s for st in my_state for s in st]
    for a, b in zip(bits(params + flat), bits(mine + my_flat)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("where", [0, -1])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_call_step_on_a_gradient_not_finite_changes_nothing_when_asked(where, bad,
                                                                           every_job_shared):
    """The first array is the first thread's, the last the second's: either thread's find
    stops both."""
    ops.set_num_threads(2)
    kind, hyper = STEP_KINDS[2]
    rng = np.random.default_rng(6)
    params, state = step_arrays(kind, rng)
    grads = [rand(rng, *s) for s in STEP_SHAPES]
    grads[where].flat[-1] = bad
    before = bits(params + [s for st in state for s in st])
    finite, steps = ops.optimizer_step(kind, hyper, params, grads, state, 7, check_finite=True)
    assert (finite, steps) == (False, 7)
    after = bits(params + [s for st in state for s in st])
    assert all(np.array_equal(a, b) for a, b in zip(before, after))
    finite, steps = ops.optimizer_step(kind, hyper, params, grads, state, 7)
    assert (finite, steps) == (False, 8)                  # unchecked: the step is taken
    assert not np.isfinite(params[where]).all()


def test_one_call_step_refuses_what_it_must():
    kind, hyper = STEP_KINDS[1]
    rng = np.random.default_rng(7)
    params, state = step_arrays(kind, rng)
    grads = [rand(rng, *s) for s in STEP_SHAPES]
    step = ops.optimizer_step
    with pytest.raises(ValueError, match="gradients"):
        step(kind, hyper, params, grads[:-1], state, 0)
    with pytest.raises(ValueError, match=r"grads\[4\] must have shape"):
        step(kind, hyper, params, grads[:4] + [rand(rng, 256)] + grads[5:], state, 0)
    with pytest.raises(TypeError, match=r"grads\[0\] must have dtype float32"):
        step(kind, hyper, params, [grads[0].astype(np.float64)] + grads[1:], state, 0)
    with pytest.raises(ValueError, match=r"state\[1\]\[0\]"):
        step(kind, hyper, params, grads, [state[0], [state[0][0][0, :1]]] + state[2:], 0)
    shifted = np.zeros(params[0].size + 1, np.float32)       # a gradient over part of a param
    with pytest.raises(ValueError, match="overlap"):
        step(kind, hyper, [shifted[:-1].reshape(33, 17)] + params[1:],
             [shifted[1:].reshape(33, 17)] + grads[1:], state, 0)
    big = np.zeros(33 * 17, np.float32)                         # two states sharing a float
    with pytest.raises(ValueError, match="overlap"):
        step(kind, hyper, params, grads, [[big.reshape(33, 17)], [big[-1:]]] + state[2:], 0)
    with pytest.raises(ValueError, match="lr"):
        step(kind, dict(hyper, lr=-1.0), params, grads, state, 0)
    own = [p.copy() for p in params]                  # an array that is its own gradient
    assert step("sgd", {"lr": 0.5, "weight_decay": 0.0}, own, own, [[] for _ in own], 0)[0]
    np.testing.assert_array_equal(own[0], params[0] * np.float32(0.5))


def test_one_call_step_in_c_checks_its_arguments():
    from pynn._pynn import ffi, lib
    w = np.zeros(4, np.float32)
    wp = ffi.new("float *[]", [ffi.from_buffer("float[]", w)])
    n = ffi.new("int64_t[]", [4])
    finite = ffi.new("int *")

    def opt(**kw):
        fields = {"kind": lib.PYNN_OPT_SGD, "lr": 0.1, "eps": 1.0, "step": 0}
        fields.update(kw)
        return ffi.new("struct pynn_optimizer *", fields)
    call = lib.pynn_optimizer_step
    assert call(opt(), wp, wp, n, 1, 1, finite) == lib.PYNN_OK and finite[0] == 1
    assert call(opt(), ffi.NULL, wp, n, 1, 1, finite) == lib.PYNN_ERR_NULL
    assert call(opt(kind=lib.PYNN_OPT_MOMENTUM), wp, wp, n, 1, 1, finite) == lib.PYNN_ERR_NULL
    assert call(opt(), wp, wp, ffi.new("int64_t[]", [-1]), 1, 1, finite) == lib.PYNN_ERR_SIZE
    assert call(opt(), wp, wp, n, -1, 1, finite) == lib.PYNN_ERR_SIZE
    assert call(opt(kind=7), wp, wp, n, 1, 1, finite) == lib.PYNN_ERR_ARG
    assert call(opt(lr=float("nan")), wp, wp, n, 1, 1, finite) == lib.PYNN_ERR_ARG
    assert call(opt(step=-1), wp, wp, n, 1, 1, finite) == lib.PYNN_ERR_ARG
    assert call(opt(), wp, wp, n, 1, 1, ffi.NULL) == lib.PYNN_ERR_NULL


def test_step_if_finite_steps_or_changes_nothing_and_keeps_a_subclass_own_step():
    import pynn
    calls = []

    class Logged(pynn.SGD):                       # a user's optimiser with its own step
        def step(self, params, grads):
            calls.append(len(params))
            super().step(params, grads)
    nan = np.array([1.0, np.nan, 1.0], np.float32)
    for opt in (pynn.SGD(lr=0.5, momentum=0.5), pynn.Adam(lr=0.5), Logged(lr=0.5)):
        p = [np.ones(3, np.float32)]
        assert opt.step_if_finite(p, [np.ones(3, np.float32)]) and opt.steps == 1
        assert (p[0] < 1).all()
        moved = p[0].copy()
        assert not opt.step_if_finite(p, [nan]) and opt.steps == 1
        np.testing.assert_array_equal(p[0], moved)
    assert calls == [1]


def test_a_prepared_step_is_kept_only_for_the_same_arrays_and_checks_each_gradient():
    import pynn
    rng = np.random.default_rng(8)
    opt = pynn.SGD(lr=0.1, momentum=0.9)
    params = [rand(rng, 6, 5), rand(rng, 6)]
    grads = [rand(rng, 6, 5), rand(rng, 6)]
    opt.step(params, grads)
    call = opt._call
    opt.step(params, grads)
    assert opt._call is call                              # the same arrays: prepared once
    velocity = opt.state[0][0]
    with pytest.raises(ValueError, match=r"grads\[1\] must not overlap state\[0\]\[0\]"):
        opt.step(params, [grads[0], velocity.reshape(-1)[:6]])
    with pytest.raises(ValueError, match=r"grads\[0\] must not overlap params\[1\]"):
        wide = np.zeros(64, np.float32)      # a gradient from a gap between params into the next
        opt.step([wide[:30].reshape(6, 5), wide[32:38]], [wide[30:60].reshape(6, 5), grads[1]])
    assert opt.steps == 2
    params[1].setflags(write=False)                      # read-only now: refused, not written
    with pytest.raises(ValueError, match=r"params\[1\] is read-only"):
        opt.step(params, grads)
    params[1].setflags(write=True)
    params[0].shape = (5, 6)                             # a new layout: prepared again
    opt.step(params, [grads[0].reshape(5, 6), grads[1]])
    assert opt._call is not call and opt.steps == 3
    before = [p.copy() for p in params]
    saved = opt.state_dict()
    opt.load_state_dict(saved)                            # new state arrays: prepared again
    other = pynn.SGD(lr=0.1, momentum=0.9)
    other.load_state_dict(saved)
    mine = [p.copy() for p in before]
    new = [rand(rng, 5, 6), rand(rng, 6)]
    opt.step(params, new)
    other.step(mine, new)
    for a, b in zip(params, mine):
        np.testing.assert_array_equal(a, b)


# ---- the network's edges ----

def test_scale_u8_all_byte_values():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16)
    y = ops.scale_u8(x)
    assert y.dtype == np.float32 and y.shape == (16, 16)
    np.testing.assert_allclose(y, x / 255.0, rtol=1e-6)
    assert y.min() == 0.0 and y.max() == 1.0
    np.testing.assert_allclose(ops.scale_u8(x, scale=1 / 256), x / 256.0, rtol=1e-7)


def test_argmax_rows():
    rng = np.random.default_rng(2)
    x = rand(rng, 129, 10)
    assert ops.argmax_rows(x).tolist() == np.argmax(x, axis=1).tolist()
    ties = np.array([[1, 3, 3, 0], [2, 2, 2, 2], [-5, -1, -1, -9]], np.float32)
    assert ops.argmax_rows(ties).tolist() == [1, 0, 1]          # the first maximum wins
    nan = np.array([[0, np.nan, 1], [np.nan, 0, 0], [0, 0, 1]], np.float32)
    assert ops.argmax_rows(nan).tolist() == [-1, -1, 2]
    assert ops.argmax_rows(np.empty((0, 3), np.float32)).shape == (0,)


# ---- what pynn.ops refuses, naming the argument ----

F = np.float32


def z(*shape, dtype=F):
    return np.zeros(shape, dtype)


def readonly(a):
    a.flags.writeable = False
    return a


BAD_CALLS = [
    # (call, exception, name the message must contain)
    (lambda: ops.gemm(z(2, 3, dtype=np.float64), z(3, 2), z(2, 2)), TypeError, "a"),
    (lambda: ops.gemm(z(2, 3), [[0.0]] * 3, z(2, 2)), TypeError, "b"),
    (lambda: ops.gemm(z(2, 3), z(3, 2), z(2, 2, dtype=np.int32)), TypeError, "c"),
    (lambda: ops.gemm(z(2, 3), z(3, 2), z(2, 3)), ValueError, "c"),
    (lambda: ops.gemm(z(2, 3), z(4, 2), z(2, 2)), ValueError, "inner"),
    (lambda: ops.gemm(z(3, 2).T, z(3, 2), z(2, 2)), ValueError, "a"),
    (lambda: ops.gemm(z(2, 3), z(3, 2), z(2, 4)[:, ::2]), ValueError, "c"),
    (lambda: ops.gemm(z(2, 3), z(3, 2), readonly(z(2, 2))), ValueError, "c"),
    (lambda: ops.gemm(z(6), z(3, 2), z(2, 2)), ValueError, "a"),
    (lambda: ops.matmul(z(2, 3), z(3, 2), out=z(3, 3)), ValueError, "out"),
    (lambda: ops.bias_forward(z(2, 3), z(2)), ValueError, "bias"),
    (lambda: ops.bias_forward(readonly(z(2, 3)), z(3)), ValueError, "z"),
    (lambda: ops.bias_backward(z(2, 3), out=z(3, dtype=np.float64)), TypeError, "out"),
    (lambda: ops.activation_forward("sigmoid", z(3, dtype=np.float16)), TypeError, "x"),
    (lambda: ops.activation_forward("sigmoid", z(3), out=z(4)), ValueError, "out"),
    (lambda: ops.activation_forward("sigmoid", z(3), out=readonly(z(3))), ValueError, "out"),
    (lambda: ops.activation_forward("swish", z(3)), ValueError, "activation"),
    (lambda: ops.activation_backward("relu", z(3), z(4)), ValueError, "dout"),
    (lambda: ops.activation_backward("relu", z(3), z(3), dinp=z(3, dtype=np.float64)), TypeError, "dinp"),
    (lambda: ops.quadratic_loss(z(2, 3), z(2, 4)), ValueError, "t"),
    (lambda: ops.quadratic_loss(z(0, 3), z(0, 3)), ValueError, "y"),
    (lambda: ops.quadratic_loss(z(2, 3), z(2, 3, dtype=np.float64)), TypeError, "t"),
    (lambda: ops.softmax_cross_entropy(z(2, 3, dtype=np.float64), z(2, 3)), TypeError, "logits"),
    (lambda: ops.softmax_cross_entropy(z(2, 3), z(2, 3), probs=z(3, 2)), ValueError, "probs"),
    (lambda: ops.sigmoid_cross_entropy_backward(z(2, 3), z(2, 3), out=readonly(z(2, 3))), ValueError, "out"),
    (lambda: ops.sgd_update(readonly(z(3)), z(3), 0.1), ValueError, "w"),
    (lambda: ops.sgd_update(z(3), z(4), 0.1), ValueError, "dw"),
    (lambda: ops.sgd_update(z(3), z(3), -0.1), ValueError, "lr"),
    (lambda: ops.sgd_update(z(3), z(3), "0.1"), TypeError, "lr"),
    (lambda: ops.momentum_update(z(3), z(2), z(3), 0.1, 0.9), ValueError, "state[0]"),
    (lambda: ops.momentum_update(z(3), z(3), z(3), 0.1, 1.0), ValueError, "momentum"),
    (lambda: ops.adam_update(z(3), z(3), z(3), z(3), 0.1, 0.9, 0.999, 1e-8, 0.0, 0), ValueError, "step"),
    (lambda: ops.adam_update(z(3), z(3), z(3), z(3), 0.1, 0.9, 1.5, 1e-8, 0.0, 1), ValueError, "beta2"),
    (lambda: ops.scale_u8(z(3)), TypeError, "x"),
    (lambda: ops.scale_u8(z(3, dtype=np.uint8), out=z(4)), ValueError, "out"),
    (lambda: ops.argmax_rows(z(3)), ValueError, "x"),
    (lambda: ops.argmax_rows(z(3, 0)), ValueError, "x"),
    (lambda: ops.set_num_threads(0), ValueError, "n"),
    (lambda: ops.set_num_threads(1.5), TypeError, "n"),
]


@pytest.mark.parametrize("call,exc,name", BAD_CALLS, ids=[f"{i}-{c[2]}" for i, c in enumerate(BAD_CALLS)])
def test_ops_refuse_bad_arguments_by_name(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    assert re.match(rf"{re.escape(name)}(?!\w)", str(info.value)), str(info.value)


def test_softmax_refuses_more_than_two_dimensions():
    with pytest.raises(ValueError, match="softmax"):
        ops.softmax(z(2, 3, 4))


def test_ops_refuse_overlapping_output():
    a = z(4, 4)
    with pytest.raises(ValueError, match="overlap"):
        ops.gemm(a, z(4, 4), a)
