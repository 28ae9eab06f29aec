"""`pynn study`: the measurements behind the seed's tasks 2, 3, 5 and 6.

    pynn study sweep    which settings give the lowest error rate (task 5)
    pynn study noise    how noise in the data (pixels or labels) changes the error rate (task 5)
    pynn study compare  the network against other methods, robustness and adaptivity (task 6)
    pynn study lang     the same work in pure Python, NumPy and the C kernels (task 3)
    pynn study gradcost one gradient by nudging each parameter and by backpropagation (task 2)
    pynn study drawn    which model reads drawings best: the model the pad ships

Each writes a CSV, a markdown table and (with the ``plots`` extra) PNG plots into --out, shows
its progress, and on a rerun skips what is already in its CSV. --quick makes a small version
in seconds (a few thousand digits, tiny networks, few epochs).
"""
import os

COMMANDS = {
    "sweep": "grid or random search over the network's settings, chosen on validation",
    "noise": "error rate against graded noise, trained clean and with it; --labels: wrong labels",
    "compare": "nearest centroid, k-NN, softmax regression and networks side by side",
    "lang": "one epoch and one GEMM in pure Python, NumPy and the C kernels",
    "gradcost": "one gradient by nudging each parameter against backpropagation: time, passes",
    "drawn": "models side by side on MNIST, pad-drawn digits and styles MNIST lacks",
}
MODULES = {"sweep": "sweep", "noise": "robustness", "compare": "compare", "lang": "lang",
           "gradcost": "gradcost", "drawn": "drawings"}


def _module(name):
    from importlib import import_module
    return import_module(f"{__name__}.{MODULES[name]}")


def register(subparsers):
    """Add the ``study`` command, with its sub-commands, to the CLI's subparsers."""
    study = subparsers.add_parser("study", help="measurements: " + ", ".join(COMMANDS),
                                  description=__doc__.split("\n\n")[0])
    sub = study.add_subparsers(dest="study_command", metavar="{" + ",".join(COMMANDS) + "}")
    sub.required = True
    for name, help in COMMANDS.items():
        p = sub.add_parser(name, help=help, description=_module(name).__doc__.split("\n\n")[0])
        p.add_argument("--quick", action="store_true",
                       help="a small version in seconds (few digits, tiny nets, few epochs)")
        p.add_argument("--out", default=None, help=f"output directory (default: study/{name})")
        p.add_argument("--workers", type=int, default=1,
                       help="worker processes (spawned); each gets its share of the cores")
        p.add_argument("--data-dir", default=None, help="where the MNIST files are (default: the cache)")
        _module(name).add_arguments(p)
        p.set_defaults(func=run, study_name=name)
    return study


def run(args):
    if args.workers < 1:
        raise SystemExit(f"--workers must be at least 1, got {args.workers}")
    args.out = args.out or os.path.join("study", args.study_name + ("-quick" if args.quick else ""))
    os.makedirs(args.out, exist_ok=True)
    try:
        return _module(args.study_name).main(args)
    except ValueError as e:       # a bad setting: one line saying which, not a traceback
        raise SystemExit(f"pynn study {args.study_name}: error: {e}") from None


def main(argv=None):
    """Run ``pynn study ...`` on its own (python -m pynn.study ...)."""
    import argparse
    parser = argparse.ArgumentParser(prog="pynn")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)
