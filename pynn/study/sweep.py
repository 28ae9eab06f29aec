"""`pynn study sweep`: which settings give the lowest error rate (the seed's task 5).

Configurations are drawn from SPACE (a random search), from all combinations of the settings
given with --set (a grid), or made by changing one setting at a time from BASE (axes: the
search whose plots show validation error against each setting). Each configuration trains on
the 50,000 training digits and is judged on the 10,000 validation digits; its row is appended
to sweep.csv as soon as it finishes, so a rerun skips what is done and an interrupted
configuration resumes from its last epoch. With --dask ADDRESS the configurations train on a
Dask cluster instead of local processes (pynn.study.cluster), into the same CSV. Only at the
end are the chosen models (the best --final on validation) run on the test set, once.
"""
import itertools
import json
import os
import random

import numpy as np

from ..modelfile import atomic_write
from .common import (BASE, CONV_HIDDEN, DATA, DEFAULT_LR, QUICK_CONV, Results, config_key,
                     error_rate, is_conv, load_split, markdown_table, no_plots_note, pct, pyplot,
                     remove_checkpoint, run_all, save_figure, threads_for, train, write_markdown)

SPACE = {
    "hidden": ["30", "100", "300", "800", "1200", "800-800", CONV_HIDDEN],
    "activation": ["sigmoid", "tanh", "relu"],
    "head": ["softmax+cross_entropy", "sigmoid+cross_entropy", "softmax+quadratic",
             "sigmoid+quadratic"],
    "optimizer": ["sgd", "momentum", "adam"],
    "lr": [0.01, 0.02, 0.05, 0.1, 0.2],
    "schedule": ["constant", "step", "cosine"],
    "batch": [16, 32, 64, 128, 256],
    "epochs": [5, 10, 20, 30],
    "l2": [0.0, 1e-5, 1e-4, 1e-3],
    "augment": ["none", "affine", "elastic", "affine+elastic"],
    "dropout": [0.0, 0.2, 0.5],
}
QUICK_BASE = dict(BASE, hidden="16", epochs=2, batch=32)
QUICK_SPACE = {"hidden": ["8", "16", QUICK_CONV["hidden"]], "activation": ["sigmoid", "relu"],
               "augment": ["none", "affine"], "epochs": [2]}
FIELDS = ["key", "hidden", "activation", "head", "optimizer", "lr", "schedule", "batch",
          "epochs", "l2", "augment", "seed", "val_error", "train_seconds", "curve", "dropout"]
AXES_ORDER = list(SPACE)


# ---- augmentation, from pynn.augment ----

def augmentation(name):
    """``transform(X, rng)`` that makes one fresh augmented copy of the training images, or
    None for "none". Names: affine, elastic, affine+elastic (pynn.augment does the work)."""
    if name == "none":
        return None
    from .. import augment
    parts = name.split("+")
    for p in parts:
        if p not in ("affine", "elastic"):
            raise ValueError(f"augment must be none, affine, elastic or affine+elastic; got {name!r}")

    def transform(X, rng):
        out = X
        for p in parts:
            out = getattr(augment, p)(out.reshape(-1, 28, 28), rng=rng).reshape(X.shape[0], -1)
        return np.ascontiguousarray(out, dtype=np.float32)
    return transform


# ---- which configurations ----

def parse_settings(pairs):
    """["hidden=100,800", "lr=0.1"] -> {"hidden": ["100", "800"], "lr": [0.1]}, typed like BASE."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise ValueError(f"--set takes name=value[,value...], got {pair!r}")
        name, values = pair.split("=", 1)
        if name not in BASE:
            raise ValueError(f"unknown setting {name!r}; settings: {', '.join(BASE)}")
        kind = type(BASE[name])
        try:
            out[name] = [kind(v) for v in values.split(",") if v != ""]
        except ValueError:
            raise ValueError(f"--set {name}: {values!r} are not {kind.__name__} values") from None
        if not out[name]:
            raise ValueError(f"--set {name} needs at least one value")
    return out


def _with_lr(config):
    """A change of optimiser brings that optimiser's usual learning rate with it (Adam's
    steps are of another scale than SGD's), unless the lr itself is the setting varied."""
    return dict(config, lr=DEFAULT_LR[config["optimizer"]])


def configurations(search, base, space, settings, trials, seed):
    """The list of configs to run, in a fixed order."""
    base = dict(base, **{k: v[0] for k, v in settings.items() if len(v) == 1})
    if search == "grid":
        names = list(settings)
        return [dict(base, **dict(zip(names, combo)))
                for combo in itertools.product(*(settings[n] for n in names))] or [base]
    if search == "axes":
        axes = {k: v for k, v in settings.items() if len(v) > 1} or space
        configs = [base]
        for name, values in axes.items():
            for v in values:
                c = dict(base, **{name: v})
                configs.append(_with_lr(c) if name == "optimizer" else c)
        unique = {config_key(c): c for c in configs}
        return list(unique.values())
    if search == "random":
        rng = random.Random(seed)
        space = dict(space, **settings)
        configs = {}
        for _ in range(trials * 20):
            if len(configs) >= trials:
                break
            c = dict(base, **{k: rng.choice(v) for k, v in space.items()})
            if c["optimizer"] == "adam" and c["lr"] > 0.01:
                c["lr"] = DEFAULT_LR["adam"]
            configs.setdefault(config_key(c), c)
        return list(configs.values())
    raise ValueError(f"search must be axes, grid or random; got {search!r}")


