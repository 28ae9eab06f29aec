"""`pynn study gradcost`: what the paper's primitive way to find a gradient costs (its section
4.6), nudging one parameter at a time and watching the loss, against backpropagation.

Nudging: for each parameter w, the loss with w moved up by h and down by h gives
dL/dw ~ (L(w + h) - L(w - h)) / 2h (central differences), two forward passes a parameter.
Backpropagation gives every dL/dw from one forward and one backward pass. Both are timed on
one batch of MNIST digits for the paper's network (784-30-10, sigmoid, quadratic loss) and a
convolutional one (1x28x28-c32k5-pool2-c64k5-pool2-256-10, ReLU, softmax and cross-entropy);
a network too large to nudge whole in a short run has a sample of its parameters nudged
(an equal share from every parameter array) and the time extrapolated to all of them, which
the table says. The two gradients are compared where both exist.
"""
import os
import time

import numpy as np

from .. import ops
from ..network import Network
from .common import Results, load_split, markdown_table, write_markdown

# (architecture, hidden activation, output, loss, parameters nudged (None: all), the step h).
# Where the loss is smooth, h = 1e-2 balances the error of the formula (like h^2) against
# float32's rounding of the loss (divided by 2h); the ReLU network takes a smaller one, since a
# nudge that carries a ReLU across 0 or changes a pooling window's winner sees the slope on the
# other side of a kink.
NETWORKS = [("784-30-10", "sigmoid", "sigmoid", "quadratic", None, 1e-2),
            ("1x28x28-c32k5-pool2-c64k5-pool2-256-10", "relu", "softmax", "cross_entropy", 1000, 1e-4)]
QUICK = [("784-30-10", "sigmoid", "sigmoid", "quadratic", 300, 1e-2),
         ("1x28x28-c4k5-pool2-c8k5-pool2-32-10", "relu", "softmax", "cross_entropy", 200, 1e-4)]
BIAS_SCALE = 0.1


