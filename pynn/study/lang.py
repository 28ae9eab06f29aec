"""`pynn study lang`: why C (the seed's task 3)? The same work in pure Python, NumPy and the
C kernels, timed side by side in one run.

The work is the paper's network, 784-30-10 with sigmoid units and the quadratic loss, trained
by SGD in batches of 10 at a learning rate of 3.0 (Nielsen ch. 1), for one epoch of the
50,000 training digits; and one matrix product of two square matrices. Pure Python is so slow
that it trains on a fixed number of digits (and multiplies a slice of the rows) and the time
is extrapolated to the whole; the output says where.
"""
import math
import os
import time

import numpy as np

from .. import ops
from ..bench import interleaved
from ..network import Network
from ..optim import SGD
from .common import Results, load_split, markdown_table, write_markdown

SIZES = [784, 30, 10]
LR, BATCH = 3.0, 10


# ---- pure Python: lists of floats and loops ----

def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z)) if z > -500 else 0.0


def python_train(W, b, samples, lr=LR, batch=BATCH):
    """Mini-batch SGD over ``samples`` [(x list, label)], on W (list of weight matrices as
    lists of rows) and b (lists of biases), everything in Python loops."""
    for start in range(0, len(samples), batch):
        chunk = samples[start:start + batch]
        gW = [[[0.0] * len(row) for row in w] for w in W]
        gb = [[0.0] * len(v) for v in b]
        for x, label in chunk:
            acts = [x]
            for w, v in zip(W, b):                         # a' = sigma(W a + b)
                a = acts[-1]
                acts.append([_sigmoid(sum(wi * ai for wi, ai in zip(row, a)) + bi)
                             for row, bi in zip(w, v)])
            out = acts[-1]
            delta = [2 * (o - (1.0 if j == label else 0.0)) * o * (1 - o) for j, o in enumerate(out)]
            for layer in range(len(W) - 1, -1, -1):
                a_prev = acts[layer]
                for j, d in enumerate(delta):              # dW = delta a_prev^T, db = delta
                    grow = gW[layer][j]
                    for i, ai in enumerate(a_prev):
                        grow[i] += d * ai
                    gb[layer][j] += d
                if layer:                                  # delta_prev = (W^T delta) * sigma'
                    w = W[layer]
                    delta = [sum(w[j][i] * delta[j] for j in range(len(delta))) * a * (1 - a)
                             for i, a in enumerate(a_prev)]
        step = lr / len(chunk)
        for w, gw, v, gv in zip(W, gW, b, gb):
            for row, grow in zip(w, gw):
                for i in range(len(row)):
                    row[i] -= step * grow[i]
            for j in range(len(v)):
                v[j] -= step * gv[j]


def python_gemm(A, B):
    """C = A B for lists of rows: c_ij = row i of A . column j of B (eq. 5-9)."""
    cols = list(zip(*B))
    return [[sum(a * b for a, b in zip(row, col)) for col in cols] for row in A]


# ---- NumPy: the same algorithm with whole matrices per batch (numpy's own arithmetic) ----

def numpy_train(W, b, X, y, lr=LR, batch=BATCH):
    T = np.eye(10, dtype=np.float32)[y]
    with np.errstate(over="ignore"):        # e^-z overflows to inf for z << 0: sigma is then 0
        _numpy_batches(W, b, X, T, lr, batch)


def _numpy_batches(W, b, X, T, lr, batch):
    for start in range(0, len(X), batch):
        x, t = X[start:start + batch], T[start:start + batch]
        acts = [x]
        for w, v in zip(W, b):
            acts.append(1.0 / (1.0 + np.exp(-(acts[-1] @ w.T + v))))
        out = acts[-1]
        delta = 2 * (out - t) * out * (1 - out)
        for layer in range(len(W) - 1, -1, -1):
            gw, gb = delta.T @ acts[layer], delta.sum(axis=0)
            if layer:
                delta = (delta @ W[layer]) * acts[layer] * (1 - acts[layer])
            W[layer] -= lr / len(x) * gw
            b[layer] -= lr / len(x) * gb


def init_network(seed=0):
    """The network the three implementations train (784-30-10, sigmoid, quadratic loss), and
    copies of its starting weights and biases for the pure-Python and NumPy ones."""
    net = Network(SIZES, "sigmoid", "sigmoid", "quadratic", seed=seed)
    return net, [w.copy() for w in net.weights], [v.copy() for v in net.biases]


