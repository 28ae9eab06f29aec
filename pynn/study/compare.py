"""`pynn study compare`: is a neural network the best way to read digits, robustly and
adaptively (the seed's task 6)?

The same split goes through nearest centroid, k-nearest neighbours (k chosen on validation),
scikit-learn's SVM with an RBF kernel and random forest (pynn.study.baselines, the ``sklearn``
extra), softmax regression (a network with no hidden layer), the paper's 784-30-10 network,
a convolutional network (1x28x28-c32k5-pool2-c64k5-pool2-256-10, a tiny one under --quick) and
the best network of the sweep. For each: test error, training time, inference time per digit,
model size, the error under every noise at its middle level, and adaptivity: a user writes a
digit in an unusual way (a 7 with a bar through it, a 1 with a base and a flag, made by a
fixed transformation of test digits), and the method is taught 0, 1, 2, 4, ... examples; the
table gives how many it needs before it reads 90% of the user's other digits of that style,
and the error on ordinary digits after that teaching (what adapting costs the rest).
"""
import copy
import json
import os
import time

import numpy as np

from .. import ops
from . import baselines
from .common import (BASE, CONV, DATA, QUICK_CONV, QUICK_SIZES, Results, architecture,
                     markdown_table, pct, run_all, threads_for, train, write_markdown)
from .classic import KNearest, NearestCentroid
from .noise import LEVELS, MIDDLE, NOISES, noisy_test_set

METHODS = ["centroid", "knn", "svm", "forest", "softmax", "paper", "conv", "best"]
SKLEARN = ["svm", "forest"]      # the methods that need scikit-learn
NAMES = {"centroid": "nearest centroid", "knn": "k-nearest neighbours",
         "svm": "SVM, RBF kernel (scikit-learn)", "forest": "random forest (scikit-learn)",
         "softmax": "softmax regression (784-10)", "paper": "paper's network (784-30-10)",
         "conv": "convolutional network",
         "best": "best network of the sweep"}
# the paper's network, trained as in Nielsen ch. 1: sigmoid, quadratic loss, SGD at 3.0, batches of 10
PAPER = dict(BASE, hidden="30", activation="sigmoid", head="sigmoid+quadratic", optimizer="sgd",
             lr=3.0, batch=10, epochs=30)
SOFTMAX = dict(BASE, hidden="", head="softmax+cross_entropy", optimizer="momentum", lr=0.05,
               batch=64, epochs=10)
TEACH_COUNTS = [0, 1, 2, 4, 8, 16, 32]
TARGET = 0.90      # taught once it reads this fraction of the user's style


# ---- a user's unusual ways of writing a digit ----

def _ink_box(img):
    rows, cols = np.nonzero(img > 0.3)
    return rows.min(), rows.max(), cols.min(), cols.max()


def seven_with_bar(img):
    """A 7 with a horizontal bar through the middle of its stem (the continental 7)."""
    out = img.copy()
    top, bottom, left, right = _ink_box(img)
    r = top + int(0.55 * (bottom - top))
    ink = np.nonzero(img[r] > 0.3)[0]
    c = int(ink.mean()) if ink.size else (left + right) // 2
    out[r - 1:r + 1, max(0, c - 6):min(28, c + 7)] = 1.0
    return out


def one_with_base(img):
    """A 1 with a base along its foot and a flag at its top (the serif 1)."""
    out = img.copy()
    top, bottom, left, right = _ink_box(img)
    foot = np.nonzero(img[bottom] > 0.3)[0]
    head = np.nonzero(img[top] > 0.3)[0]
    cf = int(foot.mean()) if foot.size else (left + right) // 2
    ch = int(head.mean()) if head.size else (left + right) // 2
    out[bottom - 1:bottom + 1, max(0, cf - 6):min(28, cf + 7)] = 1.0
    for k in range(6):             # the flag: a stroke down and to the left from the top
        r, c = top + k, ch - 1 - k
        if 0 <= r < 28 and 0 <= c < 28:
            out[r, max(0, c - 1):c + 1] = 1.0
    return out


