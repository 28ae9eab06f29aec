"""`pynn study noise`: how noise in the data changes the error rate (the seed's task 5).

(a) A network trained on clean digits is tested on test digits under every noise of
pynn.study.noise at every level. (b) For each noise a network of the same config is trained
with that noise (each epoch draws fresh noise, at a level drawn per image from 1..5) and
tested on the same noisy test digits and on clean ones (level 0). Every model's rows are
appended to noise.csv when it is done; a rerun skips the models already there.

With --labels the noise is in the labels instead: for each share in --shares that share of
the training labels is replaced by another class at random (pynn.study.noise.wrong_labels,
seeded, the same wrong labels for every network), a network is trained on them and tested on
the clean test digits; labels.csv, labels.md and labels.png show the test error against the
share and how far it climbs. Both parts train a dense network and a convolutional one
(--nets).
"""
import os

from ..modelfile import load
from .common import (BASE, CONV, DATA, QUICK_CONV, QUICK_SIZES, Results, error_rate,
                     markdown_table, no_plots_note, pct, pyplot, run_all, save_figure,
                     threads_for, train, write_markdown)
from .noise import LABEL_SEED, LABEL_SHARES, LEVELS, NOISES, apply_mixed, noisy_test_set, wrong_labels

# the networks each part trains: (config, config under --quick)
NETS = {"dense": (dict(BASE, hidden="100", epochs=10), dict(BASE, hidden="16", epochs=2, batch=32)),
        "conv": (dict(CONV, epochs=10), QUICK_CONV)}
FIELDS = ["model", "noise", "level", "amount", "error", "train_seconds", "net"]
LABEL_FIELDS = ["net", "share", "wrong", "error", "val_error", "train_seconds", "hidden", "epochs"]
OLDER = {"net": "dense"}     # a noise.csv without the net column holds dense rows


def evaluate(net, model, noises, test_xy, seconds, name):
    X, y = test_xy
    clean = error_rate(net, X, y)
    rows = []
    for noise in noises:
        for level, amount in enumerate(LEVELS[noise]):
            err = clean if level == 0 else error_rate(net, noisy_test_set(noise, X, level), y)
            rows.append({"net": name, "model": model, "noise": noise, "level": level,
                         "amount": amount, "error": err, "train_seconds": round(seconds, 2)})
    return rows


def run_model(task):
    """Train one model (clean, or with one noise) and test it; its rows (runs in a worker)."""
    name, model, config, model_path = task
    if model == "clean":
        if model_path:
            net, seconds = load(model_path), 0.0
        else:
            net, _, seconds = train(config, DATA["train"], DATA["val"])
        return evaluate(net, model, list(NOISES), DATA["test"], seconds, name)
    transform = lambda X, rng: apply_mixed(model, X, rng)  # noqa: E731
    net, _, seconds = train(config, DATA["train"], DATA["val"], transform)
    return evaluate(net, model, [model], DATA["test"], seconds, name)


def run_labels(task):
    """Train one network on labels of which ``share`` are wrong; its row (runs in a worker).
    Validation and test labels stay right: the question is what the wrong ones teach."""
    name, config, share = task
    X, y = DATA["train"]
    noisy = wrong_labels(y, share)
    net, curve, seconds = train(config, (X, noisy), DATA["val"])
    return {"net": name, "share": share, "wrong": int((noisy != y).sum()),
            "error": error_rate(net, *DATA["test"]), "val_error": curve[-1],
            "train_seconds": round(seconds, 2), "hidden": config["hidden"], "epochs": config["epochs"]}


def table(rows, nets):
    """One line per network, noise and training: the error at each level."""
    by = {}
    for r in rows:
        by.setdefault((r["net"], r["noise"], r["model"]), {})[int(r["level"])] = float(r["error"])
    lines = []
    for name in NOISES:
        for net in nets:
            for trained in ("clean", name):
                errs = by.get((net, name, trained))
                if errs:
                    line = {"noise": name, "net": net,
                            "amounts": " / ".join(f"{a:g}" for a in LEVELS[name]),
                            "trained on": "clean" if trained == "clean" else "this noise"}
                    line.update({f"L{k}": pct(v) for k, v in sorted(errs.items())})
                    lines.append(line)
    levels = [f"L{k}" for k in range(max(len(v) for v in LEVELS.values()))]
    return markdown_table(lines, ["noise", "net", "trained on", "amounts"] + levels)


