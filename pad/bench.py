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
  frame        (window) drawing one frame of the pad, with the GL's work finished
  frames       (window) the pad's loop (a frame at 60 Hz whenever something changed): the
               rate it keeps while digits are drawn at a hand's speed, without and with
               lessons taught at the same time; and idle, the frames drawn and CPU used
and then, per lesson rather than per event,
  teach        PadState.teach until the new network is in: one lesson (the drawing and up to
               two earlier corrections, with their distorted copies and replayed MNIST)
  event while teaching   ink + preprocess + inference on the main thread during a lesson
The budget for preprocess + inference is 2 ms. Kernels run on one thread, as in the pad.
Each step is given in wall-clock time (what the user waits) and in CPU time (what the step
costs, which other processes on a busy machine do not inflate).
``run()`` returns the numbers, for ``pynn bench``.
"""
import argparse
import itertools
import os
import time

import numpy as np

import pynn
from pynn.preprocess import strokes_to_mnist

from . import demo
from .state import PadState

BUDGET_MS = 2.0


class Laps:
    """Wall-clock and CPU time of named steps. The CPU time (of this thread, or of the process
    for work on other threads) is what the step costs; the wall time is what the user waits,
    which on a busy machine includes time the scheduler gave to other processes."""

    def __init__(self, cpu_clock=time.thread_time):
        self.cpu_clock, self.wall, self.cpu = cpu_clock, {}, {}

    def now(self):
        return time.perf_counter(), self.cpu_clock()

    def lap(self, name, start):
        end = self.now()
        self.wall.setdefault(name, []).append(end[0] - start[0])
        self.cpu.setdefault(name, []).append(end[1] - start[1])
        return end

    def add(self, name, *parts):
        self.wall[name] = list(np.sum([self.wall[p] for p in parts], axis=0))
        self.cpu[name] = list(np.sum([self.cpu[p] for p in parts], axis=0))

    def summary(self):
        out = {}
        for name, wall in self.wall.items():
            w, c = np.asarray(wall) * 1e3, np.asarray(self.cpu[name]) * 1e3
            out[name] = {"median_ms": float(np.median(w)), "p95_ms": float(np.percentile(w, 95)),
                         "max_ms": float(w.max()), "cpu_median_ms": float(np.median(c)),
                         "cpu_p95_ms": float(np.percentile(c, 95)), "count": int(w.size)}
        return out


def state_pass(net, repeats):
    """The pad's state without a window: the ten scripted digits drawn ``repeats`` times, each
    drag event timed as its steps (ink, preprocess, inference); a summary as ``run`` returns."""
    laps = Laps()
    for _ in range(repeats):
        for digit in range(10):
            pad = PadState(net)
            for stroke in demo.mouse_path(digit):
                pad.begin_stroke(*stroke[0])
                for x, y in stroke[1:]:
                    t = laps.now()
                    pad.add_point(x, y)
                    t = laps.lap("ink", t)
                    image = strokes_to_mnist(pad.paths())
                    t = laps.lap("preprocess", t)
                    net.predict_one(image)
                    laps.lap("inference", t)
                pad.end_stroke()
            pad.close()
    laps.add("preprocess+inference", "preprocess", "inference")
    return laps.summary()


def _window_pass(net, repeats):
    from .window import PadWindow
    laps = Laps()
    window = PadWindow(PadState(net))
    try:
        for _ in range(repeats):
            for digit in range(10):
                window.clear_drawing()
                window.refresh()
                for name, args in demo.mouse_events(window, digit):
                    t = laps.now()
                    window.dispatch_event(name, *args)
                    window.dispatch_events()
                    window.refresh()
                    if name == "on_mouse_drag":
                        laps.lap("event->bars", t)
        frames = _frame_rates(window)
    finally:
        window.close()
    return {**laps.summary(), **frames}


def _frame_rates(window, seconds=2.0):
    """Frames per second of the pad's loop (pad.window.run: a frame at 60 Hz when something
    changed) while digits are drawn at a hand's speed, without and with lessons taught at the
    same time; and the longest gap between frames."""
    import pyglet
    from pyglet import gl

    from .window import run
    laps = Laps()
    for _ in range(30):              # one frame drawn to the end (glFinish waits for the GL)
        t = laps.now()
        window.on_draw()
        gl.glFinish()
        laps.lap("frame", t)

    stamps = []
    window.push_handlers(on_draw=lambda: stamps.append(time.perf_counter()))
    state, lessons = window.state, []

    def loop(teach):
        stamps.clear()
        start, digits = time.perf_counter(), itertools.count()

        def next_digit():
            if teach and state.teaching == 0:            # a lesson on the digit just drawn
                lessons.append(state.teach((state.prediction().digit + 1) % 10))
            if time.perf_counter() - start > seconds:
                pyglet.app.exit()
                return
            window.clear_drawing()
            demo.animate(window, next(digits) % 10, on_done=next_digit)

        window.clear_drawing()
        demo.animate(window, 8, on_done=next_digit)
        run(window)
        gaps = np.diff(stamps) * 1e3
        return {"fps": float((len(stamps) - 1) / (stamps[-1] - stamps[0])),
                "longest_gap_ms": float(gaps.max()), "frames": len(stamps)}

    def idle():                      # nothing happens: how many frames, how much CPU?
        stamps.clear()
        window.clear_drawing()
        pyglet.clock.schedule_once(lambda dt: pyglet.app.exit(), seconds)
        wall, cpu = time.perf_counter(), time.process_time()
        run(window)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"frames": len(stamps), "cpu_share": cpu / wall, "seconds": wall}

    drawing = loop(teach=False)
    teaching = loop(teach=True)
    resting = idle()
    for lesson in lessons:
        lesson.result()
    teaching["lessons"] = len(lessons)
    return {**laps.summary(), "gl": gl.gl_info.get_renderer(), "frames while drawing": drawing,
            "frames while teaching": teaching, "idle": resting}


def _teach_pass(net, lessons=10):
    """Teach each scripted digit as the next one (wrong labels, so every lesson has work); then
    teach again while drawing on the main thread, as a user may: does teaching slow the answer?"""
    pad = PadState(net)
    alone, during = Laps(cpu_clock=time.process_time), Laps()   # the lesson is on a worker
    for i in range(2 * lessons):
        pad.clear()
        demo.draw(pad, i % 10)
        t = alone.now()
        lesson = pad.teach((i + 1) % 10)
        while i >= lessons and not lesson.done():
            pad.clear()
            for stroke in demo.mouse_path(i % 10):
                pad.begin_stroke(*stroke[0])
                for x, y in stroke[1:]:
                    s = during.now()
                    pad.add_point(x, y)
                    pad.prediction()
                    during.lap("event while teaching", s)
                pad.end_stroke()
        lesson.result()
        if i < lessons:
            alone.lap("teach", t)
    pad.close()
    return {**alone.summary(), **during.summary()}


def run(model=None, window=True, repeats=3):
    """Time the scripted drawing; returns {step: {"median_ms", "p95_ms", "max_ms",
    "cpu_median_ms", "cpu_p95_ms", "count"}}, and "window": why there are no window numbers,
    when there are none."""
    pynn.set_num_threads(1)
    net = pynn.load(model) if model else pynn.load_default()
    results = state_pass(net, repeats)
    if window:
        from .display import virtual_display
        try:
            with virtual_display():
                results.update(_window_pass(net, repeats))
        except Exception as e:     # no window, no window numbers: the rest still stands
            results["window"] = f"{type(e).__name__}: {e}"
    results.update(_teach_pass(net))
    return results


def report(results):
    lines = [f"{'ms':22s} {'median':>8s} {'p95':>8s} {'max':>8s}   {'cpu median':>10s} "
             f"{'cpu p95':>8s}   (per drag event; teach: per lesson)"]
    for name, r in results.items():
        if isinstance(r, dict) and "median_ms" in r:
            lines.append(f"{name:22s} {r['median_ms']:8.3f} {r['p95_ms']:8.3f} {r['max_ms']:8.1f}   "
                         f"{r['cpu_median_ms']:10.3f} {r['cpu_p95_ms']:8.3f}")
    for name in ("frames while drawing", "frames while teaching"):
        if name in results:
            r = results[name]
            lines.append(f"{name:22s} {r['fps']:8.1f} frames/s (of 60), longest gap "
                         f"{r['longest_gap_ms']:.1f} ms, {r['frames']} frames")
    if "idle" in results:
        r = results["idle"]
        lines.append(f"{'idle':22s} {r['frames']} frames drawn in {r['seconds']:.1f} s, "
                     f"{r['cpu_share']:.1%} of a core")
    if "window" in results:
        lines.append(f"no window numbers: {results['window']}")
    both = results["preprocess+inference"]
    lines.append(f"preprocess+inference: median {both['median_ms']:.3f} ms, p95 {both['p95_ms']:.3f} "
                 f"ms wall ({both['cpu_p95_ms']:.3f} ms cpu) against the {BUDGET_MS:g} ms budget")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m pad.bench", description=__doc__.splitlines()[0])
    p.add_argument("--model", metavar="PATH", help="model to time (default: the shipped one)")
    p.add_argument("--no-window", action="store_true", help="time the state only")
    p.add_argument("--repeats", type=int, default=3, help="times through the ten digits")
    args = p.parse_args(argv)
    results = run(args.model, window=not args.no_window, repeats=args.repeats)
    n = results["ink"]["count"]
    print(f"pad: {n} drag events, {pynn.ops.cpu_features()}, 1 thread"
          + (f", DISPLAY={os.environ.get('DISPLAY') or 'virtual'}, GL {results['gl']}"
             if "gl" in results else ""))
    print(report(results))


if __name__ == "__main__":
    main()
