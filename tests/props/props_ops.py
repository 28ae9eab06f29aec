"""Properties of every pynn.ops function: the right answer, or TypeError/ValueError naming the
argument that is wrong, for random shapes (0 and 1 included), dtypes, layouts, read-only
arrays, NaN and +-Inf, mismatched shapes and overlapping outputs. Run in a child process by
tests/test_properties.py (a crash must fail a test, not end the run)."""
import inspect

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pynn import ops
from strategies import SETTINGS, assert_refused, close, dims, is_f32, values, variant

np.seterr(all="ignore")   # the references compute with NaN and Inf on purpose


def run(call, bad, name):
    """Call; when ``bad`` names arguments, the call must refuse naming one of them."""
    if bad:
        with pytest.raises(Exception) as e:
            call()
        assert_refused(e, bad, name)
        return None
    return call()


def bad_arrays(**checks):
    """The names whose (array, ndim, writable) check fails."""
    return {name for name, (a, ndim, writable) in checks.items() if not is_f32(a, ndim, writable)}


def mismatched(arrays, like):
    """The arrays whose shape differs from ``like``'s (checked in the same pass as their type)."""
    ref = arrays[like][0]
    if not isinstance(ref, np.ndarray):
        return set()
    return {n for n, (a, _, _) in arrays.items() if isinstance(a, np.ndarray) and a.shape != ref.shape}


def f64(a):
    return np.asarray(a, dtype=np.float64)


def mm(a, b):
    """a @ b in float64 by plain loops (einsum), so 0 * Inf is NaN as IEEE says."""
    return np.einsum("ik,kj->ij", f64(a), f64(b))


# ---- matrix product ----

@SETTINGS
@given(st.data())
def test_gemm(data):
    M, N, K = data.draw(dims), data.draw(dims), data.draw(dims)
    ta, tb, ref = data.draw(st.booleans()), data.draw(st.booleans()), data.draw(st.booleans())
    a = data.draw(variant((K, M) if ta else (M, K)))
    b = data.draw(variant((N, K) if tb else (K, N)))
    c = data.draw(variant((M, N)))
    alpha = data.draw(st.sampled_from([1.0, -0.5, 2.0]))
    beta = data.draw(st.sampled_from([0.0, 1.0, 0.5]))
    bad = bad_arrays(a=(a, 2, False), b=(b, 2, False), c=(c, 2, True))
    if not bad:
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        if opa.shape[1] != opb.shape[0]:
            bad = {"a", "b"}
        elif c.shape != (opa.shape[0], opb.shape[1]):
            bad = {"c"}
    c0 = c.copy() if isinstance(c, np.ndarray) else None
    out = run(lambda: ops.gemm(a, b, c, alpha, beta, ta, tb, reference=ref), bad, "gemm")
    if out is not None:
        assert out is c
        expected = alpha * mm(opa, opb) + (beta * f64(c0) if beta else 0.0)   # beta 0: c unread
        close(c, expected, atol=1e-3)
    elif isinstance(c, np.ndarray) and c.dtype != object:
        assert np.array_equal(c, c0, equal_nan=True), "gemm wrote into c, then refused"


@SETTINGS
@given(st.data())
def test_gemm_refuses_an_output_that_overlaps_an_input(data):
    n = data.draw(st.integers(1, 4))
    a = data.draw(values((n, n), special=False))
    b = data.draw(values((n, n), special=False))
    c = data.draw(st.sampled_from([a, b, a[:], b[::1]]))
    with pytest.raises(ValueError) as e:
        ops.gemm(a, b, c)
    assert_refused(e, {"c"}, "gemm")


