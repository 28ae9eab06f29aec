"""How long the pad takes from a drag event to updated bars, over a scripted drawing.

    python -m pad.bench                  state and window (starts a virtual display if needed)
    python -m pad.bench --no-window      the state only: ink, preprocessing, inference

The scripted drawing is the ten digits of pad.demo, one mouse position every 10 canvas pixels,
each drawn on a cleared canvas. Every drag event is timed:
  ink          PadState.add_point: the curve and its ink on the canvas raster
  preprocess   pynn.preprocess.strokes_to_mnist on the drawing so far
  inference    the network's probabilities for that image
  event->bars  (window) the drag event through the window's handler, then the refresh that
               uploads the new ink and shows the new answer: all of it, as the pad runs
The budget for preprocess + inference is 2 ms. Kernels run on one thread, as in the pad.
``run()`` returns the numbers, for ``pynn bench``.
"""
import argparse
import os
import time

import numpy as np

import pynn
from pynn.preprocess import strokes_to_mnist

from . import demo
from .state import PadState

BUDGET_MS = 2.0


def _summary(times):
    ms = np.asarray(times) * 1e3
    return {"median_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95)),
            "max_ms": float(ms.max()), "events": int(ms.size)}


def _state_pass(net, repeats):
    ink, pre, inf = [], [], []
    clock = time.perf_counter
    for _ in range(repeats):
        for digit in range(10):
            pad = PadState(net)
            for stroke in demo.mouse_path(digit):
                pad.begin_stroke(*stroke[0])
                for x, y in stroke[1:]:
                    t0 = clock()
                    pad.add_point(x, y)
                    t1 = clock()
                    image = strokes_to_mnist(pad.paths())
                    t2 = clock()
                    net.predict_proba(image.reshape(1, -1))
                    t3 = clock()
                    ink.append(t1 - t0), pre.append(t2 - t1), inf.append(t3 - t2)
                pad.end_stroke()
            pad.close()
    both = np.add(pre, inf)
    return {"ink": _summary(ink), "preprocess": _summary(pre), "inference": _summary(inf),
            "preprocess+inference": _summary(both)}


def _window_pass(net, repeats):
    from .window import PadWindow
    times, clock = [], time.perf_counter
    window = PadWindow(PadState(net))
    try:
        for _ in range(repeats):
            for digit in range(10):
                window.clear_drawing()
                window.refresh()
                for name, args in demo.mouse_events(window, digit):
                    t0 = clock()
                    window.dispatch_event(name, *args)
                    window.dispatch_events()
                    window.refresh()
                    if name == "on_mouse_drag":
                        times.append(clock() - t0)
        window.on_draw()   # and the frame still draws
    finally:
        window.close()
    return {"event->bars": _summary(times)}


def run(model=None, window=True, repeats=3):
    """Time the scripted drawing; returns {"what": {"median_ms", "p95_ms", "max_ms", "events"}}
    plus "window": why there were no window numbers, when there were none."""
    pynn.set_num_threads(1)
    net = pynn.load(model) if model else pynn.load_default()
    results = _state_pass(net, repeats)
    if window:
        from .display import NoDisplay, virtual_display
        try:
            with virtual_display():
                results.update(_window_pass(net, repeats))
        except NoDisplay as e:
            results["window"] = str(e)
    return results


def report(results):
    lines = [f"{'':22s} {'median':>8s} {'p95':>8s} {'max':>8s}  (ms per drag event)"]
    for name, r in results.items():
        if isinstance(r, dict):
            lines.append(f"{name:22s} {r['median_ms']:8.3f} {r['p95_ms']:8.3f} {r['max_ms']:8.3f}")
    if "window" in results:
        lines.append(f"no window numbers: {results['window']}")
    both = results["preprocess+inference"]["p95_ms"]
    verdict = "within" if both <= BUDGET_MS else "OVER"
    lines.append(f"preprocess+inference p95 {both:.3f} ms: {verdict} the {BUDGET_MS:g} ms budget")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pad.bench", description=__doc__.splitlines()[0])
    p.add_argument("--model", metavar="PATH", help="model to time (default: the shipped one)")
    p.add_argument("--no-window", action="store_true", help="time the state only")
    p.add_argument("--repeats", type=int, default=3, help="times through the ten digits")
    args = p.parse_args(argv)
    results = run(args.model, window=not args.no_window, repeats=args.repeats)
    n = results["ink"]["events"]
    print(f"pad: {n} drag events, {pynn.ops.cpu_features()}, 1 thread, "
          f"DISPLAY={os.environ.get('DISPLAY') or 'virtual'}")
    print(report(results))


if __name__ == "__main__":
    main()