# ---- running them ----

def model_path(out, key):
    """Where a sweep in ``out`` saves the model of the config whose key is ``key``
    (config_key): pynn.load reads it back."""
    import hashlib
    return os.path.join(out, "models", hashlib.sha1(key.encode()).hexdigest()[:12] + ".npz")


def run_config(task):
    """Train one config, save its model, return its CSV row (runs in a worker). With
    ``send_model`` the row carries the saved model's bytes too (``model_npz``), for a client
    that may not see the worker's disk."""
    config, out, show_epochs, send_model = task
    key = config_key(config)
    path = model_path(out, key)
    ckpt = path.replace(".npz", ".checkpoint")
    bar = None
    if show_epochs:
        from tqdm import tqdm
        bar = tqdm(total=int(config["epochs"]), desc=f"  {config['hidden']} {config['augment']}",
                   leave=False, unit="epoch")
    progress = (lambda e, n, err: (bar.update(1), bar.set_postfix(val=f"{err:.4f}"))) if bar else None
    net, curve, seconds = train(config, DATA["train"], DATA["val"],
                                augmentation(config["augment"]), ckpt, progress)
    if bar:
        bar.close()
    net.save(path)
    remove_checkpoint(ckpt)
    row = dict(config, key=key, val_error=curve[-1], train_seconds=round(seconds, 2),
               curve=json.dumps([round(e, 5) for e in curve]))
    if send_model:
        with open(path, "rb") as f:
            row["model_npz"] = f.read()
    return row


def keep_model(out, row):
    """Write the model a cluster worker sent with ``row`` where a local run saves it."""
    model = row.pop("model_npz", None)
    if model is not None:
        atomic_write(model_path(out, row["key"]), lambda f: f.write(model))
    return row


# ---- reports ----

def _fmt(row):
    return dict(row, val_error=pct(row["val_error"]))


def _order(name, value):
    """Where a setting's value goes on its plot's axis: numbers (and hidden widths, by their
    total, convolutional bodies after them) in increasing order, names in SPACE's order."""
    if name == "hidden":
        if is_conv({"hidden": value}):
            return (1, 0, value)
        return (0, sum(int(h) for h in value.split("-") if h), value)
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, SPACE[name].index(value) if value in SPACE.get(name, []) else len(SPACE), value)


def _plot_settings(plt, rows, base, out, one_at_a_time=True):
    """Validation error against each setting. After an axes search each panel holds the
    configurations that change only that setting from the base, joined by a line; after a
    grid or random search, where many settings change at once, every configuration is a dot
    in every panel, over its value of that setting."""
    by_axis = {}
    for r in rows:
        diff = [k for k in AXES_ORDER if str(r[k]) != str(base[k])]
        if not one_at_a_time:
            for k in AXES_ORDER:
                by_axis.setdefault(k, []).append(r)
        elif len(diff) == 1 or (diff == ["optimizer", "lr"] and r["lr"] == str(DEFAULT_LR[r["optimizer"]])):
            by_axis.setdefault(diff[0], []).append(r)
        elif not diff:
            for k in AXES_ORDER:
                by_axis.setdefault(k, []).append(r)
    axes = [k for k in AXES_ORDER if len({r[k] for r in by_axis.get(k, [])}) > 1]
    if not axes:
        return None
    cols = 3
    fig, grid = plt.subplots((len(axes) + cols - 1) // cols, cols, figsize=(12, 3.2 * ((len(axes) + 2) // 3)),
                             squeeze=False)
    for ax, name in zip(grid.ravel(), axes):
        values = sorted({r[name] for r in by_axis[name]}, key=lambda v: _order(name, v))
        pts = sorted(by_axis[name], key=lambda r: _order(name, r[name]))
        ax.plot([values.index(r[name]) for r in pts], [100 * float(r["val_error"]) for r in pts],
                "o-" if one_at_a_time else "o", alpha=1.0 if one_at_a_time else 0.6)
        ax.set_xticks(range(len(values)), values, rotation=20, fontsize=7)
        ax.set_title(name)
        ax.set_ylabel("validation error %")
        ax.grid(alpha=0.3)
    return save_figure(plt, fig, grid.ravel()[len(axes):], out, "sweep_settings.png")


def _label(row, base):
    """A configuration named by what it changes from the base."""
    diff = [f"{k}={row[k]}" for k in AXES_ORDER if str(row[k]) != str(base[k])]
    return ", ".join(diff) or "base"


