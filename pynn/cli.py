"""The pynn command: get MNIST, train a network on it, measure it, read digits from images.

    pynn fetch                                   # MNIST into the cache
    pynn train --arch 784-800-10 --epochs 10 --out model.npz
    pynn eval model.npz                          # test error, per class, confusion matrix
    pynn predict model.npz digit.png ...         # the digit in each image
    pynn export model.npz model.onnx             # the network as an ONNX graph

Every sub-command has --help. A mistake of the user's (a missing file, a bad --arch, corrupt
data or a damaged model) ends the command with one line saying what is wrong and a non-zero
exit status, never a traceback.
"""
import argparse
import contextlib
import importlib
import math
import os
import signal
import sys
import tempfile
import threading
import time

import numpy as np

from . import __version__, augment, datasets
from .idx import IdxError
from .modelfile import ModelFileError, Terminated, raise_terminated
from .layers import ARCH_HELP
from .optim import SCHEDULES, scheduled_lr

EXIT_ERROR = 1       # a user error found while running
EXIT_USAGE = 2       # bad arguments (argparse's own code)
IMAGE_SIDE = 28


class UserError(Exception):
    """Something the user can fix; main prints its message as one line."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage itself is in --help)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ---- data ----

def add_data_arguments(p):
    p.add_argument("--data-dir", metavar="DIR",
                   help="directory holding the IDX files (raw or .gz); MNIST is otherwise taken "
                        "from $PYNN_DATA, the cache, or fetched")
    p.add_argument("--dataset", choices=("mnist", "idx"), default="mnist",
                   help="mnist: MNIST, checked against its SHA-256 digests (default); idx: any "
                        "data set in MNIST's layout in --data-dir, e.g. Fashion-MNIST")


def load_data(args, split):
    """(images uint8 (n, rows, cols), labels uint8 (n,)) of ``split`` as the arguments ask;
    a split without digits is refused (nothing trains on it, no error rate is measured on it)."""
    if args.dataset == "idx":
        if not args.data_dir:
            raise UserError("--dataset idx needs --data-dir DIR")
        images, labels = datasets.idx(args.data_dir, split)
    else:
        try:
            images, labels = datasets.mnist(split, data_dir=args.data_dir, progress=sys.stderr.isatty())
        except datasets.DigestError as e:
            raise UserError(f"{e} (for a data set other than MNIST add --dataset idx)") from None
    if len(labels) == 0:
        raise UserError(f"{args.data_dir or 'MNIST'}: its {split} split holds no digits")
    return images, labels


def training_data(args):
    """((X, y), validation): the first --limit training digits, of which the last --val are
    held out for validation (validation is None when --val is 0)."""
    images, labels = load_data(args, "train")
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    if args.val >= len(labels):
        raise UserError(f"--val {args.val} leaves nothing to train on: there are {len(labels)} digits")
    if args.val == 0:
        return (images, labels), None
    split = len(labels) - args.val
    return (images[:split], labels[:split]), (images[split:], labels[split:])


def check_fits(net, images, labels, where):
    """The network's input width must be the number of pixels, its outputs cover the labels."""
    pixels = int(np.prod(images.shape[1:]))
    if net.sizes[0] != pixels:
        raise UserError(f"the network takes {net.sizes[0]} inputs but the {where} images have "
                        f"{pixels} pixels ({images.shape[1]}x{images.shape[2]})")
    classes = int(labels.max()) + 1 if len(labels) else 0
    if net.sizes[-1] < classes:
        raise UserError(f"the network has {net.sizes[-1]} outputs but the {where} labels go up to "
                        f"{classes - 1}")


# ---- train ----

def _int_at_least(text, low):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
    return value


def positive_int(text):
    return _int_at_least(text, 1)


def count(text):
    return _int_at_least(text, 0)


