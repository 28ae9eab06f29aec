"""Scripted digits: the mouse movements of a hand drawing each digit, for demos, tests, benchmarks.

Each digit is a list of strokes through control points in a unit square (y down); a repeated
point marks a sharp corner. ``mouse_path`` turns them into the positions a mouse would report
while drawing them on the canvas.
"""
import numpy as np

from .state import CANVAS, curve_piece

DIGITS = {
    0: [[(0.50, 0.13), (0.34, 0.20), (0.27, 0.42), (0.29, 0.66), (0.40, 0.84), (0.55, 0.87),
         (0.68, 0.76), (0.73, 0.52), (0.69, 0.28), (0.58, 0.14), (0.47, 0.14)]],
    1: [[(0.38, 0.28), (0.54, 0.12), (0.54, 0.12), (0.54, 0.88)]],
    2: [[(0.29, 0.30), (0.36, 0.17), (0.50, 0.12), (0.64, 0.17), (0.69, 0.30), (0.64, 0.45),
         (0.50, 0.60), (0.29, 0.85), (0.29, 0.85), (0.74, 0.85)]],
    3: [[(0.30, 0.20), (0.48, 0.12), (0.65, 0.19), (0.66, 0.34), (0.48, 0.47), (0.48, 0.47),
         (0.66, 0.57), (0.70, 0.73), (0.57, 0.87), (0.32, 0.84)]],
    4: [[(0.60, 0.88), (0.60, 0.12), (0.60, 0.12), (0.26, 0.64), (0.26, 0.64), (0.78, 0.64)]],
    5: [[(0.69, 0.13), (0.37, 0.13), (0.37, 0.13), (0.33, 0.45), (0.33, 0.45), (0.50, 0.40),
         (0.66, 0.48), (0.71, 0.66), (0.61, 0.83), (0.46, 0.87), (0.30, 0.80)]],
    6: [[(0.63, 0.12), (0.46, 0.24), (0.35, 0.44), (0.32, 0.65), (0.40, 0.83), (0.55, 0.87),
         (0.67, 0.77), (0.66, 0.60), (0.52, 0.52), (0.39, 0.57), (0.33, 0.67)]],
    7: [[(0.28, 0.15), (0.72, 0.15), (0.72, 0.15), (0.56, 0.46), (0.45, 0.88)]],
    8: [[(0.63, 0.20), (0.50, 0.12), (0.36, 0.19), (0.37, 0.34), (0.50, 0.47), (0.64, 0.60),
         (0.66, 0.76), (0.50, 0.88), (0.34, 0.76), (0.36, 0.60), (0.50, 0.47), (0.62, 0.34),
         (0.63, 0.21)]],
    9: [[(0.66, 0.27), (0.57, 0.14), (0.44, 0.13), (0.34, 0.23), (0.36, 0.38), (0.50, 0.43),
         (0.63, 0.35), (0.66, 0.20), (0.66, 0.20), (0.65, 0.52), (0.61, 0.88)]],
}


def mouse_path(digit, size=CANVAS, step=10.0):
    """The mouse positions (canvas pixels, y down) of drawing ``digit``: a list of (n, 2)
    arrays, one per stroke, one position every ``step`` pixels along a smooth curve."""
    if digit not in DIGITS:
        raise ValueError(f"there is a scripted drawing for the digits 0..9, not {digit!r}")
    strokes = []
    for stroke in DIGITS[digit]:
        points = [(x * size, y * size) for x, y in stroke]
        curve = np.concatenate([np.array(points[:1])] +
                               [curve_piece(points, i) for i in range(len(points) - 1)])
        along = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(curve, axis=0).T))])
        at = np.append(np.arange(0.0, along[-1], step), along[-1])
        strokes.append(np.stack([np.interp(at, along, curve[:, 0]),
                                 np.interp(at, along, curve[:, 1])], axis=1))
    return strokes


def draw(pad, digit, size=CANVAS, step=10.0):
    """Draw the scripted ``digit`` on a PadState."""
    for stroke in mouse_path(digit, size, step):
        pad.begin_stroke(*stroke[0])
        for x, y in stroke[1:]:
            pad.add_point(x, y)
        pad.end_stroke()


def mouse_events(window, digit, step=10.0):
    """The window events (name, args) of drawing ``digit`` on ``window``'s canvas with the mouse."""
    LEFT = 1   # pyglet.window.mouse.LEFT; not imported, so this module works without a display
    for stroke in mouse_path(digit, window.state.size, step):
        points = [window.from_canvas(x, y) for x, y in stroke]
        yield "on_mouse_press", (*points[0], LEFT, 0)
        for (px, py), (x, y) in zip(points, points[1:]):
            yield "on_mouse_drag", (x, y, x - px, y - py, LEFT, 0)
        yield "on_mouse_release", (*points[-1], LEFT, 0)


def draw_on_window(window, digit, step=10.0):
    """Draw ``digit`` through the window's own mouse handlers, at once.

    Outside pyglet.app.run a window queues the events it is sent; dispatch_events runs them.
    """
    for name, args in mouse_events(window, digit, step):
        window.dispatch_event(name, *args)
    window.dispatch_events()


def animate(window, digit, events_per_second=120, on_done=None):
    """Draw ``digit`` on a running window at about a hand's speed; then call ``on_done()``."""
    import pyglet
    events = mouse_events(window, digit)

    def tick(dt):
        for _ in range(max(1, round(dt * events_per_second))):
            event = next(events, None)
            if event is None:
                pyglet.clock.unschedule(tick)
                if on_done is not None:
                    on_done()
                return
            window.dispatch_event(event[0], *event[1])

    pyglet.clock.schedule_interval(tick, 1 / events_per_second)