def plot(plt, rows, nets, out):
    names = [n for n in NOISES if any(r["noise"] == n for r in rows)]
    fig, grid = plt.subplots(2, (len(names) + 1) // 2, figsize=(3.2 * ((len(names) + 1) // 2), 6.4),
                             squeeze=False)
    for ax, name in zip(grid.ravel(), names):
        for i, net in enumerate(nets):
            for trained, style in (("clean", "o-"), (name, "s--")):
                pts = sorted((int(r["level"]), float(r["amount"]), float(r["error"])) for r in rows
                             if r["noise"] == name and r["model"] == trained and r["net"] == net)
                if pts:
                    ax.plot([p[1] for p in pts], [100 * p[2] for p in pts], style, color=f"C{i}",
                            label=f"{net}, trained " + ("clean" if trained == "clean" else "with noise"))
        ax.set_title(name)
        ax.set_xlabel(NOISES[name][2], fontsize=8)
        ax.set_ylabel("test error %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    return save_figure(plt, fig, grid.ravel()[len(names):], out, "noise_curves.png")


def label_table(rows, nets, shares):
    """One line per network: the test error at each share of wrong labels, and how far it
    climbs from the clean labels to the largest share (in points, and as a multiple)."""
    lines = []
    for net in nets:
        errs = {float(r["share"]): float(r["error"]) for r in rows if r["net"] == net}
        if not errs:
            continue
        line = {"net": net, "hidden": next(r["hidden"] for r in rows if r["net"] == net)}
        line.update({f"{s:g}": pct(errs[s]) for s in shares if s in errs})
        top = max(errs)
        if 0.0 in errs and top > 0:
            climb = errs[top] - errs[0.0]
            line["climb"] = f"{100 * climb:+.2f} points (x{errs[top] / max(errs[0.0], 1e-9):.1f}) at {top:g}"
        lines.append(line)
    return markdown_table(lines, ["net", "hidden"] + [f"{s:g}" for s in shares] + ["climb"])


def label_plot(plt, rows, nets, out):
    fig, ax = plt.subplots(figsize=(6, 4))
    for net in nets:
        pts = sorted((float(r["share"]), float(r["error"])) for r in rows if r["net"] == net)
        if pts:
            ax.plot([100 * s for s, _ in pts], [100 * e for _, e in pts], "o-", label=net)
    ax.set_xlabel("wrong training labels %")
    ax.set_ylabel("test error %")
    ax.set_title("label noise: test error against the share of wrong labels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(plt, fig, [], out, "labels.png")


def _configs(args, nets):
    """Each network's config, from NETS with --hidden (dense) and --epochs applied."""
    out = {}
    for name in nets:
        config = dict(NETS[name][1 if args.quick else 0])
        if args.hidden and name == "dense":
            config["hidden"] = args.hidden
        if args.epochs:
            config["epochs"] = args.epochs
        out[name] = config
    return out


def _list(text, allowed, what):
    items = text.split(",")
    for item in items:
        if item not in allowed:
            raise SystemExit(f"unknown {what} {item!r}; {what}s: {', '.join(allowed)}")
    return items


def _shares(text):
    try:
        shares = [float(s) for s in text.split(",")]
    except ValueError:
        raise SystemExit(f"--shares takes numbers in 0..1 joined by commas, got {text!r}") from None
    bad = [s for s in shares if not 0 <= s <= 1]
    if bad:
        raise SystemExit(f"--shares must be in 0..1, got {bad[0]:g}")
    return shares


def _write(out, name, title, body, plotter):
    plt = pyplot()
    if plt is None:
        body += "\n" + no_plots_note()
    else:
        body += f"\n![{name}]({os.path.basename(plotter(plt))})\n"
    path = os.path.join(out, name + ".md")
    write_markdown(path, title, body)
    print(f"wrote {path}")


def main_labels(args, nets, configs):
    shares = _shares(args.shares)
    results = Results(os.path.join(args.out, "labels.csv"), LABEL_FIELDS, later={})

    def this_run(row):
        """Whether a row's network, hidden part and epochs are this run's."""
        c = configs.get(row["net"])
        return c is not None and row["hidden"] == str(c["hidden"]) and row["epochs"] == str(c["epochs"])
    done = {(r["net"], float(r["share"])) for r in results.rows() if this_run(r)}
    todo = [(n, configs[n], s) for n in nets for s in shares if (n, s) not in done]
    print(f"noise --labels: {len(nets) * len(shares)} models, {len(nets) * len(shares) - len(todo)} "
          f"already in {results.path}, {len(todo)} to train")
    for row in run_all(run_labels, todo, args.workers,
                       (args.data_dir, args.quick, threads_for(args.workers)), "label noise"):
        results.append([row])
    rows = [r for r in results.rows() if this_run(r) and float(r["share"]) in shares]
    described = "; ".join(f"{n}: `{c}`" for n, c in configs.items())
    body = (f"Networks: {described}. Each is trained on the training digits with the given share "
            f"of their labels replaced by another class, chosen uniformly among the other nine "
            f"(pynn.study.noise.wrong_labels, seed {LABEL_SEED}: the same wrong labels for every "
            f"network, and every label wrong at a smaller share is wrong at a larger one). "
            f"Validation and test labels are right; the error is on "
            f"{QUICK_SIZES[2] if args.quick else 10000} clean test digits. 'climb' is the error "
            f"at the largest share less the error with right labels.\n\n"
            + label_table(rows, nets, shares))
    _write(args.out, "labels", "Label noise", body, lambda plt: label_plot(plt, rows, nets, args.out))
    return 0


def main(args):
    nets = _list(args.nets, list(NETS), "network")
    configs = _configs(args, nets)
    if args.labels:
        return main_labels(args, nets, configs)
    noises = _list(args.noises, list(NOISES), "noise") if args.noises else list(NOISES)
    results = Results(os.path.join(args.out, "noise.csv"), FIELDS, later=OLDER)
    done = results.done("net", "model")
    models = [(n, m) for n in nets for m in ["clean"] + noises]
    todo = [(n, m, configs[n], args.model if m == "clean" and n == nets[0] else None)
            for n, m in models if (n, m) not in done]
    print(f"noise: {len(models)} models, {len(models) - len(todo)} already in {results.path}, "
          f"{len(todo)} to train")
    for rows in run_all(run_model, todo, args.workers,
                        (args.data_dir, args.quick, threads_for(args.workers)), "noise"):
        results.append(rows)
    rows = [r for r in results.rows() if (r["net"], r["model"]) in models]
    described = "; ".join(f"{n}: `{c}`" for n, c in configs.items())
    clean_from = (f"a network trained on clean digits (for {nets[0]}: the model {args.model})"
                  if args.model else "a network trained on clean digits")
    body = (f"Networks: {described}. (a) {clean_from}, tested under each noise; (b) the same "
            f"config trained with that noise (fresh noise each epoch, level drawn per image "
            f"from 1..5), tested at every level (L0 = clean). Test digits: "
            f"{QUICK_SIZES[2] if args.quick else 10000}, noised with fixed seeds.\n\n"
            + table(rows, nets))
    _write(args.out, "noise", "Noise", body, lambda plt: plot(plt, rows, nets, args.out))
    return 0


def add_arguments(p):
    dense = NETS["dense"][0]
    p.add_argument("--noises", default=None, help=f"comma-separated subset of {','.join(NOISES)}")
    p.add_argument("--labels", action="store_true",
                   help="noise in the labels instead: train on labels of which --shares are wrong")
    p.add_argument("--shares", default=",".join(f"{s:g}" for s in LABEL_SHARES),
                   help="with --labels: shares of wrong training labels, comma-separated "
                        "(default %(default)s)")
    p.add_argument("--nets", default=",".join(NETS),
                   help=f"networks to train, comma-separated subset of {','.join(NETS)} "
                        f"(conv: {CONV['hidden']}; default %(default)s)")
    p.add_argument("--model", default=None,
                   help="a saved network to use as the first --nets network's clean-trained model")
    p.add_argument("--hidden", default=None,
                   help=f"the dense network's hidden widths, like 100 or 300-100 (default {dense['hidden']})")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"epochs per model (default {dense['epochs']}; under --quick 2)")