@SETTINGS
@given(st.data())
def test_matmul(data):
    M, N, K = data.draw(dims), data.draw(dims), data.draw(dims)
    ta, tb = data.draw(st.booleans()), data.draw(st.booleans())
    a = data.draw(variant((K, M) if ta else (M, K)))
    b = data.draw(variant((N, K) if tb else (K, N)))
    out = data.draw(st.one_of(st.none(), variant((M, N))))
    bad = bad_arrays(a=(a, 2, False), b=(b, 2, False))
    if not bad:
        opa, opb = (a.T if ta else a), (b.T if tb else b)
        want = (opa.shape[0], opb.shape[1])
        if out is not None and not is_f32(out, writable=True):
            bad = {"out"}
        elif out is not None and out.shape != want:
            bad = {"out"}
        elif opa.shape[1] != opb.shape[0]:
            bad = {"a", "b"}
    result = run(lambda: ops.matmul(a, b, ta, tb, out=out), bad, "matmul")
    if result is not None:
        assert result.dtype == np.float32 and result.shape == want
        assert out is None or result is out
        close(result, mm(opa, opb), atol=1e-3)


# ---- bias ----

@SETTINGS
@given(st.data())
def test_bias_forward(data):
    B, n = data.draw(dims), data.draw(dims)
    z, bias = data.draw(variant((B, n))), data.draw(variant((n,)))
    bad = bad_arrays(z=(z, 2, True), bias=(bias, 1, False))
    if not bad and bias.shape != (z.shape[1],):
        bad = {"bias"}
    z0 = z.copy() if not bad else None
    result = run(lambda: ops.bias_forward(z, bias), bad, "bias_forward")
    if result is not None:
        assert result is z
        close(z, f64(z0) + f64(bias), atol=1e-5)


@SETTINGS
@given(st.data())
def test_bias_backward(data):
    B, n = data.draw(dims), data.draw(dims)
    dz = data.draw(variant((B, n)))
    out = data.draw(st.one_of(st.none(), variant((n,))))
    bad = bad_arrays(dz=(dz, 2, False))
    if not bad and out is not None and (not is_f32(out, 1, True) or out.shape != (dz.shape[1],)):
        bad = {"out"}
    start = f64(out) if not bad and out is not None else 0.0
    result = run(lambda: ops.bias_backward(dz, out), bad, "bias_backward")
    if result is not None:
        close(result, start + f64(dz).sum(axis=0), atol=1e-3)


@SETTINGS
@given(st.data())
def test_bias_refuses_a_bias_inside_z(data):
    B, n = data.draw(st.integers(1, 4)), data.draw(st.integers(1, 4))
    z = data.draw(values((B, n), special=False))
    with pytest.raises(ValueError) as e:
        ops.bias_forward(z, z[data.draw(st.integers(0, B - 1))])
    assert_refused(e, {"bias", "z"}, "bias_forward")


# ---- activations ----

def softmax_rows(x):
    x = f64(x).reshape(1, -1) if x.ndim == 1 else f64(x)
    m = x.max(axis=1, keepdims=True) if x.shape[1] else np.zeros((x.shape[0], 1))
    e = np.exp(x - m)
    return e / e.sum(axis=1, keepdims=True)


FORWARD = {
    "linear": lambda x: f64(x),
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-f64(x))),
    "relu": lambda x: np.where(f64(x) < 0, 0.0, f64(x)),   # NaN stays NaN
    "tanh": lambda x: np.tanh(f64(x)),
    "softmax": lambda x: softmax_rows(x).reshape(x.shape),
}


def backward_ref(kind, out, dout):
    o, d = f64(out), f64(dout)
    if kind == "softmax" and o.size:
        rows_o, rows_d = o.reshape(-1, o.shape[-1]), d.reshape(-1, o.shape[-1])
        dot = (rows_o * rows_d).sum(axis=1, keepdims=True)
        return (rows_o * (rows_d - dot)).reshape(o.shape)
    return {"linear": d, "softmax": d, "sigmoid": d * o * (1 - o), "relu": np.where(o > 0, d, 0.0),
            "tanh": d * (1 - o * o)}[kind]


