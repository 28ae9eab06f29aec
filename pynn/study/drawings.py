"""`pynn study drawn`: which model reads drawings best, the pad's choice of the model it ships.

Each model is scored side by side on: the MNIST test digits as they are; the same digits
traced into strokes and drawn again on the pad (pynn.drawn.pad_set: at random sizes and
places, through strokes_to_mnist, as the pad draws); and drawings in the styles MNIST lacks
(pynn.drawn.STYLES: a barred 7, a flagged 1 with and without a base, a hooked 9, an open 4),
made by a seeded hand on the pad's path. A model ships only if its MNIST test error is at
most --max-error (0.5%); among those, the best reader is the one with the highest mean
accuracy over the drawn sets, the pad-drawn digits and each style counting once.

Then each model is taught --corrections drawings the way the pad teaches them (pynn.adapt.teach
on a copy of the network, each correction with up to two earlier ones, kernels on one
thread): style drawings it misreads, taken in turn from each style (drawn with another seed
than the scored ones), then ones it reads right. The second table gives the time a lesson
takes and the MNIST test error and drawn mean after the last one.
"""
import os
import time

import numpy as np

from .. import adapt, drawn, modelfile, load_default, ops
from .common import Results, load_split, markdown_table, pct, write_markdown

SHIPPED = "shipped"        # the name that stands for the shipped model among the MODELs
MAX_ERROR = 0.005
STYLE_N, QUICK_STYLE_N = 500, 100
CORRECTIONS = 10
REHEARSE = 2               # earlier corrections taught again with each new one (pad.state.REHEARSE)
FIELDS = ["model", "network", "mnist_error", "pad_drawn", *drawn.STYLES, "drawn_mean", "ships"]
TEACH_FIELDS = ["lessons", "cpu_median", "wall_median", "wall_max", "mnist_error_after",
                "drawn_mean_after"]


def score(net, mnist, pad_drawn, styles, max_error=MAX_ERROR):
    """One model's row: its MNIST test error, its accuracy on the pad-drawn digits and on
    each style, their mean, and whether its MNIST error allows it to ship."""
    X, y = mnist
    row = {"network": repr(net), "mnist_error": 1.0 - net.accuracy(X, y),
           "pad_drawn": net.accuracy(pad_drawn, y)}
    for style, (S, labels) in styles.items():
        row[style] = net.accuracy(S, labels)
    row["drawn_mean"] = float(np.mean([row["pad_drawn"]] + [row[s] for s in styles]))
    row["ships"] = bool(row["mnist_error"] <= max_error)
    return row


def best_reader(rows):
    """The row of the model to ship: the highest drawn mean among those that may ship (the
    earlier model on a tie), or None when none may."""
    allowed = [r for r in rows if r["ships"]]
    return max(allowed, key=lambda r: r["drawn_mean"]) if allowed else None


def table(rows):
    shown = [dict(r, mnist_error=pct(r["mnist_error"]), ships="yes" if r["ships"] else "no",
                  **{k: pct(r[k]) for k in ["pad_drawn", *drawn.STYLES, "drawn_mean"]})
             for r in rows]
    return markdown_table(shown, ["model", "mnist_error", "pad_drawn", *drawn.STYLES, "drawn_mean",
                                  "ships"],
                          ["model", "MNIST test error", "pad-drawn digits", *drawn.STYLES,
                           "drawn mean", "may ship"])


def corrections(net, styles, n):
    """n (drawing (784,), label) pairs to teach: the style drawings ``net`` misreads, one
    style after another in turn, then those it reads right, in the same way."""
    misread, read = [], []
    for S, labels in styles.values():
        right = net.predict(S) == labels
        misread.append([(S[i], labels[i]) for i in np.nonzero(~right)[0]])
        read.append([(S[i], labels[i]) for i in np.nonzero(right)[0]])
    turns = [q[i] for queues in (misread, read) for i in range(max(map(len, queues)))
             for q in queues if i < len(q)]
    return turns[:n]


def teach_as_the_pad_does(net, lessons, seed=0):
    """Teach ``lessons`` one after another as the pad does: each on a copy of the network
    then answering, with up to REHEARSE earlier ones chosen at random. Returns the taught
    network and each lesson's (wall, CPU) seconds."""
    rng = np.random.default_rng(seed)
    images, labels, seconds = [], [], []
    threads = ops.get_num_threads()
    ops.set_num_threads(1)
    try:
        for image, label in lessons:
            earlier = rng.permutation(len(images))[:REHEARSE]
            inputs = np.stack([image] + [images[i] for i in earlier]).astype(np.float32)
            taught = np.array([label] + [labels[i] for i in earlier], dtype=np.int64)
            images.append(image)
            labels.append(int(label))
            copy = modelfile.network_from_arrays(modelfile.network_arrays(net))
            wall, cpu = time.perf_counter(), time.process_time()
            adapt.teach(copy, inputs, taught)
            seconds.append((time.perf_counter() - wall, time.process_time() - cpu))
            net = copy
    finally:
        ops.set_num_threads(threads)
    return net, seconds


