"""What every study shares: the data split, training a network from a config, the results
files (a CSV appended one finished configuration at a time, so a rerun skips what is done),
markdown tables and the optional plots.

The split is fixed: the first 50,000 training digits train, the last 10,000 validate (every
choice is made on them), and the 10,000 test digits are touched only to report the models
already chosen.
"""
import csv
import io
import multiprocessing
import json
import math
import os
import shlex
import shutil
import sys
import time

import numpy as np

from .. import ops
from ..checkpoint import checkpoint_path, load_checkpoint
from ..layers import names_images
from ..network import Network
from ..optim import SGD, Adam

N_VAL = 10_000
QUICK_SIZES = (3000, 1000, 1000)     # train, validation, test digits under --quick


# ---- data ----

def _flat(X):
    """Images of any layout as (n, 784) float32 in 0..1 (uint8 pixels are scaled by 1/255)."""
    X = np.asarray(X)
    if X.dtype == np.uint8:
        return ops.scale_u8(np.ascontiguousarray(X)).reshape(X.shape[0], -1)
    return np.ascontiguousarray(X, dtype=np.float32).reshape(X.shape[0], -1)


def _mnist(split, data_dir):
    from .. import datasets
    got = datasets.mnist(split, data_dir=data_dir) if data_dir else datasets.mnist(split)
    X, y = got if isinstance(got, tuple) else (got["images"], got["labels"])
    return _flat(X), np.asarray(y, dtype=np.int64)


def load_split(data_dir=None, quick=False):
    """{"train": (X, y), "val": (X, y), "test": (X, y)}: float32 (n, 784) in 0..1, int64 labels.

    validation = the last 10,000 training digits. ``quick`` keeps the first few thousand of
    each part, for the tests and a first look.
    """
    X, y = _mnist("train", data_dir)
    Xt, yt = _mnist("test", data_dir)
    split = {"train": (X[:-N_VAL], y[:-N_VAL]), "val": (X[-N_VAL:], y[-N_VAL:]), "test": (Xt, yt)}
    if quick:
        split = {k: (a[:n], b[:n]) for (k, (a, b)), n in zip(split.items(), QUICK_SIZES)}
    return {k: (np.ascontiguousarray(a), np.ascontiguousarray(b)) for k, (a, b) in split.items()}


# ---- training a network from a config ----

# A config is a flat dict of plain values, so it fits in a CSV row and a JSON key.
BASE = {"hidden": "100", "activation": "relu", "head": "softmax+cross_entropy",
        "optimizer": "momentum", "lr": 0.05, "schedule": "constant", "batch": 64,
        "epochs": 10, "l2": 0.0, "augment": "none", "seed": 0, "dropout": 0.0}
DEFAULT_LR = {"sgd": 0.1, "momentum": 0.05, "adam": 0.001}
# settings added after results were recorded, with the value the older runs had: at that value
# a setting stays out of the key, so a rerun still finds (and skips) the older rows
LATER = {"dropout": 0.0}

# A config's "hidden" is what lies between the input and the output: dense widths ("100",
# "800-800") or a convolutional body in pynn's architecture grammar, which make_network puts
# between the image (1x28x28) and the output's width. The convolutional network the studies
# put next to the dense ones, and a tiny one for --quick:
CONV_HIDDEN = "c32k5-pool2-c64k5-pool2-256"
CONV = dict(BASE, hidden=CONV_HIDDEN, dropout=0.5)
QUICK_CONV = dict(BASE, hidden="c4k5-pool4-16", epochs=2, batch=32)


def config_key(config):
    """A config's identity: its settings, sorted, as one string (the resume key)."""
    return json.dumps({k: config[k] for k in sorted(config)
                       if not (k in LATER and float(config[k]) == LATER[k])}, sort_keys=True)


def is_conv(config):
    """Whether the config's hidden part is a convolutional body rather than dense widths."""
    return names_images(str(config["hidden"]) or "0")