shapes = st.lists(dims, min_size=0, max_size=3).map(tuple)
kinds = st.sampled_from(sorted(FORWARD) + ["gelu", None, 2])


@SETTINGS
@given(st.data())
def test_activation_forward(data):
    kind, shape = data.draw(kinds), data.draw(shapes)
    x = data.draw(variant(shape))
    how_out = data.draw(st.sampled_from(["none", "new", "x"]))
    out = {"none": None, "x": x}.get(how_out) if how_out != "new" else data.draw(variant(shape))
    bad = set() if kind in FORWARD else {"activation"}
    bad = bad or bad_arrays(x=(x, None, False))
    if not bad and kind == "softmax" and x.ndim not in (1, 2):
        bad = {"x"}
    if not bad and out is not None and (not is_f32(out, writable=True) or out.shape != x.shape):
        bad = {"out"}
    expected = FORWARD[kind](x) if not bad else None
    # the typed wrappers (ops.relu, ...) and the dispatcher must agree
    fn = (lambda: getattr(ops, kind)(x, out=out)) if kind in FORWARD and kind != "linear" and \
        data.draw(st.booleans()) else (lambda: ops.activation_forward(kind, x, out=out))
    result = run(fn, bad, f"activation_forward {kind}")
    if result is not None:
        assert result.shape == x.shape and (out is None or result is out)
        close(result, expected, atol=1e-5)


@SETTINGS
@given(st.data())
def test_activation_backward(data):
    kind, shape = data.draw(kinds), data.draw(shapes)
    out = data.draw(variant(shape))
    dout = data.draw(variant(shape))
    how = data.draw(st.sampled_from(["none", "new", "dout", "out"]))
    dinp = {"none": None, "dout": dout, "out": out}.get(how) if how != "new" else data.draw(variant(shape))
    bad = set() if kind in FORWARD else {"activation"}
    bad = bad or bad_arrays(out=(out, None, False), dout=(dout, None, False))
    if not bad and dout.shape != out.shape:
        bad = {"dout"}
    if not bad and kind == "softmax" and out.ndim not in (1, 2):
        bad = {"out"}
    if not bad and dinp is not None and (not is_f32(dinp, writable=True) or dinp.shape != out.shape):
        bad = {"dinp"}
    expected = backward_ref(kind, out, dout) if not bad else None
    result = run(lambda: ops.activation_backward(kind, out, dout, dinp=dinp), bad,
                 f"activation_backward {kind}")
    if result is not None:
        assert result.shape == out.shape and (dinp is None or result is dinp)
        close(result, expected, atol=1e-4)


@SETTINGS
@given(st.data())
def test_elementwise_refuses_a_shifted_overlap(data):
    # out one element past dout in the same buffer: each write would clobber the next read
    n = data.draw(st.integers(2, 8))
    buf = data.draw(values((n + 1,), special=False))
    kind = data.draw(st.sampled_from(["sigmoid", "relu", "tanh", "linear"]))
    with pytest.raises(ValueError) as e:
        ops.activation_backward(kind, buf[:n].copy(), buf[:n], dinp=buf[1:])
    assert_refused(e, {"dinp"}, "activation_backward")


# ---- losses ----

def lse_rows(z):
    z = f64(z)
    m = z.max(axis=1, keepdims=True) if z.shape[1] else np.full((z.shape[0], 1), -np.inf)
    return m[:, 0] + np.log(np.exp(z - m).sum(axis=1))


def softmax_xent_ref(z, t):
    z, t = f64(z), f64(t)
    lse = lse_rows(z)
    terms = np.where(t != 0, t * (z - lse[:, None]), 0.0)
    return -terms.sum() / z.shape[0]


def sigmoid_xent_ref(z, t):
    z, t = f64(z), f64(t)
    return (np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z))) - t * z).sum() / z.shape[0]