STYLES = {"7 with a bar": (7, seven_with_bar), "1 with base and flag": (1, one_with_base)}


def styled(name, X, y):
    """The test digits of the style's class, each drawn in that style, (n, 784)."""
    digit, fn = STYLES[name]
    imgs = X[y == digit].reshape(-1, 28, 28)
    return np.stack([fn(im) for im in imgs]).reshape(-1, 784).astype(np.float32), digit


# ---- the methods, behind one face: fit, predict, teach, size ----

class NetworkMethod:
    """A network as a method; ``teach`` is the pad's teach mode (pynn.adapt.teach): a short
    fine-tuning on the examples and distorted copies of them, mixed with replayed digits."""

    def __init__(self, name, config=None, path=None):
        self.name, self.config, self.path = name, config, path

    def fit(self, X, y, val):
        if self.path:
            from ..modelfile import load
            self.net = load(self.path)
        else:
            self.net, _, _ = train(self.config, (X, y), val)
        return self

    def predict(self, X):
        return self.net.predict(X)

    def teach(self, X, y):
        from ..adapt import teach
        teach(self.net, X, y)

    def copy(self):
        return copy.deepcopy(self)

    def remember(self, X):
        pass

    def size_bytes(self):
        return sum(p.nbytes for layer in self.net.layers for p in layer.parameters())


class ClassicMethod:
    """A method that learns by storing or refitting, not by gradient steps: nearest centroid,
    k-NN, and scikit-learn's models (baselines.Refitted); ``teach`` is the model's own."""

    def __init__(self, model):
        self.model = model

    def fit(self, X, y, val):
        self.model.fit(X, y)
        if isinstance(self.model, KNearest):
            n = min(len(val[1]), 2000)
            self.k_errors = self.model.choose_k(val[0][:n], val[1][:n])
        return self

    def predict(self, X):
        return self.model.predict(X)

    def teach(self, X, y):
        self.model.teach(X, y)

    def copy(self):
        """A copy to teach: teaching replaces the stored arrays, never changes them in place,
        so the copy may share them (and k-NN's remembered neighbours)."""
        return ClassicMethod(copy.copy(self.model))

    def remember(self, X):
        if isinstance(self.model, KNearest):
            self.model.remember(X, self.model.k)

    def size_bytes(self):
        return self.model.size_bytes()


def make_method(name, quick, best_model):
    if name == "centroid":
        return ClassicMethod(NearestCentroid())
    if name == "knn":
        return ClassicMethod(KNearest())
    if name == "svm":
        return ClassicMethod(baselines.Refitted(baselines.svm()))
    if name == "forest":
        return ClassicMethod(baselines.Refitted(baselines.forest(quick, ops.get_num_threads())))
    if name == "softmax":
        return NetworkMethod(name, dict(SOFTMAX, epochs=2) if quick else SOFTMAX)
    if name == "paper":
        return NetworkMethod(name, dict(PAPER, epochs=2) if quick else PAPER)
    if name == "conv":
        return NetworkMethod(name, QUICK_CONV if quick else CONV)
    if name == "best":
        return NetworkMethod(name, path=best_model)
    raise ValueError(f"unknown method {name!r}; methods: {', '.join(METHODS)}")


def error(method, X, y):
    return float(np.mean(method.predict(X) != y))