def architecture(config, n_in=784, n_out=10):
    """The network's architecture string: "784-100-10" for dense widths, and for a
    convolutional body the square image it reads, "1x28x28-c32k5-pool2-...-10"."""
    hidden = str(config["hidden"]).strip("-")
    if not is_conv(config):
        return "-".join(str(w) for w in [n_in, *hidden.split("-"), n_out] if str(w))
    side = math.isqrt(n_in)
    if side * side != n_in:
        raise ValueError(f"a convolutional hidden part {hidden!r} needs square images, "
                         f"got {n_in} pixels")
    return f"1x{side}x{side}-{hidden}-{n_out}"


def make_network(config, n_in=784, n_out=10):
    output, loss = config["head"].split("+")
    return Network(architecture(config, n_in, n_out), config["activation"], output, loss,
                   seed=int(config["seed"]), dropout=float(config.get("dropout", 0.0)))


def make_optimizer(config):
    lr, l2 = float(config["lr"]), float(config["l2"])
    if config["optimizer"] == "adam":
        return Adam(lr=lr, weight_decay=l2)
    if config["optimizer"] == "momentum":
        return SGD(lr=lr, momentum=0.9, weight_decay=l2)
    if config["optimizer"] == "sgd":
        return SGD(lr=lr, weight_decay=l2)
    raise ValueError(f"optimizer must be sgd, momentum or adam; got {config['optimizer']!r}")


def learning_rate(config, epoch):
    """The learning rate of ``epoch`` (from 0): constant, step (halved every third of the run)
    or cosine (from lr down to lr/100)."""
    lr, n, kind = float(config["lr"]), int(config["epochs"]), config["schedule"]
    if kind == "constant":
        return lr
    if kind == "step":
        return lr * 0.5 ** (epoch // max(1, math.ceil(n / 3)))
    if kind == "cosine":
        return lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * epoch / max(1, n))))
    raise ValueError(f"schedule must be constant, step or cosine; got {kind!r}")


def error_rate(net, X, y):
    return 1.0 - net.accuracy(X, y)


def train(config, train_xy, val_xy, transform=None, checkpoint=None, progress=None):
    """Train a network as ``config`` says; return (net, curve, seconds).

    Network.fit does the work: each epoch draws a fresh ``transform(X, rng)`` of the training
    images when one is given (augmentation or training noise), shuffles, and runs mini-batch
    gradient descent at the epoch's learning rate. ``curve`` lists the validation error after
    every epoch (the learning curve). With a ``checkpoint`` directory every finished epoch is
    saved there (pynn.checkpoint, as ``pynn train --checkpoint``) and a rerun goes on from the
    last one. ``progress(epoch, n_epochs, val_error)`` is called after each epoch.
    """
    X, y = train_xy
    net, optimizer = make_network(config, X.shape[1]), make_optimizer(config)
    start, history = 0, None
    if checkpoint and os.path.exists(checkpoint_path(checkpoint)):
        ck = load_checkpoint(checkpoint)
        net, optimizer, start, history = ck.net, ck.optimizer, ck.epoch + 1, ck.history
    epochs = int(config["epochs"])

    def on_epoch_end(epoch, history):
        history.setdefault("val_error", []).append(error_rate(net, *val_xy))
        if progress:
            progress(epoch, epochs, history["val_error"][-1])

    t0 = time.perf_counter()
    history = net.fit(X, y, epochs=epochs, batch_size=int(config["batch"]), optimizer=optimizer,
                      transform=transform, schedule=lambda epoch: learning_rate(config, epoch),
                      on_epoch_end=on_epoch_end, start_epoch=start, history=history,
                      checkpoint=checkpoint or None, run={"config": config}, score=False)
    return net, history.get("val_error", []), time.perf_counter() - t0


def remove_checkpoint(directory):
    """Delete a finished run's checkpoint directory."""
    if directory and os.path.isdir(directory):
        shutil.rmtree(directory)


# ---- results: CSV appended per finished configuration, markdown, plots ----