def pick(sizes, sample, rng):
    """Which parameters to nudge, as (array, flat index) pairs: all of them when ``sample`` is
    None or not smaller than their number; else ``sample`` drawn without repeats, an equal
    share from each array (all of an array smaller than its share, the rest to the others)."""
    total = sum(sizes)
    if sample is None or sample >= total:
        return [(a, i) for a, n in enumerate(sizes) for i in range(n)]
    picks, left = [], sample
    order = sorted(range(len(sizes)), key=lambda a: sizes[a])
    for k, a in enumerate(order):
        share = min(sizes[a], left // (len(order) - k))
        picks += [(a, int(i)) for i in np.sort(rng.choice(sizes[a], share, replace=False))]
        left -= share
    return sorted(picks)


def nudged_gradient(net, X, T, picks, h):
    """dL/dw for each picked parameter by central differences: the loss with only that
    parameter moved to w + h and to w - h (two forward passes), divided by the distance
    between the two values float32 really holds. Every parameter is put back as it was."""
    params = [p.reshape(-1) for p in net.parameters()]
    if not all(np.shares_memory(f, p) for f, p in zip(params, net.parameters())):
        raise ValueError("the network's parameters must be contiguous arrays to be nudged")
    grad = np.empty(len(picks))
    for n, (a, i) in enumerate(picks):
        flat = params[a]
        w = flat[i]
        up, down = np.float32(w + h), np.float32(w - h)
        flat[i] = up
        loss_up = net.loss_value(X, T)
        flat[i] = down
        loss_down = net.loss_value(X, T)
        flat[i] = w
        grad[n] = (loss_up - loss_down) / (float(up) - float(down))
    return grad


def backprop_gradient(net, X, T, picks):
    """The same entries of the gradient backpropagation finds (one forward, one backward)."""
    flat = [g.reshape(-1) for pair in net.gradients(X, T) for g in pair]
    return np.array([flat[a][i] for a, i in picks], dtype=np.float64)


def difference(nudged, backprop):
    """How far the two gradients are apart: the largest difference of an entry, relative to the
    largest entry (so that entries near zero, where float32 rounding is all a nudge sees, do not
    count as disagreement), and the length of the difference relative to the gradient's."""
    scale = max(np.abs(backprop).max(), np.abs(nudged).max())
    if scale == 0.0:
        return 0.0, 0.0
    largest = float(np.abs(nudged - backprop).max() / scale)
    norm = float(np.linalg.norm(nudged - backprop) / np.linalg.norm(backprop))
    return largest, norm


def mean_time(fn, at_least):
    """fn's mean time over as many runs as fill ``at_least`` seconds, and the number of runs:
    a mean, as the nudging's time is the sum of its many forward passes."""
    runs, t0 = 0, time.perf_counter()
    while True:
        fn()
        runs += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= at_least:
            return elapsed / runs, runs


def network(arch, activation, output, loss, seed=0):
    """The network, its biases drawn from N(0, BIAS_SCALE^2) rather than left at 0: at 0 every
    ReLU of a blank background sits exactly on its kink, where the loss has a slope on each
    side but no derivative, and the nudges up and down would each see a different one."""
    net = Network(arch, activation, output, loss, seed=seed)
    rng = np.random.default_rng(seed + 1)
    for p in net.parameters():
        if p.ndim == 1:
            p[:] = rng.normal(0.0, BIAS_SCALE, p.shape)
    return net


def measure(arch, activation, output, loss, sample, h, X, y, seed=0, at_least=1.0):
    """The table's two rows for one network: nudging and backpropagation, timed on (X, y)."""
    net = network(arch, activation, output, loss, seed)
    T = net.targets(y, len(y))
    sizes = [p.size for p in net.parameters()]
    total = sum(sizes)
    picks = pick(sizes, sample, np.random.default_rng(seed))
    t0 = time.perf_counter()
    nudged = nudged_gradient(net, X, T, picks, h)
    t_nudge = time.perf_counter() - t0
    per_pass = f"{1e3 * t_nudge / (2 * len(picks)):.3g} ms a forward pass"
    t_back, runs = mean_time(lambda: net.gradients(X, T), at_least)
    largest, norm = difference(nudged, backprop_gradient(net, X, T, picks))
    name = f"{arch} ({activation}, {output}, {loss})"
    seconds = t_nudge * total / len(picks)
    if len(picks) == total:
        note = f"all {total:,} parameters nudged, {per_pass}"
    else:
        note = (f"{len(picks):,} of {total:,} parameters nudged ({t_nudge:.2f} s, {per_pass}), "
                f"extrapolated to all")
    return [
        {"network": name, "parameters": total, "way": "nudging (central differences)",
         "passes": f"{2 * total:,} forward", "seconds": seconds, "measured": note,
         "h": h, "largest_difference": f"{largest:.1e}", "length_difference": f"{norm:.1e}"},
        {"network": name, "parameters": total, "way": "backpropagation",
         "passes": "1 forward + 1 backward", "seconds": t_back,
         "measured": f"mean of {runs:,} runs"},
    ]


FIELDS = ["network", "parameters", "way", "passes", "seconds", "times_backprop", "measured", "h",
          "largest_difference", "length_difference"]


def main(args):
    X, y = load_split(args.data_dir, args.quick)["train"]
    if not 1 <= args.batch <= len(y):
        raise ValueError(f"--batch must be between 1 and {len(y)}, got {args.batch}")
    if args.sample is not None and args.sample < 1:
        raise ValueError(f"--sample must be at least 1, got {args.sample}")
    X, y = np.ascontiguousarray(X[:args.batch]), np.ascontiguousarray(y[:args.batch])
    rows = []
    for arch, activation, output, loss, sample, h in (QUICK if args.quick else NETWORKS):
        pair = measure(arch, activation, output, loss, args.sample or sample, h, X, y,
                       at_least=0.2 if args.quick else 1.0)
        for r in pair:
            r["times_backprop"] = f"{r['seconds'] / pair[1]['seconds']:,.0f}"
            r["seconds"] = f"{r['seconds']:.3g}" if r["seconds"] < 1000 else f"{r['seconds']:,.0f}"
            r["parameters"] = f"{r['parameters']:,}"
        rows += pair
        print(f"{arch}: nudging {pair[0]['seconds']} s, backpropagation {pair[1]['seconds']} s "
              f"({pair[0]['times_backprop']} times); they differ by at most "
              f"{pair[0]['largest_difference']} of the largest entry")
    results = Results(os.path.join(args.out, "gradcost.csv"), FIELDS)
    if os.path.exists(results.path):
        os.remove(results.path)        # a timing is remade whole each run, never mixed
    results.append(rows)
    body = (f"One gradient of the loss on a batch of {args.batch} MNIST training digits, found "
            f"two ways: by nudging every parameter up and down by h and watching the loss (the "
            f"paper's section 4.6; two forward passes a parameter) and by backpropagation (one "
            f"forward and one backward pass). 'times backprop' is the time divided by "
            f"backpropagation's. The biases are drawn from N(0, {BIAS_SCALE}^2), not left at 0, "
            f"so that no ReLU sits on its kink. The C kernels ran on {ops.get_num_threads()} "
            f"thread(s). The last two columns compare the nudged entries with the same entries "
            f"of the backpropagated gradient: their largest difference, relative to the largest "
            f"entry, and the length of the difference, relative to the gradient's length.\n\n"
            + markdown_table(rows, FIELDS, ["network", "parameters", "way", "passes", "seconds",
                                            "times backprop", "measured on", "h",
                                            "largest difference", "difference in length"]))
    write_markdown(os.path.join(args.out, "gradcost.md"), "The cost of a gradient", body)
    print(f"wrote {os.path.join(args.out, 'gradcost.md')}")
    return 0


def add_arguments(p):
    p.add_argument("--batch", type=int, default=10, help="digits in the batch (default 10)")
    p.add_argument("--sample", type=int, default=None,
                   help="parameters to nudge in each network, the time extrapolated to all "
                        "(default: all of the paper's network, 1000 of the convolutional one)")