def adaptivity(method, X_test, y_test, n_eval):
    """Per style: how many taught examples until the method reads TARGET of the style's
    held-out digits, and the error on ordinary test digits once taught that many."""
    out = {}
    clean_X, clean_y = X_test[:n_eval], y_test[:n_eval]
    for style in STYLES:
        Xs, digit = styled(style, X_test, y_test)
        pool, held = Xs[:max(TEACH_COUNTS)], Xs[max(TEACH_COUNTS):][:n_eval]
        method.remember(held)
        method.remember(clean_X)
        curve = []
        for n in TEACH_COUNTS:
            m = method.copy()
            if n:
                m.teach(np.ascontiguousarray(pool[:n]), np.full(n, digit, dtype=np.int64))
            curve.append((n, 1 - error(m, held, np.full(len(held), digit)), error(m, clean_X, clean_y)))
            if curve[-1][1] >= TARGET:
                break
        needed = next((n for n, acc, _ in curve if acc >= TARGET), None)
        out[style] = {"needed": needed, "curve": curve,
                      "clean_after": curve[-1][2], "clean_before": curve[0][2]}
    return out


def run_method(task):
    """Fit one method and measure everything about it; its CSV row (runs in a worker)."""
    name, quick, best_model, n_eval = task
    (X, y), val, (Xt, yt) = DATA["train"], DATA["val"], DATA["test"]
    method = make_method(name, quick, best_model)
    t0 = time.perf_counter()
    method.fit(X, y, val)
    train_seconds = time.perf_counter() - t0 if name != "best" else float("nan")
    t0 = time.perf_counter()
    test_error = error(method, Xt, yt)
    per_digit = (time.perf_counter() - t0) / len(yt)
    noisy = {f"noise_{n}": error(method, noisy_test_set(n, Xt[:n_eval], MIDDLE), yt[:n_eval])
             for n in NOISES}
    adapt = adaptivity(method, Xt, yt, n_eval)
    title = NAMES[name] + (f" ({architecture(method.config)})" if name == "conv" else "")
    row = {"method": name, "name": title, "test_error": test_error,
           "train_seconds": round(train_seconds, 2), "infer_us_per_digit": round(per_digit * 1e6, 2),
           "size_kb": round(method.size_bytes() / 1024, 1), "adapt": json.dumps(adapt),
           "k": getattr(method.model, "k", "") if isinstance(method, ClassicMethod) else ""}
    row.update(noisy)
    return row


FIELDS = (["method", "name", "test_error", "train_seconds", "infer_us_per_digit", "size_kb", "k"]
          + [f"noise_{n}" for n in NOISES] + ["adapt"])


def _best_model(sweep_dir):
    path = os.path.join(sweep_dir, "sweep_final.csv")
    if not os.path.exists(path):
        return None
    rows = Results(path, []).rows()
    return os.path.join(sweep_dir, rows[0]["model"]) if rows else None