def teach_row(net, mnist, pad_drawn, styles, lessons_from, n):
    """What ``n`` corrections cost and gain: lesson times, MNIST error and drawn mean after."""
    taught, seconds = teach_as_the_pad_does(net, corrections(net, lessons_from, n))
    after = score(taught, mnist, pad_drawn, styles)
    wall, cpu = np.array(seconds).T
    return {"lessons": len(seconds), "cpu_median": float(np.median(cpu)),
            "wall_median": float(np.median(wall)), "wall_max": float(wall.max()),
            "mnist_error_after": after["mnist_error"], "drawn_mean_after": after["drawn_mean"]}


def teach_table(rows):
    shown = [dict(r, cpu_median=f"{r['cpu_median']:.3f} s", wall_median=f"{r['wall_median']:.3f} s",
                  wall_max=f"{r['wall_max']:.3f} s",
                  mnist=f"{pct(r['mnist_error'])} → {pct(r['mnist_error_after'])}",
                  drawn=f"{pct(r['drawn_mean'])} → {pct(r['drawn_mean_after'])}") for r in rows]
    return markdown_table(shown, ["model", "lessons", "cpu_median", "wall_median", "wall_max",
                                  "mnist", "drawn"],
                          ["model", "corrections", "lesson, CPU (median)", "lesson, wall (median)",
                           "slowest lesson, wall", "MNIST test error", "drawn mean"])


def _model(name):
    net = load_default() if name == SHIPPED else modelfile.load(name)
    if net.sizes[0] != 784 or net.sizes[-1] != 10:
        raise ValueError(f"{name}: a digit network reads 784 pixels into 10 classes, got {net!r}")
    return net


def main(args):
    if not 0 <= args.max_error <= 1:
        raise ValueError(f"--max-error must be in 0..1, got {args.max_error:g}")
    per_style = args.styles if args.styles is not None else (QUICK_STYLE_N if args.quick else STYLE_N)
    if per_style < 1:
        raise ValueError(f"--styles must be at least 1, got {per_style}")
    if args.corrections < 0:
        raise ValueError(f"--corrections must be at least 0, got {args.corrections}")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be at least 1, got {args.limit}")
    names = args.models or [SHIPPED]
    nets = [_model(name) for name in names]          # a bad model file fails before the work
    X, y = load_split(args.data_dir, args.quick)["test"]
    if args.limit:
        X, y = X[:args.limit], y[:args.limit]
    print(f"drawing {len(y)} test digits on the pad and {per_style} of each style "
          f"(seed {args.seed})")
    pad_drawn = drawn.pad_set(X.reshape(-1, 28, 28), seed=args.seed)
    styles = drawn.style_sets(per_style, seed=args.seed)
    rows = [dict(score(net, (X, y), pad_drawn, styles, args.max_error), model=name)
            for name, net in zip(names, nets)]
    best = best_reader(rows)
    pick = (f"The best reader: **{best['model']}**." if best else
            f"No model may ship: none has an MNIST test error of {pct(args.max_error)} or less.")
    taught = ""
    if args.corrections:
        lessons_from = drawn.style_sets(per_style, seed=args.seed + 1)
        for row, net in zip(rows, nets):
            row.update(teach_row(net, (X, y), pad_drawn, styles, lessons_from, args.corrections))
        taught = ("\nTaught as the pad teaches (each correction with up to two earlier ones, on a "
                  "copy of the network, kernels on one thread): the style drawings the model "
                  "misreads first, from a set drawn with the next seed. Times are per lesson; "
                  "the MNIST test error and the drawn mean before and after the last "
                  "lesson.\n\n" + teach_table(rows))
    results = Results(os.path.join(args.out, "drawn.csv"), FIELDS + TEACH_FIELDS, later={})
    if os.path.exists(results.path):
        os.remove(results.path)        # the scores of this run's models, never mixed with others
    results.append(rows)
    body = (f"Accuracy on {len(y)} MNIST test digits traced into strokes and drawn on the pad "
            f"(`pynn.drawn.pad_set`) and on {per_style} drawings of each style "
            f"(`pynn.drawn.style_sets`), seed {args.seed}; the MNIST test error is on the same "
            f"{len(y)} digits. 'drawn mean' is the mean accuracy over the pad-drawn digits and the "
            f"styles; a model may ship when its MNIST test error is at most "
            f"{pct(args.max_error)}, and the best reader is the one of those with the highest "
            f"drawn mean.\n\n" + table(rows) + "\n" + pick + "\n" + taught)
    path = os.path.join(args.out, "drawn.md")
    write_markdown(path, "Reading drawings", body)
    print(table(rows) + "\n" + pick + "\n" + taught)
    print(f"wrote {path}")
    return 0


def add_arguments(p):
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help=f"saved networks to score ({SHIPPED!r}: the shipped model; default: it alone)")
    p.add_argument("--styles", type=int, default=None,
                   help=f"drawings of each style (default {STYLE_N}; under --quick {QUICK_STYLE_N})")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N MNIST test digits (default all; under --quick 1000)")
    p.add_argument("--seed", type=int, default=0, help="seeds the drawings (default 0)")
    p.add_argument("--corrections", type=int, default=CORRECTIONS,
                   help=f"corrections to teach each model as the pad does (default {CORRECTIONS}; "
                        f"0: no teaching)")
    p.add_argument("--max-error", type=float, default=MAX_ERROR,
                   help=f"the MNIST test error a model may have to ship (default {MAX_ERROR:g})")