def _number(text, low, high=None):
    """A finite float in [low, high) (high None: no upper bound); NaN and Infinity are no
    setting, and argparse's float would take them."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value >= low and (high is None or value < high)):
        where = f"in [{low:g}, {high:g})" if high is not None else f"at least {low:g}"
        raise argparse.ArgumentTypeError(f"must be a finite number {where}, got {text}")
    return value


def rate(text):
    return _number(text, 0.0)


def fraction(text):
    return _number(text, 0.0, 1.0)


def architecture(text):
    """Widths (784-800-10, kept as a list) or a convolutional architecture (kept as text)."""
    from .layers import from_arch, names_images
    from .network import parse_sizes
    try:
        if names_images(text):
            from_arch(text)
            return text
        return parse_sizes(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_train_arguments(p):
    from .network import HIDDEN, LOSSES, OUTPUTS
    net = p.add_argument_group("network")
    net.add_argument("--arch", type=architecture, default=[784, 800, 10], metavar="ARCH",
                     help=f"{ARCH_HELP} (default 784-800-10)")
    net.add_argument("--activation", choices=HIDDEN, default="relu", help="hidden layers' function (default relu)")
    net.add_argument("--output", choices=OUTPUTS, default="softmax", help="output layer's function (default softmax)")
    net.add_argument("--loss", choices=LOSSES, default="cross_entropy", help="default cross_entropy")
    net.add_argument("--dropout", type=fraction, default=0.0, metavar="P",
                     help="drop each hidden unit with probability P while training (default 0; "
                          "trains layer by layer in Python, not in one C call)")
    net.add_argument("--seed", type=count, default=0, help="seeds the initial weights and the shuffling (default 0)")
    net.add_argument("--init", metavar="MODEL",
                     help="start from the weights of MODEL, a file pynn train saved (its layers "
                          "replace --arch, --activation, --output, --loss and --dropout): to go on "
                          "training a finished model with other settings")
    opt = p.add_argument_group("optimiser")
    opt.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="default sgd")
    opt.add_argument("--lr", type=rate, default=None, help="learning rate (default 0.05 for sgd, 0.001 for adam)")
    opt.add_argument("--momentum", type=fraction, default=0.9, help="sgd's momentum (default 0.9; 0 for plain sgd)")
    opt.add_argument("--beta1", type=fraction, default=0.9, help="adam's beta1 (default 0.9)")
    opt.add_argument("--beta2", type=fraction, default=0.999, help="adam's beta2 (default 0.999)")
    opt.add_argument("--schedule", choices=SCHEDULES, default="constant",
                     help="learning rate over the epochs: constant, step (halved every third of "
                          "the run) or cosine (down to 0 along a half cosine); default constant")
    opt.add_argument("--l2", type=rate, default=0.0, help="L2 weight decay: adds l2*w to every gradient (default 0)")
    opt.add_argument("--batch-size", type=positive_int, default=64, help="mini-batch size (default 64)")
    opt.add_argument("--epochs", type=count, default=10, help="default 10")
    data = p.add_argument_group("data")
    add_data_arguments(data)
    data.add_argument("--limit", type=count, default=0, metavar="N",
                      help="train on the first N training digits only (default: all)")
    data.add_argument("--val", type=count, default=0, metavar="N",
                      help="hold out the last N training digits for validation (default 0)")
    data.add_argument("--augment", nargs="?", const="full", default=None, choices=tuple(augment.KINDS),
                      metavar="KIND",
                      help="train every epoch on freshly distorted digits (pynn.augment): full "
                           "(the default KIND) shifts, rotates, scales, shears, bends and changes "
                           "the stroke width; mild only moves, turns, scales and shears a little, "
                           "for finishing a long run with --init")
    p.add_argument("--out", default="model.npz", metavar="MODEL",
                   help="where to save the network (default model.npz, also when resuming: a "
                        "checkpoint never chooses where pynn writes)")
    run = p.add_argument_group("stopping and resuming")
    run.add_argument("--checkpoint", metavar="DIR",
                     help="save a checkpoint in DIR after every epoch (weights, optimiser state, "
                          "random state, history); Ctrl+C saves one there too (default: MODEL's "
                          "name with .checkpoint, and only on Ctrl+C)")
    run.add_argument("--resume", metavar="DIR",
                     help="go on from the checkpoint in DIR, with the settings it was started "
                          "with: the result is bit for bit that of a run never stopped (a "
                          "setting given that differs from the checkpoint's is refused)")


# what --init takes from its model file instead
LAYER_SETTINGS = ("arch", "activation", "output", "loss", "dropout")


def build_network(args, X, y):
    from .network import Network
    if args.init:
        return init_network(args, X, y)
    try:
        net = Network(args.arch, args.activation, args.output, args.loss, seed=args.seed,
                      dropout=getattr(args, "dropout", 0.0))
    except ValueError as e:
        raise UserError(str(e)) from None
    check_fits(net, X, y, "training")
    return net


def init_network(args, X, y):
    """The network saved in --init, seeded by --seed for the shuffling and dropout."""
    from .modelfile import load
    given = [f"--{k}" for k in LAYER_SETTINGS if k in getattr(args, "given", set())]
    if given:
        raise UserError(f"--init {args.init} takes its layers from the file; drop {', '.join(given)}")
    net = load(args.init)       # a bad file is a ModelFileError naming it
    net.reseed(args.seed)
    check_fits(net, X, y, "training")
    return net


DEFAULT_LR = {"sgd": 0.05, "adam": 0.001}


def base_lr(args):
    return DEFAULT_LR[args.optimizer] if args.lr is None else args.lr


def build_optimizer(args):
    from .optim import SGD, Adam
    try:
        if args.optimizer == "adam":
            return Adam(lr=base_lr(args), beta1=args.beta1, beta2=args.beta2, weight_decay=args.l2)
        return SGD(lr=base_lr(args), momentum=args.momentum, weight_decay=args.l2)
    except ValueError as e:
        raise UserError(str(e)) from None


def percent(fraction):
    return f"{100 * fraction:.2f}%"


class TrainingReport:
    """A progress bar over the whole run (samples/s, running loss) and one line per epoch.

    ``batch`` and ``epoch_end`` plug into Network.fit's ``callback`` and ``on_epoch_end``. The
    callback is passed whether or not a terminal shows the bar, so the same command trains the
    same way (batch by batch) and gives the same network on a terminal and off it.
    """

    def __init__(self, epochs, n, batch_size, start_epoch=0, out=None):
        from tqdm import tqdm
        self.epochs, self.n, self.batch_size, self.out = epochs, n, batch_size, out or sys.stdout
        self.bar = tqdm(total=max(epochs - start_epoch, 0) * n, unit="sample", unit_scale=True,
                        leave=False, disable=None, file=sys.stderr, desc="training")
        self.started, self.counted, self.running = time.perf_counter(), 0, None

    def batch(self, epoch, k, n_batches, loss):
        size = min(self.batch_size, self.n - k * self.batch_size)
        self.counted += size
        self.running = loss if self.running is None else 0.98 * self.running + 0.02 * loss
        self.bar.update(size)
        if k % 20 == 0 or k == n_batches - 1:
            self.bar.set_postfix(loss=f"{self.running:.4f}", refresh=False)

    def epoch_end(self, epoch, history):
        seconds = time.perf_counter() - self.started
        self.bar.update(self.n - self.counted)
        self.bar.set_postfix(loss=f"{history['loss'][-1]:.4f}", refresh=False)
        line = (f"epoch {epoch + 1:>{len(str(self.epochs))}}/{self.epochs}  "
                f"loss {history['loss'][-1]:.4f}  train error {percent(1 - history['accuracy'][-1])}")
        if "val_accuracy" in history:
            line += f"  val error {percent(1 - history['val_accuracy'][-1])}"
        self.bar.clear()
        print(f"{line}  {seconds:.1f} s", file=self.out, flush=True)
        self.bar.refresh()
        self.started, self.counted = time.perf_counter(), 0

    def close(self):
        self.bar.close()


def fit(args, net, optimizer, train, validation, epoch_hooks=(), start_epoch=0, history=None,
        augment_rng=None):
    """Train ``net`` on ``train`` = (X, y) as the arguments say; after every epoch the report
    prints its line, then each of ``epoch_hooks(epoch, history)`` runs (e.g. a checkpoint).
    ``augment_rng`` draws the distortions with --augment (default: seeded by --seed)."""
    X, y = train
    report = TrainingReport(args.epochs, len(y), args.batch_size, start_epoch)

    # the rate of every epoch follows from the settings alone, so a resumed run steps alike
    lr0, schedule = base_lr(args), getattr(args, "schedule", None) or "constant"

    def on_epoch_end(epoch, history):
        report.epoch_end(epoch, history)
        for hook in epoch_hooks:
            hook(epoch, history)

    transform = transform_rng = None
    if getattr(args, "augment", None):
        from . import augment
        transform = augment.named(args.augment)
        transform_rng = np.random.default_rng(args.seed) if augment_rng is None else augment_rng
    try:
        return net.fit(X, y, epochs=args.epochs, batch_size=args.batch_size, optimizer=optimizer,
                       validation=validation, callback=report.batch, on_epoch_end=on_epoch_end,
                       start_epoch=start_epoch, history=history, transform=transform,
                       transform_rng=transform_rng,
                       schedule=lambda epoch: scheduled_lr(schedule, lr0, epoch, args.epochs))
    finally:
        report.close()


def test_error(net, images, labels):
    """The fraction of ``images`` the network gets wrong, and how many."""
    wrong = int(np.count_nonzero(net.predict(images) != labels))
    return wrong / len(labels), wrong


# the settings that decide a run's result: a checkpoint keeps them, --resume takes them back
RUN_SETTINGS = ("arch", "activation", "output", "loss", "dropout", "seed", "optimizer", "lr", "schedule", "momentum",
                "beta1", "beta2", "l2", "batch_size", "epochs", "dataset", "data_dir", "limit",
                "val", "augment", "init", "out")


# the JSON type of each setting a checkpoint keeps
SETTING_TYPES = {"arch": list, "augment": str, "init": str,
                 **dict.fromkeys(("seed", "batch_size", "epochs", "limit", "val"), int),
                 **dict.fromkeys(("dropout", "lr", "momentum", "beta1", "beta2", "l2"), float),
                 **dict.fromkeys(("activation", "output", "loss", "optimizer", "schedule",
                                  "dataset", "data_dir", "out"), str)}
# the settings whose default is None (left out when written back as options)
NONE_DEFAULTS = ("lr", "data_dir", "augment", "init")


class SettingsParser(Parser):
    """The train parser, for settings read from a file: an error is a UserError naming it."""

    def error(self, message):
        raise UserError(f"{self.prog}: a saved setting is wrong: {message}")


def _of_type(value, kind):
    if kind is bool or isinstance(value, bool):
        return isinstance(value, bool) and kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    if kind is list:            # the architecture: widths, or a convolutional one's text
        return isinstance(value, str) or (isinstance(value, list) and all(type(v) is int for v in value))
    return isinstance(value, kind)


def saved_settings(saved, path):
    """The run settings a checkpoint keeps, checked exactly as the command line checks them
    (they are written back as options and parsed): a file is as untrusted as a command line."""
    if not isinstance(saved, dict):
        raise UserError(f"{path}: its run settings are not a dict")
    argv = []
    for key, value in saved.items():
        kind = SETTING_TYPES.get(key)
        if kind is None:
            raise UserError(f"{path}: unknown run setting {key!r}")
        if key == "augment" and isinstance(value, bool):
            value = "full" if value else None      # what checkpoints kept before --augment KIND
        if value is None and key in NONE_DEFAULTS:
            continue                     # their defaults
        if not _of_type(value, kind):
            raise UserError(f"{path}: run setting {key} is {value!r}, not a {kind.__name__}")
        option = "--" + key.replace("_", "-")
        if kind is bool:
            argv += [option] if value else []
        else:
            text = "-".join(map(str, value)) if isinstance(value, list) else value
            argv.append(f"{option}={text}")
    parser = SettingsParser(prog=path)
    add_train_arguments(parser)
    parsed = parser.parse_args(argv)
    return {key: getattr(parsed, key) for key in saved}


def resume_run(args):
    """(net, optimizer, start_epoch, history, augment_rng) from the checkpoint in --resume,
    whose saved settings replace the command line's defaults. A setting given on the command
    line that differs from the checkpoint's is refused: the resumed run would no longer be the
    run that was stopped. --out is the command line's (default model.npz): a file never
    chooses where pynn writes."""
    from .checkpoint import generator, load_checkpoint
    ck = load_checkpoint(args.resume)
    saved = saved_settings(ck.run.get("args", {}), ck.path)
    given = getattr(args, "given", set())
    changed = [key for key in saved if key != "out" and key in given and getattr(args, key) != saved[key]]
    if changed:
        said = ", ".join(f"--{k.replace('_', '-')} {_setting_text(getattr(args, k))} (the checkpoint's "
                         f"is {_setting_text(saved[k])})" for k in changed)
        raise UserError(f"--resume goes on with the settings its run started with; {said} would "
                        f"change them: drop the option, or start a new run")
    for key, value in saved.items():
        if key != "out":
            setattr(args, key, value)
    expected = {"loss", "accuracy"} | ({"val_loss", "val_accuracy"} if args.val else set())
    if set(ck.history) != expected:
        raise UserError(f"{ck.path}: its history keeps {sorted(ck.history)}, a run with its "
                        f"settings keeps {sorted(expected)}")
    augment_rng = None
    if ck.run.get("augment_rng") is not None:
        augment_rng = generator(ck.run["augment_rng"], ck.path)
    note = ""
    if "out" not in given and saved.get("out", args.out) != args.out:
        note = f" (it was started with --out {saved['out']}; this run saves to {args.out})"
    print(f"resuming {ck.path} after epoch {ck.epoch + 1} of {args.epochs}{note}", flush=True)
    return ck.net, ck.optimizer, ck.epoch + 1, ck.history, augment_rng


def _setting_text(value):
    return "-".join(map(str, value)) if isinstance(value, list) else str(value)


_UNSET = object()


def given_settings(argv):
    """The run settings written on a ``pynn train`` command line ``argv`` (after "train"),
    told apart from those left at their defaults: argparse fills in a default only where the
    namespace has no value yet."""
    parser = Parser(prog="pynn train")
    add_train_arguments(parser)
    namespace = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(RUN_SETTINGS, _UNSET)))
    return {key for key in RUN_SETTINGS if getattr(namespace, key) is not _UNSET}


class Checkpointer:
    """Keeps the state after the last finished epoch (in memory, and in --checkpoint DIR when
    given), so that Ctrl+C, arriving mid-epoch, can save a state a resumed run continues from
    exactly."""

    def __init__(self, args, net, optimizer, epoch, history, augment_rng):
        self.args, self.net, self.optimizer, self.augment_rng = args, net, optimizer, augment_rng
        self.directory = args.checkpoint or args.resume
        self.snapshot(epoch, history or {})

    def snapshot(self, epoch, history):
        from .checkpoint import checkpoint_arrays
        run = {"args": {k: getattr(self.args, k) for k in RUN_SETTINGS},
               "augment_rng": self.augment_rng.bit_generator.state if self.augment_rng else None}
        self.epoch, self.arrays = epoch, checkpoint_arrays(self.net, self.optimizer, epoch, history, run)

    def epoch_end(self, epoch, history):
        self.snapshot(epoch, history)
        if self.directory:
            self.write()

    def write(self):
        from .checkpoint import write_checkpoint
        if not self.directory:
            self.directory = os.path.splitext(self.args.out)[0] + ".checkpoint"
        return write_checkpoint(self.directory, self.arrays)


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM stops training as Ctrl+C does (the state is saved), in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def cmd_train(args):
    from .checkpoint import checkpoint_path
    from .modelfile import refuse_unless_regular_or_absent, save
    # what will be written is checked before an hour of training, not after
    refuse_unless_regular_or_absent(args.out)
    parent = os.path.dirname(os.path.abspath(args.out))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    try:                          # a file made and removed at once: what the save will need
        fd, probe = tempfile.mkstemp(prefix=".pynn-probe.", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise UserError(f"{args.out}: cannot be written ({parent}: {e.strerror or e})") from None
    for directory in (args.checkpoint, args.resume):
        if directory and os.path.exists(directory) and not os.path.isdir(directory):
            raise UserError(f"{directory}: not a directory (a checkpoint is DIR/checkpoint.npz)")
        if directory:
            refuse_unless_regular_or_absent(checkpoint_path(directory))
    augment_rng, start, history = None, 0, None
    if args.resume:
        net, optimizer, start, history, augment_rng = resume_run(args)
    train, validation = training_data(args)       # a resumed run's as its settings say
    if args.resume:
        check_fits(net, *train, "training")
    else:
        net = build_network(args, *train)
        optimizer = build_optimizer(args)
    if args.augment and augment_rng is None:
        augment_rng = np.random.default_rng(args.seed)
    held = f", {len(validation[1])} held out for validation" if validation else ""
    print(f"{net} with {optimizer}, batch {args.batch_size}, {args.epochs} epochs, "
          f"on {len(train[1])} digits{held}", flush=True)
    keeper = Checkpointer(args, net, optimizer, start - 1, history, augment_rng)
    try:
        with sigterm_as_ctrl_c():
            fit(args, net, optimizer, train, validation, epoch_hooks=[keeper.epoch_end],
                start_epoch=start, history=history, augment_rng=augment_rng)
    except KeyboardInterrupt as stop:
        path = keeper.write()
        done = f"after epoch {keeper.epoch + 1}" if keeper.epoch >= 0 else "before the first epoch"
        how = "terminated" if isinstance(stop, Terminated) else "interrupted"
        print(f"\npynn train: {how}; saved the state {done} in {path}\n"
              f"resume with: pynn train --resume {keeper.directory}", file=sys.stderr, flush=True)
        return 128 + (signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT)
    save(net, args.out)
    images, labels = load_data(args, "test")
    check_fits(net, images, labels, "test")
    error, wrong = test_error(net, images, labels)
    print(f"test error {percent(error)} ({wrong} of {len(labels)} wrong); saved {args.out}")


# ---- eval ----

def load_model(path):
    from .modelfile import load
    return load(path)


def confusion_matrix(labels, predicted, classes):
    """counts[t, p]: how many digits of class t the network called p."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (labels.astype(np.int64), predicted), 1)
    return counts