class Results:
    """A CSV of result rows that grows one row (or one group of rows) at a time, each write
    flushed to disk; ``done`` tells which keys are already there, so a rerun skips them."""

    def __init__(self, path, fields, later=None):
        """``later``: columns added after results were recorded, with the value the older
        rows had (default: the LATER settings)."""
        self.path, self.fields = path, list(fields)
        self.later = dict(LATER if later is None else later)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)

    def rows(self):
        """The rows as dicts; a column an older file lacks (a ``later`` one) reads as the
        value the older runs had."""
        if not os.path.exists(self.path):
            return []
        with open(self.path, newline="") as f:
            rows = list(csv.DictReader(f))
        later = {k: str(v) for k, v in self.later.items() if k in self.fields}
        return [dict(later, **r) for r in rows]

    def _upgrade(self):
        """A file whose header lacks some of our LATER columns is rewritten with them (filled
        with the older runs' value), so the rows appended next line up with the header."""
        with open(self.path, newline="") as f:
            header = next(csv.reader(f), [])
        missing = [k for k in self.fields if k not in header]
        if not header or not missing or not set(missing) <= set(self.later):
            return
        from ..modelfile import atomic_write
        rows, text = self.rows(), io.StringIO()
        w = csv.DictWriter(text, fieldnames=self.fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write(self.path, lambda f: f.write(text.getvalue().encode()))

    def done(self, field="key", *more):
        """The keys already there: one field's values, or tuples of several fields'."""
        if more:
            return {tuple(r[f] for f in (field, *more)) for r in self.rows()}
        return {r[field] for r in self.rows()}

    def append(self, rows):
        new = not os.path.exists(self.path) or os.path.getsize(self.path) == 0
        if not new:
            self._upgrade()
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            for row in rows:
                w.writerow(row)
            f.flush()
            os.fsync(f.fileno())


def markdown_table(rows, columns, headers=None):
    """Rows (dicts) as a markdown table of ``columns``."""
    headers = headers or columns
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def pct(x):
    return f"{100 * float(x):.2f}%"


def command_line():
    """The command that is running, as a user would type it."""
    prog = "pynn" if os.path.basename(sys.argv[0]) in ("pynn", "__main__.py", "cli.py") else sys.argv[0]
    return " ".join([prog] + [shlex.quote(a) for a in sys.argv[1:]])


def write_markdown(path, title, body, command=None):
    """A markdown report headed by the exact command that made it."""
    command = command or command_line()
    with open(path, "w") as f:
        f.write(f"# {title}\n\nMade by: `{command}`\n\n{body}")


def pyplot():
    """matplotlib's pyplot on a file-only backend, or None when the ``plots`` extra is not
    installed (the study then writes its tables and says the plots were skipped)."""
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(plt, fig, unused_axes, out, name):
    """Blank the grid's unused panels, save the figure as out/name, return the path."""
    for ax in unused_axes:
        ax.axis("off")
    fig.tight_layout()
    path = os.path.join(out, name)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def no_plots_note():
    return "(plots skipped: matplotlib is not installed; `pip install -e \".[plots]\"`)\n"


def threads_for(workers):
    """Each worker process gets its share of the cores, so processes do not fight."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


# ---- worker processes ----

DATA = {}    # the split, loaded once per process by init_worker


def init_worker(data_dir, quick, threads):
    ops.set_num_threads(threads)
    DATA.update(load_split(data_dir, quick))


def run_all(fn, tasks, workers, init_args, desc, dask=None):
    """Yield ``fn(task)`` for every task, in finishing order, from ``workers`` processes
    (spawned: each a fresh interpreter, holding none of this process's threads), in this
    process when workers == 1, or on the Dask cluster whose scheduler is at ``dask``
    (pynn.study.cluster).
    ``init_args`` = (data_dir, quick, threads) for init_worker."""
    from tqdm import tqdm
    with tqdm(total=len(tasks), desc=desc, unit="run") as bar:
        for result in _results(fn, tasks, workers, init_args, dask):
            yield result
            bar.update(1)


def _results(fn, tasks, workers, init_args, dask):
    if dask and tasks:
        from . import cluster
        yield from cluster.run(dask, fn, tasks, *init_args[:2])
    elif workers <= 1 or len(tasks) <= 1:
        init_worker(*init_args)
        yield from map(fn, tasks)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(min(workers, len(tasks)), initializer=init_worker, initargs=init_args) as pool:
            yield from pool.imap_unordered(fn, tasks)