def _plot_curves(plt, rows, base, out, top=8):
    best = sorted(rows, key=lambda r: float(r["val_error"]))[:top]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in best:
        curve = json.loads(r["curve"])
        ax.plot(range(1, len(curve) + 1), [100 * e for e in curve], label=_label(r, base))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation error %")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"learning curves of the {len(best)} best configurations")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(plt, fig, [], out, "sweep_curves.png")


def finish(out, rows, test_xy, final, base, one_at_a_time=True):
    """Pick the best ``final`` configs on validation, run them on the test set (the one
    time the test set is used), write sweep.md, sweep_final.csv and the plots."""
    from ..modelfile import load
    cols = ["hidden", "activation", "head", "optimizer", "lr", "schedule", "batch", "epochs",
            "l2", "dropout", "augment", "val_error", "train_seconds"]
    ranked = sorted(rows, key=lambda r: float(r["val_error"]))
    chosen = []
    for r in ranked[:final]:
        net = load(model_path(out, r["key"]))
        chosen.append(dict(r, test_error=error_rate(net, *test_xy),
                           model=os.path.relpath(model_path(out, r["key"]), out)))
    final_csv = Results(os.path.join(out, "sweep_final.csv"), FIELDS + ["test_error", "model"])
    if os.path.exists(final_csv.path):
        os.remove(final_csv.path)
    final_csv.append(chosen)
    body = (f"{len(rows)} configurations, each trained on the training part and judged on "
            f"the validation part. The test set was used once, for the "
            f"{len(chosen)} chosen below.\n\n## Chosen on validation, then tested\n\n"
            + markdown_table([dict(_fmt(r), test_error=pct(r["test_error"])) for r in chosen],
                             cols + ["test_error"])
            + "\n## All configurations (by validation error)\n\n"
            + markdown_table([_fmt(r) for r in ranked], cols))
    plt = pyplot()
    if plt is None:
        body += "\n" + no_plots_note()
    else:
        for path in (_plot_settings(plt, rows, base, out, one_at_a_time), _plot_curves(plt, rows, base, out)):
            if path:
                body += f"\n![{os.path.basename(path)}]({os.path.basename(path)})\n"
    write_markdown(os.path.join(out, "sweep.md"), "Sweep", body)
    return chosen


def main(args):
    settings = parse_settings(args.set)
    base, space = (QUICK_BASE, QUICK_SPACE) if args.quick else (BASE, SPACE)
    configs = configurations(args.search, base, space, settings, args.trials, args.seed)
    out = args.out
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    results = Results(os.path.join(out, "sweep.csv"), FIELDS)
    done = results.done()
    todo = [] if args.report_only else [c for c in configs if config_key(c) not in done]
    finished = sum(config_key(c) in done for c in configs)
    print(f"sweep: {len(configs)} configurations, {finished} already in "
          f"{results.path}, {len(todo)} to run")
    # on a cluster the out path is absolute, so that workers on this machine or on a shared
    # filesystem write their checkpoints where a rerun finds them
    where = os.path.abspath(out) if args.dask else out
    tasks = [(c, where, args.workers <= 1 and not args.dask, bool(args.dask)) for c in todo]
    for row in run_all(run_config, tasks, args.workers, (args.data_dir, args.quick, threads_for(args.workers)),
                       "sweep", args.dask):
        results.append([keep_model(out, row)])
    keys = {config_key(c) for c in configs}
    rows = [r for r in results.rows() if r["key"] in keys]
    if not rows:
        raise SystemExit(f"sweep: no finished configuration in {results.path} to report")
    test_xy = load_split(args.data_dir, args.quick)["test"]
    fixed = dict(base, **{k: v[0] for k, v in settings.items() if len(v) == 1})
    chosen = finish(out, rows, test_xy, args.final, fixed, args.search == "axes")
    for r in chosen:
        print(f"chosen: {r['hidden']} {r['activation']} {r['head']} {r['optimizer']} "
              f"lr={r['lr']} {r['augment']}: validation {pct(r['val_error'])}, test {pct(r['test_error'])}")
    print(f"wrote {os.path.join(out, 'sweep.md')}")
    return 0


def add_arguments(p):
    p.add_argument("--search", choices=["axes", "grid", "random"], default="axes",
                   help="axes: vary one setting at a time from the base (default); grid: all "
                        "combinations of the --set values; random: --trials draws from the space")
    p.add_argument("--set", action="append", metavar="NAME=V1[,V2...]",
                   help=f"values of a setting ({', '.join(BASE)}); one value fixes it")
    p.add_argument("--trials", type=int, default=20, help="configurations in a random search")
    p.add_argument("--seed", type=int, default=0, help="seed of the random search")
    p.add_argument("--final", type=int, default=3, help="best configurations to test at the end")
    p.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="train on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:8786) "
                        "instead of --workers local processes (the dask extra)")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the report from the configurations already finished")