def cmd_eval(args):
    net = load_model(args.model)
    images, labels = load_data(args, "test")
    if args.limit:
        images, labels = images[:args.limit], labels[:args.limit]
    check_fits(net, images, labels, "test")
    predicted = net.predict(images)
    classes = net.sizes[-1]
    counts = confusion_matrix(labels, predicted, classes)
    wrong = len(labels) - int(np.trace(counts))
    print(f"{net}: test error {percent(wrong / len(labels))} ({wrong} of {len(labels)} wrong)")
    print("\nper class\n  class  correct  total  accuracy")
    for c in range(classes):
        total = int(counts[c].sum())
        acc = percent(counts[c, c] / total) if total else "-"
        print(f"  {c:>5}  {counts[c, c]:>7}  {total:>5}  {acc:>8}")
    width = max(4, len(str(int(counts.max()))) + 1)
    print("\nconfusion matrix (rows: true class, columns: predicted)")
    print("     " + "".join(f"{c:>{width}}" for c in range(classes)))
    for t in range(classes):
        print(f"{t:>4} " + "".join(f"{counts[t, p]:>{width}}" for p in range(classes)))
    off = counts.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None, kind="stable")[::-1][:args.top]
    pairs = [(int(k) // classes, int(k) % classes) for k in order if off.flat[k] > 0]
    print("\nmost confused (true -> predicted):" + ("" if pairs else " none"))
    for t, p in pairs:
        print(f"  {t} -> {p}: {off[t, p]} times")


# ---- predict ----

def parse_pgm(data, path):
    """A PGM image (P2 text or P5 binary, 8 or 16 bits) as a float array in 0..1."""
    tokens, pos = [], 2
    if data[:2] not in (b"P2", b"P5"):
        raise UserError(f"{path}: not a PGM file (it starts {data[:2]!r}, not P2 or P5)")
    while len(tokens) < 3:                       # width, height, maxval; '#' starts a comment
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            while pos < len(data) and data[pos:pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos:pos + 1].isspace() and data[pos:pos + 1] != b"#":
            pos += 1
        if start == pos:
            raise UserError(f"{path}: PGM header ends early")
        tokens.append(data[start:pos])
    try:
        width, height, maxval = (int(t) for t in tokens)
    except ValueError:
        raise UserError(f"{path}: PGM header {b' '.join(tokens)!r} is not three numbers") from None
    if width < 1 or height < 1 or not 1 <= maxval <= 65535:
        raise UserError(f"{path}: PGM size {width}x{height} or maxval {maxval} is out of range")
    _refuse_too_many_pixels(path, width, height)
    if data[:2] == b"P5":
        dtype = np.dtype(">u2") if maxval > 255 else np.dtype("u1")
        body = data[pos + 1:]                    # exactly one whitespace byte after maxval
        need = width * height * dtype.itemsize
        if len(body) < need:
            raise UserError(f"{path}: PGM data truncated ({len(body)} of {need} bytes)")
        pixels = np.frombuffer(body, dtype=dtype, count=width * height)
    else:
        try:
            pixels = np.array([int(t) for t in data[pos:].split()[:width * height]])
        except ValueError:
            raise UserError(f"{path}: PGM pixel values are not numbers") from None
        if pixels.size < width * height:
            raise UserError(f"{path}: PGM data truncated ({pixels.size} of {width * height} values)")
    if pixels.max() > maxval:
        raise UserError(f"{path}: PGM values exceed its maxval {maxval}")
    return (pixels.astype(np.float32) / maxval).reshape(height, width)


MAX_IMAGE_BYTES = 64 << 20     # an image file pynn reads is at most this large
MAX_IMAGE_PIXELS = 1 << 24     # and at most this many pixels (4096 x 4096): a photo of a digit
                               # fits, a decompression bomb does not


def _refuse_too_many_pixels(path, width, height):
    if width * height > MAX_IMAGE_PIXELS:
        raise UserError(f"{path}: {width}x{height} pixels, more than the {MAX_IMAGE_PIXELS} "
                        f"pynn reads in an image")


def read_image(path):
    """The image at ``path`` as a 2-D float array in 0..1. PGM is read here; anything else
    (PNG, ...) through Pillow. In an image with transparency the opaque strokes are the ink.
    Only a regular file is read (a FIFO or /dev/zero is refused at once), of at most
    MAX_IMAGE_BYTES and MAX_IMAGE_PIXELS, whatever its header claims."""
    from .modelfile import read_regular
    data = read_regular(path, MAX_IMAGE_BYTES, error=UserError, what="image")
    if data[:2] in (b"P2", b"P5"):
        return parse_pgm(data, path)
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise UserError(f"{path}: reading this format needs Pillow (pip install Pillow)") from None
    import io
    import warnings
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise UserError(f"{path}: more pixels than pynn reads in an image "
                        f"({MAX_IMAGE_PIXELS} at most): a decompression bomb?") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise UserError(f"{path}: not an image that can be read ({e})") from None
    try:
        with img:
            _refuse_too_many_pixels(path, *img.size)
            img.load()
            if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
                alpha = np.asarray(img.convert("RGBA"), dtype=np.float32)[:, :, 3] / 255.0
                if alpha.min() < alpha.max():
                    return alpha                  # drawn strokes on a transparent canvas
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                pixels = np.asarray(img, dtype=np.float64)
                if not np.isfinite(pixels).all():      # a float TIFF may hold them
                    raise UserError(f"{path}: holds NaN or Inf pixels")
                top = 65535.0 if img.mode.startswith("I;16") or pixels.max() > 255 else 255.0
                return np.clip(pixels / top, 0, 1).astype(np.float32)
            return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    except UserError:
        raise
    except Exception as e:     # a damaged image fails in many ways inside Pillow's decoders
        reason = " ".join(f"{e.__class__.__name__}: {e}".split())
        raise UserError(f"{path}: not an image that can be read ({reason})") from None


def ink_is_dark(image):
    """True when the image is dark ink on a light background (MNIST's digits are the other
    way round). The background is what most of the border is."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return float(np.median(border)) > 0.5


def to_network_input(image):
    """An image of any size, either polarity, as MNIST's 28x28 float32: bright ink on dark."""
    from .preprocess import to_mnist
    if ink_is_dark(image):
        image = 1.0 - image
    return to_mnist(image)


def cmd_predict(args):
    net = load_model(args.model)
    if net.sizes[0] != IMAGE_SIDE * IMAGE_SIDE:
        raise UserError(f"{args.model}: the network takes {net.sizes[0]} inputs, not "
                        f"{IMAGE_SIDE}x{IMAGE_SIDE} images")
    for path in args.images:
        x = np.ascontiguousarray(to_network_input(read_image(path)), dtype=np.float32)
        probs = net.predict_proba(x.reshape(1, -1))[0]
        digit = int(np.argmax(probs))
        print(f"{path}: {digit} ({probs[digit]:.1%})")
        print("  " + "  ".join(f"{c}:{p:.3f}" for c, p in enumerate(probs)))


# ---- export ----

def cmd_export(args):
    net = load_model(args.model)
    try:
        from .onnx_io import to_onnx
    except ImportError as e:
        raise UserError(str(e)) from None
    try:
        to_onnx(net, args.out)
    except ValueError as e:
        raise UserError(f"{args.model}: {e}") from None
    print(f"{net}: saved {args.out} (ONNX)")


# ---- fetch ----

def cmd_fetch(args):
    where = datasets.fetch(progress=True)
    for name in datasets.SHA256:
        print(f"{where}/{name}")
    print(f"MNIST is in {where} (verified against its SHA-256 digests)")


# ---- the command ----

def build_parser():
    parser = Parser(prog="pynn", description="A neural network for handwritten digits.")
    parser.add_argument("--version", action="version", version=f"pynn {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = subparsers.add_parser("fetch", help="download MNIST into the cache",
                              description="Fetch MNIST into the cache ($XDG_CACHE_HOME/pynn) and "
                                          "verify it; prints where it is.")
    p.add_argument("dataset", nargs="?", choices=("mnist",), default="mnist")
    p.set_defaults(func=cmd_fetch)

    p = subparsers.add_parser("train", help="train a network and save it",
                              description="Train a network on MNIST (or another IDX data set), "
                                          "save it, and report its test error.")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("eval", help="test error, per-class accuracy, confusion matrix",
                              description="Measure a saved network on the test digits.")
    p.add_argument("model", metavar="MODEL", help="a .npz file saved by pynn train")
    add_data_arguments(p)
    p.add_argument("--limit", type=count, default=0, metavar="N", help="only the first N test digits")
    p.add_argument("--top", type=count, default=5, metavar="N", help="how many confused pairs to list (default 5)")
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("predict", help="read the digit in images (PNG, PGM, ...)",
                              description="Print the digit and the probabilities for each image, "
                                          "of any size, dark-on-light or light-on-dark.")
    p.add_argument("model", metavar="MODEL", help="a .npz file saved by pynn train")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="PNG, PGM or any image Pillow reads")
    p.set_defaults(func=cmd_predict)

    p = subparsers.add_parser("export", help="write a model as ONNX, for other runtimes",
                              description="Write a saved network as an ONNX graph (input 'input' "
                                          "(N, ...), output 'probabilities' (N, classes)); needs "
                                          "the onnx extra.")
    p.add_argument("model", metavar="MODEL", help="a .npz file saved by pynn train")
    p.add_argument("out", metavar="OUT", help="the .onnx file to write")
    p.set_defaults(func=cmd_export)

    # ---- sub-commands registered by other modules ----
    # Each module's register(subparsers) adds its parsers and sets func=function(args) with
    # set_defaults; the modules import their heavier dependencies only when a command runs.
    for name in ("bench", "study"):
        importlib.import_module(f"pynn.{name}").register(subparsers)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.command == "train":
        args.given = given_settings(argv[1:])
    try:
        status = args.func(args)
    except BrokenPipeError:      # the reader went away (| head): stop quietly, as cat does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except (UserError, ModelFileError, datasets.DataError, IdxError, FloatingPointError, OSError) as e:
        print(f"pynn {args.command}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except MemoryError:
        print(f"pynn {args.command}: error: not enough memory", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"pynn {args.command}: interrupted", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