def report(rows, n_eval, out, best_model, notes=()):
    main_cols = ["name", "test_error", "train_seconds", "infer_us_per_digit", "size_kb"]
    lines, noise_lines, adapt_lines = [], [], []
    for r in rows:
        trained = r["train_seconds"] if r["train_seconds"] != "nan" else "(in the sweep)"
        lines.append(dict(r, test_error=pct(r["test_error"]), train_seconds=trained))
        noise_lines.append({"name": r["name"], **{n: pct(r[f"noise_{n}"]) for n in NOISES}})
        for style, a in json.loads(r["adapt"]).items():
            n = a["needed"]
            adapt_lines.append({"name": r["name"], "style": style,
                                "read before teaching": pct(a["curve"][0][1]),
                                "examples needed": n if n is not None else f"> {a['curve'][-1][0]}",
                                "ordinary error before": pct(a["clean_before"]),
                                "ordinary error after": pct(a["clean_after"])})
    mid = ", ".join(f"{n} {LEVELS[n][MIDDLE]:g}" for n in NOISES)
    k = "".join(r["k"] for r in rows if r["method"] == "knn")
    body = (markdown_table(lines, main_cols, ["method", "test error", "train s", "inference µs/digit",
                                              "size KiB"])
            + (f"\nk-NN's k = {k}, chosen among 1, 3, 5, 7, 9 on the first 2,000 validation "
               f"digits. Inference is timed over the whole test set in batches.\n" if k else "")
            + (f"\nThe SVM: the pixels projected on their {baselines.SVM_COMPONENTS} principal "
               f"components, then SVC(C={baselines.SVM_C:g}, kernel='rbf', gamma='scale'); the "
               f"forest: RandomForestClassifier with {baselines.FOREST_TREES} trees "
               f"({baselines.QUICK_FOREST_TREES} under --quick), both trained on all the training "
               f"digits. Size is the pickled model.\n"
               if any(r["method"] in SKLEARN for r in rows) else "")
            + f"\n## Error under noise (middle level: {mid}; first {n_eval} test digits)\n\n"
            + markdown_table(noise_lines, ["name"] + list(NOISES))
            + f"\n## Adaptivity: examples taught until {TARGET:.0%} of the style is read\n\n"
            + markdown_table(adapt_lines, ["name", "style", "read before teaching", "examples needed",
                                           "ordinary error before", "ordinary error after"])
            + f"\nTaught counts tried: {TEACH_COUNTS}; the style's digits are test digits of its "
              f"class redrawn by a fixed transformation; the first {max(TEACH_COUNTS)} are the "
              f"teaching pool and up to {n_eval} others are read after teaching. 'Ordinary error "
              f"after' is on the first {n_eval} test digits. k-NN and nearest centroid adapt by "
              f"storing the examples (centroid: their mean as a new prototype); the SVM and the "
              f"forest by refitting from scratch on the training digits with the examples added; "
              f"networks by pynn.adapt.teach (fine-tuning on them and distorted copies, with "
              f"replayed digits).\n")
    for note in notes:
        body += f"\n{note}\n"
    if best_model is None:
        body += ("\nNo sweep result was found, so the sweep's best network is missing: run "
                 "`pynn study sweep` first and pass its --out as --sweep.\n")
    write_markdown(os.path.join(out, "compare.md"), "Comparison", body)


def main(args):
    best_model = args.best_model or _best_model(args.sweep)
    methods = args.methods.split(",") if args.methods else list(METHODS)
    for m in methods:
        if m not in METHODS:
            raise SystemExit(f"unknown method {m!r}; methods: {', '.join(METHODS)}")
    notes = []
    if best_model is None and "best" in methods:
        print(f"compare: no sweep result in {args.sweep}; the sweep's best network is left out")
        methods.remove("best")
    if not baselines.available():
        if args.methods:          # asked for by name: say what is missing and stop
            for m in methods:
                if m in SKLEARN:
                    baselines.require(f"the {m} method")
        else:
            methods = [m for m in methods if m not in SKLEARN]
            notes.append(f"scikit-learn is not installed, so the SVM and the random forest are "
                         f"left out: `{baselines.INSTALL}`.")
            print(f"compare: {notes[-1]}")
    n_eval = args.eval_n or (QUICK_SIZES[2] if args.quick else 2000)
    results = Results(os.path.join(args.out, "compare.csv"), FIELDS)
    done = results.done("method")
    todo = [(m, args.quick, best_model, n_eval) for m in methods if m not in done]
    print(f"compare: {len(methods)} methods, {len(methods) - len(todo)} already in {results.path}, "
          f"{len(todo)} to run")
    for row in run_all(run_method, todo, args.workers,
                       (args.data_dir, args.quick, threads_for(args.workers)), "compare"):
        results.append([row])
    rows = sorted((r for r in results.rows() if r["method"] in methods),
                  key=lambda r: METHODS.index(r["method"]))
    report(rows, n_eval, args.out, best_model, notes)
    print(f"wrote {os.path.join(args.out, 'compare.md')}")
    return 0


def add_arguments(p):
    p.add_argument("--methods", default=None, help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--sweep", default="study/sweep", help="the sweep's --out (its best model is compared)")
    p.add_argument("--best-model", default=None, help="a saved network to use as the best one instead")
    p.add_argument("--eval-n", type=int, default=None,
                   help="test digits for the noise and adaptivity measurements (default 2000)")
