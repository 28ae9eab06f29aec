"""`pynn study noise`: how noise in the data changes the error rate (the seed's task 5).

(a) A network trained on clean digits is tested on test digits under every noise of
pynn.study.noise at every level. (b) For each noise a network of the same config is trained
with that noise (each epoch draws fresh noise, at a level drawn per image from 1..5) and
tested on the same noisy test digits and on clean ones (level 0). Every model's rows are
appended to noise.csv when it is done; a rerun skips the models already there.
"""
import os

from .common import (BASE, DATA, QUICK_SIZES, Results, error_rate, markdown_table,
                     no_plots_note, pct, pyplot, run_all, save_figure, threads_for, train,
                     write_markdown)
from .noise import LEVELS, NOISES, apply_mixed, noisy_test_set

CONFIG = dict(BASE, hidden="100", epochs=10)
QUICK_CONFIG = dict(BASE, hidden="16", epochs=2, batch=32)
FIELDS = ["model", "noise", "level", "amount", "error", "train_seconds"]
def evaluate(net, model, noises, test_xy, seconds):
    X, y = test_xy
    clean = error_rate(net, X, y)
    rows = []
    for name in noises:
        for level, amount in enumerate(LEVELS[name]):
            err = clean if level == 0 else error_rate(net, noisy_test_set(name, X, level), y)
            rows.append({"model": model, "noise": name, "level": level, "amount": amount,
                         "error": err, "train_seconds": round(seconds, 2)})
    return rows


def run_model(task):
    """Train one model (clean, or with one noise) and test it; its rows (runs in a worker)."""
    model, config, model_path = task
    if model == "clean":
        if model_path:
            from ..io import load
            net, seconds = load(model_path), 0.0
        else:
            net, _, seconds = train(config, DATA["train"], DATA["val"])
        return evaluate(net, model, list(NOISES), DATA["test"], seconds)
    transform = lambda X, rng: apply_mixed(model, X, rng)  # noqa: E731
    net, _, seconds = train(config, DATA["train"], DATA["val"], transform)
    return evaluate(net, model, [model], DATA["test"], seconds)


def table(rows):
    """One line per noise and training: the error at each level."""
    by = {}
    for r in rows:
        by.setdefault((r["noise"], r["model"]), {})[int(r["level"])] = float(r["error"])
    lines = []
    for name in NOISES:
        for trained in ("clean", name):
            errs = by.get((name, trained))
            if errs:
                line = {"noise": name, "amounts": " / ".join(f"{a:g}" for a in LEVELS[name]),
                        "trained on": "clean" if trained == "clean" else "this noise"}
                line.update({f"L{k}": pct(v) for k, v in sorted(errs.items())})
                lines.append(line)
    levels = [f"L{k}" for k in range(max(len(v) for v in LEVELS.values()))]
    return markdown_table(lines, ["noise", "trained on", "amounts"] + levels)


def plot(plt, rows, out):
    names = [n for n in NOISES if any(r["noise"] == n for r in rows)]
    fig, grid = plt.subplots(2, (len(names) + 1) // 2, figsize=(3.2 * ((len(names) + 1) // 2), 6.4),
                             squeeze=False)
    for ax, name in zip(grid.ravel(), names):
        for trained, style in (("clean", "o-"), (name, "s--")):
            pts = sorted((int(r["level"]), float(r["amount"]), float(r["error"])) for r in rows
                         if r["noise"] == name and r["model"] == trained)
            if pts:
                ax.plot([p[1] for p in pts], [100 * p[2] for p in pts], style,
                        label="trained clean" if trained == "clean" else "trained with noise")
        ax.set_title(name)
        ax.set_xlabel(NOISES[name][2], fontsize=8)
        ax.set_ylabel("test error %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(plt, fig, grid.ravel()[len(names):], out, "noise_curves.png")


def main(args):
    config = QUICK_CONFIG if args.quick else dict(CONFIG, epochs=args.epochs or CONFIG["epochs"],
                                                  hidden=args.hidden or CONFIG["hidden"])
    if args.quick and args.epochs:
        config = dict(config, epochs=args.epochs)
    noises = args.noises.split(",") if args.noises else list(NOISES)
    for name in noises:
        if name not in NOISES:
            raise SystemExit(f"unknown noise {name!r}; noises: {', '.join(NOISES)}")
    results = Results(os.path.join(args.out, "noise.csv"), FIELDS)
    done = results.done("model")
    models = ["clean"] + noises
    todo = [(m, config, args.model if m == "clean" else None) for m in models if m not in done]
    print(f"noise: {len(models)} models, {len(models) - len(todo)} already in {results.path}, "
          f"{len(todo)} to train")
    for rows in run_all(run_model, todo, args.workers,
                        (args.data_dir, args.quick, threads_for(args.workers)), "noise"):
        results.append(rows)
    rows = [r for r in results.rows() if r["model"] in models]
    clean_from = f"the model {args.model}" if args.model else "a network trained on clean digits"
    body = (f"Network config: `{config}`. (a) {clean_from}, tested under each noise; (b) the same "
            f"config trained with that noise (fresh noise each epoch, level drawn per image "
            f"from 1..5), tested at every level (L0 = clean). Test digits: "
            f"{QUICK_SIZES[2] if args.quick else 10000}, noised with fixed seeds.\n\n"
            + table(rows))
    plt = pyplot()
    if plt is None:
        body += "\n" + no_plots_note()
    else:
        body += f"\n![noise curves]({os.path.basename(plot(plt, rows, args.out))})\n"
    write_markdown(os.path.join(args.out, "noise.md"), "Noise", body)
    print(f"wrote {os.path.join(args.out, 'noise.md')}")
    return 0


def add_arguments(p):
    p.add_argument("--noises", default=None, help=f"comma-separated subset of {','.join(NOISES)}")
    p.add_argument("--model", default=None, help="a saved network to use as the clean-trained model")
    p.add_argument("--hidden", default=None, help=f"hidden widths, like 100 or 300-100 (default {CONFIG['hidden']})")
    p.add_argument("--epochs", type=int, default=None, help=f"epochs per model (default {CONFIG['epochs']})")