LOSSES = {
    "quadratic_loss": (lambda y, t: ((f64(t) - f64(y)) ** 2).sum() / y.shape[0], None),
    "softmax_cross_entropy": (softmax_xent_ref, softmax_rows),
    "sigmoid_cross_entropy": (sigmoid_xent_ref, lambda z: 1 / (1 + np.exp(-f64(z)))),
}
BACKWARDS = {
    "quadratic_loss_backward": lambda y, t: 2 * (f64(y) - f64(t)) / y.shape[0],
    "softmax_cross_entropy_backward":
        lambda p, t: (f64(p) * f64(t).sum(axis=1, keepdims=True) - f64(t)) / p.shape[0],
    "sigmoid_cross_entropy_backward": lambda p, t: (f64(p) - f64(t)) / p.shape[0],
}
FIRST_ARG = {"quadratic_loss": "y", "softmax_cross_entropy": "logits",
             "sigmoid_cross_entropy": "logits", "quadratic_loss_backward": "y",
             "softmax_cross_entropy_backward": "probs", "sigmoid_cross_entropy_backward": "probs"}


def loss_bad(name, y, t):
    first = FIRST_ARG[name]
    bad = bad_arrays(**{first: (y, 2, False)}, t=(t, 2, False))
    if not bad and t.shape != y.shape:
        bad = {"t"}
    if not bad and y.shape[0] == 0:
        bad = {first}
    return bad


@SETTINGS
@given(st.data())
def test_loss_forward(data):
    name = data.draw(st.sampled_from(sorted(LOSSES)))
    B, n = data.draw(dims), data.draw(dims)
    y, t = data.draw(variant((B, n))), data.draw(variant((B, n)))
    loss_ref, probs_ref = LOSSES[name]
    how = data.draw(st.sampled_from(["none", "new", "same"])) if probs_ref else "none"
    probs = {"none": None, "same": y}.get(how) if how != "new" else data.draw(variant((B, n)))
    bad = loss_bad(name, y, t)
    if not bad and probs is not None and (not is_f32(probs, writable=True) or probs.shape != y.shape):
        bad = {"probs"}
    expected = (loss_ref(y, t), probs_ref(y) if probs_ref else None) if not bad else None
    fn = getattr(ops, name)
    result = run((lambda: fn(y, t, probs=probs)) if probs_ref else (lambda: fn(y, t)), bad, name)
    if result is not None:
        loss = result[0] if probs_ref else result
        assert isinstance(loss, float)
        close(loss, expected[0], rtol=1e-4, atol=1e-4)
        if probs_ref:
            assert probs is None or result[1] is probs
            close(result[1], expected[1], atol=1e-5)


@SETTINGS
@given(st.data())
def test_loss_backward(data):
    name = data.draw(st.sampled_from(sorted(BACKWARDS)))
    B, n = data.draw(dims), data.draw(dims)
    y, t = data.draw(variant((B, n))), data.draw(variant((B, n)))
    out = data.draw(st.one_of(st.none(), variant((B, n)), st.just(y)))
    bad = loss_bad(name, y, t)
    if not bad and out is not None and (not is_f32(out, writable=True) or out.shape != y.shape):
        bad = {"out"}
    expected = BACKWARDS[name](y, t) if not bad else None
    result = run(lambda: getattr(ops, name)(y, t, out=out), bad, name)
    if result is not None:
        assert out is None or result is out
        close(result, expected, atol=1e-5)


# ---- optimiser updates ----

numbers = st.one_of(st.sampled_from([0.0, 0.01, 0.5, 0.9]),
                    st.sampled_from([-0.1, 1.0, 1.5, np.nan, np.inf, -np.inf, True, "0.1", None]))