def _time(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


REPEAT = 3
GEMM_BUDGET = 3.0    # seconds for the two products' timing


def _best(fn):
    """The shortest of REPEAT timings: the one least disturbed by other work on the machine."""
    return min(_time(fn) for _ in range(REPEAT))


def measure(X, y, n_python, gemm_n, gemm_rows_python, batches=(BATCH, 100)):
    """Rows of the table: (what, language, seconds, measured-on note). The epoch is timed with
    the paper's batches of 10 and with batches of 100, where each call does more work."""
    n = len(y)
    rows = []
    for batch in batches:
        what = f"epoch, batches of {batch}"
        net, W, b = init_network()
        samples = [(list(map(float, X[i])), int(y[i])) for i in range(n_python)]
        Wl, bl = [w.tolist() for w in W], [v.tolist() for v in b]
        t = _time(lambda: python_train(Wl, bl, samples, batch=batch))
        rows.append((what, "pure Python", t * n / n_python,
                     f"{n_python} digits timed ({t:.2f} s), extrapolated to {n}"))
        Wn, bn = [w.copy() for w in W], [v.copy() for v in b]
        rows.append((what, "NumPy", _best(lambda: numpy_train(Wn, bn, X, y, batch=batch)),
                     f"{n} digits, best of {REPEAT}"))
        T = net.targets(y, n)
        opt = SGD(lr=LR)

        def c_epoch():
            for start in range(0, n, batch):
                net.train_batch(X[start:start + batch], T[start:start + batch], opt)
        rows.append((what, "C kernels (pynn)", _best(c_epoch),
                     f"{n} digits, best of {REPEAT}; a Python call per batch"))
        # how pynn's own fit trains: the whole epoch in one C call, no Python per batch
        rows.append((what, "C kernels, one call an epoch", _best(
            lambda: net.train_epoch(X, T, batch, opt)), f"{n} digits, best of {REPEAT}"))

    rng = np.random.default_rng(0)
    A = rng.random((gemm_n, gemm_n), dtype=np.float32)
    B = rng.random((gemm_n, gemm_n), dtype=np.float32)
    Al, Bl = A[:gemm_rows_python].tolist(), B.tolist()
    t = _time(lambda: python_gemm(Al, Bl))
    rows.append(("GEMM", "pure Python", t * gemm_n / gemm_rows_python,
                 f"{gemm_rows_python} of {gemm_n} rows timed ({t:.2f} s), extrapolated"))
    # as pynn bench times products: both warmed up (BLAS threads started), in turns, median
    numpy_s, pynn_s = interleaved([lambda: A @ B, lambda: ops.matmul(A, B)], GEMM_BUDGET)
    shape = f"{gemm_n}x{gemm_n}x{gemm_n}, median of calls in turns (as pynn bench)"
    rows.append(("GEMM", "NumPy (its BLAS)", numpy_s, shape))
    rows.append(("GEMM", "C kernels (pynn)", pynn_s, shape))
    return rows


FIELDS = ["work", "language", "seconds", "times_c", "measured"]


def main(args):
    X, y = load_split(args.data_dir, args.quick)["train"]
    if args.quick:
        n_python, gemm_n, gemm_rows = 20, 64, 16
    else:
        n_python, gemm_n, gemm_rows = args.python_digits, 512, 32
    rows = measure(X, y, n_python, gemm_n, gemm_rows)
    # the base of 'times C': each work's last C row (for the epochs, the one-call epoch)
    c = {work: s for work, lang, s, _ in rows if lang.startswith("C")}
    table = [{"work": w, "language": lang, "seconds": f"{s:.4g}", "times_c": f"{s / c[w]:.3g}",
              "measured": note} for w, lang, s, note in rows]
    results = Results(os.path.join(args.out, "lang.csv"), FIELDS)
    if os.path.exists(results.path):
        os.remove(results.path)        # a timing is remade whole each run, never mixed
    results.append(table)
    threads = ops.get_num_threads()
    body = (f"One epoch of 784-30-10 (sigmoid, quadratic loss, SGD lr {LR}; batches of {BATCH} as in "
            f"the paper, and of 100) "
            f"on {len(y)} digits, and one {gemm_n}x{gemm_n} by {gemm_n}x{gemm_n} matrix product. "
            f"'times C' is the time divided by the C kernels' time (for an epoch, the one-call "
            f"epoch, as pynn's fit trains; the row above it calls C once a batch from Python, "
            f"as the paper's own loop would). The C kernels ran on "
            f"{threads} thread(s); NumPy's matrix product uses its BLAS library's threads.\n\n"
            + markdown_table(table, FIELDS, ["work", "language", "seconds", "times C", "measured on"]))
    write_markdown(os.path.join(args.out, "lang.md"), "Language", body)
    for r in table:
        print(f"{r['work']:22} {r['language']:28} {r['seconds']:>10} s  {r['times_c']:>8} x C   ({r['measured']})")
    print(f"wrote {os.path.join(args.out, 'lang.md')}")
    return 0


def add_arguments(p):
    p.add_argument("--python-digits", type=int, default=300,
                   help="digits the pure-Python epoch is timed on before extrapolating (default 300)")