def hyper_bad(name, value, low=0.0, high=None, high_open=False):
    """The rule ops applies: a finite real number in range, not a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return {name}
    ok = np.isfinite(value) and value >= low and (high is None or (value < high if high_open else value <= high))
    return set() if ok else {name}


@SETTINGS
@given(st.data())
def test_sgd_and_momentum_update(data):
    shape = data.draw(shapes)
    w, dw = data.draw(variant(shape)), data.draw(variant(shape))
    lr, wd, momentum = data.draw(numbers), data.draw(numbers), data.draw(numbers)
    use_momentum = data.draw(st.booleans())
    vel = data.draw(variant(shape)) if use_momentum else None
    arrays = dict(w=(w, None, True), dw=(dw, None, False))
    if use_momentum:
        arrays["state[0]"] = (vel, None, True)
    bad = bad_arrays(**arrays) | mismatched(arrays, "w")
    bad = bad or hyper_bad("lr", lr) or (use_momentum and hyper_bad("momentum", momentum, 0.0, 1.0, True)) \
        or hyper_bad("weight_decay", wd)
    if not bad:
        W, G = f64(w), f64(dw) + wd * f64(w)
        if use_momentum:
            V = momentum * f64(vel) + G
            expected = (W - lr * V, V)
        else:
            expected = (W - lr * G, None)
    if use_momentum:
        run(lambda: ops.momentum_update(w, vel, dw, lr, momentum, wd), bad, "momentum_update")
    else:
        run(lambda: ops.sgd_update(w, dw, lr, wd), bad, "sgd_update")
    if not bad:
        close(w, expected[0], atol=1e-4)
        if use_momentum:
            close(vel, expected[1], atol=1e-4)


@SETTINGS
@given(st.data())
def test_adam_update(data):
    shape = data.draw(shapes)
    w, m, v, dw = (data.draw(variant(shape)) for _ in range(4))
    lr, wd = data.draw(numbers), data.draw(numbers)
    beta1, beta2 = data.draw(numbers), data.draw(numbers)
    eps = data.draw(st.sampled_from([1e-8, 0.0, -1.0, 1e-3]))
    step = data.draw(st.sampled_from([1, 2, 10, 0, -1, 1.5, True]))
    arrays = dict(w=(w, None, True), dw=(dw, None, False), **{"state[0]": (m, None, True),
                                                               "state[1]": (v, None, True)})
    bad = bad_arrays(**arrays) | mismatched(arrays, "w")
    if not bad and (isinstance(step, bool) or not isinstance(step, int) or step < 1):
        bad = {"step"}
    bad = bad or hyper_bad("lr", lr) or hyper_bad("beta1", beta1, 0.0, 1.0, True) \
        or hyper_bad("beta2", beta2, 0.0, 1.0, True) or hyper_bad("eps", eps, 1e-30) \
        or hyper_bad("weight_decay", wd)
    if not bad:
        G = f64(dw) + wd * f64(w)
        M = beta1 * f64(m) + (1 - beta1) * G
        V = beta2 * f64(v) + (1 - beta2) * G * G
        W = f64(w) - lr * (M / (1 - beta1 ** step)) / (np.sqrt(V / (1 - beta2 ** step)) + eps)
    run(lambda: ops.adam_update(w, m, v, dw, lr, beta1, beta2, eps, wd, step), bad, "adam_update")
    if not bad:
        close(m, M, atol=1e-4)
        close(v, V, atol=1e-4)
        close(w, W, rtol=1e-3, atol=1e-3)


@SETTINGS
@given(st.data())
def test_optimiser_refuses_state_that_is_the_parameter(data):
    n = data.draw(st.integers(1, 6))
    w, dw = data.draw(values((n,), special=False)), data.draw(values((n,), special=False))
    with pytest.raises(ValueError) as e:
        ops.momentum_update(w, w, dw, 0.1, 0.9)
    assert_refused(e, {"w", "state[0]"}, "momentum_update")


# ---- at the edges ----

@SETTINGS
@given(st.data())
def test_scale_u8(data):
    shape = data.draw(shapes)
    pixels = data.draw(st.sampled_from(["ok", "ok", "float", "strided", "list"]))
    x = np.asarray(data.draw(values(shape, special=False)) * 30 + 128).clip(0, 255).astype(np.uint8)
    x = {"float": x.astype(np.float32), "list": x.tolist(),
         "strided": x[..., ::-1] if x.ndim and x.shape[-1] > 1 else x}.get(pixels, x)
    scale = data.draw(st.sampled_from([1 / 255, 1.0, -2.0, np.nan, "s"]))
    out = data.draw(st.one_of(st.none(), variant(shape)))
    ok_x = isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.flags.c_contiguous
    bad = set() if ok_x else {"x"}
    if not bad and out is not None and (not is_f32(out, writable=True) or out.shape != x.shape):
        bad = {"out"}
    bad = bad or hyper_bad("scale", scale, -np.inf)
    result = run(lambda: ops.scale_u8(x, scale, out=out), bad, "scale_u8")
    if result is not None:
        close(result, f64(x) * np.float32(scale), atol=1e-5)


@SETTINGS
@given(st.data())
def test_argmax_rows(data):
    B, n = data.draw(dims), data.draw(dims)
    x = data.draw(variant((B, n)))
    bad = bad_arrays(x=(x, 2, False))
    if not bad and x.shape[1] == 0 and x.shape[0] > 0:
        bad = {"x"}
    result = run(lambda: ops.argmax_rows(x), bad, "argmax_rows")
    if result is not None:
        assert result.dtype == np.int64 and result.shape == (x.shape[0],)
        for row, got in zip(x, result):
            assert got == (-1 if np.isnan(row).any() else int(np.argmax(row)))


@SETTINGS
@given(st.one_of(st.integers(-3, 2000), st.sampled_from([1.0, True, "2", None])))
def test_set_num_threads(n):
    before = ops.get_num_threads()
    ok = isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1024
    if ok:
        ops.set_num_threads(n)
        assert ops.get_num_threads() == n
        ops.set_num_threads(before)
    else:
        with pytest.raises((TypeError, ValueError)) as e:
            ops.set_num_threads(n)
        assert_refused(e, {"n"}, "set_num_threads")
        assert ops.get_num_threads() == before


# ---- everything else in ops, and what others add later ----

JUNK = [None, 1, 1.5, "x", [1.0, 2.0], np.float32(1), np.zeros(0, np.float32),
        np.zeros((2, 3), np.float64), np.ones((3, 2), np.float32), np.ones((2, 3), np.float32)[:, ::2],
        np.full((2, 2), np.nan, np.float32), np.zeros((2, 2), np.int64), np.zeros(5, np.uint8),
        # float32 arrays of many shapes, so that calls get past the type checks into C with
        # sizes that disagree (images, affine maps, strokes, batches)
        0, 2, 3, -1, 0.5, float("nan"), True]
JUNK += [np.full(shape, 0.5, np.float32) for shape in
         [(1,), (3,), (6,), (2, 2), (2, 6), (6, 2), (1, 784), (3, 784), (1, 28, 28), (2, 28, 28),
          (2, 10, 12), (3, 3, 3), (0, 28, 28), (2, 0)]]
JUNK += [np.zeros((2, 28, 28), np.uint8), np.zeros((3, 2), np.int64)]
PUBLIC = sorted(name for name, f in vars(ops).items() if inspect.isfunction(f)
                and not name.startswith("_") and f.__module__.startswith(ops.__name__ + "."))


@SETTINGS
@given(st.sampled_from(PUBLIC), st.data())
def test_every_public_function_survives_junk(name, data):
    """Random junk in every argument of every public function: a result or a TypeError or
    ValueError, never another exception, and never a crash (which would end the child)."""
    fn = getattr(ops, name)
    params = [p for p in inspect.signature(fn).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    args = [data.draw(st.sampled_from(JUNK)) for _ in params]
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    if name == "set_num_threads":
        before = ops.get_num_threads()
    try:
        fn(*args)
    except (TypeError, ValueError):
        pass
    finally:
        if name == "set_num_threads":
            ops.set_num_threads(before)
